"""Stop that stops: cancelRequested for batch and realtime runs, and topology termination.

The realtime cases reproduce two published incidents: a stop that waited a 120 s transport drain
window (2m13s) after the call had ended, and a finished run whose steps stayed Running after its
StepRuns were deleted. Stop latencies are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import time

import pytest

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.support import (
    STEP_TERMINAL,
    apply,
    get_run,
    items,
    step,
    step_states,
    storyrun,
    wait_for,
    wait_phase,
    wait_terminal,
)

pytestmark = pytest.mark.integration

STOP = json.dumps({"spec": {"cancelRequested": True}})


def _stop(cluster: ControlPlane, namespace: str, name: str) -> float:
    cluster.kubectl("patch", "storyrun", name, "-n", namespace, "--type", "merge", "-p", STOP)
    return time.monotonic()


def _realtime(name: str, grace: int = 30) -> dict:
    return storyrun(name, [
        step("ingress", duration="forever", port=8080),
        step("asr", "ingress", duration="forever"),
        step("agent", "asr", duration="forever"),
    ], mode="realtime", shutdown={"gracePeriodSeconds": grace},
        transport={"lifecycle": {"drainTimeoutSeconds": 120}})


def _wait_realtime_running(cluster: ControlPlane, namespace: str, name: str) -> None:
    def all_running() -> bool:
        run = get_run(cluster, namespace, name)
        states = run.get("status", {}).get("stepStates", {})
        return len(states) == 3 and all(s["phase"] == "Running" for s in states.values())
    wait_for(f"every step of {name} to be Running", all_running, timeout=60)


def _live_pods(cluster: ControlPlane, namespace: str, run: str) -> list[dict]:
    return [p for p in items(cluster, namespace, "pods", f"runctl.dev/storyrun={run}")
            if p["status"].get("phase") in ("Pending", "Running")]


def test_realtime_stop_after_session_end_ignores_the_drain_window(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, _realtime("call-ended"))
    _wait_realtime_running(cluster, namespace, "call-ended")
    # The hub reports the session over, then the stop arrives.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"type": "TopologyTerminated", "status": "True", "reason": "SessionEnded",
                 "message": "the room was closed", "lastTransitionTime": now}
    run = get_run(cluster, namespace, "call-ended")
    conditions = [c for c in run["status"].get("conditions", [])
                  if c["type"] != "TopologyTerminated"] + [condition]
    cluster.kubectl("patch", "storyrun", "call-ended", "-n", namespace, "--subresource=status",
                    "--type", "merge", "-p", json.dumps({"status": {"conditions": conditions}}))
    began = _stop(cluster, namespace, "call-ended")
    run = wait_terminal(cluster, namespace, "call-ended", timeout=60)
    elapsed = time.monotonic() - began
    print(f"\n[stop-latency] realtime, session ended then stop: {elapsed:.2f}s to terminal")
    # Two lawful records, depending on whether the operator saw the session end before the
    # stop arrived: the session simply ended (Succeeded), or both together (Canceled).
    if run["status"]["phase"] == "Succeeded":
        assert run["status"]["reason"] == "TopologyTerminated"
    else:
        assert run["status"]["phase"] == "Canceled"
        assert run["status"]["stop"]["trigger"] == "TopologyTerminated"
    assert all(s["phase"] in STEP_TERMINAL for s in step_states(run).values())
    assert elapsed < 30, "a stop must never wait the transport's 120 s drain window"
    wait_for("the Deployments to be gone", lambda: not items(
        cluster, namespace, "deployments", "runctl.dev/storyrun=call-ended"), timeout=30)
    wait_for("the pods to be gone",
             lambda: not _live_pods(cluster, namespace, "call-ended"), timeout=30)


def test_realtime_stop_tears_down_the_topology_and_ends_when_pods_are_gone(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, _realtime("live", grace=20))
    _wait_realtime_running(cluster, namespace, "live")
    began = _stop(cluster, namespace, "live")
    run = wait_terminal(cluster, namespace, "live", timeout=60)
    elapsed = time.monotonic() - began
    print(f"\n[stop-latency] realtime, stop only: {elapsed:.2f}s to terminal")
    assert run["status"]["phase"] == "Canceled"
    stop = run["status"]["stop"]
    assert stop["trigger"] in {"TopologyTerminated", "AllStepsTerminal"}
    assert parse_time(stop["completedAt"]) >= parse_time(stop["observedAt"])
    assert all(s["phase"] in STEP_TERMINAL for s in step_states(run).values())
    assert elapsed < 20, "the stop must finish within gracePeriodSeconds"
    assert not _live_pods(cluster, namespace, "live")
    # Nothing started after the stop: every ReplicaSet of the run created exactly one pod (a
    # ReplicaSet left standing while its pod was deleted would have made a replacement).
    time.sleep(2)  # the ReplicaSet controller's events of a replacement would be posted by now
    created = [e for e in items(cluster, namespace, "events")
               if e["involvedObject"]["kind"] == "ReplicaSet"
               and e["involvedObject"]["name"].startswith("live-")
               and e["reason"] == "SuccessfulCreate"]
    assert created
    assert all(e.get("count", 1) == 1 for e in created), created
    assert len({e["involvedObject"]["name"] for e in created}) == len(created), created


def test_stale_running_steps_cannot_survive_steprun_deletion(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, _realtime("stale"))
    _wait_realtime_running(cluster, namespace, "stale")
    _stop(cluster, namespace, "stale")
    cluster.kubectl("delete", "stepruns", "-n", namespace, "-l", "runctl.dev/storyrun=stale",
                    "--wait=false")
    run = wait_terminal(cluster, namespace, "stale", timeout=60)
    wait_for("the StepRuns to be gone", lambda: not items(
        cluster, namespace, "stepruns", "runctl.dev/storyrun=stale"), timeout=60)
    time.sleep(3)
    again = get_run(cluster, namespace, "stale")
    assert again["status"]["phase"] == run["status"]["phase"]
    for name, state in step_states(again).items():
        assert state["phase"] in STEP_TERMINAL, (name, state)
        assert state["phase"] != "Running"


def test_topology_terminated_by_an_outside_hub_ends_the_run(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, _realtime("hub-ends"))
    _wait_realtime_running(cluster, namespace, "hub-ends")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run = get_run(cluster, namespace, "hub-ends")
    conditions = [c for c in run["status"].get("conditions", [])
                  if c["type"] != "TopologyTerminated"] + [
        {"type": "TopologyTerminated", "status": "True", "reason": "SessionEnded",
         "message": "the hub closed the session", "lastTransitionTime": now}]
    began = time.monotonic()
    cluster.kubectl("patch", "storyrun", "hub-ends", "-n", namespace, "--subresource=status",
                    "--type", "merge", "-p", json.dumps({"status": {"conditions": conditions}}))
    run = wait_terminal(cluster, namespace, "hub-ends", timeout=30)
    print(f"\n[stop-latency] realtime, hub ends session: {time.monotonic() - began:.2f}s")
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["reason"] == "TopologyTerminated"
    assert all(s["phase"] in STEP_TERMINAL for s in step_states(run).values())
    wait_for("the pods to be gone",
             lambda: not _live_pods(cluster, namespace, "hub-ends"), timeout=30)


def test_stop_under_continue_never_starts_pending_siblings(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("siblings", [
        step("fails", exit_code=1, message="boom"),
        step("gate", duration="6s"),
        step("sibling-a", "gate"),
        step("sibling-b", "gate"),
    ], onFailure="continue"))
    wait_for("the failure to be recorded", lambda: step_states(get_run(
        cluster, namespace, "siblings")).get("fails", {}).get("phase") == "Failed", timeout=60)
    _stop(cluster, namespace, "siblings")
    run = wait_terminal(cluster, namespace, "siblings", timeout=60)
    states = step_states(run)
    for sibling in ("sibling-a", "sibling-b"):
        assert states[sibling]["phase"] == "Canceled", states[sibling]
        assert states[sibling]["reason"] == "StoppedBeforeStart"
    # Nothing started after the stop, seen from the API and from the simulated nodes.
    time.sleep(8)
    names = {s["spec"]["step"] for s in items(cluster, namespace, "stepruns",
                                               "runctl.dev/storyrun=siblings")}
    assert not names & {"sibling-a", "sibling-b"}
    assert not items(cluster, namespace, "pods", "runctl.dev/step in (sibling-a,sibling-b)")
    assert get_run(cluster, namespace, "siblings")["status"]["phase"] == run["status"]["phase"]


def test_batch_stop_mid_step_cancels_and_removes_the_pod(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("batch-stop", [
        step("long", duration="120s"), step("after", "long"),
    ], shutdown={"gracePeriodSeconds": 10}))
    wait_for("the step to run", lambda: step_states(get_run(
        cluster, namespace, "batch-stop")).get("long", {}).get("phase") == "Running", timeout=60)
    began = _stop(cluster, namespace, "batch-stop")
    run = wait_terminal(cluster, namespace, "batch-stop", timeout=60)
    print(f"\n[stop-latency] batch, mid-step: {time.monotonic() - began:.2f}s to terminal")
    assert run["status"]["phase"] == "Canceled"
    states = step_states(run)
    assert states["long"]["phase"] == "Canceled"
    assert states["after"]["phase"] == "Canceled"
    assert states["after"]["reason"] == "StoppedBeforeStart"
    wait_for("the pod to be gone", lambda: not items(
        cluster, namespace, "pods", "runctl.dev/storyrun=batch-stop"), timeout=30)


def test_stop_before_the_operator_sees_the_run_starts_nothing(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("never", [step("a"), step("b", "a")],
                                       cancelRequested=True))
    run = wait_terminal(cluster, namespace, "never", timeout=30)
    assert run["status"]["phase"] == "Canceled"
    assert {s["reason"] for s in step_states(run).values()} == {"StoppedBeforeStart"}
    assert not items(cluster, namespace, "stepruns", "runctl.dev/storyrun=never")


def test_stop_on_a_finished_run_changes_nothing(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("done", [step("a")]))
    before = wait_terminal(cluster, namespace, "done")
    _stop(cluster, namespace, "done")
    time.sleep(2)
    after = get_run(cluster, namespace, "done")
    assert after["status"]["phase"] == before["status"]["phase"] == "Succeeded"
    assert after["status"]["stepStates"] == before["status"]["stepStates"]
    assert after["status"]["finishedAt"] == before["status"]["finishedAt"]


def test_realtime_stop_phase_is_stopping_until_terminal(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """While pods are still going away, a stopped run says Stopping, never Running."""
    apply(cluster, namespace, _realtime("stopping"))
    _wait_realtime_running(cluster, namespace, "stopping")
    _stop(cluster, namespace, "stopping")
    run = wait_phase(cluster, namespace, "stopping", {"Stopping", "Canceled"}, timeout=30)
    assert run["status"]["phase"] in {"Stopping", "Canceled"}
    wait_terminal(cluster, namespace, "stopping", timeout=60)
