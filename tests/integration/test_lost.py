"""Lost steps (API.md guarantee 6) and the operator's conditional writes, against the real API
server: a vanished workload makes its step Lost, a success reported after that is rejected with a
`LateReportRejected` Event, and a write based on a stale read never overwrites a newer outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest
from kubernetes import client, watch

from runctl.devcluster import ControlPlane, ports
from runctl.operator import apply as applying
from runctl.operator.cache import ObjectCache
from runctl.operator.context import Context
from runctl.operator.queue import WorkQueue
from runctl.timefmt import fmt_time
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


def _running_steprun(cluster: ControlPlane, namespace: str, run: str) -> dict:
    found: list[dict] = wait_for("the step to run", lambda: [
        s for s in items(cluster, namespace, "stepruns", f"runctl.dev/storyrun={run}")
        if s.get("status", {}).get("phase") == "Running"], timeout=90)
    return found[0]


def test_deleting_a_running_steps_pod_makes_it_lost(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("vanish", [
        step("long", duration="120s"), step("after", "long")]))
    sr = _running_steprun(cluster, namespace, "vanish")
    assert sr["status"]["workload"] == {"kind": "Pod", "name": "vanish-long-1", "observed": True}
    cluster.kubectl("delete", "pod", "vanish-long-1", "-n", namespace, "--wait=false")

    run = wait_terminal(cluster, namespace, "vanish", timeout=60)
    states = step_states(run)
    assert states["long"]["phase"] == "Lost"
    assert states["long"]["reason"] == "WorkloadDeleted"
    assert run["status"]["phase"] == "Failed"  # onFailure: stop (the default)
    assert states["after"]["phase"] == "Skipped"  # it needs the lost step
    assert states["after"]["reason"] == "UpstreamFailed"
    assert len(items(cluster, namespace, "stepruns", "runctl.dev/storyrun=vanish")) == 1
    assert len(items(cluster, namespace, "pods", "runctl.dev/storyrun=vanish")) == 0


def test_a_pod_deleted_while_no_operator_ran_makes_its_step_lost_not_run_again(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    # The operator that saw the pod is gone when it is deleted; the next one never saw it, and
    # must still tell a deleted pod from a create that never landed.
    apply(cluster, namespace, storyrun("gap", [step("long", duration="120s")]))
    _running_steprun(cluster, namespace, "gap")
    operator.kill()
    cluster.kubectl("delete", "pod", "gap-long-1", "-n", namespace)
    operator.start()

    run = wait_terminal(cluster, namespace, "gap", timeout=60)
    assert step_states(run)["long"]["phase"] == "Lost"
    assert step_states(run)["long"]["reason"] == "WorkloadDeleted"
    assert items(cluster, namespace, "pods", "runctl.dev/storyrun=gap") == []


def test_an_orphaned_pod_of_a_lost_step_is_stopped(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """The StepRun deleted but its pod left running: the step is Lost and no worker outlives
    it."""
    apply(cluster, namespace, storyrun("orphan", [step("long", duration="120s")]))
    sr = _running_steprun(cluster, namespace, "orphan")
    cluster.kubectl("delete", "steprun", sr["metadata"]["name"], "-n", namespace,
                    "--cascade=orphan", "--wait=false")
    run = wait_terminal(cluster, namespace, "orphan", timeout=60)
    assert step_states(run)["long"]["phase"] == "Lost"
    wait_for("the orphaned pod to be gone", lambda: not items(
        cluster, namespace, "pods", "runctl.dev/storyrun=orphan"), timeout=60)


def test_a_late_success_for_a_lost_step_is_rejected(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("late", [step("work", duration="6s")]))
    sr = _running_steprun(cluster, namespace, "late")
    name = sr["metadata"]["name"]
    operator.kill()
    try:
        # While the operator is down, the step is recorded Lost (as a sweep would), then its
        # pod still finishes successfully.
        now = fmt_time(dt.datetime.now(dt.UTC))
        lost = {"status": {"phase": "Lost", "reason": "WorkloadDeleted", "finishedAt": now,
                           "message": "its workload vanished"}}
        cluster.kubectl("patch", "steprun", name, "-n", namespace, "--subresource=status",
                        "--type=merge", "-p", json.dumps(lost))
        pod = sr["status"]["workload"]["name"]
        wait_for("the pod to succeed", lambda: kubectl_json(
            cluster, "get", "pod", pod, "-n", namespace)["status"].get("phase") == "Succeeded",
            timeout=60)

        # A writer reporting the success is refused by the API server itself.
        won = {"status": {"phase": "Succeeded", "reason": "Completed"}}
        refused = cluster.kubectl("patch", "steprun", name, "-n", namespace,
                                  "--subresource=status", "--type=merge", "-p",
                                  json.dumps(won), check=False)
        assert refused.returncode != 0
        assert "Lost" in refused.stderr, refused.stderr
        assert "Succeeded" in refused.stderr, refused.stderr
    finally:
        operator.start()

    run = wait_terminal(cluster, namespace, "late", timeout=60)
    assert run["status"]["phase"] == "Failed"
    assert step_states(run)["work"]["phase"] == "Lost"
    rejected = wait_for("a LateReportRejected Event on the StepRun", lambda: [
        e for e in events(cluster, namespace, name) if e["reason"] == "LateReportRejected"])
    assert rejected[0]["type"] == "Warning"
    assert rejected[0]["involvedObject"]["kind"] == "StepRun"
    steprun = kubectl_json(cluster, "get", "steprun", name, "-n", namespace)
    assert steprun["status"]["phase"] == "Lost"
    # Re-read after a while (resyncs run every few seconds here): nothing flipped it, and the
    # rejection was reported once, not on every look.
    time.sleep(8)
    assert get_run(cluster, namespace, "late")["status"]["phase"] == "Failed"
    assert [e["count"] for e in events(cluster, namespace, name)
            if e["reason"] == "LateReportRejected"] == [1]


def test_a_write_from_a_stale_read_never_overwrites_a_newer_outcome(
        crds: ControlPlane, namespace: str) -> None:
    """The race a sweep runs into: it reads a Running StepRun, the step then succeeds, and the
    sweep's write (conditional on the resourceVersion it read) fails; the step stays Succeeded."""
    cluster = crds
    body = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StepRun",
            "metadata": {"name": "race", "namespace": namespace},
            "spec": {**step("work"), "storyRun": "r", "step": "work", "mode": "batch"}}
    body["spec"].pop("needs")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    now = fmt_time(dt.datetime.now(dt.UTC))
    cluster.kubectl("patch", "steprun", "race", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {
                        "phase": "Running", "attempts": 1, "startedAt": now}}))
    stale = kubectl_json(cluster, "get", "steprun", "race", "-n", namespace)

    cluster.kubectl("patch", "steprun", "race", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {
                        "phase": "Succeeded", "reason": "Completed", "finishedAt": now}}))

    async def sweep() -> applying.Outcome:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=cluster.api_client())
        return await applying.write_steprun_status(ctx, stale, {
            "phase": "Lost", "reason": "WorkloadDeleted", "attempts": 1, "startedAt": now,
            "finishedAt": now, "message": "its workload vanished"})

    result = asyncio.run(sweep())
    assert result.retry is applying.Retry.SOON  # a conflict: re-read and decide again
    after = kubectl_json(cluster, "get", "steprun", "race", "-n", namespace)
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"]["reason"] == "Completed"


def test_a_cycle_is_refused_at_apply_by_the_webhook(
        crds: ControlPlane, namespace: str, tmp_path, free_port: int) -> None:
    cluster = crds
    op = OperatorProcess(cluster, cluster.logs, label=f"webhook-{namespace}", extra=(
        "-n", namespace, "--webhook-port", str(free_port), "--webhook-host", "127.0.0.1",
        "--webhook-cert-dir", str(tmp_path)))
    op.start()
    cycle = storyrun("cycle", [step("a", "c"), step("b", "a"), step("c", "b")])
    try:
        def refused() -> str:
            out = cluster.kubectl("create", "-n", namespace, "--dry-run=server", "-f", "-",
                                  input=json.dumps(cycle), check=False)
            return out.stderr if out.returncode != 0 else ""
        message = wait_for("the webhook to refuse the cycle", refused, timeout=60)
        assert "spec.steps" in message
        assert "cycle a -> c -> b -> a" in message, message
        # A good run passes the same webhook.
        good = storyrun("fine", [step("a"), step("b", "a")])
        cluster.kubectl("create", "-n", namespace, "--dry-run=server", "-f", "-",
                        input=json.dumps(good))
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", "runctl.dev",
                        "--ignore-not-found", check=False)


def test_a_cycle_that_slipped_past_admission_fails_the_run_and_creates_nothing(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """No webhook here (as when it is down under failurePolicy: Ignore): the reconcile path
    refuses the cycle itself."""
    apply(cluster, namespace, storyrun("cycle", [
        step("a", "c"), step("b", "a"), step("c", "b"), step("free")]))
    run = wait_terminal(cluster, namespace, "cycle", timeout=60)
    assert run["status"]["phase"] == "Failed"
    assert run["status"]["reason"] == "InvalidSpec"
    assert "spec.steps" in run["status"]["message"]
    assert "cycle" in run["status"]["message"]
    assert items(cluster, namespace, "stepruns", "runctl.dev/storyrun=cycle") == []
    assert items(cluster, namespace, "pods", "runctl.dev/storyrun=cycle") == []
    assert {s["phase"] for s in step_states(run).values()} <= {"Canceled", "Skipped", "Failed"}


@pytest.fixture
def free_port() -> int:
    return ports.free_port()




def test_a_refused_write_is_reported_once_and_never_sent_again(
        crds: ControlPlane, namespace: str) -> None:
    """The API server's rules refuse a write (a terminal StepRun going back to Running): it is
    not retried soon, a Warning Event says why, and the same write is not sent a second time."""
    cluster = crds
    body = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StepRun",
            "metadata": {"name": "done", "namespace": namespace},
            "spec": {**step("work"), "storyRun": "r", "step": "work", "mode": "batch"}}
    body["spec"].pop("needs")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    now = fmt_time(dt.datetime.now(dt.UTC))
    cluster.kubectl("patch", "steprun", "done", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {
                        "phase": "Failed", "reason": "StepFailed", "attempts": 1,
                        "startedAt": now, "finishedAt": now}}))
    stored = kubectl_json(cluster, "get", "steprun", "done", "-n", namespace)
    back = {"phase": "Running", "attempts": 1, "startedAt": now}

    async def write_twice() -> list[applying.Outcome]:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=cluster.api_client())
        return [await applying.write_steprun_status(ctx, stored, back) for _ in range(2)]

    first, second = asyncio.run(write_twice())
    assert first.retry is applying.Retry.NONE
    assert first.note is not None
    assert "refused" in first.note
    assert second == applying.DONE  # not sent at all the second time
    rejected = wait_for("a WriteRejected Event", lambda: [
        e for e in events(cluster, namespace, "done") if e["reason"] == "WriteRejected"])
    assert len(rejected) == 1
    assert rejected[0]["type"] == "Warning"
    assert "Failed" in rejected[0]["message"]
    assert kubectl_json(cluster, "get", "steprun", "done", "-n",
                        namespace)["status"]["phase"] == "Failed"


def test_a_first_attempt_s_steprun_is_first_written_when_its_pod_runs(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """No status means the first attempt (API.md, StepRun): the StepRun is made without one, and
    its first write, once its pod runs, records the attempt, the start the run recorded and
    the pod seen; then its end. Nothing restates Pending."""
    custom = client.CustomObjectsApi(cluster.api_client())
    seen: list[dict | None] = []
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, "runctl.dev", "v1alpha1", namespace, "stepruns",
        label_selector="runctl.dev/storyrun=first", timeout_seconds=90)
    apply(cluster, namespace, storyrun("first", [step("work", duration="3s")]))
    for event in stream:
        status = event["object"].get("status") or None
        if not seen or status != seen[-1]:
            seen.append(status)
        if status is not None and status.get("phase") == "Succeeded":
            break
    run = wait_terminal(cluster, namespace, "first", timeout=60)
    assert seen[0] is None  # made with no status
    written = [s for s in seen if s is not None]
    assert [s["phase"] for s in written] == ["Running", "Succeeded"]
    running = written[0]
    assert running["attempts"] == 1
    assert running["workload"] == {"kind": "Pod", "name": "first-work-1", "observed": True}
    assert running["startedAt"] == step_states(run)["work"]["startedAt"]
