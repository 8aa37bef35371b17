"""Which steps a re-run reuses from the run it re-runs (its source), decided once.

The shell reads the source (each main step's record, its StepRun and the inputs digest the
re-run's step renders to on the source's outputs) when the re-run records what it executes;
`reused` says which steps it takes as they are, and the record keeps the answer, so nothing of
the source is needed afterwards. A step is reused only when nothing it depends on executes
again: the reused steps are closed upstream, so the outputs every one of them reads are the ones
the source made, and its digest, rendered on them, says whether it would run the same pod.

A fan-out step is never reused whole (its record would have to hold every item's outputs):
`reused_items` says which of its items are, one by one, by the same rule, when the re-run is
about to make them (the shell then reads the source's item StepRuns).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from runctl.machine import dag
from runctl.machine.model import Reuse, ReusedFrom, RunSpec, StepRunStatus, StepSpec
from runctl.machine.phases import Mode, StepPhase
from runctl.machine.value import value


@value
class SourceStep:
    """One main step of the source, as the shell read it."""

    phase: StepPhase
    """What the source recorded of it (Pending where it recorded nothing)."""
    step_run: str | None = None
    """Its StepRun, while it exists."""
    uid: str = ""
    status: StepRunStatus | None = None
    recorded_digest: str | None = None
    """The inputs digest its StepRun records (None: made before digests were recorded)."""
    digest: str | None = None
    """The digest the re-run's step renders to on the source's outputs (None: it cannot be
    rendered from them)."""


def _made(found: SourceStep, source_run: str) -> Reuse | None:
    """What reusing the step takes from its StepRun in the source, while that StepRun is there
    and succeeded: the StepRun that really executed it (the one the source itself reused, or
    the source's own) and its outputs."""
    status = found.status
    if found.step_run is None or status is None or status.phase is not StepPhase.SUCCEEDED:
        return None
    made_by = status.reused_from or ReusedFrom(source_run, found.step_run, found.uid)
    return Reuse(made_by, status.outputs)


def why_not(step: StepSpec, source: SourceStep | None, rerun_from: Collection[str],
            reused: Collection[str]) -> str | None:
    """Why the step executes again, first rung that holds; None: it is reused."""
    if step.name in rerun_from:
        return "named in rerun.from"
    again = [n for n in step.needs if n not in reused]
    if again:
        return f"needs {', '.join(again)}, which executes again"
    if source is None or source.phase is not StepPhase.SUCCEEDED:
        return "it did not succeed in the source"
    if source.step_run is None or source.status is None or (
            source.status.phase is not StepPhase.SUCCEEDED):
        return "its StepRun in the source is gone"
    if source.recorded_digest is None:
        return "its StepRun in the source records no inputs digest"
    if source.digest != source.recorded_digest:
        return "its inputs changed"
    return None


def reused(spec: RunSpec, source_run: str, source: Mapping[str, SourceStep],
           rerun_from: Collection[str]) -> tuple[tuple[str, Reuse], ...]:
    """The main steps a re-run of `source_run` reuses, in dependency order, each with the StepRun
    that executed it and its outputs. Finally steps always run again; a realtime run reuses
    nothing (its steps are live servers, not results)."""
    if spec.mode is Mode.REALTIME:
        return ()
    steps = {s.name: s for s in spec.steps}
    out: dict[str, Reuse] = {}
    for name in dag.topological_order(spec.steps):
        found = source.get(name)
        made = _made(found, source_run) if found is not None else None
        if made is not None and why_not(steps[name], found, rerun_from, out) is None:
            out[name] = made
    return tuple(out.items())


def reused_items(spec: RunSpec, step: str, source_run: str, items: Sequence[SourceStep | None],
                 rerun_from: Collection[str], reused_steps: Collection[str]
                 ) -> tuple[tuple[int, Reuse], ...]:
    """The items of the fan-out main step `step` that a re-run of `source_run` reuses, by
    index, each with the StepRun that executed it and its outputs. `items[i]` is the source's
    item of the same index (None: the source had no such item), its `digest` the one the
    re-run's item i renders to (it covers the item's index and value); `reused_steps`: the
    steps the re-run's record reuses. An item is reused as a step is (`why_not`): its step not
    named in `from`, every step it needs reused, its source StepRun Succeeded with the same
    digest. Finally steps and a realtime run's steps reuse nothing."""
    found = next((s for s in spec.steps if s.name == step), None)
    if spec.mode is Mode.REALTIME or found is None or found.for_each is None:
        return ()
    out: list[tuple[int, Reuse]] = []
    for index, item in enumerate(items):
        made = _made(item, source_run) if item is not None else None
        if made is not None and why_not(found, item, rerun_from, reused_steps) is None:
            out.append((index, made))
    return tuple(out)
