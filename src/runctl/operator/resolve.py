"""What a run executes, and what its steps read: from the run, its record and the cache alone.

A run with inline steps executes its own spec. A run of a Story executes its record
(`status.resolved`) once it has one; before that, the Story as the cache holds it is resolved
here: its params applied to the run's values and every check of `runctl.flow` made. A
definition that passes is handed back as a record to write (once, before anything starts);
one that fails is handed to the core as problems (the run ends `InvalidSpec`), and a Story
not seen makes the run wait for it (`StoryNotFound`). Stories are watched, so one that appears
wakes the runs waiting for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runctl.api import wire
from runctl.flow import conditions, items, params, references
from runctl.flow import definition as flow
from runctl.machine import model as m
from runctl.machine.dag import Problem
from runctl.machine.naming import item_key
from runctl.machine.phases import RUN_TERMINAL, STEP_FAILURES, Mode, Reason, StepPhase
from runctl.operator import rerun, settings
from runctl.operator.cache import ObjectCache
from runctl.operator.memo import Bounded, PerGeneration
from runctl.operator.settings import STORY_WAIT_SECONDS
from runctl.timefmt import parse_time

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Definition:
    spec: Obj | None
    """What the run executes when not its own spec: its record, or the Story being resolved
    (None: inline steps, or a Story not found)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    """`status.story`, `status.resolved` (and a re-run's `status.rerun`), to be written before
    anything else (resolved just now)."""
    problems: tuple[tuple[str, str], ...] = ()
    """(field, message) of what makes the definition unusable."""
    wait: m.StoryWait | None = None
    facts: references.Facts | None = None
    """What the main steps ended as, once the run recorded it: finally steps read it."""
    reused: tuple[tuple[str, m.Reuse], ...] = ()
    """A re-run's record: the steps it reuses, with the outputs their readers see."""

    def steps(self, run: Obj) -> list[Obj]:
        """The main steps, then the finally steps."""
        spec = self.spec or run["spec"]
        return [*(spec.get("steps") or ()), *(spec.get("finally") or ())]

    def main(self, run: Obj) -> list[str]:
        return [s["name"] for s in (self.spec or run["spec"]).get("steps") or ()]

    def step(self, run: Obj, name: str) -> Obj:
        return next(s for s in self.steps(run) if s["name"] == name)

    def mode(self, run: Obj, step: str) -> str | None:
        """The mode a step's StepRun runs in: the run's, but a finally step is batch."""
        if step not in self.main(run):
            return Mode.BATCH.value
        mode: str | None = (self.spec or run["spec"]).get("mode")
        return mode


_INLINE: PerGeneration[Definition] = PerGeneration()
"""An inline run's definition is its own spec: checked once per generation."""


def definition(cache: ObjectCache, run: Obj, now: dt.datetime) -> Definition:
    d = _definition(cache, run, now)
    outcome = (run.get("status") or {}).get("outcome")
    if outcome is None:
        return d
    return replace(d, facts=facts(d.main(run), outcome,
                                  wire.parse_run_status(run.get("status"))))


def facts(main: list[str], outcome: Obj, status: m.RunStatus) -> references.Facts:
    """The run's facts as finally steps read them: the outcome recorded, the main steps'
    phases, and which of them failed (in spec order)."""
    phases = {name: s.phase for name, s in m.step_state_items(status) if name in main}
    return references.Facts(
        outcome=outcome["phase"], reason=outcome.get("reason") or "",
        failures=tuple(n for n in main if phases.get(n) in STEP_FAILURES),
        phases={n: phases[n].value for n in main if n in phases})


def _definition(cache: ObjectCache, run: Obj, now: dt.datetime) -> Definition:
    spec, status = run["spec"], run.get("status") or {}
    if "resolved" in status:
        resolved = status["resolved"]
        return Definition(resolved["spec"], resolved.get("params") or {},
                          reused=wire.reuses(status))
    if wire.executes_record(spec) and status.get("phase") in RUN_TERMINAL:
        return Definition(None)  # ended before it resolved anything: nothing to resolve now
    if wire.rerun_of(spec) is not None:
        r = rerun.resolve(cache, run)
        return Definition(r.spec, r.params, record=r.record, problems=_pairs(r.problems))
    name = wire.story_ref(spec)
    if name is None:
        return _INLINE.get(run, lambda: Definition(None, problems=_pairs(flow.check(spec))))
    story = cache.get("Story", run["metadata"]["namespace"], name)
    if story is None:
        created = parse_time(run["metadata"].get("creationTimestamp")) or now
        return Definition(None, wait=m.StoryWait(
            name, created + dt.timedelta(seconds=STORY_WAIT_SECONDS)))
    values, problems = params.resolve(params.declared(story["spec"].get("params")),
                                      spec.get("params"))
    problems += flow.check(story["spec"], f"Story {name}: spec")
    if not problems:
        problems += flow.trial_render(story["spec"], values, f"Story {name}: spec")
    if problems:
        return Definition(story["spec"], values, problems=_pairs(problems))
    return Definition(story["spec"], values, record=wire.record(story, values))


def _pairs(problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    return tuple((p.field, p.message) for p in problems)


# -- what a step reads -----------------------------------------------------------------------


@dataclass(frozen=True)
class Offered:
    """The outputs every finished step offers its readers, by step."""

    outputs: dict[str, dict[str, str]]
    too_large: dict[tuple[str, str], str] = field(default_factory=dict)
    """(step, output) of a fan-out step whose array of its items' values is too large to
    render, with why: a step reading one fails `OutputTooLarge`."""


def _recorded(step_runs: Mapping[str, m.StepRunStatus | None]) -> dict[str, dict[str, str]]:
    """The outputs recorded on the StepRuns that succeeded, by key (a step's or an item's)."""
    return {key: dict(status.outputs) for key, status in step_runs.items()
            if status is not None and status.phase is StepPhase.SUCCEEDED}


def produced(run: Obj, d: Definition, step_runs: Mapping[str, m.StepRunStatus | None],
             states: Mapping[str, m.StepState]) -> Offered:
    """The outputs every finished step offers its readers, from the StepRuns' statuses (as the
    snapshot parsed them) and the steps' states: a reused step's as the re-run recorded them
    (its StepRun, made with them, may not be seen yet); a success's recorded outputs (a
    fan-out's: one JSON array per output, its items' values in item order); a skipped step's
    declared defaults."""
    recorded = _recorded(step_runs)
    offered = Offered({})
    reused = dict(d.reused)
    for step in d.steps(run):
        name, state = step["name"], states.get(step["name"])
        if name in reused:
            offered.outputs[name] = dict(reused[name].outputs)
        elif state is not None and state.items is not None and (
                state.phase is StepPhase.SUCCEEDED):
            _fan_in(step, state.items.total, recorded, offered)
        elif name in recorded:
            offered.outputs[name] = dict(recorded[name])
        elif state is not None and state.phase is StepPhase.SKIPPED:
            offered.outputs[name] = {o["name"]: o["default"] for o in step.get("outputs") or ()
                                     if "default" in o}
    return offered


def _fan_in(step: Obj, total: int, recorded: Mapping[str, dict[str, str]],
            offered: Offered) -> None:
    """A fan-out step that succeeded: each item that did not succeed was skipped."""
    name = step["name"]
    together = items.aggregate_outputs(
        step.get("outputs"), [recorded.get(item_key(name, i)) for i in range(total)])
    offered.outputs[name] = dict(together.outputs)
    offered.too_large.update(((name, o), why) for o, why in together.too_large.items())


def gate(step: Obj, values: Mapping[str, Any], offered: Offered,
         facts: references.Facts | None = None) -> m.Gate | None:
    """The verdict on a gated step whose inputs are there: its condition evaluated on typed
    values, then its references rendered (a fan-out's: its items counted, its condition
    evaluated per item). None: an input is missing (the core waits, or skips the step for an
    output never made; a finally step reading the run's facts waits for the outcome to be
    recorded)."""
    if facts is None and flow.reads_facts(step):
        return None
    for producer, output in flow.consumes(step):
        why = offered.too_large.get((producer, output))
        if why is not None:
            return m.Gate(False, Reason.OUTPUT_TOO_LARGE, why)
    if items.fans_out(step):
        return None  # `items_of` judges it
    when = step.get("when")
    if when:
        evaluated = conditions.evaluate(when, values, offered.outputs, facts)
        if evaluated.error is not None:
            return m.Gate(False, Reason.CONDITION_ERROR,
                          f"when {when!r} could not be evaluated: {evaluated.error}")
        if not evaluated.holds:
            return m.Gate(False, message=f"when {when!r} is false")
    return _renders(step, values, offered.outputs, facts)


def _renders(step: Obj, values: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]],
             facts: references.Facts | None, item: references.Item | None = None
             ) -> m.Gate | None:
    try:
        references.render_step(step, values, outputs, facts, item)
    except KeyError:
        return None
    except references.Malformed as e:
        return m.Gate(False, Reason.INVALID_SPEC, str(e))
    return m.Gate(True)


@dataclass(frozen=True)
class FanOut:
    """A fan-out step's verdict (None: an input is missing) and, when it holds, its items."""

    gate: m.Gate | None
    items: tuple[Any, ...] = ()


_FANS: Bounded[tuple[str, str], FanOut] = Bounded()
"""A fan-out's items once its inputs are there, by (run uid, step): what they are read from is
recorded and never changes, so its items are counted (and its condition evaluated for each)
once, not at every decision."""


def items_of(run: Obj, step: Obj, values: Mapping[str, Any], offered: Offered,
             facts: references.Facts | None, states: Mapping[str, m.StepState]) -> FanOut:
    """`fan_out`, kept once it has a verdict. A run's fan-outs share its item limit: each may
    have what the others' counts leave."""
    key = (run["metadata"].get("uid", ""), step["name"])
    known = _FANS.get(key)
    if known is not None:
        return known
    taken = sum(s.items.total for name, s in states.items()
                if s.items is not None and name != step["name"])
    found = fan_out(step, values, offered, facts, settings.OPTIONS.max_items - taken)
    if found.gate is not None:
        _FANS[key] = found
    return found


def fan_out(step: Obj, values: Mapping[str, Any], offered: Offered,
            facts: references.Facts | None, limit: int) -> FanOut:
    """The items of a fan-out step whose inputs are there, and which of them its condition
    skips; or why it has none it can run."""
    try:
        expansion = items.expand(step, values, offered.outputs, limit)
    except KeyError:
        return FanOut(None)
    if expansion.items is None:
        return FanOut(m.Gate(False, expansion.reason, expansion.message))
    when: str | None = step.get("when")
    skipped: set[int] = set()
    for index, value in enumerate(expansion.items if when else ()):
        evaluated = conditions.evaluate(str(when), values, offered.outputs, facts,
                                        references.Item(index, value))
        if evaluated.error is not None:
            return FanOut(m.Gate(False, Reason.CONDITION_ERROR,
                                 f"when {when!r} could not be evaluated for item {index}: "
                                 f"{evaluated.error}"))
        if not evaluated.holds:
            skipped.add(index)
    first = next((i for i in range(len(expansion.items)) if i not in skipped), None)
    if first is not None:
        trial = _renders(step, values, offered.outputs, facts,
                         references.Item(first, expansion.items[first]))
        if trial is None or not trial.holds:
            return FanOut(trial)
    return FanOut(m.Gate(True, message=f"when {when!r} is false for this item",
                         items=len(expansion.items), skipped=frozenset(skipped)),
                  expansion.items)


def rendered(step: Obj, values: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]],
             facts: references.Facts | None = None, item: references.Item | None = None
             ) -> dict[str, Any]:
    """The step as its StepRun carries it (an item's: with its item): every reference
    rendered (its gate said they render)."""
    return references.render_step(step, values, outputs, facts, item)
