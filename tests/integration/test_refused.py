"""Creates the API server forbids (here: a ResourceQuota of zero) may be allowed later, as on any
cluster: the run waits, says why in a Warning Event, and goes on once the quota is lifted. It is
never left silently Running, and nothing it could not create is recorded as started. A create it
refuses as invalid never succeeds: the step (or the item) fails with the API server's words."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import ITEM_LABEL, STEP_LABEL
from runctl.devcluster import ControlPlane
from runctl.operator import kube
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


REFUSED_ITEM = "2"
WHY = "item 2 may not run in this namespace"


def _probe_steprun(namespace: str, item: str) -> dict[str, object]:
    """A StepRun as the operator makes an item's (labels, the fields the schema asks for)."""
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StepRun",
            "metadata": {"name": f"probe-{item}", "namespace": namespace,
                         "labels": {STEP_LABEL: "each", ITEM_LABEL: item}},
            "spec": {"name": "each", "step": "each", "storyRun": "probe", "mode": "batch",
                     "image": "example.invalid/each:1"}}


@pytest.fixture
def item_policy(crds: ControlPlane, namespace: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy (cluster-scoped: removed whatever the test does) refusing as
    Invalid, in this namespace only, the create of a StepRun labelled item 2; yields its name
    once the API server enforces it with a 422."""
    name = f"no-item-{REFUSED_ITEM}-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": ["runctl.dev"], "apiVersions": ["*"],
                     "operations": ["CREATE"], "resources": ["stepruns"]}]},
                 "validations": [{
                     "expression": f"!has(object.metadata.labels) || "
                                   f"!('{ITEM_LABEL}' in object.metadata.labels) || "
                                   f"object.metadata.labels['{ITEM_LABEL}'] != "
                                   f"'{REFUSED_ITEM}'",
                     "message": WHY, "reason": "Invalid"}]}}
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}}}
    custom = client.CustomObjectsApi(crds.api_client())

    def denial() -> int | None:
        """The status of the policy's refusal of item 2's create (a dry run), once it
        refuses it."""
        try:
            custom.create_namespaced_custom_object(
                "runctl.dev", "v1alpha1", namespace, "stepruns",
                _probe_steprun(namespace, REFUSED_ITEM), dry_run="All")
        except ApiException as exc:
            return exc.status if WHY in (exc.body or "") else None
        return None

    try:
        crds.kubectl("apply", "-f", "-", input=json.dumps(policy))
        crds.kubectl("apply", "-f", "-", input=json.dumps(binding))
        status = wait_for("the item policy to be enforced", denial, timeout=60)
        assert (status, kube.classify(status)) == (422, kube.Outcome.INVALID)
        custom.create_namespaced_custom_object(  # any other item is let through
            "runctl.dev", "v1alpha1", namespace, "stepruns", _probe_steprun(namespace, "1"),
            dry_run="All")
        yield name
    finally:
        crds.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found")
        crds.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found")


def test_an_item_whose_steprun_is_refused_as_invalid_fails_and_the_run_ends(
        item_policy: str, operator: OperatorProcess, namespace: str,
        crds: ControlPlane) -> None:
    """Sending that create again can never succeed: the item fails with the API server's
    words, its siblings run on (`onFailure: continue`), and the run ends instead of creating
    the refused StepRun at every reconcile forever."""
    apply(crds, namespace, storyrun("refused-item", [
        step("each", forEach={"items": ["a", "b", "c", "d"], "parallelism": 4})],
        onFailure="continue"))
    run = wait_terminal(crds, namespace, "refused-item", timeout=120)
    assert run["status"]["phase"] == "Failed", run["status"]
    each = step_states(run)["each"]
    assert each["phase"] == "Failed"
    assert each["items"] == {"total": 4, "Succeeded": 3, "Failed": 1}, each
    [failed] = each["failedItems"]
    assert failed["index"] == int(REFUSED_ITEM)
    assert failed["reason"] == "StepFailed"
    assert WHY in failed["message"], failed
    assert item_policy in failed["message"], failed
    assert f"item {REFUSED_ITEM} of 4 ended Failed" in each["message"]
    made = items(crds, namespace, "stepruns", f"{STEP_LABEL}=each")
    assert sorted(sr["metadata"]["labels"][ITEM_LABEL] for sr in made) == ["0", "1", "3"]
    assert all(sr["status"]["phase"] == "Succeeded" for sr in made)
    assert not items(crds, namespace, "stepruns", f"{ITEM_LABEL}={REFUSED_ITEM}")
