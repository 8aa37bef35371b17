"""The run-level ladder: which rule governs the run now, and what it does to its steps.

Each rule is a predicate in `plan`, tried in order; the first that holds decides the run's phase
and ends the steps it must. Ending a step here writes both of its records (see `steps.end`);
steps already terminal are never touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import replace

from runctl.machine import dag, inputs, items
from runctl.machine.actions import CreateStepRun, StartAttempt
from runctl.machine.model import (
    ForEach,
    Gate,
    Observed,
    Reuse,
    StepSpec,
    StepState,
    StopState,
    WorkloadState,
    lookup,
    step_state,
)
from runctl.machine.naming import item_key, step_run_name, workload_ref
from runctl.machine.phases import (
    STEP_FAILURES,
    STEP_TERMINAL,
    Mode,
    OnFailure,
    Reason,
    RunPhase,
    StepPhase,
    StopTrigger,
    Waiting,
)
from runctl.machine.slots import (
    SUSPENDED_NOTE,
    Slots,
    items_waiting,
    slots,
    suspended,
    waiting,
)
from runctl.machine.steps import (
    StepContext,
    Track,
    end,
    first_status,
    in_backoff,
    recreated_status,
    reused_status,
    start,
    start_first,
    state_of,
)
from runctl.machine.value import value

Tracks = Mapping[str, Track]


@value
class Stop:
    """A stop in effect: nothing starts any more, and what still runs at `grace_until` is
    recorded canceled anyway."""

    record: StopState
    """The stop as the run's status records it."""
    grace_until: dt.datetime
    """The end of its grace period: its first observation plus gracePeriodSeconds."""


@value
class Clock:
    """The times at which the steps a ladder governs change without anything being observed,
    all known before the ladder runs."""

    now: dt.datetime
    deadline: dt.datetime | None
    """Their deadline (the run's: startedAt + timeoutSeconds), if they have one."""
    grace_until: dt.datetime | None = None
    """The grace period's end of the stop that governs them; None when none does."""


@value
class Plan:
    tracks: Tracks
    phase: RunPhase
    reason: str | None = None
    message: str | None = None
    trigger: StopTrigger | None = None
    creates: tuple[CreateStepRun, ...] = ()
    starts: tuple[StartAttempt, ...] = ()


def _going(tracks: Tracks) -> list[Track]:
    return [t for t in tracks.values() if not t.terminal]


def _ending(tracks: Tracks, rule: Callable[[Track], tuple[StepPhase, str, str] | None],
            now: dt.datetime) -> dict[str, Track]:
    """`tracks` with each going step ended as `rule` says (None: left going)."""
    out = dict(tracks)
    for track in _going(tracks):
        if track.items is not None:
            out[track.name] = items.end_items(track, rule, now)
            continue
        verdict = rule(track)
        if verdict is not None:
            out[track.name] = end(track, *verdict, now)
    return out


def first_failure(tracks: Tracks) -> Track | None:
    """The first failed step (a fan-out fails with its first failed item): by failure time,
    ties in spec order (tracks are in spec order)."""
    failed = [(at, t) for t in tracks.values() if (at := items.failed_at(t)) is not None]
    return min(failed, key=lambda f: f[0])[1] if failed else None


def _verdict(tracks: Tracks, success_reason: str, success_message: str) -> Plan:
    """A run whose steps are all terminal: Failed with its first failure's words, else
    Succeeded."""
    failed = first_failure(tracks)
    if failed is not None:
        return Plan(tracks, RunPhase.FAILED, failed.state.reason, failed.state.message)
    return Plan(tracks, RunPhase.SUCCEEDED, success_reason, success_message)


# -- the rules, in order ---------------------------------------------------------------------


def _topology_terminated(tracks: Tracks, stop: Stop | None, now: dt.datetime) -> Plan:
    """Realtime: the session is over. Everything ends in this one decision (guarantee 4)."""
    def rule(t: Track) -> tuple[StepPhase, str, str]:
        if stop is not None:
            if t.started:
                return StepPhase.CANCELED, Reason.CANCELED, "stopped: the topology terminated"
            return (StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                    "not started: the run was stopped")
        if t.started:
            return (StepPhase.SUCCEEDED, Reason.TOPOLOGY_TERMINATED,
                    "the topology terminated")
        return (StepPhase.CANCELED, Reason.TOPOLOGY_TERMINATED,
                "not started: the topology terminated first")

    ended = _ending(tracks, rule, now)
    if stop is not None:
        return Plan(ended, RunPhase.CANCELED, Reason.CANCELED,
                    "stopped on request; the topology terminated",
                    StopTrigger.TOPOLOGY_TERMINATED)
    return _verdict(ended, Reason.TOPOLOGY_TERMINATED, "the topology terminated")


def timed_out(tracks: Tracks, deadline: str, message: str, now: dt.datetime) -> Plan:
    """`deadline` ("the run's deadline") passed: what runs times out, the rest never starts."""
    def rule(t: Track) -> tuple[StepPhase, str, str]:
        if t.started:
            return StepPhase.TIMED_OUT, Reason.TIMED_OUT, f"{deadline} passed"
        return (StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                f"not started: {deadline} passed")

    return Plan(_ending(tracks, rule, now), RunPhase.TIMED_OUT, Reason.TIMED_OUT, message)


def stopped(tracks: Tracks, now: dt.datetime, stop: Stop, grace: int) -> Plan:
    """A stop is in effect: nothing starts; what did not start is canceled at once; what runs
    gets until the grace period's end to go (stopped at once, or drained: that is the shell's
    StopWorkload, sent or not), then is recorded canceled anyway."""
    def rule(t: Track) -> tuple[StepPhase, str, str] | None:
        if not t.started:
            return (StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                    "not started: the run was stopped")
        if t.status is not None and in_backoff(t.status):
            return StepPhase.CANCELED, Reason.CANCELED, "stopped while waiting to retry"
        return None

    tracks = _ending(tracks, rule, now)
    if now >= stop.grace_until:
        forced = _ending(tracks, lambda _: (
            StepPhase.CANCELED, Reason.GRACE_PERIOD_EXPIRED,
            f"still running {grace}s after the stop: recorded canceled"), now)
        return Plan(forced, RunPhase.CANCELED, Reason.CANCELED,
                    f"stopped on request; the grace period of {grace}s expired",
                    StopTrigger.GRACE_PERIOD_EXPIRED)
    going = _going(tracks)
    if not going:
        return Plan(tracks, RunPhase.CANCELED, Reason.CANCELED,
                    "stopped on request; every step ended", StopTrigger.ALL_STEPS_TERMINAL)
    return Plan(tracks, RunPhase.STOPPING, Waiting.STOP_REQUESTED,
                f"stopping: waiting for {len(going)} running step(s) to end")


def _blocked(mode: Mode, need: StepState) -> bool:
    """Can a step needing this one never start? (batch: it will not succeed, and was not
    merely skipped by a condition; realtime: it will not be Running again)."""
    if mode is Mode.REALTIME:
        return need.phase in STEP_TERMINAL
    return need.phase in STEP_FAILURES or (need.phase is StepPhase.SKIPPED
                                           and not dag.passed(need))


def _missing(tracks: Tracks, t: Track) -> list[str]:
    """The outputs the step reads that will never exist: their producer ended without
    succeeding (a finally step reads main steps it does not need), and they have no default
    or the producer was not skipped (only a skip stands in with defaults)."""
    out = []
    for producer, name in t.spec.consumes:
        p = tracks[producer]
        declared = next((o for o in p.spec.outputs if o.name == name), None)
        defaulted = p.state.phase is StepPhase.SKIPPED and declared and declared.has_default
        if p.terminal and p.state.phase is not StepPhase.SUCCEEDED and not defaulted:
            out.append(f"steps.{producer}.outputs.{name}")
    return out


def _skip(tracks: Tracks, t: Track, mode: Mode, now: dt.datetime) -> Track:
    """A step with no StepRun yet that never can have one: needing a failed or skipped step
    (Skipped/UpstreamFailed), or reading an output that will never exist
    (Skipped/UpstreamOutputMissing). Anything else is returned as it is."""
    if t.terminal or t.observation is not None or t.items is not None:
        return t
    failed = [n for n in t.spec.needs if _blocked(mode, tracks[n].state)]
    if failed:
        return end(t, StepPhase.SKIPPED, Reason.UPSTREAM_FAILED,
                   f"needs {', '.join(failed)}, which did not succeed", now)
    missing = _missing(tracks, t)
    if missing:
        return end(t, StepPhase.SKIPPED, Reason.UPSTREAM_OUTPUT_MISSING,
                   f"reads {', '.join(missing)}, which was never made (its step did not "
                   "succeed) and has no default", now)
    return t


def _skip_blocked(tracks: Tracks, order: tuple[str, ...], mode: Mode,
                  now: dt.datetime) -> dict[str, Track]:
    """Every step `_skip` ends, in dependency order so a skip travels down the graph."""
    out = dict(tracks)
    for name in order:
        out[name] = _skip(out, out[name], mode, now)
    return out


def gate_verdicts(observed: Observed, tracks: Tracks, order: tuple[str, ...], mode: Mode,
                  now: dt.datetime) -> dict[str, Track]:
    """Gated steps whose gate has its verdict, before the failure policy is applied so the
    run reacts to them in the same decision: outputs it reads that are gone with their
    StepRun (`inputs.unreadable`), or a gate that says the step cannot run at all (its
    condition failed to evaluate, its references would not render, its items cannot be had)
    fail it; a condition false skips it. In dependency order (`order`), so a skip lets the
    steps below it be judged in the same decision. `tracks` may hold more steps (the main
    ones, for finally steps), which are read, never judged."""
    out = dict(tracks)
    for name in order:
        t = out[name]
        # A step that will not run anyway (a need failed, an output never made) is skipped
        # by `go_on`, as it would be were the outputs there.
        lost = inputs.unreadable(observed, out, t, now) if t.spec.consumes and not _skip(
            out, t, mode, now).terminal else None
        if lost is not None:
            out[name] = lost
            continue
        if t.terminal or not t.spec.gated or t.state.step_run is not None or (
                t.observation is not None or t.items is not None
                or observed.reuse(t.name) is not None):
            continue
        states = {n: out[n].state for n in {*t.spec.needs, *(p for p, _ in t.spec.consumes)}}
        gate = _gate(observed, t, states) if dag.is_ready(t.spec, states, mode) else None
        if gate is not None and gate.reason is not None:
            out[name] = end(t, StepPhase.FAILED, gate.reason, gate.message or gate.reason, now)
        elif gate is not None and not gate.holds:
            out[name] = _condition_false(t, gate, now)
        elif gate is not None and t.spec.for_each is not None and (
                len(gate.skipped) >= gate.items):
            # No item to run (none, or its condition skips them all): ended as it is made.
            out[name] = items.expand(t.spec, t.recorded, gate.items, gate, {},
                                     _context(now, mode, None))
    return out


def _condition_false(t: Track, gate: Gate, now: dt.datetime) -> Track:
    return end(t, StepPhase.SKIPPED, Reason.CONDITION_FALSE,
               gate.message or "its condition is false", now)


def _fail_fast(tracks: Tracks, failed: Track, order: tuple[str, ...], mode: Mode,
               now: dt.datetime) -> Plan:
    """onFailure: stop. Dependents of the failure are skipped, other steps that had not
    started are canceled before start, running ones are canceled (their workloads stopped). A
    fan-out that failed at an item has its verdict once its other items are ended: first."""
    def rule(t: Track) -> tuple[StepPhase, str, str]:
        if t.started:
            return StepPhase.CANCELED, Reason.CANCELED, f"stopped: step {failed.name} failed"
        return (StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                f"not started: step {failed.name} failed")

    first = _ending({failed.name: failed}, rule, now)
    ended = _ending(_skip_blocked({**tracks, **first}, order, mode, now), rule, now)
    verdict = ended[failed.name].state
    return Plan(ended, RunPhase.FAILED, verdict.reason, verdict.message)


def _gate(observed: Observed, t: Track, states: Mapping[str, StepState]) -> Gate | None:
    """The shell's gate for a gated step, once every producer it reads has its outputs
    recorded on its StepRun (or was skipped, its defaults standing in): no step starts before
    the outputs it reads are recorded. A fan-out's outputs are on its items' StepRuns, which
    are written before the run's record of it: its record says when they all are. A step a
    re-run reuses has its outputs in the run's record (its StepRun may be gone since)."""
    for producer in {p for p, _ in t.spec.consumes}:
        obs = lookup(observed.step_runs, producer)
        record = step_state(observed.status, producer)
        succeeded = states[producer].phase is StepPhase.SUCCEEDED
        recorded = (obs is not None and obs.status is not None
                    and obs.status.phase is StepPhase.SUCCEEDED) or (
            record is not None and record.items is not None
            and record.phase is StepPhase.SUCCEEDED) or (
            succeeded and observed.reuse(producer) is not None)
        if not (recorded or states[producer].phase is StepPhase.SKIPPED):
            return None
    return lookup(observed.gates, t.name)


def _reuse(observed: Observed, t: Track, reuse: Reuse, states: Mapping[str, StepState],
           clock: Clock, mode: Mode) -> tuple[Track, CreateStepRun | None, None]:
    """A step a re-run reuses: once the steps it needs are (they are reused too, earlier in
    the order), its StepRun is made with its final status, and nothing ever runs for it. An
    item whose StepRun was made but whose status never landed gets that status now."""
    obs = t.observation
    if obs is not None and obs.status is None and not obs.gone:
        return start(t, reused_status(reuse, clock.now), obs.name), None, None
    if t.observation is not None or not dag.is_ready(t.spec, states, mode):
        return t, None, None  # a StepRun of it with another status: never run, whatever it says
    name = step_run_name(observed.run_name, t.name)
    return (start(t, reused_status(reuse, clock.now), name),
            CreateStepRun(t.name, name, clock.deadline), None)


def _start(observed: Observed, t: Track, states: Mapping[str, StepState], clock: Clock,
           mode: Mode, room: Slots | None = None
           ) -> tuple[Track, CreateStepRun | None, StartAttempt | None]:
    """What starts for one going step, first rule that holds: the next attempt once its
    backoff is over and the run is not suspended; the current attempt again if its workload
    was never seen (creating it is idempotent); the recorded StepRun again if it was never
    seen either; a StepRun for a step whose needs are met, if the run has a slot free (`room`;
    None: no bound, and not suspended); else it waits for one. Only that last takes a slot:
    the others hold theirs."""
    now, step_run = clock.now, t.state.step_run or ""
    reuse = observed.reuse(t.name)
    if reuse is not None:
        return _reuse(observed, t, reuse, states, clock, mode)
    if t.status is not None and in_backoff(t.status):
        if now < (t.status.next_attempt_at or now):
            return t, None, None
        if suspended(observed.spec):
            return replace(t, state=replace(t.state, message=f"next attempt {SUSPENDED_NOTE}")
                           ), None, None
        attempt = t.status.attempts + 1
        status = replace(t.status, attempts=attempt, reason=None, next_attempt_at=now,
                         workload=workload_ref(mode, step_run, attempt))
        return start(t, status, step_run), None, StartAttempt(t.name, attempt)
    if t.status is not None:
        unseen = t.attempt is None or t.attempt.state is WorkloadState.ABSENT
        return t, None, StartAttempt(t.name, t.status.attempts) if unseen else None
    if t.state.step_run is not None and t.observation is None:
        # Recorded, yet neither observed nor seen deleted: its create may never have landed
        # (the API server went away). The name makes creating it again idempotent.
        status = recreated_status(t.state, mode, now)
        return (start(t, status, step_run), CreateStepRun(t.name, step_run, clock.deadline),
                StartAttempt(t.name, status.attempts))
    if t.state.step_run is not None or not dag.is_ready(t.spec, states, mode):
        return t, None, None
    name = step_run_name(observed.run_name, t.name)
    if t.spec.gated:
        gate = _gate(observed, t, states)
        if gate is None:
            return t, None, None
        if gate.reason is not None:
            # Ready only now (a step it needs was reused in this decision): it fails as
            # `gate_verdicts` would have failed it.
            return (end(t, StepPhase.FAILED, gate.reason, gate.message or gate.reason, now),
                    None, None)
        if not gate.holds:
            return _condition_false(t, gate, now), None, None
    if room is not None and not room.free:
        return waiting(t, room), None, None
    status = first_status(mode, name, None, now)
    return (start_first(t, status, name), CreateStepRun(t.name, name, clock.deadline),
            StartAttempt(t.name, 1))


def _fresh(observed: Observed, spec: StepSpec, clock: Clock, mode: Mode
           ) -> tuple[Track, CreateStepRun, StartAttempt]:
    """An item not started yet (no StepRun, nothing to reuse), started: what `_start` makes of
    it (an item has no needs and no gate of its own), built at once, since a wide fan-out
    starts hundreds of items in one decision."""
    name = step_run_name(observed.run_name, spec.name)
    status = first_status(mode, name, None, clock.now)
    return (Track(spec, None, None, state_of(status, name), status, standing=status),
            CreateStepRun(spec.name, name, clock.deadline), StartAttempt(spec.name, 1))


def _start_items(observed: Observed, t: Track, for_each: ForEach,
                 states: Mapping[str, StepState], clock: Clock, mode: Mode, room: Slots | None
                 ) -> tuple[Track, list[CreateStepRun], list[StartAttempt], Slots | None]:
    """A fan-out step: once it may start and its gate counts its items, they are made; then
    each goes on as a step does, and items not started yet start in index order while fewer
    than `for_each.parallelism` are going and the run has a slot free (`room`, which it
    returns as they leave it); none without a gate: they could not be made."""
    gate = lookup(observed.gates, t.name)
    if t.items is None:
        ready = dag.is_ready(t.spec, states, mode) and _gate(observed, t, states) is not None
        if gate is None or not ready:
            return t, [], [], room
        if gate.reason is not None:  # ready only now: as in `_start`
            return end(t, StepPhase.FAILED, gate.reason, gate.message or gate.reason,
                       clock.now), [], [], room
        t = items.expand(t.spec, t.recorded, gate.items, gate, {},
                         _context(clock.now, mode, clock.deadline))
    own = for_each.parallelism - sum(
        1 for i in t.items or () if not i.terminal and i.state.step_run is not None)
    free = own if room is None else min(own, room.free)
    started: dict[str, tuple[CreateStepRun, StartAttempt]] = {}
    if gate is not None and observed.reused:
        # Each waiting item made now starts and takes a slot, but those a re-run reuses.
        t = items.made_waiting(t, max(free, 0),
                               lambda i: observed.reuse(item_key(t.name, i)) is not None)
    elif gate is not None:
        def make(spec: StepSpec, index: int) -> Track:
            item, create, attempt = _fresh(observed, items.item_spec(spec, index), clock, mode)
            started[item.name] = (create, attempt)
            return item
        t = items.made_waiting(t, max(free, 0), make=make)
        free -= len(started)
    out, creates, starts = [], [], []
    took, held_back = len(started), False
    for item in t.items or ():
        if item.name in started:
            out.append(item)
            creates.append(started[item.name][0])
            starts.append(started[item.name][1])
            continue
        fresh = item.observation is None and item.state.step_run is None
        # A reused item runs nothing: it takes no place among the items going.
        waits = free <= 0 and observed.reuse(item.name) is None
        if item.terminal or (fresh and (waits or gate is None)):
            held_back |= fresh and not item.terminal
            out.append(item)
            continue
        item, create, attempt = _start(observed, item, {}, clock, mode)
        slot = fresh and not item.terminal
        free -= slot
        took += slot
        out.append(item)
        creates += [create] if create else []
        starts += [attempt] if attempt else []
    t = items.with_items(t, tuple(out), clock.now)
    if room is None:
        return t, creates, starts, None
    room = room.took(took)
    if gate is not None and not room.free and own > took and (
            held_back or (t.rest is not None and t.rest.waiting)):
        t = items_waiting(t, room)  # its own parallelism would start more
    return t, creates, starts, room


def _context(now: dt.datetime, mode: Mode, deadline: dt.datetime | None) -> StepContext:
    """For items made now: nothing of them is observed, so little of it is read."""
    return StepContext(mode=mode, now=now, halting=False, deadline=deadline)


def go_on(observed: Observed, tracks: Tracks, order: tuple[str, ...], clock: Clock,
          mode: Mode) -> Plan:
    """Nothing stops the steps in `order`: skip what cannot run, start what may, and see if
    all is done. `tracks` may hold more steps (the main ones, for finally steps), which are
    read, never started."""
    out = dict(tracks)
    creates: list[CreateStepRun] = []
    starts: list[StartAttempt] = []
    # The run's slots go to the steps (and items) ready to start in `order`, as it goes.
    room = slots(observed.spec, tracks)
    for name in order:
        # Skipped in order, as it goes: a condition false just now skips its readers now.
        out[name] = _skip(out, out[name], mode, clock.now)
        if out[name].terminal:
            continue
        states = {n: out[n].state for n in {*out[name].spec.needs,
                                            *(p for p, _ in out[name].spec.consumes)}}
        for_each = out[name].spec.for_each
        if for_each is not None:
            out[name], made, started, room = _start_items(observed, out[name], for_each,
                                                          states, clock, mode, room)
            creates += made
            starts += started
            continue
        fresh = out[name].state.step_run is None
        out[name], create, attempt = _start(observed, out[name], states, clock, mode, room)
        if room is not None and fresh and create is not None and not out[name].terminal:
            room = room.took(1)
        creates += [create] if create else []
        starts += [attempt] if attempt else []
    if _going(out):
        began = any(items.began(t) for t in out.values())
        return Plan(out, RunPhase.RUNNING if began else RunPhase.PENDING,
                    creates=tuple(creates), starts=tuple(starts))
    # Every step terminal: a step made in this decision (a reused one) still needs its StepRun.
    return replace(_verdict(out, Reason.COMPLETED, f"all {len(out)} steps succeeded"),
                   creates=tuple(creates))


def plan(observed: Observed, tracks: Tracks, clock: Clock, *, stop: Stop | None,
         topology_over: bool) -> Plan:
    """The run-level ladder, first rule that holds wins."""
    spec, now = observed.spec, clock.now
    order = dag.topological_order(spec.steps)
    if topology_over:
        return _topology_terminated(tracks, stop, now)
    if clock.deadline is not None and now >= clock.deadline:
        return timed_out(tracks, "the run's deadline",
                         f"the run did not finish within its timeout of "
                         f"{spec.timeout_seconds}s", now)
    if stop is not None:
        return stopped(tracks, now, stop, spec.grace_period_seconds)
    tracks = gate_verdicts(observed, tracks, order, spec.mode, now)
    failed = first_failure(tracks)
    if failed is not None and spec.on_failure is OnFailure.STOP:
        return _fail_fast(tracks, failed, order, spec.mode, now)
    p = go_on(observed, tracks, order, clock, spec.mode)
    failed = first_failure(p.tracks)
    if failed is not None and spec.on_failure is OnFailure.STOP:
        # A gated step that became ready only as this decision went on (a step it needs was
        # reused) cannot run at all: the run fails fast now. What this decision ended stands
        # (a reused step's StepRun is still made); what it started never starts.
        settled = {n: t for n, t in p.tracks.items() if t.terminal}
        ended = _fail_fast({**tracks, **settled}, failed, order, spec.mode, now)
        return replace(ended, creates=tuple(
            c for c in p.creates if c.step in settled))
    return p
