"""decide() rule by rule: named fixture states in, whole decisions compared out.

Each case is a run as the shell would observe it, the time, and the entire Decision expected
(status, every action in order, requeue time), so a change anywhere in a decision shows up.
The ways a stop ends are rows of two tables at the end, each row what differs between them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from runctl.machine import model as m
from runctl.machine.actions import (
    Action,
    CreateStepRun,
    DeleteStepRun,
    EmitEvent,
    RemoveFinalizer,
    StartAttempt,
    StopWorkload,
    WriteStepRunStatus,
)
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import (
    FailureClass,
    Mode,
    OnFailure,
    Reason,
    RunPhase,
    StepPhase,
    StopTrigger,
)
from tests.unit.builders import (
    T0,
    UNKNOWN,
    at,
    entry,
    expect,
    observed,
    pending,
    ref,
    retry,
    running_run,
    spec,
    sr_status,
    step,
    work,
)
from tests.unit.decisions import (
    STARTED,
    STOP_REQUESTED,
    Case,
    created,
    done,
    ended,
    run_event,
    running,
    step_event,
    table,
)

W = m.WorkloadState
R, S, F = StepPhase.RUNNING, StepPhase.SUCCEEDED, StepPhase.FAILED
CHAIN = spec(step("a"), step("b", "a"))
PAIR = spec(step("a"), step("b"))


# -- first reconcile and readiness -------------------------------------------------------------


def first_reconcile() -> Case:
    before = observed(CHAIN)
    a = entry("a", sr_status("a", StepPhase.PENDING))
    status = expect(before, RunPhase.RUNNING, {"a": a, "b": pending()})
    return before, T0, Decision(status, (*created("a"), STARTED), None)


def independent_steps_start_together() -> Case:
    before = observed(replace(PAIR, timeout_seconds=60))
    ca, cb = created("a", at(60)), created("b", at(60))
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", sr_status("a", StepPhase.PENDING)),
        "b": entry("b", sr_status("b", StepPhase.PENDING))})
    return before, T0, Decision(status, (ca[0], cb[0], ca[1], cb[1], STARTED),
                                at(60))


def batch_waits_for_success() -> Case:
    before = running_run(CHAIN, {"a": running("a")})
    return before, at(5), Decision(before.status, (), None)


def batch_need_succeeded() -> Case:
    before = running_run(CHAIN, {"a": (sr_status("a"), work(W.SUCCEEDED, outputs=(("rows",
                                                                                   "12"),)))})
    a = done("a", S, Reason.COMPLETED, None, 5, outputs=(("rows", "12"),))
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", a), "b": entry("b", sr_status("b", StepPhase.PENDING, started=5))})
    c = created("b")
    return before, at(5), Decision(status, (c[0], WriteStepRunStatus("a", a), c[1]), None)


def realtime_need_running() -> Case:
    rt = replace(CHAIN, mode=Mode.REALTIME)
    a = sr_status("a", StepPhase.PENDING, mode=Mode.REALTIME)
    before = running_run(rt, {"a": (a, work(W.RUNNING))})
    up = replace(a, phase=R)
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", up),
        "b": entry("b", sr_status("b", StepPhase.PENDING, started=5, mode=Mode.REALTIME))})
    c = created("b")
    return before, at(5), Decision(status, (c[0], WriteStepRunStatus("a", up), c[1]),
                                   None)


def status_never_written() -> Case:
    """A StepRun with no status is at its first attempt, started when it was made (the run
    recorded no start): its workload is created (idempotent), and nothing is written to it
    until the workload is seen."""
    before = running_run(CHAIN, {"a": (None, work(W.ABSENT))},
                         extra={"a": pending("r-a")})
    made = replace(m.lookup(before.step_runs, "a"), created_at=at(1))  # type: ignore[type-var]
    before = replace(before, step_runs=m.frozen_step_runs((("a", made),)))
    first = sr_status("a", StepPhase.PENDING, started=1)
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", first)})
    return before, at(3), Decision(status, (StartAttempt("a", 1),), None)


def first_write_records_the_workload_running() -> Case:
    """Nothing is written to a StepRun made for a first attempt while its workload is only
    Pending (`WorkloadRef.observed` rides along with the next write); its first write is the
    one that records it Running, with the attempt, the start the run recorded and the
    workload seen."""
    pending_pod = running_run(CHAIN, {"a": (None, work(W.PENDING))},
                              extra={"a": entry("a", sr_status("a", StepPhase.PENDING))})
    assert decide(pending_pod, at(1)).actions == ()
    before = running_run(CHAIN, {"a": (None, work(W.RUNNING))},
                         extra={"a": entry("a", sr_status("a", StepPhase.PENDING))})
    up = replace(sr_status("a"), workload=m.WorkloadRef("Pod", "r-a-1", observed=True))
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", up)})
    return before, at(1), Decision(status, (WriteStepRunStatus("a", up),), None)


def recorded_but_never_seen() -> Case:
    """The status names a StepRun that was neither observed nor seen deleted (its create may
    have been lost in an API server outage): it is created again under the same name, which
    is idempotent, and the record stands as it was."""
    before = running_run(CHAIN, {}, extra={"a": entry("a", sr_status("a", StepPhase.PENDING))})
    first = sr_status("a", StepPhase.PENDING, started=40)  # its first attempt starts now
    return before, at(40), Decision(expect(before, RunPhase.RUNNING, {"a": entry("a", first)}), (
        CreateStepRun("a", "r-a", None), WriteStepRunStatus("a", first), StartAttempt("a", 1)),
        None)


def running_record_never_seen() -> Case:
    """A step recorded Running whose StepRun is not observed (nor seen deleted) is created
    again where its record stood: same attempt, started now, still Running, never back to
    Pending."""
    two = replace(sr_status("a", attempts=2), next_attempt_at=at(20))
    before = running_run(RETRYING, {}, extra={"a": entry("a", two)})
    again = replace(sr_status("a", attempts=2), next_attempt_at=at(30))
    return before, at(30), Decision(before.status, (
        CreateStepRun("a", "r-a", at(100)), WriteStepRunStatus("a", again),
        StartAttempt("a", 2)), at(100))


# -- mirroring the workload ----------------------------------------------------------------------


def pod_runs() -> Case:
    before = running_run(CHAIN, {"a": (sr_status("a", StepPhase.PENDING), work(W.RUNNING))})
    up = sr_status("a")
    return before, at(2), Decision(expect(before, RunPhase.RUNNING, {"a": entry("a", up)}),
                                   (WriteStepRunStatus("a", up),), None)


def permanent_failure_fails_fast() -> Case:
    before = running_run(CHAIN, {"a": (sr_status("a"), work(
        W.FAILED, exit_code=3, message="schema mismatch in column day"))})
    text = "attempt 1 failed (exit code 3, Permanent): schema mismatch in column day"
    failed = done("a", F, Reason.STEP_FAILED, text, 9,
                   failure_class=FailureClass.PERMANENT)
    b = m.StepState(StepPhase.SKIPPED, Reason.UPSTREAM_FAILED, "needs a, which did not succeed",
                    finished_at=at(9))
    status = expect(before, RunPhase.FAILED, {"a": entry("a", failed), "b": b}, now=9,
                    reason=Reason.STEP_FAILED, message=text, duration="9s")
    return before, at(9), Decision(status, (
        WriteStepRunStatus("a", failed),
        step_event("a", Reason.STEP_FAILED, text),
        run_event("Failed", f"Failed after 9s: {text}")), None)


def image_pull_is_not_retried() -> Case:
    one = spec(step("a", retry=retry(3)))
    before = running_run(one, {"a": (sr_status("a", StepPhase.PENDING),
                                      work(W.FAILED, reason="ImagePullBackOff"))})
    text = "attempt 1 failed (ImagePullBackOff, Permanent)"
    failed = ended("a", sr_status("a", StepPhase.PENDING), F, Reason.STEP_FAILED, text, 4,
                   failure_class=FailureClass.PERMANENT)
    status = expect(before, RunPhase.FAILED, {"a": entry("a", failed)}, now=4,
                    reason=Reason.STEP_FAILED, message=text, duration="4s")
    return before, at(4), Decision(status, (
        WriteStepRunStatus("a", failed),
        step_event("a", Reason.STEP_FAILED, text),
        run_event("Failed", f"Failed after 4s: {text}")), None)


# -- retries -------------------------------------------------------------------------------------

RETRYING = spec(step("a", retry=retry(2, 5, (75,))), timeout_seconds=100)
BACKOFF_TEXT = ("attempt 1 failed (exit code 75, Transient); attempt 2 of 3 after 5s, "
                "at 2026-11-22T12:00:15Z")


def backing_off() -> m.StepRunStatus:
    return replace(sr_status("a"), reason="RetryBackoff", message=BACKOFF_TEXT,
                   failure_class=FailureClass.TRANSIENT, next_attempt_at=at(15))


def transient_failure_backs_off() -> Case:
    before = running_run(RETRYING, {"a": (sr_status("a"), work(W.FAILED, exit_code=75))})
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", backing_off())})
    return before, at(10), Decision(status, (
        WriteStepRunStatus("a", backing_off()),
        EmitEvent("step", "a", "Normal", "Retrying", BACKOFF_TEXT)), at(15))


def backoff_waits() -> Case:
    before = running_run(RETRYING, {"a": (backing_off(), work(W.FAILED, exit_code=75))})
    return before, at(12), Decision(before.status, (), at(15))


def backoff_over_starts_attempt_two() -> Case:
    before = running_run(RETRYING, {"a": (backing_off(), work(W.FAILED, exit_code=75))})
    second = replace(backing_off(), attempts=2, reason=None, next_attempt_at=at(16),
                     workload=ref("a", 2))
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", second)})
    return before, at(16), Decision(status, (WriteStepRunStatus("a", second),
                                             StartAttempt("a", 2)), at(100))


GROWING = spec(step("a", retry=retry(3, 5, (75,), factor=2, max_backoff_seconds=8)),
               timeout_seconds=100)


def second_retry_waits_longer_up_to_the_cap() -> Case:
    """Attempt 2 failed, seen at 20.5s: attempt 3 waits 5s * 2 = 10s, capped at 8s, and
    starts on the whole second after 28.5s."""
    second = replace(sr_status("a"), attempts=2, next_attempt_at=at(16), workload=ref("a", 2))
    before = running_run(GROWING, {"a": (second, work(W.FAILED, 2, exit_code=75))})
    text = ("attempt 2 failed (exit code 75, Transient); attempt 3 of 4 after 8s, at "
            "2026-11-22T12:00:29Z")
    waiting = replace(second, reason="RetryBackoff", message=text, next_attempt_at=at(29),
                      failure_class=FailureClass.TRANSIENT)
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", waiting)})
    return before, at(20.5), Decision(status, (
        WriteStepRunStatus("a", waiting),
        EmitEvent("step", "a", "Normal", "Retrying", text)), at(29))


def retry_at_once_without_backoff() -> Case:
    now_spec = spec(step("a", retry=retry(1)))
    before = running_run(now_spec, {"a": (sr_status("a"), work(W.FAILED, reason="Evicted"))})
    text = "attempt 1 failed (Evicted, Transient); attempt 2 of 2 after 0s, at 2026-11-22T12:00:10Z"
    second = replace(sr_status("a"), attempts=2, message=text, next_attempt_at=at(10),
                     failure_class=FailureClass.TRANSIENT, workload=ref("a", 2))
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", second)})
    return before, at(10), Decision(status, (
        WriteStepRunStatus("a", second), StartAttempt("a", 2),
        EmitEvent("step", "a", "Normal", "Retrying", text)), None)


def no_retry_past_the_run_deadline() -> Case:
    before = running_run(RETRYING, {"a": (sr_status("a"), work(W.FAILED, exit_code=75))})
    text = "attempt 1 failed (exit code 75, Transient)"
    failed = done("a", F, Reason.STEP_FAILED, text, 95,
                   failure_class=FailureClass.TRANSIENT)
    status = expect(before, RunPhase.FAILED, {"a": entry("a", failed)}, now=95,
                    reason=Reason.STEP_FAILED, message=text, duration="1m35s")
    return before, at(95), Decision(status, (
        WriteStepRunStatus("a", failed),
        step_event("a", Reason.STEP_FAILED, text),
        run_event("Failed", f"Failed after 1m35s: {text}")), None)


def success_after_retry() -> Case:
    second = replace(backing_off(), attempts=2, reason=None, next_attempt_at=at(16),
                     workload=ref("a", 2))
    before = running_run(RETRYING, {"a": (second, work(W.SUCCEEDED, 2))})
    a = ended("a", second, S, Reason.COMPLETED, None, 30, failure_class=None)
    status = expect(before, RunPhase.SUCCEEDED, {"a": entry("a", a)}, now=30,
                    reason=Reason.COMPLETED, message="all 1 steps succeeded", duration="30s")
    return before, at(30), Decision(status, (
        WriteStepRunStatus("a", a),
        run_event("Succeeded", "Succeeded after 30s: all 1 steps succeeded", "Normal")), None)


def ttl_counts_from_the_end() -> Case:
    before, now, decision = success_after_retry()
    before = replace(before, spec=replace(before.spec, ttl_seconds_after_finished=0))
    return before, now, replace(decision, requeue_at=now)


# -- timeouts ------------------------------------------------------------------------------------


def attempt_times_out() -> Case:
    one = spec(step("a", timeout_seconds=20, retry=retry(2)))
    before = running_run(one, {"a": running("a")})
    text = "attempt 1 did not finish within 20s"
    out = done("a", StepPhase.TIMED_OUT, Reason.TIMED_OUT, text, 20)
    status = expect(before, RunPhase.FAILED, {"a": entry("a", out)}, now=20,
                    reason=Reason.TIMED_OUT, message=text, duration="20s")
    return before, at(20), Decision(status, (
        WriteStepRunStatus("a", out), StopWorkload("a", 30),
        step_event("a", Reason.TIMED_OUT, text),
        run_event("Failed", f"Failed after 20s: {text}")), None)


def attempt_deadline_requeues() -> Case:
    one = spec(step("a", timeout_seconds=20, heartbeat_timeout_seconds=15))
    before = running_run(one, {"a": (replace(sr_status("a"), heartbeat_at=at(3)),
                                      work(W.RUNNING))})
    return before, at(5), Decision(before.status, (), at(18))


def run_times_out() -> Case:
    before = running_run(replace(CHAIN, timeout_seconds=30),
                         {"a": running("a")})
    out = done("a", StepPhase.TIMED_OUT, Reason.TIMED_OUT,
                "the run's deadline passed", 30)
    b = m.StepState(StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                    "not started: the run's deadline passed", finished_at=at(30))
    text = "the run did not finish within its timeout of 30s"
    status = expect(before, RunPhase.TIMED_OUT, {"a": entry("a", out), "b": b}, now=30,
                    reason=Reason.TIMED_OUT, message=text, duration="30s")
    return before, at(30), Decision(status, (
        WriteStepRunStatus("a", out), StopWorkload("a", 30),
        step_event("a", Reason.TIMED_OUT, "the run's deadline passed"),
        run_event("TimedOut", f"TimedOut after 30s: {text}")), None)


# -- failure policies ----------------------------------------------------------------------------

FOUR = spec(step("a"), step("b"), step("c", "a"), step("d", "b"), step("e"))


def four(on_failure: OnFailure) -> m.Observed:
    """a fails while b runs; c needs a, d needs b; e has not started (no StepRun)."""
    return running_run(replace(FOUR, on_failure=on_failure),
                       {"a": (sr_status("a"), work(W.FAILED, exit_code=2)),
                        "b": running("b"),
                        "e": (sr_status("e", StepPhase.PENDING), work(W.PENDING))})


FAIL_TEXT = "attempt 1 failed (exit code 2, Permanent)"


def fail_fast() -> Case:
    before = four(OnFailure.STOP)
    failed = done("a", F, Reason.STEP_FAILED, FAIL_TEXT, 7,
                   failure_class=FailureClass.PERMANENT)
    b = done("b", StepPhase.CANCELED, Reason.CANCELED, "stopped: step a failed",
              7)
    e = ended("e", sr_status("e", StepPhase.PENDING), StepPhase.CANCELED,
              Reason.STOPPED_BEFORE_START, "not started: step a failed", 7)
    status = expect(before, RunPhase.FAILED, {
        "a": entry("a", failed), "b": entry("b", b), "e": entry("e", e),
        "c": m.StepState(StepPhase.SKIPPED, Reason.UPSTREAM_FAILED,
                         "needs a, which did not succeed", finished_at=at(7)),
        "d": m.StepState(StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                         "not started: step a failed", finished_at=at(7))},
        now=7, reason=Reason.STEP_FAILED, message=FAIL_TEXT, duration="7s")
    return before, at(7), Decision(status, (
        WriteStepRunStatus("a", failed), WriteStepRunStatus("b", b),
        WriteStepRunStatus("e", e), StopWorkload("b", 30),
        StopWorkload("e", 30),
        step_event("a", Reason.STEP_FAILED, FAIL_TEXT),
        run_event("Failed", f"Failed after 7s: {FAIL_TEXT}")), None)


def go_on() -> Case:
    before = four(OnFailure.CONTINUE)
    failed = done("a", F, Reason.STEP_FAILED, FAIL_TEXT, 7,
                   failure_class=FailureClass.PERMANENT)
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", failed),
        "c": m.StepState(StepPhase.SKIPPED, Reason.UPSTREAM_FAILED,
                         "needs a, which did not succeed", finished_at=at(7))})
    return before, at(7), Decision(status, (
        WriteStepRunStatus("a", failed),
        step_event("a", Reason.STEP_FAILED, FAIL_TEXT)), None)


def first_failure_by_time_then_spec_order() -> Case:
    """Under continue the run ends with the words of the failure that came first."""
    late = done("a", F, Reason.STEP_FAILED, "late", 9)
    early = done("b", StepPhase.LOST, Reason.HEARTBEAT_EXPIRED, "early", 4)
    before = running_run(replace(PAIR, on_failure=OnFailure.CONTINUE),
                         {"a": (late, work(W.FAILED)), "b": (early, work(W.GONE))})
    status = expect(before, RunPhase.FAILED, now=10, reason=Reason.HEARTBEAT_EXPIRED,
                    message="early", duration="10s")
    return before, at(10), Decision(status, (run_event("Failed", "Failed after 10s: early"),),
                                    None)


# -- stop ---------------------------------------------------------------------------------------

STOP_AT_4 = m.StopState(requested_at=at(3), observed_at=at(4))


def stopping_run() -> m.Observed:
    """A stop requested at 3 while a runs, e waits for its pod, and b, c, d never started."""
    return running_run(replace(FOUR, cancel_requested=True, on_failure=OnFailure.CONTINUE),
                       {"a": running("a"),
                        "e": (sr_status("e", StepPhase.PENDING), work(W.RUNNING))},
                       cancel_requested_at=at(3))


def stop_observed() -> Case:
    before = stopping_run()
    canceled = {n: m.StepState(StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                               "not started: the run was stopped", finished_at=at(4))
                for n in "bcd"}
    e = ended("e", sr_status("e", StepPhase.PENDING), StepPhase.CANCELED,
              Reason.STOPPED_BEFORE_START, "not started: the run was stopped", 4)
    status = expect(before, RunPhase.STOPPING, {**canceled, "e": entry("e", e)},
                    reason="StopRequested", message="stopping: waiting for 1 running step(s) "
                                                    "to end", stop=STOP_AT_4,
                    condition=replace(UNKNOWN, reason="StopRequested",
                                      message="stopping: waiting for 1 running step(s) to end"))
    return before, at(4), Decision(status, (
        WriteStepRunStatus("e", e), StopWorkload("a", 30),
        StopWorkload("e", 30),
        STOP_REQUESTED), at(34))


# -- realtime topology ---------------------------------------------------------------------------

RT = replace(CHAIN, mode=Mode.REALTIME)
HUB = m.Condition("TopologyTerminated", "True", "SessionEnded", "the room was closed", at(2))


def rt_status(name: str) -> m.StepRunStatus:
    return sr_status(name, mode=Mode.REALTIME)


def live_topology(**kw: object) -> m.Observed:
    return running_run(RT, {"a": (rt_status("a"), work(W.RUNNING)),
                            "b": (rt_status("b"), work(W.RUNNING))}, **kw)  # type: ignore[arg-type]


def topology_pods_gone() -> Case:
    before = running_run(RT, {"a": (rt_status("a"), work(W.GONE)),
                              "b": (rt_status("b"), work(W.PENDING, live_pods=0))})
    a, b = (ended(n, rt_status(n), S, Reason.TOPOLOGY_TERMINATED, "the topology terminated", 8)
            for n in "ab")
    status = expect(before, RunPhase.SUCCEEDED, {"a": entry("a", a), "b": entry("b", b)},
                    now=8, reason=Reason.TOPOLOGY_TERMINATED, message="the topology terminated",
                    duration="8s")
    return before, at(8), Decision(status, (
        WriteStepRunStatus("a", a), WriteStepRunStatus("b", b),
        StopWorkload("b", 30),
        run_event("Succeeded", "Succeeded after 8s: the topology terminated", "Normal")), None)


def topology_ended_by_hub() -> Case:
    before = live_topology(conditions=(UNKNOWN, HUB), topology_terminated=True)
    a, b = (ended(n, rt_status(n), S, Reason.TOPOLOGY_TERMINATED, "the topology terminated", 8)
            for n in "ab")
    status = expect(before, RunPhase.SUCCEEDED, {"a": entry("a", a), "b": entry("b", b)},
                    now=8, reason=Reason.TOPOLOGY_TERMINATED, message="the topology terminated",
                    duration="8s")
    return before, at(8), Decision(status, (
        WriteStepRunStatus("a", a), WriteStepRunStatus("b", b),
        StopWorkload("a", 30),
        StopWorkload("b", 30),
        run_event("Succeeded", "Succeeded after 8s: the topology terminated", "Normal")), None)


def topology_ends_a_stop_whatever_the_drain() -> Case:
    before = replace(live_topology(topology_terminated=True, stop=STOP_AT_4),
                     spec=replace(RT, cancel_requested=True, drain_timeout_seconds=120))
    before = replace(before, status=replace(before.status, phase=RunPhase.STOPPING))
    a, b = (ended(n, rt_status(n), StepPhase.CANCELED, Reason.CANCELED,
                  "stopped: the topology terminated", 5) for n in "ab")
    stop = replace(STOP_AT_4, completed_at=at(5), trigger=StopTrigger.TOPOLOGY_TERMINATED)
    text = "stopped on request; the topology terminated"
    status = expect(before, RunPhase.CANCELED, {"a": entry("a", a), "b": entry("b", b)},
                    now=5, reason=Reason.CANCELED, message=text, duration="5s", stop=stop)
    return before, at(5), Decision(status, (
        WriteStepRunStatus("a", a), WriteStepRunStatus("b", b),
        StopWorkload("a", 30), StopWorkload("b", 30),
        run_event("Canceled", f"Canceled after 5s: {text}", "Normal")), None)


def stale_running_steps_end_with_their_stepruns() -> Case:
    """The incident: StepRuns of a stopped realtime run deleted; the steps must not stay
    Running (the StepRuns are gone, so the topology has no live pod left)."""
    base = live_topology(stop=STOP_AT_4, phase=RunPhase.STOPPING)
    before = replace(base, spec=replace(RT, cancel_requested=True), step_runs=(
        m.frozen_step_runs((n, m.StepRunObservation(f"r-{n}", None, True, True)) for n in "ab")))
    a, b = (replace(entry(n, rt_status(n)), phase=StepPhase.CANCELED, reason=Reason.CANCELED,
                    message="stopped: the topology terminated", finished_at=at(6))
            for n in "ab")
    stop = replace(STOP_AT_4, completed_at=at(6), trigger=StopTrigger.TOPOLOGY_TERMINATED)
    text = "stopped on request; the topology terminated"
    status = expect(before, RunPhase.CANCELED, {"a": a, "b": b}, now=6,
                    reason=Reason.CANCELED, message=text, duration="6s", stop=stop)
    return before, at(6), Decision(status, (
        run_event("Canceled", f"Canceled after 6s: {text}", "Normal"),), None)


def topology_ends_before_all_started() -> Case:
    before = running_run(RT, {"a": (rt_status("a"), work(W.RUNNING))}, topology_terminated=True)
    a = ended("a", rt_status("a"), S, Reason.TOPOLOGY_TERMINATED, "the topology terminated", 8)
    b = m.StepState(StepPhase.CANCELED, Reason.TOPOLOGY_TERMINATED,
                    "not started: the topology terminated first", finished_at=at(8))
    status = expect(before, RunPhase.SUCCEEDED, {"a": entry("a", a), "b": b},
                    now=8, reason=Reason.TOPOLOGY_TERMINATED, message="the topology terminated",
                    duration="8s")
    return before, at(8), Decision(status, (
        WriteStepRunStatus("a", a), StopWorkload("a", 30),
        run_event("Succeeded", "Succeeded after 8s: the topology terminated", "Normal")), None)


def topology_with_a_failed_step() -> Case:
    failed = ended("a", rt_status("a"), F, Reason.STEP_FAILED, "boom", 3,
                   failure_class=FailureClass.PERMANENT)
    before = running_run(replace(RT, on_failure=OnFailure.CONTINUE, steps=(
        step("a"), step("b", "a"), step("c"))),
        {"a": (failed, work(W.FAILED)), "c": (rt_status("c"), work(W.GONE))},
        extra={"b": m.StepState(StepPhase.SKIPPED, Reason.UPSTREAM_FAILED, "x",
                                finished_at=at(3))})
    c = ended("c", rt_status("c"), S, Reason.TOPOLOGY_TERMINATED, "the topology terminated", 8)
    status = expect(before, RunPhase.FAILED, {"c": entry("c", c)}, now=8,
                    reason=Reason.STEP_FAILED, message="boom", duration="8s")
    return before, at(8), Decision(status, (
        WriteStepRunStatus("c", c), StopWorkload("a", 30),
        run_event("Failed", "Failed after 8s: boom")), None)


def topology_not_up_yet() -> Case:
    """Workloads not running yet (not even seen) are no sign of a topology that ended."""
    before = running_run(RT, {"a": (sr_status("a", StepPhase.PENDING, mode=Mode.REALTIME),
                                    work(W.ABSENT))})
    return before, at(1), Decision(before.status, (StartAttempt("a", 1),), None)


def realtime_failure_is_not_retried() -> Case:
    one = spec(step("a", retry=retry(3)), step("b"), mode=Mode.REALTIME,
               on_failure=OnFailure.CONTINUE)
    before = running_run(one, {"a": (rt_status("a"), work(W.FAILED, exit_code=137)),
                               "b": (rt_status("b"), work(W.RUNNING))})
    text = "attempt 1 failed (exit code 137, Transient)"
    failed = ended("a", rt_status("a"), F, Reason.STEP_FAILED, text, 6,
                   failure_class=FailureClass.TRANSIENT)
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", failed)})
    return before, at(6), Decision(status, (
        WriteStepRunStatus("a", failed), StopWorkload("a", 30),
        step_event("a", Reason.STEP_FAILED, text)), None)


# -- lost work -----------------------------------------------------------------------------------

ONE = spec(step("a"), on_failure=OnFailure.CONTINUE)


def lost(reason: str, message: str, now: float) -> tuple[m.StepRunStatus, m.RunStatus,
                                                          m.Observed, tuple[EmitEvent, ...]]:
    a = done("a", StepPhase.LOST, reason, message, now)
    base = running_run(ONE, {"a": (sr_status("a"), None)})
    status = expect(base, RunPhase.FAILED, {"a": entry("a", a)}, now=now, reason=reason,
                    message=message, duration=f"{now:g}s")
    return a, status, base, (step_event("a", reason, message),
                             run_event("Failed", f"Failed after {now:g}s: {message}"))


def workload_deleted() -> Case:
    a, status, _, events = lost(Reason.WORKLOAD_DELETED,
                                   "its workload was deleted while the step was not finished", 6)
    before = running_run(ONE, {"a": (sr_status("a"), work(W.GONE))})
    return before, at(6), Decision(status, (WriteStepRunStatus("a", a), *events), None)


def steprun_deleting() -> Case:
    a, status, base, events = lost(Reason.WORKLOAD_DELETED,
                                   "its StepRun was deleted while the step was not finished", 6)
    before = replace(base, step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", sr_status("a"), deleting=True,
                                   attempt=work(W.RUNNING)))]))
    return before, at(6), Decision(status, (WriteStepRunStatus("a", a),
                                            StopWorkload("a", 30),
                                            *events), None)


def steprun_gone() -> Case:
    _, status, base, events = lost(Reason.WORKLOAD_DELETED,
                                   "its StepRun was deleted while the step was not finished", 6)
    before = replace(base, step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", None, deleting=True, gone=True))]))
    return before, at(6), Decision(status, events, None)


def success_outranks_deletion() -> Case:
    """The work was done before its StepRun was deleted: that is what is recorded."""
    before = running_run(ONE, {"a": (sr_status("a"), None)})
    before = replace(before, step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", sr_status("a"), deleting=True,
                                   attempt=work(W.SUCCEEDED)))]))
    a = done("a", S, Reason.COMPLETED, None, 6)
    status = expect(before, RunPhase.SUCCEEDED, {"a": entry("a", a)}, now=6,
                    reason=Reason.COMPLETED, message="all 1 steps succeeded", duration="6s")
    return before, at(6), Decision(status, (
        WriteStepRunStatus("a", a),
        run_event("Succeeded", "Succeeded after 6s: all 1 steps succeeded", "Normal")), None)


def absent_is_not_gone() -> Case:
    """A workload the cache has not shown yet is created again (harmless), never Lost."""
    before = running_run(ONE, {"a": (sr_status("a"), work(W.ABSENT))})
    return before, at(6), Decision(before.status, (StartAttempt("a", 1),), None)


def seen_then_absent_is_gone() -> Case:
    """A workload its StepRun records as seen, absent now, was deleted while no operator
    watched (a replica that never saw it acts now): Lost, never created again."""
    a, status, _, events = lost(Reason.WORKLOAD_DELETED,
                                   "its workload was deleted while the step was not finished", 6)
    seen_status = replace(sr_status("a"), workload=replace(ref("a"), observed=True))
    before = running_run(ONE, {"a": (seen_status, work(W.ABSENT))})
    return before, at(6), Decision(status, (WriteStepRunStatus("a", a), *events), None)


def heartbeat_expired() -> Case:
    hb = spec(step("a", heartbeat_timeout_seconds=10), on_failure=OnFailure.CONTINUE)
    beat = replace(sr_status("a"), heartbeat_at=at(5))
    before = running_run(hb, {"a": (beat, work(W.RUNNING, started_at=at(1)))})
    a = ended("a", beat, StepPhase.LOST, Reason.HEARTBEAT_EXPIRED, "no heartbeat for 10s", 15)
    status = expect(before, RunPhase.FAILED, {"a": entry("a", a)}, now=15,
                    reason=Reason.HEARTBEAT_EXPIRED, message="no heartbeat for 10s",
                    duration="15s")
    return before, at(15), Decision(status, (
        WriteStepRunStatus("a", a), StopWorkload("a", 30),
        step_event("a", Reason.HEARTBEAT_EXPIRED, "no heartbeat for 10s"),
        run_event("Failed", "Failed after 15s: no heartbeat for 10s")), None)


LOST_A = done("a", StepPhase.LOST, Reason.WORKLOAD_DELETED, "gone", 6)
LATE = step_event("a", "LateReportRejected",
                 "a success was reported for step a after it ended Lost (WorkloadDeleted); "
                 "the report is rejected and the step stays Lost")


def late_success_rejected() -> Case:
    before = running_run(replace(PAIR, on_failure=OnFailure.CONTINUE),
                         {"a": (LOST_A, work(W.SUCCEEDED)), "b": (sr_status("b"),
                                                                   work(W.RUNNING))})
    return before, at(9), Decision(before.status, (StopWorkload("a", 30), LATE),
                                   None)


def late_success_after_the_end() -> Case:
    """The StepRun's own write failed: it still says Running, the run recorded Lost."""
    final = expect(running_run(ONE, {"a": (LOST_A, None)}), RunPhase.FAILED, now=6,
                   reason=Reason.WORKLOAD_DELETED, message="gone", duration="6s")
    before = replace(running_run(ONE, {"a": (sr_status("a"), work(W.SUCCEEDED))}),
                     status=final)
    return before, at(9), Decision(final, (WriteStepRunStatus("a", LOST_A),
                                           StopWorkload("a", 30),
                                           LATE), None)


# -- a terminal run ------------------------------------------------------------------------------

DONE_A = done("a", S, Reason.COMPLETED, None, 5)


def finished(ttl: int | None, **steprun: object) -> m.Observed:
    base = running_run(replace(ONE, ttl_seconds_after_finished=ttl, cancel_requested=True),
                       {"a": (DONE_A, None)})
    final = expect(base, RunPhase.SUCCEEDED, now=5, reason=Reason.COMPLETED,
                   message="all 1 steps succeeded", duration="5s")
    seen_a = m.StepRunObservation("r-a", DONE_A, attempt=work(W.SUCCEEDED),
                                  **steprun)  # type: ignore[arg-type]
    return replace(base, status=final, step_runs=m.frozen_step_runs([("a", seen_a)]))


def terminal_is_kept_whole() -> Case:
    before = finished(60)
    return before, at(30), Decision(before.status, (), at(65))


def finalizer_goes_once_recorded() -> Case:
    before = finished(None, deleting=True)
    return before, at(30), Decision(before.status, (RemoveFinalizer("a"),), None)


def ttl_deletes_steprun() -> Case:
    before = finished(60)
    return before, at(65), Decision(before.status, (RemoveFinalizer("a"), DeleteStepRun("a")),
                                    None)


def ttl_after_steprun_gone() -> Case:
    before = replace(finished(60), step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", None, deleting=True, gone=True))]))
    return before, at(65), Decision(before.status, (), None)


def no_work_outlives_its_run() -> Case:
    before = replace(finished(None), step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", DONE_A, attempt=work(W.RUNNING)))]))
    return before, at(30), Decision(before.status, (StopWorkload("a", 30),),
                                    None)


# -- invalid spec and conditions ------------------------------------------------------------------


def invalid_spec() -> Case:
    before = observed(spec(step("a", "b"), step("b", "a"), step("c", "x")))
    skipped = m.StepState(StepPhase.SKIPPED, Reason.INVALID_SPEC, "not run: the spec is invalid",
                          finished_at=T0)
    text = 'spec.steps[2].needs: unknown step "x"'
    status = replace(expect(before, RunPhase.FAILED, dict.fromkeys("abc", skipped),
                            reason=Reason.INVALID_SPEC, message=text, duration="0s"),
                     progress="0/3")  # none of them ran: not 3/3
    return before, T0, Decision(status, (run_event("Failed", f"Failed after 0s: {text}"),), None)


def conditions_of_others_are_kept() -> Case:
    """A hub's condition on a batch run means nothing to the core and is kept as it is."""
    before = running_run(CHAIN, {"a": running("a")},
                         conditions=(HUB, UNKNOWN), topology_terminated=True)
    status = replace(before.status, conditions=(UNKNOWN, HUB))
    return before, at(3), Decision(status, (), None)


CASES = [
    pytest.param(*first_reconcile(), id="first-reconcile-creates-roots"),
    pytest.param(*independent_steps_start_together(), id="independent-steps-start-together"),
    pytest.param(*batch_waits_for_success(), id="batch-waits-for-success"),
    pytest.param(*batch_need_succeeded(), id="batch-dependent-starts-on-success"),
    pytest.param(*realtime_need_running(), id="realtime-dependent-starts-on-running"),
    pytest.param(*status_never_written(), id="steprun-without-status-is-its-first-attempt"),
    pytest.param(*first_write_records_the_workload_running(), id="first-write-when-running"),
    pytest.param(*recorded_but_never_seen(), id="recorded-steprun-never-seen-is-created-again"),
    pytest.param(*running_record_never_seen(), id="running-record-never-seen-resumes"),
    pytest.param(*pod_runs(), id="pod-runs"),
    pytest.param(*permanent_failure_fails_fast(), id="permanent-failure-skips-dependents"),
    pytest.param(*image_pull_is_not_retried(), id="image-pull-not-retried"),
    pytest.param(*transient_failure_backs_off(), id="transient-failure-backs-off"),
    pytest.param(*backoff_waits(), id="backoff-waits"),
    pytest.param(*backoff_over_starts_attempt_two(), id="backoff-over-starts-attempt-2"),
    pytest.param(*second_retry_waits_longer_up_to_the_cap(),
                 id="second-retry-waits-longer-up-to-the-cap"),
    pytest.param(*retry_at_once_without_backoff(), id="retry-at-once-without-backoff"),
    pytest.param(*no_retry_past_the_run_deadline(), id="no-retry-past-run-deadline"),
    pytest.param(*success_after_retry(), id="success-after-retry"),
    pytest.param(*ttl_counts_from_the_end(), id="requeue-at-ttl-even-at-zero"),
    pytest.param(*attempt_times_out(), id="attempt-times-out-not-retried"),
    pytest.param(*attempt_deadline_requeues(), id="requeue-at-heartbeat-expiry"),
    pytest.param(*run_times_out(), id="run-times-out"),
    pytest.param(*fail_fast(), id="stop-policy-fails-fast"),
    pytest.param(*go_on(), id="continue-policy-goes-on"),
    pytest.param(*first_failure_by_time_then_spec_order(), id="continue-reports-first-failure"),
    pytest.param(*stop_observed(), id="stop-observed"),
    pytest.param(*topology_pods_gone(), id="realtime-no-live-pod-left"),
    pytest.param(*topology_ended_by_hub(), id="realtime-hub-ends-topology"),
    pytest.param(*topology_ends_a_stop_whatever_the_drain(), id="realtime-stop-ends-on-topology"),
    pytest.param(*topology_ends_before_all_started(), id="realtime-ends-before-all-started"),
    pytest.param(*topology_with_a_failed_step(), id="realtime-topology-ends-with-a-failure"),
    pytest.param(*stale_running_steps_end_with_their_stepruns(),
                 id="realtime-stepruns-deleted-after-stop"),
    pytest.param(*topology_not_up_yet(), id="realtime-topology-not-up-yet"),
    pytest.param(*realtime_failure_is_not_retried(), id="realtime-failure-not-retried"),
    pytest.param(*workload_deleted(), id="workload-deleted-is-lost"),
    pytest.param(*steprun_deleting(), id="steprun-deleting-is-lost"),
    pytest.param(*steprun_gone(), id="steprun-gone-is-lost"),
    pytest.param(*success_outranks_deletion(), id="success-outranks-steprun-deletion"),
    pytest.param(*absent_is_not_gone(), id="absent-workload-is-not-gone"),
    pytest.param(*seen_then_absent_is_gone(), id="seen-then-absent-workload-is-lost"),
    pytest.param(*heartbeat_expired(), id="heartbeat-expired-is-lost"),
    pytest.param(*late_success_rejected(), id="late-success-rejected"),
    pytest.param(*late_success_after_the_end(), id="late-success-after-the-end"),
    pytest.param(*terminal_is_kept_whole(), id="terminal-kept-whole-even-when-stopped"),
    pytest.param(*finalizer_goes_once_recorded(), id="finalizer-removed-once-recorded"),
    pytest.param(*ttl_deletes_steprun(), id="ttl-deletes-stepruns"),
    pytest.param(*ttl_after_steprun_gone(), id="ttl-nothing-left"),
    pytest.param(*no_work_outlives_its_run(), id="no-work-outlives-its-run"),
    pytest.param(*invalid_spec(), id="invalid-spec-starts-nothing"),
    pytest.param(*conditions_of_others_are_kept(), id="foreign-conditions-kept"),
]


test_decide = table(CASES)


def test_a_workload_seen_is_recorded_seen_with_the_write_the_step_makes_anyway() -> None:
    before = running_run(ONE, {"a": (sr_status("a", StepPhase.PENDING), work(W.RUNNING))})
    (write,) = [a for a in decide(before, at(3)).actions if isinstance(a, WriteStepRunStatus)]
    assert write.status.phase is StepPhase.RUNNING
    assert write.status.workload is not None
    assert write.status.workload.observed
    quiet = running_run(ONE, {"a": (sr_status("a", StepPhase.PENDING), work(W.PENDING))})
    assert not [a for a in decide(quiet, at(3)).actions if isinstance(a, WriteStepRunStatus)]


# -- how a stop ends, as rows ---------------------------------------------------------------------
# Each row is what differs; the test builds the rest of the whole Decision the same way for all:
# the run Canceled with the row's words and trigger, its step actions, then the run's Events.

EVERY_STEP_ENDED = "stopped on request; every step ended"


def canceled(before: m.Observed, now: float, changes: dict[str, m.StepState],
             actions: tuple[Action, ...], stop: m.StopState, text: str) -> Decision:
    """The whole Decision that records a run Canceled: `actions`, then its Canceled Event."""
    status = expect(before, RunPhase.CANCELED, changes, now=now, reason=Reason.CANCELED,
                    message=text, duration=f"{now:g}s", stop=stop)
    return Decision(status, (*actions, run_event("Canceled", f"Canceled after {now:g}s: {text}",
                                                 "Normal")), None)


def stop_observed_then(attempt: m.AttemptObservation) -> m.Observed:
    """stopping_run() once its stop was observed at 4, with a's workload now as given."""
    first = decide(stopping_run(), at(4)).status
    return replace(stopping_run(), status=first, step_runs=m.frozen_step_runs([
        ("a", m.StepRunObservation("r-a", sr_status("a"), attempt=attempt))]))


# The last running step (a) of a stopping run ends: what its workload shows, what a becomes, when.
LAST_STEP_ENDS = [
    pytest.param(work(W.GONE),
                 done("a", StepPhase.CANCELED, Reason.CANCELED,
                       "stopped: its workload was deleted", 9),
                 9, StopTrigger.ALL_STEPS_TERMINAL, EVERY_STEP_ENDED,
                 id="stop-completes-when-work-is-gone"),
    pytest.param(work(W.SUCCEEDED),
                 done("a", S, Reason.COMPLETED, None, 9),
                 9, StopTrigger.ALL_STEPS_TERMINAL, EVERY_STEP_ENDED,
                 id="success-during-stop-stands"),
    # A pod that exits on the stop's SIGTERM was stopped, not failed.
    pytest.param(work(W.FAILED, exit_code=143),
                 done("a", StepPhase.CANCELED, Reason.CANCELED,
                       "stopped: attempt 1 failed (exit code 143, Transient)", 9),
                 9, StopTrigger.ALL_STEPS_TERMINAL, EVERY_STEP_ENDED,
                 id="exit-on-sigterm-after-stop-is-canceled"),
    pytest.param(work(W.RUNNING, stopping=True),
                 done("a", StepPhase.CANCELED, Reason.GRACE_PERIOD_EXPIRED,
                       "still running 30s after the stop: recorded canceled", 34),
                 34, StopTrigger.GRACE_PERIOD_EXPIRED,
                 "stopped on request; the grace period of 30s expired",
                 id="stop-grace-expires"),
]


@pytest.mark.parametrize(("attempt", "a", "now", "trigger", "text"), LAST_STEP_ENDS)
def test_stop_completes_when_the_last_step_ends(attempt: m.AttemptObservation,
                                                a: m.StepRunStatus, now: float,
                                                trigger: StopTrigger, text: str) -> None:
    before = stop_observed_then(attempt)
    stop = replace(STOP_AT_4, completed_at=at(now), trigger=trigger)
    assert decide(before, at(now)) == canceled(before, now, {"a": entry("a", a)},
                                               (WriteStepRunStatus("a", a),), stop, text)


# A stop requested and completed in one reconcile, since nothing it must wait for is running.
BACKOFF_STOPPED = ended("a", backing_off(), StepPhase.CANCELED, Reason.CANCELED,
                        "stopped while waiting to retry", 16)
NOT_STARTED = m.StepState(StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                          "not started: the run was stopped", finished_at=T0)
TOPOLOGY_STOPPED = ended("a", rt_status("a"), StepPhase.CANCELED, Reason.CANCELED,
                         "stopped: the topology terminated", 5)

STOPPED_AT_ONCE = [
    pytest.param(running_run(replace(RETRYING, cancel_requested=True),
                             {"a": (backing_off(), work(W.FAILED, exit_code=75))}),
                 16, {"a": entry("a", BACKOFF_STOPPED)},
                 (WriteStepRunStatus("a", BACKOFF_STOPPED),),
                 StopTrigger.ALL_STEPS_TERMINAL, EVERY_STEP_ENDED,
                 id="stop-during-retry-backoff"),
    pytest.param(observed(replace(CHAIN, cancel_requested=True)),
                 0, {"a": NOT_STARTED, "b": NOT_STARTED}, (),
                 StopTrigger.ALL_STEPS_TERMINAL, EVERY_STEP_ENDED,
                 id="stop-before-first-reconcile"),
    pytest.param(running_run(replace(RT, cancel_requested=True),
                             {"a": (rt_status("a"), work(W.RUNNING))}, topology_terminated=True),
                 5, {"a": entry("a", TOPOLOGY_STOPPED), "b": replace(NOT_STARTED,
                                                                     finished_at=at(5))},
                 (WriteStepRunStatus("a", TOPOLOGY_STOPPED), StopWorkload("a", 30)),
                 StopTrigger.TOPOLOGY_TERMINATED, "stopped on request; the topology terminated",
                 id="realtime-stop-and-end-together"),
]


@pytest.mark.parametrize(("before", "now", "changes", "actions", "trigger", "text"),
                         STOPPED_AT_ONCE)
def test_stop_requested_and_completed_at_once(before: m.Observed, now: float,
                                              changes: dict[str, m.StepState],
                                              actions: tuple[Action, ...], trigger: StopTrigger,
                                              text: str) -> None:
    stop = m.StopState(at(now), at(now), at(now), trigger)
    assert decide(before, at(now)) == canceled(before, now, changes, (*actions, STOP_REQUESTED),
                                               stop, text)
