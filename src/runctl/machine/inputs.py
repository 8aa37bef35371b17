"""Whether the outputs a step reads can still be rendered into the StepRuns it has to make.

A step's outputs live on its StepRun (a fan-out step's, on its items' StepRuns); the run's
record says only that it succeeded. A StepRun deleted once its step succeeded takes them with
it (its finalizer goes in the decision that sees the deletion requested, the run's record of
the step being final), and a reader renders them when its StepRun is made: what of a reader is
not made yet never can be. It fails `UpstreamOutputDeleted` in that same decision, rather than
wait for a gate the shell can never give; a StepRun seen gone (the run's record of that
decision lost) fails it the same way. A step a re-run reuses keeps its outputs in the run's
record: its StepRun may go.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from runctl.machine import items
from runctl.machine.model import Observed, StepRunObservation, StepSpec
from runctl.machine.phases import Reason, StepPhase
from runctl.machine.steps import Track, end


def _deleted(obs: StepRunObservation | None) -> bool:
    """Its deletion was requested (it goes once its step's end is recorded), or seen done."""
    return obs is not None and (obs.deleting or obs.gone)


def gone_outputs(observed: Observed, tracks: Mapping[str, Track], spec: StepSpec) -> str | None:
    """Why outputs the step reads are gone, naming each producer and its deleted StepRun (for
    a fan-out producer, the first of its items' deleted); None when none is."""
    why = []
    for producer in dict.fromkeys(p for p, _ in spec.consumes):
        p = tracks[producer]
        if p.state.phase is not StepPhase.SUCCEEDED or observed.reuse(producer) is not None:
            continue
        if p.observation is not None and _deleted(p.observation):
            why.append(f"step {producer}'s outputs are gone: its StepRun "
                       f"{p.observation.name} was deleted after it succeeded")
            continue
        item = next((i for i in p.items or () if _deleted(i.observation)), None)
        if item is not None and item.observation is not None:
            why.append(f"step {producer}'s outputs are gone: the StepRun "
                       f"{item.observation.name} of its item {items.index_of(item)} was "
                       "deleted after it succeeded")
    return "; ".join(why) or None


def _made(t: Track) -> bool:
    """Has it a StepRun (or ended without one): nothing of it is rendered any more."""
    return t.terminal or t.observation is not None or t.state.step_run is not None


def unreadable(observed: Observed, tracks: Mapping[str, Track], t: Track,
               now: dt.datetime) -> Track | None:
    """The step failed for outputs it still has to render that are gone: a step not made yet
    as a whole (a fan-out step with no item made, too), a fan-out step's items not made yet
    each (those made go on). None when nothing of it is left to render, or what it reads is
    all there."""
    if t.terminal or not t.spec.consumes or observed.reuse(t.name) is not None:
        return None
    if t.items is None:
        if _made(t):
            return None
    elif not (t.rest is not None and t.rest.waiting) and all(_made(i) for i in t.items):
        return None
    why = gone_outputs(observed, tracks, t.spec)
    if why is None:
        return None
    verdict = (StepPhase.FAILED, Reason.UPSTREAM_OUTPUT_DELETED, why)
    if t.items is None:
        return end(t, *verdict, now)
    return items.end_items(t, lambda i: None if _made(i) else verdict, now)
