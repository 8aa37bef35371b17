"""The wire, on objects a real API server stored: specs read into the core's values with the API
models' defaults, statuses read and written back unchanged, a new StepRun exactly as stored, and
status writes as JSON merge patches (what the new status drops is sent as null)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runctl.api import wire
from runctl.api.spec import FINALLY_TIMEOUT_SECONDS, RetryPolicy, ShutdownSpec
from runctl.api.wire import merge_patch
from runctl.flow import inputs, references
from runctl.machine import model as m
from runctl.machine.phases import (
    FinallyPolicy,
    Mode,
    OnFailure,
    RunPhase,
    ShutdownMode,
    StepPhase,
    StopTrigger,
)
from runctl.timefmt import parse_time
from tests.recorded import load, names

UTC = dt.UTC


@pytest.mark.parametrize("name", names("storyrun-"))
def test_a_recorded_run_status_reads_and_writes_back_unchanged(name: str) -> None:
    """What the core knows of it, with the record (a Story's, a re-run's) carried over."""
    status = load(name)["status"]
    assert {**wire.run_status(wire.parse_run_status(status)), **wire.recorded(status)} == status


@pytest.mark.parametrize("name", names("steprun-"))
def test_a_recorded_steprun_status_reads_and_writes_back_unchanged(name: str) -> None:
    status = load(name)["status"]
    assert wire.steprun_status(wire.parse_steprun_status(status)) == status


def test_a_workload_recorded_as_seen_reads_and_writes_back_as_seen() -> None:
    status = {**load("steprun-ok-extract")["status"]}
    status["workload"] = {**status["workload"], "observed": True}
    parsed = wire.parse_steprun_status(status)
    assert parsed is not None
    assert parsed.workload is not None
    assert parsed.workload.observed
    assert wire.steprun_status(parsed) == status


def test_a_recorded_spec_reads_whole_with_the_models_defaults() -> None:
    no_retry = RetryPolicy()
    default = m.RetryPolicy(0, no_retry.backoff_seconds, no_retry.backoff_factor, None, ())
    assert wire.run_spec(load("storyrun-ok-running")["spec"]) == m.RunSpec(
        steps=(m.StepSpec("extract", retry=default),
               m.StepSpec("load", needs=("extract",), retry=default)),
        mode=Mode.BATCH, on_failure=OnFailure.STOP,
        grace_period_seconds=ShutdownSpec().grace_period_seconds,
        shutdown_mode=ShutdownMode.CANCEL, shutdown_finally=FinallyPolicy.RUN,
        finally_timeout_seconds=FINALLY_TIMEOUT_SECONDS)


def test_a_retry_policy_reads_as_stored_and_its_defaults_as_the_models_say() -> None:
    """A policy stored before backoffFactor and maxBackoffSeconds existed waits as it did."""
    sr = load("steprun-flaky-fetch")["spec"]
    spec = wire.run_spec({"steps": [sr, {"name": "b", "image": "x", "retry": {"limit": 1}}]})
    assert spec.steps[0].retry == m.RetryPolicy(2, 2, 1, None, (75,))
    assert spec.steps[1].retry == m.RetryPolicy(1, RetryPolicy().backoff_seconds, 1, None, ())


def _backing_off(policy: dict[str, Any]) -> dict[str, Any]:
    """The recorded flaky StepRun with `policy` as its retry, its status as the operator writes
    it while the step waits for its third attempt (recorded-style: the API server's spelling of
    every field, whole-second times)."""
    recorded = load("steprun-flaky-fetch")
    return {**recorded, "spec": {**recorded["spec"], "retry": policy}, "status": {
        "phase": "Running", "reason": "RetryBackoff",
        "message": "attempt 2 failed (exit code 75, Transient); attempt 3 of 4 after 4s, at "
                   "2026-11-26T00:25:20Z",
        "attempts": 2, "startedAt": "2026-11-26T00:25:09Z", "failureClass": "Transient",
        "workload": {"kind": "Pod", "name": "flaky-fetch-2", "observed": True},
        "nextAttemptAt": "2026-11-26T00:25:20Z"}}


def test_a_backing_off_policy_reads_whole_from_a_step_and_its_steprun() -> None:
    stored = _backing_off({"limit": 3, "backoffSeconds": 2, "backoffFactor": 2,
                           "maxBackoffSeconds": 30, "transientExitCodes": [75]})
    spec = wire.run_spec({"steps": [stored["spec"]]})
    assert spec.steps[0].retry == m.RetryPolicy(3, 2, 2, 30, (75,))
    assert wire.run_spec({"storyRef": {"name": "s"}}, {"steps": [stored["spec"]], "finally": [
        {**stored["spec"], "name": "clean"}]}).finally_steps[0].retry == spec.steps[0].retry


def test_a_fan_out_s_items_wait_by_their_step_s_policy() -> None:
    stored = _backing_off({"limit": 3, "backoffSeconds": 2, "backoffFactor": 3,
                           "transientExitCodes": [75]})
    step = {**stored["spec"], "forEach": {"items": ["a", "b"]}}
    (fan_out,) = wire.run_spec({"steps": [step]}).steps
    assert fan_out.for_each is not None
    assert fan_out.retry == m.RetryPolicy(3, 2, 3, None, (75,))


def test_a_waiting_steprun_status_reads_as_the_core_s_and_writes_back_unchanged() -> None:
    status = _backing_off({"limit": 3})["status"]
    parsed = wire.parse_steprun_status(status)
    assert parsed is not None
    assert (parsed.phase, parsed.reason, parsed.attempts, parsed.next_attempt_at) == (
        StepPhase.RUNNING, "RetryBackoff", 2, dt.datetime(2026, 11, 26, 0, 25, 20, tzinfo=UTC))
    assert wire.steprun_status(parsed) == status


def test_a_recorded_run_status_reads_as_the_core_s_values() -> None:
    status = wire.parse_run_status(load("storyrun-live-canceled")["status"])
    assert status.phase is RunPhase.CANCELED
    assert status.stop == m.StopState(
        requested_at=dt.datetime(2026, 11, 26, 0, 25, 15, tzinfo=UTC),
        observed_at=dt.datetime(2026, 11, 26, 0, 25, 15, tzinfo=UTC),
        completed_at=dt.datetime(2026, 11, 26, 0, 25, 15, tzinfo=UTC),
        trigger=StopTrigger.TOPOLOGY_TERMINATED)
    hub = m.step_state(status, "hub")
    assert hub is not None
    assert (hub.phase, hub.step_run, hub.attempts) == (StepPhase.CANCELED, "live-hub", 1)


def test_a_stop_is_dated_from_the_managed_fields_of_the_patch_that_set_it() -> None:
    live = load("storyrun-live-canceled")
    assert wire.cancel_requested_at(live) == dt.datetime(2026, 11, 26, 0, 25, 15, tzinfo=UTC)
    # A create records the defaulted field too: the time is read only once a stop is requested,
    # and a run created stopped was stopped when it was created.
    running = load("storyrun-ok-running")
    assert wire.cancel_requested_at(running) == parse_time(
        running["metadata"]["creationTimestamp"])


def _step(run: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in run["spec"]["steps"] if s["name"] == name)
    return step


def test_a_new_steprun_is_what_the_api_server_stored() -> None:
    run, stored = load("storyrun-ok-running"), load("steprun-ok-extract")
    built = wire.new_steprun(run, _step(run, "extract"), None, "ok-extract", None)
    assert built["spec"] == stored["spec"]
    assert built["metadata"]["labels"] == stored["metadata"]["labels"]
    assert built["metadata"]["finalizers"] == stored["metadata"]["finalizers"] == [
        wire.FINALIZER]
    assert built["metadata"]["ownerReferences"] == stored["metadata"]["ownerReferences"]


def test_a_new_steprun_carries_its_deadline_as_rfc3339() -> None:
    deadline = dt.datetime(2026, 11, 25, 22, 0, 0, 500_000, tzinfo=UTC)
    run = load("storyrun-ok-running")
    built = wire.new_steprun(run, _step(run, "load"), "batch", "ok-load", deadline)
    assert built["spec"]["deadline"] == "2026-11-25T22:00:00Z"
    assert built["spec"]["needs"] == ["extract"]


def test_a_dropped_field_is_sent_as_null() -> None:
    old = {"phase": "Running", "reason": "RetryBackoff", "attempts": 1}
    new = {"phase": "Running", "attempts": 2}
    assert merge_patch(old, new) == {"reason": None, "attempts": 2}


def test_nested_maps_are_patched_key_by_key() -> None:
    old = {"stepStates": {"a": {"phase": "Running", "reason": "RetryBackoff"},
                          "b": {"phase": "Pending"}}}
    new = {"stepStates": {"a": {"phase": "Running"}, "b": {"phase": "Pending"}}}
    assert merge_patch(old, new) == {"stepStates": {"a": {"reason": None}}}


def test_lists_and_new_maps_are_sent_whole() -> None:
    old = {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}
    new = {"conditions": [{"type": "Succeeded", "status": "True"}], "stop": {"trigger": "User"}}
    assert merge_patch(old, new) == new


def test_nothing_to_write_is_an_empty_patch() -> None:
    same = {"phase": "Succeeded", "stepStates": {"a": {"phase": "Succeeded"}}}
    assert merge_patch(same, same) == {}
    assert merge_patch(None, {}) == {}


def test_applying_the_patch_gives_the_new_value() -> None:
    def apply(doc: dict, patch: dict) -> dict:
        out = dict(doc)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = apply(out[k], v)
            else:
                out[k] = v
        return out

    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "f": "x"}
    new = {"a": 1, "b": {"c": 4}, "e": [1, 2], "g": {"h": 5}}
    assert apply(old, merge_patch(old, new)) == new


def test_an_outcome_round_trips() -> None:
    outcome = m.Outcome(RunPhase.FAILED, "StepFailed", "exit 1",
                        dt.datetime(2026, 11, 22, 12, 0, 5, tzinfo=dt.UTC))
    status = m.RunStatus(phase=RunPhase.RUNNING, reason="RunningFinally", outcome=outcome)
    stored = wire.run_status(status)
    assert stored["outcome"] == {"phase": "Failed", "reason": "StepFailed", "message": "exit 1",
                                 "decidedAt": "2026-11-22T12:00:05Z"}
    assert wire.parse_run_status(stored).outcome == outcome


STORY_SPEC: dict[str, Any] = {
    "steps": [{"name": "load", "image": "x"}],
    "finally": [{"name": "clean", "image": "x"}],
    "finallyTimeoutSeconds": 90, "shutdown": {"mode": "Drain"},
}


@pytest.mark.parametrize(("run_shutdown", "mode", "policy"), [
    pytest.param({}, ShutdownMode.DRAIN, FinallyPolicy.RUN, id="the-story-s"),
    pytest.param({"mode": "Cancel", "finally": "Skip"}, ShutdownMode.CANCEL, FinallyPolicy.SKIP,
                 id="the-run-s-over-the-story-s"),
])
def test_a_run_of_a_story_chooses_how_its_stop_acts(run_shutdown: dict[str, Any],
                                                    mode: ShutdownMode,
                                                    policy: FinallyPolicy) -> None:
    spec = wire.run_spec({"storyRef": {"name": "s"}, "shutdown": run_shutdown}, STORY_SPEC)
    assert (spec.shutdown_mode, spec.shutdown_finally) == (mode, policy)
    assert [s.name for s in spec.finally_steps] == ["clean"]
    assert spec.finally_timeout_seconds == 90


@pytest.mark.parametrize(("run", "story", "parallelism"), [
    pytest.param({"steps": [{"name": "a", "image": "x"}], "parallelism": 3}, None, 3,
                 id="inline"),
    pytest.param({"steps": [{"name": "a", "image": "x"}]}, None, None, id="no-bound"),
    pytest.param({"storyRef": {"name": "s"}}, {**STORY_SPEC, "parallelism": 4}, 4,
                 id="the-story-s"),
    pytest.param({"storyRef": {"name": "s"}, "parallelism": 2},
                 {**STORY_SPEC, "parallelism": 4}, 2, id="the-run-s-over-the-story-s"),
    pytest.param({"rerunOf": {"name": "src"}, "parallelism": 1}, STORY_SPEC, 1,
                 id="a-rerun-s-own"),
])
def test_a_run_s_parallelism_is_its_own_else_its_definition_s(
        run: dict[str, Any], story: dict[str, Any] | None, parallelism: int | None) -> None:
    assert wire.run_spec(run, story).parallelism == parallelism


# -- re-runs -----------------------------------------------------------------------------------


def test_a_rerun_s_record_reads_as_the_steps_it_reuses() -> None:
    again, first = load("storyrun-part-again-succeeded"), load("steprun-part-first")
    assert wire.rerun_of(again["spec"]) == "part"
    assert wire.executes_record(again["spec"])
    assert not wire.executes_record(load("storyrun-ok-running")["spec"])
    made_by = m.ReusedFrom("part", "part-first", first["metadata"]["uid"])
    reuses = (("first", m.Reuse(made_by, (("rows", "7"),))),)
    assert wire.reuses(again["status"]) == reuses
    assert wire.rerun_record(load("storyrun-part-failed"), reuses) == again["status"]["rerun"]
    assert wire.reuses(load("storyrun-part-failed")["status"]) == ()


def test_a_reused_steprun_reads_as_the_core_s_reuse_and_writes_back_unchanged() -> None:
    reused = load("steprun-part-again-first")
    status = wire.parse_steprun_status(reused["status"])
    assert status is not None
    assert (status.phase, status.reason, status.attempts, status.workload) == (
        StepPhase.SUCCEEDED, "Reused", 0, None)
    assert status.reused_from == m.ReusedFrom(
        "part", "part-first", load("steprun-part-first")["metadata"]["uid"])
    assert status.outputs == (("rows", "7"),)


def test_a_new_steprun_carries_the_inputs_digest_the_api_server_stored() -> None:
    run, stored = load("storyrun-part-again-succeeded"), load("steprun-part-again-second")
    step, values = run["status"]["resolved"]["spec"]["steps"][1], run["status"]["resolved"][
        "params"]
    rendered = references.render_step(step, values, {"first": {"rows": "7"}})
    digest = inputs.inputs_digest(rendered, values, {"first": {"rows": "7"}})
    built = wire.new_steprun(run, rendered, None, "part-again-second", None, digest)
    assert built["spec"] == stored["spec"]
    # The reused step's StepRun records the digest of its source's.
    assert (load("steprun-part-again-first")["spec"]["inputsDigest"]
            == load("steprun-part-first")["spec"]["inputsDigest"])


# -- suspend -----------------------------------------------------------------------------------


def test_a_suspended_run_reads_as_suspended_and_its_condition_round_trips() -> None:
    """`spec.suspend` as stored, on a run of a Story too (it is the run's own, not the
    Story's); the `Suspended` condition reads and writes back as the API server holds it."""
    run = load("storyrun-ok-running")
    assert not wire.run_spec(run["spec"]).suspend
    assert wire.run_spec({**run["spec"], "suspend": True}).suspend
    assert wire.run_spec({"storyRef": {"name": "s"}, "suspend": True}, STORY_SPEC).suspend
    held = {"type": "Suspended", "status": "True", "reason": "Suspended",
            "message": "spec.suspend is true: nothing new starts until it is false; what runs "
                       "goes on, and the run's deadline keeps counting",
            "lastTransitionTime": "2026-11-26T00:25:13Z", "observedGeneration": 2}
    status = {**run["status"], "conditions": [*run["status"]["conditions"], held]}
    parsed = wire.parse_run_status(status)
    assert m.Condition("Suspended", "True", "Suspended", held["message"],
                       parse_time(held["lastTransitionTime"]), 2) in parsed.conditions
    assert {**wire.run_status(parsed), **wire.recorded(status)} == status
