"""Suspend and resume (docs/API.md "Suspend and resume", guarantee 15): while `spec.suspend` is
true nothing starts (no step, no item, no next attempt, no finally step), what runs goes on and
its end is recorded; the run and every step held back say why; the run's timers keep counting;
a stop lifts it. One rule a test; the property over random runs (suspended and resumed at any
moment) is `nothing_starts_while_suspended` in test_properties."""

from __future__ import annotations

from dataclasses import replace

from runctl.machine import model as m
from runctl.machine.actions import CreateStepRun, EmitEvent, StartAttempt, WriteStepRunStatus
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import Reason, RunPhase, StepPhase, Waiting
from runctl.machine.slots import SUSPENDED_NOTE
from runctl.machine.status import RESUMED_MESSAGE, STOP_LIFTS, SUSPENDED_MESSAGE
from tests.unit.builders import T0, at, observed, retry, running_run, spec, sr_status, step, work
from tests.unit.decisions import running

P = StepPhase
W = m.WorkloadState
HELD = m.StepState(P.PENDING, Waiting.SUSPENDED, SUSPENDED_NOTE)
SUSPENDED_EVENT = EmitEvent("run", None, "Normal", "Suspended", SUSPENDED_MESSAGE)
RESUMED_EVENT = EmitEvent("run", None, "Normal", "Resumed", RESUMED_MESSAGE)


def made(d: Decision) -> list[str]:
    return [a.step for a in d.actions if isinstance(a, CreateStepRun)]


def started(d: Decision) -> list[tuple[str, int]]:
    return [(a.step, a.attempt) for a in d.actions if isinstance(a, StartAttempt)]


def state(d: Decision, name: str) -> m.StepState:
    found = m.step_state(d.status, name)
    assert found is not None
    return found


def condition(status: m.RunStatus) -> m.Condition | None:
    return next((c for c in status.conditions if c.type == "Suspended"), None)


def events(d: Decision) -> list[EmitEvent]:
    return [a for a in d.actions if isinstance(a, EmitEvent)]


def test_a_run_created_suspended_starts_nothing_and_says_why() -> None:
    d = decide(observed(spec(step("a"), step("b", "a"), suspend=True)), T0)
    assert made(d) == started(d) == []
    assert (d.status.phase, d.status.reason, d.status.message) == (
        RunPhase.PENDING, Waiting.SUSPENDED, SUSPENDED_MESSAGE)
    assert state(d, "a") == HELD
    assert state(d, "b") == m.StepState(P.PENDING)  # not ready: it waits for a, not for resume
    held = condition(d.status)
    assert held is not None
    assert (held.status, held.reason, held.last_transition_time) == (
        "True", Waiting.SUSPENDED, T0)
    assert events(d) == [SUSPENDED_EVENT]


def test_what_runs_goes_on_and_its_end_is_recorded_the_next_step_waits() -> None:
    run_spec = spec(step("a"), step("b", "a"), step("c"), suspend=True)
    before = running_run(run_spec, {"a": (sr_status("a"), work(W.SUCCEEDED)),
                                    "c": running("c")})
    d = decide(before, at(5))
    a = next(x.status for x in d.actions if isinstance(x, WriteStepRunStatus) and x.step == "a")
    assert (a.phase, state(d, "a").phase) == (P.SUCCEEDED, P.SUCCEEDED)
    assert state(d, "c").phase is P.RUNNING
    assert state(d, "b") == HELD
    assert made(d) == []
    assert (d.status.phase, d.status.reason) == (RunPhase.RUNNING, Waiting.SUSPENDED)


def test_resuming_starts_what_waited_and_says_so_once() -> None:
    run_spec = spec(step("a"), step("b"), suspend=True)
    first = decide(observed(run_spec), T0)
    resumed = replace(observed(replace(run_spec, suspend=False)), status=first.status)
    d = decide(resumed, at(30))
    assert made(d) == ["a", "b"]
    assert state(d, "a").reason is None
    lifted = condition(d.status)
    assert lifted is not None
    assert (lifted.status, lifted.reason, lifted.message, lifted.last_transition_time) == (
        "False", "Resumed", RESUMED_MESSAGE, at(30))
    assert RESUMED_EVENT in events(d)
    again = decide(replace(resumed, status=d.status), at(31))
    assert RESUMED_EVENT not in events(again)
    kept = condition(again.status)
    assert kept is not None
    assert kept.last_transition_time == at(30)


def test_a_run_never_suspended_has_no_suspended_condition() -> None:
    d = decide(observed(spec(step("a"))), T0)
    assert condition(d.status) is None
    assert d.status.reason is None


def test_a_retry_whose_backoff_is_over_waits_for_the_resume() -> None:
    run_spec = spec(step("a", retry=retry(2, 10, (75,))))
    failed = running_run(run_spec, {"a": (sr_status("a"), work(W.FAILED, exit_code=75))})
    backoff = next(x.status for x in decide(failed, at(5)).actions
                   if isinstance(x, WriteStepRunStatus))
    waiting = running_run(replace(run_spec, suspend=True),
                          {"a": (backoff, work(W.FAILED, exit_code=75))})
    early = decide(waiting, at(10))
    assert started(early) == []
    assert early.requeue_at == backoff.next_attempt_at  # its time still wakes the run
    due = decide(waiting, at(20))
    assert started(due) == []
    assert (state(due, "a").reason, state(due, "a").message) == (
        Waiting.RETRY_BACKOFF, f"next attempt {SUSPENDED_NOTE}")
    assert due.requeue_at is None  # only the resume (a spec change) wakes it now
    resumed = decide(replace(waiting, spec=run_spec), at(40))
    assert started(resumed) == [("a", 2)]


def test_items_not_started_wait_items_running_go_on() -> None:
    run_spec = spec(step("f", for_each=m.ForEach(2)), suspend=True)
    first = decide(observed(replace(run_spec, suspend=False),
                            gates=(("f", m.Gate(True, items=4)),)), T0)
    assert made(first) == ["f[0]", "f[1]"]
    runs = {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", sr_status(f"f-{i}"),
                                            attempt=work(W.RUNNING)) for i in range(2)}
    runs["f[1]"] = replace(runs["f[1]"], attempt=work(W.SUCCEEDED))
    later = replace(observed(run_spec, gates=(("f", m.Gate(True, items=4)),)),
                    status=first.status, step_runs=m.frozen_step_runs(runs.items()))
    d = decide(later, at(6))
    assert made(d) == []
    f = state(d, "f")
    assert (f.phase, f.reason, f.message) == (
        P.RUNNING, Waiting.SUSPENDED, f"items {SUSPENDED_NOTE}")
    assert f.items == m.ItemCounts(4, ((P.PENDING, 2), (P.RUNNING, 1), (P.SUCCEEDED, 1)))


def test_finally_steps_wait_for_the_resume() -> None:
    run_spec = spec(step("a"), finally_steps=(step("cleanup"),), suspend=True)
    before = running_run(run_spec, {"a": (sr_status("a"), work(W.SUCCEEDED))})
    d = decide(before, at(5))
    assert made(d) == []
    assert state(d, "cleanup") == HELD
    assert (d.status.phase, d.status.reason) == (RunPhase.RUNNING, Waiting.SUSPENDED)


def test_a_stop_lifts_the_suspension_and_ends_the_run_as_any_stop() -> None:
    run_spec = spec(step("a"), step("b"), finally_steps=(step("cleanup"),), suspend=True)
    suspended = decide(running_run(run_spec, {"a": running("a")}), at(1))
    stopping = running_run(replace(run_spec, cancel_requested=True), {"a": running("a")},
                           extra={"b": HELD, "cleanup": HELD},
                           conditions=suspended.status.conditions)
    d = decide(stopping, at(5))
    assert d.status.phase is RunPhase.STOPPING
    assert (state(d, "b").phase, state(d, "b").reason) == (P.CANCELED,
                                                            Reason.STOPPED_BEFORE_START)
    lifted = condition(d.status)
    assert lifted is not None
    assert (lifted.status, lifted.reason, lifted.message) == ("False", "StopRequested",
                                                              STOP_LIFTS)
    assert RESUMED_EVENT not in events(d)
    # a is gone: the finally step starts, suspended or not.
    ended = replace(stopping, status=d.status, step_runs=m.frozen_step_runs(
        [("a", m.StepRunObservation("r-a", sr_status("a"), attempt=work(W.GONE)))]))
    assert made(decide(ended, at(6))) == ["cleanup"]


def test_a_run_that_ends_while_suspended_ends_and_its_condition_says_so() -> None:
    run_spec = spec(step("a"), suspend=True)
    first = decide(running_run(run_spec, {"a": running("a")}), at(1))
    done = running_run(run_spec, {"a": (sr_status("a"), work(W.SUCCEEDED))},
                       conditions=first.status.conditions)
    d = decide(done, at(5))
    assert d.status.phase is RunPhase.SUCCEEDED
    ended = condition(d.status)
    assert ended is not None
    assert (ended.status, ended.reason) == ("False", "RunEnded")


def test_the_deadline_keeps_counting_while_suspended() -> None:
    run_spec = spec(step("a"), step("b", "a"), timeout_seconds=60, suspend=True)
    before = running_run(run_spec, {"a": (sr_status("a"), work(W.SUCCEEDED))})
    assert decide(before, at(30)).requeue_at == at(60)
    d = decide(before, at(60))
    assert d.status.phase is RunPhase.TIMED_OUT
