"""The spec side of the API: Story (a reusable definition), StoryRun (what a user asks for) and
StepRun (one step, as started).

Bounds are deliberate, and each is refused at apply by the API server naming its field:

- the CRD's CEL rules are priced by the API server from `maxItems`, `maxLength` and
  `maxProperties`, so every list, map and string a rule may walk has one;
- a run at every bound at once must still be stored and run: the API server takes at most
  about 1.5 MiB per object (etcd's request limit; a bigger create fails with a server error,
  not a refusal naming a field). Counts per step keep the run's structure small, and
  MAX_RUN_TEXT caps the free text all its steps carry together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from runctl.api import rules
from runctl.api.base import DNS_LABEL, DNS_SUBDOMAIN, ApiModel, Timestamp
from runctl.flow.items import DEFAULT_PARALLELISM, MAX_ITEMS, MAX_RENDERED_ARRAY
from runctl.machine.backoff import MAX_BACKOFF_SECONDS
from runctl.machine.phases import FinallyPolicy, Mode, OnFailure, ShutdownMode

MAX_STEPS = 100
"""The most steps a StoryRun may have."""

MAX_NEEDS = 50
"""The most steps one step may need (a bound the CEL rules on needs are priced by)."""

MAX_RUN_NAME = 63
"""The longest StoryRun name: it is the value of the runctl.dev/storyrun label on every StepRun,
workload and pod of the run, and a label value is at most 63 characters."""

MAX_TEXT = 4096
"""The longest command or args item."""

MAX_COMMAND, MAX_ARGS, MAX_ENV, MAX_POD_METADATA = 16, 64, 32, 32
"""The most command items, args items, env variables, and pod labels (or annotations) of a step."""

MAX_RUN_TEXT = 131072
"""The most characters of free text all the steps of a run carry together: images, command,
args, env names and values, pod label and annotation keys and values (128 KiB)."""

StepName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]
AnnotationValue = Annotated[str, StringConstraints(max_length=16384)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63,
                                              pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
"""A param's or an output's name: a CEL identifier, so `when` can write params.NAME."""

MAX_FINALLY = 20
"""The most finally steps a run may have."""

MAX_FINALLY_TEXT = 32768
"""The most characters of free text its finally steps carry together (counted as MAX_RUN_TEXT)."""

FINALLY_TIMEOUT_SECONDS = 600
"""The finally steps' budget when finallyTimeoutSeconds is not set."""

MAX_PARAMS = 64
"""The most params a Story may declare (and a run may give)."""

# MAX_ITEMS, the most items a run's fan-outs have together, is defined by the layer that checks
# it (runctl.flow.items: flow cannot import the API) and offered here with the other bounds.

MAX_PARALLELISM = 10_000
"""The most steps and items a run's parallelism lets run at once (a run has at most
MAX_ITEMS items)."""

MAX_MATRIX = 16
"""The most dimensions of a fan-out step's matrix."""
MAX_OUTPUTS = 64
"""The most outputs a step may declare (as many as a StepRun may record)."""


class EnvVar(ApiModel):
    """An environment variable set in the step's main container."""

    name: str = Field(
        min_length=1, max_length=253,
        description="Name of the environment variable (at most 253 characters). Unique "
                    "within the step's env.")
    value: str | None = Field(
        default=None, max_length=32768,
        description="Value of the variable (at most 32768 characters). Optional; absent "
                    "means the empty string.")


class RetryPolicy(ApiModel):
    """How often a step is tried again after a Transient failure, and how long it waits first:
    before attempt n (n >= 2), backoffSeconds * backoffFactor^(n-2) seconds, at most
    maxBackoffSeconds."""

    model_config = ConfigDict(json_schema_extra=rules.schema_extra(rules.RETRY_RULES))

    limit: int = Field(
        default=0, ge=0, le=10,
        description="How many times the step is retried after a Transient failure (0 to 10; "
                    "default 0: no retry). Permanent failures are never retried.")
    backoff_seconds: int = Field(
        default=10, ge=0, le=3600,
        description="Seconds to wait before the first retry (0 to 3600; default 10); each "
                    "later wait is the one before times backoffFactor.")
    backoff_factor: int = Field(
        default=1, ge=1, le=10,
        description="What each wait is multiplied by for the next retry: the wait before "
                    "attempt n (n >= 2) is backoffSeconds * backoffFactor^(n-2) seconds, at "
                    "most maxBackoffSeconds (1 to 10; default 1: every wait is "
                    "backoffSeconds).")
    max_backoff_seconds: int | None = Field(
        default=None, ge=0, le=MAX_BACKOFF_SECONDS,
        description=f"The longest wait before a retry, at least backoffSeconds (0 to "
                    f"{MAX_BACKOFF_SECONDS}). Default: none; no wait is ever longer than "
                    f"{MAX_BACKOFF_SECONDS} seconds.")
    transient_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list, max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Exit codes of the main container that classify a failure as Transient "
                    "(so it is retried). Any other non-zero exit code is Permanent. "
                    "Default: none.")

    @model_validator(mode="after")
    def _cap_not_below_the_first_wait(self) -> RetryPolicy:
        """What the CRD's rule refuses (`rules.RETRY_RULES`), refused by the model too."""
        if self.max_backoff_seconds is not None and (
                self.max_backoff_seconds < self.backoff_seconds):
            raise ValueError(f"maxBackoffSeconds ({self.max_backoff_seconds}) must be at least "
                             f"backoffSeconds ({self.backoff_seconds})")
        return self


MAX_NODE_SELECTOR, MAX_TOLERATIONS = 8, 8
"""The most nodeSelector entries and tolerations of a step's pods."""

QualifiedKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""A node label or taint key: a qualified name ([prefix/]name), checked by a CRD rule."""


class Toleration(ApiModel):
    """A taint the step's pods tolerate, as on a Kubernetes pod."""

    model_config = ConfigDict(json_schema_extra=rules.schema_extra(rules.TOLERATION_RULES))

    key: QualifiedKey | None = Field(
        default=None,
        description="The taint key tolerated; empty with operator Exists tolerates every "
                    "taint.")
    operator: Literal["Equal", "Exists"] | None = Field(
        default=None,
        description="Equal (default): the taint's value must equal value. Exists: any value "
                    "(then value must be empty).")
    value: LabelValue | None = Field(
        default=None, description="The taint value tolerated, with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect tolerated; empty means every effect.")
    toleration_seconds: int | None = Field(
        default=None, ge=0,
        description="With effect NoExecute: how long the pod stays bound after the taint "
                    "appears. Default: forever.")


class PodTemplate(ApiModel):
    """Metadata and identity copied onto the pods that run the step."""

    model_config = ConfigDict(json_schema_extra=rules.schema_extra(rules.POD_RULES))

    labels: dict[str, LabelValue] | None = Field(
        default=None, max_length=MAX_POD_METADATA,
        description="Labels added to the step's pods (and a Deployment's pod template). "
                    "runctl's own labels (runctl.dev/*) take precedence. At most "
                    f"{MAX_POD_METADATA}, values at most 63 characters.")
    annotations: dict[str, AnnotationValue] | None = Field(
        default=None, max_length=MAX_POD_METADATA,
        description="Annotations added to the step's pods. On the local control plane the "
                    "sim.runctl.dev/* annotations say how a simulated pod behaves. At most "
                    f"{MAX_POD_METADATA}, values at most 16384 characters.")
    service_account_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="ServiceAccount the step's pods run as (in the run's namespace). "
                    "Default: the namespace's default ServiceAccount.")
    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=MAX_NODE_SELECTOR,
        description="Node labels the step's pods must run on (the pod's nodeSelector). "
                    f"At most {MAX_NODE_SELECTOR}. Default: any node.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=MAX_TOLERATIONS,
        description="Taints the step's pods tolerate (the pod's tolerations). "
                    f"At most {MAX_TOLERATIONS}.")


class OutputSpec(ApiModel):
    """An output a step declares."""

    name: Identifier = Field(
        description="Name of the output: letters, digits and '_', starting with a letter; "
                    "unique in the step.")
    default: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None,
        description="The value the output takes when the step leaves it out. Default: none, "
                    "the output is required.")


class ForEach(ApiModel):
    """A fan-out: the step runs once per item, each item a StepRun of its own.

    No CEL rule can read it: the API server's CEL leaves out a field of any JSON type (items,
    a matrix's values), so exactly one of items and matrix, and a matrix's names, are the
    webhook's checks (`runctl.flow.items`); the schema keeps the bounds it can state."""

    items: Any = Field(
        default=None,
        description="The items: a JSON list (of any values), or a string holding one "
                    "reference ${{ params.NAME }} or ${{ steps.STEP.outputs.NAME }} whose value "
                    "is a JSON array (a param of type array, or a string holding one). The "
                    "step's args, command, env values and pod annotations read ${{ item }} (a "
                    "string as it is, anything else as JSON), ${{ item.FIELD }} and ${{ index }} "
                    "(from 0); its when reads item and index. At run time a value that is not a "
                    "JSON array fails the step ItemsInvalid, too many items TooManyItems, an "
                    "empty list makes it Succeeded with reason NoItems. Exactly one of items "
                    "and matrix.")
    matrix: dict[str, Annotated[list[Any], Field(min_length=1, max_length=MAX_ITEMS)]] | None = (
        Field(default=None, max_length=MAX_MATRIX,
              description="The items as the cartesian product of named lists: each item an "
                          "object {name: value}, read as ${{ item.NAME }}. Dimensions are taken "
                          "in name order, the last varying fastest ({a: [1, 2], b: [x, y]}: "
                          "a=1 b=x, a=1 b=y, a=2 b=x, a=2 b=y). Names are letters, digits and "
                          f"'_', starting with a letter; at most {MAX_MATRIX}, each a non-empty "
                          "list. Exactly one of items and matrix."))
    parallelism: int = Field(
        default=DEFAULT_PARALLELISM, ge=1,
        description="The most items running at once (at least 1; default "
                    f"{DEFAULT_PARALLELISM}). Items start in index order.")


class StepSpec(ApiModel):
    """One step of the DAG: a container image to run once its needs are met."""

    model_config = ConfigDict(json_schema_extra=rules.schema_extra(rules.STEP_RULES))

    name: StepName = Field(
        description="Name of the step: a DNS-1123 label (lower-case letters, digits and '-', "
                    "at most 63 characters), unique within the run. Other steps refer to it "
                    "in their needs.")
    needs: list[StepName] = Field(
        default_factory=list, max_length=MAX_NEEDS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of the steps that must succeed before this one starts (in a "
                    "realtime run: be Running). Each must name another step of the run; "
                    f"together the needs form a DAG (cycles are refused). At most {MAX_NEEDS}. "
                    "Default: none, the step starts at once.")
    image: str = Field(
        min_length=1, max_length=1024,
        description="Container image of the step's main container, e.g. "
                    "ghcr.io/acme/extract:1.2 (at most 1024 characters).")
    command: list[Text] | None = Field(
        default=None, max_length=MAX_COMMAND,
        description="Entrypoint of the main container. Default: the image's ENTRYPOINT. At "
                    f"most {MAX_COMMAND} items of at most {MAX_TEXT} characters.")
    args: list[Text] | None = Field(
        default=None, max_length=MAX_ARGS,
        description="Arguments to the entrypoint. Default: the image's CMD. At most "
                    f"{MAX_ARGS} items of at most {MAX_TEXT} characters.")
    env: list[EnvVar] | None = Field(
        default=None, max_length=MAX_ENV,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Environment variables of the main container, unique by name. At most "
                    f"{MAX_ENV}.")
    timeout_seconds: int | None = Field(
        default=None, ge=1,
        description="Deadline of one attempt, in seconds (at least 1). An attempt running "
                    "longer is stopped and the step ends TimedOut. Default: no per-attempt "
                    "deadline (the run's timeoutSeconds still applies).")
    retry: RetryPolicy | None = Field(
        default=None,
        description="Retry policy for Transient failures. Default: no retry.")
    pod: PodTemplate | None = Field(
        default=None,
        description="Labels, annotations, ServiceAccount, nodeSelector and tolerations for "
                    "the step's pods.")
    heartbeat_timeout_seconds: int | None = Field(
        default=None, ge=1,
        description="If set, a running step that has not heartbeated for this many seconds "
                    "is marked Lost with reason HeartbeatExpired. Default: no heartbeat "
                    "expected.")
    port: int | None = Field(
        default=None, ge=1, le=65535,
        description="TCP port the step serves on (realtime steps): the step gets a Service "
                    "exposing it. Default: no Service.")
    outputs: list[OutputSpec] | None = Field(
        default=None, max_length=MAX_OUTPUTS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Outputs the step declares (batch steps), unique by name: the keys of the "
                    "JSON object it writes as its termination message. When the step succeeds "
                    "a required output missing fails it OutputMissing, a message over 4096 "
                    "bytes or not a JSON object fails it OutputInvalid. Other steps read them "
                    "as ${{ steps.STEP.outputs.NAME }}. Default: none declared (a JSON object "
                    "message still gives outputs, unchecked).")
    when: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="A CEL expression over params (typed as declared) and "
                    "steps.STEP.outputs.NAME (strings) that must be true for the step to run "
                    "(batch steps), e.g. \"params.dryRun == false && "
                    "int(steps.count.outputs.rows) > 0\". Evaluated once the steps it reads "
                    "have succeeded; false skips the step (ConditionFalse) and its dependents "
                    "still run. Checked at apply: syntax, names and a boolean result. In a "
                    "fan-out step it is evaluated per item, with item and index as variables, "
                    "and false skips that item only. Default: the step always runs.")
    for_each: ForEach | None = Field(
        default=None, alias="forEach",
        description="Run the step once per item (batch steps): a literal list, a JSON array "
                    "from a param or an upstream output, or a matrix. Each item is a StepRun "
                    "named <run>-<step>-<index>, labelled runctl.dev/item, with its own "
                    "attempts, retries, timeout and outputs; the step succeeds when every item "
                    "succeeded or was skipped. Readers of its outputs get JSON arrays of the "
                    f"items' values in item order (at most {MAX_RENDERED_ARRAY} bytes each). "
                    f"A run has at most {MAX_ITEMS} items in all. Default: the step runs once.")


class ShutdownSpec(ApiModel):
    """The stop contract."""

    grace_period_seconds: int = Field(
        default=30, ge=0, le=86400,
        description="The longest a stop waits for running work to end before forcing it, in "
                    "seconds (0 to 86400; default 30). Immutable.")
    mode: ShutdownMode | None = Field(
        default=None,
        description="How a stop treats running main steps. Cancel (default): they are "
                    "stopped at once. Drain: they may finish within gracePeriodSeconds, then "
                    "are stopped (GracePeriodExpired); nothing new starts in either mode. May "
                    "change until the run is terminal.")
    finally_: FinallyPolicy | None = Field(
        default=None, alias="finally",
        description="Whether finally steps run after a stop. Run (default): they do. Skip: "
                    "none starts and running ones are stopped. May change until the run is "
                    "terminal (set it in the patch that sets cancelRequested).")


class LifecycleSpec(ApiModel):
    """Transport lifecycle timings of a realtime run."""

    drain_timeout_seconds: int | None = Field(
        default=None, ge=0, le=86400,
        description="Seconds the transport may take to drain during a realtime cut-over. It "
                    "never delays a stop (shutdown.gracePeriodSeconds bounds that).")


class TransportSpec(ApiModel):
    """Settings of the realtime transport between steps."""

    lifecycle: LifecycleSpec | None = Field(
        default=None, description="Lifecycle timings of the transport.")


_STEPS_DESCRIPTION = (f"The steps, 1 to {MAX_STEPS}, unique by name; their needs (and the "
                      "outputs they read) form a DAG. Together their images, command, args, env "
                      "names and values, pod label, annotation and nodeSelector keys and values "
                      f"and toleration keys and values are at most {MAX_RUN_TEXT} characters.")


_FINALLY_DESCRIPTION = (
    f"Steps that run once every step of steps is terminal, whatever the outcome (at most "
    f"{MAX_FINALLY}; the same schema as steps, names unique across both lists). They may need "
    "each other, never a step of steps, and may read run.outcome, run.reason, run.failures and "
    "steps.STEP.phase in references and when. A failed finally step turns a run that would "
    f"have Succeeded into Failed (FinallyFailed). Their text is at most {MAX_FINALLY_TEXT} "
    "characters together. Default: none.")


def _finally() -> Any:
    extra = rules.schema_extra([*rules.FINALLY_RULES, rules.run_text_rule(
        MAX_FINALLY_TEXT, "spec.finally")], **{"x-kubernetes-list-type": "map",
                                               "x-kubernetes-list-map-keys": ["name"]})
    return Field(default=None, alias="finally", max_length=MAX_FINALLY,
                 json_schema_extra=extra, description=_FINALLY_DESCRIPTION)


def _steps(required: bool) -> Any:
    extra = rules.schema_extra([*rules.STEPS_RULES, rules.run_text_rule(MAX_RUN_TEXT)],
                               **{"x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["name"]})
    if required:
        return Field(min_length=1, max_length=MAX_STEPS, json_schema_extra=extra,
                     description=_STEPS_DESCRIPTION)
    return Field(default=None, min_length=1, max_length=MAX_STEPS, json_schema_extra=extra,
                 description=_STEPS_DESCRIPTION + " Exactly one of steps and storyRef.")


class RunShape(ApiModel):
    """The fields that shape a run, shared by a StoryRun's spec and a Story's."""

    mode: Mode = Field(
        default=Mode.BATCH,
        description="batch (default): every step runs to completion, each attempt as a "
                    "pod. realtime: steps are long-lived Deployments forming a live "
                    "topology; a step starts once the steps it needs are Running.")
    on_failure: OnFailure = Field(
        default=OnFailure.STOP,
        description="stop (default): fail fast, pending steps are not started and running "
                    "ones are stopped. continue: steps that do not need the failed step keep "
                    "going; those that need it are Skipped.")
    timeout_seconds: int | None = Field(
        default=None, ge=1,
        description="Deadline of the main steps in seconds from the run's start (at least 1). "
                    "When it passes they are stopped and the run's outcome is TimedOut; "
                    "finally steps still run, on their own budget. Default: none.")
    finally_timeout_seconds: int | None = Field(
        default=None, ge=1, le=86400,
        description="Deadline of the finally steps in seconds from when they start (1 to "
                    f"86400; default {FINALLY_TIMEOUT_SECONDS}). A main timeout never eats it.")
    shutdown: ShutdownSpec = Field(
        default_factory=ShutdownSpec,
        json_schema_extra={"default": {}},
        description="The stop contract: how long a stop waits for running work, whether "
                    "running steps are stopped or drained, whether finally steps run.")
    transport: TransportSpec | None = Field(
        default=None,
        description="Realtime transport settings; they never delay a stop.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0,
        description="Seconds after the run becomes terminal (whatever its outcome) when its "
                    "StepRuns and workloads are deleted; the StoryRun itself is kept. "
                    "Default: they are kept.")
    parallelism: int | None = Field(
        default=None, ge=1, le=MAX_PARALLELISM,
        description="The most of the run's steps running at once, each item of a fan-out "
                    f"step counting as a step (1 to {MAX_PARALLELISM}; batch runs only). A step "
                    "or item holds a slot from when its StepRun is made until it is terminal, "
                    "retry backoffs included; finally steps share the bound; reused steps and "
                    "items take none. Ready steps take free slots in DAG order (items in index "
                    "order, at their step's place); one that finds none stays Pending with "
                    "reason RunParallelism. A fan-out's forEach.parallelism holds as well. A "
                    "run of a Story (or a re-run) may set its own, over the definition's. "
                    "Default: no bound.")


class ParamSpec(ApiModel):
    """A param a Story declares: what a run of it may (or must) set in spec.params."""

    name: Identifier = Field(
        description="Name of the param: letters, digits and '_', starting with a letter; "
                    "unique in the Story. Steps read it as ${{ params.NAME }}, conditions as "
                    "params.NAME.")
    type: Literal["string", "number", "boolean", "array", "object"] = Field(
        default="string",
        description="Type of its value: string (default), number (integers and decimals), "
                    "boolean, array or object.")
    default: Any = Field(
        default=None,
        description="Its value when a run does not set it, of its type. Default: none, the "
                    "param is required.")
    enum: list[Any] | None = Field(
        default=None, min_length=1, max_length=64,
        description="The values it may take, each of its type. Default: any value of its "
                    "type.")
    description: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="What the param is for, for people.")


class StorySpec(RunShape):
    """A reusable run definition: typed params and the steps a run of it executes."""

    model_config = ConfigDict(json_schema_extra=rules.schema_extra(
        [rules.BOTH_LISTS, rules.REALTIME_PARALLELISM]))

    params: list[ParamSpec] | None = Field(
        default=None, max_length=MAX_PARAMS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description=f"The params a run sets (at most {MAX_PARAMS}), unique by name. Default: "
                    "none.")
    steps: list[StepSpec] = _steps(required=True)
    finally_: list[StepSpec] | None = _finally()


class StoryRef(ApiModel):
    """The Story a run executes."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of a Story in the run's namespace.")


class RerunOf(ApiModel):
    """The run a re-run runs again (its source)."""

    name: str = Field(
        min_length=1, max_length=MAX_RUN_NAME, pattern=DNS_SUBDOMAIN,
        description="Name of a terminal StoryRun in the run's namespace. The re-run executes "
                    "its recorded definition, reuses what succeeded there and never writes it.")
    namespace: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=DNS_LABEL,
        description="The source's namespace: if set, it must be the run's own (a run re-runs "
                    "only runs of its namespace). Default: the run's namespace.")


class RerunSpec(ApiModel):
    """What a re-run executes again beyond what the reuse rule already does."""

    from_: list[StepName] | None = Field(
        default=None, alias="from", max_length=MAX_STEPS + MAX_FINALLY,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Steps of the source to execute again, with every step downstream of "
                    "them, even where they succeeded with the same inputs. Each must be a step "
                    "of the source's definition. Default: none (only what did not succeed, or "
                    "whose inputs changed, executes again).")


class StoryRunSpec(RunShape):
    """What the run executes and how. Immutable after creation, except cancelRequested and,
    until the run is terminal, suspend, shutdown.mode and shutdown.finally."""

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: _spec_rules(schema, cls))

    cancel_requested: bool = Field(
        default=False,
        description="Set to true to stop the run: pending steps are canceled, running ones "
                    "are stopped (shutdown.mode Cancel) or left to finish (Drain) within "
                    "shutdown.gracePeriodSeconds; finally steps then run unless "
                    "shutdown.finally is Skip. It can only go from false to true, never back. "
                    "Default false.")
    suspend: bool = Field(
        default=False,
        description="Set to true to suspend the run: nothing new starts (no step, no item of a "
                    "fan-out step, no next attempt of a retry, no finally step) until it is "
                    "false again; what runs goes on and its end is recorded. The run's "
                    "timeoutSeconds and the finally steps' deadline keep counting. A stop "
                    "(cancelRequested) lifts it. May change until the run is terminal. "
                    "Default false.")
    steps: list[StepSpec] | None = _steps(required=False)
    finally_: list[StepSpec] | None = _finally()
    story_ref: StoryRef | None = Field(
        default=None,
        description="Run this Story instead of inline steps: its definition (with params "
                    "applied) is recorded in status.resolved on the first reconcile and the "
                    "run executes only that record. Exactly one of steps and storyRef.")
    params: dict[str, Any] | None = Field(
        default=None, max_length=MAX_PARAMS,
        description="Values of the Story's params, by name (only with storyRef or rerunOf; a "
                    "re-run's change the source's values of those it names). Checked against "
                    "the Story's declarations: unknown, missing required, mistyped or outside "
                    "enum is refused.")
    rerun_of: RerunOf | None = Field(
        default=None,
        description="Run this terminal StoryRun again instead of inline steps or a Story: its "
                    "recorded definition executes, what succeeded there with the same inputs "
                    "is reused (not executed), the rest executes again. Exactly one of steps, "
                    "storyRef and rerunOf.")
    rerun: RerunSpec | None = Field(
        default=None,
        description="Only with rerunOf: steps to execute again whatever the reuse rule says.")


class StepRunItem(ApiModel):
    """Which item of a fan-out step a StepRun runs."""

    index: int = Field(ge=0, le=MAX_ITEMS - 1, description="The item's index, from 0.")
    value: Any = Field(
        default=None,
        description="The item, as its references and condition read it (any JSON value).")


class StepRunSpec(StepSpec):
    """The step's definition as it was when the StepRun was created, plus where it belongs.

    Created by the operator; immutable.
    """

    model_config = ConfigDict(
        json_schema_extra=rules.schema_extra([*rules.STEP_RULES, *rules.STEP_RUN_SPEC_RULES]))

    story_run: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of the StoryRun this StepRun belongs to (in the same namespace).")
    step: StepName = Field(description="Name of the step in the StoryRun's spec.steps.")
    mode: Mode = Field(
        default=Mode.BATCH,
        description="The run's mode: batch (a pod per attempt) or realtime (a Deployment). "
                    "Default batch.")
    deadline: Timestamp | None = Field(
        default=None,
        description="Absolute time (RFC 3339) by which the step must be done: the earlier of "
                    "the run's deadline and this attempt's timeout. Default: none.")
    inputs_digest: str | None = Field(
        default=None, max_length=71, pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256: of what the step's workload is made from, as canonical JSON: "
                    "image, command, args, env and pod with references rendered, the "
                    "condition with the values it reads, and for an item its index and value. "
                    "A re-run reuses the step (or the item of the same index) only where its "
                    "own digest is equal; a StepRun without one is never reused.")
    item: StepRunItem | None = Field(
        default=None,
        description="For an item of a fan-out step: its index and value (the StepRun is "
                    "named <run>-<step>-<index>). Default: the step is not a fan-out.")


def _spec_rules(schema: dict[str, Any], cls: type[ApiModel]) -> None:
    """StoryRun spec rules: exactly one of steps and storyRef; every field but cancelRequested,
    suspend and shutdown's mode and finally is immutable."""
    fields = [f.alias or name for name, f in cls.model_fields.items()
              if name not in ("cancel_requested", "suspend", "shutdown")]
    fields.insert(fields.index("transport"), "shutdown.gracePeriodSeconds")
    defaults = {"mode": f"'{Mode.BATCH.value}'", "onFailure": f"'{OnFailure.STOP.value}'",
                "shutdown.gracePeriodSeconds": str(ShutdownSpec().grace_period_seconds)}
    schema.update(rules.schema_extra([*rules.story_run_spec_rules(fields, defaults),
                                      rules.BOTH_LISTS, rules.REALTIME_PARALLELISM]))
