"""The simulated nodes behave as API.md says, so later tests can rely on them."""

from __future__ import annotations

import ipaddress
import json

import pytest

from runctl.devcluster import ControlPlane
from tests.support import kubectl_json, wait_for

pytestmark = pytest.mark.integration


def _job(name: str, annotations: dict[str, str]) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "example.invalid/step:1"}]},
            },
        },
    })


def _job_condition(cluster: ControlPlane, ns: str, name: str) -> str | None:
    job = kubectl_json(cluster, "get", "job", name, "-n", ns)
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return str(c["type"])
    return None


def test_job_pod_runs_for_its_duration_then_completes(cluster: ControlPlane,
                                                      namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=_job("two-seconds", {"sim.runctl.dev/duration": "2s"}))
    wait_for("the pod to run", lambda: kubectl_json(
        cluster, "get", "pods", "-n", namespace, "-l", "job-name=two-seconds")["items"]
        and kubectl_json(cluster, "get", "pods", "-n", namespace, "-l",
                         "job-name=two-seconds")["items"][0]["status"].get("phase") == "Running")
    assert wait_for("the job to finish",
                    lambda: _job_condition(cluster, namespace, "two-seconds")) == "Complete"
    pod = kubectl_json(cluster, "get", "pods", "-n", namespace,
                       "-l", "job-name=two-seconds")["items"][0]
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0


def test_job_pod_fails_with_exit_code_and_message(cluster: ControlPlane, namespace: str) -> None:
    message = '{"rows": "0", "error": "no input"}'
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_job("exit-three", {
        "sim.runctl.dev/duration": "500ms", "sim.runctl.dev/exit-code": "3",
        "sim.runctl.dev/message": message,
    }))
    assert wait_for("the job to finish",
                    lambda: _job_condition(cluster, namespace, "exit-three")) == "Failed"
    pod = kubectl_json(cluster, "get", "pods", "-n", namespace,
                       "-l", "job-name=exit-three")["items"][0]
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == message


def test_exit_code_goes_to_the_default_container(cluster: ControlPlane, namespace: str) -> None:
    """A pod that names its main container (Argo Workflows lists its `wait` sidecar first and
    names `main` in kubectl.kubernetes.io/default-container) gets the exit code and message on
    that container; the others end with 0."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sidecar-first", "annotations": {
            "kubectl.kubernetes.io/default-container": "main",
            "sim.runctl.dev/duration": "500ms", "sim.runctl.dev/exit-code": "3",
            "sim.runctl.dev/message": "no input"}},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "wait", "image": "example.invalid/wait:1"},
            {"name": "main", "image": "example.invalid/step:1"}]},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))

    def ended_pod() -> dict | None:
        got = kubectl_json(cluster, "get", "pod", "sidecar-first", "-n", namespace)
        return got if got["status"].get("phase") in ("Succeeded", "Failed") else None

    ended = wait_for("the pod to end", ended_pod)
    assert ended["status"]["phase"] == "Failed"
    states = {c["name"]: c["state"]["terminated"] for c in ended["status"]["containerStatuses"]}
    assert (states["main"]["exitCode"], states["main"]["reason"]) == (3, "Error")
    assert states["main"]["message"] == "no input"
    assert (states["wait"]["exitCode"], states["wait"]["reason"]) == (0, "Completed")
    assert "message" not in states["wait"]


def test_forever_deployment_runs_until_scaled_to_zero(cluster: ControlPlane,
                                                      namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "server"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"},
                             "annotations": {"sim.runctl.dev/duration": "forever"}},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/srv:1"}]},
            },
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment))

    def running_pods() -> list[dict]:
        pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=server")["items"]
        return [p for p in pods if p["status"].get("phase") == "Running"]

    wait_for("a running server pod", running_pods)
    first = running_pods()[0]["metadata"]["uid"]
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deployment/server",
                    "--timeout=60s")
    # Well past the default 1s lifetime, the same pod is still running.
    import time
    time.sleep(3)
    assert [p["metadata"]["uid"] for p in running_pods()] == [first]

    cluster.kubectl("scale", "-n", namespace, "deployment/server", "--replicas=0")
    wait_for("the server pod to be gone", lambda: not kubectl_json(
        cluster, "get", "pods", "-n", namespace, "-l", "app=server")["items"], timeout=30)


def test_every_node_and_pod_address_is_on_loopback(cluster: ControlPlane, namespace: str) -> None:
    """Logs, exec and port-forward make the API server dial a node's address: every simulated
    node advertises loopback alone, with kwok serving on the port it names, and pods get
    loopback addresses too, so nothing is ever dialled off this machine."""
    nodes = kubectl_json(cluster, "get", "nodes")["items"]
    assert nodes
    for node in nodes:
        addresses = node["status"]["addresses"]
        assert addresses, node["metadata"]["name"]
        assert all(ipaddress.ip_address(a["address"]).is_loopback for a in addresses), addresses
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        assert port == cluster.ports["kwok"]
    args = json.loads((cluster.workdir / "kube-apiserver.args").read_text())
    assert "--kubelet-preferred-address-types=InternalIP" in args

    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=_job("addressed", {"sim.runctl.dev/duration": "1s"}))
    pods = wait_for("the pod to get addresses", lambda: [
        p for p in kubectl_json(cluster, "get", "pods", "-n", namespace,
                                "-l", "job-name=addressed")["items"]
        if p.get("status", {}).get("podIP")])
    for pod in pods:
        assert ipaddress.ip_address(pod["status"]["podIP"]).is_loopback
        assert ipaddress.ip_address(pod["status"]["hostIP"]).is_loopback
