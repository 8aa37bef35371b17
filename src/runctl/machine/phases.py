"""The names of the lifecycle: phases, terminal sets, reasons and stop triggers.

These strings are the public contract (docs/API.md): users' scripts, dashboards and the CRD schemas
match on them, so they are defined once here and imported everywhere else.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    BATCH = "batch"
    REALTIME = "realtime"


class OnFailure(StrEnum):
    STOP = "stop"
    CONTINUE = "continue"


class ShutdownMode(StrEnum):
    """How a stop treats the main steps that are running."""

    CANCEL = "Cancel"
    """They are stopped at once (their pods get the grace period to exit)."""
    DRAIN = "Drain"
    """They may finish within the grace period; nothing new starts."""


class FinallyPolicy(StrEnum):
    """Whether finally steps run after a stop."""

    RUN = "Run"
    SKIP = "Skip"


class RunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    STOPPING = "Stopping"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TIMED_OUT = "TimedOut"


class StepPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TIMED_OUT = "TimedOut"
    LOST = "Lost"
    SKIPPED = "Skipped"


RUN_TERMINAL: frozenset[RunPhase] = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELED, RunPhase.TIMED_OUT}
)
STEP_TERMINAL: frozenset[StepPhase] = frozenset(
    {
        StepPhase.SUCCEEDED,
        StepPhase.FAILED,
        StepPhase.CANCELED,
        StepPhase.TIMED_OUT,
        StepPhase.LOST,
        StepPhase.SKIPPED,
    }
)


class Reason(StrEnum):
    """Reasons named by the contract: of a step or a run that ended, and `StoryNotFound`, which
    a run also shows while it waits Pending for its Story (`Waiting` names the other reasons of
    what has not ended)."""

    COMPLETED = "Completed"
    STEP_FAILED = "StepFailed"
    UPSTREAM_FAILED = "UpstreamFailed"
    STOPPED_BEFORE_START = "StoppedBeforeStart"
    CANCELED = "Canceled"
    TOPOLOGY_TERMINATED = "TopologyTerminated"
    GRACE_PERIOD_EXPIRED = "GracePeriodExpired"
    TIMED_OUT = "TimedOut"
    HEARTBEAT_EXPIRED = "HeartbeatExpired"
    WORKLOAD_DELETED = "WorkloadDeleted"
    INVALID_SPEC = "InvalidSpec"
    STORY_NOT_FOUND = "StoryNotFound"
    """The run's Story did not appear within the time the operator waits for it."""
    OUTPUT_MISSING = "OutputMissing"
    OUTPUT_INVALID = "OutputInvalid"
    CONDITION_FALSE = "ConditionFalse"
    """Skipped: its `when` was false. Not a failure: its dependents still run."""
    CONDITION_ERROR = "ConditionError"
    UPSTREAM_OUTPUT_MISSING = "UpstreamOutputMissing"
    """Skipped: an output it references was never made (its producer was skipped) and has no
    default."""
    UPSTREAM_OUTPUT_DELETED = "UpstreamOutputDeleted"
    """Failed: an output it reads was made, but the StepRun holding it (its producer's, or an
    item's of a fan-out producer) was deleted before the step was made: it can never render."""
    FINALLY_FAILED = "FinallyFailed"
    """A finally step failed a run whose main steps succeeded."""
    REUSED = "Reused"
    """Succeeded: a re-run took the step's result from the run it re-runs, executing nothing."""
    NO_ITEMS = "NoItems"
    """Succeeded: a fan-out step's items are an empty list, so it ran nothing."""
    ITEMS_INVALID = "ItemsInvalid"
    """Failed: a fan-out step's items, known at run time, are not a JSON array (or lack a
    field its references read)."""
    TOO_MANY_ITEMS = "TooManyItems"
    """Failed: a fan-out step's items, known at run time, are more than the run may have."""
    OUTPUT_TOO_LARGE = "OutputTooLarge"
    """Failed: an output of a fan-out step it reads, an array of its items' values, is larger
    than a reference may render."""


class StopTrigger(StrEnum):
    ALL_STEPS_TERMINAL = "AllStepsTerminal"
    TOPOLOGY_TERMINATED = "TopologyTerminated"
    GRACE_PERIOD_EXPIRED = "GracePeriodExpired"


class FailureClass(StrEnum):
    TRANSIENT = "Transient"
    PERMANENT = "Permanent"


class Waiting(StrEnum):
    """Reasons of a step that is not terminal yet."""

    RETRY_BACKOFF = "RetryBackoff"
    """A Transient failure is waiting out retry.backoffSeconds before the next attempt."""
    STOP_REQUESTED = "StopRequested"
    """The run is Stopping: nothing starts, running work is given the grace period to end."""
    RUNNING_FINALLY = "RunningFinally"
    """The run's main steps are all terminal and its finally steps are running."""
    RUN_PARALLELISM = "RunParallelism"
    """A step ready to start (for a fan-out step: some of its items) waits for a slot: as many
    of the run's steps and items as its `parallelism` hold one."""
    SUSPENDED = "Suspended"
    """The run is suspended (`spec.suspend`): a step ready to start (or its next attempt, or
    a fan-out step's items not started) waits until it is resumed. Also the run's reason."""


STEP_FAILURES: frozenset[StepPhase] = frozenset(
    {StepPhase.FAILED, StepPhase.TIMED_OUT, StepPhase.LOST}
)
"""Terminal step phases that count as the step failing (onFailure, the run's verdict)."""
