"""The CEL validation rules the API server enforces for every writer (x-kubernetes-validations).

Three families:

- spec shape: step names unique (a list-map keyed by name, stated in the schema), `needs` naming
  existing steps, no step needing itself;
- spec immutability: a StoryRun's spec is fixed at creation except `cancelRequested`, which may
  only go from false to true; a StepRun's spec is fixed; a run's record of the Story it
  executes (`status.story`, `status.resolved`) is fixed once written;
- terminal is final: once a status phase is terminal it can only be followed by itself, and its
  reason, message, finishedAt (and a StepRun's outputs) keep their values; a terminal
  `stepStates` entry never changes or disappears. Writing the same terminal values again passes.

Each rule is a plain dict in the CRD's shape. Rules are built from the phase enums, so adding a
phase changes the CRD (and the drift test says to regenerate it). Costs stay inside the API
server's budget because every list, map and string they walk is bounded in the models.

A cycle through several steps is not stated here: a bounded transitive closure over 100 steps is
far over the per-rule cost limit. The admission webhook and the reconcile path refuse cycles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, cast

from pydantic.config import JsonDict

from runctl.machine import dag
from runctl.machine.phases import RUN_TERMINAL, STEP_TERMINAL, RunPhase, StepPhase

Rule = dict[str, Any]


def schema_extra(rules: Iterable[Rule], **extra: Any) -> JsonDict:
    """`json_schema_extra` for a model or field: these rules (and other schema keywords)."""
    return cast(JsonDict, {**extra, "x-kubernetes-validations": [dict(r) for r in rules]})


# -- CEL text helpers ------------------------------------------------------------------------


def cel_list(values: Iterable[str]) -> str:
    """A CEL list literal of strings: ['a', 'b']."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _ordered(phases: Iterable[StrEnum], order: Iterable[StrEnum]) -> list[str]:
    chosen = set(phases)
    return [p.value for p in order if p in chosen]


RUN_TERMINAL_CEL = cel_list(_ordered(RUN_TERMINAL, RunPhase))
STEP_TERMINAL_CEL = cel_list(_ordered(STEP_TERMINAL, StepPhase))


def same(field: str, new: str = "self", old: str = "oldSelf") -> str:
    """`field` is absent from both, or present in both with equal values."""
    return (f"(has({new}.{field}) ? has({old}.{field}) && {new}.{field} == {old}.{field}"
            f" : !has({old}.{field}))")


def changed_text(fields: Iterable[str], new: str = "self", old: str = "oldSelf",
                 prefix: str = "") -> str:
    """A CEL string naming, space-separated, the `fields` whose values differ.

    Built from string literals (not by joining a computed list) because the API server prices
    `join()` over a computed list as unbounded.
    """
    return "(" + " + ".join(f"({same(f, new, old)} ? '' : ' {prefix}{f}')" for f in fields) + ")"


def first_of(names: str) -> str:
    """The first of a CEL list of names, and whether there are more.

    (Not how many: `string(int)` is priced as unbounded text.)
    """
    return f"{names}[0] + ({names}.size() > 1 ? ' (and more)' : '')"


def _rule(rule: str, message: str, *, message_expression: str | None = None,
          field_path: str | None = None, reason: str | None = None) -> Rule:
    out: Rule = {"rule": rule, "message": message}
    if message_expression:
        out["messageExpression"] = message_expression
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


# -- transition graphs -----------------------------------------------------------------------


def _graph(phases: type[StrEnum], terminal: Iterable[StrEnum],
           extra: Mapping[StrEnum, Iterable[StrEnum]]) -> dict[str, list[str]]:
    """Allowed next phases for each phase whose successors are restricted (others: any)."""
    graph = {p.value: [p.value] for p in phases if p in set(terminal)}
    for source, targets in extra.items():
        graph[source.value] = _ordered(targets, phases)
    return dict(sorted(graph.items(), key=lambda kv: list(phases).index(phases(kv[0]))))


RUN_TRANSITIONS: dict[str, list[str]] = _graph(RunPhase, RUN_TERMINAL, {
    # A run that started never goes back to Pending; a stop is never withdrawn.
    RunPhase.RUNNING: [p for p in RunPhase if p is not RunPhase.PENDING],
    RunPhase.STOPPING: [RunPhase.STOPPING, *RUN_TERMINAL],
})
"""A StoryRun's phase graph as far as the API server enforces it: Pending may go anywhere;
Running anywhere but back to Pending; Stopping only to a terminal phase; a terminal phase only
to itself."""

STEP_TRANSITIONS: dict[str, list[str]] = _graph(StepPhase, STEP_TERMINAL, {})
"""A step's phase graph as far as the API server enforces it: a terminal phase only to itself.
The core's own graph is stricter (`runctl.machine.transitions.STEP_TRANSITIONS`): a step never
goes back from Running to Pending, not even while it waits to retry (a retry backoff is
Running)."""


def _cel_map(graph: Mapping[str, list[str]]) -> str:
    return "{" + ", ".join(f"'{k}': {cel_list(v)}" for k, v in graph.items()) + "}"


def phase_transition(kind: str, graph: Mapping[str, list[str]], terminal: str) -> Rule:
    """status.phase follows `graph`; once written it is never removed."""
    table = _cel_map(graph)
    return _rule(
        f"!has(oldSelf.phase) || (has(self.phase) && "
        f"(!(oldSelf.phase in {table}) || self.phase in {table}[oldSelf.phase]))",
        f"status.phase of a {kind} cannot make this transition: a terminal phase is final",
        message_expression=(
            f"'status.phase of a {kind} cannot go from ' + oldSelf.phase + ' to ' + "
            f"(has(self.phase) ? self.phase : 'nothing') + "
            f"(oldSelf.phase in {terminal} ? ': ' + oldSelf.phase + ' is terminal and final'"
            f" : ': ' + oldSelf.phase + ' cannot be followed by ' + "
            f"(has(self.phase) ? self.phase : 'nothing'))"),
        field_path=".phase", reason="FieldValueForbidden")


def terminal_fields(kind: str, terminal: str, fields: list[str]) -> Rule:
    """Once status.phase is terminal, `fields` keep their values (absent stays absent)."""
    listed = ", ".join(["phase", *fields[:-1]]) + f" and {fields[-1]}"
    return _rule(
        f"!has(oldSelf.phase) || !(oldSelf.phase in {terminal}) || "
        + " && ".join(same(f) for f in fields),
        f"status of a terminal {kind} is final: {listed} are immutable",
        message_expression=(
            f"'status is terminal (' + oldSelf.phase + '): {listed} of a {kind} are "
            f"immutable; this write changes' + {changed_text(fields)}"),
        reason="FieldValueForbidden")


def _step_state_changed(k: str) -> str:
    return (f"(oldSelf.stepStates[{k}].phase in {STEP_TERMINAL_CEL} && "
            f"!(has(self.stepStates) && {k} in self.stepStates && "
            f"self.stepStates[{k}] == oldSelf.stepStates[{k}]))")


_CHANGED_STEPS = f"oldSelf.stepStates.filter(k, {_step_state_changed('k')})"

TERMINAL_STEP_STATES = _rule(
    f"!has(oldSelf.stepStates) || !oldSelf.stepStates.exists(k, {_step_state_changed('k')})",
    "status.stepStates: a terminal step state is final; it cannot change or be removed",
    message_expression=(
        "'status.stepStates: a terminal step state is final; it cannot change or be removed; "
        f"this write changes ' + {first_of(_CHANGED_STEPS)}"),
    field_path=".stepStates", reason="FieldValueForbidden")


# -- rules by schema node --------------------------------------------------------------------

STEP_RULES: list[Rule] = [
    _rule("!has(self.needs) || !(self.name in self.needs)",
          "needs: a step cannot need itself",
          message_expression="'needs: step ' + self.name + ' cannot need itself'",
          field_path=".needs"),
]
"""On each step (StoryRun spec.steps[*] and StepRun spec)."""

_BAD_KEY = "format.qualifiedName().validate(k).hasValue()"

POD_RULES: list[Rule] = [
    _rule(f"!has(self.labels) || !self.labels.exists(k, {_BAD_KEY} || "
          "format.labelValue().validate(self.labels[k]).hasValue())",
          "pod.labels: every key must be a qualified name ([prefix/]name) and every value a "
          "label value, as Kubernetes requires of pod labels",
          message_expression=(
              "'pod.labels: every key must be a qualified name ([prefix/]name) and every value "
              "a label value, as Kubernetes requires of pod labels; not so: ' + "
              f"self.labels.filter(k, {_BAD_KEY} || "
              "format.labelValue().validate(self.labels[k]).hasValue())[0]"),
          field_path=".labels", reason="FieldValueInvalid"),
    _rule(f"!has(self.annotations) || !self.annotations.exists(k, {_BAD_KEY})",
          "pod.annotations: every key must be a qualified name ([prefix/]name), as Kubernetes "
          "requires of pod annotations",
          message_expression=(
              "'pod.annotations: every key must be a qualified name ([prefix/]name), as "
              "Kubernetes requires of pod annotations; not so: ' + "
              f"self.annotations.filter(k, {_BAD_KEY})[0]"),
          field_path=".annotations", reason="FieldValueInvalid"),
    _rule(f"!has(self.nodeSelector) || !self.nodeSelector.exists(k, {_BAD_KEY} || "
          "format.labelValue().validate(self.nodeSelector[k]).hasValue())",
          "pod.nodeSelector: every key must be a qualified name ([prefix/]name) and every value "
          "a label value, as Kubernetes requires of node labels",
          message_expression=(
              "'pod.nodeSelector: every key must be a qualified name ([prefix/]name) and every "
              "value a label value, as Kubernetes requires of node labels; not so: ' + "
              f"self.nodeSelector.filter(k, {_BAD_KEY} || "
              "format.labelValue().validate(self.nodeSelector[k]).hasValue())[0]"),
          field_path=".nodeSelector", reason="FieldValueInvalid"),
]
"""On a step's pod: keys and values its pod or Deployment would be refused for are refused at
apply instead (a run whose workload can never be created would wait for its deadline)."""

TOLERATION_RULES: list[Rule] = [
    _rule("!has(self.key) || !format.qualifiedName().validate(self.key).hasValue()",
          "pod.tolerations[].key: must be a qualified name ([prefix/]name)",
          field_path=".key", reason="FieldValueInvalid"),
    _rule("!has(self.value) || !format.labelValue().validate(self.value).hasValue()",
          "pod.tolerations[].value: must be a label value", field_path=".value",
          reason="FieldValueInvalid"),
    _rule("!(has(self.operator) && self.operator == 'Exists' && has(self.value) && "
          "self.value != '')",
          "pod.tolerations[].value: must be empty when operator is Exists",
          field_path=".value", reason="FieldValueInvalid"),
    _rule("has(self.key) && self.key != '' || has(self.operator) && self.operator == 'Exists'",
          "pod.tolerations[].operator: must be Exists when key is empty",
          field_path=".operator", reason="FieldValueInvalid"),
    _rule("!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
          "pod.tolerations[].tolerationSeconds: only with effect NoExecute",
          field_path=".tolerationSeconds", reason="FieldValueInvalid"),
]
"""On each of a step's pod tolerations: what Kubernetes would refuse on the pod, refused at
apply."""

RETRY_RULES: list[Rule] = [
    _rule("!has(self.maxBackoffSeconds) || !has(self.backoffSeconds) || "
          "self.maxBackoffSeconds >= self.backoffSeconds",
          "maxBackoffSeconds must be at least backoffSeconds (default 10): a cap below the "
          "first wait would leave backoffSeconds no effect",
          field_path=".maxBackoffSeconds", reason="FieldValueInvalid"),
]
"""On a step's retry policy: a cap below the first wait is refused rather than applied, so a
policy says what it does. The API server defaults backoffSeconds before it checks this."""

_NAMES = "self.map(t, t.name)"
_UNKNOWN = f"has(s.needs) && !sets.contains({_NAMES}, s.needs)"
_UNKNOWN_STEPS = (f"self.map(s, {_UNKNOWN}, 'step ' + s.name + ' needs ' + "
                  f"s.needs.filter(n, !(n in {_NAMES}))[0])")
_NEEDS_BACK = "t.name != s.name && t.name in s.needs && has(t.needs) && s.name in t.needs"
_MUTUAL = f"has(s.needs) && self.exists(t, {_NEEDS_BACK})"
_MUTUAL_STEPS = (f"self.map(s, {_MUTUAL}, s.name + ' needs ' + "
                 f"self.map(t, {_NEEDS_BACK}, t.name)[0] + ' which needs ' + s.name)")

def steps_rules(field: str = "spec.steps", what: str = "steps of this run",
                one: str = "a step of this run") -> list[Rule]:
    """On a list of steps (`field`): needs name `what` (the list's own steps) and no two of
    them need each other. Uniqueness by name is the list-map's own check; a cycle of two steps
    is cheap to state, longer ones are left to the admission webhook."""
    return [
        _rule(f"!self.exists(s, {_UNKNOWN})",
              f"{field}: needs must name {what}",
              message_expression=(
                  f"'{field}: needs must name {what}, but ' + "
                  f"{_UNKNOWN_STEPS}[0] + ', which is not {one}'"),
              reason="FieldValueInvalid"),
        _rule(f"!self.exists(s, {_MUTUAL})",
              f"{field}: needs must form a DAG; two steps need each other",
              message_expression=(
                  f"'{field}: needs must form a DAG, but step ' + "
                  f"{_MUTUAL_STEPS}[0] + ' (a cycle)'"),
              reason="FieldValueInvalid"),
    ]


STEPS_RULES = steps_rules()
"""On StoryRun spec.steps."""

FINALLY_RULES = steps_rules("spec.finally", "finally steps (never a step of spec.steps)",
                            "a finally step")
"""On spec.finally: a finally step needs only finally steps."""

BOTH_LISTS = _rule(
    "!has(self.finally) || !has(self.steps) || "
    "!self.finally.exists(f, self.steps.exists(s, s.name == f.name))",
    "spec.finally: a step name is unique across steps and finally",
    field_path=".finally", reason="FieldValueInvalid")
"""On a spec with both lists (a StoryRun's or a Story's). No messageExpression naming the step:
the API server prices one over both lists far past its budget (the webhook names it)."""


REALTIME_PARALLELISM = _rule(
    "!has(self.parallelism) || !has(self.mode) || self.mode != 'realtime'",
    f"spec.parallelism: {dag.REALTIME_PARALLELISM}",
    field_path=".parallelism", reason="FieldValueForbidden")
"""On a StoryRun's and a Story's spec: no parallelism in a realtime run. A run of a Story (or a
re-run) whose definition is realtime cannot be seen here: the webhook refuses it."""


def _text(has: str, expr: str) -> str:
    return f"({has} ? {expr} : 0)"


_STEP_TEXT = " + ".join([
    "s.image.size()",
    _text("has(s.command)", "s.command.map(c, c.size()).sum()"),
    _text("has(s.args)", "s.args.map(a, a.size()).sum()"),
    _text("has(s.env)",
          "s.env.map(e, e.name.size() + (has(e.value) ? e.value.size() : 0)).sum()"),
    _text("has(s.pod) && has(s.pod.labels)",
          "s.pod.labels.map(k, k.size() + s.pod.labels[k].size()).sum()"),
    _text("has(s.pod) && has(s.pod.annotations)",
          "s.pod.annotations.map(k, k.size() + s.pod.annotations[k].size()).sum()"),
    _text("has(s.pod) && has(s.pod.nodeSelector)",
          "s.pod.nodeSelector.map(k, k.size() + s.pod.nodeSelector[k].size()).sum()"),
    _text("has(s.pod) && has(s.pod.tolerations)",
          "s.pod.tolerations.map(t, (has(t.key) ? t.key.size() : 0) + "
          "(has(t.value) ? t.value.size() : 0)).sum()"),
])


def run_text_rule(limit: int, field: str = "spec.steps") -> Rule:
    """On a StoryRun's list of steps (`field`): the free text of all its steps together is at
    most `limit` characters, so a run at every other bound at once still fits in one stored
    object."""
    return _rule(
        f"self.map(s, {_STEP_TEXT}).sum() <= {limit}",
        f"{field}: together the steps' images, command, args, env and pod labels, "
        f"annotations, nodeSelector and tolerations are at most {limit} characters",
        reason="FieldValueInvalid")


STORY_REF_ONLY = ("timeoutSeconds", "finallyTimeoutSeconds", "transport",
                  "ttlSecondsAfterFinished", "finally")
"""Run-shaping fields with no default that a run of a Story (or a re-run) cannot set: its
shape is the Story's (the source's)."""

_DEFINED = "[has(self.steps), has(self.storyRef), has(self.rerunOf)].filter(x, x).size()"


def story_run_spec_rules(fields: list[str], defaults: Mapping[str, str]) -> list[Rule]:
    """On StoryRun spec: exactly one of steps, storyRef and rerunOf, params only with storyRef
    or rerunOf, rerun only with rerunOf, no run-shaping field beside storyRef or rerunOf (those
    the API server defaults, `defaults` as CEL literals by path, must keep their defaults);
    `fields` (every spec field but cancelRequested, and suspend and shutdown's mode and
    finally, which the root rules `UNTIL_TERMINAL` let change until the run is terminal) are
    immutable."""
    beside = " || ".join(f"has(self.{f})" for f in STORY_REF_ONLY)
    kept = " && ".join(f"self.{path} == {value}" for path, value in defaults.items())
    return [
        _rule(f"{_DEFINED} == 1",
              "spec: exactly one of steps, storyRef and rerunOf",
              message_expression=(f"{_DEFINED} > 1 ? 'spec: exactly one of steps, storyRef "
                                  "and rerunOf, not more' : 'spec: exactly one of steps, "
                                  "storyRef and rerunOf; none is set'"),
              reason="FieldValueInvalid"),
        _rule("!has(self.params) || has(self.storyRef) || has(self.rerunOf)",
              "spec.params: params are only for a run of a Story (storyRef) or a re-run "
              "(rerunOf)",
              field_path=".params", reason="FieldValueForbidden"),
        _rule("!has(self.rerun) || has(self.rerunOf)",
              "spec.rerun: only for a re-run (rerunOf)",
              field_path=".rerun", reason="FieldValueForbidden"),
        _rule(f"!(has(self.storyRef) || has(self.rerunOf)) || (!({beside}) && {kept})",
              "spec: a run of a Story (or a re-run) takes its shape from the Story (the "
              f"source): {', '.join([*STORY_REF_ONLY, *defaults])} cannot be set beside "
              "storyRef or rerunOf",
              reason="FieldValueForbidden"),
        _rule(" && ".join(same(f) for f in fields),
              "spec is immutable after creation, except cancelRequested (false to true), "
              "suspend, shutdown.mode and shutdown.finally",
              message_expression=(
                  "'spec is immutable after creation, except cancelRequested (false to true), "
                  "suspend, shutdown.mode and shutdown.finally; "
                  f"this update changes' + {changed_text(fields, prefix='spec.')}"),
              reason="FieldValueForbidden"),
        _rule("!has(oldSelf.cancelRequested) || !oldSelf.cancelRequested || "
              "(has(self.cancelRequested) && self.cancelRequested)",
              "spec.cancelRequested cannot go back to false: a requested stop cannot be "
              "withdrawn",
              field_path=".cancelRequested", reason="FieldValueForbidden"),
    ]


STEP_RUN_SPEC_RULES: list[Rule] = [
    _rule("self == oldSelf",
          "spec is immutable: a StepRun records its step as it was when it was created",
          reason="FieldValueForbidden"),
]

def _recorded(field: str, what: str = "the run's record of what it executes") -> Rule:
    return _rule(f"!has(oldSelf.{field}) || (has(self.{field}) && self.{field} == "
                 f"oldSelf.{field})",
                 f"status.{field} is {what}: once set it never changes",
                 field_path=f".{field}", reason="FieldValueForbidden")


STORY_RUN_STATUS_RULES: list[Rule] = [
    phase_transition("StoryRun", RUN_TRANSITIONS, RUN_TERMINAL_CEL),
    _recorded("story"),
    _recorded("resolved"),
    _recorded("rerun"),
    _recorded("outcome", "what the main steps ended as"),
    terminal_fields("StoryRun", RUN_TERMINAL_CEL, ["reason", "message", "finishedAt"]),
    TERMINAL_STEP_STATES,
]

STEP_RUN_STATUS_RULES: list[Rule] = [
    phase_transition("StepRun", STEP_TRANSITIONS, STEP_TERMINAL_CEL),
    terminal_fields("StepRun", STEP_TERMINAL_CEL,
                    ["reason", "message", "outputs", "finishedAt", "reusedFrom"]),
]

STATUS_KEPT = _rule("!has(oldSelf.status) || has(self.status)",
                    "status cannot be removed once written", field_path=".status",
                    reason="FieldValueForbidden")
"""On both roots: a status subresource write cannot drop the whole status (and with it a
terminal phase)."""

_MISSING_STEP = (f"!(has(self.status.stepStates) && s.name in self.status.stepStates && "
                 f"self.status.stepStates[s.name].phase in {STEP_TERMINAL_CEL})")

def name_rule(kind: str, limit: int, why: str) -> Rule:
    """On a root: metadata.name is at most `limit` characters."""
    return _rule(f"self.metadata.name.size() <= {limit}",
                 f"metadata.name: a {kind} name is at most {limit} characters ({why})",
                 reason="FieldValueInvalid")



def _terminal_entries(steps: str) -> Rule:
    return _rule(
        f"!has(self.status) || !has(self.status.phase) || "
        f"!(self.status.phase in {RUN_TERMINAL_CEL}) || "
        f"!has(self.{steps}) || !self.{steps}.exists(s, {_MISSING_STEP})",
        f"status: a terminal StoryRun needs a terminal status.stepStates entry for every "
        f"step of {steps}",
        message_expression=(
            "'status: a terminal StoryRun (' + self.status.phase + ') needs a terminal "
            f"status.stepStates entry for every step of {steps}; missing or not "
            "terminal: ' + "
            + first_of(f"self.{steps}.map(s, {_MISSING_STEP}, s.name)")),
        field_path=".status.stepStates")


_TERMINAL_BEFORE = (f"has(oldSelf.status) && has(oldSelf.status.phase) && "
                    f"oldSelf.status.phase in {RUN_TERMINAL_CEL}")

UNTIL_TERMINAL: list[Rule] = [_rule(
    f"!({_TERMINAL_BEFORE}) || {same(f'spec.{field}')}",
    f"spec.{field} cannot change once the run is terminal",
    field_path=f".spec.{field}", reason="FieldValueForbidden") for field in ("shutdown", "suspend")]
"""On the root (they read the status): suspend, shutdown.mode and shutdown.finally may change
until the run is terminal (the spec rule keeps gracePeriodSeconds and the rest immutable
throughout)."""

STORY_RUN_ROOT_RULES: list[Rule] = [
    STATUS_KEPT,
    _terminal_entries("spec.steps"),
    _terminal_entries("spec.finally"),
    *UNTIL_TERMINAL,
]

STEP_RUN_ROOT_RULES: list[Rule] = [STATUS_KEPT]


def when_written(rule: Rule) -> Rule:
    """A shape rule checked only where its value is new (a create, or a list item or field
    written for the first time), not on every later write of the object.

    The API server evaluates every rule of the schema on every write, the status subresource's
    included: a run's spec rules would be priced again at each status update although a spec
    cannot change (its own immutability rule, which does read oldSelf, refuses any change). A
    rule that reads oldSelf already is a transition rule and stays as it is."""
    if "oldSelf" in rule["rule"]:
        return dict(rule)
    return {**rule, "rule": f"oldSelf.hasValue() || ({rule['rule']})", "optionalOldSelf": True}
