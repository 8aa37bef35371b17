"""Runs of Stories against the real local control plane and a real operator: params, the run's
record, outputs, references and conditions, a Story edited or deleted mid-run, a run created
before its Story, and bad input that got past apply (no webhook here) ending InvalidSpec."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runctl.api import wire
from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import (
    apply,
    get_run,
    items,
    kubectl_json,
    step,
    step_states,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration

API = "runctl.dev/v1alpha1"
WAIT_SECONDS = 12


@pytest.fixture
def op(crds: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    """An operator that waits WAIT_SECONDS for a missing Story."""
    proc = OperatorProcess(crds, crds.logs, extra=("-n", namespace),
                           label=f"operator-{namespace}",
                           env={"RUNCTL_STORY_WAIT_SECONDS": str(WAIT_SECONDS)})
    proc.start()
    yield proc
    proc.stop()


def story(name: str, steps: list[dict[str, Any]],
          params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Story", "metadata": {"name": name},
            "spec": {"params": params or [], "steps": steps}}


def run_of(name: str, story_name: str, **params: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StoryRun", "metadata": {"name": name},
            "spec": {"storyRef": {"name": story_name}, "params": params}}


def etl(duration: str = "1s") -> dict[str, Any]:
    """count says how many rows and which table; publish reads both unless it is a dry run;
    report runs after publish whatever its condition said."""
    return story("etl", [
        step("count", duration=duration, args=["--table", "${{ params.table }}"],
             message='{"rows": 42, "table": "events_v2"}',
             outputs=[{"name": "rows"}, {"name": "table", "default": "unknown"}]),
        step("publish", when="params.dryRun == false && int(steps.count.outputs.rows) > 0",
             env=[{"name": "ROWS", "value": "${{ steps.count.outputs.rows }}"},
                  {"name": "TABLE", "value": "${{ steps.count.outputs.table }}"}],
             annotations={"note": "${{ params.table }} has ${{ steps.count.outputs.rows }}"}),
        step("report", "publish", args=["${{ params.dryRun }}"]),
    ], params=[{"name": "table", "type": "string"},
               {"name": "dryRun", "type": "boolean", "default": False},
               {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"}])


def steprun(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "steprun", name, "-n", namespace)


def test_a_run_of_a_story_passes_outputs_downstream_and_records_what_it_ran(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, etl())
    apply(cluster, namespace, run_of("load", "etl", table="events"))
    run = wait_terminal(cluster, namespace, "load")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    states = step_states(run)
    assert {s: v["phase"] for s, v in states.items()} == {
        "count": "Succeeded", "publish": "Succeeded", "report": "Succeeded"}
    # The record: which Story, which version, and every param with its default applied.
    stored = kubectl_json(cluster, "get", "story", "etl", "-n", namespace)
    assert run["status"]["story"] == {
        "name": "etl", "uid": stored["metadata"]["uid"],
        "generation": stored["metadata"]["generation"], "digest": wire.digest(stored["spec"])}
    assert run["status"]["resolved"]["params"] == {"table": "events", "dryRun": False,
                                                   "region": "eu"}
    assert run["status"]["resolved"]["spec"] == stored["spec"]
    # What ran is visible on the cluster: the StepRuns carry the rendered values.
    count = steprun(cluster, namespace, "load-count")
    assert count["spec"]["args"] == ["--table", "events"]
    assert count["status"]["outputs"] == {"rows": "42", "table": "events_v2"}
    publish = steprun(cluster, namespace, "load-publish")
    assert publish["spec"]["env"] == [{"name": "ROWS", "value": "42"},
                                      {"name": "TABLE", "value": "events_v2"}]
    assert publish["spec"]["pod"]["annotations"]["note"] == "events has 42"
    assert publish["spec"]["needs"] == []  # the implied need is the operator's, not the spec's
    assert steprun(cluster, namespace, "load-report")["spec"]["args"] == ["false"]
    assert "${{" not in json.dumps([s["spec"] for s in items(cluster, namespace, "stepruns")])


def test_a_condition_false_skips_its_step_and_its_dependents_still_run(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, etl())
    apply(cluster, namespace, run_of("dry", "etl", table="events", dryRun=True))
    run = wait_terminal(cluster, namespace, "dry")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    states = step_states(run)
    assert (states["publish"]["phase"], states["publish"]["reason"]) == (
        "Skipped", "ConditionFalse")
    assert "is false" in states["publish"]["message"]
    assert states["report"]["phase"] == "Succeeded"
    assert steprun(cluster, namespace, "dry-report")["spec"]["args"] == ["true"]
    assert {s["spec"]["step"] for s in items(cluster, namespace, "stepruns")} == {
        "count", "report"}


def test_an_edited_then_deleted_story_changes_nothing_of_a_run_that_recorded_it(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, etl(duration="5s"))
    apply(cluster, namespace, run_of("mid", "etl", table="events"))
    wait_for("mid to record its Story and start count",
             lambda: step_states(get_run(cluster, namespace, "mid")).get("count", {}).get(
                 "phase") == "Running")
    record = get_run(cluster, namespace, "mid")["status"]
    edited = etl()
    edited["spec"]["steps"] = [step("other", args=["changed"])]
    apply(cluster, namespace, edited)
    time.sleep(1)
    cluster.kubectl("delete", "story", "etl", "-n", namespace)
    run = wait_terminal(cluster, namespace, "mid")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["story"] == record["story"]
    assert run["status"]["resolved"] == record["resolved"]
    assert sorted(step_states(run)) == ["count", "publish", "report"]
    assert steprun(cluster, namespace, "mid-count")["spec"]["args"] == ["--table", "events"]


def test_a_run_created_before_its_story_waits_then_starts_once_it_appears(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, run_of("early", "etl", table="events"))
    waiting = wait_for("early to wait for its Story", lambda: (
        r := get_run(cluster, namespace, "early")).get("status", {}).get("reason")
        == "StoryNotFound" and r)
    assert waiting["status"]["phase"] == "Pending"
    succeeded = next(c for c in waiting["status"]["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("Unknown", "StoryNotFound")
    assert "waiting for Story etl" in succeeded["message"]
    apply(cluster, namespace, etl())
    run = wait_terminal(cluster, namespace, "early")
    assert run["status"]["phase"] == "Succeeded", run["status"]


def test_a_story_that_never_appears_fails_the_run_story_not_found(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, run_of("orphan", "nowhere"))
    run = wait_terminal(cluster, namespace, "orphan", timeout=WAIT_SECONDS + 30)
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "StoryNotFound")
    assert "Story nowhere was not found" in run["status"]["message"]
    assert items(cluster, namespace, "stepruns") == []


OUTPUT_CASES = [
    pytest.param('{"table": "t"}', "OutputMissing", "required output rows missing",
                 id="missing"),
    pytest.param("rows=3", "OutputInvalid", "not JSON", id="not-json"),
    pytest.param(json.dumps({"rows": "x" * 5000}), "OutputInvalid", "more than 4096",
                 id="too-large"),
]


@pytest.mark.parametrize(("message", "reason", "words"), OUTPUT_CASES)
def test_outputs_that_fail_their_declarations_fail_the_step_permanently(
        op: OperatorProcess, namespace: str, message: str, reason: str, words: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, story("out", [
        step("count", message=message, outputs=[{"name": "rows"}],
             retry={"limit": 2, "backoffSeconds": 0}),
        step("load", env=[{"name": "ROWS", "value": "${{ steps.count.outputs.rows }}"}])]))
    apply(cluster, namespace, run_of("o", "out"))
    run = wait_terminal(cluster, namespace, "o")
    count = step_states(run)["count"]
    assert (run["status"]["phase"], count["phase"], count["reason"]) == (
        "Failed", "Failed", reason)
    assert words in count["message"]
    assert count["attempts"] == 1  # Permanent: never retried
    assert steprun(cluster, namespace, "o-count")["status"]["failureClass"] == "Permanent"
    assert step_states(run)["load"]["phase"] == "Skipped"


def test_a_default_used_is_recorded_as_such_and_read_downstream(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, story("dflt", [
        step("count", message='{"rows": 7}',
             outputs=[{"name": "rows"}, {"name": "table", "default": "unknown"}]),
        step("load", args=["${{ steps.count.outputs.table }}",
                           "${{ steps.count.outputs.rows }}"])]))
    apply(cluster, namespace, run_of("d", "dflt"))
    run = wait_terminal(cluster, namespace, "d")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    count = steprun(cluster, namespace, "d-count")
    assert count["status"]["outputs"] == {"rows": "7", "table": "unknown"}
    assert count["status"]["message"] == "outputs table took their defaults"
    assert steprun(cluster, namespace, "d-load")["spec"]["args"] == ["unknown", "7"]


def test_a_reader_of_an_output_never_made_is_skipped_not_hung(
        op: OperatorProcess, namespace: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, story("gap", [
        step("count", when="params.go", message='{"rows": 1}', outputs=[{"name": "rows"}]),
        step("load", args=["${{ steps.count.outputs.rows }}"])],
        params=[{"name": "go", "type": "boolean"}]))
    apply(cluster, namespace, run_of("g", "gap", go=False))
    run = wait_terminal(cluster, namespace, "g")
    load = step_states(run)["load"]
    assert (load["phase"], load["reason"]) == ("Skipped", "UpstreamOutputMissing")
    assert "steps.count.outputs.rows" in load["message"]
    assert run["status"]["phase"] == "Succeeded"
    assert items(cluster, namespace, "stepruns") == []


BAD_PARAMS = [
    pytest.param({"table": "t", "colour": "red"}, 'spec.params.colour: unknown param "colour"',
                 id="unknown"),
    pytest.param({}, "spec.params.table: required param missing", id="missing"),
    pytest.param({"table": 3}, "spec.params.table: the value must be of type string, not "
                 "number", id="mistyped"),
    pytest.param({"table": "t", "dryRun": "yes"}, "spec.params.dryRun: the value must be of "
                 "type boolean", id="mistyped-boolean"),
    pytest.param({"table": "t", "region": "asia"}, 'spec.params.region: the value "asia" is '
                 'not one of "eu", "us"', id="outside-enum"),
]


@pytest.mark.parametrize(("given", "words"), BAD_PARAMS)
def test_bad_params_past_apply_end_the_run_invalid_spec_with_no_step_run(
        op: OperatorProcess, namespace: str, given: dict[str, Any], words: str) -> None:
    cluster = op.cluster
    apply(cluster, namespace, etl())
    apply(cluster, namespace, run_of("bad", "etl", **given))
    run = wait_terminal(cluster, namespace, "bad")
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "InvalidSpec")
    assert words in run["status"]["message"]
    assert "story" not in run["status"]
    assert items(cluster, namespace, "stepruns") == []


def test_a_story_whose_definition_is_bad_ends_its_runs_invalid_spec(
        op: OperatorProcess, namespace: str) -> None:
    """A Story that got past apply (no webhook): its run names what is wrong with it."""
    cluster = op.cluster
    apply(cluster, namespace, story("broken", [
        step("a", args=["${{ steps.b.outputs.x }}"]),
        step("b", when="params.missing == 1")]))
    apply(cluster, namespace, run_of("r", "broken"))
    run = wait_terminal(cluster, namespace, "r")
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "InvalidSpec")
    message = run["status"]["message"]
    assert "Story broken: spec.steps[0].args[0]" in message
    assert 'step "b" declares no output "x"' in message
    assert "Story broken: spec.steps[1].when" in message
    assert items(cluster, namespace, "stepruns") == []
