"""`decide(observed, now)`: the one entry point of the core.

A ladder, first rung that holds wins:

1. the run is terminal: its status stands; only upkeep is left (stop what still runs, let
   StepRuns go once their final state is recorded, delete them at the TTL);
2. the run's Story was not found: it waits Pending, then fails `StoryNotFound`;
3. the spec is invalid: the run fails `InvalidSpec` naming the field, nothing starts;
4. otherwise each step is read from its StepRun and workload (`steps`), then the run-level
   ladder (`plan`) says what governs the main steps now; once they are all terminal their
   end is recorded as the run's outcome, and the finally steps' ladder (`finale`) governs the
   run until they are terminal too.

Whatever the rung, the actions follow from comparing what will be true with what was observed
(`_effects`), so deciding again on the result of applying them asks for nothing more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import replace

from runctl.machine.actions import (
    Action,
    CreateStepRun,
    DeleteStepRun,
    RemoveFinalizer,
    StopItems,
    StopWorkload,
    WriteStepRunStatus,
)
from runctl.machine.dag import Problem, validate
from runctl.machine.failures import MAX_MESSAGE
from runctl.machine.finale import finally_clock, finally_stop, plan_finally
from runctl.machine.items import observe_fan_out
from runctl.machine.model import (
    Observed,
    Outcome,
    RunStatus,
    StepRunObservation,
    StepSpec,
    StepState,
    StopState,
    StoryWait,
    WorkloadState,
    lookup,
    step_state,
    step_states_from,
)
from runctl.machine.naming import parse_key
from runctl.machine.phases import (
    RUN_TERMINAL,
    STEP_TERMINAL,
    Mode,
    Reason,
    RunPhase,
    ShutdownMode,
    StepPhase,
    StopTrigger,
    Waiting,
)
from runctl.machine.plan import Clock, Plan, Stop, Tracks, plan
from runctl.machine.slots import suspended
from runctl.machine.status import (
    SUSPENDED_MESSAGE,
    Suspension,
    events,
    late_report_events,
    run_status,
)
from runctl.machine.steps import (
    StepContext,
    Track,
    first_write_held,
    needs_stop,
    observe_step,
    reused_status,
    timers,
)
from runctl.machine.value import value
from runctl.timefmt import fmt_time


@value
class Decision:
    status: RunStatus
    """The whole next StoryRun status."""
    actions: tuple[Action, ...]
    requeue_at: dt.datetime | None
    """The earliest time something happens without anything being observed."""


def decide(observed: Observed, now: dt.datetime) -> Decision:
    """The next status of the run and what to do for it, from a snapshot taken at `now`."""
    if observed.status.phase in RUN_TERMINAL:
        return _finished(observed, now)
    if observed.story_wait is not None:
        return _story_missing(observed, observed.story_wait, now)
    found = tuple(Problem(f, why) for f, why in observed.problems)
    # A run the shell found no definition for (its problems say why) has no steps to check.
    problems = found if found and not observed.spec.steps else (
        *found, *validate(observed.spec))
    if problems:
        return _invalid(observed, problems, now)
    return _progress(observed, now)


# -- rung 1: a terminal run ------------------------------------------------------------------


def _finished(observed: Observed, now: dt.datetime) -> Decision:
    """Terminal is final: the status is kept whole (a stop on it changes nothing); whatever
    still runs is stopped, and a late success is rejected."""
    ctx = StepContext(mode=observed.spec.mode, now=now, halting=True, deadline=None)
    tracks = {**_tracks(observed, ctx), **_final_tracks(observed, ctx)}
    actions = [*_effects(observed, tracks, now, halting=True),
               *(e for _, t in flat(tracks) for e in late_report_events(t))]
    ttl = _ttl_at(observed.status, observed)
    return Decision(observed.status, tuple(actions),
                    ttl if ttl is not None and ttl > now else None)


# -- rung 2: a run of a Story not found (yet) ------------------------------------------------


def _story_missing(observed: Observed, wait: StoryWait, now: dt.datetime) -> Decision:
    """The run has no definition: it waits Pending for its Story until `give_up_at`, then
    fails; a stop ends it at once. Nothing of it has started, so nothing needs stopping."""
    stop = _stop(observed, now)
    if stop is not None:
        p = Plan({}, RunPhase.CANCELED, Reason.CANCELED,
                 f"stopped on request before Story {wait.story} was found",
                 StopTrigger.ALL_STEPS_TERMINAL)
    elif now >= wait.give_up_at:
        p = Plan({}, RunPhase.FAILED, Reason.STORY_NOT_FOUND,
                 f"Story {wait.story} was not found by {fmt_time(wait.give_up_at)}")
    else:
        p = Plan({}, RunPhase.PENDING, Reason.STORY_NOT_FOUND,
                 f"waiting for Story {wait.story}, not found; the run fails if it is still "
                 f"missing at {fmt_time(wait.give_up_at)}")
    return _conclude(observed, p, Clock(now, wait.give_up_at), stop=stop, halting=True)


# -- rung 3: an invalid spec -----------------------------------------------------------------


def _invalid(observed: Observed, problems: tuple[Problem, ...], now: dt.datetime) -> Decision:
    message = "; ".join(str(p) for p in problems)[:MAX_MESSAGE]
    skipped = StepState(StepPhase.SKIPPED, Reason.INVALID_SPEC,
                        "not run: the spec is invalid", finished_at=now)
    tracks = {s.name: Track(s, step_state(observed.status, s.name), None, skipped, None)
              for s in (*observed.spec.steps, *observed.spec.finally_steps)}
    return _conclude(observed, Plan(tracks, RunPhase.FAILED, Reason.INVALID_SPEC, message),
                     Clock(now, None), stop=_stop(observed, now), halting=True)


# -- rung 4: a run going on ------------------------------------------------------------------


def _stop(observed: Observed, now: dt.datetime) -> Stop | None:
    """The stop in effect, if one was requested: dated from its first observation (now)."""
    old = observed.status.stop
    if old is None and not observed.spec.cancel_requested:
        return None
    old = old or StopState(requested_at=None, observed_at=None)
    observed_at = old.observed_at or now
    record = StopState(requested_at=old.requested_at or observed.cancel_requested_at or now,
                       observed_at=observed_at, completed_at=old.completed_at,
                       trigger=old.trigger)
    return Stop(record, observed_at + dt.timedelta(seconds=observed.spec.grace_period_seconds))


def _topology_over(observed: Observed) -> bool:
    """Realtime: an outside hub says the session ended, or the topology had come up and no
    workload has a live pod left. A workload merely not seen yet (Absent) is not gone."""
    if observed.spec.mode is not Mode.REALTIME:
        return False
    if observed.topology_terminated:
        return True
    names = {s.name for s in observed.spec.steps}
    runs = [obs for step, obs in observed.step_runs if step in names]
    came_up = any(obs.status is not None and obs.status.phase is StepPhase.RUNNING
                  for obs in runs) or any(
        s.phase is StepPhase.RUNNING for _, s in observed.status.step_states)
    return came_up and all(_dead(obs) for obs in runs)


def _dead(obs: StepRunObservation) -> bool:
    a = obs.attempt
    if obs.gone or a is None or a.state is WorkloadState.GONE:
        return True
    return a.state not in (WorkloadState.ABSENT, WorkloadState.RUNNING) and a.live_pods == 0


def _observe(observed: Observed, spec: StepSpec, by_key: Mapping[str, StepRunObservation],
             ctx: StepContext) -> Track:
    recorded = step_state(observed.status, spec.name)
    if spec.for_each is not None:
        # A terminal run's TTL deletes every StepRun: no item is left alone then.
        return observe_fan_out(spec, recorded, lookup(observed.gates, spec.name), by_key, ctx,
                               lazy=observed.status.phase not in RUN_TERMINAL)
    return observe_step(spec, recorded, by_key.get(spec.name), ctx,
                        observed.reuse(spec.name))


def _tracks(observed: Observed, ctx: StepContext) -> dict[str, Track]:
    by_key = dict(observed.step_runs)
    return {s.name: _observe(observed, s, by_key, ctx) for s in observed.spec.steps}


def _final_tracks(observed: Observed, ctx: StepContext) -> dict[str, Track]:
    """The finally steps: batch steps whatever the run's mode."""
    if not observed.spec.finally_steps:
        return {}  # most runs have none: no context to make for them
    batch = replace(ctx, mode=Mode.BATCH, topology_over=False)
    by_key = dict(observed.step_runs)
    return {s.name: _observe(observed, s, by_key, batch) for s in observed.spec.finally_steps}


def flat(tracks: Mapping[str, Track]) -> Iterator[tuple[str, Track]]:
    """Every step, or for a fan-out step whose items are known, each of its items, by key."""
    for name, t in tracks.items():
        if t.items is None:
            yield name, t
        else:
            yield from ((i.name, i) for i in t.items)


def _progress(observed: Observed, now: dt.datetime) -> Decision:
    """The main steps until they are all terminal; then their end, recorded as the outcome,
    and the finally steps."""
    spec = observed.spec
    stop = _stop(observed, now)
    if observed.status.outcome is not None:
        return _finale(observed, observed.status.outcome, now, stop=stop)
    started = observed.status.started_at or now
    deadline = (started + dt.timedelta(seconds=spec.timeout_seconds)
                if spec.timeout_seconds is not None else None)
    # Drain: running main steps are left to finish until the grace period's end.
    draining = (spec.shutdown_mode is ShutdownMode.DRAIN and stop is not None
                and now < stop.grace_until)
    halting = stop is not None and not draining
    topology_over = _topology_over(observed)
    ctx = StepContext(mode=spec.mode, now=now, halting=halting, deadline=deadline,
                      topology_over=topology_over, draining=draining,
                      halted_at=stop.record.observed_at if stop is not None else None)
    clock = Clock(now, deadline, stop.grace_until if stop is not None else None)
    p = plan(observed, _tracks(observed, ctx), clock, stop=stop, topology_over=topology_over)
    if p.phase not in RUN_TERMINAL:
        waiting = _final_tracks(observed, ctx)
        if waiting:
            p = replace(p, tracks={**p.tracks, **waiting})
        return _conclude(observed, p, clock, stop=stop, halting=halting)
    outcome = Outcome(p.phase, p.reason, p.message, now)
    if stop is not None:
        # The stop is complete when the main steps (or the topology) have ended: finally
        # steps do not delay it.
        stop = replace(stop, record=replace(stop.record, completed_at=now, trigger=p.trigger))
    if not spec.finally_steps:
        return _conclude(observed, p, clock, stop=stop, halting=True, outcome=outcome)
    return _finale(observed, outcome, now, stop=stop, main=p.tracks, made=p.creates)


def _finale(observed: Observed, outcome: Outcome, now: dt.datetime, *, stop: Stop | None,
            main: Tracks | None = None, made: tuple[CreateStepRun, ...] = ()) -> Decision:
    """The finally steps, once the outcome is known (`main`: the main steps as this decision
    ended them, or None to read them, all terminal, as recorded; `made`: StepRuns this
    decision makes for them, reused ones)."""
    clock = finally_clock(observed, outcome, now, stop)
    halting = finally_stop(observed.spec, stop) is not None
    if main is None:
        main = _tracks(observed, StepContext(mode=observed.spec.mode, now=now, halting=True,
                                             deadline=None))
    finals = _final_tracks(observed, StepContext(
        mode=Mode.BATCH, now=now, halting=halting, deadline=clock.deadline,
        halted_at=stop.record.observed_at if halting and stop is not None else None))
    p = plan_finally(observed, main, finals, clock, outcome, stop=stop)
    return _conclude(observed, replace(p, creates=(*made, *p.creates)), clock, stop=stop,
                     halting=halting, outcome=outcome)


def _conclude(observed: Observed, p: Plan, clock: Clock, *, stop: Stop | None, halting: bool,
              outcome: Outcome | None = None) -> Decision:
    """The status the plan makes, the actions that make it true, and when to look again.
    `halting`: workloads of steps still going are to be stopped now."""
    old, now, spec = observed.status, clock.now, observed.spec
    if suspended(spec) and p.phase in (RunPhase.PENDING, RunPhase.RUNNING):
        p = replace(p, reason=Waiting.SUSPENDED, message=SUSPENDED_MESSAGE)
    states = step_states_from((name, t.state) for name, t in p.tracks.items())
    status = run_status(old, phase=p.phase, reason=p.reason, message=p.message, states=states,
                        stop=stop.record if stop is not None else None, trigger=p.trigger,
                        started_at=old.started_at or now, now=now,
                        generation=observed.generation, outcome=outcome,
                        suspension=Suspension(spec.suspend, spec.cancel_requested))
    actions: list[Action] = [*p.creates]
    actions += _effects(observed, p.tracks, now, halting=halting or p.phase in RUN_TERMINAL)
    actions += p.starts
    actions += events(old, status, p.phase, p.tracks)
    return Decision(status, tuple(_ordered(actions)),
                    _requeue(observed, p, clock, status, now))


def _requeue(observed: Observed, p: Plan, clock: Clock, status: RunStatus,
             now: dt.datetime) -> dt.datetime | None:
    if p.phase in RUN_TERMINAL:
        # Counted from the end this decision records, so it is never in the past, even at 0s.
        return _ttl_at(status, observed)
    times = [clock.deadline, clock.grace_until]
    for _, t in flat(p.tracks):
        if not t.terminal and t.status is not None:
            times += (*timers(t.spec, t.status, t.attempt), first_write_held(t))
    return min((t for t in times if t is not None and t > now), default=None)


# -- actions ---------------------------------------------------------------------------------


def _ttl_at(status: RunStatus, observed: Observed) -> dt.datetime | None:
    ttl = observed.spec.ttl_seconds_after_finished
    if ttl is None or status.finished_at is None:
        return None
    return status.finished_at + dt.timedelta(seconds=ttl)


def _effects(observed: Observed, tracks: Mapping[str, Track], now: dt.datetime, *,
             halting: bool) -> list[Action]:
    """StepRun writes, workload stops, finalizer removals and TTL deletions that follow from
    the next states. A finalizer goes only once the *recorded* run status has the step final."""
    grace = observed.spec.grace_period_seconds
    finals = {s.name for s in observed.spec.finally_steps}
    recorded_terminal = observed.status.phase in RUN_TERMINAL
    ttl_at = _ttl_at(observed.status, observed) if recorded_terminal else None
    ttl_due = ttl_at is not None and now >= ttl_at
    out: list[Action] = []
    every_item: dict[str, None] = {}  # fan-out steps halting: one `StopItems` each, in order
    for name, t in flat(tracks):
        obs = t.observation
        reuse = observed.reuse(name)
        if (reuse is not None and obs is None and not recorded_terminal and t.recorded
                and t.recorded.step_run and t.status is None):
            # Recorded as made, yet never seen: its create never landed. Made again, as any
            # StepRun recorded but never seen (the name makes it idempotent).
            out += [CreateStepRun(name, t.recorded.step_run, None),
                    WriteStepRunStatus(name, reused_status(reuse, now))]
        status, standing = t.status, t.standing
        if (status is not None and status is not standing and (
                # the phase first: most statuses that differ differ there, and it is cheap
                standing is None or status.phase is not standing.phase or status != standing)
                and ((held := first_write_held(t)) is None or now >= held)):
            out.append(WriteStepRunStatus(name, status))
        mode = Mode.BATCH if finals and parse_key(name)[0] in finals else observed.spec.mode
        if needs_stop(mode, t) and (t.terminal or halting):
            step, index = parse_key(name)
            if halting and index is not None and not t.late_report:
                every_item.setdefault(step)
            else:
                out.append(StopWorkload(name, grace))
        if obs is None or obs.gone:
            continue
        kept = t.recorded is not None and t.recorded.phase in STEP_TERMINAL
        if kept and (obs.deleting or ttl_due):
            out.append(RemoveFinalizer(name))
        if ttl_due and not obs.deleting:
            out.append(DeleteStepRun(name))
    out += (StopItems(step, grace) for step in every_item)
    return out


_ORDER = {"CreateStepRun": 0, "WriteStepRunStatus": 1, "StartAttempt": 2, "StopWorkload": 3,
          "StopItems": 3, "RemoveFinalizer": 4, "DeleteStepRun": 5, "EmitEvent": 6}


def _ordered(actions: list[Action]) -> list[Action]:
    """Children first (a StepRun exists before its status and workload), Events last; but the
    end of an item comes before anything is made, so no reader ever sees more items of a
    fan-out going than its parallelism (one ends as another starts). A reused item's status
    follows its StepRun's create, as a step's does: it is made in the same decision."""
    def rank(a: Action) -> int:
        ends = isinstance(a, WriteStepRunStatus) and parse_key(a.step)[1] is not None and (
            a.status.phase in STEP_TERMINAL) and a.status.reused_from is None
        return -1 if ends else _ORDER[type(a).__name__]
    return sorted(actions, key=rank)
