"""The operator as the chart deploys it: under the chart's ServiceAccount (exactly its RBAC), and
as two replicas of which one acts at a time and the other takes over when it dies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runctl.devcluster import ControlPlane, ports
from tests.conftest import OperatorProcess
from tests.integration.test_deploy_chart import (  # noqa: F401 (helm, release: fixtures)
    OPERATOR,
    SYSTEM,
    helm,
    release,
)
from tests.support import (
    apply,
    get_run,
    items,
    kubectl_json,
    step,
    step_states,
    storyrun,
    wait_for,
    wait_terminal,
)
from tests.support_rbac import service_account_kubeconfig

pytestmark = pytest.mark.integration


def _running(cluster: ControlPlane, namespace: str, run: str) -> list[dict]:
    return [s for s in items(cluster, namespace, "stepruns", f"runctl.dev/storyrun={run}")
            if s.get("status", {}).get("phase") == "Running"]


def test_the_operator_under_the_chart_account_runs_and_stops_runs(
        cluster: ControlPlane, crds: ControlPlane, release: list, namespace: str,  # noqa: F811
        tmp_path: Path) -> None:
    config = service_account_kubeconfig(cluster, SYSTEM, "runctl", tmp_path / "sa.kubeconfig")
    # All namespaces, as the chart's default values deploy it (and grant it).
    op = OperatorProcess(cluster, cluster.logs, label=f"chart-account-{namespace}",
                         kubeconfig=config)
    op.start()
    try:
        apply(cluster, namespace, storyrun("dag", [
            step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]))
        run = wait_terminal(cluster, namespace, "dag", timeout=120)
        assert run["status"]["phase"] == "Succeeded"
        assert {s["phase"] for s in step_states(run).values()} == {"Succeeded"}

        apply(cluster, namespace, storyrun("halt", [step("long", duration="120s"),
                                                    step("after", "long")]))
        wait_for("the step to run", lambda: _running(cluster, namespace, "halt"), timeout=90)
        cluster.kubectl("patch", "storyrun", "halt", "-n", namespace, "--type=merge", "-p",
                        json.dumps({"spec": {"cancelRequested": True}}))
        run = wait_terminal(cluster, namespace, "halt", timeout=60)
        assert run["status"]["phase"] == "Canceled"
        assert step_states(run)["after"]["reason"] == "StoppedBeforeStart"
        wait_for("the pod to be gone", lambda: not items(
            cluster, namespace, "pods", "runctl.dev/storyrun=halt"), timeout=60)
        # Nothing it did was refused for lack of permission.
        assert f'User "{OPERATOR}" cannot' not in op.log.read_text()
    finally:
        op.stop()


def _holder(cluster: ControlPlane, namespace: str) -> str:
    lease = kubectl_json(cluster, "get", "lease", "runctl-leader", "-n", namespace)
    holder: str = lease["spec"].get("holderIdentity") or ""
    return holder


def test_two_replicas_act_once_and_hand_over_when_the_leader_dies(
        crds: ControlPlane, namespace: str) -> None:
    cluster = crds
    replicas = {
        name: OperatorProcess(cluster, cluster.logs, label=f"{name}-{namespace}",
                              extra=("-n", namespace, "--leader-election-namespace", namespace),
                              env={"RUNCTL_IDENTITY": name})
        for name in ("replica-a", "replica-b")
    }
    for op in replicas.values():
        op.start()
    try:
        leader = wait_for("a leader", lambda: _holder(cluster, namespace), timeout=60)
        apply(cluster, namespace, storyrun("chain", [
            step("one", duration="4s"), step("two", "one", duration="4s"),
            step("three", "two", duration="2s")]))
        wait_for("step one to run", lambda: _running(cluster, namespace, "chain"), timeout=90)

        replicas[leader].kill()
        killed = time.monotonic()
        other = next(n for n in replicas if n != leader)
        wait_for("the other replica to lead",
                 lambda: _holder(cluster, namespace) == other, timeout=60)
        print(f"\n[handover] {other} took over {time.monotonic() - killed:.1f}s after "
              f"{leader} was killed")

        run = wait_terminal(cluster, namespace, "chain", timeout=120)
        assert run["status"]["phase"] == "Succeeded"
        stepruns = items(cluster, namespace, "stepruns", "runctl.dev/storyrun=chain")
        assert sorted(s["spec"]["step"] for s in stepruns) == ["one", "three", "two"]
        pods = items(cluster, namespace, "pods", "runctl.dev/storyrun=chain")
        assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
        assert all(s["attempts"] == 1 for s in step_states(run).values())
        assert get_run(cluster, namespace, "chain")["status"]["phase"] == "Succeeded"
    finally:
        for op in replicas.values():
            op.stop()


def test_prometheus_metrics_tell_runs_steps_stops_and_api_outcomes(
        crds: ControlPlane, namespace: str) -> None:
    import urllib.request

    port = ports.free_port()
    op = OperatorProcess(crds, crds.logs, label=f"metrics-{namespace}",
                         extra=("-n", namespace, "--metrics-port", str(port),
                                "--metrics-address", "127.0.0.1"))
    op.start()
    try:
        apply(crds, namespace, storyrun("metered", [step("long", duration="120s")]))
        wait_for("the step to run", lambda: _running(crds, namespace, "metered"), timeout=90)
        crds.kubectl("patch", "storyrun", "metered", "-n", namespace, "--type=merge", "-p",
                     json.dumps({"spec": {"cancelRequested": True}}))
        wait_terminal(crds, namespace, "metered", timeout=60)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text: str = r.read().decode()
            return text if 'runctl_storyruns{phase="Canceled"} 1.0' in text else ""

        text = wait_for("the gauges to show the canceled run", scrape, timeout=30)
        assert 'runctl_steps{phase="Canceled"} 1.0' in text
        assert "runctl_stop_latency_seconds_count 1.0" in text
        assert "runctl_reconcile_duration_seconds_count" in text
        assert ('runctl_api_requests_total{outcome="ok",resource="storyruns/status",'
                'verb="patch"}') in text
    finally:
        op.stop()
