"""StoryRuns run for real: the operator against the real API server, pods simulated by kwok.

Each test asserts what a user would see with kubectl: phases, stepStates, StepRuns, pods, Events.
"""

from __future__ import annotations

import pytest

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.support import (
    STEP_TERMINAL,
    apply,
    events,
    get_run,
    items,
    step,
    step_states,
    storyrun,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration


def _interval(state: dict) -> tuple:
    return parse_time(state["startedAt"]), parse_time(state["finishedAt"])


def test_diamond_dag_succeeds_in_order(cluster: ControlPlane, operator: OperatorProcess,
                                       namespace: str) -> None:
    apply(cluster, namespace, storyrun("diamond", [
        step("extract", duration="1s", message='{"rows": "1200"}'),
        step("clean", "extract", duration="4s"),
        step("enrich", "extract", duration="4s"),
        step("join", "clean", "enrich", duration="1s"),
        step("publish", "join", duration="1s"),
    ]))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Succeeded", "storyrun/diamond",
                    "--timeout=120s")
    run = get_run(cluster, namespace, "diamond")
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["reason"] == "Completed"
    assert run["status"]["progress"] == "5/5"
    states = step_states(run)
    assert {s: v["phase"] for s, v in states.items()} == dict.fromkeys(
        ["extract", "clean", "enrich", "join", "publish"], "Succeeded")

    # No step started before every step it needs had succeeded.
    needs = {"clean": ["extract"], "enrich": ["extract"], "join": ["clean", "enrich"],
             "publish": ["join"]}
    for name, required in needs.items():
        started, _ = _interval(states[name])
        for need in required:
            assert started >= _interval(states[need])[1], (name, need)
    # The two independent transforms ran at the same time.
    clean, enrich = _interval(states["clean"]), _interval(states["enrich"])
    assert clean[0] < enrich[1]
    assert enrich[0] < clean[1]

    # One StepRun per step, one pod per attempt, outputs carried from the termination message.
    stepruns = items(cluster, namespace, "stepruns", "runctl.dev/storyrun=diamond")
    assert sorted(s["spec"]["step"] for s in stepruns) == sorted([*needs, "extract"])
    extract = next(s for s in stepruns if s["spec"]["step"] == "extract")
    assert extract["status"]["outputs"] == {"rows": "1200"}
    assert extract["metadata"]["ownerReferences"][0]["kind"] == "StoryRun"
    pods = items(cluster, namespace, "pods", "runctl.dev/storyrun=diamond")
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(
        f"diamond-{s}-1" for s in [*needs, "extract"])
    reasons = [e["reason"] for e in events(cluster, namespace, "diamond")]
    assert "Succeeded" in reasons


def test_fail_fast_stops_the_run_and_never_starts_pending_steps(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("ff", [
        step("extract"),
        step("transform", "extract", exit_code=3, message="schema mismatch in column day"),
        step("slow-sibling", "extract", duration="30s"),
        step("load", "transform"),
    ], onFailure="stop"))
    run = wait_terminal(cluster, namespace, "ff")
    assert run["status"]["phase"] == "Failed"
    states = step_states(run)
    assert states["transform"]["phase"] == "Failed"
    assert run["status"]["reason"] == states["transform"]["reason"]
    assert run["status"]["message"] == states["transform"]["message"]
    assert "schema mismatch in column day" in run["status"]["message"]
    assert "3" in states["transform"]["message"]
    assert all(s["phase"] in STEP_TERMINAL for s in states.values())
    # load never got a StepRun; the running sibling was stopped.
    names = [s["spec"]["step"] for s in items(cluster, namespace, "stepruns",
                                               "runctl.dev/storyrun=ff")]
    assert "load" not in names
    assert states["load"]["phase"] != "Succeeded"
    assert states["slow-sibling"]["phase"] in {"Canceled", "Failed"}
    wait_for("the sibling's pods to be gone", lambda: not [
        p for p in items(cluster, namespace, "pods", "runctl.dev/step=slow-sibling")
        if p["status"].get("phase") == "Running"], timeout=30)


def test_continue_keeps_independent_branches_and_reports_the_first_failure(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("cont", [
        step("reports", exit_code=2, message="template not found: weekly.html"),
        step("report-email", "reports"),
        step("metrics", duration="3s"),
        step("metrics-push", "metrics"),
        step("late-fail", "metrics", duration="1s", exit_code=4, message="later failure"),
    ], onFailure="continue"))
    run = wait_terminal(cluster, namespace, "cont")
    states = step_states(run)
    assert run["status"]["phase"] == "Failed"
    assert states["metrics"]["phase"] == "Succeeded"
    assert states["metrics-push"]["phase"] == "Succeeded"
    assert states["report-email"]["phase"] == "Skipped"
    assert states["report-email"]["reason"] == "UpstreamFailed"
    assert states["late-fail"]["phase"] == "Failed"
    assert "template not found: weekly.html" in run["status"]["message"]
    assert run["status"]["reason"] == states["reports"]["reason"]
    names = [s["spec"]["step"] for s in items(cluster, namespace, "stepruns",
                                               "runctl.dev/storyrun=cont")]
    assert "report-email" not in names


def test_transient_failures_are_retried_and_permanent_ones_are_not(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    retry = {"limit": 2, "backoffSeconds": 1, "transientExitCodes": [75]}
    apply(cluster, namespace, storyrun("retries", [
        step("flaky", exit_code=75, retry=retry,
             annotations={"sim.runctl.dev/fail-attempts": "1"}),
        step("killed", exit_code=137, retry=retry,
             annotations={"sim.runctl.dev/fail-attempts": "2"}),
        step("broken", exit_code=3, retry=retry),
    ], onFailure="continue"))
    run = wait_terminal(cluster, namespace, "retries", timeout=120)
    states = step_states(run)
    assert states["flaky"]["phase"] == "Succeeded"
    assert states["flaky"]["attempts"] == 2
    assert states["killed"]["phase"] == "Succeeded"
    assert states["killed"]["attempts"] == 3
    assert states["broken"]["phase"] == "Failed"
    assert states["broken"]["attempts"] == 1
    broken = next(s for s in items(cluster, namespace, "stepruns", "runctl.dev/step=broken"))
    assert broken["status"]["failureClass"] == "Permanent"
    pods = items(cluster, namespace, "pods", "runctl.dev/storyrun=retries")
    per_step: dict[str, int] = {}
    for pod in pods:
        per_step[pod["metadata"]["labels"]["runctl.dev/step"]] = per_step.get(
            pod["metadata"]["labels"]["runctl.dev/step"], 0) + 1
    assert per_step == {"flaky": 2, "killed": 3, "broken": 1}
    flaky = next(s for s in items(cluster, namespace, "stepruns", "runctl.dev/step=flaky"))
    assert any(e["reason"] == "Retrying" for e in events(cluster, namespace,
                                                          flaky["metadata"]["name"])) or any(
        e["reason"] == "Retrying" for e in events(cluster, namespace, "retries"))


def test_step_timeout_stops_its_workload(cluster: ControlPlane, operator: OperatorProcess,
                                         namespace: str) -> None:
    apply(cluster, namespace, storyrun("step-timeout", [
        step("hangs", duration="60s", timeoutSeconds=2),
    ]))
    run = wait_terminal(cluster, namespace, "step-timeout", timeout=60)
    states = step_states(run)
    assert states["hangs"]["phase"] == "TimedOut"
    assert run["status"]["phase"] == "Failed"
    assert run["status"]["reason"] == "TimedOut"
    wait_for("the step's pods to be gone", lambda: not [
        p for p in items(cluster, namespace, "pods", "runctl.dev/step=hangs")
        if p["status"].get("phase") == "Running"], timeout=30)


def test_run_timeout_ends_the_run_and_stops_running_work(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("run-timeout", [
        step("first", duration="60s"),
        step("second", "first"),
    ], timeoutSeconds=3))
    run = wait_terminal(cluster, namespace, "run-timeout", timeout=60)
    assert run["status"]["phase"] == "TimedOut"
    assert run["status"]["reason"] == "TimedOut"
    states = step_states(run)
    assert all(s["phase"] in STEP_TERMINAL for s in states.values())
    assert states["second"]["phase"] == "Canceled"
    wait_for("no pod of the run to be running", lambda: not [
        p for p in items(cluster, namespace, "pods", "runctl.dev/storyrun=run-timeout")
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ], timeout=30)


def test_ttl_deletes_children_and_keeps_every_step_state(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("ttl", [
        step("a"), step("b", "a"),
    ], ttlSecondsAfterFinished=2))
    wait_terminal(cluster, namespace, "ttl")
    wait_for("the StepRuns to be deleted",
             lambda: not items(cluster, namespace, "stepruns", "runctl.dev/storyrun=ttl"),
             timeout=60)
    wait_for("the pods to be deleted",
             lambda: not items(cluster, namespace, "pods", "runctl.dev/storyrun=ttl"), timeout=60)
    run = get_run(cluster, namespace, "ttl")
    assert run["status"]["phase"] == "Succeeded"
    assert {s: v["phase"] for s, v in step_states(run).items()} == {"a": "Succeeded",
                                                                     "b": "Succeeded"}


def test_steprun_deleted_mid_run_is_recorded_terminal(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("deleted", [step("long", duration="60s")]))
    sr = wait_for("the step to run", lambda: [
        s for s in items(cluster, namespace, "stepruns", "runctl.dev/storyrun=deleted")
        if s.get("status", {}).get("phase") == "Running"])[0]
    cluster.kubectl("delete", "steprun", sr["metadata"]["name"], "-n", namespace, "--wait=false")
    run = wait_terminal(cluster, namespace, "deleted", timeout=60)
    state = step_states(run)["long"]
    assert state["phase"] in {"Lost", "Canceled"}
    if state["phase"] == "Lost":
        assert state["reason"] == "WorkloadDeleted"
    wait_for("the StepRun to be gone", lambda: not items(
        cluster, namespace, "stepruns", "runctl.dev/storyrun=deleted"), timeout=60)
    wait_for("its pod to be gone", lambda: not items(
        cluster, namespace, "pods", "runctl.dev/storyrun=deleted"), timeout=60)


def test_operator_killed_mid_run_resumes_without_duplicates(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("restart", [
        step("one", duration="3s"), step("two", "one", duration="3s"),
        step("three", "two", duration="1s"),
    ]))
    wait_for("step one to run", lambda: items(cluster, namespace, "stepruns",
                                              "runctl.dev/storyrun=restart"))
    operator.kill()
    try:
        import time
        time.sleep(4)
    finally:
        operator.start()
    run = wait_terminal(cluster, namespace, "restart", timeout=90)
    assert run["status"]["phase"] == "Succeeded"
    assert len(items(cluster, namespace, "stepruns", "runctl.dev/storyrun=restart")) == 3
    assert len(items(cluster, namespace, "pods", "runctl.dev/storyrun=restart")) == 3


def test_a_run_deleted_and_created_again_under_its_name_starts_afresh(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    manifest = storyrun("again", [step("one", duration="30s"), step("two", "one")])
    apply(cluster, namespace, manifest)
    wait_for("step one to run", lambda: [
        s for s in items(cluster, namespace, "stepruns", "runctl.dev/storyrun=again")
        if s.get("status", {}).get("phase") == "Running"])
    old_uid = get_run(cluster, namespace, "again")["metadata"]["uid"]
    cluster.kubectl("delete", "storyrun", "again", "-n", namespace, "--wait=false")
    manifest["spec"]["steps"][0]["pod"]["annotations"]["sim.runctl.dev/duration"] = "1s"
    wait_for("the old run to be gone", lambda: not cluster.kubectl(
        "get", "storyrun", "again", "-n", namespace, "--ignore-not-found", "-o", "name").stdout)
    apply(cluster, namespace, manifest)

    run = wait_terminal(cluster, namespace, "again", timeout=90)
    assert run["metadata"]["uid"] != old_uid
    assert run["status"]["phase"] == "Succeeded"
    assert {s: (v["phase"], v["attempts"]) for s, v in step_states(run).items()} == {
        "one": ("Succeeded", 1), "two": ("Succeeded", 1)}
    # What is left belongs to the new run only: the old StepRuns and pods were let go.
    wait_for("only the new run's StepRuns", lambda: all(
        o["uid"] == run["metadata"]["uid"]
        for s in items(cluster, namespace, "stepruns", "runctl.dev/storyrun=again")
        for o in s["metadata"]["ownerReferences"]), timeout=60)
    new = {s["metadata"]["uid"] for s in items(cluster, namespace, "stepruns",
                                                 "runctl.dev/storyrun=again")}
    wait_for("the old run's pods to be collected", lambda: all(
        o["uid"] in new for j in items(cluster, namespace, "pods", "runctl.dev/storyrun=again")
        for o in j["metadata"]["ownerReferences"]), timeout=60)
