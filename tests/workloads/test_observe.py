"""Reading workloads back, on pods and Deployments as the API server stored them: each
recorded case (and variations of it a cluster produces) reads as one whole AttemptObservation."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from runctl.machine import model as m
from runctl.machine.phases import FailureClass
from runctl.workloads import observe
from tests.recorded import load

W = m.WorkloadState
UTC = dt.UTC


def at(second: int) -> dt.datetime:
    return dt.datetime(2026, 11, 26, 0, 25, second, tzinfo=UTC)


def attempt(state: m.WorkloadState, **kw: Any) -> m.AttemptObservation:
    fields: dict[str, Any] = {"exit_code": None, "reason": None, "message": None,
                              "outputs": (), "failure_class_hint": None, "live_pods": 0,
                              "started_at": None, "finished_at": None, "stopping": False}
    return m.AttemptObservation(1, state, **(fields | kw))


def deleting(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["deletionTimestamp"] = "2026-11-25T21:41:40Z"
    return obj


def waiting(pod: dict[str, Any], reason: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"]["phase"] = "Pending"
    pod["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": reason, "message": f"{reason}: example.invalid"}}
    return pod


PODS = [
    pytest.param("pod-ok-extract-1", False, attempt(
        W.SUCCEEDED, exit_code=0, message='{"rows": "1200", "table": "events"}',
        outputs=(("rows", "1200"), ("table", "events")), started_at=at(10),
        finished_at=at(12)), id="succeeded-with-outputs"),
    pytest.param("pod-ok-load-1", False, attempt(
        W.RUNNING, live_pods=1, started_at=at(12)), id="running"),
    pytest.param("pod-bad-check-1", False, attempt(
        W.FAILED, exit_code=3, reason="Error", message="schema mismatch", started_at=at(10),
        finished_at=at(11)), id="failed-permanent-exit"),
    pytest.param("pod-flaky-fetch-1", False, attempt(
        W.FAILED, exit_code=75, reason="Error", started_at=at(10), finished_at=at(11)),
        id="failed-transient-exit"),
    pytest.param(None, False, attempt(W.ABSENT), id="not-seen-is-absent"),
    pytest.param(None, True, attempt(W.GONE, stopping=True), id="deletion-seen-is-gone"),
]


@pytest.mark.parametrize(("pod", "deleted", "expected"), PODS)
def test_a_batch_attempt_reads_from_its_pod(pod: str | None, deleted: bool,
                                            expected: m.AttemptObservation) -> None:
    assert observe.observe_pod(1, load(pod) if pod else None, deleted) == expected


def test_a_pod_deleted_before_it_ended_is_gone_and_stopping() -> None:
    """Its work goes with it (the step is Lost unless a stop explains it), and no second stop
    is sent."""
    assert observe.observe_pod(1, deleting(load("pod-ok-load-1")), False) == attempt(
        W.GONE, stopping=True)


def test_a_pod_that_ended_says_how_even_while_being_deleted() -> None:
    assert observe.observe_pod(1, deleting(load("pod-ok-extract-1")), False) == attempt(
        W.SUCCEEDED, exit_code=0, message='{"rows": "1200", "table": "events"}',
        outputs=(("rows", "1200"), ("table", "events")), started_at=at(10),
        finished_at=at(12), stopping=True)


def test_a_pod_not_scheduled_yet_is_pending() -> None:
    pod = copy.deepcopy(load("pod-ok-load-1"))
    pod["status"] = {"phase": "Pending"}
    assert observe.observe_pod(1, pod, False) == attempt(W.PENDING, live_pods=1)


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "InvalidImageName",
                                    "CreateContainerConfigError"])
def test_a_pod_that_cannot_start_fails_its_attempt(reason: str) -> None:
    pod = waiting(load("pod-ok-load-1"), reason)
    assert observe.observe_pod(1, pod, False) == attempt(
        W.FAILED, reason=reason, message=f"{reason}: example.invalid", live_pods=1)


def test_a_first_image_pull_error_is_still_pending() -> None:
    """ErrImagePull comes before the back-off: the kubelet is still trying."""
    pod = waiting(load("pod-ok-load-1"), "ErrImagePull")
    assert observe.observe_pod(1, pod, False) == attempt(
        W.PENDING, live_pods=1, started_at=at(12))  # the pod's startTime


def test_a_pod_past_its_deadline_failed_with_the_kubelet_s_reason() -> None:
    """What a kubelet writes when `activeDeadlineSeconds` runs out."""
    pod = copy.deepcopy(load("pod-ok-load-1"))
    pod["status"].update(phase="Failed", reason="DeadlineExceeded",
                         message="Pod was active on the node longer than the specified deadline")
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
        "exitCode": 137, "reason": "Error", "startedAt": "2026-11-26T00:25:12Z",
        "finishedAt": "2026-11-26T00:25:15Z"}}
    assert observe.observe_pod(1, pod, False) == attempt(
        W.FAILED, exit_code=137, reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        started_at=at(12), finished_at=at(15))


def test_a_realtime_step_reads_from_its_deployment_and_ready_pod() -> None:
    assert observe.observe_deployment(
        load("deployment-live-hub"), [load("pod-live-hub")], False) == attempt(
        W.RUNNING, live_pods=1, started_at=at(10))


def test_a_deployment_scaled_to_zero_is_being_stopped() -> None:
    dep = copy.deepcopy(load("deployment-live-hub"))
    dep["spec"]["replicas"] = 0
    obs = observe.observe_deployment(dep, [load("pod-live-hub")], False)
    assert (obs.state, obs.stopping) == (W.RUNNING, True)


def test_a_deployment_gone_is_gone_and_unseen_is_absent() -> None:
    assert observe.observe_deployment(None, [], True) == attempt(W.GONE, stopping=True)
    assert observe.observe_deployment(None, [], False) == attempt(W.ABSENT)
    gone = deleting(load("deployment-live-hub"))
    assert observe.observe_deployment(gone, [], False) == attempt(W.GONE, stopping=True)


def test_outputs_are_a_json_object_of_strings_and_a_step_may_classify_its_failure() -> None:
    assert observe.parse_outputs('{"rows": 12, "ok": true, "t": "x"}') == (
        {"rows": "12", "ok": "true", "t": "x"}, None)
    assert observe.parse_outputs('{"runctl.dev/failureClass": "Permanent", "a": "1"}') == (
        {"a": "1"}, FailureClass.PERMANENT)
    for text in (None, "", "not json", "[1, 2]"):
        assert observe.parse_outputs(text) == ({}, None)
