"""Steps as real processes: a StoryRun's pods run on the real node, so exit codes, termination
messages, retries, timeouts, stops and logs are the kubelet's and the runtime's, not kwok's."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import Any

import pytest

from runctl.devcluster import ControlPlane, hostclean, realnode
from tests.conftest import OperatorProcess
from tests.realpods.conftest import ON_REAL_NODE
from tests.support import (
    apply,
    get_run,
    items,
    kubectl_json,
    step_states,
    storyrun,
    wait_for,
    wait_terminal,
)

pytestmark = [pytest.mark.integration, pytest.mark.realpods]

BUSYBOX = "docker.io/local/busybox:1"


def sh(name: str, script: str, *needs: str, **fields: Any) -> dict[str, Any]:
    """A step that runs `script` with busybox's sh on the real node."""
    return {"name": name, "needs": list(needs), "image": BUSYBOX,
            "command": ["sh", "-c", script], "pod": ON_REAL_NODE, **fields}


def steprun(cluster: ControlPlane, namespace: str, run: str, step: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "steprun", f"{run}-{step}", "-n", namespace)


def processes_running(text: str) -> list[int]:
    """Pids of container processes (in a kubepods cgroup) whose command line holds `text`."""
    found = set()
    for cgroup in hostclean.kubepods_cgroups():
        try:
            pids = (cgroup / "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if text.encode() in f.read().replace(b"\0", b" "):
                        found.add(int(pid))
            except OSError:
                continue
    return sorted(found)


def test_real_exit_codes_outputs_and_logs(real_cluster: ControlPlane,
                                          real_operator: OperatorProcess,
                                          real_namespace: str) -> None:
    apply(real_cluster, real_namespace, storyrun("real", [
        sh("count", 'echo counting; echo \'{"rows": "42"}\' > /dev/termination-log',
           outputs=[{"name": "rows"}]),
        sh("report", 'echo "rows=$0"; exit 0', "count",
           args=["${{ steps.count.outputs.rows }}"]),
        sh("fail", "echo about to fail >&2; exit 7", "count"),
    ], onFailure="continue"))
    run = wait_terminal(real_cluster, real_namespace, "real", timeout=120)
    states = step_states(run)
    assert states["count"]["phase"] == "Succeeded"
    assert states["report"]["phase"] == "Succeeded"
    assert states["fail"]["phase"] == "Failed"
    assert run["status"]["phase"] == "Failed"

    count = steprun(real_cluster, real_namespace, "real", "count")
    assert count["status"]["outputs"] == {"rows": "42"}
    fail = steprun(real_cluster, real_namespace, "real", "fail")
    assert fail["status"]["failureClass"] == "Permanent"
    assert "7" in fail["status"]["message"]
    pod = kubectl_json(real_cluster, "get", "pod", "real-fail-1", "-n", real_namespace)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 7
    assert pod["spec"]["nodeName"] == "runctl-real-node"

    # The rendered output reached the next step's real process, and its output is a real log.
    logs = real_cluster.kubectl("logs", "-n", real_namespace, "real-report-1").stdout
    assert logs.strip() == "rows=42"
    assert real_cluster.kubectl("logs", "-n", real_namespace,
                                "real-count-1").stdout.strip() == "counting"


def test_a_termination_message_over_4096_bytes_arrives_cut_and_is_refused(
        real_cluster: ControlPlane, real_operator: OperatorProcess, real_namespace: str) -> None:
    big = json.dumps({"blob": "x" * 5000})  # 5012 bytes, written by the step itself
    apply(real_cluster, real_namespace, storyrun("big", [
        sh("say", "{ printf '{\"blob\": \"'; head -c 5000 /dev/zero | tr '\\0' x; "
                  "printf '\"}'; } > /dev/termination-log", outputs=[{"name": "blob"}]),
    ]))
    run = wait_terminal(real_cluster, real_namespace, "big", timeout=120)
    assert step_states(run)["say"]["phase"] == "Failed"
    say = steprun(real_cluster, real_namespace, "big", "say")
    assert say["status"]["reason"] == "OutputInvalid"
    assert "not JSON" in say["status"]["message"]
    pod = kubectl_json(real_cluster, "get", "pod", "big-say-1", "-n", real_namespace)
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert len(message.encode()) == 4096  # the kubelet kept the last 4096 bytes alone
    assert big.endswith(message)


def test_a_transient_exit_code_is_retried_in_a_real_second_container(
        real_cluster: ControlPlane, real_operator: OperatorProcess, real_namespace: str) -> None:
    # The pod's hostname is its name, <steprun>-<attempt>: the first attempt exits 75.
    apply(real_cluster, real_namespace, storyrun("flaky", [
        sh("fetch", 'case "$(hostname)" in *-1) echo busy; exit 75;; esac; echo fetched',
           retry={"limit": 2, "backoffSeconds": 1, "transientExitCodes": [75]}),
    ]))
    run = wait_terminal(real_cluster, real_namespace, "flaky", timeout=120)
    assert run["status"]["phase"] == "Succeeded"
    fetch = steprun(real_cluster, real_namespace, "flaky", "fetch")
    assert fetch["status"]["attempts"] == 2
    first = kubectl_json(real_cluster, "get", "pod", "flaky-fetch-1", "-n", real_namespace)
    second = kubectl_json(real_cluster, "get", "pod", "flaky-fetch-2", "-n", real_namespace)
    assert first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 75
    assert second["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert (first["status"]["containerStatuses"][0]["containerID"]
            != second["status"]["containerStatuses"][0]["containerID"])
    assert real_cluster.kubectl("logs", "-n", real_namespace,
                                "flaky-fetch-2").stdout.strip() == "fetched"


def test_a_step_timeout_kills_the_real_process(
        real_cluster: ControlPlane, real_operator: OperatorProcess, real_namespace: str) -> None:
    marker = f"sleep 6{int(time.time()) % 1000:03d}"
    apply(real_cluster, real_namespace, storyrun("slow", [
        sh("wait", marker, timeoutSeconds=3),
    ]))
    wait_for("the step's process to run", lambda: processes_running(marker), timeout=60)
    run = wait_terminal(real_cluster, real_namespace, "slow", timeout=120)
    assert step_states(run)["wait"]["phase"] in {"Failed", "TimedOut"}
    assert steprun(real_cluster, real_namespace, "slow", "wait")["status"]["reason"] == \
        "TimedOut"
    wait_for("the step's process to be gone", lambda: not processes_running(marker),
             timeout=60)


def test_a_realtime_step_serves_until_stopped(
        real_cluster: ControlPlane, real_operator: OperatorProcess, real_namespace: str) -> None:
    apply(real_cluster, real_namespace, storyrun("live", [
        sh("web", "mkdir -p /tmp/www && echo served > /tmp/www/index.html && "
                  "exec httpd -f -p 8080 -h /tmp/www", port=8080),
    ], mode="realtime", shutdown={"gracePeriodSeconds": 30}))
    wait_for("the realtime step to be Running", lambda: step_states(
        get_run(real_cluster, real_namespace, "live")).get("web", {}).get("phase") == "Running",
        timeout=120)
    pod = wait_for("its pod to run", lambda: [
        p for p in items(real_cluster, real_namespace, "pods", "runctl.dev/storyrun=live")
        if p["status"].get("phase") == "Running"], timeout=60)[0]["metadata"]["name"]

    def fetch() -> str:
        return real_cluster.kubectl(
            "exec", "-n", real_namespace, pod, "--", "sh", "-c",
            "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080",
            check=False).stdout
    assert "served" in wait_for("the step to serve", fetch, timeout=30)
    assert processes_running("httpd -f -p 8080")

    began = time.monotonic()
    real_cluster.kubectl("patch", "storyrun", "live", "-n", real_namespace, "--type", "merge",
                         "-p", json.dumps({"spec": {"cancelRequested": True}}))
    run = wait_terminal(real_cluster, real_namespace, "live", timeout=120)
    print(f"\n[stop-latency] realtime step on a real node: {time.monotonic() - began:.2f}s "
          "from the stop to a terminal run")
    assert run["status"]["phase"] in {"Canceled", "Succeeded"}
    wait_for("the server's process to be gone",
             lambda: not processes_running("httpd -f -p 8080"), timeout=60)


def test_a_pod_reaches_the_api_server_and_nothing_else_of_the_machine(
        real_cluster: ControlPlane, real_namespace: str) -> None:
    # A listener on every address of this machine: without the node's rules a pod would reach
    # it through the bridge's own address.
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
               "spec": {**ON_REAL_NODE, "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "main", "image": BUSYBOX,
                                        "command": ["sleep", "600"]}]}}
        apply(real_cluster, real_namespace, pod)
        real_cluster.kubectl("wait", "-n", real_namespace, "--for=condition=Ready", "pod/probe",
                             "--timeout=120s")

        def dial(address: str, to: int) -> subprocess.CompletedProcess[str]:
            return real_cluster.kubectl("exec", "-n", real_namespace, "probe", "--", "nc",
                                        "-w", "3", address, str(to), input="", check=False)

        assert dial(realnode.SERVICE_IP, 443).returncode == 0  # the API server, translated
        assert dial(realnode.GATEWAY, port).returncode != 0  # dropped by the node's rules
    routes = real_cluster.kubectl("exec", "-n", real_namespace, "probe", "--", "ip", "route").stdout
    assert "default" not in routes  # no way off the bridge but to the API server
    assert f"{realnode.SERVICE_IP} via {realnode.GATEWAY}" in routes
    for chain in (["-C", "FORWARD", "-i", hostclean.BRIDGE, "-j", "RUNCTL-REAL-FWD"],
                  ["-C", "INPUT", "-i", hostclean.BRIDGE, "-j", "RUNCTL-REAL-IN"]):
        assert subprocess.run(["iptables", "-w", "5", *chain]).returncode == 0
