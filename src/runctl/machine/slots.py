"""A run's parallelism (`spec.parallelism`): its slots, who holds one, and what a step that finds
none free shows. A suspended run (`spec.suspend`) has none free, whatever its parallelism.

A step, or an item of a fan-out step, holds a slot from when its StepRun is made until it is
terminal: pending, running, or waiting out a retry backoff (the retry runs in the slot). Who
takes the free ones is `plan.go_on`'s: it walks the steps in DAG order and gives slots out as it
starts steps and items, so a wait is decided afresh at every decision, never left standing
(`steps.observe_step` forgets a recorded one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from runctl.machine.model import RunSpec, StepState
from runctl.machine.phases import StepPhase, Waiting
from runctl.machine.steps import Track
from runctl.machine.value import value


@value
class Slots:
    """The run's slots as a decision fills them: `going` of its steps and items hold one of
    `limit`; a suspended run has none free (and its `limit` may be 0: no bound but that)."""

    limit: int
    going: int
    suspended: bool = False

    @property
    def free(self) -> int:
        return 0 if self.suspended else max(self.limit - self.going, 0)

    @property
    def reason(self) -> Waiting:
        return Waiting.SUSPENDED if self.suspended else Waiting.RUN_PARALLELISM

    def took(self, n: int) -> Slots:
        return replace(self, going=self.going + n) if n else self

    def note(self) -> str:
        if self.suspended:
            return SUSPENDED_NOTE
        return f"waiting for a slot: {self.going} of {self.limit} running"


SUSPENDED_NOTE = "waiting: the run is suspended (spec.suspend); it starts once that is false"


def suspended(spec: RunSpec) -> bool:
    """Whether nothing may start: `spec.suspend`, unless a stop was requested, which ends the
    run as any stop does (its finally steps included)."""
    return spec.suspend and not spec.cancel_requested


def slots(spec: RunSpec, tracks: Mapping[str, Track]) -> Slots | None:
    """The run's slots as `tracks` hold them before anything starts (None: no bound). The
    items of a fan-out step that hold one are all tracks: those at rest ended, those waiting
    have no StepRun (`items.expand`)."""
    held = suspended(spec)
    if spec.parallelism is None and not held:
        return None
    going = 0
    for t in tracks.values():
        if t.items is None:
            going += not t.terminal and t.state.step_run is not None
        else:
            going += sum(1 for i in t.items if not i.terminal and i.state.step_run is not None)
    return Slots(spec.parallelism if spec.parallelism is not None else 0, going, held)


def waiting(t: Track, room: Slots) -> Track:
    """A step ready to start that finds no slot free: Pending, no StepRun, saying why."""
    return replace(t, state=StepState(StepPhase.PENDING, room.reason, room.note()))


def items_waiting(t: Track, room: Slots) -> Track:
    """A fan-out step whose own parallelism would start more of its items than the run's slots
    let start: going on (or Pending), saying why the rest wait."""
    return replace(t, state=replace(t.state, reason=room.reason,
                                    message=f"items {room.note()}"))
