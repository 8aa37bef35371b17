"""API.md guarantees 1-8, 12-14, liveness and idempotence, as properties of the core over random
DAGs (up to 30 steps, both modes, both failure policies, with and without a run parallelism)
driven through a simulated cluster by random event sequences: pods running, succeeding, failing
(transient and permanent), heartbeats, deletions of workloads and StepRuns, late and duplicate
reports, stops, topology ends, time jumps past every deadline, grace period and TTL, and an API
server that goes away for a while, refuses creates or loses a run's status write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

from hypothesis import event, given
from hypothesis import strategies as st

from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.backoff import delay_seconds
from runctl.machine.decide import Decision, decide
from runctl.machine.naming import parse_key
from runctl.machine.phases import (
    RUN_TERMINAL,
    STEP_FAILURES,
    STEP_TERMINAL,
    FailureClass,
    FinallyPolicy,
    Mode,
    OnFailure,
    Reason,
    RunPhase,
    ShutdownMode,
    StepPhase,
    Waiting,
)
from runctl.machine.slots import suspended
from tests.unit.builders import spec as spec_of
from tests.unit.world import KINDS, LIVE, W, World, happen

# -- strategies ------------------------------------------------------------------------------


def rarely(values: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    """None three times in four: most steps have no timer, so most runs get to finish."""
    return st.integers(0, 3).flatmap(lambda k: values if k == 0 else st.none())


@st.composite
def retry_policies(draw: st.DrawFn, limits: st.SearchStrategy[int],
                   exit_codes: st.SearchStrategy[tuple[int, ...]]) -> m.RetryPolicy:
    """A retry policy as the API lets one through: a factor of 1 (the default) to 3, and a
    cap, when there is one, not below the first delay."""
    backoff = draw(st.integers(0, 30))
    return m.RetryPolicy(limit=draw(limits), backoff_seconds=backoff,
                         backoff_factor=draw(st.sampled_from((1, 1, 2, 3))),
                         max_backoff_seconds=draw(st.none() | st.integers(backoff, 60)),
                         transient_exit_codes=draw(exit_codes))


@st.composite
def steps(draw: st.DrawFn, max_steps: int = 30) -> tuple[m.StepSpec, ...]:
    """A random DAG: each step may need any of the steps made before it; spec order shuffled."""
    n = draw(st.integers(1, max_steps))
    out = []
    for i in range(n):
        needs = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        reads = draw(st.sets(st.sampled_from(sorted(needs)), max_size=2)) if needs else set()
        out.append(m.StepSpec(
            name=f"s{i}", needs=tuple(f"s{j}" for j in sorted(needs)),
            outputs=(m.OutputSpec("o0"), m.OutputSpec("o1", has_default=True)),
            consumes=tuple((f"s{j}", draw(st.sampled_from(["o0", "o1"]))) for j in sorted(reads)),
            conditional=draw(st.integers(0, 4)) == 0,
            for_each=m.ForEach(draw(st.integers(1, 3))) if draw(st.integers(0, 3)) == 0
            else None,
            timeout_seconds=draw(rarely(st.integers(5, 400))),
            retry=draw(retry_policies(st.integers(0, 3),
                                      st.sampled_from([(), (75,), (3,)]))),
            heartbeat_timeout_seconds=draw(rarely(st.integers(10, 200)))))
    return tuple(draw(st.permutations(out)))


@st.composite
def finally_steps(draw: st.DrawFn, main: tuple[m.StepSpec, ...], realtime: bool
                  ) -> tuple[m.StepSpec, ...]:
    """0 to 4 finally steps: each may need finally steps made before it, read outputs of main
    steps (never needing them), read the run's facts and have a condition."""
    out = []
    for i in range(draw(st.integers(0, 4))):
        needs = draw(st.sets(st.integers(0, i - 1), max_size=2)) if i else set()
        reads = [] if realtime else draw(st.lists(st.sampled_from(main), max_size=2))
        out.append(m.StepSpec(
            name=f"f{i}", needs=tuple(f"f{j}" for j in sorted(needs)),
            consumes=tuple(sorted({(p.name, "o0") for p in reads})),
            conditional=draw(st.integers(0, 3)) == 0,
            reads_facts=draw(st.booleans()),
            timeout_seconds=draw(rarely(st.integers(5, 400))),
            retry=draw(retry_policies(st.integers(0, 2), st.just((75,))))))
    return tuple(draw(st.permutations(out)))


@st.composite
def run_specs(draw: st.DrawFn) -> m.RunSpec:
    mode = draw(st.sampled_from(Mode))
    drawn = draw(steps())
    # At most this many steps and items going at once (None: no bound, as most runs).
    parallelism = draw(st.sampled_from((None, None, 1, 2, 3)))
    if mode is Mode.REALTIME:
        # Outputs, references to them and conditions are refused in a realtime run before the
        # core sees it (runctl.flow.definition.check): its steps never end to produce outputs.
        # So is a fan-out, and a run parallelism (`dag.validate`): its steps serve together,
        # they go through no items and none waits for another to end.
        drawn = tuple(replace(s, outputs=(), consumes=(), conditional=False, for_each=None)
                      for s in drawn)
        parallelism = None
    return m.RunSpec(
        steps=drawn,
        finally_steps=draw(finally_steps(drawn, mode is Mode.REALTIME)),
        mode=mode,
        on_failure=draw(st.sampled_from(OnFailure)),
        timeout_seconds=draw(rarely(st.integers(50, 2000))),
        finally_timeout_seconds=draw(st.integers(30, 900)),
        cancel_requested=draw(st.sampled_from((False,) * 9 + (True,))),
        grace_period_seconds=draw(st.integers(0, 60)),
        shutdown_mode=draw(st.sampled_from(ShutdownMode)),
        shutdown_finally=draw(st.sampled_from((FinallyPolicy.RUN,) * 3 + (FinallyPolicy.SKIP,))),
        drain_timeout_seconds=draw(st.none() | st.integers(0, 600)),
        ttl_seconds_after_finished=draw(st.none() | st.integers(0, 100)),
        parallelism=parallelism,
    )


events = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 29),
                            st.integers(0, 10**6)), max_size=60)


# -- the checks, one per guarantee ------------------------------------------------------------
# Each takes the run as observed, the decision made on it and the time, and asserts one
# guarantee of docs/API.md (or one part of it); `check` runs them all on every decision. A new
# guarantee is one more function in CHECKS.

Check = Callable[[m.Observed, Decision, dt.datetime], None]


def _stop_seen(observed: m.Observed) -> bool:
    return observed.status.stop is not None or observed.spec.cancel_requested


def _no_live_pod_left(observed: m.Observed) -> bool:
    """The topology came up (a step ran) and none of its workloads holds a live pod now."""
    runs = [obs for _, obs in observed.step_runs]
    came_up = any(s.phase is StepPhase.RUNNING for _, s in observed.status.step_states)
    return came_up and all(
        obs.gone or obs.attempt is None or obs.attempt.state is W.GONE
        or (obs.attempt.state not in (W.ABSENT, W.RUNNING) and obs.attempt.live_pods == 0)
        for obs in runs)


def _first_failure(status: m.RunStatus, spec: m.RunSpec) -> m.StepState:
    """The first failed main step (finally steps never give the run their words but as
    FinallyFailed)."""
    order = {s.name: i for i, s in enumerate(spec.steps)}
    # A fan-out failed when its first item did (its record names it first).
    failed = [(s.failed_items[0].finished_at if s.failed_items else s.finished_at, order[n], s)
              for n, s in status.step_states if s.phase in STEP_FAILURES and n in order]
    return min(failed, key=lambda f: (f[0], f[1]))[2]


def _spec_of(spec: m.RunSpec, key: str) -> m.StepSpec:
    """The spec of a step, or of the step an item is of."""
    return next(s for s in (*spec.steps, *spec.finally_steps) if s.name == _owner(key))


def _owner(key: str | None) -> str | None:
    """The step an action's key is of (itself, or the fan-out step of an item)."""
    return None if key is None else parse_key(key)[0]


def _items_of(observed: m.Observed, step: str) -> list[m.StepRunObservation]:
    return [obs for key, obs in observed.step_runs if key != step and _owner(key) == step]


def _item_ended(observed: m.Observed, d: Decision, key: str) -> bool:
    """An item is terminal after the decision: its status as written now, or as observed."""
    written = [a.status for a in d.actions
               if isinstance(a, act.WriteStepRunStatus) and a.step == key]
    obs = m.lookup(observed.step_runs, key)
    status = written[0] if written else obs.status if obs is not None else None
    return status is not None and status.phase in STEP_TERMINAL


def _finals(spec: m.RunSpec) -> set[str]:
    return {s.name for s in spec.finally_steps}


def every_step_recorded_at_the_end(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """1: a terminal run has a terminal entry for every step, finally steps included; a
    finalizer goes only once the recorded status holds the step's final state."""
    spec, new = observed.spec, d.status
    entries = dict(new.step_states)
    if new.phase in RUN_TERMINAL:
        expected = [*(s.name for s in spec.steps), *_finals(spec)]
        assert sorted(entries) == sorted(expected), "G1: an entry per step"
        assert all(s.phase in STEP_TERMINAL for s in entries.values()), "G1: terminal entries"
    for step, state in entries.items():
        if state.items is not None:
            assert sum(n for _, n in state.items.by_phase) == state.items.total, "counts"
            assert all(n > 0 for _, n in state.items.by_phase), "a count of none"
            by_phase = dict(state.items.by_phase)
            going = by_phase.get(StepPhase.PENDING, 0) + by_phase.get(StepPhase.RUNNING, 0)
            assert going == 0 or state.phase not in STEP_TERMINAL, f"G1: {step} ended, items not"
    old_entries = dict(observed.status.step_states)
    for a in d.actions:
        if isinstance(a, act.RemoveFinalizer):
            assert old_entries[_owner(a.step)].phase in STEP_TERMINAL, \
                "G1: finalizer before record"


def terminal_is_final(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """2: terminal is final (writes are judged again by the simulated API server)."""
    old, entries = observed.status, dict(d.status.step_states)
    if old.phase in RUN_TERMINAL:
        assert d.status == old, "G2: a terminal run's status changed"
    for step, state in old.step_states:
        if state.phase in STEP_TERMINAL:
            assert entries[step] == state, f"G2: terminal entry {step} changed"


def nothing_starts_after_a_stop(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """3: after a stop is observed no main step starts; main steps not started are canceled
    before start (finally steps: `finally_steps_wait_for_the_outcome`)."""
    old, new = observed.status, d.status
    if not _stop_seen(observed) or old.phase in RUN_TERMINAL:
        return
    finals = _finals(observed.spec)
    kinds = {type(a) for a in d.actions if _owner(getattr(a, "step", None)) not in finals}
    assert not kinds & {act.CreateStepRun, act.StartAttempt}, "G3: a start after the stop"
    assert new.phase in {RunPhase.STOPPING, *RUN_TERMINAL}, "G3: not Stopping"
    entries, old_entries = dict(new.step_states), dict(old.step_states)
    stop_at = new.stop.observed_at if new.stop is not None else None
    for step in (s.name for s in observed.spec.steps):
        before = old_entries.get(step)
        obs = m.lookup(observed.step_runs, step) or next(iter(_items_of(observed, step)), None)
        # Pending by both records (the run's status may lag its StepRun's after a lost
        # write: a StepRun that says Running ran before the stop; so may an item whose
        # Running write is held back, whose workload ran when the stop was seen, to the
        # second, and which is stopped as running: docs/API.md, StepRun).
        was_pending = (before is None or before.phase is StepPhase.PENDING) and all(
            o.status is None or o.status.phase is StepPhase.PENDING
            for o in (m.lookup(observed.step_runs, step), *_items_of(observed, step))
            if o is not None) and not any(
            o.status is None and o.attempt is not None and o.attempt.started_at is not None
            and stop_at is not None and o.attempt.started_at <= stop_at
            for o in _items_of(observed, step))
        if was_pending:
            assert entries[step].phase is not StepPhase.RUNNING, "G3: Pending -> Running"
        if was_pending and (before is None or before.step_run is None) and (
                obs is None and new.reason != "InvalidSpec"):
            assert (entries[step].phase, entries[step].reason) == (
                StepPhase.CANCELED, Reason.STOPPED_BEFORE_START), f"G3: {step}"


def finally_steps_wait_for_the_outcome(observed: m.Observed, d: Decision,
                                       now: dt.datetime) -> None:
    """3: finally steps start at most once each, never before every main step is terminal
    (and the outcome recorded), never after a stop that skips them; the outcome, once
    recorded, never changes."""
    spec, old, new = observed.spec, observed.status, d.status
    finals, entries = _finals(spec), dict(new.step_states)
    if old.outcome is not None:
        assert new.outcome == old.outcome, "F: the outcome changed"
    if new.outcome is not None:
        assert all(entries[s.name].phase in STEP_TERMINAL for s in spec.steps), \
            "F: an outcome with a main step going"
    for a in d.actions:
        if not isinstance(a, act.CreateStepRun | act.StartAttempt) or (
                _owner(a.step) not in finals):
            continue
        assert new.outcome is not None, f"F: {a.step} started before the main steps ended"
        if isinstance(a, act.CreateStepRun):
            assert m.lookup(observed.step_runs, a.step) is None, f"F: {a.step} started twice"
        skip = spec.shutdown_finally is FinallyPolicy.SKIP and _stop_seen(observed)
        assert not skip, f"F: {a.step} started after a stop that skips finally steps"


def the_run_ends_with_its_outcome(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """A run with finally steps ends as its main steps did, except FinallyFailed (a finally
    step failed a success, or the finally budget cut one off before it ran) and Canceled (a
    stop skipped them)."""
    spec, old, new = observed.spec, observed.status, d.status
    if not (new.phase in RUN_TERMINAL and new.outcome is not None
            and old.phase not in RUN_TERMINAL):
        return
    o, entries = new.outcome, dict(new.step_states)
    budget_over = now >= o.decided_at + dt.timedelta(seconds=spec.finally_timeout_seconds)
    failed = [n for n in _finals(spec) if entries[n].phase in STEP_FAILURES or (
        budget_over and entries[n].phase is StepPhase.CANCELED
        and not (spec.shutdown_finally is FinallyPolicy.SKIP and new.stop is not None))]
    if new.reason == Reason.FINALLY_FAILED:
        assert o.phase is RunPhase.SUCCEEDED, "F: FinallyFailed on a failed outcome"
        assert failed, "F: FinallyFailed"
    elif o.phase is RunPhase.SUCCEEDED and new.phase is not RunPhase.CANCELED:
        assert not failed, "F: a failed finally step left a success standing"
        assert (new.phase, new.reason, new.message) == (o.phase, o.reason, o.message), \
            "F: the run did not end with its outcome"
    elif o.phase is RunPhase.SUCCEEDED and new.phase is RunPhase.CANCELED:
        assert spec.shutdown_finally is FinallyPolicy.SKIP, "F: Succeeded became Canceled"
    else:
        assert (new.phase, new.reason, new.message) == (o.phase, o.reason, o.message), \
            "F: the run did not end with its outcome"


def drain_leaves_running_steps(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """Drain: running main steps are not stopped before the grace period's end."""
    spec, stop = observed.spec, observed.status.stop
    if not (spec.shutdown_mode is ShutdownMode.DRAIN and stop is not None
            and stop.observed_at is not None and observed.status.outcome is None
            and now < stop.observed_at + dt.timedelta(seconds=spec.grace_period_seconds)):
        return
    finals, entries = _finals(spec), dict(d.status.step_states)
    for a in d.actions:
        if isinstance(a, act.StopWorkload) and _owner(a.step) not in finals:
            ended = (_item_ended(observed, d, a.step) if a.step not in entries
                     else entries[a.step].phase in STEP_TERMINAL)
            assert ended, f"Drain: {a.step} stopped"
        if isinstance(a, act.StopItems) and a.step not in finals:
            assert entries[a.step].phase in STEP_TERMINAL, f"Drain: {a.step}'s items stopped"


def the_drain_timeout_plays_no_part(observed: m.Observed, d: Decision,
                                    now: dt.datetime) -> None:
    """4: drainTimeoutSeconds changes nothing, ever."""
    drain = 7200 if observed.spec.drain_timeout_seconds is None else None
    other = replace(observed, spec=replace(observed.spec, drain_timeout_seconds=drain))
    assert decide(other, now) == d, "G4: the drain timeout changed a decision"


def a_realtime_stop_ends_in_time(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """4: a realtime stop ends when the topology is over, by the grace period at the latest."""
    spec, old, new = observed.spec, observed.status, d.status
    if not (spec.mode is Mode.REALTIME and _stop_seen(observed) and old.stop is not None
            and old.outcome is None):
        return
    assert old.stop.observed_at is not None
    grace_end = old.stop.observed_at + dt.timedelta(seconds=spec.grace_period_seconds)
    if now >= grace_end or observed.topology_terminated or _no_live_pod_left(observed):
        # Finally steps may still run, but the stop is complete: they never delay it.
        assert new.stop is not None
        assert new.stop.completed_at is not None, "G4: a realtime stop outlived its bound"
        assert new.outcome is not None, "G4: the main steps outlived the stop's bound"


def failures_skip_only_below(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """5: continue keeps independent branches; skips only below a failure; the run's words are
    its first failure's."""
    spec, old, new = observed.spec, observed.status, d.status
    entries, old_entries = dict(new.step_states), dict(old.step_states)
    for step, state in entries.items():
        if state.reason == Reason.UPSTREAM_FAILED and old_entries.get(step) != state:
            needs = _spec_of(spec, step).needs
            assert any(entries[n].phase in (*STEP_FAILURES, StepPhase.SKIPPED)
                       or (spec.mode is Mode.REALTIME and entries[n].phase in STEP_TERMINAL)
                       for n in needs), f"G5: {step} skipped with no failed need"
    if (spec.on_failure is OnFailure.CONTINUE and not _stop_seen(observed)
            and new.phase is not RunPhase.TIMED_OUT):
        assert not any(s.phase is StepPhase.CANCELED and s.reason == Reason.CANCELED
                       for s in entries.values()), "G5: continue canceled a running step"
    if new.phase is RunPhase.FAILED and old.phase is not RunPhase.FAILED and (
            new.reason not in (Reason.INVALID_SPEC, Reason.FINALLY_FAILED)):
        first = _first_failure(new, spec)
        assert (new.reason, new.message) == (first.reason, first.message), "G5: first failure"


def _outputs_deleted(observed: m.Observed, producer: str) -> bool:
    """Are the outputs of `producer` going with its StepRun (or an item's), deleted or being
    deleted? Never a reused step's: the run's record holds them."""
    return observed.reuse(producer) is None and any(
        (obs.gone or obs.deleting) and _owner(key) == producer
        for key, obs in observed.step_runs)


def _failed_for_deleted_outputs(state: m.StepState) -> bool:
    """The step failed `UpstreamOutputDeleted`, or (a fan-out step) some of its items did."""
    reason = Reason.UPSTREAM_OUTPUT_DELETED
    return state.reason == reason or any(f.reason == reason for f in state.failed_items)


def readers_wait_for_outputs(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """12: no step starts before every step it reads has its outputs recorded (or was skipped,
    its defaults standing in); a reader of an output never made is skipped, never started;
    no StepRun is made to read outputs whose StepRun was deleted, and a step fails for that
    only when one was. 13: a reused step never runs."""
    old_entries, entries = dict(observed.status.step_states), dict(d.status.step_states)
    for step, state in entries.items():
        old = old_entries.get(step)
        if _failed_for_deleted_outputs(state) and not (
                old is not None and _failed_for_deleted_outputs(old)):
            assert any(entries[p].phase is StepPhase.SUCCEEDED and _outputs_deleted(observed, p)
                       for p, _ in _spec_of(observed.spec, step).consumes), \
                f"12: {step} failed {state.reason}, yet the outputs it reads are there"
            event("a reader failed: outputs it reads were deleted")
    for a in d.actions:
        if m.lookup(observed.reused, getattr(a, "step", "") or "") is not None:
            assert not isinstance(a, act.StartAttempt), f"13: {a.step} is reused, yet runs"
            continue  # made with its final status: it reads nothing, nothing of it runs
        if isinstance(a, act.CreateStepRun) and (old_entries.get(a.step) is None
                                                 or old_entries[a.step].step_run is None):
            reader = _spec_of(observed.spec, a.step)
            if a.step not in entries:
                # An item: its step's gate counted the items, and may not be gone since.
                assert m.lookup(observed.gates, reader.name) is not None, f"{a.step} ungated"
            for producer, _ in reader.consumes:
                obs = m.lookup(observed.step_runs, producer)
                fanned = old_entries.get(producer) or m.StepState(StepPhase.PENDING)
                # A step the re-run reuses has its outputs in the run's record from the start
                # (its StepRun, made with them, may be gone since).
                assert (obs is not None and obs.status is not None
                        and obs.status.phase is StepPhase.SUCCEEDED) or (
                    entries[producer].phase is StepPhase.SKIPPED) or (
                    fanned.items is not None and fanned.phase is StepPhase.SUCCEEDED) or (
                    observed.reuse(producer) is not None
                    and entries[producer].phase is StepPhase.SUCCEEDED), \
                    f"G12: {a.step} started before {producer}'s outputs were recorded"
                assert not _outputs_deleted(observed, producer), \
                    f"G12: {a.step} started, yet {producer}'s outputs were deleted"
            if reader.gated:
                assert m.lookup(observed.gates, reader.name) is not None, \
                    f"G12: {a.step} ungated"


def lost_never_succeeds(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """6: a Lost step never succeeds; a late success is rejected with an Event."""
    for step, state in d.status.step_states:
        obs = m.lookup(observed.step_runs, step)
        att = obs.attempt if obs else None
        if (state.phase is StepPhase.LOST and att is not None and obs is not None
                and obs.status is not None and att.attempt == obs.status.attempts
                and att.state is W.SUCCEEDED and not att.stopping):
            assert any(isinstance(e, act.EmitEvent) and e.reason == "LateReportRejected"
                       and e.step == step for e in d.actions), "G6: no LateReportRejected"


def only_transient_failures_retried(observed: m.Observed, d: Decision,
                                    now: dt.datetime) -> None:
    """7: only Transient failures are retried, within the limit (the failure may be seen in
    the same decision as the retry, when the backoff is 0s)."""
    spec = observed.spec
    written = {a.step: a.status for a in d.actions if isinstance(a, act.WriteStepRunStatus)}
    for a in d.actions:
        if not isinstance(a, act.StartAttempt) or a.attempt <= 1:
            continue
        obs = m.lookup(observed.step_runs, a.step)
        assert obs is not None
        # A StepRun never written is at its first attempt.
        attempts = obs.status.attempts if obs.status is not None else 1
        if attempts == a.attempt and a.step not in written:
            continue  # the recorded attempt's workload, never seen, created again
        limit = _spec_of(spec, a.step).retry.limit
        assert written[a.step].failure_class is FailureClass.TRANSIENT, "G7: not Transient"
        assert attempts == a.attempt - 1, "G7: an attempt skipped"
        assert a.attempt <= limit + 1, "G7: over the retry limit"
        assert spec.mode is Mode.BATCH or _owner(a.step) in _finals(spec), \
            "G7: realtime retried"


def retries_wait_their_delay(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """Retries back off: no attempt n starts before the previous attempt ended plus the delay
    for n (`backoff.delay_seconds`); a step that begins to wait records as its next attempt's
    time exactly the failure's sight plus that delay, rounded up to a whole second; and every
    step still waiting after the decision has the decision wake up by its time (unless the
    run is suspended and its time has come: then its resume wakes the run)."""
    spec, entries = observed.spec, dict(d.status.step_states)
    written = {a.step: a.status for a in d.actions if isinstance(a, act.WriteStepRunStatus)}
    for a in d.actions:
        obs = m.lookup(observed.step_runs, a.step) if isinstance(a, act.StartAttempt) else None
        if obs is None or obs.status is None or obs.status.attempts != a.attempt - 1:
            continue  # a first attempt, or the recorded one made again
        delay = dt.timedelta(seconds=delay_seconds(_spec_of(spec, a.step).retry, a.attempt))
        before = obs.attempt
        if before is not None and before.finished_at is not None:
            assert now >= before.finished_at + delay, f"{a.step} attempt {a.attempt} too soon"
        if obs.status.reason == Waiting.RETRY_BACKOFF:
            assert obs.status.next_attempt_at is not None
            assert now >= obs.status.next_attempt_at, f"{a.step} started before its time"
    for key, obs in observed.step_runs:
        status = written.get(key, obs.status)
        entry = entries.get(key, entries.get(_owner(key) or ""))
        if (status is None or status.reason != Waiting.RETRY_BACKOFF or status.phase in
                STEP_TERMINAL or entry is None or entry.phase in STEP_TERMINAL):
            continue
        due = status.next_attempt_at
        assert due is not None, f"{key} waits with no time"
        if key in written and (obs.status is None or obs.status.reason != Waiting.RETRY_BACKOFF):
            delay = delay_seconds(_spec_of(spec, key).retry, status.attempts + 1)
            seen_at = now + dt.timedelta(seconds=delay)
            assert due == seen_at + dt.timedelta(microseconds=-seen_at.microsecond % 10**6), \
                f"{key}: next attempt at {due}, not {delay}s after {now}"
            assert due.microsecond == 0
            event("a retry began to wait")
        if due <= now and suspended(spec):
            continue  # its time has come, but it waits for the run's resume (a spec change)
        assert d.requeue_at is not None, f"{key} waits until {due}, the decision sleeps"
        assert d.requeue_at <= due, f"{key} waits until {due}, the decision wakes later"


def a_terminal_run_only_lets_go(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """8: once terminal, only stopping, letting go, TTL deletion (and rejecting late
    reports)."""
    if observed.status.phase not in RUN_TERMINAL:
        return
    for a in d.actions:
        assert isinstance(a, act.StopWorkload | act.StopItems | act.RemoveFinalizer
                          | act.DeleteStepRun
                          | act.WriteStepRunStatus | act.EmitEvent), f"G8: {a}"
        if isinstance(a, act.WriteStepRunStatus):
            assert a.status.phase in STEP_TERMINAL, "G8: a live StepRun status"
        if isinstance(a, act.EmitEvent):
            assert a.reason == "LateReportRejected", "G8: an Event after the end"


def _slot_takers(observed: m.Observed, d: Decision) -> list[str]:
    """The steps and items a decision makes a StepRun for that takes a slot, in the order it
    makes them: not seen, not recorded made (made again, it holds its slot already), not
    reused."""
    recorded = dict(observed.status.step_states)
    seen = {key for key, _ in observed.step_runs}
    return [a.step for a in d.actions if isinstance(a, act.CreateStepRun)
            and a.step not in seen and observed.reuse(a.step) is None
            and (a.step not in recorded or recorded[a.step].step_run is None)]


def going_after(observed: m.Observed, d: Decision) -> set[str]:
    """The steps and items holding a slot once the decision is applied: a StepRun that exists
    (seen, or made now) and is not terminal by its status (written now, or as seen) nor by
    the run's record (of the step, or of the fan-out step an item is of)."""
    written = {a.step: a.status for a in d.actions if isinstance(a, act.WriteStepRunStatus)}
    entries = dict(d.status.step_states)
    keys = {key for key, obs in observed.step_runs if not obs.gone}
    keys |= {a.step for a in d.actions if isinstance(a, act.CreateStepRun)}
    going = set()
    for key in keys:
        obs = m.lookup(observed.step_runs, key)
        status = written.get(key) or (obs.status if obs is not None else None)
        entry = entries.get(key, entries.get(_owner(key) or ""))
        if (status is not None and status.phase in STEP_TERMINAL) or (
                entry is not None and entry.phase in STEP_TERMINAL):
            continue
        going.add(key)
    return going


def run_parallelism_holds(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """14: never more than `parallelism` steps and items going; what starts is what a run
    with no bound would start, cut to the free slots in its order (DAG order, items by index),
    so no slot stays free while something ready waits; exactly the steps held back (a fan-out
    step for its items) say they wait for a slot."""
    limit = observed.spec.parallelism
    if limit is None:
        return
    going = going_after(observed, d)
    assert len(going) <= limit, f"14: {sorted(going)} going at once, parallelism {limit}"
    unbounded = replace(observed, spec=replace(observed.spec, parallelism=None))
    free = _slot_takers(observed, decide(unbounded, now))
    took = _slot_takers(observed, d)
    assert took == free[:len(took)], f"14: {took} started, not the first of {free}"
    held = free[len(took):]
    if held:
        assert len(going) == limit, f"14: {len(going)} of {limit} going, {held} kept waiting"
        event("a step or item waited for a slot")
    said = {name for name, s in d.status.step_states if s.reason == Waiting.RUN_PARALLELISM}
    assert said == {_owner(key) for key in held}, f"14: {said} say they wait, {held} do"


def nothing_starts_while_suspended(observed: m.Observed, d: Decision,
                                   now: dt.datetime) -> None:
    """15: while the run is suspended (and no stop requested) nothing starts: no StepRun for a
    step or item that had none, no next attempt of a retry; the run says it is suspended."""
    if not suspended(observed.spec) or observed.status.phase in RUN_TERMINAL:
        return
    assert _slot_takers(observed, d) == [], "15: a step started while suspended"
    attempts = {key: obs.status.attempts for key, obs in observed.step_runs
                if obs.status is not None}
    for key, state in observed.status.step_states:
        attempts[key] = max(attempts.get(key, 1), state.attempts)
    for a in d.actions:
        if isinstance(a, act.StartAttempt):
            assert a.attempt <= attempts.get(a.step, 1), f"15: attempt {a} while suspended"
    if d.status.phase in (RunPhase.PENDING, RunPhase.RUNNING):
        assert d.status.reason == Waiting.SUSPENDED, "15: a suspended run does not say so"
        assert any(c.type == "Suspended" and c.status == "True" for c in d.status.conditions)
        event("a decision while suspended")


CHECKS: tuple[Check, ...] = (
    finally_steps_wait_for_the_outcome, the_run_ends_with_its_outcome,
    drain_leaves_running_steps, every_step_recorded_at_the_end, terminal_is_final,
    nothing_starts_after_a_stop, the_drain_timeout_plays_no_part,
    a_realtime_stop_ends_in_time, failures_skip_only_below, readers_wait_for_outputs,
    lost_never_succeeds, only_transient_failures_retried, retries_wait_their_delay,
    a_terminal_run_only_lets_go, run_parallelism_holds, nothing_starts_while_suspended,
)


def check(observed: m.Observed, d: Decision, now: dt.datetime) -> None:
    """Every guarantee holds of the decision made on `observed` at `now`."""
    for guarantee in CHECKS:
        guarantee(observed, d, now)


def check_no_work_outlives(world: World) -> None:
    if world.status.phase in RUN_TERMINAL:
        for w in world.all_workloads():
            if w.state in LIVE or w.live_pods:
                assert w.stopping, "G8: a workload outlived its run"


def check_parallelism(world: World) -> None:
    """Never more items of a fan-out step going (a StepRun made, not ended) than its
    parallelism."""
    for s in (*world.spec.steps, *world.spec.finally_steps):
        if s.for_each is None:
            continue
        going = [k for k, sr in world.runs.items() if _owner(k) == s.name and k != s.name
                 and not sr.gone and (sr.status is None or sr.status.phase not in STEP_TERMINAL)]
        assert len(going) <= s.for_each.parallelism, f"{s.name}: {going} going at once"
        if going:
            event(f"items going at once: {len(going)} of {s.for_each.parallelism}")


def check_run_parallelism(world: World) -> None:
    """14: never more of the run's steps and items going (a StepRun made, not ended) than
    its parallelism, as the cluster shows them."""
    limit = world.spec.parallelism
    if limit is None:
        return
    going = [k for k, sr in world.runs.items()
             if not sr.gone and (sr.status is None or sr.status.phase not in STEP_TERMINAL)]
    assert len(going) <= limit, f"14: {going} going at once, parallelism {limit}"
    if len(going) == limit:
        event("as many going as the run's parallelism")


def cycle(world: World) -> Decision:
    """Observe, decide, check, apply; then decide again at the same time: nothing more to do."""
    observed, d = world.decide()
    check(observed, d, world.now)
    whole = world.apply(d)
    assert not world.violations, world.violations
    if not whole:
        return d  # the API server failed some of it: the next decision takes it up again
    check_no_work_outlives(world)
    check_parallelism(world)
    check_run_parallelism(world)
    # Decided again on the same observation: gates come from records, and a record just
    # written is a new observation (a gated step starts only once the outputs it reads are
    # recorded), so the gates stay those the decision was made on.
    again = decide(replace(world.observe(), gates=observed.gates), world.now)
    assert again.status == d.status, "not idempotent: the status moved"
    # Letting a StepRun go waits for its final state to be recorded: the record just written
    # may allow that, and nothing else.
    released = {s for s, e in d.status.step_states if e.phase in STEP_TERMINAL}
    follow_up = [a for a in again.actions
                 if not (isinstance(a, act.RemoveFinalizer | act.DeleteStepRun)
                         and _owner(a.step) in released)]
    assert follow_up == [], f"not idempotent: {follow_up}"
    if again.actions:
        world.apply(again)
        assert decide(replace(world.observe(), gates=observed.gates), world.now
                      ).actions == (), "not idempotent"
    return d


def finish(world: World, rounds: int, stubborn: bool) -> None:
    """Liveness: let every step end (pods finish, time reaches each requeue), the run must then
    become terminal (once resumed, if suspended). A realtime run ends only when stopped;
    `stubborn` pods ignore the stop, so only the grace period can end it."""
    happen(world, "resume", "", 0)
    if world.spec.mode is Mode.REALTIME:
        happen(world, "stop", "", 0)
    for _ in range(rounds):
        d = cycle(world)
        faults = world.outage + world.lost_creates + world.lost_status
        if world.status.phase in RUN_TERMINAL and not faults:
            return
        for step, sr in world.runs.items():
            for w in sr.workloads.values():
                if w.stopping and not stubborn:
                    w.state, w.live_pods = W.GONE, 0
                elif w.state is W.PENDING:
                    w.state = W.RUNNING
                elif w.state is W.RUNNING and world.batch(step):
                    w.state, w.live_pods = W.SUCCEEDED, 0
        if d.requeue_at is not None:
            world.now = max(world.now, d.requeue_at)
    raise AssertionError(f"liveness: not terminal after {rounds} rounds: {world.status}")


@st.composite
def reruns(draw: st.DrawFn) -> tuple[m.RunSpec, tuple[tuple[str, m.Reuse], ...]]:
    """A batch run and what its re-run reuses: any set of main steps closed upstream (a step
    is reused only with every step it needs), as the rule makes it, and of each fan-out step
    whose needs are all reused, any of its items (the world gives a fan-out sN N % 6 items).
    A fan-out step is reused item by item, never whole (nor are the steps below it)."""
    spec = replace(draw(run_specs()), mode=Mode.BATCH)
    reused: dict[str, m.Reuse] = {}
    items: dict[str, m.Reuse] = {}
    by_name = {s.name: s for s in spec.steps}
    for name in sorted(by_name, key=lambda n: int(n[1:])):
        if not all(n in reused for n in by_name[name].needs):
            continue
        if by_name[name].for_each is not None:
            total = int(name[1:]) % 6
            for index in draw(st.sets(st.sampled_from(range(total)))) if total else ():
                key = f"{name}[{index}]"
                items[key] = m.Reuse(m.ReusedFrom("src", f"src-{name}-{index}", f"u-{key}"),
                                     (("o0", str(index)),))
        elif draw(st.booleans()):
            outputs = (("o0", draw(st.text(max_size=4))), ("o1", "d"))
            reused[name] = m.Reuse(m.ReusedFrom("src", f"src-{name}", f"u-{name}"), outputs)
    return spec, (*reused.items(), *items.items())


def check_reused(world: World) -> None:
    """A reused step is Succeeded/Reused with the outputs of the StepRun that made it, or was
    ended before its reuse was seen (a stop, a deadline, fail-fast: Canceled), or lost its
    StepRun; it never had a workload (the world records one as a violation)."""
    for step, reuse in world.reused:
        sr = world.runs.get(step)
        if "[" in step:
            _check_reused_item(world, step, reuse)
            continue
        state = m.step_state(world.status, step)
        assert state is not None
        if state.phase is StepPhase.SUCCEEDED:
            assert state.reason == Reason.REUSED, f"13: {step} {state}"
            assert sr is not None
            assert sr.status is not None
            assert (sr.status.outputs, sr.status.reused_from) == (reuse.outputs, reuse.source)
        else:
            assert state.phase in (StepPhase.CANCELED, StepPhase.LOST), f"13: {step} {state}"
        assert sr is None or not sr.workloads, f"13: {step} had a workload"


def _check_reused_item(world: World, key: str, reuse: m.Reuse) -> None:
    """A reused item never had a workload; made, it is Succeeded/Reused with the outputs of the
    item that made it (or its StepRun was lost, or never made: the step ended first, a stop,
    a fail-fast, its condition skipped it). Its step counts it Succeeded."""
    sr = world.runs.get(key)
    assert sr is None or not sr.workloads, f"13: {key} had a workload"
    if sr is None or sr.gone or sr.status is None:
        return
    assert (sr.status.phase, sr.status.reason) == (StepPhase.SUCCEEDED, Reason.REUSED), key
    assert (sr.status.outputs, sr.status.reused_from) == (reuse.outputs, reuse.source)
    state = m.step_state(world.status, _owner(key) or "")
    assert state is not None
    assert state.items is not None
    counted = dict(state.items.by_phase)
    assert sum(counted.values()) == state.items.total
    reused_made = sum(1 for k, r in world.runs.items()
                      if _owner(k) == _owner(key) and not r.gone and r.status is not None
                      and r.status.reason == Reason.REUSED)
    assert counted.get(StepPhase.SUCCEEDED, 0) >= reused_made, f"{key}: {state.items}"
    event("an item reused")


@given(rerun=reruns(), script=events, stubborn=st.booleans())
def test_guarantees_hold_for_reruns(rerun: tuple[m.RunSpec, tuple[tuple[str, m.Reuse], ...]],
                                    script: list[tuple[str, int, int]], stubborn: bool) -> None:
    """Every guarantee holds for a re-run, whatever happens (the same events and faults as any
    run), and what it reuses ends as the reuse says."""
    spec, reused = rerun
    world = World(spec, reused=reused)
    names = [s.name for s in (*spec.steps, *spec.finally_steps)]
    for kind, index, param in script:
        cycle(world)
        active = [k for k, sr in world.runs.items() if not sr.gone] or names
        happen(world, kind, active[index % len(active)], param)
    finish(world, rounds=32 + 24 * len(names), stubborn=stubborn)
    check_finally_ran(world)
    check_reused(world)
    event(f"reused {len(reused) // 5 * 5}+ of {len(spec.steps)}")
    event(f"re-run ended {world.status.phase}/{world.status.reason}")


def play(world: World, script: list[tuple[str, int, int]]) -> list[str]:
    """Each event of `script` after a decision; the names of the run's steps. Events go
    mostly to steps (and items) that have a StepRun: that is where things happen."""
    spec = world.spec
    names = [s.name for s in (*spec.steps, *spec.finally_steps)]
    for kind, index, param in script:
        cycle(world)
        active = [k for k, sr in world.runs.items() if not sr.gone] or names
        happen(world, kind, active[index % len(active)], param)
    return names


@given(spec=run_specs(), script=events, stubborn=st.booleans())
def test_guarantees_hold_whatever_happens(spec: m.RunSpec, script: list[tuple[str, int, int]],
                                          stubborn: bool) -> None:
    world = World(spec)
    names = play(world, script)
    finish(world, rounds=32 + 24 * len(names), stubborn=stubborn)
    event(f"{spec.mode} run ended {world.status.phase}/{world.status.reason}")
    event(f"steps: {len(names) // 10 * 10}+")
    for _, state in world.status.step_states:
        event(f"a step ended {state.phase}/{state.reason}")
        if state.items is not None:
            event(f"a fan-out of {state.items.total} ended {state.phase}")
    check_finally_ran(world)
    finals = [m.step_state(world.status, s.name) for s in spec.finally_steps]
    if any(f is not None and f.step_run is not None for f in finals):
        event("a finally step started")
    if world.status.stop is not None:
        event(f"stopped: {spec.shutdown_mode}, finally {world.spec.shutdown_finally}")
    if any(e.reason == "LateReportRejected" for e in world.emitted):
        event("a late report was rejected")
    if any(e.reason == "Retrying" for e in world.emitted):
        event("a step was retried")
    stays_terminal(world)
    if spec.ttl_seconds_after_finished is not None:
        assert all(sr.gone for sr in world.runs.values()), "TTL: StepRuns left"


def stays_terminal(world: World) -> None:
    """Terminal stays terminal, with every entry (items included), through a day of decisions
    and the TTL's deletion of every StepRun."""
    final = world.status
    world.now += dt.timedelta(days=1)
    for _ in range(3):
        cycle(world)
        happen(world, "terminate", "", 0)
    assert world.status == final


def check_finally_ran(world: World) -> None:
    """Finally steps always run unless skipped: at the end each one started, or has a reason
    it could not (its condition, a need or an output it reads, its deadline, a stop that
    skips them, an invalid spec)."""
    spec, status = world.spec, world.status
    stopped = status.stop is not None
    deadline = (status.outcome.decided_at + dt.timedelta(seconds=spec.finally_timeout_seconds)
                if status.outcome is not None else None)
    for s in spec.finally_steps:
        state = m.step_state(status, s.name)
        assert state is not None
        assert state.phase in STEP_TERMINAL
        # A fan-out has no StepRun of its own: it started when its items were counted, unless
        # they were all canceled before they started.
        fanned = state.items is not None and state.reason != Reason.STOPPED_BEFORE_START
        if state.step_run is not None or fanned or state.reason in (
                Reason.CONDITION_FALSE, Reason.CONDITION_ERROR, Reason.UPSTREAM_FAILED,
                Reason.UPSTREAM_OUTPUT_MISSING, Reason.UPSTREAM_OUTPUT_DELETED,
                Reason.INVALID_SPEC):
            continue
        assert state.reason == Reason.STOPPED_BEFORE_START, f"F: {s.name} {state}"
        skipped = stopped and spec.shutdown_finally is FinallyPolicy.SKIP
        late = deadline is not None and state.finished_at is not None and (
            state.finished_at >= deadline)
        assert skipped or late, f"F: {s.name} never ran: {state}"


failures = st.lists(st.tuples(st.sampled_from((None, 1, 3, 75, 137, 143)),
                              st.sampled_from((None, "Evicted", "ErrImagePull", "OOMKilled")),
                              st.sampled_from((None, *FailureClass))), max_size=6)


@given(retry=retry_policies(st.integers(0, 4), st.just((75,))), failures=failures)
def test_a_step_is_retried_exactly_for_its_transient_failures(
        retry: m.RetryPolicy, failures: list[tuple[int | None, str | None,
                                                   FailureClass | None]]) -> None:
    """Each attempt fails as drawn, until the draws run out (then it succeeds): the step makes
    one more attempt per Transient failure, up to retry.limit, and ends as the oracle says."""
    limit = retry.limit
    world = World(spec_of(m.StepSpec("a", retry=retry)))
    outcomes: list[tuple[int | None, str | None, FailureClass | None] | None] = [*failures, None]
    for outcome in outcomes:  # None: the attempt succeeds
        cycle(world)
        w = world.workload("a")
        assert w is not None
        if outcome is None:
            w.state, w.live_pods = W.SUCCEEDED, 0
        else:
            w.state, w.live_pods = W.FAILED, 0
            w.exit_code, w.reason, w.hint = outcome
        d = cycle(world)
        if world.status.phase in RUN_TERMINAL:
            break
        world.now = max(world.now, d.requeue_at or world.now)
    state = m.step_state(world.status, "a")
    assert state is not None
    expected_attempts, expected = 1, StepPhase.SUCCEEDED
    for exit_code, reason, hint in failures:
        transient = hint is FailureClass.TRANSIENT or (
            hint is None and reason != "ErrImagePull"
            and (reason == "Evicted" or exit_code in (75, 137, 143)))
        if not transient or expected_attempts > limit:
            expected = StepPhase.FAILED
            break
        expected_attempts += 1
    assert (state.phase, state.attempts) == (expected, expected_attempts)
    assert sum(e.reason == "Retrying" for e in world.emitted) == expected_attempts - 1


@given(retry=retry_policies(st.integers(1, 10), st.just((75,))),
       lags=st.lists(st.integers(0, 3_000_000), min_size=10, max_size=10))
def test_each_retry_starts_exactly_when_its_delay_is_over(retry: m.RetryPolicy,
                                                         lags: list[int]) -> None:
    """A step failing Transiently at every attempt, each failure seen some microseconds after
    it: attempt n starts at the time the decision that saw attempt n-1 fail recorded (that
    sight plus the delay for n, rounded up to a whole second, so never before the failure plus
    the delay), which is exactly when that decision asked to be woken; a microsecond sooner,
    nothing starts."""
    world = World(spec_of(m.StepSpec("a", retry=retry)))
    cycle(world)
    for n in range(2, retry.limit + 2):
        w = world.workload("a")
        assert w is not None
        ended = world.now
        w.state, w.live_pods, w.exit_code, w.finished_at = W.FAILED, 0, 75, ended
        world.now += dt.timedelta(microseconds=lags[n - 2])
        delay = dt.timedelta(seconds=delay_seconds(retry, n))
        d = cycle(world)
        if act.StartAttempt("a", n) in d.actions:  # no delay, seen on a whole second
            assert delay == dt.timedelta(0)
            assert world.now.microsecond == 0
            continue
        status = world.runs["a"].status
        assert status is not None
        due = status.next_attempt_at
        assert due is not None
        assert due.microsecond == 0
        assert world.now + delay <= due < world.now + delay + dt.timedelta(seconds=1)
        assert due >= ended + delay
        assert d.requeue_at == due
        world.now = due - dt.timedelta(microseconds=1)
        assert not any(isinstance(a, act.StartAttempt) for a in cycle(world).actions)
        world.now = due
        assert act.StartAttempt("a", n) in cycle(world).actions
    state = m.step_state(world.status, "a")
    assert state is not None
    assert (state.phase, state.attempts) == (StepPhase.RUNNING, retry.limit + 1)


faults = st.lists(st.tuples(st.sampled_from(("outage", "lost_creates", "lost_status", "run",
                                             "succeed", "tick")),
                            st.integers(0, 29), st.integers(0, 10**6)), min_size=1, max_size=40)


@given(spec=run_specs(), script=faults)
def test_every_run_ends_whatever_the_api_server_loses(
        spec: m.RunSpec, script: list[tuple[str, int, int]]) -> None:
    """Creates refused, an API server away for a while, a run's status write lost after its
    children's landed: every run still ends, and no StepRun or workload is made twice (the
    world records a second one as a violation)."""
    world = World(spec)
    names = [s.name for s in spec.steps]
    for kind, index, param in script:
        cycle(world)
        keys = [*names, *(k for k in world.runs if k not in names)]
        happen(world, kind, keys[index % len(keys)], param)
    finish(world, rounds=32 + 24 * len(names), stubborn=False)
    assert world.status.phase in RUN_TERMINAL
    if any(kind == "lost_creates" for kind, _, _ in script):
        event("creates were refused while the status landed")
