"""Retries that back off, on the real API server (docs/API.md, Retries): each wait is the one
before times backoffFactor, and a waiting step shows when its next attempt starts.

Times are read from what the cluster recorded (the pods' creation, their container's end, the
StepRun's nextAttemptAt), all in whole seconds; nothing here times the machine.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from kubernetes import client, watch

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.support import (
    apply,
    get_run,
    items,
    step,
    step_states,
    storyrun,
    wait_terminal,
)

pytestmark = pytest.mark.integration

WAITS = {2: 1, 3: 2, 4: 4}
"""The wait before each retry of `retry: {limit: 3, backoffSeconds: 1, backoffFactor: 2}`."""


def _time(value: str) -> dt.datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed


def _record_shows(cluster: ControlPlane, namespace: str, status: dict[str, Any]) -> bool:
    """Whether the run's stepStates entry shows this waiting status, looked at until its next
    attempt is due (the run's write follows the StepRun's)."""
    due = _time(status["nextAttemptAt"])
    while dt.datetime.now(dt.UTC) < due:
        entry = step_states(get_run(cluster, namespace, "backoff")).get("flaky") or {}
        if (entry.get("reason"), entry.get("message")) == ("RetryBackoff", status["message"]):
            return True
        time.sleep(0.1)
    return False


def test_each_retry_waits_twice_as_long_and_shows_when_it_starts(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    custom = client.CustomObjectsApi(cluster.api_client())
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, "runctl.dev", "v1alpha1", namespace, "stepruns",
        label_selector="runctl.dev/storyrun=backoff", timeout_seconds=120)
    retry = {"limit": 3, "backoffSeconds": 1, "backoffFactor": 2, "transientExitCodes": [75]}
    apply(cluster, namespace, storyrun("backoff", [
        step("flaky", exit_code=75, retry=retry,
             annotations={"sim.runctl.dev/fail-attempts": "3"})]))
    waiting: dict[int, dict[str, Any]] = {}  # the next attempt -> the status that waited for it
    shown: dict[int, bool] = {}
    for event in stream:
        status = event["object"].get("status") or {}
        if status.get("reason") == "RetryBackoff" and status["attempts"] + 1 not in waiting:
            upcoming = status["attempts"] + 1
            waiting[upcoming] = status
            shown[upcoming] = _record_shows(cluster, namespace, status)
        if status.get("phase") in ("Succeeded", "Failed"):
            break
    run = wait_terminal(cluster, namespace, "backoff", timeout=60)
    assert step_states(run)["flaky"]["phase"] == "Succeeded"
    assert step_states(run)["flaky"]["attempts"] == 4

    # Every wait was written, with when the next attempt starts, while the step waited.
    assert sorted(waiting) == [2, 3, 4]
    for upcoming, status in waiting.items():
        assert status["phase"] == "Running"
        assert status["message"].endswith(
            f"attempt {upcoming} of 4 after {WAITS[upcoming]}s, at {status['nextAttemptAt']}")
    # The longest wait is long enough to see in the run's record too (the shorter ones may be
    # over before a look at the run).
    assert shown[4], "stepStates.flaky never showed the wait before attempt 4"

    pods = {int(p["metadata"]["labels"]["runctl.dev/attempt"]): p for p in items(
        cluster, namespace, "pods", "runctl.dev/storyrun=backoff")}
    assert sorted(pods) == [1, 2, 3, 4]
    created = {n: _time(p["metadata"]["creationTimestamp"]) for n, p in pods.items()}
    ended = {n: _time(p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
             for n, p in pods.items()}
    for upcoming, wait in WAITS.items():
        delay = dt.timedelta(seconds=wait)
        due = _time(waiting[upcoming]["nextAttemptAt"])
        # Attempt n was made no sooner than the previous one ended plus its wait, and not
        # before the time its StepRun showed; so the attempts are 1 s, 2 s, 4 s apart at least.
        assert due >= ended[upcoming - 1] + delay, (upcoming, due, ended[upcoming - 1])
        assert created[upcoming] >= due, (upcoming, created[upcoming], due)
        assert created[upcoming] - created[upcoming - 1] >= delay
