"""The StoryRun status a plan makes, and the Events its transitions deserve.

Status is stated whole every time (level-triggered), so writing it twice is harmless; Events are
derived from the difference between the recorded status and the new one, so each transition is
announced once (the shell posts them only after the status write lands).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Literal

from runctl.machine.actions import EmitEvent, EventReason
from runctl.machine.durations import go_duration
from runctl.machine.model import (
    Condition,
    ConditionStatus,
    Outcome,
    RunStatus,
    StepState,
    StepStates,
    StopState,
)
from runctl.machine.phases import (
    RUN_TERMINAL,
    STEP_FAILURES,
    STEP_TERMINAL,
    Reason,
    RunPhase,
    StepPhase,
    StopTrigger,
    Waiting,
)
from runctl.machine.steps import Track
from runctl.machine.value import value

SUCCEEDED = "Succeeded"
SUSPENDED = "Suspended"
"""The conditions the core owns; any other condition (e.g. TopologyTerminated) is kept as is."""


def progress(states: StepStates) -> str:
    """Steps ended out of all: a step not run because the spec is invalid has not ended, it was
    never begun, so such a run reads 0/N rather than as if every step were done."""
    done = sum(1 for _, s in states if s.phase in STEP_TERMINAL
               and not (s.phase is StepPhase.SKIPPED and s.reason == Reason.INVALID_SPEC))
    return f"{done}/{len(states)}"


def _condition_status(phase: RunPhase) -> ConditionStatus:
    if phase is RunPhase.SUCCEEDED:
        return "True"
    return "False" if phase in RUN_TERMINAL else "Unknown"


def conditions(old: Iterable[Condition], phase: RunPhase, reason: str | None,
               message: str | None, now: dt.datetime, generation: int,
               suspension: Suspension | None = None) -> tuple[Condition, ...]:
    """`Succeeded` first (Unknown until terminal), then `Suspended` once the run was ever
    suspended, then the conditions others own, unchanged. A lastTransitionTime moves only when
    its status flips."""
    old = tuple(old)
    mine = [_condition(old, SUCCEEDED, _condition_status(phase), reason or phase.value, message,
                       now, generation)]
    held = _suspended(old, phase, suspension)
    if held is not None:
        mine.append(_condition(old, SUSPENDED, *held, now, generation))
    return (*mine, *(c for c in old if c.type not in (SUCCEEDED, SUSPENDED)))


def _condition(old: tuple[Condition, ...], kind: str, status: ConditionStatus, reason: str,
               message: str | None, now: dt.datetime, generation: int) -> Condition:
    previous = next((c for c in old if c.type == kind), None)
    since = (previous.last_transition_time
             if previous is not None and previous.status == status else now)
    return Condition(type=kind, status=status, reason=reason, message=message,
                     last_transition_time=since, observed_generation=generation)


@value
class Suspension:
    """What the spec says of suspending the run: `spec.suspend`, and whether a stop was
    requested (which lifts it)."""

    suspend: bool
    stop_requested: bool


SUSPENDED_MESSAGE = ("spec.suspend is true: nothing new starts until it is false; what runs "
                     "goes on, and the run's deadline keeps counting")
RESUMED_MESSAGE = "spec.suspend is false: steps start again"
STOP_LIFTS = "a stop was requested: the run ends as any stop ends it"


def _suspended(old: tuple[Condition, ...], phase: RunPhase, suspension: Suspension | None
               ) -> tuple[ConditionStatus, str, str] | None:
    """The `Suspended` condition's status, reason and message; None while the run was never
    suspended."""
    ever = any(c.type == SUSPENDED for c in old)
    if suspension is None or not (suspension.suspend or ever):
        return None
    if phase in RUN_TERMINAL:
        return "False", "RunEnded", "the run ended"
    if suspension.stop_requested:
        return "False", EventReason.STOP_REQUESTED, STOP_LIFTS
    if suspension.suspend:
        return "True", Waiting.SUSPENDED, SUSPENDED_MESSAGE
    return "False", EventReason.RESUMED, RESUMED_MESSAGE


def run_status(old: RunStatus, *, phase: RunPhase, reason: str | None, message: str | None,
               states: StepStates, stop: StopState | None, trigger: StopTrigger | None,
               started_at: dt.datetime, now: dt.datetime, generation: int,
               outcome: Outcome | None, suspension: Suspension | None = None) -> RunStatus:
    """The whole status. A stop completes when the run ends unless it already completed
    (when the main steps ended, before the finally steps); a run that ends with no outcome
    recorded records its end as its outcome."""
    finished = now if phase in RUN_TERMINAL else None
    if stop is not None and finished is not None and stop.completed_at is None:
        stop = StopState(stop.requested_at, stop.observed_at, finished, trigger)
    if outcome is None and finished is not None:
        outcome = Outcome(phase, reason, message, finished)
    return RunStatus(
        phase=phase, reason=reason, message=message, started_at=started_at,
        finished_at=finished,
        duration=go_duration(finished - started_at) if finished is not None else None,
        step_states=states, stop=stop,
        conditions=conditions(old.conditions, phase, reason, message, now, generation,
                              suspension),
        observed_generation=generation, progress=progress(states), outcome=outcome)


def _retried(state: StepState | None) -> int:
    """How many failed attempts a record says were given another try (one Event each, whether
    the retry waits out a backoff or starts at once)."""
    if state is None:
        return 0
    if state.reason == Waiting.RETRY_BACKOFF:
        return state.attempts
    return max(state.attempts - 1, 0)


def _step_events(track: Track) -> list[EmitEvent]:
    state, old = track.state, track.recorded
    events = []
    if state.phase in STEP_FAILURES and (old is None or old.phase is not state.phase):
        events.append(EmitEvent("step", track.name, "Warning", state.reason or state.phase,
                                state.message or state.phase))
    if _retried(state) > _retried(old):
        events.append(EmitEvent("step", track.name, "Normal", EventReason.RETRYING,
                                state.message or EventReason.RETRYING))
    return events + late_report_events(track)


def late_report_events(track: Track) -> list[EmitEvent]:
    """A success reported for a step that already ended otherwise (guarantee 6)."""
    if not track.late_report:
        return []
    state = track.state
    return [EmitEvent("step", track.name, "Warning", EventReason.LATE_REPORT_REJECTED,
                      f"a success was reported for step {track.name} after it ended "
                      f"{state.phase} ({state.reason}); the report is rejected and the step "
                      f"stays {state.phase}")]


def _held(status: RunStatus) -> bool:
    return any(c.type == SUSPENDED and c.status == "True" for c in status.conditions)


def events(old: RunStatus, new: RunStatus, phase: RunPhase, tracks: Mapping[str, Track]
           ) -> list[EmitEvent]:
    """The Events for going from `old` to `new` (whose phase is `phase`)."""
    out: list[EmitEvent] = []
    if old.stop is None and new.stop is not None:
        out.append(EmitEvent("run", None, "Normal", EventReason.STOP_REQUESTED,
                             "stop requested: no step starts from now on"))
    if phase is RunPhase.RUNNING and old.phase in (None, RunPhase.PENDING):
        out.append(EmitEvent("run", None, "Normal", EventReason.STARTED, "the run started"))
    was, now = _held(old), _held(new)
    if now and not was:
        out.append(EmitEvent("run", None, "Normal", EventReason.SUSPENDED, SUSPENDED_MESSAGE))
    elif was and not now and phase not in RUN_TERMINAL and new.stop is None:
        out.append(EmitEvent("run", None, "Normal", EventReason.RESUMED, RESUMED_MESSAGE))
    for track in tracks.values():
        out += _step_events(track)
        out += [e for item in track.items or () for e in late_report_events(item)]
    if phase in RUN_TERMINAL and phase is not old.phase:
        kind: Literal["Normal", "Warning"] = (
            "Normal" if phase in (RunPhase.SUCCEEDED, RunPhase.CANCELED) else "Warning")
        out.append(EmitEvent("run", None, kind, phase,
                             f"{phase} after {new.duration}: {new.message}"))
    return out
