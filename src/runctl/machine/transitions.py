"""The phase graphs of a StoryRun and a StepRun, as data, checked when this module is imported.

A step's next status, as proposed from what was observed of its workload, passes through
`check_step_transition` against both of the step's records (`steps.keep_final`): a proposal the
table refuses is not written, so a terminal step record stands whole, and a step never goes back
to Pending, by construction rather than by the care of each branch that proposes a phase. The
run-level rules that end steps (`steps.end`) touch only steps still going.

A run's phase does not pass through `check_run_transition` when it is decided: `decide` keeps a
terminal run's status whole (its first rung), and the API server refuses, for every writer, a
status that leaves a terminal phase (`runctl.api.rules`). `RUN_TRANSITIONS` states the graph
the run's phase follows, and is checked here for shape like the step graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from runctl.machine.phases import RUN_TERMINAL, STEP_TERMINAL, RunPhase, StepPhase
from runctl.machine.value import value

P = TypeVar("P", bound=StrEnum)
Table = Mapping[P, frozenset[P]]

RUN_INITIAL = RunPhase.PENDING
STEP_INITIAL = StepPhase.PENDING

_RUN_LIVE = frozenset({RunPhase.RUNNING, RunPhase.STOPPING, *RUN_TERMINAL})

RUN_TRANSITIONS: Mapping[RunPhase, frozenset[RunPhase]] = {
    RunPhase.PENDING: frozenset(RunPhase),
    RunPhase.RUNNING: _RUN_LIVE,
    RunPhase.STOPPING: frozenset({RunPhase.STOPPING, *RUN_TERMINAL}),
    **{t: frozenset({t}) for t in RUN_TERMINAL},
}
"""A run never goes back to Pending once it ran, a stop is never withdrawn, terminal is final."""

STEP_TRANSITIONS: Mapping[StepPhase, frozenset[StepPhase]] = {
    StepPhase.PENDING: frozenset(StepPhase),
    StepPhase.RUNNING: frozenset({StepPhase.RUNNING, *STEP_TERMINAL}),
    **{t: frozenset({t}) for t in STEP_TERMINAL},
}
"""A step waits (Pending), runs (Running, retry backoffs included), then ends once."""


@value
class Accepted:
    """A move to another phase the table allows."""


@value
class NoOp:
    """The same phase again (for a terminal phase: the same final state written twice)."""


@value
class Refused:
    reason: str


TransitionResult = Accepted | NoOp | Refused


def _check(table: Table[P], terminal: frozenset[P], old: P, new: P) -> TransitionResult:
    if old == new:
        return NoOp()
    if new in table[old]:
        return Accepted()
    if old in terminal:
        return Refused(f"{old} is terminal and final; it cannot become {new}")
    return Refused(f"{old} cannot be followed by {new}")


def check_run_transition(old: RunPhase | None, new: RunPhase) -> TransitionResult:
    """May a run's phase go from `old` to `new`? A run never reconciled counts as Pending."""
    return _check(RUN_TRANSITIONS, RUN_TERMINAL, old or RUN_INITIAL, new)


def check_step_transition(old: StepPhase | None, new: StepPhase) -> TransitionResult:
    """May a step's phase go from `old` to `new`? A step with no status yet counts as Pending."""
    return _check(STEP_TRANSITIONS, STEP_TERMINAL, old or STEP_INITIAL, new)


def table_problems(table: Table[P], terminal: frozenset[P], initial: P) -> list[str]:
    """What is wrong with a phase graph, in phase order: the checks run at import, and by
    tests on bad tables."""
    phases = list(type(initial))
    reachable = _reachable(table, initial)
    entries = [p for p in phases if not any(p in table.get(q, ()) for q in phases if q != p)]
    return [
        *(f"{p} has no row" for p in phases if p not in table),
        *(f"{p} may leave a terminal phase" for p in phases
          if p in terminal and table.get(p) != frozenset({p})),
        *(f"{p} can never end" for p in phases
          if p not in terminal and not _reachable(table, p) & terminal),
        *(f"{p} is unreachable from {initial}" for p in phases if p not in reachable),
        *([] if entries == [initial] else
          [f"the initial phase must be {initial} alone, not {', '.join(entries)}"]),
    ]


def _reachable(table: Table[P], start: P) -> set[P]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in table.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


class TableError(Exception):
    """A phase graph is malformed; raised at import so a bad table never ships."""


def assert_valid(table: Table[P], terminal: frozenset[P], initial: P) -> None:
    problems = table_problems(table, terminal, initial)
    if problems:
        raise TableError("; ".join(problems))


assert_valid(RUN_TRANSITIONS, RUN_TERMINAL, RUN_INITIAL)
assert_valid(STEP_TRANSITIONS, STEP_TERMINAL, STEP_INITIAL)
