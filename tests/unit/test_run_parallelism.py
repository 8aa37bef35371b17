"""Run parallelism (docs/API.md "Run parallelism", guarantee 14): at most `spec.parallelism` of a
run's steps and items hold a StepRun that is not terminal; the ones ready to start take the
free slots in DAG order (a fan-out step's items in index order, at its place), and the others
wait Pending with reason RunParallelism. Whole decisions first, then one rule a test; the
properties over random runs are `run_parallelism_holds` and `check_run_parallelism` in
test_properties (every run there may have a parallelism) and the two at the end here."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from runctl.machine import model as m
from runctl.machine.actions import CreateStepRun, StartAttempt, WriteStepRunStatus
from runctl.machine.dag import REALTIME_PARALLELISM, Problem, validate
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import (
    STEP_TERMINAL,
    Mode,
    Reason,
    RunPhase,
    StepPhase,
    Waiting,
)
from runctl.machine.steps import reused_status
from tests.unit.builders import (
    T0,
    at,
    entry,
    expect,
    observed,
    pending,
    retry,
    running_run,
    spec,
    sr_status,
    step,
    work,
)
from tests.unit.decisions import STARTED, Case, created, done, rows, running, table
from tests.unit.test_properties import cycle, finish
from tests.unit.world import W, World, happen

P = StepPhase
SIX = spec(*(step(n) for n in "abcdef"), parallelism=2)


def wait(going: int, limit: int) -> m.StepState:
    """A step ready to start that finds no slot free."""
    return m.StepState(P.PENDING, Waiting.RUN_PARALLELISM,
                       f"waiting for a slot: {going} of {limit} running")


def made(d: Decision) -> list[str]:
    return [a.step for a in d.actions if isinstance(a, CreateStepRun)]


def state(d: Decision, name: str) -> m.StepState:
    found = m.step_state(d.status, name)
    assert found is not None
    return found


# -- whole decisions -------------------------------------------------------------------------


def six_independent_steps_two_at_a_time() -> Case:
    before = observed(SIX)
    ca, cb = created("a"), created("b")
    status = expect(before, RunPhase.RUNNING, {
        "a": entry("a", sr_status("a", P.PENDING)), "b": entry("b", sr_status("b", P.PENDING)),
        **{n: wait(2, 2) for n in "cdef"}})
    return before, T0, Decision(status, (ca[0], cb[0], ca[1], cb[1], STARTED), None)


def a_step_ending_frees_its_slot_for_the_next_in_order() -> Case:
    before = running_run(SIX, {"a": running("a"), "b": (sr_status("b"), work(W.SUCCEEDED))},
                         extra={n: wait(2, 2) for n in "cdef"})
    b = done("b", P.SUCCEEDED, Reason.COMPLETED, None, 5)
    c = created("c")
    status = expect(before, RunPhase.RUNNING, {
        "b": entry("b", b), "c": entry("c", sr_status("c", P.PENDING, started=5))})
    return before, at(5), Decision(status, (c[0], WriteStepRunStatus("b", b), c[1]), None)


def the_next_in_dag_order_takes_the_slot() -> Case:
    """y needs x; z needs nothing: z comes before y in the DAG's order (fewer needs above
    it), though y is first in the spec and ready as soon as x succeeds."""
    run_spec = spec(step("y", "x"), step("x"), step("z"), parallelism=1)
    before = running_run(run_spec, {"x": (sr_status("x"), work(W.SUCCEEDED))},
                         extra={"z": wait(1, 1)})
    x = done("x", P.SUCCEEDED, Reason.COMPLETED, None, 5)
    z = created("z")
    status = expect(before, RunPhase.RUNNING, {
        "x": entry("x", x), "z": entry("z", sr_status("z", P.PENDING, started=5)),
        "y": wait(1, 1)})
    return before, at(5), Decision(status, (z[0], WriteStepRunStatus("x", x), z[1]), None)


def nothing_waits_under_no_bound() -> Case:
    """No parallelism: every ready step starts, as before the field existed."""
    before = observed(replace(SIX, parallelism=None))
    made_ = [created(n) for n in "abcdef"]
    status = expect(before, RunPhase.RUNNING, {
        n: entry(n, sr_status(n, P.PENDING)) for n in "abcdef"})
    return before, T0, Decision(status, (*(c for c, _ in made_), *(s for _, s in made_),
                                         STARTED), None)


test_decide = table(rows(six_independent_steps_two_at_a_time,
                         a_step_ending_frees_its_slot_for_the_next_in_order,
                         the_next_in_dag_order_takes_the_slot,
                         nothing_waits_under_no_bound))


# -- what holds a slot -----------------------------------------------------------------------


def test_a_retry_backoff_keeps_its_slot() -> None:
    run_spec = spec(step("a", retry=retry(1, 10, (75,))), step("b"), parallelism=1)
    before = running_run(run_spec, {"a": (sr_status("a"), work(W.FAILED, exit_code=75))},
                         extra={"b": wait(1, 1)})
    d = decide(before, at(5))
    assert state(d, "a").reason == Waiting.RETRY_BACKOFF
    assert state(d, "b") == wait(1, 1)
    assert made(d) == []
    # Its retry starts in the slot it holds; b still waits.
    backoff = next(a.status for a in d.actions if isinstance(a, WriteStepRunStatus))
    again = running_run(run_spec, {"a": (backoff, work(W.FAILED, exit_code=75))},
                        extra={"b": wait(1, 1)})
    retried = decide(again, at(15))
    assert StartAttempt("a", 2) in retried.actions
    assert made(retried) == []
    assert state(retried, "b") == wait(1, 1)


def test_a_steprun_made_but_not_running_yet_holds_its_slot() -> None:
    run_spec = spec(step("a"), step("b"), parallelism=1)
    before = running_run(run_spec, {"a": (None, work(W.PENDING))})
    d = decide(before, at(5))
    assert made(d) == []
    assert state(d, "b") == wait(1, 1)


def test_a_step_skipped_by_its_condition_takes_no_slot() -> None:
    """b's condition is false: it is skipped even with no slot free, and c, which reads
    nothing, waits."""
    run_spec = spec(step("a"), step("b", conditional=True), step("c"), parallelism=1)
    before = running_run(run_spec, {"a": running("a")},
                         gates=(("b", m.Gate(False, message="no")),))
    d = decide(before, at(5))
    assert (state(d, "b").phase, state(d, "b").reason) == (P.SKIPPED, Reason.CONDITION_FALSE)
    assert state(d, "c") == wait(1, 1)


def test_a_wait_is_decided_afresh_at_every_decision() -> None:
    """Recorded waiting, b is not ready any more (its gate is not there): it is plainly
    Pending, and the slot goes to c."""
    run_spec = spec(step("b", conditional=True), step("c"), parallelism=1)
    before = running_run(run_spec, {}, extra={"b": wait(1, 1), "c": wait(1, 1)})
    d = decide(before, at(5))
    assert made(d) == ["c"]
    assert state(d, "b") == pending()


# -- fan-outs --------------------------------------------------------------------------------


def fan(total: int, own: int, *others: m.StepSpec, limit: int) -> m.Observed:
    run_spec = spec(step("f", for_each=m.ForEach(own)), *others, parallelism=limit)
    return observed(run_spec, gates=(("f", m.Gate(True, items=total)),))


def test_the_run_limit_holds_a_fan_out_below_its_own() -> None:
    d = decide(fan(10, 5, limit=3), T0)
    assert made(d) == ["f[0]", "f[1]", "f[2]"]
    f = state(d, "f")
    assert (f.phase, f.reason, f.message) == (
        P.PENDING, Waiting.RUN_PARALLELISM, "items waiting for a slot: 3 of 3 running")
    assert f.items == m.ItemCounts(10, ((P.PENDING, 10),))


def test_a_fan_out_held_by_its_own_limit_leaves_the_other_slots_to_the_next_steps() -> None:
    d = decide(fan(10, 2, step("g"), step("h"), limit=3), T0)
    assert made(d) == ["f[0]", "f[1]", "g"]
    assert state(d, "f").reason is None
    assert state(d, "h") == wait(3, 3)


def test_an_item_ending_gives_its_slot_to_the_next_item() -> None:
    before = fan(10, 5, limit=3)
    first = decide(before, T0)
    counts = m.StepState(P.RUNNING, items=m.ItemCounts(10, ((P.PENDING, 7), (P.RUNNING, 3))),
                         started_at=T0)
    runs = {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", sr_status(f"f-{i}"),
                                            attempt=work(W.RUNNING)) for i in range(3)}
    runs["f[1]"] = replace(runs["f[1]"], attempt=work(W.SUCCEEDED))
    later = replace(before, status=replace(first.status, step_states=m.step_states_from(
        [("f", counts)])), step_runs=m.frozen_step_runs(runs.items()))
    d = decide(later, at(6))
    assert made(d) == ["f[3]"]
    f = state(d, "f")
    assert (f.phase, f.reason) == (P.RUNNING, Waiting.RUN_PARALLELISM)
    # f[3] counts Pending until its pod runs: its StepRun is made, it holds its slot.
    assert f.items == m.ItemCounts(10, ((P.PENDING, 7), (P.RUNNING, 2), (P.SUCCEEDED, 1)))
    assert f.message == "items waiting for a slot: 3 of 3 running"


def test_items_of_a_fan_out_and_a_step_before_it_share_the_slots_in_order() -> None:
    """The step comes first in the DAG's order (spec order among independent steps)."""
    run_spec = spec(step("a"), step("f", for_each=m.ForEach(5)), parallelism=3)
    d = decide(observed(run_spec, gates=(("f", m.Gate(True, items=4)),)), T0)
    assert made(d) == ["a", "f[0]", "f[1]"]


# -- stops, finally steps, re-runs -----------------------------------------------------------


def test_a_stop_cancels_the_steps_waiting_for_a_slot() -> None:
    run_spec = spec(step("a"), step("b"), parallelism=1, cancel_requested=True)
    before = running_run(run_spec, {"a": running("a")}, extra={"b": wait(1, 1)})
    d = decide(before, at(5))
    assert d.status.phase is RunPhase.STOPPING
    assert (state(d, "b").phase, state(d, "b").reason) == (P.CANCELED,
                                                            Reason.STOPPED_BEFORE_START)
    assert made(d) == []


def test_finally_steps_share_the_limit() -> None:
    run_spec = spec(step("a"), parallelism=2,
                    finally_steps=(step("u"), step("v"), step("w")))
    before = running_run(run_spec, {"a": (sr_status("a"), work(W.SUCCEEDED))})
    d = decide(before, at(5))
    assert made(d) == ["u", "v"]
    assert state(d, "w") == wait(2, 2)
    assert d.status.reason == Waiting.RUNNING_FINALLY


def test_reused_steps_take_no_slot() -> None:
    reuse = m.Reuse(m.ReusedFrom("src", "src-a", "u-a"), ())
    run_spec = spec(step("a"), step("b"), step("c"), parallelism=1)
    d = decide(observed(run_spec, reused=(("a", reuse),)), T0)
    assert made(d) == ["a", "b"]
    assert WriteStepRunStatus("a", reused_status(reuse, T0)) in d.actions
    assert state(d, "c") == wait(1, 1)


def test_reused_items_take_no_slot() -> None:
    reuse = m.Reuse(m.ReusedFrom("src", "src-f-0", "u-f-0"), ())
    o = replace(fan(4, 5, limit=1), reused=(("f[0]", reuse), ("f[2]", reuse)))
    d = decide(o, T0)
    assert made(d) == ["f[0]", "f[1]", "f[2]"]
    assert [a.step for a in d.actions if isinstance(a, StartAttempt)] == ["f[1]"]
    assert state(d, "f").reason == Waiting.RUN_PARALLELISM


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("run_spec", "problem"), [
    pytest.param(spec(step("a"), parallelism=0),
                 Problem("spec.parallelism", "must be at least 1"), id="zero"),
    pytest.param(spec(step("a"), parallelism=2, mode=Mode.REALTIME),
                 Problem("spec.parallelism", REALTIME_PARALLELISM), id="realtime"),
])
def test_a_parallelism_that_cannot_hold_is_refused_naming_the_field(
        run_spec: m.RunSpec, problem: Problem) -> None:
    assert validate(run_spec) == (problem,)
    d = decide(observed(run_spec), T0)
    assert (d.status.phase, d.status.reason) == (RunPhase.FAILED, Reason.INVALID_SPEC)
    assert d.status.message == str(problem)
    assert made(d) == []


# -- properties ------------------------------------------------------------------------------


@st.composite
def wide_runs(draw: st.DrawFn) -> m.RunSpec:
    """Many steps ready at once, fan-outs of up to 5 items (the world gives sN N % 6), some
    needs, a small bound: slots are scarce most of the time."""
    out = []
    for i in range(draw(st.integers(2, 12))):
        needs = draw(st.sets(st.integers(0, i - 1), max_size=1)) if i else set()
        out.append(m.StepSpec(
            f"s{i}", tuple(f"s{j}" for j in sorted(needs)),
            retry=retry(draw(st.integers(0, 1)), draw(st.integers(0, 5)), (75,)),
            for_each=m.ForEach(draw(st.integers(1, 4))) if draw(st.booleans()) else None))
    return spec(*draw(st.permutations(out)), parallelism=draw(st.integers(1, 3)),
                finally_steps=tuple(step(f"f{i}") for i in range(draw(st.integers(0, 3)))))


happenings = st.lists(st.tuples(st.sampled_from(["run", "succeed", "succeed", "fail"]),
                                st.integers(0, 40), st.integers(0, 10**6)),
                      min_size=5, max_size=50)


def _going(world: World) -> list[str]:
    return [k for k, sr in world.runs.items()
            if not sr.gone and (sr.status is None or sr.status.phase not in STEP_TERMINAL)]


@given(run_spec=wide_runs(), script=happenings)
def test_slots_are_never_exceeded_and_never_left_free_while_a_step_waits(
        run_spec: m.RunSpec, script: list[tuple[str, int, int]]) -> None:
    """Slots scarce most of the time: every decision is checked as every decision of
    test_properties is (`run_parallelism_holds` among them, and the cluster's count), and the
    run ends."""
    world = World(run_spec)
    most = 0
    for kind, index, param in script:
        cycle(world)
        going = _going(world)
        most = max(most, len(going))
        if going:
            happen(world, kind, going[index % len(going)], param)
    finish(world, rounds=40 + 30 * len(run_spec.steps), stubborn=False)
    event(f"at most {most} of {run_spec.parallelism} going")
