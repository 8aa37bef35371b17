"""The runctl API (runctl.dev/v1alpha1): pydantic models of StoryRun and StepRun.

The CRDs in crds/ are generated from these models (`runctl.api.crds`), CEL rules included
(`runctl.api.rules`). Import the models from here; names and conversions to the core's types are
in `runctl.api.wire`.
"""

from runctl.api.spec import (
    EnvVar,
    LifecycleSpec,
    PodTemplate,
    RetryPolicy,
    ShutdownSpec,
    StepRunSpec,
    StepSpec,
    StoryRunSpec,
    TransportSpec,
)
from runctl.api.status import (
    Condition,
    StepRunStatus,
    StepState,
    StopState,
    StoryRunStatus,
    WorkloadRef,
)

__all__ = [
    "Condition",
    "EnvVar",
    "LifecycleSpec",
    "PodTemplate",
    "RetryPolicy",
    "ShutdownSpec",
    "StepRunSpec",
    "StepRunStatus",
    "StepSpec",
    "StepState",
    "StopState",
    "StoryRunSpec",
    "StoryRunStatus",
    "TransportSpec",
    "WorkloadRef",
]
