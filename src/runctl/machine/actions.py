"""What the shell must do to make a decision true. A closed union: the shell matches on it.

Every action but `EmitEvent` is safe to apply twice (deterministic names, create-if-absent,
deletes that count NotFound as done, status writes that state the whole result), because a
decision may be applied again after a conflict or a restart. An Event posted twice would be seen
twice: the shell posts a decision's Events only once its status write has landed.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from runctl.machine.model import StepRunStatus
from runctl.machine.value import value


class EventReason(StrEnum):
    """Reasons of the Kubernetes Events a person reads in `kubectl describe`."""

    STARTED = "Started"
    STOP_REQUESTED = "StopRequested"
    RETRYING = "Retrying"
    LATE_REPORT_REJECTED = "LateReportRejected"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TIMED_OUT = "TimedOut"
    WRITE_REJECTED = "WriteRejected"
    """The API server's rules refused one of the operator's own status writes."""
    CREATE_FORBIDDEN = "CreateForbidden"
    """A child's create was forbidden (RBAC, a quota): tried again later."""
    CREATE_REFUSED = "CreateRefused"
    """A child's create was refused as invalid: its step fails (also the attempt's reason)."""
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"


@value
class CreateStepRun:
    step: str
    name: str
    deadline: dt.datetime | None
    """The run's absolute deadline, copied into the StepRun spec."""


@value
class StartAttempt:
    """Create the workload of attempt `attempt` (a pod per attempt, or the Deployment)."""

    step: str
    attempt: int


@value
class StopWorkload:
    """Delete the step's workloads and their pods, giving them `grace_seconds` to exit."""

    step: str
    grace_seconds: int


@value
class StopItems:
    """Delete the live pods of every item of fan-out step `step` together, in a few requests for
    the whole step, giving them `grace_seconds` to exit: a stop of the run stops all its items
    at once, however many run.
    Sent only when every item of the step is to be stopped (the run halts), so it may take pods
    the decision has not seen yet too (an item's create still on its way when the stop came)."""

    step: str
    grace_seconds: int


@value
class WriteStepRunStatus:
    """Replace the StepRun's status with this (only sent when it differs from what is there)."""

    step: str
    status: StepRunStatus


@value
class RemoveFinalizer:
    """Let a StepRun go: sent only once the StoryRun's stored status records the step terminal,
    so its final state is never lost (guarantee 1)."""

    step: str


@value
class DeleteStepRun:
    """ttlSecondsAfterFinished has passed for the run (its workloads go with it)."""

    step: str


@value
class EmitEvent:
    """One Event per transition a person wants to see; posted after the status write lands."""

    target: Literal["run", "step"]
    step: str | None
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = (CreateStepRun | StartAttempt | StopWorkload | StopItems | WriteStepRunStatus
          | RemoveFinalizer | DeleteStepRun | EmitEvent)
