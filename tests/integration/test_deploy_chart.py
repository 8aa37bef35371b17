"""The Helm chart and the plain manifests, rendered and installed into the real control plane.

What a user gets from `helm install runctl deploy/helm/runctl` (or `kubectl apply -f
deploy/manifests/`): the CRDs, a hardened operator Deployment of two replicas, and RBAC that lets
the operator do exactly what it does and nothing else, while the service account step pods run
under can touch no StoryRun or StepRun. The operator's pods are simulated by kwok (they do not
really run here); what is asserted is what the API server holds and what it would authorize.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runctl.devcluster import ControlPlane
from runctl.devcluster.cluster import REPO_ROOT
from tests.support import kubectl_json, wait_for
from tests.support_rbac import (
    Access,
    allowed,
    can,
    refused,
    service_account_kubeconfig,
    service_account_user,
)

CHART = REPO_ROOT / "deploy" / "helm" / "runctl"
MANIFESTS = REPO_ROOT / "deploy" / "manifests" / "runctl.yaml"
RENDER = REPO_ROOT / "hack" / "render-manifests.sh"
RELEASE, SYSTEM = "runctl", "runctl-system"
OPERATOR = service_account_user(SYSTEM, "runctl")
RUN_LABEL = "runctl.dev/storyrun"

# What the operator does, verb by verb, in a namespace it watches. Changing the chart's RBAC means
# changing this table on purpose.
OPERATOR_RULES: dict[tuple[str, str], set[str]] = {
    # patch: only to label a re-run with the run it re-runs.
    ("runctl.dev", "storyruns"): {"get", "list", "watch", "patch"},
    ("runctl.dev", "stories"): {"get", "list", "watch"},
    ("runctl.dev", "storyruns/status"): {"patch"},
    ("runctl.dev", "stepruns"): {"get", "list", "watch", "create", "patch", "delete"},
    ("runctl.dev", "stepruns/status"): {"patch"},
    # Only so owner references may set blockOwnerDeletion where that is enforced.
    ("runctl.dev", "storyruns/finalizers"): {"update"},
    ("runctl.dev", "stepruns/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "replicasets"): {"delete"},
    ("", "services"): {"create"},
    # deletecollection: a fan-out's stop deletes its items' live pods in one request.
    ("", "pods"): {"get", "list", "watch", "create", "delete", "deletecollection"},
    ("", "events"): {"create"},
}
# What kopf needs cluster-wide to discover resources (and namespaces, for a list of them).
DISCOVERY_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
NAMESPACE_RULES = {("", "namespaces"): {"list", "watch"}}
WEBHOOK_RULES = {("admissionregistration.k8s.io", "validatingwebhookconfigurations"):
                 {"create", "get", "patch"}}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"create", "get", "update"}}
Helm = Callable[..., subprocess.CompletedProcess[str]]
Objects = list[dict[str, Any]]
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def _access(group: str, resource: str, verb: str, namespace: str | None = None,
            name: str = "") -> Access:
    res, _, sub = resource.partition("/")
    return Access(verb, res, group=group, subresource=sub, namespace=namespace, name=name)


# -- helpers -----------------------------------------------------------------------------------


def helm_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "HELM_CACHE_HOME": str(tmp / "cache"),
            "HELM_CONFIG_HOME": str(tmp / "config"), "HELM_DATA_HOME": str(tmp / "data")}


@pytest.fixture(scope="module")
def helm(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    env = helm_env(tmp_path_factory.mktemp("helm"))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(cluster.bin_dir / "helm"), *args,
                                 f"--kubeconfig={cluster.kubeconfig}"],
                                capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


def render(helm: Helm, *values: str, namespace: str = SYSTEM) -> list[dict[str, Any]]:
    out = helm("template", RELEASE, str(CHART), "--namespace", namespace, *values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """A role's rules as {(group, resource): verbs}; resourceNames noted after a '#'."""
    result: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                names = rule.get("resourceNames")
                verbs = {f"{v}#{','.join(names)}" if names else v for v in rule["verbs"]}
                result.setdefault(key, set()).update(verbs)
    return result


def plain(rules: dict[tuple[str, str], set[str]]) -> dict[tuple[str, str], set[str]]:
    """Rules with resourceNames dropped (what the table above states)."""
    return {k: {v.split("#")[0] for v in verbs} for k, verbs in rules.items()}


def inventory(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}


def exists(cluster: ControlPlane, kind: str, namespace: str, name: str) -> bool:
    where = ["-n", namespace] if namespace else []
    return cluster.kubectl("get", kind, name, *where, check=False).returncode == 0


def require_crds() -> list[Path]:
    generated = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    if not generated:
        pytest.fail("crds/ holds no generated CRDs: run `make crds`")
    return generated


# -- rendering ---------------------------------------------------------------------------------


def test_helm_lint_passes_with_default_and_other_values(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--set", "webhook.enabled=true",
         "--set", "watchNamespaces={team-a,team-b}", "--set", "metrics.serviceMonitor.enabled=true")


def test_the_chart_carries_the_generated_crds_unchanged() -> None:
    generated = require_crds()
    copies = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in generated], \
        "deploy/helm/runctl/crds/ drifted from crds/: run hack/render-manifests.sh"
    for source, copy in zip(generated, copies, strict=True):
        assert copy.read_bytes() == source.read_bytes(), \
            f"{copy} drifted from {source}: run hack/render-manifests.sh"


def test_the_plain_manifests_are_the_chart_rendered() -> None:
    require_crds()
    check = subprocess.run(["bash", str(RENDER), "--check"], capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, f"{check.stdout[-3000:]}\n{check.stderr[-2000:]}"


def test_default_render_rbac_is_exactly_what_the_operator_does(helm: Helm) -> None:
    docs = render(helm)
    [cluster_role] = find(docs, "ClusterRole")
    assert plain(rules_of(cluster_role)) == {**DISCOVERY_RULES, **OPERATOR_RULES}
    [binding] = find(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runctl",
                                    "namespace": SYSTEM}]
    [lease_role] = find(docs, "Role")
    assert lease_role["metadata"]["namespace"] == SYSTEM
    assert rules_of(lease_role) == {("coordination.k8s.io", "leases"):
                                    {"create", "get#runctl-leader", "update#runctl-leader"}}
    assert not find(docs, "ServiceMonitor")
    assert not find(docs, "Secret")


def test_a_namespace_list_gets_a_role_in_each_and_nothing_more_cluster_wide(helm: Helm) -> None:
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    [cluster_role] = find(docs, "ClusterRole")
    assert plain(rules_of(cluster_role)) == {**DISCOVERY_RULES, **NAMESPACE_RULES}
    roles = {r["metadata"]["namespace"]: r for r in find(docs, "Role", "runctl")}
    assert set(roles) == {"team-a", "team-b"}
    for role in roles.values():
        assert plain(rules_of(role)) == OPERATOR_RULES
    bindings = {b["metadata"]["namespace"] for b in find(docs, "RoleBinding", "runctl")}
    assert bindings == {"team-a", "team-b"}
    [deployment] = find(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args


def test_the_webhook_adds_its_rules_service_and_ca_only_when_enabled(helm: Helm) -> None:
    docs = render(helm, "--set", "webhook.enabled=true")
    [cluster_role] = find(docs, "ClusterRole")
    rules = rules_of(cluster_role)
    assert plain(rules) == {**DISCOVERY_RULES, **OPERATOR_RULES, **WEBHOOK_RULES}
    assert rules[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] == {
        "create", "get#runctl.dev", "patch#runctl.dev"}
    assert find(docs, "Service", "runctl-webhook")
    [secret] = find(docs, "Secret", "runctl-webhook-ca")
    assert set(secret["data"]) == {"tls.crt", "tls.key"}
    [deployment] = find(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-host=runctl-webhook.runctl-system.svc" in args


def test_every_replica_can_sign_its_webhook_certificate_with_the_chart_ca(
        helm: Helm, tmp_path: Path) -> None:
    """The operator issues its serving certificate from the CA the chart mounts into its
    certificate directory; one CA for all replicas means one caBundle fits them all."""
    import base64
    import ssl

    from cryptography import x509

    from runctl import pki

    [secret] = find(render(helm, "--set", "webhook.enabled=true"), "Secret")
    ca = pki.CertPair(tmp_path / "runctl-webhook-ca.crt", tmp_path / "runctl-webhook-ca.key")
    ca.cert.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    ca.key.write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    host = "runctl-webhook.runctl-system.svc"
    serving = pki.issue(ca, tmp_path, "webhook", common_name=host, server=True, dns=(host,))
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(serving.cert), str(serving.key))  # a matching pair
    x509.load_pem_x509_certificate(serving.cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca.cert.read_bytes()))
    [deployment] = find(render(helm, "--set", "webhook.enabled=true"), "Deployment")
    mounts = {m["mountPath"]: m for m in
              deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    for name in ("runctl-webhook-ca.crt", "runctl-webhook-ca.key"):
        assert f"/var/run/runctl-webhook/{name}" in mounts


def test_the_author_rights_policy_ships_by_default_and_can_be_turned_off(helm: Helm) -> None:
    docs = render(helm)
    [policy] = find(docs, "ValidatingAdmissionPolicy")
    [binding] = find(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        ["runctl.dev"], ["storyruns", "stories"], ["CREATE", "UPDATE"])
    [condition] = policy["spec"]["matchConditions"]
    assert "serviceAccountName" in condition["expression"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    off = render(helm, "--set", "admissionPolicy.enabled=false")
    assert not find(off, "ValidatingAdmissionPolicy")
    assert not find(off, "ValidatingAdmissionPolicyBinding")
    scoped = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    [binding] = find(scoped, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]


def test_metrics_service_and_service_monitor(helm: Helm) -> None:
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true")
    [service] = find(docs, "Service", "runctl-metrics")
    assert service["spec"]["ports"][0]["port"] == 8080
    [monitor] = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    off = render(helm, "--set", "metrics.enabled=false")
    assert not find(off, "Service")
    [deployment] = find(off, "Deployment")
    assert "--metrics-port=0" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_operator_deployment_is_hardened_and_probed_on_kopf_endpoint(helm: Helm) -> None:
    [deployment] = find(render(helm), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "runctl"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert ports[container[probe]["httpGet"]["port"]] == 8081
    env = {e["name"]: e for e in container["env"]}
    assert env["RUNCTL_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.namespace"
    assert env["RUNCTL_LEASE_NAME"]["value"] == "runctl-leader"
    assert env["RUNCTL_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The read-only root needs somewhere to write temporary files.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


# -- installed into the control plane ----------------------------------------------------------


@pytest.fixture(scope="module")
def release(helm: Helm, cluster: ControlPlane) -> Iterator[Objects]:
    """`helm install runctl` into runctl-system; yields the objects of the release.

    The CRDs come from the chart's crds/ directory (Helm skips those that already exist)."""
    helm("uninstall", RELEASE, "-n", SYSTEM, "--ignore-not-found")
    # The operator's pods are simulated: kwok keeps them "running" (a real cluster ignores this).
    helm("install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace",
         "--set-string", r"podAnnotations.sim\.runctl\.dev/duration=forever")
    manifest = helm("get", "manifest", RELEASE, "-n", SYSTEM).stdout
    yield [doc for doc in yaml.safe_load_all(manifest) if doc]
    helm("uninstall", RELEASE, "-n", SYSTEM, "--ignore-not-found", "--wait")


@pytest.mark.integration
def test_helm_install_creates_everything(cluster: ControlPlane, release: Objects) -> None:
    crds = cluster
    kinds = {d["kind"] for d in release}
    assert kinds >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                     "RoleBinding", "Service", "Deployment", "Lease", "PodDisruptionBudget",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    missing = [k for k in inventory(release) if not exists(crds, *k)]
    assert not missing
    for crd in ("storyruns.runctl.dev", "stepruns.runctl.dev", "stories.runctl.dev"):
        assert exists(crds, "crd", "", crd)
    # kwok plays the kubelet: the two replicas are scheduled and "run", on different nodes.
    def running() -> list[dict[str, Any]]:
        pods = kubectl_json(crds, "get", "pods", "-n", SYSTEM,
                            "-l", "app.kubernetes.io/name=runctl")["items"]
        return [p for p in pods if p["status"].get("phase") == "Running"]

    pods = wait_for("two running operator pods", lambda: len(running()) == 2 and running())
    assert len({p["spec"]["nodeName"] for p in pods}) == 2


@pytest.mark.integration
def test_the_operator_account_may_do_exactly_what_it_does(cluster: ControlPlane,
                                                          release: Objects) -> None:
    crds = cluster  # authorization needs no CRDs
    namespace = "anywhere"
    may = [_access(group, resource, verb, ns)
           for (group, resource), verbs in OPERATOR_RULES.items()
           for verb in verbs for ns in (namespace, None)]
    may += [_access("apiextensions.k8s.io", "customresourcedefinitions", v)
            for v in ("list", "watch")]
    may += [_access("coordination.k8s.io", "leases", "create", SYSTEM)]
    may += [_access("coordination.k8s.io", "leases", v, SYSTEM, "runctl-leader")
            for v in ("get", "update")]
    assert not refused(crds, OPERATOR, may)

    may_not = [_access(group, resource, verb, ns)
               for (group, resource), verbs in OPERATOR_RULES.items()
               for verb in ALL_VERBS if verb not in verbs for ns in (namespace, None)]
    may_not += [
        _access("", "secrets", "get", namespace), _access("", "secrets", "list"),
        _access("", "secrets", "get", SYSTEM), _access("", "configmaps", "get", namespace),
        _access("", "pods/exec", "create", namespace), _access("", "pods/log", "get", namespace),
        _access("", "serviceaccounts/token", "create", namespace),
        _access("", "namespaces", "list"), _access("", "namespaces", "delete"),
        _access("", "nodes", "list"),
        _access("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        _access("apiextensions.k8s.io", "customresourcedefinitions", "create"),
        _access("apiextensions.k8s.io", "customresourcedefinitions", "delete"),
        _access("coordination.k8s.io", "leases", "get", SYSTEM, "someone-elses"),
        _access("coordination.k8s.io", "leases", "delete", SYSTEM, "runctl-leader"),
        _access("coordination.k8s.io", "leases", "get", namespace, "runctl-leader"),
        _access("coordination.k8s.io", "leases", "create", namespace),
        _access("admissionregistration.k8s.io", "validatingwebhookconfigurations", "create"),
        _access("rbac.authorization.k8s.io", "clusterroles", "escalate"),
        _access("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
        _access("", "users", "impersonate"),
    ]
    assert not allowed(crds, OPERATOR, may_not)


@pytest.mark.integration
def test_a_token_of_the_chart_account_is_refused_outside_its_role(
        crds: ControlPlane, release: Objects, tmp_path: Path) -> None:
    config = service_account_kubeconfig(crds, SYSTEM, "runctl", tmp_path / "runctl.kubeconfig")

    def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(crds.bin_dir / "kubectl"), f"--kubeconfig={config}", *args],
                              capture_output=True, text=True, timeout=60)

    assert as_operator("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
                       ).stdout == OPERATOR
    reads: list[tuple[str, ...]] = [
        ("get", "storyruns", "-A"), ("get", "stories", "-A"),
        ("get", "stepruns", "-A", "-l", RUN_LABEL),
        ("get", "deployments,pods", "-A", "-l", RUN_LABEL),
        ("get", "lease", "runctl-leader", "-n", SYSTEM)]
    for args in reads:
        result = as_operator(*args)
        assert result.returncode == 0, f"{args}: {result.stderr}"
    writes: list[tuple[str, ...]] = [
        ("get", "secrets", "-n", SYSTEM), ("get", "configmaps", "-A"),
        ("get", "jobs", "-A"),
        ("delete", "storyrun", "any", "-n", "default"),
        ("create", "namespace", f"x-{uuid.uuid4().hex[:6]}")]
    for args in writes:
        result = as_operator(*args)
        assert result.returncode != 0, args
        assert "forbidden" in result.stderr.lower(), result.stderr


@pytest.mark.integration
def test_leader_election_works_with_the_chart_rbac(
        cluster: ControlPlane, release: Objects, tmp_path: Path) -> None:
    crds = cluster
    import asyncio

    from kubernetes import config as kube_config

    from runctl.operator.leader import LeaderElector

    path = service_account_kubeconfig(crds, SYSTEM, "runctl", tmp_path / "runctl.kubeconfig")
    api = kube_config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    elector = LeaderElector(api, SYSTEM, "runctl-leader", "test-replica", lease_seconds=4,
                            renew_seconds=1, retry_seconds=0.25)

    async def lead_once() -> bool:
        task = asyncio.create_task(elector.run())
        try:
            await asyncio.wait_for(elector.leading.wait(), timeout=10)
            return True
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(lead_once())
    lease = kubectl_json(crds, "get", "lease", "runctl-leader", "-n", SYSTEM)
    assert lease["spec"]["leaseTransitions"] == 1  # acquired once, released on the way out
    assert not lease["spec"].get("holderIdentity")


@pytest.mark.integration
def test_step_pods_account_cannot_touch_runs(cluster: ControlPlane, release: Objects,
                                             namespace: str, tmp_path: Path) -> None:
    """Step pods run under their namespace's default account (no token unless a step names an
    account); that account may not read or write StoryRuns or StepRuns."""
    crds = cluster
    user = service_account_user(namespace, "default")
    asks = [_access("runctl.dev", resource, verb, ns)
            for resource in ("storyruns", "stepruns", "storyruns/status", "stepruns/status")
            for verb in ALL_VERBS for ns in (namespace, None)]
    assert not allowed(crds, user, asks)
    # And by real calls with its token (authorization comes before the resource is looked up).
    config = service_account_kubeconfig(crds, namespace, "default", tmp_path / "kubeconfig")
    for plural in ("storyruns", "stepruns"):
        result = subprocess.run(
            [str(crds.bin_dir / "kubectl"), f"--kubeconfig={config}", "get", "--raw",
             f"/apis/runctl.dev/v1alpha1/namespaces/{namespace}/{plural}"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "forbidden" in result.stderr.lower(), result.stderr


@pytest.mark.integration
def test_helm_uninstall_leaves_no_operator_objects_but_keeps_the_crds(
        crds: ControlPlane, helm: Helm, release: Objects) -> None:
    helm("uninstall", RELEASE, "-n", SYSTEM, "--wait")
    left = [k for k in inventory(release) if exists(crds, *k)]
    assert not left
    selector = f"app.kubernetes.io/instance={RELEASE}"
    for kind in ("clusterroles,clusterrolebindings", "all,roles,rolebindings,leases,pdb"):
        assert not kubectl_json(crds, "get", kind, "-A", "-l", selector)["items"], kind
    pods = wait_for("the operator pods to go", lambda: not kubectl_json(
        crds, "get", "pods", "-n", SYSTEM, "-l", selector)["items"], timeout=60)
    assert pods
    for crd in ("storyruns.runctl.dev", "stepruns.runctl.dev", "stories.runctl.dev"):
        assert exists(crds, "crd", "", crd), "Helm keeps CRDs"


@pytest.mark.integration
def test_plain_manifests_install_the_same(crds: ControlPlane, helm: Helm) -> None:
    helm("uninstall", RELEASE, "-n", SYSTEM, "--ignore-not-found", "--wait")
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    chart_objects = inventory(render(helm))
    assert inventory([d for d in docs if d["kind"] not in
                      ("Namespace", "CustomResourceDefinition")]) == chart_objects
    crds.kubectl("apply", "-f", str(MANIFESTS.parent))
    try:
        missing = [k for k in inventory(docs) if not exists(crds, *k)]
        assert not missing
        assert can(crds, OPERATOR, _access("runctl.dev", "stepruns", "create", "anywhere"))
        assert not can(crds, OPERATOR, _access("", "secrets", "get", SYSTEM))
    finally:
        # Everything but the CRDs (other tests' runs live in them) and the namespace's contents.
        keep = ("CustomResourceDefinition",)
        rest = [d for d in docs if d["kind"] not in keep]
        crds.kubectl("delete", "--ignore-not-found", "--wait=true", "-f", "-",
                     input="\n---\n".join(json.dumps(d) for d in rest))


@pytest.mark.integration
def test_a_namespace_list_confines_the_operator_to_those_namespaces(
        cluster: ControlPlane, helm: Helm, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b, system = f"team-a-{suffix}", f"team-b-{suffix}", f"runctl-scoped-{suffix}"
    for ns in (team_a, team_b):
        cluster.kubectl("create", "namespace", ns)
    release = f"runctl-scoped-{suffix}"
    helm("install", release, str(CHART), "-n", system, "--create-namespace",
         "--set", f"watchNamespaces={{{team_a},{team_b}}}")
    try:
        user = service_account_user(system, release)
        inside = [_access("runctl.dev", "stepruns", verb, ns)
                  for verb in ("list", "watch", "create", "delete") for ns in (team_a, team_b)]
        inside += [_access("", "namespaces", "list"),
                   _access("coordination.k8s.io", "leases", "update", system, "runctl-leader")]
        assert not refused(cluster, user, inside)
        outside = [_access("runctl.dev", "stepruns", verb, ns)
                   for verb in ("list", "watch", "create", "delete") for ns in (namespace, None)]
        outside += [_access("", "pods", "create", namespace),
                    _access("batch", "jobs", "create", team_a),
                    _access("runctl.dev", "storyruns", "list")]
        assert not allowed(cluster, user, outside)
    finally:
        helm("uninstall", release, "-n", system, "--wait")
        cluster.kubectl("delete", "namespace", team_a, team_b, system, "--wait=false")
