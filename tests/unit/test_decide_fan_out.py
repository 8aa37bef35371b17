"""decide() on fan-out steps: items made as parallelism allows, each going on as a step does,
and the step's record adding them up (counts, first failures, one verdict) in every rung."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runctl.machine import model as m
from runctl.machine.actions import (
    CreateStepRun,
    RemoveFinalizer,
    StartAttempt,
    StopItems,
    StopWorkload,
    WriteStepRunStatus,
)
from runctl.machine.dag import Problem, validate
from runctl.machine.decide import Decision, decide
from runctl.machine.items import MAX_FAILED_ITEMS, item_spec, settled
from runctl.machine.phases import Mode, OnFailure, Reason, RunPhase, StepPhase
from runctl.machine.steps import StepContext, observe_step
from tests.unit.builders import at, observed, run_status, spec, sr_status, step, work

W = m.WorkloadState
P = StepPhase
FAN = step("f", for_each=m.ForEach(parallelism=2))
AFTER = step("after", "f")
FLOW = spec(FAN, AFTER)


def gate(items: int, skipped: frozenset[int] = frozenset()) -> tuple[tuple[str, m.Gate], ...]:
    return (("f", m.Gate(True, message="when 'item > 1' is false", items=items,
                         skipped=skipped)),)


def item(index: int, phase: P = P.RUNNING, state: W = W.RUNNING, finished: float | None = None,
         **kw: object) -> tuple[str, m.StepRunObservation]:
    """Item `index` of step f: its StepRun r-f-<index> and its pod's state."""
    status = sr_status(f"f-{index}", phase, finished=finished, **kw)  # type: ignore[arg-type]
    return f"f[{index}]", m.StepRunObservation(f"r-f-{index}", status, attempt=work(state))


def fanning(total: int, *items: tuple[str, m.StepRunObservation], recorded: P = P.RUNNING,
            run_spec: m.RunSpec = FLOW, **kw: object) -> m.Observed:
    """A run whose step f recorded `total` items (and is `recorded`), with these item StepRuns."""
    entry = m.StepState(recorded, items=m.ItemCounts(total, ((P.PENDING, total),)),
                        started_at=at(0))
    status = run_status(RunPhase.RUNNING, {"f": entry, "after": m.StepState(P.PENDING)})
    return observed(run_spec, status, dict(items), gates=gate(total), **kw)  # type: ignore[arg-type]


def counts(decision: Decision, step: str = "f") -> dict[str, int]:
    state = m.step_state(decision.status, step)
    assert state is not None
    assert state.items is not None
    return {"total": state.items.total, **{p.value: n for p, n in state.items.by_phase}}


def of(decision: Decision, kind: type) -> list[object]:
    return [a for a in decision.actions if isinstance(a, kind)]


def test_a_fan_out_waits_for_its_gate_then_makes_items_as_parallelism_allows() -> None:
    waiting = decide(observed(FLOW), at(0))
    assert of(waiting, CreateStepRun) == []
    assert waiting.status.phase is RunPhase.PENDING
    assert m.step_state(waiting.status, "f") == m.StepState(P.PENDING)

    d = decide(observed(FLOW, gates=gate(5)), at(0))
    assert of(d, CreateStepRun) == [CreateStepRun("f[0]", "r-f-0", None),
                                    CreateStepRun("f[1]", "r-f-1", None)]
    assert of(d, StartAttempt) == [StartAttempt("f[0]", 1), StartAttempt("f[1]", 1)]
    assert counts(d) == {"total": 5, "Pending": 5}
    state = m.step_state(d.status, "f")
    assert state is not None
    assert state.phase is P.PENDING
    assert state.step_run is None
    assert d.status.phase is RunPhase.RUNNING
    assert d.status.progress == "0/2"


def test_items_start_in_index_order_while_fewer_than_parallelism_go() -> None:
    d = decide(fanning(5, item(0, P.SUCCEEDED, W.SUCCEEDED, finished=3), item(1)), at(4))
    assert of(d, CreateStepRun) == [CreateStepRun("f[2]", "r-f-2", None)]
    assert counts(d) == {"total": 5, "Pending": 3, "Running": 1, "Succeeded": 1}
    full = decide(fanning(5, item(0), item(1)), at(4))
    assert of(full, CreateStepRun) == []
    assert of(full, StartAttempt) == []


def test_no_gate_no_new_item_but_those_made_go_on() -> None:
    d = decide(replace(fanning(3, item(0, state=W.SUCCEEDED)), gates=()), at(4))
    assert of(d, CreateStepRun) == []
    assert counts(d) == {"total": 3, "Pending": 2, "Succeeded": 1}


def test_an_empty_list_succeeds_no_items_and_its_dependents_start() -> None:
    d = decide(observed(FLOW, gates=gate(0)), at(0))
    state = m.step_state(d.status, "f")
    assert state is not None
    assert (state.phase, state.reason, state.items) == (P.SUCCEEDED, Reason.NO_ITEMS,
                                                         m.ItemCounts(0))
    assert of(d, CreateStepRun) == [CreateStepRun("after", "r-after", None)]


def test_items_the_condition_skips_never_start_and_do_not_take_a_slot() -> None:
    d = decide(observed(FLOW, gates=gate(4, frozenset({0, 1}))), at(0))
    assert [a.step for a in of(d, CreateStepRun)] == ["f[2]", "f[3]"]  # type: ignore[attr-defined]
    assert counts(d) == {"total": 4, "Pending": 2, "Skipped": 2}
    every = decide(observed(FLOW, gates=gate(2, frozenset({0, 1}))), at(0))
    state = m.step_state(every.status, "f")
    assert state is not None
    assert (state.phase, state.reason) == (P.SKIPPED,
                                                                 Reason.CONDITION_FALSE)
    assert of(every, CreateStepRun) == [CreateStepRun("after", "r-after", None)]


def test_all_items_done_the_step_succeeds_and_its_reader_starts() -> None:
    done = [item(i, P.SUCCEEDED, W.SUCCEEDED, finished=2) for i in range(3)]
    d = decide(fanning(3, *done), at(5))
    state = m.step_state(d.status, "f")
    assert state is not None
    assert (state.phase, state.reason, state.message) == (
        P.SUCCEEDED, Reason.COMPLETED, "3 of 3 items succeeded")
    assert state.finished_at == at(5)
    assert counts(d) == {"total": 3, "Succeeded": 3}
    assert of(d, CreateStepRun) == [CreateStepRun("after", "r-after", None)]


def test_a_failed_item_under_stop_stops_the_others_and_names_itself() -> None:
    failing = item(1, state=W.FAILED)
    d = decide(fanning(4, item(0), failing), at(6))
    assert d.status.phase is RunPhase.FAILED
    state = m.step_state(d.status, "f")
    assert state is not None
    assert state.phase is P.FAILED
    assert state.message is not None
    assert state.message.startswith("item 1 of 4 ended Failed")
    assert state.message.endswith("1 of 4 items failed")
    assert d.status.message == state.message
    assert counts(d) == {"total": 4, "Failed": 1, "Canceled": 3}
    first = state.failed_items[0]
    assert state.failed_items == (m.FailedItem(1, Reason.STEP_FAILED, first.message, at(6)),)
    assert of(d, StopItems) == [StopItems("f", 30)]  # the run ends: every item's pods at once
    assert of(d, StopWorkload) == of(d, CreateStepRun) == []


def test_under_continue_every_item_runs_and_the_readers_are_skipped_at_the_end() -> None:
    lenient = replace(FLOW, on_failure=OnFailure.CONTINUE)
    failing = item(1, state=W.FAILED)
    d = decide(fanning(3, item(0), failing, run_spec=lenient), at(6))
    assert d.status.phase is RunPhase.RUNNING
    assert of(d, CreateStepRun) == [CreateStepRun("f[2]", "r-f-2", None)]
    assert counts(d) == {"total": 3, "Pending": 1, "Running": 1, "Failed": 1}
    ended = decide(fanning(3, item(0, P.SUCCEEDED, W.SUCCEEDED, finished=2),
                           item(1, P.FAILED, W.FAILED, finished=3, reason="StepFailed",
                                message="exit code 1"),
                           item(2, P.SUCCEEDED, W.SUCCEEDED, finished=4), run_spec=lenient),
                   at(6))
    assert ended.status.phase is RunPhase.FAILED
    assert m.step_state(ended.status, "after") == m.StepState(
        P.SKIPPED, Reason.UPSTREAM_FAILED, "needs f, which did not succeed", finished_at=at(6))
    assert ended.status.message == "item 1 of 3 ended Failed: exit code 1; 1 of 3 items failed"


def test_a_stop_cancels_items_not_started_and_lets_running_ones_go_until_grace() -> None:
    stopping = replace(fanning(5, item(0), item(1)), spec=replace(FLOW, cancel_requested=True))
    d = decide(stopping, at(10))
    assert d.status.phase is RunPhase.STOPPING
    assert counts(d) == {"total": 5, "Running": 2, "Canceled": 3}
    assert of(d, StopItems) == [StopItems("f", 30)]  # both running items' pods, in one request
    assert of(d, StopWorkload) == []
    late = decide(replace(stopping, status=replace(d.status)), at(41))
    assert late.status.phase is RunPhase.CANCELED
    assert counts(late) == {"total": 5, "Canceled": 5}


def test_a_terminal_run_keeps_its_counts_and_an_item_still_running_follows_the_record() -> None:
    final = m.StepState(P.CANCELED, Reason.CANCELED, "5 of 5 items canceled",
                        items=m.ItemCounts(5, ((P.CANCELED, 5),)), finished_at=at(9))
    status = run_status(RunPhase.CANCELED, {"f": final, "after": m.StepState(P.SKIPPED)})
    before = observed(FLOW, status, dict([item(0), item(1, P.CANCELED, W.SUCCEEDED,
                                                         finished=9)]))
    d = decide(before, at(20))
    assert d.status == status
    writes = of(d, WriteStepRunStatus)
    assert [w.step for w in writes] == ["f[0]"]  # type: ignore[attr-defined]
    assert writes[0].status.phase is P.CANCELED  # type: ignore[attr-defined]
    assert StopItems("f", 30) in d.actions


def test_items_of_a_step_recorded_final_let_go_when_deleted() -> None:
    final = m.StepState(P.SUCCEEDED, Reason.COMPLETED, "1 of 1 items succeeded",
                        items=m.ItemCounts(1, ((P.SUCCEEDED, 1),)), finished_at=at(9))
    status = run_status(RunPhase.SUCCEEDED, {"f": final, "after": m.StepState(P.SUCCEEDED)})
    key, obs = item(0, P.SUCCEEDED, W.SUCCEEDED, finished=9)
    d = decide(observed(FLOW, status, {key: replace(obs, deleting=True)}), at(20))
    assert RemoveFinalizer("f[0]") in d.actions


def test_items_that_cannot_be_had_fail_the_step_with_the_gates_reason() -> None:
    bad = (("f", m.Gate(False, "TooManyItems", "10001 items: at most 10000")),)
    d = decide(observed(FLOW, gates=bad), at(0))
    assert m.step_state(d.status, "f") == m.StepState(
        P.FAILED, "TooManyItems", "10001 items: at most 10000", finished_at=at(0))
    assert d.status.phase is RunPhase.FAILED


def test_the_record_names_at_most_the_first_failures_by_time() -> None:
    lenient = replace(FLOW, on_failure=OnFailure.CONTINUE)
    failed = [item(i, P.FAILED, W.FAILED, finished=20 - i, reason="StepFailed",
                   message=f"exit {i}") for i in range(12)]
    d = decide(fanning(12, *failed, run_spec=lenient), at(30))
    state = m.step_state(d.status, "f")
    assert state is not None
    assert len(state.failed_items) == MAX_FAILED_ITEMS
    assert [f.index for f in state.failed_items] == list(range(11, 1, -1))
    assert state.message == "item 11 of 12 ended Failed: exit 11; 12 of 12 items failed"


def test_a_deadline_times_out_running_items_and_cancels_the_rest() -> None:
    timed = replace(FLOW, timeout_seconds=10)
    d = decide(fanning(3, item(0), run_spec=timed), at(11))
    assert d.status.phase is RunPhase.TIMED_OUT
    assert counts(d) == {"total": 3, "TimedOut": 1, "Canceled": 2}


def test_the_graph_check_refuses_a_realtime_fan_out_and_an_item_named_step() -> None:
    realtime = spec(FAN, mode=Mode.REALTIME)
    assert validate(realtime) == (Problem(
        "spec.steps[0].forEach", "a realtime run cannot fan out: its steps are services that "
        "run until the topology ends, not work over items"),)
    clash = spec(FAN, step("f-3"))
    assert validate(clash) == (Problem(
        "spec.steps[1].name",
        'step "f-3" would share its StepRun name with item 3 of fan-out step "f"'),)
    assert validate(spec(FAN, step("f-x"), step("g-3"))) == ()


def test_a_gate_failing_once_a_reused_need_is_made_fails_the_run_in_that_decision() -> None:
    """b and the fan-out f need a, which the re-run reuses: made in this decision, it makes
    them ready, and their gates say they cannot run. The run fails fast at once; a's StepRun
    is still made, c (started in the same pass) never starts."""
    reuse = m.Reuse(m.ReusedFrom("src", "src-a", "u-a"), ())
    lean = spec(step("a"), step("b", "a", conditional=True),
                step("f", "a", for_each=m.ForEach(2)), step("c"))
    broken = m.Gate(False, "ConditionError", "no such key")
    d = decide(observed(lean, gates=(("b", broken), ("f", broken)), reused=(("a", reuse),)),
               at(0))
    assert d.status.phase is RunPhase.FAILED
    assert (d.status.reason, d.status.message) == ("ConditionError", "no such key")
    states = dict(d.status.step_states)
    assert (states["a"].phase, states["a"].reason) == (P.SUCCEEDED, Reason.REUSED)
    assert (states["f"].phase, states["f"].reason) == (P.FAILED, "ConditionError")
    assert (states["c"].phase, states["c"].reason) == (P.CANCELED, Reason.STOPPED_BEFORE_START)
    assert of(d, CreateStepRun) == [CreateStepRun("a", "r-a", None)]
    assert of(d, StartAttempt) == []


def test_a_condition_false_once_a_reused_need_is_made_skips_in_that_decision() -> None:
    reuse = m.Reuse(m.ReusedFrom("src", "src-a", "u-a"), ())
    lean = spec(step("a"), step("b", "a", conditional=True))
    d = decide(observed(lean, gates=(("b", m.Gate(False, message="when 'x' is false")),),
                        reused=(("a", reuse),)), at(0))
    assert m.step_state(d.status, "b") == m.StepState(
        P.SKIPPED, Reason.CONDITION_FALSE, "when 'x' is false", finished_at=at(0))
    assert d.status.phase is RunPhase.SUCCEEDED


def test_items_made_before_the_record_counted_them_are_counted_from_the_gate() -> None:
    """The run's status write was lost after its items' StepRuns were made: the step is known
    to have begun by its items, and its gate says how many it has."""
    status = run_status(RunPhase.RUNNING, {"f": m.StepState(P.PENDING),
                                           "after": m.StepState(P.PENDING)})
    d = decide(observed(FLOW, status, dict([item(0)]), gates=gate(3)), at(1))
    assert counts(d) == {"total": 3, "Pending": 2, "Running": 1}
    assert of(d, CreateStepRun) == [CreateStepRun("f[1]", "r-f-1", None)]


@pytest.mark.parametrize("phase", [P.SUCCEEDED, P.FAILED, P.CANCELED, P.TIMED_OUT, P.LOST])
@pytest.mark.parametrize("state", list(W))
@pytest.mark.parametrize("problem", [None, ("OutputMissing", "o0 is missing")])
@pytest.mark.parametrize("deleting", [False, True])
def test_an_item_that_ended_is_read_as_observe_step_reads_it(
        phase: P, state: W, problem: tuple[str, str] | None, deleting: bool) -> None:
    """The short way through an item that ended gives what the whole ladder gives, or is not
    taken."""
    status = sr_status("f-0", phase, finished=3, reason="StepFailed", message="exit 1")
    obs = m.StepRunObservation("r-f-0", status, deleting,
                               attempt=work(state, output_problem=problem))
    ctx = StepContext(mode=Mode.BATCH, now=at(9), halting=False, deadline=None)
    spec_ = item_spec(FAN, 0)
    short = settled(spec_, obs)
    if short is not None:
        assert short == observe_step(spec_, None, obs, ctx)


def never_written(index: int, state: W, **kw: object) -> tuple[str, m.StepRunObservation]:
    """Item `index` made at 0 and never written, its pod `state`, started at 1."""
    return f"f[{index}]", m.StepRunObservation(
        f"r-f-{index}", None, attempt=work(state, started_at=at(1), **kw),  # type: ignore[arg-type]
        created_at=at(0))


def test_an_item_running_is_written_so_only_once_it_has_run_five_seconds() -> None:
    o = fanning(2, never_written(0, W.RUNNING), never_written(1, W.RUNNING))
    early = decide(o, at(3))
    assert of(early, WriteStepRunStatus) == []
    assert counts(early) == {"total": 2, "Running": 2}  # the run's record says so meanwhile
    assert early.requeue_at == at(6)
    late = decide(o, at(6))
    assert [(a.step, a.status.phase) for a in of(late, WriteStepRunStatus)] == [  # type: ignore[attr-defined]
        ("f[0]", P.RUNNING), ("f[1]", P.RUNNING)]


def test_an_item_that_ends_first_gets_one_write_its_end() -> None:
    d = decide(fanning(2, never_written(0, W.SUCCEEDED), never_written(1, W.RUNNING)), at(2))
    writes = of(d, WriteStepRunStatus)
    assert [(a.step, a.status.phase) for a in writes] == [("f[0]", P.SUCCEEDED)]  # type: ignore[attr-defined]


def test_a_step_that_is_no_item_is_written_running_at_once() -> None:
    o = observed(spec(step("s")), run_status(RunPhase.RUNNING, {"s": m.StepState(P.PENDING)}),
                 {"s": m.StepRunObservation("r-s", None, attempt=work(W.RUNNING, started_at=at(1)),
                                            created_at=at(0))})
    assert [a.status.phase for a in of(decide(o, at(2)), WriteStepRunStatus)] == [  # type: ignore[attr-defined]
        P.RUNNING]


def test_an_item_waits_its_own_growing_delay_and_the_record_keeps_its_size() -> None:
    """Item 1 fails Transiently at its second attempt: it waits 4s * 2 before its third, on its
    own StepRun; the step's record counts it Running and holds no time of it."""
    policy = m.RetryPolicy(limit=3, backoff_seconds=4, backoff_factor=2,
                           max_backoff_seconds=None, transient_exit_codes=(75,))
    flow = spec(replace(FAN, retry=policy), AFTER)
    second = m.StepRunObservation("r-f-1", sr_status("f-1", attempts=2, next_attempt_at=at(5)),
                                  attempt=work(W.FAILED, 2, exit_code=75))
    d = decide(fanning(2, item(0), ("f[1]", second), run_spec=flow), at(9))
    (write,) = of(d, WriteStepRunStatus)
    assert isinstance(write, WriteStepRunStatus)
    assert (write.step, write.status.reason, write.status.next_attempt_at) == (
        "f[1]", "RetryBackoff", at(17))
    assert write.status.message is not None
    assert write.status.message.endswith("attempt 3 of 4 after 8s, at 2026-11-22T12:00:17Z")
    assert d.requeue_at == at(17)
    assert counts(d) == {"total": 2, "Running": 2}
    assert of(decide(fanning(2, item(0), ("f[1]", replace(second, status=write.status)),
                             run_spec=flow), at(17)), StartAttempt) == [StartAttempt("f[1]", 3)]
