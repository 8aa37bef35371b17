"""Why an attempt failed, and whether trying again could help.

Transient: the failure came from around the step, not from it: the pod was evicted or preempted,
its node went away, it was killed by a signal (exit code 128+N), or it exited with a code the step
lists as transient. Permanent: everything else, notably any other exit code, an image that cannot
be pulled, and a step that says so itself. Only Transient failures are retried (guarantee 7).
"""

from __future__ import annotations

from runctl.machine.model import AttemptObservation, RetryPolicy
from runctl.machine.phases import FailureClass

DISRUPTIONS = frozenset({"Evicted", "Preempted", "NodeLost"})
"""Pod reasons meaning the pod was taken away from a healthy step."""
IMAGE_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
"""Waiting reasons after which the image will not be pulled without someone changing it."""
SIGNAL_EXITS = range(128 + 1, 128 + 64 + 1)
MAX_MESSAGE = 1024


def classify(attempt: AttemptObservation, retry: RetryPolicy) -> FailureClass:
    """The failure class of a failed attempt, first matching rule wins."""
    if attempt.failure_class_hint is not None:
        return attempt.failure_class_hint
    if attempt.reason in IMAGE_FAILURES:
        return FailureClass.PERMANENT
    if attempt.reason in DISRUPTIONS:
        return FailureClass.TRANSIENT
    if attempt.exit_code in retry.transient_exit_codes or attempt.exit_code in SIGNAL_EXITS:
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT


def describe(attempt: AttemptObservation, failure: FailureClass) -> str:
    """A sentence for people: which attempt, how it ended, what it said."""
    how = [f"exit code {attempt.exit_code}"] if attempt.exit_code is not None else []
    how += [attempt.reason] if attempt.reason else []
    text = f"attempt {attempt.attempt} failed ({', '.join([*how, failure.value])})"
    if attempt.message:
        text += f": {attempt.message}"
    return text[:MAX_MESSAGE]
