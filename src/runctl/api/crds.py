"""The StoryRun, StepRun and Story CustomResourceDefinitions, generated from the pydantic models.

pydantic's JSON Schema is close to what the API server wants but not the same: a structural
schema has no `$ref`, no `anyOf` for optional fields, no `title`, and a `type` on every node.
`structural()` rewrites one into the other and refuses anything it does not know how to map,
so a model change cannot silently produce a schema the API server would read differently.
`runctl crds` prints them (`--write DIR`: one file each).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runctl.api import rules
from runctl.api.base import ApiModel
from runctl.api.spec import MAX_RUN_NAME, StepRunSpec, StoryRunSpec, StorySpec
from runctl.api.status import StepRunStatus, StoryRunStatus
from runctl.api.wire import GROUP, STEP_RUNS, STORIES, STORY_RUNS, VERSION

CATEGORIES = ["runctl"]

Schema = dict[str, Any]

# Keywords a structural schema may carry, as they come out of pydantic (after rewriting).
_KEPT = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum",
    "default", "format", "pattern", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minProperties",
    "maxProperties", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields",
}
_DROPPED = {"title"}


class SchemaError(ValueError):
    """A model produced JSON Schema that has no structural equivalent."""


def structural(node: Schema, defs: dict[str, Schema], where: str = "") -> Schema:
    """Rewrite one pydantic JSON Schema node (and its children) into a structural schema."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**structural(target, defs, where), **node}
    if "allOf" in node:
        (only,) = node.pop("allOf")
        node = {**structural(only, defs, where), **node}
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"{where or '<root>'}: a union other than X | None: {branches}")
        node = {**structural(branches[0], defs, where), **node}
    if node.get("default", ...) is None:
        del node["default"]
    if node.get("additionalProperties") is True:
        # A map of any values: an object whose fields the API server keeps as they are.
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if not {"type", "properties", "items", "additionalProperties", "enum"} & set(node):
        # `Any`: any JSON value, which the API server keeps as it is.
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "string" and "enum" in node and "maxLength" not in node:
        # A bound the enum already implies; it keeps the CEL cost estimates of rules that
        # read the field small.
        node["maxLength"] = max(len(v) for v in node["enum"])
    unknown = set(node) - _KEPT - _DROPPED
    if unknown:
        raise SchemaError(f"{where or '<root>'}: no structural form for {sorted(unknown)}")
    out: Schema = {}
    for key in _KEPT_ORDER:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            value = {name: structural(sub, defs, f"{where}.{name}") for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            if not isinstance(value, dict):
                raise SchemaError(f"{where}: {key} must be a schema, not {value!r}")
            value = structural(value, defs, f"{where}[*]")
        out[key] = copy.deepcopy(value)
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        raise SchemaError(f"{where or '<root>'}: no type")
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        raise SchemaError(f"{where}: both properties and additionalProperties")
    return out


_KEPT_ORDER = [
    "description", "type", "format", "enum", "default", "pattern", "minLength", "maxLength",
    "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "maxItems",
    "minProperties", "maxProperties", "required", "properties", "items", "additionalProperties",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
]
assert set(_KEPT_ORDER) == _KEPT


def schema_of(model: type[ApiModel]) -> Schema:
    """The structural schema of one model (aliases as property names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs, "")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: list[str]
    description: str
    spec: type[ApiModel]
    status: type[ApiModel] | None
    """None: the kind has no status (nothing observes it)."""
    root_rules: list[rules.Rule]
    columns: list[dict[str, Any]]
    fixed: tuple[str, ...] = ()
    """Dotted paths of the subtrees that never change once written (an immutability rule says
    so): their shape rules are checked when written (`rules.when_written`), not at every
    status update."""

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

STORY_RUN = Kind(
    kind="StoryRun", plural=STORY_RUNS, short_names=["sr"],
    description="A StoryRun runs a DAG of steps, each a container, to one terminal outcome. "
                "Users create it; the runctl operator records its progress in status.",
    spec=StoryRunSpec, status=StoryRunStatus,
    root_rules=[*rules.STORY_RUN_ROOT_RULES, rules.name_rule(
        "StoryRun", MAX_RUN_NAME, "it labels every StepRun, workload and pod of the run")],
    fixed=("spec", "status.resolved"),
    columns=[
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
         "description": "The run's phase."},
        {"name": "Steps", "type": "string", "jsonPath": ".status.progress",
         "description": "Terminal steps out of all steps."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason",
         "description": "Why the run is in its phase."},
        _AGE,
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1,
         "description": "batch or realtime."},
        {"name": "Duration", "type": "string", "jsonPath": ".status.duration", "priority": 1,
         "description": "How long the run took."},
        {"name": "Reused", "type": "integer", "jsonPath": ".status.rerun.reused", "priority": 1,
         "description": "A re-run: how many steps it reused from its source."},
    ],
)

STEP_RUN = Kind(
    kind="StepRun", plural=STEP_RUNS, short_names=["stpr"],
    description="A StepRun is the attempt history of one step of a StoryRun. The operator "
                "creates it (named <run>-<step>) and owns its workload; users read it.",
    spec=StepRunSpec, status=StepRunStatus, root_rules=rules.STEP_RUN_ROOT_RULES,
    fixed=("spec",),
    columns=[
        {"name": "Run", "type": "string", "jsonPath": ".spec.storyRun",
         "description": "The StoryRun the step belongs to."},
        {"name": "Step", "type": "string", "jsonPath": ".spec.step",
         "description": "The step's name in the StoryRun."},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
         "description": "The step's phase; none until its workload runs (Pending)."},
        {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts",
         "description": "Attempts started."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason",
         "description": "Why the step is in its phase."},
        _AGE,
    ],
)

STORY = Kind(
    kind="Story", plural=STORIES, short_names=["st"],
    description="A Story is a reusable, parameterised run definition: typed params and the "
                "steps a StoryRun of it (spec.storyRef) executes. It runs nothing by itself.",
    spec=StorySpec, status=None, root_rules=[],
    columns=[
        {"name": "Params", "type": "string", "jsonPath": ".spec.params[*].name",
         "description": "The params it declares (kubectl prints the first)."},
        {"name": "Steps", "type": "string", "jsonPath": ".spec.steps[*].name",
         "description": "Its steps (kubectl prints the first)."},
        _AGE,
    ],
)

KINDS = (STORY_RUN, STEP_RUN, STORY)


def root_schema(kind: Kind) -> Schema:
    """The openAPIV3Schema of one kind: the usual envelope around its spec and status."""
    properties: Schema = {
        "apiVersion": {
            "description": "The versioned schema of this object: runctl.dev/v1alpha1.",
            "type": "string"},
        "kind": {"description": f"The kind of this object: {kind.kind}.", "type": "string"},
        "metadata": {"type": "object"},
        "spec": schema_of(kind.spec),
    }
    if kind.status is not None:
        properties["status"] = schema_of(kind.status)
    out: Schema = {"description": kind.description, "type": "object", "required": ["spec"],
                   "properties": properties}
    if kind.root_rules:
        out["x-kubernetes-validations"] = copy.deepcopy(kind.root_rules)
    for path in kind.fixed:
        node = out
        for name in path.split("."):
            node = node["properties"][name]
        _when_written(node)
    return out


def _when_written(node: Schema) -> None:
    """Every rule in this subtree checked only where its value is new, down to the items of a
    list that is not a list-map: the API server cannot pair such an item with an old one, so
    their rules (which then run at every write) cannot read oldSelf."""
    if "x-kubernetes-validations" in node:
        node["x-kubernetes-validations"] = [
            rules.when_written(r) for r in node["x-kubernetes-validations"]]
    for child in node.get("properties", {}).values():
        _when_written(child)
    if isinstance(node.get("additionalProperties"), dict):
        _when_written(node["additionalProperties"])
    if isinstance(node.get("items"), dict) and node.get("x-kubernetes-list-type") == "map":
        _when_written(node["items"])


def custom_resource_definition(kind: Kind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.name, "labels": {"app.kubernetes.io/part-of": "runctl"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": list(CATEGORIES),
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                **({"subresources": {"status": {}}} if kind.status is not None else {}),
                "additionalPrinterColumns": copy.deepcopy(kind.columns),
                "schema": {"openAPIV3Schema": root_schema(kind)},
            }],
        },
    }


def custom_resource_definitions() -> list[dict[str, Any]]:
    """Every CRD, StoryRun first."""
    return [custom_resource_definition(k) for k in KINDS]


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)


HEADER = "# Generated by `runctl crds` from runctl.api; do not edit.\n"


def render(kind: Kind) -> str:
    """One CRD as a YAML document (with the generated-file header)."""
    return HEADER + _dump(custom_resource_definition(kind))


def render_yaml() -> str:
    """Every CRD as one multi-document YAML stream, in a stable order."""
    return "---\n".join(render(k) for k in KINDS)


def file_name(kind: Kind) -> str:
    return f"{kind.name}.yaml"


def write(directory: Path) -> list[Path]:
    """Write one file per CRD into `directory` (created if needed); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in KINDS:
        path = directory / file_name(kind)
        path.write_text(render(kind))
        paths.append(path)
    return paths
