"""The runctl API (runctl.dev/v1alpha1): pydantic models of Story, StoryRun and StepRun.

The CRDs in crds/ are generated from these models (`runctl.api.crds`), CEL rules included
(`runctl.api.rules`). Import the models from here; names and conversions to the core's types are
in `runctl.api.wire`.
"""

from runctl.api.spec import (
    EnvVar,
    LifecycleSpec,
    OutputSpec,
    ParamSpec,
    PodTemplate,
    RetryPolicy,
    RunShape,
    ShutdownSpec,
    StepRunSpec,
    StepSpec,
    StoryRef,
    StoryRunSpec,
    StorySpec,
    TransportSpec,
)
from runctl.api.status import (
    Condition,
    Resolved,
    StepRunStatus,
    StepState,
    StopState,
    StoryRecord,
    StoryRunStatus,
    WorkloadRef,
)

__all__ = [
    "Condition",
    "EnvVar",
    "LifecycleSpec",
    "OutputSpec",
    "ParamSpec",
    "PodTemplate",
    "Resolved",
    "RetryPolicy",
    "RunShape",
    "ShutdownSpec",
    "StepRunSpec",
    "StepRunStatus",
    "StepSpec",
    "StepState",
    "StopState",
    "StoryRecord",
    "StoryRef",
    "StoryRunSpec",
    "StoryRunStatus",
    "StorySpec",
    "TransportSpec",
    "WorkloadRef",
]
