"""Suspend and resume on the real local control plane (docs/API.md "Suspend and resume",
guarantee 15): a suspended run starts nothing while what runs goes on and is recorded; the
record says why it waits; a resume starts what waited; a stop ends a suspended run; the API
server refuses a change once the run is terminal. `runctl suspend` and `runctl resume` as a
person runs them: what they print, and their answer for a run already as asked or ended."""

from __future__ import annotations

import json
import time

import pytest

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.integration.test_cli import runctl
from tests.support import (
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


def _suspended(run: dict) -> dict | None:
    return next((c for c in (run.get("status") or {}).get("conditions") or ()
                 if c["type"] == "Suspended"), None)


def _reasons(cluster: ControlPlane, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cluster, namespace, name)]


def test_a_run_created_suspended_starts_nothing_until_resumed(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        storyrun("held", [step("a"), step("b", "a")], suspend=True)))

    def said() -> dict | None:
        run = get_run(cluster, namespace, "held")
        return run if (run.get("status") or {}).get("reason") == "Suspended" else None
    run = wait_for("the run to say it is suspended", said)
    assert run["status"]["phase"] == "Pending"
    assert step_states(run)["a"]["reason"] == "Suspended"
    assert "stepRun" not in step_states(run)["a"]
    condition = _suspended(run)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == (
        "True", "Suspended")
    shown = cluster.kubectl("get", "sr", "held", "-n", namespace, "--no-headers").stdout
    assert shown.split()[1:4] == ["Pending", "0/2", "Suspended"], shown
    time.sleep(3)  # several reconciles' worth: still nothing made
    assert items(cluster, namespace, "stepruns", "runctl.dev/storyrun=held") == []
    assert items(cluster, namespace, "pods", "runctl.dev/storyrun=held") == []

    resumed = runctl(cluster, "resume", "held", "-n", namespace)
    assert (resumed.returncode, resumed.stdout) == (0, "storyrun held resumed\n"), resumed
    cluster.kubectl("wait", "--for=condition=Suspended=false", "sr/held", "-n", namespace,
                    "--timeout=60s")
    run = wait_terminal(cluster, namespace, "held")
    assert run["status"]["phase"] == "Succeeded"
    condition = _suspended(run)
    assert condition is not None
    assert condition["status"] == "False"
    assert _reasons(cluster, namespace, "held").count("Suspended") == 1
    assert _reasons(cluster, namespace, "held").count("Resumed") == 1


def test_suspended_mid_run_what_runs_goes_on_and_nothing_starts_until_resumed(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        storyrun("mid", [step("a", duration="4s"), step("b", "a")])))
    wait_for("a to run", lambda: step_states(get_run(cluster, namespace, "mid")).get(
        "a", {}).get("phase") == "Running")
    suspended = runctl(cluster, "suspend", "mid", "-n", namespace)
    assert suspended.returncode == 0, suspended
    assert suspended.stdout == ("storyrun mid suspended: nothing new starts until `runctl "
                                "resume mid`; running steps go on\n")
    again = runctl(cluster, "suspend", "mid", "-n", namespace)
    assert (again.returncode, again.stdout) == (0, "storyrun mid is already suspended\n")

    def a_done_b_held() -> dict | None:
        run = get_run(cluster, namespace, "mid")
        states = step_states(run)
        return run if (states.get("a", {}).get("phase") == "Succeeded"
                       and states.get("b", {}).get("reason") == "Suspended") else None
    run = wait_for("a to succeed and b to wait for the resume", a_done_b_held)
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Running", "Suspended")
    time.sleep(3)
    assert [sr["spec"]["step"] for sr in items(
        cluster, namespace, "stepruns", "runctl.dev/storyrun=mid")] == ["a"]
    resumed_at = time.time()
    assert runctl(cluster, "resume", "mid", "-n", namespace).returncode == 0
    run = wait_terminal(cluster, namespace, "mid")
    assert run["status"]["phase"] == "Succeeded"
    b_started = parse_time(step_states(run)["b"]["startedAt"]).timestamp()
    assert b_started >= int(resumed_at) - 1, "b started before the resume"
    ended = runctl(cluster, "resume", "mid", "-n", namespace)
    assert (ended.returncode, ended.stdout) == (
        0, "storyrun mid is already Succeeded: nothing to resume\n")
    refused = cluster.kubectl("patch", "sr", "mid", "-n", namespace, "--type", "merge", "-p",
                              json.dumps({"spec": {"suspend": True}}), check=False)
    assert refused.returncode != 0
    assert "spec.suspend cannot change once the run is terminal" in refused.stderr


def test_a_stop_ends_a_suspended_run_and_its_finally_steps_run(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    manifest = storyrun("halt", [step("a", duration="60s"), step("b", "a")], suspend=False)
    manifest["spec"]["finally"] = [step("cleanup")]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    wait_for("a to run", lambda: step_states(get_run(cluster, namespace, "halt")).get(
        "a", {}).get("phase") == "Running")
    assert runctl(cluster, "suspend", "halt", "-n", namespace).returncode == 0
    wait_for("the run to say it is suspended", lambda: (
        get_run(cluster, namespace, "halt")["status"].get("reason") == "Suspended"))
    stopped = runctl(cluster, "stop", "halt", "-n", namespace, "--watch")
    assert stopped.returncode == 4, stopped
    run = wait_terminal(cluster, namespace, "halt")
    states = step_states(run)
    assert run["status"]["phase"] == "Canceled"
    assert (states["b"]["phase"], states["b"]["reason"]) == ("Canceled", "StoppedBeforeStart")
    assert states["cleanup"]["phase"] == "Succeeded"
    condition = _suspended(run)
    assert condition is not None
    assert condition["status"] == "False"
    assert run["spec"]["suspend"] is True
