"""The operator's admission webhook, running against the real control plane, refuses bad Stories
and StoryRuns at `kubectl apply` with the field named: references, conditions and params, the
checks the CRD schema cannot make. Nothing refused is stored."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.integration.test_cli import one_line_error, runctl
from tests.support import apply, free_port, wait_for, wait_terminal

pytestmark = pytest.mark.integration

API = "runctl.dev/v1alpha1"
SPEC: dict[str, Any] = {
    "params": [{"name": "table", "type": "string"},
               {"name": "dryRun", "type": "boolean", "default": False},
               {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"}],
    "steps": [{"name": "count", "image": "example.invalid/count:1",
               "args": ["${{ params.table }}"], "outputs": [{"name": "rows"}]},
              {"name": "publish", "image": "example.invalid/publish:1", "needs": ["count"],
               "env": [{"name": "ROWS", "value": "${{ steps.count.outputs.rows }}"}],
               "outputs": [{"name": "url"}],
               "when": "params.dryRun == false && int(steps.count.outputs.rows) > 0"}],
}


def story(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Story", "metadata": {"name": name}, "spec": spec}


def run(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StoryRun", "metadata": {"name": name}, "spec": spec}


def changed(step: int, **fields: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["steps"][step].update(fields)
    return spec


def refusal(cluster: ControlPlane, namespace: str, body: dict[str, Any], *extra: str) -> str:
    """The API server's refusal of creating `body` (a real create unless `extra` says
    otherwise), or ''."""
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", *extra, input=json.dumps(body),
                          check=False)
    return out.stderr if out.returncode != 0 else ""


@pytest.fixture(scope="module")
def webhook(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[ControlPlane, str]]:
    """An operator serving its webhook for a namespace of this module's, and the good Story
    `etl` it has seen there."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", namespace)
    op = OperatorProcess(crds, crds.logs, label=f"webhook-{namespace}", extra=(
        "-n", namespace, "--webhook-port", str(free_port()), "--webhook-host", "127.0.0.1",
        "--webhook-cert-dir", str(tmp_path_factory.mktemp("webhook"))))
    op.start()
    try:
        wait_for("the webhook to serve", lambda: "spec.steps[0].args[0]" in refusal(
            crds, namespace, story("probe", changed(0, args=["${{ params.nope }}"])),
            "--dry-run=server"),
                 timeout=60)
        apply(crds, namespace, story("etl", SPEC))
        # The webhook checks params against the Story as the operator has seen it.
        wait_for("the operator to see Story etl", lambda: "spec.params.colour" in refusal(
            crds, namespace, run("probe", storyRef={"name": "etl"},
                                 params={"table": "t", "colour": 1}), "--dry-run=server"),
            timeout=60)
        yield crds, namespace
    finally:
        op.stop()
        crds.kubectl("delete", "validatingwebhookconfiguration", "runctl.dev",
                     "--ignore-not-found", check=False)
        crds.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


BAD_STORIES = [
    pytest.param(changed(0, args=["${{ params.nope }}"]),
                 ['spec.steps[0].args[0]: unknown param "nope"'], id="unknown-param"),
    pytest.param(changed(1, env=[{"name": "R", "value": "${{ steps.count.outputs.cols }}"}]),
                 ['spec.steps[1].env[0].value: step "count" declares no output "cols"'],
                 id="undeclared-output"),
    pytest.param(changed(1, env=[{"name": "R", "value": "${{ steps.load.outputs.rows }}"}]),
                 ['spec.steps[1].env[0].value: unknown step "load"'], id="unknown-step"),
    pytest.param(changed(0, args=["${{ steps.publish.outputs.url }}"]),
                 ['spec.steps[0].args[0]: steps.publish.outputs.url: step "publish" is not '
                  'upstream of "count" (reading it would make a cycle)'],
                 id="reference-makes-a-cycle"),
    pytest.param(changed(0, command=["${{ params.table"]),
                 ["spec.steps[0].command[0]: malformed reference: '${{' is not closed"],
                 id="malformed-reference"),
    pytest.param(changed(1, pod={"annotations": {"note": "${{ params.x }}"}}),
                 ['spec.steps[1].pod.annotations[note]: unknown param "x"'],
                 id="reference-in-annotation"),
    pytest.param(changed(1, when="params.dryRun =="),
                 ["spec.steps[1].when: not valid CEL"], id="cel-syntax"),
    pytest.param(changed(1, when="params.table"),
                 ["spec.steps[1].when: the condition gives str, not a boolean"],
                 id="cel-not-boolean"),
    pytest.param(changed(1, when="colour == 'red'"),
                 ["spec.steps[1].when: unknown variable colour"], id="cel-unknown-variable"),
    pytest.param(changed(1, forEach={"items": ["a"], "matrix": {"r": ["eu"]}}),
                 ["spec.steps[1].forEach: exactly one of items and matrix"],
                 id="for-each-both"),
    pytest.param(changed(1, forEach={"parallelism": 2}),
                 ["spec.steps[1].forEach: exactly one of items and matrix"],
                 id="for-each-neither"),
    pytest.param(changed(1, forEach={"items": "a ${{ params.table }}"}),
                 ["spec.steps[1].forEach.items: must be a list, or one reference"],
                 id="for-each-items-not-one-reference"),
    pytest.param(changed(1, forEach={"items": {"a": 1}}),
                 ["spec.steps[1].forEach.items: must be a list, or one reference"],
                 id="for-each-items-an-object"),
    pytest.param(changed(1, forEach={"matrix": {"the-region": ["eu"]}}),
                 ["spec.steps[1].forEach.matrix.the-region: a dimension's name is letters"],
                 id="for-each-dimension-name"),
    pytest.param(changed(1, forEach={"matrix": {"a": list(range(101)),
                                                "b": list(range(100))}}),
                 ["spec.steps[1].forEach.matrix: 10100 items, more than 10000"],
                 id="for-each-matrix-over-the-limit"),
    pytest.param(changed(0, args=["${{ item }}"], when="index > 0"),
                 ["spec.steps[0].args[0]: item: only a step with forEach has an item",
                  "spec.steps[0].when: unknown variable index"], id="item-without-for-each"),
    pytest.param({"mode": "realtime", "steps": [
                     {"name": "serve", "image": "x:1", "forEach": {"items": ["a"]}}]},
                 ["spec.steps[0].forEach: a realtime step cannot fan out"],
                 id="for-each-in-a-realtime-run"),
    pytest.param({**SPEC, "steps": [SPEC["steps"][0],
                                    {**SPEC["steps"][1], "forEach": {"items": ["a", "b"]}},
                                    {"name": "publish-2", "image": "x:1"}]},
                 ['spec.steps[2].name: "publish-2" is the name of an item of fan-out step '
                  '"publish"'], id="a-step-named-as-an-item"),
]


@pytest.mark.parametrize(("spec", "words"), BAD_STORIES)
def test_a_bad_story_is_refused_by_the_webhook_naming_the_field(
        webhook: tuple[ControlPlane, str], spec: dict[str, Any], words: list[str]) -> None:
    cluster, namespace = webhook
    message = refusal(cluster, namespace, story("bad", spec))
    assert 'admission webhook "' in message, message
    for word in words:
        assert word in message, message
    assert cluster.kubectl("get", "story", "bad", "-n", namespace, check=False).returncode != 0


def test_a_refusal_is_logged_at_info_and_not_as_an_error(
        webhook: tuple[ControlPlane, str]) -> None:
    cluster, namespace = webhook
    refusal(cluster, namespace, story("logged", changed(0, args=["${{ params.nope }}"])))
    log = cluster.logs / f"webhook-{namespace}-1.log"
    wait_for("the refusal in the operator's log",
             lambda: f"refused Story {namespace}/logged: spec.steps[0].args[0]"
             in log.read_text())
    text = log.read_text()
    assert "failed permanently" not in text, text[-2000:]
    errors = [line for line in text.splitlines() if line.split(" ", 3)[2:3] == ["ERROR"]]
    assert not errors, errors


def test_inline_steps_are_refused_as_a_story_s(webhook: tuple[ControlPlane, str]) -> None:
    cluster, namespace = webhook
    steps = [{"name": "a", "image": "example.invalid/a:1", "outputs": [{"name": "n"}]},
             {"name": "b", "image": "example.invalid/b:1",
              "args": ["${{ steps.a.outputs.m }}", "${{ params.p }}"], "when": "1 + 1"}]
    message = refusal(cluster, namespace, run("bad", steps=steps))
    for words in ('spec.steps[1].args[0]: step "a" declares no output "m"',
                  'spec.steps[1].args[1]: unknown param "p"',
                  "spec.steps[1].when: the condition gives int, not a boolean"):
        assert words in message, message
    assert cluster.kubectl("get", "sr", "bad", "-n", namespace, check=False).returncode != 0


BAD_PARAMS = [
    pytest.param({"table": "t", "colour": 1},
                 'spec.params.colour: unknown param "colour" (declared: table, dryRun, region)',
                 id="unknown"),
    pytest.param({}, "spec.params.table: required param missing (it has no default)",
                 id="missing"),
    pytest.param({"table": 3}, "spec.params.table: the value must be of type string, not number",
                 id="mistyped"),
    pytest.param({"table": "t", "dryRun": "yes"},
                 "spec.params.dryRun: the value must be of type boolean, not string",
                 id="mistyped-boolean"),
    pytest.param({"table": "t", "region": "asia"},
                 'spec.params.region: the value "asia" is not one of "eu", "us"',
                 id="outside-enum"),
]


@pytest.mark.parametrize(("params", "words"), BAD_PARAMS)
def test_a_run_with_bad_params_is_refused_by_the_webhook_naming_the_param(
        webhook: tuple[ControlPlane, str], params: dict[str, Any], words: str) -> None:
    cluster, namespace = webhook
    message = refusal(cluster, namespace, run("bad", storyRef={"name": "etl"}, params=params))
    assert 'admission webhook "' in message, message
    assert words in message, message
    assert cluster.kubectl("get", "sr", "bad", "-n", namespace, check=False).returncode != 0


def test_sound_params_pass_the_same_webhook(webhook: tuple[ControlPlane, str]) -> None:
    cluster, namespace = webhook
    out = cluster.kubectl("create", "-n", namespace, "--dry-run=server", "-f", "-",
                          input=json.dumps(run("good", storyRef={"name": "etl"},
                                               params={"table": "t", "region": "us"})))
    assert "created (server dry run)" in out.stdout


def test_a_parallelism_beside_a_realtime_story_is_refused_by_the_webhook(
        webhook: tuple[ControlPlane, str]) -> None:
    """The API server's rule sees only the run's own mode: the webhook judges the Story's."""
    cluster, namespace = webhook
    live = {"mode": "realtime", "steps": [{"name": "serve", "image": "example.invalid/s:1"}]}
    apply(cluster, namespace, story("live", live))
    bounded = run("bad", storyRef={"name": "live"}, parallelism=2)
    message = wait_for("the operator to see Story live", lambda: refusal(
        cluster, namespace, bounded, "--dry-run=server"), timeout=60)
    assert 'admission webhook "' in message, message
    assert ("spec.parallelism: a realtime run's steps all run at once, as one topology: "
            "parallelism is for batch runs") in message, message
    assert refusal(cluster, namespace, bounded) == message
    assert cluster.kubectl("get", "sr", "bad", "-n", namespace, check=False).returncode != 0
    assert refusal(cluster, namespace, run("good", storyRef={"name": "live"}),
                   "--dry-run=server") == ""


def test_runctl_start_runs_a_story_and_params_that_do_not_fit_are_refused_by_name(
        webhook: tuple[ControlPlane, str]) -> None:
    """`runctl start` sends typed params (JSON for a boolean) and prints the generated name;
    a param outside its enum is refused at apply with the webhook's message, and no run is
    made."""
    cluster, namespace = webhook
    spec = {"params": [{"name": "table", "type": "string"},
                       {"name": "dryRun", "type": "boolean", "default": False},
                       {"name": "region", "type": "string", "enum": ["eu", "us"]}],
            "steps": [{"name": "count", "image": "example.invalid/count:1",
                       "args": ["${{ params.table }}", "${{ params.region }}"]}]}
    apply(cluster, namespace, story("nightly", spec))
    wait_for("the operator to see Story nightly", lambda: "spec.params.region" in refusal(
        cluster, namespace, run("probe", storyRef={"name": "nightly"},
                                params={"table": "t", "region": "mars"}), "--dry-run=server"),
        timeout=60)

    started = runctl(cluster, "start", "nightly", "-n", namespace, "-p", "table=events",
                     "-p", "dryRun=true", "-p", "region=eu", "--watch")
    assert started.returncode == 0, started.stderr
    name = started.stdout.splitlines()[0]
    assert re.fullmatch(r"nightly-[a-z0-9]{5}", name), started.stdout
    created = json.loads(cluster.kubectl("get", "storyrun", name, "-n", namespace,
                                         "-o", "json").stdout)
    assert created["spec"]["params"] == {"table": "events", "dryRun": True, "region": "eu"}
    assert created["status"]["phase"] == "Succeeded"

    runs = cluster.kubectl("get", "storyruns", "-n", namespace, "-o", "name").stdout
    refused = one_line_error(runctl(cluster, "start", "nightly", "-n", namespace,
                                    "-p", "table=t", "-p", "region=mars"), "start")
    assert "spec.params.region" in refused, refused
    assert cluster.kubectl("get", "storyruns", "-n", namespace, "-o", "name").stdout == runs
    assert one_line_error(runctl(cluster, "start", "nope", "-n", namespace), "start") == (
        f"runctl start: story nope not found in namespace {namespace}")


@pytest.fixture(scope="module")
def sources(webhook: tuple[ControlPlane, str]) -> tuple[ControlPlane, str]:
    """Runs to run again, as the operator has seen them: `done` (inline, Succeeded), `of-etl`
    (a run of etl, ended), `busy` (still running)."""
    cluster, namespace = webhook
    sim = {"annotations": {"sim.runctl.dev/duration": "1s"}}
    apply(cluster, namespace, run("done", steps=[
        {"name": "only", "image": "example.invalid/only:1", "pod": sim}]))
    apply(cluster, namespace, run("of-etl", storyRef={"name": "etl"}, params={"table": "t"}))
    apply(cluster, namespace, run("busy", steps=[
        {"name": "long", "image": "example.invalid/long:1",
         "pod": {"annotations": {"sim.runctl.dev/duration": "forever"}}}]))
    for name in ("done", "of-etl"):
        wait_terminal(cluster, namespace, name)
    wait_for("the operator to see done and of-etl ended, busy running", lambda: not refusal(
        cluster, namespace, run("probe", rerunOf={"name": "done"}), "--dry-run=server")
        and not refusal(cluster, namespace, run("probe", rerunOf={"name": "of-etl"}),
                        "--dry-run=server")
        and "is Running" in refusal(cluster, namespace, run("probe", rerunOf={"name": "busy"}),
                                    "--dry-run=server"), timeout=60)
    return cluster, namespace


BAD_RERUNS = [
    pytest.param({"rerunOf": {"name": "nowhere"}},
                 "spec.rerunOf.name: run nowhere not found in namespace", id="missing"),
    pytest.param({"rerunOf": {"name": "busy"}},
                 "spec.rerunOf.name: run busy is Running: only a terminal run can run again",
                 id="not-terminal"),
    pytest.param({"rerunOf": {"name": "done", "namespace": "elsewhere"}},
                 "spec.rerunOf.namespace: must be the run's own namespace", id="namespace"),
    pytest.param({"rerunOf": {"name": "done"}, "rerun": {"from": ["only", "x"]}},
                 'spec.rerun.from[1]: "x" is not a step of run done', id="from"),
    pytest.param({"rerunOf": {"name": "of-etl"}, "params": {"region": "asia"}},
                 'spec.params.region: the value "asia" is not one of "eu", "us"',
                 id="params"),
    pytest.param({"rerunOf": {"name": "done"}, "params": {"table": "t"}},
                 'spec.params.table: unknown param "table" (declared: none)',
                 id="params-of-inline-steps"),
]


@pytest.mark.parametrize(("spec", "words"), BAD_RERUNS)
def test_a_bad_rerun_is_refused_by_the_webhook_naming_the_field(
        sources: tuple[ControlPlane, str], spec: dict[str, Any], words: str) -> None:
    cluster, namespace = sources
    message = refusal(cluster, namespace, run("bad", **spec))
    assert 'admission webhook "' in message, message
    assert words in message, message
    assert cluster.kubectl("get", "sr", "bad", "-n", namespace, check=False).returncode != 0


def test_runctl_rerun_runs_a_finished_run_again_and_bad_params_are_refused_by_name(
        sources: tuple[ControlPlane, str]) -> None:
    cluster, namespace = sources
    runs = cluster.kubectl("get", "storyruns", "-n", namespace, "-o", "name").stdout
    refused = one_line_error(runctl(cluster, "rerun", "of-etl", "-n", namespace,
                                    "-p", "region=asia"), "rerun")
    assert "spec.params.region" in refused, refused
    refused = one_line_error(runctl(cluster, "rerun", "done", "-n", namespace,
                                    "--from", "nope"), "rerun")
    assert "spec.rerun.from[0]" in refused, refused
    assert cluster.kubectl("get", "storyruns", "-n", namespace, "-o", "name").stdout == runs
    assert one_line_error(runctl(cluster, "rerun", "nope", "-n", namespace), "rerun") == (
        f"runctl rerun: storyrun nope not found in namespace {namespace}")

    again = runctl(cluster, "rerun", "done", "-n", namespace, "--watch")
    assert again.returncode == 0, again.stderr
    name = again.stdout.splitlines()[0]
    assert re.fullmatch(r"done-[a-z0-9]{5}", name), again.stdout
    created = json.loads(cluster.kubectl("get", "storyrun", name, "-n", namespace,
                                         "-o", "json").stdout)
    assert created["spec"] == {"rerunOf": {"name": "done"}, "cancelRequested": False,
                               "suspend": False, "mode": "batch", "onFailure": "stop",
                               "shutdown": {"gracePeriodSeconds": 30}}
    assert created["status"]["stepStates"]["only"]["reason"] == "Reused"
    assert "Reused from run done" in again.stdout
