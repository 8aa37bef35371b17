"""runctl as users install it: the operator image (made here without Docker) installed by
`helm install` of deploy/helm/runctl onto the real node, two replicas electing a leader, a
StoryRun whose steps run real containers, and `helm uninstall` leaving nothing of runctl."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runctl.devcluster import ControlPlane, images, operator_image, realnode
from runctl.devcluster.cluster import REPO_ROOT
from tests.realpods.conftest import ON_REAL_NODE
from tests.realpods.test_steps import processes_running, sh, steprun
from tests.support import apply, kubectl_json, step_states, storyrun, wait_for, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.realpods]

CHART = REPO_ROOT / "deploy" / "helm" / "runctl"
SYSTEM = "runctl-system"
RELEASE = "runctl"
VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
IMAGE = images.image_name("runctl", VERSION)


def helm(cluster: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.bin_dir / "helm"), *args], check=True,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})


@pytest.fixture(scope="module")
def installed(real_cluster: ControlPlane, node_binaries: Path) -> Iterator[ControlPlane]:
    """The operator image built and loaded on the real node, the chart installed with it."""
    cache = node_binaries.parent.parent
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = Path(tmp) / "runctl.tar"
        operator_image.build(cache, REPO_ROOT, archive, IMAGE)
        realnode.RealNode(real_cluster, node_binaries).import_image(IMAGE, archive=archive)
    repository, tag = IMAGE.rsplit(":", 1)
    helm(real_cluster, "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never",
         "--set-json", f"nodeSelector={json.dumps(ON_REAL_NODE['nodeSelector'])}",
         "--set-json", f"tolerations={json.dumps(ON_REAL_NODE['tolerations'])}",
         "--wait", "--timeout=240s")
    yield real_cluster
    helm(real_cluster, "uninstall", RELEASE, "-n", SYSTEM, "--ignore-not-found", "--wait")


def operator_pods(cluster: ControlPlane) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl_json(
        cluster, "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=runctl")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))]


def leader(cluster: ControlPlane) -> str:
    lease = kubectl_json(cluster, "get", "lease", "runctl-leader", "-n", SYSTEM)
    return str(lease["spec"].get("holderIdentity") or "")


def run_two_steps(cluster: ControlPlane, namespace: str, name: str) -> None:
    apply(cluster, namespace, storyrun(name, [
        sh("count", 'echo \'{"rows": "7"}\' > /dev/termination-log', outputs=[{"name": "rows"}]),
        sh("check", 'echo "got $0"; [ "$0" = 7 ] && exit 4', "count",
           args=["${{ steps.count.outputs.rows }}"]),
    ]))
    run = wait_terminal(cluster, namespace, name, timeout=180)
    assert step_states(run)["count"]["phase"] == "Succeeded"
    assert steprun(cluster, namespace, name, "count")["status"]["outputs"] == {"rows": "7"}
    check = steprun(cluster, namespace, name, "check")
    assert check["status"]["phase"] == "Failed"
    assert check["status"]["failureClass"] == "Permanent"
    assert cluster.kubectl("logs", "-n", namespace, f"{name}-check-1").stdout == "got 7\n"


def test_the_chart_runs_the_operator_on_the_real_node(installed: ControlPlane,
                                                     real_namespace: str) -> None:
    pods = wait_for("two Ready operator replicas",
                    lambda: len(operator_pods(installed)) == 2 and operator_pods(installed),
                    timeout=120)
    assert {p["spec"]["nodeName"] for p in pods} == {realnode.NODE_NAME}
    for pod in pods:
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        status = pod["status"]["containerStatuses"][0]
        assert status["imageID"]  # a real container, from the image loaded here
    assert processes_running(f"{operator_image.VENV}/bin/python")  # real processes
    first = wait_for("a leader", lambda: leader(installed), timeout=60)
    assert first.split("_")[0] in {p["metadata"]["name"] for p in pods}

    run_two_steps(installed, real_namespace, "before")

    # The leader's pod is killed: the other replica takes the Lease and runs the next run.
    installed.kubectl("delete", "pod", "-n", SYSTEM, first.split("_")[0], "--grace-period=0",
                      "--force")
    survivor = wait_for("the other replica to lead", lambda: (
        (who := leader(installed)) and who.split("_")[0] != first.split("_")[0] and who),
        timeout=120)
    assert survivor.split("_")[0] in {p["metadata"]["name"] for p in pods}
    run_two_steps(installed, real_namespace, "after")


def test_helm_uninstall_leaves_nothing_of_runctl(installed: ControlPlane) -> None:
    manifest = helm(installed, "get", "manifest", RELEASE, "-n", SYSTEM).stdout
    objects = [d for d in yaml.safe_load_all(manifest) if d]
    helm(installed, "uninstall", RELEASE, "-n", SYSTEM, "--wait")
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
        if obj["metadata"].get("namespace") or kind not in CLUSTER_KINDS:
            args += ["-n", obj["metadata"].get("namespace", SYSTEM)]
        assert installed.kubectl(*args).stdout == "", f"{kind} {name} is still there"
    wait_for("the operator's pods to be gone", lambda: not kubectl_json(
        installed, "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=runctl")["items"],
        timeout=120)
    wait_for("the operator's processes to end",
             lambda: not processes_running(f"{operator_image.VENV}/bin/python"), timeout=60)
    for kind in ("clusterroles", "clusterrolebindings", "validatingwebhookconfigurations",
                 "validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        names = installed.kubectl("get", kind, "-o", "name").stdout.split()
        assert not [n for n in names if "runctl" in n], kind
    # What Helm keeps by design (the chart's README says so): the CRDs, and so every run.
    assert installed.kubectl("get", "crd", "storyruns.runctl.dev", "-o", "name").stdout


CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                 "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration",
                 "CustomResourceDefinition", "Namespace"}
