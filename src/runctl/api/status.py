"""The status side of the API: what the operator records about a StoryRun and its StepRuns.

Written through the status subresource. The CRD's CEL rules make a terminal status final for
every writer (see `runctl.api.rules`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from runctl.api import rules
from runctl.api.base import DNS_SUBDOMAIN, MAX_MESSAGE, MAX_REASON, ApiModel, Timestamp
from runctl.api.spec import MAX_FINALLY, MAX_PARAMS, MAX_STEPS, StorySpec
from runctl.machine.items import MAX_FAILED_ITEMS
from runctl.machine.phases import FailureClass, RunPhase, StepPhase, StopTrigger

MAX_OUTPUTS = 64
MAX_CONDITIONS = 16

OutputValue = Annotated[str, StringConstraints(max_length=4096)]


def _reason(what: str) -> Any:
    return Field(
        default=None, max_length=MAX_REASON,
        description=f"Machine-readable CamelCase reason for {what}, e.g. Completed, StepFailed, "
                    "UpstreamFailed, StoppedBeforeStart, Canceled, TimedOut, WorkloadDeleted.")


def _count(phase: StepPhase) -> Any:
    return Field(default=None, ge=0, alias=phase.value,
                 description=f"How many of its items are {phase.value}.")


class ItemCounts(ApiModel):
    """How many items of a fan-out step are in each phase."""

    total: int = Field(ge=0, description="How many items the step has.")
    pending: int | None = _count(StepPhase.PENDING)
    running: int | None = _count(StepPhase.RUNNING)
    succeeded: int | None = _count(StepPhase.SUCCEEDED)
    failed: int | None = _count(StepPhase.FAILED)
    canceled: int | None = _count(StepPhase.CANCELED)
    timed_out: int | None = _count(StepPhase.TIMED_OUT)
    lost: int | None = _count(StepPhase.LOST)
    skipped: int | None = _count(StepPhase.SKIPPED)


class FailedItem(ApiModel):
    """One failed item of a fan-out step (the rest of its story is on its StepRun)."""

    index: int = Field(ge=0, description="The item's index, from 0.")
    reason: str | None = _reason("the item's end")
    message: str | None = Field(default=None, max_length=MAX_MESSAGE,
                                description="A sentence for people about how the item ended.")
    finished_at: Timestamp | None = Field(default=None,
                                          description="When the item failed (RFC 3339).")


class StepState(ApiModel):
    """The recorded state of one step, kept after its StepRun is deleted."""

    phase: StepPhase = Field(
        description="Pending, Running, then exactly one terminal phase: Succeeded, Failed, "
                    "Canceled, TimedOut, Lost or Skipped. A terminal entry never changes.")
    reason: str | None = _reason("the step's phase")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE,
        description="A sentence for people about the step's state.")
    step_run: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of the StepRun that runs the step (in the same namespace).")
    attempts: int = Field(
        default=0, ge=0, description="How many attempts the step has started (default 0).")
    started_at: Timestamp | None = Field(
        default=None, description="When the step's first attempt started (RFC 3339).")
    finished_at: Timestamp | None = Field(
        default=None, description="When the step became terminal (RFC 3339).")
    items: ItemCounts | None = Field(
        default=None,
        description="A fan-out step's items by phase, once it knows how many it has: `total`, "
                    "then the number of items in each phase that has any (they add up to "
                    "total). Per-item detail is in the items' StepRuns.")
    failed_items: list[FailedItem] | None = Field(
        default=None, max_length=MAX_FAILED_ITEMS,
        description=f"A fan-out step's first items to fail, at most {MAX_FAILED_ITEMS}, in the "
                    "order they failed.")


class StopState(ApiModel):
    """The course of a stop (cancel, timeout or fail-fast)."""

    requested_at: Timestamp | None = Field(
        default=None, description="When the stop was requested (RFC 3339).")
    observed_at: Timestamp | None = Field(
        default=None, description="When the operator observed the request (RFC 3339).")
    completed_at: Timestamp | None = Field(
        default=None,
        description="When the stop completed: no main step (or realtime workload) left "
                    "running; finally steps do not delay it. A stop that arrives while finally "
                    "steps run completes when the run ends (RFC 3339).")
    trigger: StopTrigger | None = Field(
        default=None,
        description="What completed the stop: AllStepsTerminal, TopologyTerminated (the "
                    "realtime topology was observed gone) or GracePeriodExpired "
                    "(shutdown.gracePeriodSeconds passed and the rest was forced).")


class Outcome(ApiModel):
    """What the main steps ended as: the run's end without its finally steps."""

    phase: RunPhase = Field(
        description="Succeeded, Failed, Canceled or TimedOut (finally steps read it as "
                    "run.outcome).")
    reason: str | None = _reason("the outcome (finally steps read it as run.reason)")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE, description="A sentence for people about it.")
    decided_at: Timestamp | None = Field(
        default=None,
        description="When the last main step became terminal: the finally steps' budget "
                    "(finallyTimeoutSeconds) counts from it (RFC 3339).")


class Condition(ApiModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        min_length=1, max_length=316,
        description="Type of the condition in CamelCase, e.g. Succeeded or TopologyTerminated.")
    status: Literal["True", "False", "Unknown"] = Field(
        description="True, False or Unknown.")
    reason: str | None = Field(
        default=None, max_length=MAX_REASON,
        description="Machine-readable CamelCase reason for the last transition.")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE,
        description="A sentence for people about the last transition.")
    last_transition_time: Timestamp | None = Field(
        default=None, description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, ge=0,
        description="The metadata.generation the condition was set for.")


class StoryRecord(ApiModel):
    """Which Story a run resolved, and which version of it."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Story.")
    uid: str = Field(min_length=1, max_length=64, description="metadata.uid of the Story.")
    generation: int = Field(ge=0, description="metadata.generation of the Story resolved.")
    digest: str = Field(
        min_length=1, max_length=128,
        description="sha256: of the Story's spec as canonical JSON (sorted keys, no spaces).")


class Resolved(ApiModel):
    """The definition a run of a Story executes: recorded once, never changed."""

    params: dict[str, Any] = Field(
        default_factory=dict, max_length=MAX_PARAMS,
        description="The value of every param the Story declares, defaults applied.")
    spec: StorySpec = Field(description="The Story's spec as it was when the run resolved it.")


class ReusedFrom(ApiModel):
    """The StepRun that executed a step a re-run reused."""

    story_run: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="The StoryRun it belonged to (the run that really executed the step).")
    step_run: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
                          description="Name of that StepRun.")
    uid: str = Field(min_length=1, max_length=64, description="metadata.uid of that StepRun.")


class ReusedStep(ReusedFrom):
    """A step a re-run reuses: who executed it, and the outputs it made."""

    outputs: dict[str, OutputValue] | None = Field(
        default=None, max_length=MAX_OUTPUTS,
        description="The outputs that StepRun recorded, copied onto the re-run's StepRun.")


class RerunSource(ApiModel):
    """The run a re-run runs again."""

    name: str = Field(min_length=1, max_length=253, description="Name of the source StoryRun.")
    uid: str = Field(min_length=1, max_length=64, description="Its metadata.uid.")


class RerunRecord(ApiModel):
    """What a re-run took from its source: recorded once, never changed."""

    source: RerunSource = Field(description="The run it runs again.")
    reused: int = Field(
        ge=0, description="How many steps it reuses (the Reused column of kubectl get sr -o "
                          "wide). A fan-out step is never reused whole and its reused items "
                          "are not counted: each is a StepRun with reason Reused.")
    steps: dict[str, ReusedStep] | None = Field(
        default=None, max_length=MAX_STEPS,
        description="The steps it reuses, by name, each with the StepRun that executed it and "
                    "its outputs; every other step executes.")


class StoryRunStatus(ApiModel):
    """The observed state of the run, written by the operator. Terminal is final."""

    model_config = ConfigDict(
        json_schema_extra=rules.schema_extra(rules.STORY_RUN_STATUS_RULES))

    phase: RunPhase | None = Field(
        default=None,
        description="Pending, Running, Stopping, then exactly one terminal phase: Succeeded, "
                    "Failed, Canceled or TimedOut. A terminal phase never changes.")
    reason: str | None = _reason("the run's phase (on failure: the first failed step's)")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE,
        description="A sentence for people about the run (on failure: the first failed "
                    "step's message).")
    started_at: Timestamp | None = Field(
        default=None, description="When the run started (RFC 3339).")
    finished_at: Timestamp | None = Field(
        default=None, description="When the run became terminal (RFC 3339).")
    duration: str | None = Field(
        default=None, max_length=64,
        description="How long the run took (or has taken so far), as Go-style text, e.g. "
                    "2m13s.")
    step_states: dict[str, StepState] | None = Field(
        default=None, max_length=MAX_STEPS + MAX_FINALLY,
        description="The state of every step in spec.steps and spec.finally, by step name; "
                    "always present for every step, and kept after the StepRuns are deleted.")
    outcome: Outcome | None = Field(
        default=None,
        description="What the main steps ended as, recorded once when the last of them "
                    "became terminal (before any finally step starts); the API server "
                    "refuses any change to it. The run ends with it unless a finally step "
                    "fails a Succeeded outcome (then Failed, FinallyFailed).")
    stop: StopState | None = Field(
        default=None, description="The course of a stop, once one was requested.")
    conditions: list[Condition] | None = Field(
        default=None, max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Standard conditions, unique by type. Succeeded is Unknown until the run "
                    "is terminal, then True or False with the terminal reason. "
                    "TopologyTerminated=True, set by a transport hub, ends a realtime run.")
    observed_generation: int | None = Field(
        default=None, ge=0,
        description="The metadata.generation of the spec this status reflects.")
    progress: str | None = Field(
        default=None, max_length=16,
        description="Steps ended out of all steps, e.g. 3/5 (the Steps printer column); a run "
                    "whose spec is invalid reads 0/N, none of its steps having begun.")
    story: StoryRecord | None = Field(
        default=None,
        description="A run of a Story: the Story it resolved on its first reconcile. Set "
                    "once; the API server refuses any change to it.")
    resolved: Resolved | None = Field(
        default=None,
        description="A run of a Story or a re-run: the definition it executes (params with "
                    "defaults applied, and the Story's or the source's spec), set once with "
                    "story. Editing or deleting the Story, or the source, never changes it.")
    rerun: RerunRecord | None = Field(
        default=None,
        description="A re-run: its source and the steps it reuses, set once with resolved, "
                    "before any StepRun exists; the API server refuses any change to it.")


class WorkloadRef(ApiModel):
    """The workload that runs a step."""

    kind: str = Field(
        min_length=1, max_length=63,
        description="Kind of the workload: Pod (a batch attempt) or Deployment (realtime).")
    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of the workload, in the StepRun's namespace.")
    observed: bool | None = Field(
        default=None,
        description="True once the operator has seen this workload: missing after that, it "
                    "was deleted (the step is Lost), never a create still to land.")


class StepRunStatus(ApiModel):
    """The observed state of one step's attempts, written by the operator. Terminal is final.
    None yet means the first attempt, Pending: the first write records its workload running,
    or the step's end."""

    model_config = ConfigDict(
        json_schema_extra=rules.schema_extra(rules.STEP_RUN_STATUS_RULES))

    phase: StepPhase | None = Field(
        default=None,
        description="Pending, Running, then exactly one terminal phase: Succeeded, Failed, "
                    "Canceled, TimedOut, Lost or Skipped. A terminal phase never changes; a "
                    "Lost step never becomes Succeeded.")
    reason: str | None = _reason("the step's phase")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE,
        description="A sentence for people about the step (on failure: what went wrong).")
    attempts: int = Field(
        default=0, ge=0, description="How many attempts have been started (default 0).")
    started_at: Timestamp | None = Field(
        default=None, description="When the first attempt started (RFC 3339).")
    finished_at: Timestamp | None = Field(
        default=None, description="When the step became terminal (RFC 3339).")
    heartbeat_at: Timestamp | None = Field(
        default=None,
        description="When the step last showed it was alive (RFC 3339); see "
                    "heartbeatTimeoutSeconds.")
    outputs: dict[str, OutputValue] | None = Field(
        default=None, max_length=MAX_OUTPUTS,
        description="String outputs the step reported (its termination message, a JSON "
                    "object of strings). Immutable once the step is terminal.")
    failure_class: FailureClass | None = Field(
        default=None,
        description="Transient (retried, within retry.limit) or Permanent (fails at once).")
    workload: WorkloadRef | None = Field(
        default=None, description="The pod or Deployment running the current attempt.")
    next_attempt_at: Timestamp | None = Field(
        default=None,
        description="While the step waits to retry (reason RetryBackoff): when its next "
                    "attempt starts, the wait (backoffSeconds * backoffFactor^(n-2) before "
                    "attempt n, at most maxBackoffSeconds) after its last attempt was seen "
                    "failing. From then on: when the current attempt started; its "
                    "timeoutSeconds counts from it. Absent for the first attempt (RFC 3339).")
    reused_from: ReusedFrom | None = Field(
        default=None,
        description="A step a re-run reused (reason Reused, no workload): the StepRun that "
                    "executed it, whose outputs it carries. Immutable once terminal.")
