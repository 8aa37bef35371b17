"""One step as its StepRun and workload show it: the step-level ladder.

`observe_step` proposes the step's next StepRun status from what was observed, then passes the
proposal through the transition table against both records of the step (the StepRun's status and
the StoryRun's stepStates entry): a terminal record stands whole whatever is proposed, and a
refused success is a late report (guarantee 6). Run-level rules (stop, timeouts, fail-fast,
topology) then end the steps that are still going, with `end`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from runctl.machine.backoff import delay_seconds, next_start
from runctl.machine.failures import classify, describe
from runctl.machine.model import (
    AttemptObservation,
    Reuse,
    StepRunObservation,
    StepRunStatus,
    StepSpec,
    StepState,
    WorkloadRef,
    WorkloadState,
)
from runctl.machine.naming import parse_key, workload_ref
from runctl.machine.phases import (
    STEP_TERMINAL,
    FailureClass,
    Mode,
    Reason,
    StepPhase,
    Waiting,
)
from runctl.machine.transitions import NoOp, Refused, check_step_transition
from runctl.machine.value import value
from runctl.timefmt import fmt_time

LIVE = frozenset({WorkloadState.PENDING, WorkloadState.RUNNING})
SEEN = LIVE | {WorkloadState.SUCCEEDED, WorkloadState.FAILED}

# Members read for every step and item at every decision, bound once: on Python 3.11 reading a
# member off its Enum class goes through `EnumType.__getattr__`'s hook, several times a
# global's cost.
_ABSENT, _W_RUNNING = WorkloadState.ABSENT, WorkloadState.RUNNING
_W_SUCCEEDED, _W_FAILED, _GONE = WorkloadState.SUCCEEDED, WorkloadState.FAILED, WorkloadState.GONE
_PENDING, _RUNNING, _SUCCEEDED = StepPhase.PENDING, StepPhase.RUNNING, StepPhase.SUCCEEDED
_BACKOFF, _REALTIME, _COMPLETED = Waiting.RETRY_BACKOFF, Mode.REALTIME, Reason.COMPLETED
_FOR_A_SLOT = Waiting.RUN_PARALLELISM


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """What a step's ladder needs to know about its run."""

    mode: Mode
    now: dt.datetime
    halting: bool
    """Work still going is stopped now (a stop that does not drain it, or a run already
    ended): work that ends now ends Canceled, and nothing new starts."""
    deadline: dt.datetime | None
    """The run's deadline: a retry that could not start before it is not made."""
    topology_over: bool = False
    """A realtime run's topology terminated: a deleted workload is its end, not a loss."""
    draining: bool = False
    """A Drain stop is in effect: what runs may finish with its own result, but nothing new
    starts (no Pending step becomes Running, no retry)."""
    halted_at: dt.datetime | None = None
    """When the stop that halts or drains the work was observed. An item whose Running write
    is held back (`first_write_held`) was counted Running by the run's record from the first
    decision that saw its workload run; if that was before the stop, it is stopped as running,
    never said not started."""


@value
class Rest:
    """The items of a fan-out step that nothing in this decision can change or act on, held
    as counts: most items of a wide fan-out are such at every decision (`items.expand`)."""

    waiting: tuple[int, ...] = ()
    """Items with no StepRun, not skipped, in index order: Pending until `plan` starts them
    or a rule ends them (it then makes them tracks)."""
    ended: tuple[tuple[StepPhase, int], ...] = ()
    """Items whose StepRun records their end and whose workload holds nothing: how many in
    each phase, in `StepPhase` order."""
    failures: tuple[tuple[dt.datetime, int, StepState], ...] = ()
    """The failed ones among them, (when, index, state), in index order."""
    canceled: tuple[int, StepState] | None = None
    """The first canceled one among them (index, state)."""


@value
class Track:
    """One step in this decision: its records as observed and as they will be written."""

    spec: StepSpec
    recorded: StepState | None
    observation: StepRunObservation | None
    state: StepState
    status: StepRunStatus | None
    """The StepRun status to write; None when there is no StepRun to write to."""
    late_report: bool = False
    """A success was reported for a step already ended otherwise (guarantee 6)."""
    standing: StepRunStatus | None = None
    """The StepRun's status as it stands: as written, or for one never written, the first
    attempt its existence implies. `status` is written only where it differs."""
    items: tuple[Track, ...] | None = None
    """A fan-out step whose items are known: a track for each item this decision may change
    or act on, in index order; the others are counted in `rest` (`state` is then what they
    all add up to, `runctl.machine.items`). None for any other step."""
    rest: Rest | None = None
    """A fan-out step's items held as counts, not tracks (`items`)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def terminal(self) -> bool:
        return self.state.phase in STEP_TERMINAL

    @property
    def started(self) -> bool:
        """Its workload ran (a retry backoff included): stopping it is a cancel, not a skip."""
        return self.state.phase is StepPhase.RUNNING

    @property
    def attempt(self) -> AttemptObservation | None:
        """The observed workload, when it is the one of the attempt the StepRun names."""
        obs = self.observation
        if obs is None or self.status is None:
            return None
        return current_attempt(obs, self.status)


def current_attempt(obs: StepRunObservation, status: StepRunStatus
                    ) -> AttemptObservation | None:
    """The observed workload, when it is the one of the attempt `status` names."""
    attempt = obs.attempt
    return attempt if attempt is not None and attempt.attempt == status.attempts else None


def in_backoff(status: StepRunStatus) -> bool:
    return status.reason == _BACKOFF


def attempt_started_at(status: StepRunStatus) -> dt.datetime | None:
    return status.next_attempt_at or status.started_at


def state_of(status: StepRunStatus, step_run: str) -> StepState:
    return StepState(phase=status.phase, reason=status.reason, message=status.message,
                     step_run=step_run, attempts=status.attempts,
                     started_at=status.started_at, finished_at=status.finished_at)


def first_status(mode: Mode, step_run: str, recorded: StepState | None,
                 made: dt.datetime) -> StepRunStatus:
    """A StepRun's status before anything was written: its first attempt, started when the
    run recorded the step started (else when the StepRun was `made`). Nothing needs writing
    for it: a StepRun with no status is that, so its first write is the one that records its
    workload running, or the step's end (`propose`)."""
    started = recorded.started_at if recorded is not None else None
    return StepRunStatus(phase=_PENDING, attempts=1, started_at=started or made,
                         workload=workload_ref(mode, step_run, 1))


def reused_status(reuse: Reuse, now: dt.datetime) -> StepRunStatus:
    """The one status of a step a re-run reuses: Succeeded from the start, the outputs of the
    StepRun that executed it, no attempt and no workload."""
    made_by = reuse.source
    return StepRunStatus(
        phase=StepPhase.SUCCEEDED, reason=Reason.REUSED,
        message=f"not executed: reused the result of StepRun {made_by.step_run} of run "
                f"{made_by.story_run}", attempts=0, finished_at=now, outputs=reuse.outputs,
        reused_from=made_by)


def recreated_status(recorded: StepState, mode: Mode, now: dt.datetime) -> StepRunStatus:
    """The status of a StepRun created again for a step the run recorded as started but whose
    StepRun was never seen. Its attempt starts now (its timeout counts from now); a step
    recorded Running goes on at its attempt, never back to Pending."""
    if recorded.phase is StepPhase.PENDING:
        return StepRunStatus(phase=StepPhase.PENDING, attempts=1, started_at=now,
                             workload=workload_ref(mode, recorded.step_run or "", 1))
    attempts = max(1, recorded.attempts)
    return StepRunStatus(phase=recorded.phase, attempts=attempts,
                         started_at=recorded.started_at or now, next_attempt_at=now,
                         workload=workload_ref(mode, recorded.step_run or "", attempts))


def _ended(status: StepRunStatus, phase: StepPhase, reason: str, message: str | None,
           now: dt.datetime) -> StepRunStatus:
    return replace(status, phase=phase, reason=reason, message=message, finished_at=now)


def _deletion(ctx: StepContext, what: str) -> tuple[StepPhase, Reason, str]:
    if ctx.halting:
        return StepPhase.CANCELED, Reason.CANCELED, f"stopped: its {what} was deleted"
    return (StepPhase.LOST, Reason.WORKLOAD_DELETED,
            f"its {what} was deleted while the step was not finished")


def _on_failure(spec: StepSpec, status: StepRunStatus, attempt: AttemptObservation,
                ctx: StepContext) -> StepRunStatus:
    failure = classify(attempt, spec.retry)
    text = describe(attempt, failure)
    if ctx.halting:
        return _ended(status, StepPhase.CANCELED, Reason.CANCELED, f"stopped: {text}", ctx.now)
    upcoming = status.attempts + 1
    retry_at = next_start(spec.retry, upcoming, ctx.now)
    if (failure is FailureClass.TRANSIENT and ctx.mode is Mode.BATCH and not ctx.draining
            and status.attempts <= spec.retry.limit
            and (ctx.deadline is None or retry_at < ctx.deadline)):
        return replace(status, reason=Waiting.RETRY_BACKOFF, failure_class=failure,
                       message=f"{text}; attempt {upcoming} of {spec.retry.limit + 1} after "
                               f"{delay_seconds(spec.retry, upcoming)}s, at "
                               f"{fmt_time(retry_at)}",
                       next_attempt_at=retry_at, phase=StepPhase.RUNNING)
    return replace(_ended(status, StepPhase.FAILED, Reason.STEP_FAILED, text, ctx.now),
                   failure_class=failure)


def _heartbeat_due(spec: StepSpec, status: StepRunStatus,
                   attempt: AttemptObservation | None) -> dt.datetime | None:
    """When a running step that stays silent is Lost; None if no heartbeat is expected now."""
    running = status.phase is _RUNNING or (
        attempt is not None and attempt.state is _W_RUNNING)
    if spec.heartbeat_timeout_seconds is None or not running or in_backoff(status):
        return None
    seen = [t for t in (status.heartbeat_at, attempt_started_at(status),
                        attempt.started_at if attempt else None) if t is not None]
    return max(seen) + dt.timedelta(seconds=spec.heartbeat_timeout_seconds)


def _attempt_due(spec: StepSpec, status: StepRunStatus) -> dt.datetime | None:
    """When the current attempt times out; None without one running under a timeout."""
    started = attempt_started_at(status)
    if spec.timeout_seconds is None or started is None or in_backoff(status):
        return None
    return started + dt.timedelta(seconds=spec.timeout_seconds)


def timers(spec: StepSpec, status: StepRunStatus,
           attempt: AttemptObservation | None) -> tuple[dt.datetime, ...]:
    """The times at which a going step changes without anything being observed."""
    backoff = in_backoff(status)
    if spec.timeout_seconds is None and spec.heartbeat_timeout_seconds is None and not backoff:
        return ()  # most steps and items: checked first, at a fraction of the cost
    retry = status.next_attempt_at if backoff else None
    return tuple(t for t in (retry, _heartbeat_due(spec, status, attempt),
                             _attempt_due(spec, status)) if t is not None)


ITEM_RUNNING_AFTER = dt.timedelta(seconds=5)
"""How long an item's workload runs before its StepRun, never written yet, records it Running."""


def first_write_held(track: Track) -> dt.datetime | None:
    """Until when an item's first StepRun write waits, if it would only say the item runs
    (None: written at once). Most items of a wide fan-out end within seconds; their one write
    is then their end, not Running and then their end. Any end, a retry and any step that is
    not an item are written at once; the run's record counts the item Running meanwhile."""
    obs, status = track.observation, track.status
    if (obs is None or obs.status is not None or status is None
            or status.phase is not _RUNNING or status.attempts != 1
            or parse_key(track.name)[1] is None):
        return None
    attempt = track.attempt
    started = (attempt.started_at if attempt is not None else None) or status.started_at
    return None if started is None else started + ITEM_RUNNING_AFTER


def _succeeded(status: StepRunStatus, attempt: AttemptObservation,
               now: dt.datetime) -> StepRunStatus:
    """A success, if its outputs meet the step's declarations; else a Permanent failure (the
    same program would report the same outputs again)."""
    if attempt.output_problem is not None:
        reason, why = attempt.output_problem
        return replace(_ended(status, StepPhase.FAILED, reason, why, now),
                       failure_class=FailureClass.PERMANENT)
    note = (f"outputs {', '.join(attempt.defaulted)} took their defaults"
            if attempt.defaulted else None)
    # Built whole, as in `seen`: every item of a wide fan-out ends here.
    return StepRunStatus(
        phase=_SUCCEEDED, reason=_COMPLETED, message=note,
        attempts=status.attempts, started_at=status.started_at, finished_at=now,
        heartbeat_at=status.heartbeat_at, outputs=attempt.outputs, failure_class=None,
        workload=status.workload, next_attempt_at=status.next_attempt_at,
        reused_from=status.reused_from)


def vanished(obs: StepRunObservation, status: StepRunStatus) -> StepRunObservation:
    """A workload its StepRun records as seen, now absent: it was deleted (perhaps while no
    operator watched, so no deletion was observed), never a create still to land."""
    attempt = obs.attempt
    if (attempt is None or attempt.state is not _ABSENT
            or status.workload is None or not status.workload.observed):
        return obs
    return replace(obs, attempt=replace(attempt, state=WorkloadState.GONE))


def seen(status: StepRunStatus, workload: WorkloadRef) -> StepRunStatus:
    """`status` with its workload recorded as seen, built whole: `replace` costs several times
    more, and every running item of a fan-out comes here at every decision."""
    return StepRunStatus(
        phase=status.phase, reason=status.reason, message=status.message,
        attempts=status.attempts, started_at=status.started_at, finished_at=status.finished_at,
        heartbeat_at=status.heartbeat_at, outputs=status.outputs,
        failure_class=status.failure_class,
        workload=WorkloadRef(workload.kind, workload.name, observed=True),
        next_attempt_at=status.next_attempt_at, reused_from=status.reused_from)


def propose(spec: StepSpec, status: StepRunStatus, obs: StepRunObservation,
            attempt: AttemptObservation | None, ctx: StepContext) -> StepRunStatus:
    """The StepRun's next status from its workload, first matching rule wins; a workload seen
    is recorded as seen (`WorkloadRef.observed`)."""
    now = ctx.now
    state = attempt.state if attempt is not None else _ABSENT
    if state in SEEN and status.workload is not None and not status.workload.observed:
        status = seen(status, status.workload)
    if ctx.topology_over and (obs.deleting or state is _GONE):
        return status
    if attempt is not None and state is _W_SUCCEEDED:
        return _succeeded(status, attempt, now)
    if obs.deleting:
        return _ended(status, *_deletion(ctx, "StepRun"), now)
    if in_backoff(status):
        return status
    if attempt is not None and state is _W_FAILED:
        return _on_failure(spec, status, attempt, ctx)
    if state is _GONE:
        return _ended(status, *_deletion(ctx, "workload"), now)
    heartbeat_due = _heartbeat_due(spec, status, attempt)
    if heartbeat_due is not None and now >= heartbeat_due:
        return _ended(status, StepPhase.LOST, Reason.HEARTBEAT_EXPIRED,
                      f"no heartbeat for {spec.heartbeat_timeout_seconds}s", now)
    attempt_due = _attempt_due(spec, status)
    if attempt_due is not None and now >= attempt_due:
        return _ended(status, StepPhase.TIMED_OUT, Reason.TIMED_OUT,
                      f"attempt {status.attempts} did not finish within "
                      f"{spec.timeout_seconds}s", now)
    if state is _W_RUNNING and not (
            (ctx.halting or ctx.draining) and status.phase is _PENDING
            and not _counted_running(spec, obs, attempt, ctx.halted_at)):
        return status if status.phase is _RUNNING else replace(
            status, phase=_RUNNING)
    return status


def _counted_running(spec: StepSpec, obs: StepRunObservation,
                     attempt: AttemptObservation | None, halted_at: dt.datetime | None) -> bool:
    """An item whose StepRun was never written, whose workload ran before the stop was seen:
    the run's record counted it Running meanwhile (`StepContext.halted_at`). Both times are
    read back to the second: one shared second counts as before, as the first decision after
    the stop, which held the exact time, counted it."""
    return (obs.status is None and attempt is not None and attempt.started_at is not None
            and halted_at is not None and attempt.started_at <= halted_at
            and parse_key(spec.name)[1] is not None)


def _final(old: StepPhase, new: StepPhase) -> bool:
    """Does the transition table keep the old record? Yes when it refuses the move, and when a
    terminal phase is written again (the final record then stands whole, details included)."""
    match check_step_transition(old, new):
        case Refused():
            return True
        case NoOp():
            return old in STEP_TERMINAL
        case _:
            return False


def keep_final(old: StepRunStatus | None, new: StepRunStatus) -> StepRunStatus:
    return old if old is not None and _final(old.phase, new.phase) else new


def keep_final_state(old: StepState | None, new: StepState) -> StepState:
    return old if old is not None and _final(old.phase, new.phase) else new


def observe_step(spec: StepSpec, recorded: StepState | None, obs: StepRunObservation | None,
                 ctx: StepContext, reuse: Reuse | None = None) -> Track:
    """The step as observed, before any run-level rule. A reused step has no workload to read:
    its StepRun is what the reuse made it."""
    if obs is None:
        # A wait for a slot is decided afresh at every decision (`plan.go_on`).
        if recorded is None or recorded.reason == _FOR_A_SLOT:
            return Track(spec, recorded, None, StepState(_PENDING), None)
        return Track(spec, recorded, None, recorded, None)
    if reuse is not None and not obs.gone:
        status = obs.status or reused_status(reuse, ctx.now)  # none yet: written now
        return Track(spec, recorded, obs, keep_final_state(recorded, state_of(status, obs.name)),
                     status, standing=obs.status)
    if obs.gone:
        base = recorded or StepState(StepPhase.PENDING, step_run=obs.name)
        if ctx.topology_over:
            return Track(spec, recorded, obs, base, None)
        phase, reason, message = _deletion(ctx, "StepRun")
        ended = replace(base, phase=phase, reason=reason, message=message,
                        finished_at=ctx.now)
        return Track(spec, recorded, obs, keep_final_state(recorded, ended), None)
    current = obs.status or first_status(ctx.mode, obs.name, recorded,
                                         obs.created_at or ctx.now)
    reporter = current_attempt(vanished(obs, current), current)
    proposed = propose(spec, current, obs, reporter, ctx)
    status = keep_final(obs.status, proposed)
    if recorded is not None and _final(recorded.phase, status.phase):
        # The run recorded the step final before its StepRun's own write landed: the StepRun
        # follows the record (unless it is final itself, differently: then both stand).
        state = recorded
        status = keep_final(obs.status, replace(
            current, phase=recorded.phase, reason=recorded.reason, message=recorded.message,
            finished_at=recorded.finished_at))
    else:
        state = state_of(status, obs.name)
    # A success reported (its outputs may still fail their declarations) for a step that had
    # already ended otherwise.
    reported = proposed.phase is _SUCCEEDED or (
        reporter is not None and reporter.output_problem is not None
        and proposed.reason == reporter.output_problem[0])
    late = (reporter is not None and not reporter.stopping and reported
            and state.phase is not proposed.phase)
    return Track(spec, recorded, obs, state, status, late_report=late, standing=current)


def end(track: Track, phase: StepPhase, reason: str, message: str,
        now: dt.datetime) -> Track:
    """End a step that is still going, in both its records."""
    state = replace(track.state, phase=phase, reason=reason, message=message, finished_at=now)
    status = None if track.status is None else _ended(track.status, phase, reason, message, now)
    return replace(track, state=state, status=status)


def start(track: Track, status: StepRunStatus, step_run: str) -> Track:
    return replace(track, status=status, state=state_of(status, step_run))


def start_first(track: Track, status: StepRunStatus, step_run: str) -> Track:
    """A StepRun made now for its first attempt: its status is the one its existence implies
    (`first_status`), so none is written."""
    # Built whole: `replace` costs several times more, and a wide fan-out starts hundreds of
    # items in one decision.
    return Track(track.spec, track.recorded, track.observation, state_of(status, step_run),
                 status, track.late_report, status, track.items, track.rest)


def needs_stop(mode: Mode, track: Track) -> bool:
    """Its workload may still hold pods and no stop was sent yet."""
    attempt = track.observation.attempt if track.observation else None
    if attempt is None or attempt.stopping:
        return False
    return track.late_report or holds_pods(mode, attempt)


def holds_pods(mode: Mode, attempt: AttemptObservation) -> bool:
    """The workload may still hold pods (a failed realtime one keeps its Deployment)."""
    if attempt.state in LIVE or attempt.live_pods > 0:
        return True
    return mode is _REALTIME and attempt.state is _W_FAILED
