"""Failure classes: only what came from around the step is Transient (guarantee 7)."""

from __future__ import annotations

import pytest

from runctl.machine.failures import classify, describe
from runctl.machine.model import AttemptObservation, RetryPolicy, WorkloadState
from runctl.machine.phases import FailureClass

T, P = FailureClass.TRANSIENT, FailureClass.PERMANENT
RETRY = RetryPolicy(limit=2, backoff_seconds=0, backoff_factor=1, max_backoff_seconds=None,
                    transient_exit_codes=(75,))


def failed(exit_code: int | None = None, reason: str | None = None,
           hint: FailureClass | None = None) -> AttemptObservation:
    return AttemptObservation(1, WorkloadState.FAILED, exit_code=exit_code, reason=reason,
                              failure_class_hint=hint)


@pytest.mark.parametrize(("attempt", "expected"), [
    pytest.param(failed(reason="Evicted"), T, id="evicted"),
    pytest.param(failed(reason="Preempted"), T, id="preempted"),
    pytest.param(failed(reason="NodeLost"), T, id="node-lost"),
    pytest.param(failed(137, "OOMKilled"), T, id="killed-by-signal-9"),
    pytest.param(failed(143), T, id="sigterm"),
    pytest.param(failed(129), T, id="lowest-signal"),
    pytest.param(failed(192), T, id="highest-signal"),
    pytest.param(failed(193), P, id="past-the-signals"),
    pytest.param(failed(128), P, id="128-is-no-signal"),
    pytest.param(failed(75), T, id="listed-transient-code"),
    pytest.param(failed(3), P, id="other-exit-code"),
    pytest.param(failed(1, "DeadlineExceeded"), P, id="deadline"),
    pytest.param(failed(reason="ErrImagePull"), P, id="err-image-pull"),
    pytest.param(failed(reason="ImagePullBackOff"), P, id="image-pull-backoff"),
    pytest.param(failed(reason="InvalidImageName"), P, id="invalid-image"),
    pytest.param(failed(75, hint=P), P, id="step-says-permanent"),
    pytest.param(failed(3, hint=T), T, id="step-says-transient"),
    pytest.param(failed(), P, id="no-evidence"),
])
def test_classification(attempt: AttemptObservation, expected: FailureClass) -> None:
    assert classify(attempt, RETRY) is expected


@pytest.mark.parametrize(("attempt", "text"), [
    pytest.param(failed(3), "attempt 1 failed (exit code 3, Permanent)", id="exit"),
    pytest.param(failed(reason="Evicted"), "attempt 1 failed (Evicted, Transient)", id="reason"),
    pytest.param(AttemptObservation(2, WorkloadState.FAILED, exit_code=137, reason="OOMKilled",
                                    message="x" * 2000),
                 ("attempt 2 failed (exit code 137, OOMKilled, Transient): " + "x" * 2000)[:1024],
                 id="bounded-message"),
])
def test_description(attempt: AttemptObservation, text: str) -> None:
    assert describe(attempt, classify(attempt, RETRY)) == text
