"""Finally steps and stop modes on the real control plane, each test with its own operator:
clean-up that runs whatever became of the main steps (success, failure, a run timeout, a
stop), on its own budget, in its own order, seeing the run's outcome; stops that cancel,
drain or skip the clean-up; and a realtime stop whose latency finally steps do not touch."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.integration.test_cli import runctl
from tests.support import (
    STEP_TERMINAL,
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

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "finally.yaml"

# Runs only when the main steps failed; says which, and how each step ended.
NOTIFY = step("notify", when="run.outcome == 'Failed'",
              args=["${{ run.failures }}", "${{ run.reason }}", "${{ steps.load.phase }}"])
# Always runs, after notify (skipped or not), and says the outcome.
UNLOCK = step("unlock", "notify", env=[{"name": "OUTCOME", "value": "${{ run.outcome }}"}])


def with_finally(name: str, steps: list[dict[str, Any]], finals: list[dict[str, Any]],
                 **spec: object) -> dict[str, Any]:
    manifest = storyrun(name, steps, **spec)
    manifest["spec"]["finally"] = finals
    return manifest


def patch(cluster: ControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> float:
    cluster.kubectl("patch", "storyrun", name, "-n", namespace, "--type", "merge", "-p",
                    json.dumps({"spec": spec}))
    return time.monotonic()


def step_run_spec(cluster: ControlPlane, namespace: str, run: str, step: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl_json(cluster, "get", "steprun", f"{run}-{step}", "-n",
                                         namespace)["spec"]
    return found


def phases(run: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {n: (s["phase"], s.get("reason")) for n, s in step_states(run).items()}


def wait_step(cluster: ControlPlane, namespace: str, run: str, step: str, phase: str,
              timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = get_run(cluster, namespace, run)
        return found if step_states(found).get(step, {}).get("phase") == phase else None
    result: dict[str, Any] = wait_for(f"{run}: step {step} {phase}", probe, timeout=timeout)
    return result


def test_finally_runs_after_success_and_after_failure_whatever_the_policy(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    main = [step("extract"), step("load", "extract")]
    apply(cluster, namespace, with_finally("ok", main, [NOTIFY, UNLOCK]))
    apply(cluster, namespace, with_finally(
        "stop", [step("extract", exit_code=1), step("load", "extract")], [NOTIFY, UNLOCK]))
    apply(cluster, namespace, with_finally(
        "go-on", [step("extract", exit_code=1), step("load", duration="3s")],
        [NOTIFY, UNLOCK], onFailure="continue"))

    ok = wait_terminal(cluster, namespace, "ok")
    assert (ok["status"]["phase"], ok["status"]["reason"]) == ("Succeeded", "Completed")
    assert ok["status"]["outcome"]["phase"] == "Succeeded"
    assert phases(ok)["notify"] == ("Skipped", "ConditionFalse")
    assert phases(ok)["unlock"] == ("Succeeded", "Completed")
    assert step_run_spec(cluster, namespace, "ok", "unlock")["env"] == [
        {"name": "OUTCOME", "value": "Succeeded"}]

    stopped = wait_terminal(cluster, namespace, "stop")
    assert (stopped["status"]["phase"], stopped["status"]["reason"]) == ("Failed", "StepFailed")
    assert phases(stopped)["load"] == ("Skipped", "UpstreamFailed")
    assert phases(stopped)["notify"] == ("Succeeded", "Completed")
    assert phases(stopped)["unlock"] == ("Succeeded", "Completed")
    assert step_run_spec(cluster, namespace, "stop", "notify")["args"] == [
        '["extract"]', "StepFailed", "Skipped"]

    # Under continue the finally steps wait for the independent branch to end.
    going = wait_terminal(cluster, namespace, "go-on")
    assert going["status"]["phase"] == "Failed"
    states = step_states(going)
    assert states["load"]["phase"] == "Succeeded"
    assert parse_time(states["notify"]["startedAt"]) >= parse_time(states["load"]["finishedAt"])
    assert step_run_spec(cluster, namespace, "go-on", "notify")["args"] == [
        '["extract"]', "StepFailed", "Succeeded"]
    for run in (ok, stopped, going):
        assert all(s["phase"] in STEP_TERMINAL for s in step_states(run).values())
        assert set(step_states(run)) == {"extract", "load", "notify", "unlock"}


def test_a_run_timeout_leaves_the_finally_steps_their_own_budget(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, with_finally(
        "slow", [step("load", duration="60s")], [step("clean", duration="4s")],
        timeoutSeconds=3, finallyTimeoutSeconds=60))
    run = wait_terminal(cluster, namespace, "slow")
    status = run["status"]
    assert (status["phase"], status["reason"]) == ("TimedOut", "TimedOut")
    assert phases(run)["load"] == ("TimedOut", "TimedOut")
    # The clean-up ran its 4s although the run's deadline had passed.
    assert phases(run)["clean"] == ("Succeeded", "Completed")
    clean = step_run_spec(cluster, namespace, "slow", "clean")
    deadline = parse_time(status["startedAt"]).timestamp() + 3
    assert parse_time(clean["deadline"]).timestamp() >= deadline + 59


def test_a_cancel_stop_runs_the_finally_steps_unless_skipped(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    for name in ("run-them", "skip-them"):
        apply(cluster, namespace, with_finally(
            name, [step("serve", duration="forever"), step("after", "serve")],
            [step("clean")]))
        wait_step(cluster, namespace, name, "serve", "Running")
    patch(cluster, namespace, "run-them", {"cancelRequested": True})
    patch(cluster, namespace, "skip-them", {"cancelRequested": True,
                                            "shutdown": {"finally": "Skip"}})

    ran = wait_terminal(cluster, namespace, "run-them")
    assert ran["status"]["phase"] == "Canceled"
    assert phases(ran)["after"] == ("Canceled", "StoppedBeforeStart")
    assert phases(ran)["clean"] == ("Succeeded", "Completed")
    stop = ran["status"]["stop"]
    # The stop completed when the main steps ended, before the clean-up started.
    assert parse_time(stop["completedAt"]) <= parse_time(step_states(ran)["clean"]["startedAt"])

    skipped = wait_terminal(cluster, namespace, "skip-them")
    assert skipped["status"]["phase"] == "Canceled"
    assert phases(skipped)["clean"] == ("Canceled", "StoppedBeforeStart")
    assert "stepRun" not in step_states(skipped)["clean"]
    assert not items(cluster, namespace, "stepruns",
                     "runctl.dev/storyrun=skip-them,runctl.dev/step=clean")


def test_a_drain_stop_lets_the_running_step_finish_and_starts_nothing(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, with_finally(
        "drain", [step("load", duration="6s"), step("publish", "load")], [step("clean")],
        shutdown={"gracePeriodSeconds": 60}))
    wait_step(cluster, namespace, "drain", "load", "Running")
    stopped = runctl(cluster, "stop", "drain", "-n", namespace, "--drain")
    assert stopped.returncode == 0, stopped
    assert get_run(cluster, namespace, "drain")["spec"]["shutdown"]["mode"] == "Drain"
    run = wait_terminal(cluster, namespace, "drain")
    assert run["status"]["phase"] == "Canceled"
    assert run["status"]["stop"]["trigger"] == "AllStepsTerminal"
    assert phases(run)["load"] == ("Succeeded", "Completed")
    assert phases(run)["publish"] == ("Canceled", "StoppedBeforeStart")
    assert not items(cluster, namespace, "stepruns",
                     "runctl.dev/storyrun=drain,runctl.dev/step=publish")
    assert phases(run)["clean"] == ("Succeeded", "Completed")


def test_a_stop_during_finally_stops_them_only_when_skipped(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    for name in ("keep", "cut"):
        apply(cluster, namespace, with_finally(name, [step("load")],
                                               [step("clean", duration="8s")]))
    for name in ("keep", "cut"):
        wait_step(cluster, namespace, name, "clean", "Running")
    # `kubectl get sr` shows the clean-up running at a glance.
    table = cluster.kubectl("get", "sr", "keep", "-n", namespace).stdout
    assert "RunningFinally" in table, table
    patch(cluster, namespace, "keep", {"cancelRequested": True})
    cut_off = runctl(cluster, "stop", "cut", "-n", namespace, "--skip-finally")
    assert cut_off.returncode == 0, cut_off

    kept = wait_terminal(cluster, namespace, "keep")
    assert (kept["status"]["phase"], kept["status"]["reason"]) == ("Succeeded", "Completed")
    assert phases(kept)["clean"] == ("Succeeded", "Completed")

    cut = wait_terminal(cluster, namespace, "cut")
    assert (cut["status"]["phase"], cut["status"]["reason"]) == ("Canceled", "Canceled")
    assert cut["status"]["outcome"]["phase"] == "Succeeded"
    assert phases(cut)["clean"][0] == "Canceled"
    wait_for("the clean-up's pods to be gone", lambda: not [
        p for p in items(cluster, namespace, "pods", "runctl.dev/storyrun=cut")
        if p["status"].get("phase") in ("Pending", "Running")], timeout=30)


def test_finally_steps_run_in_order_and_a_failed_one_fails_the_run(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, with_finally(
        "order", [step("load")],
        [step("upload", duration="3s"), step("release", "upload", exit_code=2),
         step("announce", "release")]))
    run = wait_terminal(cluster, namespace, "order")
    status, states = run["status"], step_states(run)
    assert (status["phase"], status["reason"]) == ("Failed", "FinallyFailed")
    assert status["message"].startswith("finally step release ended Failed (StepFailed)")
    assert status["outcome"]["phase"] == "Succeeded"
    assert parse_time(states["release"]["startedAt"]) >= parse_time(
        states["upload"]["finishedAt"])
    assert phases(run)["announce"] == ("Skipped", "UpstreamFailed")


def test_a_finally_step_the_budget_cut_off_before_it_started_fails_a_success(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """A finally step whose pod never runs (no node matches its nodeSelector) is cut off by
    the finally budget before it started: Canceled (StoppedBeforeStart), as is the one that
    needs it. Cut off by the budget is a failure of the finally steps whether they ran or
    not, so the main steps' success ends Failed/FinallyFailed, naming the step. No finally
    step ran, so none failed or timed out: only the one cut off before it started can fail
    the run here."""
    clean = step("clean")
    clean["pod"]["nodeSelector"] = {"runctl.dev/test-node": "none-has-this"}
    apply(cluster, namespace, with_finally(
        "cut-off", [step("load")], [clean, step("announce", "clean")],
        finallyTimeoutSeconds=4))
    run = wait_terminal(cluster, namespace, "cut-off")
    status = run["status"]
    assert (status["outcome"]["phase"], status["outcome"]["reason"]) == (
        "Succeeded", "Completed"), status["outcome"]
    assert (status["phase"], status["reason"]) == ("Failed", "FinallyFailed"), status
    assert status["message"].startswith(
        "finally step clean ended Canceled (StoppedBeforeStart): "), status["message"]
    assert phases(run) == {"load": ("Succeeded", "Completed"),
                           "clean": ("Canceled", "StoppedBeforeStart"),
                           "announce": ("Canceled", "StoppedBeforeStart")}
    # clean had its StepRun and its pod, which never ran; announce was never made.
    made = kubectl_json(cluster, "get", "steprun", "cut-off-clean", "-n", namespace)
    assert (made["status"]["phase"], made["status"]["reason"]) == (
        "Canceled", "StoppedBeforeStart"), made["status"]
    assert not items(cluster, namespace, "stepruns",
                     "runctl.dev/storyrun=cut-off,runctl.dev/step=announce")
    # The budget, counted from the outcome, had passed when the run ended.
    decided = parse_time(status["outcome"]["decidedAt"])
    finished = parse_time(status["finishedAt"])
    assert decided is not None
    assert finished is not None
    assert finished >= decided + dt.timedelta(seconds=4)
    wait_for("clean's pod to be gone", lambda: not items(
        cluster, namespace, "pods", "runctl.dev/storyrun=cut-off,runctl.dev/step=clean"),
        timeout=30)


def test_a_realtime_stop_is_as_fast_with_a_finally_step(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    manifest = with_finally("call", [
        step("ingress", duration="forever", port=8080),
        step("agent", "ingress", duration="forever"),
    ], [step("upload", duration="3s")], mode="realtime", shutdown={"gracePeriodSeconds": 20},
        transport={"lifecycle": {"drainTimeoutSeconds": 120}})
    apply(cluster, namespace, manifest)
    for name in ("ingress", "agent"):
        wait_step(cluster, namespace, "call", name, "Running")
    began = patch(cluster, namespace, "call", {"cancelRequested": True})

    def stop_completed() -> dict[str, Any] | None:
        found = get_run(cluster, namespace, "call")
        return found if (found["status"].get("stop") or {}).get("completedAt") else None
    wait_for("the stop to complete", stop_completed, timeout=30)
    latency = time.monotonic() - began
    print(f"\n[stop-latency] realtime with a finally step: {latency:.2f}s to the stop's end")
    assert latency < 20, "the stop must finish within gracePeriodSeconds"
    run = wait_terminal(cluster, namespace, "call")
    assert run["status"]["phase"] == "Canceled"
    assert phases(run)["upload"] == ("Succeeded", "Completed")
    stop = run["status"]["stop"]
    assert parse_time(stop["completedAt"]) <= parse_time(
        step_states(run)["upload"]["startedAt"])
    # The finally step ran as a batch step, not a long-lived Deployment.
    assert step_run_spec(cluster, namespace, "call", "upload")["mode"] == "batch"
    assert not items(cluster, namespace, "deployments",
                     "runctl.dev/storyrun=call,runctl.dev/step=upload")


def test_the_finally_example_runs_as_its_comment_says(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    run = wait_terminal(cluster, namespace, "nightly-lock")
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "StepFailed")
    assert phases(run)["notify"] == ("Succeeded", "Completed")
    assert phases(run)["unlock"] == ("Succeeded", "Completed")
    args = step_run_spec(cluster, namespace, "nightly-lock", "notify")["args"]
    assert args == ["--channel", "data-oncall", "--failed", '["load"]', "--reason", "StepFailed",
                    "--load", "Failed"]


def test_a_story_s_finally_steps_run_from_the_record_and_a_run_skips_them_on_stop(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, {
        "apiVersion": "runctl.dev/v1alpha1", "kind": "Story", "metadata": {"name": "nightly"},
        "spec": {"params": [{"name": "channel", "type": "string", "default": "oncall"}],
                 "steps": [step("load", duration="5s", exit_code=1)],
                 "finally": [step("notify", when="size(run.failures) > 0",
                                  args=["${{ params.channel }}", "${{ run.failures }}"])]}})
    apply(cluster, namespace, {
        "apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun", "metadata": {"name": "n1"},
        "spec": {"storyRef": {"name": "nightly"}, "params": {"channel": "data"}}})
    run = wait_terminal(cluster, namespace, "n1")
    assert [s["name"] for s in run["status"]["resolved"]["spec"]["finally"]] == ["notify"]
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "StepFailed")
    assert phases(run)["notify"] == ("Succeeded", "Completed")
    assert step_run_spec(cluster, namespace, "n1", "notify")["args"] == ["data", '["load"]']
    # A run of the Story chooses, in its stop, to skip them.
    apply(cluster, namespace, {
        "apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun", "metadata": {"name": "n2"},
        "spec": {"storyRef": {"name": "nightly"}}})
    wait_step(cluster, namespace, "n2", "load", "Running")
    patch(cluster, namespace, "n2", {"cancelRequested": True, "shutdown": {"finally": "Skip"}})
    skipped = wait_terminal(cluster, namespace, "n2")
    assert skipped["status"]["phase"] == "Canceled"
    assert phases(skipped)["notify"] == ("Canceled", "StoppedBeforeStart")
