"""Creates the API server forbids (here: a ResourceQuota of zero) may be allowed later, as on any
cluster: the run waits, says why in a Warning Event, and goes on once the quota is lifted. It is
never left silently Running, and nothing it could not create is recorded as started."""

from __future__ import annotations

import json

import pytest

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import (
    apply,
    events,
    get_run,
    items,
    kubectl_json,
    step,
    step_states,
    storyrun,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration


def _quota(cluster: ControlPlane, namespace: str, resource: str) -> None:
    """No object of `resource` may be created in the namespace (from the moment the quota
    controller has taken the quota up: admission enforces a quota from its status; until it
    has counted a custom resource it refuses with "status unknown", a refusal as well)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "none"},
        "spec": {"hard": {f"count/{resource}": "0"}}}))
    wait_for("the quota to be taken up", lambda: f"count/{resource}" in kubectl_json(
        cluster, "get", "resourcequota", "none", "-n", namespace).get("status", {}).get(
        "hard", {}))


@pytest.mark.parametrize(("resource", "kind", "target"), [
    ("stepruns.runctl.dev", "StepRun", "capped"),
    ("pods", "Pod", "capped-a"),
])
def test_a_run_over_a_quota_waits_says_why_and_goes_on_once_it_is_lifted(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str, resource: str,
        kind: str, target: str) -> None:
    _quota(cluster, namespace, resource)
    apply(cluster, namespace, storyrun("capped", [step("a"), step("b", "a")]))
    said = wait_for("a Warning Event saying why", lambda: [
        e for e in events(cluster, namespace, target) if e["reason"] == "CreateForbidden"])
    assert f"{kind} " in said[0]["message"]
    assert "quota: none" in said[0]["message"]
    run = get_run(cluster, namespace, "capped")
    assert (run.get("status") or {}).get("phase") in (None, "Pending", "Running")
    if kind == "StepRun":  # nothing that could not be created is recorded as started
        assert not items(cluster, namespace, "stepruns")
        assert step_states(run).get("a", {}).get("stepRun") is None

    cluster.kubectl("delete", "resourcequota", "none", "-n", namespace)
    run = wait_terminal(cluster, namespace, "capped", timeout=90)
    assert run["status"]["phase"] == "Succeeded"
    assert len(items(cluster, namespace, "stepruns")) == 2
