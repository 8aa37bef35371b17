"""The CRDs against the real API server: bad input refused at create with the field named,
good input accepted with its defaults, `kubectl explain` and `kubectl get` reading well.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.devcluster import ControlPlane
from tests.support import kubectl_json, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION = "runctl.dev", "v1alpha1"


def step(name: str, *needs: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1", **fields}


def run(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
            "metadata": {"name": name}, "spec": {**spec, "steps": steps}}


def create(cluster: ControlPlane, namespace: str, body: dict[str, Any],
           *extra: str) -> tuple[int, str]:
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", *extra,
                          input=json.dumps(body), check=False)
    return out.returncode, out.stdout + out.stderr


BAD = [
    pytest.param([step("a"), step("a")], {},
                 ["spec.steps[1]: Duplicate value", '"name":"a"'], id="duplicate-names"),
    pytest.param([step("a"), step("b", "a", "c")], {},
                 ["spec.steps:", "needs must name steps of this run",
                  "step b needs c, which is not a step of this run"], id="unknown-needs"),
    pytest.param([step("a", "a")], {},
                 ["spec.steps[0].needs", "step a cannot need itself"], id="self-dependency"),
    pytest.param([step("a", "b"), step("b", "a")], {},
                 ["spec.steps:", "needs must form a DAG", "step a needs b which needs a"],
                 id="two-step-cycle"),
    pytest.param([step("Extract_1")], {},
                 ["spec.steps[0].name", "Extract_1", "should match"], id="bad-name"),
    pytest.param([step("a" * 64)], {},
                 ["spec.steps[0].name", "may not be more than 63"], id="long-name"),
    pytest.param([step("a")], {"timeoutSeconds": -5},
                 ["spec.timeoutSeconds", "greater than or equal to 1"], id="negative-timeout"),
    pytest.param([step("a", timeoutSeconds=-1)], {},
                 ["spec.steps[0].timeoutSeconds", "greater than or equal to 1"],
                 id="negative-step-timeout"),
    pytest.param([step("a")], {"mode": "streaming"},
                 ["spec.mode", 'Unsupported value: "streaming"', '"batch", "realtime"'],
                 id="unknown-mode"),
    pytest.param([step("a")], {"onFailure": "ignore"},
                 ["spec.onFailure", 'Unsupported value: "ignore"', '"stop", "continue"'],
                 id="unknown-onFailure"),
    pytest.param([step("a", retry={"limit": 11})], {},
                 ["spec.steps[0].retry.limit", "less than or equal to 10"], id="retry-limit"),
    pytest.param([step("a", retry={"limit": 2, "backoffFactor": 0})], {},
                 ["spec.steps[0].retry.backoffFactor", "greater than or equal to 1"],
                 id="retry-backoff-factor-below-1"),
    pytest.param([step("a", retry={"limit": 2, "maxBackoffSeconds": -1})], {},
                 ["spec.steps[0].retry.maxBackoffSeconds", "greater than or equal to 0"],
                 id="retry-negative-max-backoff"),
    pytest.param([step("a", retry={"limit": 2, "backoffSeconds": 30, "maxBackoffSeconds": 20})],
                 {}, ["spec.steps[0].retry.maxBackoffSeconds",
                      "maxBackoffSeconds must be at least backoffSeconds"],
                 id="retry-max-backoff-below-backoff"),
    pytest.param([step("a")], {"finally": [step("f", retry={"maxBackoffSeconds": 5})]},
                 ["spec.finally[0].retry.maxBackoffSeconds",
                  "maxBackoffSeconds must be at least backoffSeconds (default 10)"],
                 id="retry-max-backoff-below-the-default-backoff"),
    pytest.param([step("a")], {"shutdown": {"gracePeriodSeconds": -1}},
                 ["spec.shutdown.gracePeriodSeconds", "greater than or equal to 0"],
                 id="negative-grace-period"),
    pytest.param([], {}, ["spec.steps", "should have at least 1 items"], id="no-steps"),
    # Its pod would be refused: without this, the run waited for its deadline (or forever).
    pytest.param([step("a", pod={"annotations": {"bad key!": "v"}})], {},
                 ["spec.steps[0].pod.annotations", "qualified name", "not so: bad key!"],
                 id="pod-annotation-key"),
    pytest.param([step("a", pod={"labels": {"team": "not a value!"}})], {},
                 ["spec.steps[0].pod.labels", "label value", "not so: team"],
                 id="pod-label-value"),
    pytest.param([step("a", pod={"nodeSelector": {"disk type": "ssd"}})], {},
                 ["spec.steps[0].pod.nodeSelector", "qualified name", "not so: disk type"],
                 id="pod-node-selector-key"),
    pytest.param([step("a", pod={"tolerations": [{"key": "k", "operator": "Exists",
                                                  "value": "v"}]})], {},
                 ["spec.steps[0].pod.tolerations[0].value", "empty when operator is Exists"],
                 id="toleration-exists-with-value"),
    pytest.param([step("a", pod={"tolerations": [{"effect": "NoSchedule"}]})], {},
                 ["spec.steps[0].pod.tolerations[0].operator", "must be Exists when key"],
                 id="toleration-no-key"),
    pytest.param([step("a", pod={"tolerations": [{"key": "k", "tolerationSeconds": 5}]})],
                 {}, ["spec.steps[0].pod.tolerations[0].tolerationSeconds", "NoExecute"],
                 id="toleration-seconds-without-no-execute"),
    pytest.param([{"name": "a"}], {}, ["spec.steps[0].image", "Required value"],
                 id="no-image"),
    pytest.param([step("a", forEach={"items": ["x"], "parallelism": 0})], {},
                 ["spec.steps[0].forEach.parallelism", "greater than or equal to 1"],
                 id="for-each-parallelism"),
    pytest.param([step("a")], {"parallelism": 0},
                 ["spec.parallelism", "greater than or equal to 1"], id="parallelism-zero"),
    pytest.param([step("a")], {"parallelism": 10001},
                 ["spec.parallelism", "less than or equal to 10000"],
                 id="parallelism-over-its-bound"),
    pytest.param([step("a")], {"parallelism": 2, "mode": "realtime"},
                 ["spec.parallelism: a realtime run's steps all run at once, as one topology: "
                  "parallelism is for batch runs"], id="parallelism-in-a-realtime-run"),
    pytest.param([step("a", forEach={"matrix": {"region": []}})], {},
                 ["spec.steps[0].forEach.matrix.region", "should have at least 1 items"],
                 id="for-each-empty-dimension"),
    pytest.param([step("a", forEach={"matrix": {"region": "eu"}})], {},
                 ["spec.steps[0].forEach.matrix.region", "must be of type array"],
                 id="for-each-dimension-not-a-list"),
]


@pytest.mark.parametrize(("steps", "spec", "expected"), BAD)
def test_bad_input_is_refused_naming_the_field(
        crds: ControlPlane, namespace: str, steps: list[dict[str, Any]], spec: dict[str, Any],
        expected: list[str]) -> None:
    code, output = create(crds, namespace, run("bad", steps, **spec))
    assert code != 0
    assert 'The StoryRun "bad" is invalid' in output
    for text in expected:
        assert text in output
    assert crds.kubectl("get", "sr", "bad", "-n", namespace, check=False).returncode != 0


def test_a_refusal_through_the_python_client_is_a_422_with_the_field(
        crds: ControlPlane, namespace: str) -> None:
    api = client.CustomObjectsApi(crds.api_client())
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "storyruns",
                                            run("bad", [step("a"), step("b", "zz")]))
    assert refused.value.status == 422
    body = json.loads(refused.value.body or "{}")
    assert body["reason"] == "Invalid"
    (cause,) = body["details"]["causes"]
    assert cause["field"] == "spec.steps"
    assert "step b needs zz, which is not a step of this run" in cause["message"]


def test_a_cycle_through_more_steps_is_left_to_the_webhook(
        crds: ControlPlane, namespace: str) -> None:
    """CEL cannot afford a transitive closure over 100 steps: the schema lets a longer cycle
    through (the admission webhook and the reconcile path refuse it)."""
    body = run("cycle", [step("a", "c"), step("b", "a"), step("c", "b")])
    code, output = create(crds, namespace, body, "--dry-run=server")
    if code != 0:  # a webhook is installed in this cluster and refused it: also fine
        assert "cycle" in output.lower()


def test_good_input_is_accepted_with_its_defaults(crds: ControlPlane, namespace: str) -> None:
    body = run("good", [
        step("extract", env=[{"name": "DAY", "value": "2026-11-22"}, {"name": "EMPTY"}],
             retry={"limit": 2, "transientExitCodes": [75]}, port=8080,
             heartbeatTimeoutSeconds=30, pod={"labels": {"team": "data"},
                                               "serviceAccountName": "etl-runner"}),
        step("load", "extract", timeoutSeconds=600),
    ], timeoutSeconds=3600, ttlSecondsAfterFinished=300,
        transport={"lifecycle": {"drainTimeoutSeconds": 120}})
    code, output = create(crds, namespace, body)
    assert code == 0, output
    spec = kubectl_json(crds, "get", "sr", "good", "-n", namespace)["spec"]
    assert spec["mode"] == "batch"
    assert spec["onFailure"] == "stop"
    assert spec["cancelRequested"] is False
    assert spec["shutdown"] == {"gracePeriodSeconds": 30}
    assert spec["steps"][0]["retry"] == {"limit": 2, "backoffSeconds": 10, "backoffFactor": 1,
                                         "transientExitCodes": [75]}
    assert spec["steps"][1]["timeoutSeconds"] == 600


def test_a_fan_out_is_accepted_with_its_items_as_given(crds: ControlPlane,
                                                       namespace: str) -> None:
    """Items of any JSON type, or one reference as a string, are kept as they are."""
    body = run("fan", [
        step("list", outputs=[{"name": "files"}]),
        step("literal", forEach={"items": ["a.csv", 3, {"k": [True, None]}]}),
        step("dynamic", "list", forEach={"items": "${{ steps.list.outputs.files }}",
                                         "parallelism": 5}),
        step("grid", forEach={"matrix": {"region": ["eu", "us"], "size": [1, 2]}}),
    ])
    code, output = create(crds, namespace, body)
    assert code == 0, output
    steps = kubectl_json(crds, "get", "sr", "fan", "-n", namespace)["spec"]["steps"]
    assert steps[1]["forEach"] == {"items": ["a.csv", 3, {"k": [True, None]}],
                                   "parallelism": 100}
    assert steps[2]["forEach"] == {"items": "${{ steps.list.outputs.files }}", "parallelism": 5}
    assert steps[3]["forEach"]["matrix"] == {"region": ["eu", "us"], "size": [1, 2]}


def test_a_step_run_as_the_operator_creates_it_is_accepted(
        crds: ControlPlane, namespace: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun",
        "metadata": {"name": "nightly-extract"},
        "spec": {**step("extract", retry={"limit": 1}), "storyRun": "nightly.etl",
                 "step": "extract", "mode": "batch", "deadline": "2026-11-22T11:00:00Z"}}
    code, output = create(crds, namespace, body)
    assert code == 0, output
    item = {**body, "metadata": {"name": "nightly-convert-3"},
            "spec": {**body["spec"], "item": {"index": 3, "value": {"file": "d.csv"}}}}
    code, output = create(crds, namespace, item)
    assert code == 0, output
    assert kubectl_json(crds, "get", "stpr", "nightly-convert-3", "-n", namespace)["spec"][
        "item"] == {"index": 3, "value": {"file": "d.csv"}}
    body["metadata"]["name"] = "self-needing"
    body["spec"]["needs"] = ["extract"]
    code, output = create(crds, namespace, body)
    assert code != 0
    assert "spec.needs" in output
    assert "step extract cannot need itself" in output


def explain(cluster: ControlPlane, what: str) -> str:
    def probe() -> str | None:
        out = cluster.kubectl("explain", what, check=False)
        return out.stdout if out.returncode == 0 and "FIELDS" in out.stdout else None

    text: str = wait_for(f"kubectl explain {what}", probe, timeout=60)
    return text


def test_kubectl_explain_reads_well(crds: ControlPlane) -> None:
    steps = explain(crds, "storyrun.spec.steps")
    assert "The steps, 1 to 100, unique by name" in steps
    for field in ("name", "needs", "image", "retry", "timeoutSeconds", "heartbeatTimeoutSeconds",
                  "port", "pod"):
        assert f"\n  {field}\t" in steps, field
    assert "DNS-1123 label" in steps
    retry = explain(crds, "storyrun.spec.steps.retry")
    assert "default 10" in retry
    for field in ("limit", "backoffSeconds", "backoffFactor", "maxBackoffSeconds"):
        assert f"\n  {field}\t" in retry, field
    status = explain(crds, "storyrun.status")
    assert "stepStates" in status
    assert "Terminal is final" in status
    assert "Transient (retried" in explain(crds, "steprun.status")
    next_attempt = " ".join(crds.kubectl("explain", "steprun.status.nextAttemptAt").stdout.split())
    assert "(reason RetryBackoff): when its next attempt starts" in next_attempt


def test_kubectl_get_shows_the_printer_columns(crds: ControlPlane, namespace: str) -> None:
    code, output = create(crds, namespace, run("nightly", [step("a"), step("b", "a")]))
    assert code == 0, output
    crds.kubectl("patch", "sr", "nightly", "-n", namespace, "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {
                     "phase": "Running", "reason": "StepsRunning", "progress": "1/2",
                     "duration": "12s"}}))
    lines = crds.kubectl("get", "sr", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STEPS", "REASON", "AGE"]
    assert lines[1].split()[:4] == ["nightly", "Running", "1/2", "StepsRunning"]
    wide = crds.kubectl("get", "storyruns", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "PHASE", "STEPS", "REASON", "AGE", "MODE", "DURATION",
                               "REUSED"]
    assert wide[1].split()[-2:] == ["batch", "12s"]  # not a re-run: nothing reused to show

    step_run = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun",
                "metadata": {"name": "nightly-a"},
                "spec": {**step("a"), "storyRun": "nightly", "step": "a"}}
    code, output = create(crds, namespace, step_run)
    assert code == 0, output
    crds.kubectl("patch", "stpr", "nightly-a", "-n", namespace, "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {
                     "phase": "Failed", "reason": "StepFailed", "attempts": 3}}))
    lines = crds.kubectl("get", "stpr", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "RUN", "STEP", "PHASE", "ATTEMPTS", "REASON", "AGE"]
    assert lines[1].split()[:6] == ["nightly-a", "nightly", "a", "Failed", "3", "StepFailed"]
    # Both kinds are in the runctl category.
    everything = crds.kubectl("get", "runctl", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(everything) == ["steprun.runctl.dev/nightly-a", "storyrun.runctl.dev/nightly"]


def test_the_schema_refuses_a_malformed_status(crds: ControlPlane, namespace: str) -> None:
    code, output = create(crds, namespace, run("odd", [step("a")]))
    assert code == 0, output
    for patch, expected in [
        ({"phase": "Done"}, "status.phase: Unsupported value"),
        ({"stepStates": {"a": {"phase": "Finished"}}}, "status.stepStates.a.phase"),
        ({"stop": {"trigger": "Whenever"}}, "status.stop.trigger"),
        ({"conditions": [{"type": "Succeeded", "status": "Maybe"}]},
         "status.conditions[0].status"),
    ]:
        out = crds.kubectl("patch", "sr", "odd", "-n", namespace, "--subresource=status",
                           "--type=merge", "-p", json.dumps({"status": patch}), check=False)
        assert out.returncode != 0, patch
        assert expected in out.stderr, out.stderr
