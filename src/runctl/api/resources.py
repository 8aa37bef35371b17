"""Whole StoryRun and StepRun objects, typed: what `runctl get` and `runctl logs` read.

    run = parse_story_run(body)            # body: the dict the API (or kopf) gives
    run.spec.steps[0].needs, run.status.phase if run.status else None

Reading ignores fields the models do not know (a newer CRD, kopf's annotations live in
metadata anyway); the API server has already validated what it stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from runctl.api.base import ApiModel
from runctl.api.spec import StepRunSpec, StepSpec, StoryRunSpec
from runctl.api.status import StepRunStatus, StoryRunStatus
from runctl.api.wire import API_VERSION


class StoryRun(ApiModel):
    """A StoryRun object: metadata as the API gives it, typed spec and status."""

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default="StoryRun")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: StoryRunSpec
    status: StoryRunStatus | None = None


class StepRun(ApiModel):
    """A StepRun object: metadata as the API gives it, typed spec and status."""

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default="StepRun")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: StepRunSpec
    status: StepRunStatus | None = None


def _status(body: Mapping[str, Any]) -> Any:
    # An object whose status was never written reads as no status ({} or absent).
    return body.get("status") or None


def parse_story_run(body: Mapping[str, Any]) -> StoryRun:
    """A StoryRun from its API dict (camelCase)."""
    return StoryRun.model_validate({**body, "status": _status(body)})


def parse_step_run(body: Mapping[str, Any]) -> StepRun:
    """A StepRun from its API dict (camelCase)."""
    return StepRun.model_validate({**body, "status": _status(body)})


def executed_finally(run: StoryRun) -> list[StepSpec]:
    """The finally steps a run executes (its own, or those of the Story it recorded)."""
    if run.spec.steps is not None:
        return list(run.spec.finally_ or ())
    if run.status is not None and run.status.resolved is not None:
        return list(run.status.resolved.spec.finally_ or ())
    return []


def executed_steps(run: StoryRun) -> list[StepSpec]:
    """The steps a run executes, its finally steps last: its own, or those of the Story it
    recorded (none yet while it waits for its Story)."""
    if run.spec.steps is not None:
        return [*run.spec.steps, *(run.spec.finally_ or ())]
    if run.status is not None and run.status.resolved is not None:
        spec = run.status.resolved.spec
        return [*spec.steps, *(spec.finally_ or ())]
    return []
