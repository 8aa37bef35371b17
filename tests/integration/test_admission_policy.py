"""The author's rights bound the run: the chart's ValidatingAdmissionPolicy, proven with real users.

Users here are people as the API server knows them: client certificates from the control plane's
CA, granted only what a Role binds to their name. No operator runs in this module: the API server
enforces the policy alone, so it holds while every operator replica is down.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runctl.devcluster import ControlPlane
from tests.integration.test_deploy_chart import CHART, Helm
from tests.integration.test_deploy_chart import helm as helm
from tests.support import step as sim_step
from tests.support import storyrun, wait_for
from tests.support_rbac import service_account_kubeconfig, user_kubeconfig

pytestmark = pytest.mark.integration

RELEASE = "runctl-policy"
POLICY = f"{RELEASE}-author-may-run-pods"
RUNS_RULE = {"apiGroups": ["runctl.dev"], "resources": ["storyruns"],
             "verbs": ["create", "get", "list"]}
STORIES_RULE = {"apiGroups": ["runctl.dev"], "resources": ["stories"],
                "verbs": ["create", "get", "list", "update", "patch"]}
PODS_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}


def rendered(helm: Helm, template: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    out = helm("template", RELEASE, str(CHART), "--namespace", namespace,
               "--show-only", f"templates/{template}", *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def as_user(cluster: ControlPlane, config: Path, *args: str,
            body: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={config}", *args],
        input=json.dumps(body) if body else None, capture_output=True, text=True, timeout=60)


def create(cluster: ControlPlane, config: Path, namespace: str, body: dict[str, Any],
               *extra: str) -> subprocess.CompletedProcess[str]:
    return as_user(cluster, config, "create", "-n", namespace, "-f", "-", *extra, body=body)


def grant(cluster: ControlPlane, namespace: str, name: str, rules: list[dict[str, Any]],
          subject: dict[str, str]) -> None:
    """A Role of `rules` in `namespace` bound to `subject` (a User or a ServiceAccount)."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": rules}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": name},
               "subjects": [subject]}
    for obj in (role, binding):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def user(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def run_body(name: str, service_account: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if service_account:
        extra["pod"] = {"serviceAccountName": service_account}
    return storyrun(name, [{**sim_step("only"), **extra}])


def story_body(name: str, service_account: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if service_account:
        extra["pod"] = {"serviceAccountName": service_account}
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "Story", "metadata": {"name": name},
            "spec": {"steps": [sim_step("first"), {**sim_step("second", "first"), **extra}]}}


@pytest.fixture(scope="module")
def policy(crds: ControlPlane, helm: Helm, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[ControlPlane]:
    """The chart's policy and binding (as `helm install` makes them), in effect.

    A new policy takes a moment to be enforced: wait until a user with no rights at all is
    refused by it (a dry run, which admission judges like any create)."""
    docs = rendered(helm, "admission-policy.yaml", "runctl-system")
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding"]
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    crds.kubectl("apply", "-f", "-", input=manifest)
    nobody = user_kubeconfig(crds, "policy-probe", tmp_path_factory.mktemp("probe") / "kc")
    grant(crds, "default", "policy-probe", [RUNS_RULE], user("policy-probe"))

    def enforced() -> bool:
        out = create(crds, nobody, "default", run_body("probe"), "--dry-run=server")
        return out.returncode != 0 and POLICY in out.stderr

    wait_for("the admission policy to be enforced", enforced, timeout=60)
    yield crds
    crds.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest)


def test_the_api_server_needs_no_flag_for_admission_policies(policy: ControlPlane) -> None:
    """ValidatingAdmissionPolicy is GA and on by default since Kubernetes 1.30: the local
    kube-apiserver is started with no admission or feature flag for it, and enforces it."""
    args = json.loads((policy.workdir / "kube-apiserver.args").read_text())
    assert not [a for a in args if "AdmissionPolicy" in a or a.startswith(
        ("--enable-admission-plugins", "--feature-gates", "--runtime-config"))]
    resources = policy.kubectl("api-resources", "--api-group=admissionregistration.k8s.io",
                               "-o", "name").stdout.split()
    assert "validatingadmissionpolicies.admissionregistration.k8s.io" in resources


def test_a_run_author_who_may_not_create_pods_is_refused_naming_the_right(
        policy: ControlPlane, namespace: str, tmp_path: Path) -> None:
    alice = f"alice-{namespace}"
    grant(policy, namespace, "runs-only", [RUNS_RULE], user(alice))
    config = user_kubeconfig(policy, alice, tmp_path / "alice")
    whoami = as_user(policy, config, "auth", "whoami", "-o",
                     "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == alice
    assert as_user(policy, config, "auth", "can-i", "create", "storyruns.runctl.dev",
                   "-n", namespace).stdout.strip() == "yes"
    for name, account in (("plain", None), ("with-account", "default")):
        out = create(policy, config, namespace, run_body(name, account))
        assert out.returncode != 0
        assert (f"{alice} may not create pods in namespace {namespace}: creating a StoryRun "
                "needs that right too") in out.stderr, out.stderr
        assert (f'storyruns.runctl.dev "{name}" is forbidden: ValidatingAdmissionPolicy '
                f"'{POLICY}' with binding '{POLICY}' denied request") in out.stderr
        assert policy.kubectl("get", "sr", name, "-n", namespace,
                              check=False).returncode != 0


def test_a_run_author_who_may_create_pods_is_allowed(
        policy: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """With the right to create pods, a step may name any service account of the namespace:
    Kubernetes itself lets such a user run pods under any of them."""
    bob = f"bob-{namespace}"
    grant(policy, namespace, "runs-and-pods", [RUNS_RULE, PODS_RULE], user(bob))
    policy.kubectl("create", "serviceaccount", "etl-runner", "-n", namespace)
    config = user_kubeconfig(policy, bob, tmp_path / "bob")
    for name, account in (("plain", None), ("with-account", "etl-runner")):
        out = create(policy, config, namespace, run_body(name, account))
        assert out.returncode == 0, out.stderr
    assert as_user(policy, config, "get", "sr", "with-account", "-n", namespace, "-o",
                   "jsonpath={.spec.steps[0].pod.serviceAccountName}").stdout == "etl-runner"


def test_the_operator_account_cannot_create_a_run_to_bypass_it(
        policy: ControlPlane, helm: Helm, namespace: str, tmp_path: Path) -> None:
    """The chart grants the operator no `create` (nor `update`) on StoryRuns: RBAC refuses it
    before the policy is asked. (The account may create pods, since it runs batch attempts as
    pods, so a run could give it nothing it does not already hold; what keeps runs bounded is
    that the operator acts only for runs that people created.)"""
    docs = [*rendered(helm, "serviceaccount.yaml", namespace),
            *rendered(helm, "rbac.yaml", namespace, "--set", f"watchNamespaces={{{namespace}}}",
                      "--set", "leaderElection.enabled=false")]
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    policy.kubectl("apply", "-f", "-", input=manifest)
    try:
        config = service_account_kubeconfig(policy, namespace, RELEASE, tmp_path / "operator")
        account = f"system:serviceaccount:{namespace}:{RELEASE}"
        refused = create(policy, config, namespace, run_body("by-operator"))
        assert refused.returncode != 0
        assert (f'User "{account}" cannot create resource "storyruns" in API group '
                '"runctl.dev"' in refused.stderr), refused.stderr
        for verb in ("create", "update"):
            assert as_user(policy, config, "auth", "can-i", verb, "storyruns.runctl.dev",
                           "-n", namespace).stdout.strip() == "no", verb
        # patch, to label re-runs: a patch cannot change what a run executes (its shape is
        # immutable, refused by the CRD's rules), so it gives no way round the policy either.
        assert as_user(policy, config, "auth", "can-i", "patch", "storyruns.runctl.dev",
                       "-n", namespace).stdout.strip() == "yes"
    finally:
        policy.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest)


def test_a_story_naming_a_service_account_needs_the_right_to_create_pods(
        policy: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """Whoever writes a Story chooses the service accounts its runs' pods use: naming one, on
    create or on update, takes the right to create pods. A Story naming none is not judged
    (its runs are)."""
    carol = f"carol-{namespace}"
    grant(policy, namespace, "stories-only", [STORIES_RULE], user(carol))
    config = user_kubeconfig(policy, carol, tmp_path / "carol")
    refusal = (f"{carol} may not create pods in namespace {namespace}: writing a Story whose "
               "steps name service accounts needs that right too")
    out = create(policy, config, namespace, story_body("named", "default"))
    assert out.returncode != 0
    assert refusal in out.stderr, out.stderr
    assert (f'stories.runctl.dev "named" is forbidden: ValidatingAdmissionPolicy '
            f"'{POLICY}' with binding '{POLICY}' denied request") in out.stderr
    assert policy.kubectl("get", "story", "named", "-n", namespace, check=False).returncode != 0

    plain = create(policy, config, namespace, story_body("plain"))
    assert plain.returncode == 0, plain.stderr
    patch = json.dumps([{"op": "add", "path": "/spec/steps/1/pod/serviceAccountName",
                         "value": "default"}])
    edit = as_user(policy, config, "patch", "story", "plain", "-n", namespace, "--type=json",
                   "-p", patch)
    assert edit.returncode != 0
    assert refusal in edit.stderr, edit.stderr
    stored = policy.kubectl("get", "story", "plain", "-n", namespace, "-o",
                            "jsonpath={.spec.steps[1].pod}").stdout
    assert "serviceAccountName" not in stored
    # An edit that names no service account is not the policy's business.
    relabel = as_user(policy, config, "label", "story", "plain", "-n", namespace, "team=a")
    assert relabel.returncode == 0, relabel.stderr


def test_a_story_author_who_may_create_pods_may_name_service_accounts(
        policy: ControlPlane, namespace: str, tmp_path: Path) -> None:
    dave = f"dave-{namespace}"
    grant(policy, namespace, "stories-and-pods", [STORIES_RULE, PODS_RULE], user(dave))
    config = user_kubeconfig(policy, dave, tmp_path / "dave")
    out = create(policy, config, namespace, story_body("named", "etl-runner"))
    assert out.returncode == 0, out.stderr
    patch = json.dumps([{"op": "replace", "path": "/spec/steps/1/pod/serviceAccountName",
                         "value": "default"}])
    edit = as_user(policy, config, "patch", "story", "named", "-n", namespace, "--type=json",
                   "-p", patch)
    assert edit.returncode == 0, edit.stderr
    assert as_user(policy, config, "get", "story", "named", "-n", namespace, "-o",
                   "jsonpath={.spec.steps[1].pod.serviceAccountName}").stdout == "default"
