"""The spec's steps as a DAG: validation that names the field, order, and readiness.

The admission webhook refuses a bad spec with these messages before it is stored; `decide` runs
the same checks, so a run that got past admission some other way still ends `InvalidSpec` with a
message naming the field, and nothing of it starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from runctl.machine.model import RunSpec, StepSpec, StepState
from runctl.machine.phases import Mode, Reason, StepPhase
from runctl.machine.value import value


@value
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def validate(spec: RunSpec) -> tuple[Problem, ...]:
    """Every problem of the step graph, in spec order: empty, duplicates (across steps and
    finally), self-needs, unknown needs, a finally step needing a main step, then the first
    cycle of each list (only looked for once the names are sound)."""
    if not spec.steps:
        return (Problem("spec.steps", "a run needs at least one step"),)
    # Where each name is, as (list, index): spelled out only for a problem, since this runs
    # at every decision.
    main = {s.name: ("spec.steps", i) for i, s in enumerate(spec.steps)}
    finals = {s.name: ("spec.finally", i) for i, s in enumerate(spec.finally_steps)}
    problems = [*_duplicates(spec.steps, "spec.steps", {}),
                *_duplicates(spec.finally_steps, "spec.finally", main),
                *_needs(spec.steps, "spec.steps", main, {}),
                *_needs(spec.finally_steps, "spec.finally", finals, main),
                *_fan_outs(spec), *parallelism_problems(spec)]
    if problems:
        return tuple(problems)
    return tuple(Problem(field, "cycle " + " -> ".join(cycle))
                 for field, steps in (("spec.steps", spec.steps),
                                      ("spec.finally", spec.finally_steps))
                 if (cycle := find_cycle(steps)))


def _duplicates(steps: tuple[StepSpec, ...], field: str, taken: Mapping[str, tuple[str, int]]
                ) -> list[Problem]:
    first = dict(taken)
    problems = []
    for i, step in enumerate(steps):
        if step.name in first:
            where, j = first[step.name]
            problems.append(Problem(f"{field}[{i}].name",
                                    f'duplicate step "{step.name}" (also {where}[{j}])'))
        first.setdefault(step.name, (field, i))
    return problems


def _needs(steps: tuple[StepSpec, ...], field: str, known: Mapping[str, object],
           main: Mapping[str, object]) -> list[Problem]:
    """`known`: the names a step of this list may need; `main`: the main steps, when the list
    is the finally steps (which never need one: all are terminal before any finally step)."""
    problems = []
    for i, step in enumerate(steps):
        for need in step.needs:
            if need == step.name:
                problems.append(Problem(f"{field}[{i}].needs",
                                        f'step "{step.name}" cannot need itself'))
            elif need in main:
                problems.append(Problem(f"{field}[{i}].needs",
                                        f'a finally step cannot need main step "{need}": '
                                        "finally steps start once every main step is terminal"))
            elif need not in known:
                problems.append(Problem(f"{field}[{i}].needs", f'unknown step "{need}"'))
    return problems


def _fan_outs(spec: RunSpec) -> list[Problem]:
    """A fan-out in a realtime run (its steps serve until the topology ends: there are no
    items to go through), and a step named like an item of a fan-out step (`<step>-<index>`),
    whose StepRun would share a name with that item's."""
    fanning = {s.name for s in (*spec.steps, *spec.finally_steps) if s.for_each is not None}
    problems = [Problem(f"spec.steps[{i}].forEach",
                        "a realtime run cannot fan out: its steps are services that run until "
                        "the topology ends, not work over items")
                for i, s in enumerate(spec.steps)
                if s.for_each is not None and spec.mode is Mode.REALTIME]
    for field, steps in (("spec.steps", spec.steps), ("spec.finally", spec.finally_steps)):
        for i, s in enumerate(steps):
            owner, _, index = s.name.rpartition("-")
            if owner in fanning and index.isdigit():
                problems.append(Problem(f"{field}[{i}].name",
                                        f'step "{s.name}" would share its StepRun name with '
                                        f'item {index} of fan-out step "{owner}"'))
    return problems


REALTIME_PARALLELISM = ("a realtime run's steps all run at once, as one topology: parallelism "
                        "is for batch runs")


def parallelism_problems(spec: RunSpec) -> list[Problem]:
    """A run's `parallelism` below 1 (no step could ever start), or in a realtime run (its
    steps serve together until the topology ends: none may wait for another to end)."""
    if spec.parallelism is None:
        return []
    if spec.parallelism < 1:
        return [Problem("spec.parallelism", "must be at least 1")]
    if spec.mode is Mode.REALTIME:
        return [Problem("spec.parallelism", REALTIME_PARALLELISM)]
    return []


def find_cycle(steps: tuple[StepSpec, ...]) -> tuple[str, ...]:
    """The first cycle met walking the needs in spec order, closed (a -> b -> a); () if none."""
    needs = {s.name: s.needs for s in steps}
    done: set[str] = set()

    def walk(name: str, path: tuple[str, ...]) -> tuple[str, ...]:
        if name in path:
            return (*path[path.index(name):], name)
        if name in done:
            return ()
        for need in needs[name]:
            cycle = walk(need, (*path, name))
            if cycle:
                return cycle
        done.add(name)
        return ()

    for step in steps:
        cycle = walk(step.name, ())
        if cycle:
            return cycle
    return ()


def topological_order(steps: tuple[StepSpec, ...]) -> tuple[str, ...]:
    """Steps after all they need, ties in spec order (the spec must be valid)."""
    placed: list[str] = []
    left = list(steps)
    while left:
        ready = [s for s in left if set(s.needs) <= set(placed)]
        placed.extend(s.name for s in ready)
        left = [s for s in left if s not in ready]
    return tuple(placed)


def ready_phase(mode: Mode) -> StepPhase:
    """What a need must be for its dependents to start: Succeeded in a batch run; Running in a
    realtime one, where steps are long-lived and start once their upstreams serve."""
    return StepPhase.RUNNING if mode is Mode.REALTIME else StepPhase.SUCCEEDED


PASSED = frozenset({Reason.CONDITION_FALSE, Reason.UPSTREAM_OUTPUT_MISSING})
"""Reasons of a Skipped step that did not fail: a condition is not a failure, so the steps
needing it still run (unless they read an output of it that has no default)."""


def passed(state: StepState) -> bool:
    return state.phase is StepPhase.SKIPPED and state.reason in PASSED


def is_ready(step: StepSpec, states: Mapping[str, StepState], mode: Mode) -> bool:
    want = ready_phase(mode)
    return all(states[need].phase is want or passed(states[need]) for need in step.needs)
