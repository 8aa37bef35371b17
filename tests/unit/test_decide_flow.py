"""decide() on outputs, references, conditions and Stories not found: whole decisions compared,
in the style of test_decide.py (named fixture states in, the entire Decision out)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runctl.machine import model as m
from runctl.machine.actions import EmitEvent, StopWorkload, WriteStepRunStatus
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import FailureClass, OnFailure, Reason, RunPhase, StepPhase
from tests.unit.builders import (
    T0,
    at,
    entry,
    expect,
    observed,
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
    run_event,
    running,
    step_event,
    table,
)

W = m.WorkloadState
S = StepPhase.SUCCEEDED
ROWS, TABLE = m.OutputSpec("rows"), m.OutputSpec("table", has_default=True)
COUNT = step("count", outputs=(ROWS, TABLE))
LOAD = step("load", "count", consumes=(("count", "rows"),))
FLOW = spec(COUNT, LOAD)
GATED = spec(COUNT, step("publish", "count", conditional=True), step("after", "publish"))
OUT = (("rows", "12"), ("table", "t"))


def counted(now: float = 5, outputs: m.Outputs = OUT) -> m.StepRunStatus:
    return done("count", S, Reason.COMPLETED, None, now, outputs=outputs)


def _skipped(reason: str, message: str, now: float) -> m.StepState:
    return m.StepState(StepPhase.SKIPPED, reason, message, finished_at=at(now))


# -- outputs -----------------------------------------------------------------------------------


def required_output_missing() -> Case:
    """A success whose outputs miss a required one fails Permanent (never retried), and the run
    fails fast as for any failure."""
    why = "required output rows missing from the termination message"
    retrying = replace(FLOW, steps=(replace(COUNT, retry=retry(3)), LOAD))
    before = running_run(retrying, {"count": (sr_status("count"), work(
        W.SUCCEEDED, output_problem=(Reason.OUTPUT_MISSING, why)))})
    failed = done("count", StepPhase.FAILED, Reason.OUTPUT_MISSING, why,
                   5, failure_class=FailureClass.PERMANENT)
    load = _skipped(Reason.UPSTREAM_FAILED, "needs count, which did not succeed", 5)
    status = expect(before, RunPhase.FAILED, {"count": entry("count", failed), "load": load},
                    reason=Reason.OUTPUT_MISSING, message=why, now=5, duration="5s")
    return before, at(5), Decision(status, (
        WriteStepRunStatus("count", failed),
        step_event("count", Reason.OUTPUT_MISSING, why),
        run_event("Failed", f"Failed after 5s: {why}")), None)


def outputs_defaulted() -> Case:
    """Defaults used are said in the step's message; the reader waits for the record."""
    before = running_run(FLOW, {"count": (sr_status("count"), work(
        W.SUCCEEDED, outputs=(("rows", "1"), ("table", "unknown")), defaulted=("table",)))})
    count = replace(counted(outputs=(("rows", "1"), ("table", "unknown"))),
                   message="outputs table took their defaults")
    status = expect(before, RunPhase.RUNNING, {"count": entry("count", count)})
    return before, at(5), Decision(status, (WriteStepRunStatus("count", count),), None)


def late_report_with_bad_outputs_rejected() -> Case:
    """A step recorded Lost whose pod then reports success with outputs failing their
    declarations: still a late report (rejected, the step stays Lost, the work is stopped),
    not a new failure of the step."""
    lost = done("count", StepPhase.LOST, Reason.WORKLOAD_DELETED, "gone",
                 6)
    run = spec(COUNT, step("other"), on_failure=OnFailure.CONTINUE)
    before = running_run(run, {
        "count": (lost, work(W.SUCCEEDED, output_problem=(
            Reason.OUTPUT_MISSING, "required output rows missing from the termination "
                                   "message"))),
        "other": running("other")})
    late = step_event("count", "LateReportRejected",
                     "a success was reported for step count after it ended Lost "
                     "(WorkloadDeleted); the report is rejected and the step stays Lost")
    return before, at(9), Decision(before.status, (
        StopWorkload("count", 30), late), None)


def reader_starts_once_outputs_recorded() -> Case:
    before = running_run(FLOW, {"count": (counted(), None)},
                         gates=(("load", m.Gate(True)),))
    c = created("load")
    status = expect(before, RunPhase.RUNNING, {
        "load": entry("load", sr_status("load", StepPhase.PENDING, started=9))})
    return before, at(9), Decision(status, c, None)


def reader_waits_for_its_gate() -> Case:
    before = running_run(FLOW, {"count": (counted(), None)})
    return before, at(9), Decision(before.status, (), None)


def render_refused_fails_the_reader() -> Case:
    why = "rendered, the text would hold '${{'"
    before = running_run(replace(FLOW, on_failure=OnFailure.CONTINUE),
                         {"count": (counted(), None)},
                         gates=(("load", m.Gate(False, Reason.INVALID_SPEC, why)),))
    load = m.StepState(StepPhase.FAILED, Reason.INVALID_SPEC, why, finished_at=at(9))
    status = expect(before, RunPhase.FAILED, {"load": load}, reason=Reason.INVALID_SPEC,
                    message=why, now=9, duration="9s")
    return before, at(9), Decision(status, (
        step_event("load", Reason.INVALID_SPEC, why),
        run_event("Failed", f"Failed after 9s: {why}")), None)


# -- conditions --------------------------------------------------------------------------------


def condition_false_skips_but_dependents_run() -> Case:
    """A condition is not a failure: the step is Skipped/ConditionFalse and the step that
    needs it (reading none of its outputs) starts."""
    before = running_run(GATED, {"count": (counted(), None)},
                         gates=(("publish", m.Gate(False, message="params.dryRun is true")),))
    publish = _skipped(Reason.CONDITION_FALSE, "params.dryRun is true", 9)
    status = expect(before, RunPhase.RUNNING, {
        "publish": publish,
        "after": entry("after", sr_status("after", StepPhase.PENDING, started=9))})
    return before, at(9), Decision(status, created("after"), None)


def condition_without_message() -> Case:
    before = running_run(GATED, {"count": (counted(), None)},
                         extra={"after": _skipped(Reason.UPSTREAM_FAILED, "x", 1)},
                         gates=(("publish", m.Gate(False)),))
    publish = _skipped(Reason.CONDITION_FALSE, "its condition is false", 9)
    status = expect(before, RunPhase.SUCCEEDED, {"publish": publish}, reason=Reason.COMPLETED,
                    message="all 3 steps succeeded", now=9, duration="9s")
    return before, at(9), Decision(status, (
        run_event("Succeeded", "Succeeded after 9s: all 3 steps succeeded", "Normal"),), None)


def condition_error_fails() -> Case:
    """A condition that cannot be evaluated fails its step, and the failure policy acts on it
    in the same decision."""
    why = "RuntimeError: Function 'int' error"
    before = running_run(GATED, {"count": (counted(), None)},
                         gates=(("publish", m.Gate(False, Reason.CONDITION_ERROR, why)),))
    publish = m.StepState(StepPhase.FAILED, Reason.CONDITION_ERROR, why, finished_at=at(9))
    after = _skipped(Reason.UPSTREAM_FAILED, "needs publish, which did not succeed", 9)
    status = expect(before, RunPhase.FAILED, {"publish": publish, "after": after},
                    reason=Reason.CONDITION_ERROR, message=why, now=9, duration="9s")
    return before, at(9), Decision(status, (
        step_event("publish", Reason.CONDITION_ERROR, why),
        run_event("Failed", f"Failed after 9s: {why}")), None)


def condition_error_without_message() -> Case:
    """Under continue, the failed step's dependents are skipped and the others go on."""
    run = replace(GATED, on_failure=OnFailure.CONTINUE)
    before = running_run(run, {"count": (counted(), None)},
                         gates=(("publish", m.Gate(False, Reason.CONDITION_ERROR)),))
    publish = m.StepState(StepPhase.FAILED, Reason.CONDITION_ERROR, Reason.CONDITION_ERROR,
                          finished_at=at(9))
    after = _skipped(Reason.UPSTREAM_FAILED, "needs publish, which did not succeed", 9)
    status = expect(before, RunPhase.FAILED, {"publish": publish, "after": after},
                    reason=Reason.CONDITION_ERROR, message=Reason.CONDITION_ERROR, now=9,
                    duration="9s")
    return before, at(9), Decision(status, (
        step_event("publish", Reason.CONDITION_ERROR, Reason.CONDITION_ERROR),
        run_event("Failed", "Failed after 9s: ConditionError")), None)


def gated_step_not_ready() -> Case:
    """A gate is not acted on before the step's needs are done."""
    before = running_run(GATED, {"count": running("count")},
                         gates=(("publish", m.Gate(False, Reason.CONDITION_ERROR)),))
    return before, at(9), Decision(before.status, (), None)


def output_of_a_skipped_step() -> Case:
    """A reader of a skipped step's output: Skipped/UpstreamOutputMissing without a default;
    with one, it waits for its gate (the default stands in)."""
    run = spec(step("count", conditional=True, outputs=(ROWS, TABLE)),
               step("load", "count", consumes=(("count", "rows"),)),
               step("name", "count", consumes=(("count", "table"),)),
               step("last", "load"))
    skipped = _skipped(Reason.CONDITION_FALSE, "no", 1)
    before = running_run(run, {}, extra={"count": skipped})
    load = _skipped(Reason.UPSTREAM_OUTPUT_MISSING,
                    "reads steps.count.outputs.rows, which was never made (its step did not "
                    "succeed) and has no default", 9)
    status = expect(before, RunPhase.RUNNING, {"load": load})
    # `last` needs a step skipped for a missing output: not a failure, so it runs.
    c = created("last")
    status = replace(status, step_states=m.step_states_from({
        **dict(status.step_states),
        "last": entry("last", sr_status("last", StepPhase.PENDING, started=9))}.items()),
        progress="2/4")
    return before, at(9), Decision(status, c, None)


# -- a Story not found -------------------------------------------------------------------------

WAIT = m.StoryWait("etl", at(300))
NOTHING = spec()


def story_missing_waits() -> Case:
    before = observed(NOTHING, story_wait=WAIT)
    why = ("waiting for Story etl, not found; the run fails if it is still missing at "
           "2026-11-22T12:05:00Z")
    waiting = m.Condition("Succeeded", "Unknown", Reason.STORY_NOT_FOUND, why, at(10), 1)
    status = replace(expect(before, RunPhase.PENDING, reason=Reason.STORY_NOT_FOUND,
                            message=why, now=10, condition=waiting), started_at=at(10))
    return before, at(10), Decision(status, (), at(300))


def story_missing_gives_up() -> Case:
    before = observed(NOTHING, m.RunStatus(phase=RunPhase.PENDING, started_at=T0),
                      story_wait=WAIT)
    why = "Story etl was not found by 2026-11-22T12:05:00Z"
    status = expect(before, RunPhase.FAILED, reason=Reason.STORY_NOT_FOUND, message=why,
                    now=300, duration="5m0s")
    return before, at(300), Decision(status, (run_event("Failed", f"Failed after 5m0s: {why}"),),
                                     None)


def story_missing_stopped() -> Case:
    before = observed(replace(NOTHING, cancel_requested=True),
                      m.RunStatus(phase=RunPhase.PENDING, started_at=T0), story_wait=WAIT)
    why = "stopped on request before Story etl was found"
    stop = m.StopState(at(20), at(20), at(20), m.StopTrigger.ALL_STEPS_TERMINAL)
    status = expect(before, RunPhase.CANCELED, reason=Reason.CANCELED, message=why, now=20,
                    duration="20s", stop=stop)
    return before, at(20), Decision(status, (
        STOP_REQUESTED,
        run_event("Canceled", f"Canceled after 20s: {why}", "Normal")), None)


CASES = [
    pytest.param(*required_output_missing(), id="required-output-missing-fails-permanent"),
    pytest.param(*outputs_defaulted(), id="outputs-defaulted-are-said"),
    pytest.param(*late_report_with_bad_outputs_rejected(), id="late-report-bad-outputs-rejected"),
    pytest.param(*reader_starts_once_outputs_recorded(), id="reader-starts-on-recorded-outputs"),
    pytest.param(*reader_waits_for_its_gate(), id="reader-waits-for-its-gate"),
    pytest.param(*render_refused_fails_the_reader(), id="render-refused-fails-the-reader"),
    pytest.param(*condition_false_skips_but_dependents_run(), id="condition-false-skips"),
    pytest.param(*condition_without_message(), id="condition-false-without-message"),
    pytest.param(*condition_error_fails(), id="condition-error-fails"),
    pytest.param(*condition_error_without_message(), id="condition-error-under-continue"),
    pytest.param(*gated_step_not_ready(), id="gate-waits-for-needs"),
    pytest.param(*output_of_a_skipped_step(), id="output-of-skipped-step"),
    pytest.param(*story_missing_waits(), id="story-missing-waits"),
    pytest.param(*story_missing_gives_up(), id="story-missing-gives-up"),
    pytest.param(*story_missing_stopped(), id="story-missing-stopped"),
]


test_decide = table(CASES)



def test_problems_the_shell_found_fail_the_run_before_anything_starts() -> None:
    """Params, references or conditions the shell found wrong fail the run InvalidSpec as a bad
    graph does: every step Skipped, no StepRun, the problem named first."""
    why = "required param missing (it has no default)"
    d = decide(observed(FLOW, problems=(("spec.params.table", why),)), T0)
    assert (d.status.phase, d.status.reason) == (RunPhase.FAILED, Reason.INVALID_SPEC)
    assert d.status.message == f"spec.params.table: {why}"
    assert {s.phase for _, s in d.status.step_states} == {StepPhase.SKIPPED}
    assert not [a for a in d.actions if not isinstance(a, EmitEvent)]


def test_a_run_with_no_definition_fails_with_the_shell_s_words_alone() -> None:
    """A re-run whose source is missing has no steps: it is not also told it has none."""
    why = "run nightly not found in namespace data"
    d = decide(observed(replace(FLOW, steps=()), problems=(("spec.rerunOf.name", why),)), T0)
    assert (d.status.phase, d.status.reason, d.status.message) == (
        RunPhase.FAILED, Reason.INVALID_SPEC, f"spec.rerunOf.name: {why}")
    assert d.status.step_states == ()
    assert not [a for a in d.actions if not isinstance(a, EmitEvent)]
