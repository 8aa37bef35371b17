"""decide() when the StepRun holding outputs a step reads is deleted after its step succeeded:
whole decisions compared, in the style of test_decide_flow.py. The run records no outputs, so
a step not made yet can never render them: it fails `UpstreamOutputDeleted` at once (never
left waiting for a gate that cannot come), and the failure policy acts on it as on any failure.
"""

from __future__ import annotations

from dataclasses import replace

from runctl.machine import model as m
from runctl.machine.actions import RemoveFinalizer, StopWorkload, WriteStepRunStatus
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import OnFailure, Reason, RunPhase, StepPhase
from tests.unit.builders import (
    at,
    entry,
    expect,
    observed,
    run_status,
    running_run,
    spec,
    sr_status,
    step,
    work,
)
from tests.unit.decisions import (
    Case,
    created,
    done,
    ended,
    rows,
    run_event,
    running,
    step_event,
    table,
)

W = m.WorkloadState
S, F = StepPhase.SUCCEEDED, StepPhase.FAILED
ROWS = m.OutputSpec("rows")
COUNT = step("count", outputs=(ROWS,))
READS = (("count", "rows"),)
GONE = "step count's outputs are gone: its StepRun r-count was deleted after it succeeded"


def counted() -> m.StepRunStatus:
    return done("count", S, Reason.COMPLETED, None, 5, outputs=(("rows", "12"),))


def deleted(before: m.Observed, key: str, name: str) -> m.Observed:
    """`before` with the StepRun of `key` seen deleted (the shell then knows no status of it)."""
    runs = dict(before.step_runs)
    runs[key] = m.StepRunObservation(name, None, deleting=True, gone=True)
    return replace(before, step_runs=m.frozen_step_runs(runs.items()))


def failed(message: str, now: float) -> m.StepState:
    return m.StepState(F, Reason.UPSTREAM_OUTPUT_DELETED, message, finished_at=at(now))


def reader_fails_at_once_and_the_run_fails_fast() -> Case:
    """The producer's StepRun is gone while another need of the reader still runs: the shell
    has no gate to give, and never will. The reader fails now; under `stop` the running need
    is stopped and the step below the reader is skipped."""
    run = spec(COUNT, step("slow"), step("load", "count", "slow", consumes=READS),
               step("after", "load"))
    before = deleted(running_run(run, {"count": (counted(), None), "slow": running("slow")}),
                     "count", "r-count")
    slow = ended("slow", sr_status("slow"), StepPhase.CANCELED, Reason.CANCELED,
                 "stopped: step load failed", 9)
    after = m.StepState(StepPhase.SKIPPED, Reason.UPSTREAM_FAILED,
                        "needs load, which did not succeed", finished_at=at(9))
    status = expect(before, RunPhase.FAILED, {
        "slow": entry("slow", slow), "load": failed(GONE, 9), "after": after},
        reason=Reason.UPSTREAM_OUTPUT_DELETED, message=GONE, now=9, duration="9s")
    return before, at(9), Decision(status, (
        WriteStepRunStatus("slow", slow), StopWorkload("slow", 30),
        step_event("load", Reason.UPSTREAM_OUTPUT_DELETED, GONE),
        run_event("Failed", f"Failed after 9s: {GONE}")), None)


def reader_fails_as_the_deletion_is_requested() -> Case:
    """The usual way: the operator sees the StepRun being deleted (its finalizer holds it)
    and lets it go in the decision that fails the reader, so the failure is recorded before
    the outputs are gone; nothing is made to read them meanwhile."""
    run = spec(COUNT, step("load", "count", consumes=READS))
    before = running_run(run, {"count": (counted(), None)}, gates=(("load", m.Gate(True)),))
    runs = dict(before.step_runs)
    runs["count"] = replace(runs["count"], deleting=True)
    before = replace(before, step_runs=m.frozen_step_runs(runs.items()))
    status = expect(before, RunPhase.FAILED, {"load": failed(GONE, 9)},
                    reason=Reason.UPSTREAM_OUTPUT_DELETED, message=GONE, now=9, duration="9s")
    return before, at(9), Decision(status, (
        RemoveFinalizer("count"),
        step_event("load", Reason.UPSTREAM_OUTPUT_DELETED, GONE),
        run_event("Failed", f"Failed after 9s: {GONE}")), None)


def reader_already_made_goes_on() -> Case:
    """A reader whose StepRun was made rendered the outputs then: the deletion takes nothing
    from it."""
    run = spec(COUNT, step("load", "count", consumes=READS))
    before = deleted(running_run(run, {"count": (counted(), None), "load": running("load", 6)}),
                     "count", "r-count")
    return before, at(9), Decision(before.status, (), None)


def reader_of_a_reused_step_starts() -> Case:
    """A step a re-run reuses has its outputs in the run's record: its StepRun gone, its
    reader still gets them (the shell's gate says so) and starts."""
    run = spec(COUNT, step("load", "count", consumes=READS))
    reuse = m.Reuse(m.ReusedFrom("src", "src-count", "u-count"), (("rows", "12"),))
    reused = m.StepState(S, Reason.REUSED, None, "r-count", 0, at(0), at(0))
    before = deleted(observed(run, run_status(RunPhase.RUNNING, {
        "count": reused, "load": m.StepState(StepPhase.PENDING)}, progress="1/2",
        observed_generation=1), gates=(("load", m.Gate(True)),), reused=(("count", reuse),)),
        "count", "r-count")
    status = replace(before.status, step_states=m.step_states_from({
        "count": reused,
        "load": entry("load", sr_status("load", StepPhase.PENDING, started=9))}.items()),
        conditions=(m.Condition("Succeeded", "Unknown", "Running", None, at(9), 1),))
    return before, at(9), Decision(status, created("load"), None)


def fan_out_reader_not_made_fails_whole() -> Case:
    """A fan-out step that has made no item yet fails as one step, as a fan-out whose items
    cannot be had does."""
    run = spec(COUNT, step("fan", "count", consumes=READS, for_each=m.ForEach(parallelism=2)))
    before = deleted(running_run(run, {"count": (counted(), None)}), "count", "r-count")
    status = expect(before, RunPhase.FAILED, {"fan": failed(GONE, 9)},
                    reason=Reason.UPSTREAM_OUTPUT_DELETED, message=GONE, now=9, duration="9s")
    return before, at(9), Decision(status, (
        step_event("fan", Reason.UPSTREAM_OUTPUT_DELETED, GONE),
        run_event("Failed", f"Failed after 9s: {GONE}")), None)


def fan_out_reader_fails_the_items_it_did_not_make() -> Case:
    """A fan-out step with items made and items still to make: those still to make would
    render outputs that are gone, so each fails; those made go on (under `continue`)."""
    run = spec(COUNT, step("fan", "count", consumes=READS, for_each=m.ForEach(parallelism=1)),
               on_failure=OnFailure.CONTINUE)
    fanning = m.StepState(StepPhase.RUNNING, started_at=at(6), items=m.ItemCounts(
        3, ((StepPhase.PENDING, 2), (StepPhase.RUNNING, 1))))
    first = m.StepRunObservation("r-fan-0", sr_status("fan-0", started=6),
                                 attempt=work(W.RUNNING))
    before = deleted(replace(
        running_run(run, {"count": (counted(), None)}, extra={"fan": fanning},
                    gates=(("fan", m.Gate(True, items=3)),)),
        step_runs=m.frozen_step_runs((("count", m.StepRunObservation("r-count", counted())),
                                      ("fan[0]", first)))), "count", "r-count")
    lost = (m.FailedItem(1, Reason.UPSTREAM_OUTPUT_DELETED, GONE, at(9)),
            m.FailedItem(2, Reason.UPSTREAM_OUTPUT_DELETED, GONE, at(9)))
    fan = replace(fanning, items=m.ItemCounts(3, ((StepPhase.RUNNING, 1), (F, 2))),
                  failed_items=lost)
    status = expect(before, RunPhase.RUNNING, {"fan": fan})
    return before, at(9), Decision(status, (), None)


def reader_of_a_fan_out_whose_item_was_deleted_fails() -> Case:
    """A fan-out step's outputs are on its items' StepRuns: one of them deleted, its readers
    would see a value that is not the one made (the shell fills a missing item's value in as a
    skipped item's). The reader fails, naming the item."""
    listing = step("list", outputs=(ROWS,), for_each=m.ForEach(parallelism=2))
    run = spec(listing, step("read", "list", consumes=(("list", "rows"),)))
    made = m.StepState(S, Reason.COMPLETED, "2 of 2 items succeeded", started_at=at(0),
                       finished_at=at(5), items=m.ItemCounts(2, ((S, 2),)))
    item = done("list-0", S, Reason.COMPLETED, None, 4, outputs=(("rows", "1"),))
    before = deleted(observed(run, run_status(
        RunPhase.RUNNING, {"list": made, "read": m.StepState(StepPhase.PENDING)},
        progress="1/2", observed_generation=1,
        conditions=(m.Condition("Succeeded", "Unknown", "Running", None, at(0), 1),)),
        {"list[0]": m.StepRunObservation("r-list-0", item, attempt=work(W.SUCCEEDED))},
        gates=(("read", m.Gate(True)),)), "list[1]", "r-list-1")
    why = ("step list's outputs are gone: the StepRun r-list-1 of its item 1 was deleted "
           "after it succeeded")
    status = expect(before, RunPhase.FAILED, {"read": failed(why, 9)},
                    reason=Reason.UPSTREAM_OUTPUT_DELETED, message=why, now=9, duration="9s")
    return before, at(9), Decision(status, (
        step_event("read", Reason.UPSTREAM_OUTPUT_DELETED, why),
        run_event("Failed", f"Failed after 9s: {why}")), None)


test_decide = table(rows(
    reader_fails_at_once_and_the_run_fails_fast, reader_fails_as_the_deletion_is_requested,
    reader_already_made_goes_on,
    reader_of_a_reused_step_starts, fan_out_reader_not_made_fails_whole,
    fan_out_reader_fails_the_items_it_did_not_make,
    reader_of_a_fan_out_whose_item_was_deleted_fails))


def test_a_reader_skipped_for_a_failed_need_is_not_failed_too() -> None:
    """A reader that will never run for a need that failed is skipped, as before: the deleted
    outputs change nothing of it."""
    run = spec(COUNT, step("slow"), step("load", "count", "slow", consumes=READS),
               on_failure=OnFailure.CONTINUE)
    slow = done("slow", F, Reason.STEP_FAILED, "exit code 1", 7)
    before = deleted(running_run(run, {"count": (counted(), None),
                                       "slow": (slow, work(W.FAILED))}), "count", "r-count")
    load = m.step_state(decide(before, at(9)).status, "load")
    assert load is not None
    assert (load.phase, load.reason) == (StepPhase.SKIPPED, Reason.UPSTREAM_FAILED)


def test_a_finally_step_reading_deleted_outputs_fails_the_run() -> None:
    """A finally step reads the main steps' outputs as any reader: it fails, and a run whose
    main steps succeeded ends FinallyFailed."""
    run = spec(COUNT, finally_steps=(step("report", consumes=READS),),
               finally_timeout_seconds=60)
    before = deleted(running_run(run, {"count": (counted(), None)}), "count", "r-count")
    before = replace(before, status=replace(before.status, outcome=m.Outcome(
        RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", at(5))))
    d = decide(before, at(9))
    assert m.step_state(d.status, "report") == failed(GONE, 9)
    assert (d.status.phase, d.status.reason, d.status.message) == (
        RunPhase.FAILED, Reason.FINALLY_FAILED,
        f"finally step report ended Failed (UpstreamOutputDeleted): {GONE}")
