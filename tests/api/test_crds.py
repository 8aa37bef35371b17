"""The generated CRDs: checked in unchanged, structural, described, bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runctl.api import crds, rules
from runctl.machine.phases import RUN_TERMINAL, STEP_TERMINAL, RunPhase, StepPhase

CRD_DIR = Path(__file__).parents[2] / "crds"
REGENERATE = "crds/ drifted from the models: run `runctl crds --write crds/` and commit the result"

DOCS = {crd["metadata"]["name"]: crd for crd in crds.custom_resource_definitions()}


def schema(name: str) -> dict[str, Any]:
    schema_: dict[str, Any] = DOCS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema_


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, depth first."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{*}}")


ALL_NODES = [(f"{name}:{path or '<root>'}", node)
             for name in DOCS for path, node in nodes(schema(name))]
ENVELOPE = {".apiVersion", ".kind", ".metadata"}


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda k: k.plural)
def test_the_checked_in_crds_are_what_the_models_generate(kind: crds.Kind) -> None:
    path = CRD_DIR / crds.file_name(kind)
    assert path.exists(), REGENERATE
    assert path.read_text() == crds.render(kind), REGENERATE


def test_crds_dir_holds_nothing_else() -> None:
    assert sorted(p.name for p in CRD_DIR.iterdir()) == sorted(
        crds.file_name(k) for k in crds.KINDS)


def test_render_yaml_is_every_crd_in_a_stable_order() -> None:
    docs = list(yaml.safe_load_all(crds.render_yaml()))
    assert docs == crds.custom_resource_definitions()
    assert [d["metadata"]["name"] for d in docs] == ["storyruns.runctl.dev",
                                                     "stepruns.runctl.dev", "stories.runctl.dev"]
    assert crds.render_yaml() == crds.render_yaml()


def test_runctl_crds_writes_one_file_per_kind(tmp_path: Path) -> None:
    from runctl.cli import main

    assert main(["crds", "--write", str(tmp_path)]) == 0
    for kind in crds.KINDS:
        assert (tmp_path / crds.file_name(kind)).read_text() == crds.render(kind)


def test_names_scope_and_subresources() -> None:
    for name, short in [("storyruns.runctl.dev", "sr"), ("stepruns.runctl.dev", "stpr")]:
        spec = DOCS[name]["spec"]
        assert spec["group"] == "runctl.dev"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["runctl"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == (
            "v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    def columns(name: str) -> list[tuple[str, str, int]]:
        return [(c["name"], c["jsonPath"], c.get("priority", 0))
                for c in DOCS[name]["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert columns("storyruns.runctl.dev") == [
        ("Phase", ".status.phase", 0), ("Steps", ".status.progress", 0),
        ("Reason", ".status.reason", 0), ("Age", ".metadata.creationTimestamp", 0),
        ("Mode", ".spec.mode", 1), ("Duration", ".status.duration", 1),
        ("Reused", ".status.rerun.reused", 1)]
    assert columns("stepruns.runctl.dev") == [
        ("Run", ".spec.storyRun", 0), ("Step", ".spec.step", 0), ("Phase", ".status.phase", 0),
        ("Attempts", ".status.attempts", 0), ("Reason", ".status.reason", 0),
        ("Age", ".metadata.creationTimestamp", 0)]


ANY_MAP = {"storyruns.runctl.dev:.spec.params", "storyruns.runctl.dev:.status.resolved.params"}
"""Maps of param values: objects whose fields the API server keeps as they are."""
ANY_VALUE = {
             "storyruns.runctl.dev:.status.resolved.spec.params[*].default",
             "storyruns.runctl.dev:.status.resolved.spec.params[*].enum[*]",
             "stories.runctl.dev:.spec.params[*].default",
             "stories.runctl.dev:.spec.params[*].enum[*]",
             "stepruns.runctl.dev:.spec.item.value",
             *(f"{where}.forEach.{field}" for where in (
                 "storyruns.runctl.dev:.spec.steps[*]", "storyruns.runctl.dev:.spec.finally[*]",
                 "storyruns.runctl.dev:.status.resolved.spec.steps[*]",
                 "storyruns.runctl.dev:.status.resolved.spec.finally[*]",
                 "stepruns.runctl.dev:.spec", "stories.runctl.dev:.spec.steps[*]",
                 "stories.runctl.dev:.spec.finally[*]")
               for field in ("items", "matrix{*}[*]"))}
"""Where a node holds any JSON value (a param's value, a fan-out's items): kept as it is, and
nowhere else."""


def test_every_node_is_structural() -> None:
    unstructural = {"$ref", "anyOf", "allOf", "oneOf", "nullable", "title", "$defs"}
    assert [where for where, node in ALL_NODES if "type" not in node] == [
        w for w, _ in ALL_NODES if w in ANY_VALUE]
    assert [where for where, node in ALL_NODES
            if node.get("x-kubernetes-preserve-unknown-fields")] == [
        w for w, _ in ALL_NODES if w in ANY_VALUE | ANY_MAP]
    assert [(where, sorted(unstructural & set(node)))
            for where, node in ALL_NODES if unstructural & set(node)] == []


def test_every_property_is_described_for_kubectl_explain() -> None:
    assert [f"{where}.{name}" for where, node in ALL_NODES
            for name, sub in node.get("properties", {}).items()
            if name != "metadata" and not sub.get("description")] == []


def test_every_string_list_and_map_is_bounded() -> None:
    """The API server prices CEL rules from these bounds; an unbounded one prices as huge."""
    def unbounded(node: dict[str, Any]) -> bool:
        if node["type"] == "string":
            return node.get("format") != "date-time" and "maxLength" not in node
        if node["type"] == "array":
            return "maxItems" not in node
        return "additionalProperties" in node and "maxProperties" not in node

    assert [where for where, node in ALL_NODES if where not in ANY_VALUE
            and unbounded(node) and where.split(":")[1] not in ENVELOPE] == []


def test_the_contract_s_enums_and_defaults_are_in_the_schema() -> None:
    spec = schema("storyruns.runctl.dev")["properties"]["spec"]["properties"]
    assert spec["mode"]["enum"] == ["batch", "realtime"]
    assert spec["mode"]["default"] == "batch"
    assert spec["onFailure"]["enum"] == ["stop", "continue"]
    assert spec["onFailure"]["default"] == "stop"
    assert spec["shutdown"]["properties"]["gracePeriodSeconds"]["default"] == 30
    steps = spec["steps"]
    assert steps["x-kubernetes-list-type"] == "map"
    assert steps["x-kubernetes-list-map-keys"] == ["name"]
    status = schema("stepruns.runctl.dev")["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in StepPhase]
    assert status["failureClass"]["enum"] == ["Transient", "Permanent"]


def test_the_run_graph_keeps_terminal_phases_terminal() -> None:
    for run_phase in RUN_TERMINAL:
        assert rules.RUN_TRANSITIONS[run_phase] == [run_phase]
    for step_phase in STEP_TERMINAL:
        assert rules.STEP_TRANSITIONS[step_phase] == [step_phase]
    assert RunPhase.PENDING not in rules.RUN_TRANSITIONS  # Pending may go anywhere
    assert RunPhase.PENDING not in rules.RUN_TRANSITIONS[RunPhase.RUNNING]
    assert set(rules.RUN_TRANSITIONS[RunPhase.STOPPING]) == {RunPhase.STOPPING, *RUN_TERMINAL}
    assert not set(rules.STEP_TRANSITIONS) - STEP_TERMINAL  # only terminal phases restricted


def test_status_rules_are_on_both_kinds_and_mention_every_terminal_phase() -> None:
    for name, terminal in [("storyruns.runctl.dev", RUN_TERMINAL),
                           ("stepruns.runctl.dev", STEP_TERMINAL)]:
        status_rules = schema(name)["properties"]["status"]["x-kubernetes-validations"]
        text = " ".join(r["rule"] for r in status_rules)
        assert "oldSelf" in text
        for phase in terminal:
            assert f"'{phase}'" in text
        assert rules.STATUS_KEPT in schema(name)["x-kubernetes-validations"]


def test_every_rule_says_what_it_protects() -> None:
    for name in DOCS:
        for _, node in nodes(schema(name)):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"]
                assert set(rule) <= {"rule", "message", "messageExpression", "fieldPath",
                                     "reason", "optionalOldSelf"}


FIXED = {("storyruns.runctl.dev", ".spec"), ("storyruns.runctl.dev", ".status.resolved"),
         ("stepruns.runctl.dev", ".spec")}


def test_shape_rules_of_what_never_changes_are_checked_when_it_is_written() -> None:
    """A run's spec (and its recorded resolved spec, and a StepRun's spec) is immutable, so
    its shape rules run where a value is new, not again at every status update; every other
    rule runs at every write."""
    gated = 0
    for name in DOCS:
        for path, node in nodes(schema(name)):
            fixed = any(name == n and (path == p or path.startswith((p + ".", p + "[")))
                        for n, p in FIXED)
            paired = fixed and _correlatable(schema(name), path)
            for rule in node.get("x-kubernetes-validations", []):
                if paired and "optionalOldSelf" in rule:
                    gated += 1
                    assert rule["optionalOldSelf"] is True
                    assert rule["rule"].startswith("oldSelf.hasValue() || (")
                else:
                    assert "optionalOldSelf" not in rule, (name, path)
                    assert not paired or "oldSelf" in rule["rule"], (name, path, rule["rule"])
    assert gated >= 30


def _correlatable(root: dict[str, Any], path: str) -> bool:
    """Whether the API server pairs the value at `path` with its old value: not below the
    items of a list that is not a list-map (rules there cannot read oldSelf)."""
    node = root
    for part in path.replace("[*]", ".[*]").replace("{*}", ".{*}").split("."):
        if part == "[*]":
            if node.get("x-kubernetes-list-type") != "map":
                return False
            node = node["items"]
        elif part == "{*}":
            node = node["additionalProperties"]
        elif part:
            node = node["properties"][part]
    return True


def test_what_never_changes_has_a_rule_that_says_so() -> None:
    """The premise of checking shape rules when written: each such subtree is immutable."""
    run_spec = " ".join(r["rule"] for r in schema("storyruns.runctl.dev")["properties"]["spec"]
                        ["x-kubernetes-validations"])
    assert "has(self.steps) ? has(oldSelf.steps) && self.steps == oldSelf.steps" in run_spec
    status = schema("storyruns.runctl.dev")["properties"]["status"]
    assert any(r["rule"].startswith("!has(oldSelf.resolved) || (has(self.resolved) && "
                                    "self.resolved == oldSelf.resolved)")
               for r in status["x-kubernetes-validations"])
    step_run_spec = schema("stepruns.runctl.dev")["properties"]["spec"]
    assert {"self == oldSelf"} <= {r["rule"] for r in step_run_spec["x-kubernetes-validations"]}


def test_structural_refuses_what_it_cannot_map() -> None:
    with pytest.raises(crds.SchemaError, match="union"):
        crds.structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})
    with pytest.raises(crds.SchemaError, match="no structural form"):
        crds.structural({"type": "object", "propertyNames": {"maxLength": 3}}, {})
    with pytest.raises(crds.SchemaError, match="no type"):
        crds.structural({"enum": [1, "a"]}, {})
    assert crds.structural({"description": "x"}, {}) == {
        "description": "x", "x-kubernetes-preserve-unknown-fields": True}
