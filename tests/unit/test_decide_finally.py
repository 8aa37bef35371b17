"""decide() for finally steps and stop modes: named runs in, whole decisions compared out.

A run's main steps end and their end is recorded as its outcome in the same write that starts
its finally steps; the finally steps then run on their own budget, and the run ends with its
outcome (or FinallyFailed). Stops in Drain mode leave running main steps alone until the grace
period's end; `shutdown.finally: Skip` keeps finally steps from running, or stops them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from runctl.machine import model as m
from runctl.machine.actions import (
    CreateStepRun,
    StartAttempt,
    StopWorkload,
    WriteStepRunStatus,
)
from runctl.machine.dag import Problem, validate
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import (
    FinallyPolicy,
    Mode,
    Reason,
    RunPhase,
    ShutdownMode,
    StepPhase,
    StopTrigger,
    Waiting,
)
from tests.unit.builders import (
    at,
    entry,
    expect,
    retry,
    running_run,
    spec,
    sr_status,
    step,
    work,
)
from tests.unit.decisions import (
    STOP_REQUESTED,
    Case,
    created,
    done,
    rows,
    run_event,
    running,
    step_event,
    table,
)

W = m.WorkloadState
S, F, C = StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.CANCELED

# `a` is the main step; `notify` runs only on failure (it reads the outcome); `unlock` always
# runs, after `notify`.
NOTIFY = step("notify", conditional=True, reads_facts=True)
UNLOCK = step("unlock", "notify")
RUN = spec(step("a"), finally_steps=(NOTIFY, UNLOCK), finally_timeout_seconds=60)


def pending_status(name: str, now: float) -> m.StepRunStatus:
    return sr_status(name, StepPhase.PENDING, started=now)


def outcome(phase: RunPhase, reason: str, message: str | None, now: float) -> m.Outcome:
    return m.Outcome(phase, reason, message, at(now))


def in_finally(run: m.RunSpec, main: dict[str, m.StepRunStatus], o: m.Outcome,
               finals: dict[str, tuple[m.StepRunStatus | None, m.AttemptObservation | None]],
               *, stop: m.StopState | None = None,
               phase: RunPhase = RunPhase.RUNNING) -> m.Observed:
    """A run whose main steps ended as `main` and outcome `o` recorded, its finally steps as
    `finals` say (the others Pending)."""
    steps = {n: (s, work(W.SUCCEEDED if s.phase is S else W.FAILED)) for n, s in main.items()}
    before = running_run(run, {**steps, **finals}, phase=phase, stop=stop)
    return replace(before, status=replace(before.status, outcome=o))


# -- the main steps end: the outcome is recorded and the finally steps start ---------------------


def success_starts_finally() -> Case:
    """`a` succeeds: the outcome Succeeded is recorded; `notify` waits for its gate (it reads
    the outcome, which the shell renders once recorded); `unlock` needs it."""
    before = running_run(RUN, {"a": (sr_status("a"), work(W.SUCCEEDED))})
    a = done("a", S, Reason.COMPLETED, None, 5)
    o = outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", 5)
    status = expect(before, RunPhase.RUNNING, {"a": entry("a", a)},
                    reason=Waiting.RUNNING_FINALLY, outcome=o,
                    message="running finally steps (2 of 2 not done); the main steps ended "
                            "Succeeded (Completed): all 1 steps succeeded")
    return before, at(5), Decision(status, (WriteStepRunStatus("a", a),), at(65))


def gate_false_skips_then_ordered_step_starts() -> Case:
    """`notify`'s condition is false (the run succeeded): it is skipped, and `unlock`, which
    needs it, still runs (a condition is not a failure)."""
    o = outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", 5)
    before = replace(in_finally(RUN, {"a": done("a", S, Reason.COMPLETED, None, 5)}, o, {}),
                     gates=(("notify", m.Gate(False, message="when is false")),))
    skipped = m.StepState(StepPhase.SKIPPED, Reason.CONDITION_FALSE, "when is false",
                          finished_at=at(6))
    unlock = entry("unlock", pending_status("unlock", 6))
    status = expect(before, RunPhase.RUNNING, {"notify": skipped, "unlock": unlock},
                    reason=Waiting.RUNNING_FINALLY,
                    message="running finally steps (1 of 2 not done); the main steps ended "
                            "Succeeded (Completed): all 1 steps succeeded")
    return before, at(6), Decision(status, created("unlock", at(65)), at(65))


def failure_runs_notify() -> Case:
    """`a` failed (outcome Failed): `notify`'s gate holds, it starts with the finally
    deadline."""
    a = done("a", F, Reason.STEP_FAILED, "exit 1", 5)
    o = outcome(RunPhase.FAILED, Reason.STEP_FAILED, "exit 1", 5)
    before = replace(in_finally(RUN, {"a": a}, o, {}), gates=(("notify", m.Gate(True)),))
    status = expect(before, RunPhase.RUNNING, {"notify": entry("notify",
                                                               pending_status("notify", 6))},
                    reason=Waiting.RUNNING_FINALLY,
                    message="running finally steps (2 of 2 not done); the main steps ended "
                            "Failed (StepFailed): exit 1")
    return before, at(6), Decision(status, created("notify", at(65)), at(65))


def failed_outcome_stands() -> Case:
    """The finally steps all ended: a Failed outcome is the run's end, whatever they did."""
    a = done("a", F, Reason.STEP_FAILED, "exit 1", 5)
    o = outcome(RunPhase.FAILED, Reason.STEP_FAILED, "exit 1", 5)
    n = done("notify", S, Reason.COMPLETED, None, 8, started=6)
    before = in_finally(RUN, {"a": a}, o, {"notify": (n, work(W.SUCCEEDED)),
                                           "unlock": (sr_status("unlock", started=8),
                                                      work(W.SUCCEEDED))})
    u = done("unlock", S, Reason.COMPLETED, None, 9, started=8)
    status = expect(before, RunPhase.FAILED, {"unlock": entry("unlock", u)}, now=9,
                    reason=Reason.STEP_FAILED, message="exit 1", duration="9s")
    return before, at(9), Decision(status, (
        WriteStepRunStatus("unlock", u),
        run_event("Failed", "Failed after 9s: exit 1")), None)


def test_failed_finally_fails_a_success() -> None:
    """A finally step failed a run whose main steps succeeded: Failed/FinallyFailed; its
    dependent is skipped."""
    run = spec(step("a"), finally_steps=(step("clean"), step("after", "clean")),
               finally_timeout_seconds=60)
    o = outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", 5)
    before = in_finally(run, {"a": done("a", S, Reason.COMPLETED, None, 5)}, o,
                        {"clean": (sr_status("clean", started=5),
                                   work(W.FAILED, exit_code=1))})
    d = decide(before, at(9))
    assert (d.status.phase, d.status.reason) == (RunPhase.FAILED, Reason.FINALLY_FAILED)
    assert d.status.message is not None
    assert d.status.message.startswith(
        "finally step clean ended Failed (StepFailed): attempt 1 failed (exit code 1")
    after = m.step_state(d.status, "after")
    assert after is not None
    assert (after.phase, after.reason) == (StepPhase.SKIPPED,
                                                                 Reason.UPSTREAM_FAILED)


# -- time: a main timeout leaves the finally steps their own budget ------------------------------


def main_timeout_keeps_finally_budget() -> Case:
    """The run's deadline passes: `a` times out, the outcome is TimedOut, and `unlock`-like
    ungated finally steps start at once with the finally deadline (now + 60s), not the run's."""
    run = replace(spec(step("a"), finally_steps=(step("clean"),), finally_timeout_seconds=60),
                  timeout_seconds=10)
    before = running_run(run, {"a": running("a")})
    a = done("a", StepPhase.TIMED_OUT, Reason.TIMED_OUT, "the run's deadline passed", 10)
    o = outcome(RunPhase.TIMED_OUT, Reason.TIMED_OUT,
                "the run did not finish within its timeout of 10s", 10)
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", a), "clean": entry("clean", pending_status("clean", 10))},
        reason=Waiting.RUNNING_FINALLY, outcome=o,
        message="running finally steps (1 of 1 not done); the main steps ended TimedOut "
                "(TimedOut): the run did not finish within its timeout of 10s")
    c = created("clean", at(70))
    return before, at(10), Decision(status, (
        c[0], WriteStepRunStatus("a", a), c[1], StopWorkload("a", 30),
        step_event("a", Reason.TIMED_OUT, "the run's deadline passed")),
        at(70))


def finally_deadline_passes() -> Case:
    """The finally budget passes: the running finally step times out, the one not started is
    canceled before start; a Succeeded outcome becomes FinallyFailed."""
    o = outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", 5)
    before = in_finally(RUN, {"a": done("a", S, Reason.COMPLETED, None, 5)}, o,
                        {"notify": running("notify", 6)})
    n = done("notify", StepPhase.TIMED_OUT, Reason.TIMED_OUT,
             "the finally steps' deadline passed", 65, started=6)
    u = m.StepState(C, Reason.STOPPED_BEFORE_START,
                    "not started: the finally steps' deadline passed", finished_at=at(65))
    message = ("finally step notify ended TimedOut (TimedOut): the finally steps' deadline "
               "passed")
    status = expect(before, RunPhase.FAILED, {"notify": entry("notify", n), "unlock": u},
                    now=65, reason=Reason.FINALLY_FAILED, message=message, duration="1m5s")
    return before, at(65), Decision(status, (
        WriteStepRunStatus("notify", n), StopWorkload("notify", 30),
        step_event("notify", Reason.TIMED_OUT,
                  "the finally steps' deadline passed"),
        run_event("Failed", f"Failed after 1m5s: {message}")), None)


# -- stops -------------------------------------------------------------------------------------

STOP = m.StopState(requested_at=at(3), observed_at=at(3))


def stop_runs_finally() -> Case:
    """A Cancel stop ends `a` (its pod gone): the stop completes now, the outcome is
    Canceled, and the finally steps still run (`shutdown.finally: Run`): the run is Stopping
    while they do."""
    run = replace(spec(step("a"), finally_steps=(step("clean"),), finally_timeout_seconds=60),
                  cancel_requested=True)
    before = running_run(run, {"a": (sr_status("a"), work(W.GONE))}, stop=STOP,
                         phase=RunPhase.STOPPING)
    a = done("a", C, Reason.CANCELED, "stopped: its workload was deleted", 4)
    o = outcome(RunPhase.CANCELED, Reason.CANCELED, "stopped on request; every step ended", 4)
    stop = replace(STOP, completed_at=at(4), trigger=StopTrigger.ALL_STEPS_TERMINAL)
    status = expect(before, RunPhase.STOPPING, {
        "a": entry("a", a), "clean": entry("clean", pending_status("clean", 4))},
        reason=Waiting.RUNNING_FINALLY, outcome=o, stop=stop,
        message="running finally steps (1 of 1 not done); the main steps ended Canceled "
                "(Canceled): stopped on request; every step ended")
    c = created("clean", at(64))
    return before, at(4), Decision(status, (c[0], WriteStepRunStatus("a", a), c[1]),
                                   at(64))


def test_stop_skips_finally() -> None:
    """`shutdown.finally: Skip`: after the stop no finally step starts; each is canceled
    before start and the run ends Canceled in the same decision."""
    run = replace(spec(step("a"), finally_steps=(step("clean"),), finally_timeout_seconds=60),
                  cancel_requested=True, shutdown_finally=FinallyPolicy.SKIP)
    before = running_run(run, {"a": (sr_status("a"), work(W.GONE))}, stop=STOP,
                         phase=RunPhase.STOPPING)
    d = decide(before, at(4))
    clean = m.step_state(d.status, "clean")
    assert clean is not None
    assert (clean.phase, clean.reason) == (C, Reason.STOPPED_BEFORE_START)
    assert d.status.phase is RunPhase.CANCELED
    assert not any(isinstance(x, CreateStepRun | StartAttempt) for x in d.actions)


def stop_during_finally_does_not_stop_them() -> Case:
    """A stop that arrives while finally steps run does not stop them: nothing is stopped, the
    run shows Stopping, and the outcome stands."""
    o = outcome(RunPhase.FAILED, Reason.STEP_FAILED, "exit 1", 5)
    run = replace(RUN, cancel_requested=True)
    before = in_finally(run, {"a": done("a", F, Reason.STEP_FAILED, "exit 1", 5)}, o,
                        {"notify": running("notify", 6)})
    stop = m.StopState(requested_at=at(7), observed_at=at(7))
    status = expect(before, RunPhase.STOPPING, reason=Waiting.RUNNING_FINALLY, stop=stop,
                    message="running finally steps (2 of 2 not done); the main steps ended "
                            "Failed (StepFailed): exit 1")
    return before, at(7), Decision(status, (
        STOP_REQUESTED,), at(65))


def test_skip_during_finally_stops_them() -> None:
    """Skip set while finally steps run, with a stop: the running finally step is stopped at
    once and the one not started is canceled; a Succeeded outcome ends Canceled once the
    stopped step ends."""
    o = outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", 5)
    run = replace(RUN, cancel_requested=True, shutdown_finally=FinallyPolicy.SKIP)
    before = in_finally(run, {"a": done("a", S, Reason.COMPLETED, None, 5)}, o,
                        {"notify": running("notify", 6)})
    d = decide(before, at(7))
    assert StopWorkload("notify", 30) in d.actions
    unlock = m.step_state(d.status, "unlock")
    assert unlock is not None
    assert (unlock.phase, unlock.reason) == (
        C, Reason.STOPPED_BEFORE_START)
    assert (d.status.phase, d.status.reason) == (RunPhase.STOPPING, Waiting.RUNNING_FINALLY)
    # The stopped step's pod goes: the run ends Canceled, not Succeeded.
    gone = replace(before, status=d.status, step_runs=m.frozen_step_runs([
        *((k, v) for k, v in before.step_runs if k != "notify"),
        ("notify", m.StepRunObservation("r-notify", sr_status("notify", started=6),
                                        attempt=work(W.GONE)))]))
    end = decide(gone, at(8))
    assert (end.status.phase, end.status.reason) == (RunPhase.CANCELED, Reason.CANCELED)
    assert end.status.message == "stopped on request while the finally steps ran"
    assert end.status.outcome == o


def drain_leaves_running_steps() -> Case:
    """Drain: the running step is not stopped; the step not started is canceled; the run
    waits until the grace period's end."""
    run = replace(spec(step("a"), step("b", "a")), cancel_requested=True,
                  shutdown_mode=ShutdownMode.DRAIN)
    before = running_run(run, {"a": running("a")})
    b = m.StepState(C, Reason.STOPPED_BEFORE_START, "not started: the run was stopped",
                    finished_at=at(3))
    status = expect(before, RunPhase.STOPPING, {"b": b}, reason=Waiting.STOP_REQUESTED,
                    message="stopping: waiting for 1 running step(s) to end",
                    stop=m.StopState(at(3), at(3)))
    return before, at(3), Decision(status, (
        STOP_REQUESTED,), at(33))


def drain_keeps_a_success() -> Case:
    """Drain: the running step finishes within the grace period and keeps its success; the
    run ends Canceled (trigger AllStepsTerminal)."""
    run = replace(spec(step("a")), cancel_requested=True, shutdown_mode=ShutdownMode.DRAIN)
    before = running_run(run, {"a": (sr_status("a"), work(W.SUCCEEDED))}, stop=STOP,
                         phase=RunPhase.STOPPING)
    a = done("a", S, Reason.COMPLETED, None, 10)
    message = "stopped on request; every step ended"
    stop = replace(STOP, completed_at=at(10), trigger=StopTrigger.ALL_STEPS_TERMINAL)
    status = expect(before, RunPhase.CANCELED, {"a": entry("a", a)}, now=10,
                    reason=Reason.CANCELED, message=message, stop=stop, duration="10s")
    return before, at(10), Decision(status, (
        WriteStepRunStatus("a", a),
        run_event("Canceled", f"Canceled after 10s: {message}", "Normal")), None)


def test_drain_grace_expires() -> None:
    """Drain: at the grace period's end the step still running is stopped and recorded
    Canceled/GracePeriodExpired (trigger GracePeriodExpired)."""
    run = replace(spec(step("a")), cancel_requested=True, shutdown_mode=ShutdownMode.DRAIN)
    before = running_run(run, {"a": running("a")}, stop=STOP, phase=RunPhase.STOPPING)
    d = decide(before, at(33))
    a = m.step_state(d.status, "a")
    assert a is not None
    assert (a.phase, a.reason) == (C, Reason.GRACE_PERIOD_EXPIRED)
    assert d.status.stop is not None
    assert d.status.stop.trigger is StopTrigger.GRACE_PERIOD_EXPIRED
    assert StopWorkload("a", 30) in d.actions


def test_drain_no_retry() -> None:
    """Drain: a Transient failure is not retried (nothing new starts); the step keeps its
    failure."""
    run = replace(spec(step("a", retry=retry(2, 0, (75,)))), cancel_requested=True,
                  shutdown_mode=ShutdownMode.DRAIN)
    before = running_run(run, {"a": (sr_status("a"), work(W.FAILED, exit_code=75))},
                         stop=STOP, phase=RunPhase.STOPPING)
    d = decide(before, at(5))
    a = m.step_state(d.status, "a")
    assert a is not None
    assert a.phase is F
    assert not any(isinstance(x, StartAttempt) for x in d.actions)


def test_drain_pending_never_runs() -> None:
    """Drain: a step whose workload was created but had not started is canceled before start,
    even if its pod starts now."""
    run = replace(spec(step("a")), cancel_requested=True, shutdown_mode=ShutdownMode.DRAIN)
    before = running_run(run, {"a": (sr_status("a", StepPhase.PENDING), work(W.RUNNING))})
    d = decide(before, at(3))
    a = m.step_state(d.status, "a")
    assert a is not None
    assert (a.phase, a.reason) == (C, Reason.STOPPED_BEFORE_START)


def test_output_of_failed_main_step() -> None:
    """A finally step reading an output of a main step that failed is skipped
    (UpstreamOutputMissing), never left waiting."""
    reader = step("report", consumes=(("a", "rows"),))
    run = spec(step("a", outputs=(m.OutputSpec("rows"),)), finally_steps=(reader,),
               finally_timeout_seconds=60)
    o = outcome(RunPhase.FAILED, Reason.STEP_FAILED, "exit 1", 5)
    before = in_finally(run, {"a": done("a", F, Reason.STEP_FAILED, "exit 1", 5)}, o, {})
    d = decide(before, at(6))
    report = m.step_state(d.status, "report")
    assert report is not None
    assert (report.phase, report.reason) == (
        StepPhase.SKIPPED, Reason.UPSTREAM_OUTPUT_MISSING)
    assert (d.status.phase, d.status.reason) == (RunPhase.FAILED, Reason.STEP_FAILED)


def test_realtime_finally_is_a_job() -> None:
    """A realtime run's topology ends: its finally step starts as a batch step (a Job)."""
    run = replace(spec(step("a"), finally_steps=(step("clean"),), finally_timeout_seconds=60),
                  mode=Mode.REALTIME)
    rt = sr_status("a", mode=Mode.REALTIME)
    before = replace(running_run(run, {"a": (rt, work(W.RUNNING))}), topology_terminated=True)
    d = decide(before, at(5))
    assert CreateStepRun("clean", "r-clean", at(65)) in d.actions
    assert StartAttempt("clean", 1) in d.actions
    assert d.status.outcome is not None
    assert d.status.outcome.reason == Reason.TOPOLOGY_TERMINATED
    # Its StepRun's first write, once its pod runs, names the pod of a batch attempt.
    made = m.StepRunObservation("r-clean", None, attempt=work(W.RUNNING))
    after = replace(before, status=d.status, step_runs=m.frozen_step_runs(
        (*before.step_runs, ("clean", made))))
    clean = next(x for x in decide(after, at(6)).actions
                 if isinstance(x, WriteStepRunStatus) and x.step == "clean")
    assert clean.status.workload == m.WorkloadRef("Pod", "r-clean-1", observed=True)


CASES = rows(
    success_starts_finally, gate_false_skips_then_ordered_step_starts, failure_runs_notify,
    failed_outcome_stands, main_timeout_keeps_finally_budget,
    finally_deadline_passes, stop_runs_finally,
    stop_during_finally_does_not_stop_them,
    drain_leaves_running_steps, drain_keeps_a_success)


test_decide = table(CASES)


@pytest.mark.parametrize(("finals", "problem"), [
    pytest.param((step("clean", "a"),), Problem(
        "spec.finally[0].needs", 'a finally step cannot need main step "a": finally steps '
        "start once every main step is terminal"), id="needs-a-main-step"),
    pytest.param((step("a"),), Problem("spec.finally[0].name",
                                       'duplicate step "a" (also spec.steps[0])'),
                 id="name-in-both-lists"),
    pytest.param((step("x", "y"), step("y", "x")), Problem("spec.finally", "cycle x -> y -> x"),
                 id="cycle-among-finally-steps"),
    pytest.param((step("x", "nope"),), Problem("spec.finally[0].needs", 'unknown step "nope"'),
                 id="unknown-need"),
])
def test_bad_finally_steps_are_named(finals: tuple[m.StepSpec, ...], problem: Problem) -> None:
    assert validate(spec(step("a"), finally_steps=finals)) == (problem,)
