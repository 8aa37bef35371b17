"""A finally step that fans out, on the real control plane (docs/API.md, "Fan-out (forEach)"
and "Finally steps and stop modes"): its items run once the main steps have ended, whatever
they ended as, as parallelism allows, one StepRun each, counted in the step's record; the run
ends with its outcome; a stop while they run leaves them running (`shutdown.finally: Run`) or
stops them item by item (`Skip`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.integration.test_finally import patch, with_finally
from tests.support import (
    apply,
    get_run,
    items,
    step,
    step_states,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration

TARGETS = ["a", "b", "c", "d", "e"]


def clean(duration: str = "1s") -> dict[str, Any]:
    """The finally fan-out: one item per target, two at once, each told the run's outcome."""
    return step("clean", duration=duration, args=["--target", "${{ item }}", "--slot",
                                                  "${{ index }}"],
                env=[{"name": "OUTCOME", "value": "${{ run.outcome }}"}],
                forEach={"items": TARGETS, "parallelism": 2})


def item_runs(cluster: ControlPlane, namespace: str, run: str) -> dict[int, dict[str, Any]]:
    """The StepRuns of clean's items, by index."""
    found = items(cluster, namespace, "stepruns", f"runctl.dev/storyrun={run},"
                                                   "runctl.dev/step=clean")
    return {int(sr["metadata"]["labels"]["runctl.dev/item"]): sr for sr in found}


def going(cluster: ControlPlane, namespace: str, run: str) -> int:
    """Items made and not ended, as their StepRuns say (one with no status yet is Pending)."""
    return sum(1 for sr in item_runs(cluster, namespace, run).values()
               if (sr.get("status") or {}).get("phase", "Pending") in ("Pending", "Running"))


def when(value: str | None) -> dt.datetime:
    """A recorded time, which must be there."""
    parsed = parse_time(value)
    assert parsed is not None
    return parsed


def no_pod_left(cluster: ControlPlane, namespace: str, run: str) -> None:
    wait_for(f"no pod of {run} left running", lambda: not [
        p for p in items(cluster, namespace, "pods", f"runctl.dev/storyrun={run}")
        if p["status"].get("phase") in ("Pending", "Running")], timeout=60)


def test_a_finally_fan_out_runs_every_item_after_a_failure_and_after_a_success(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    made_runs = {
        "failing": with_finally("failing", [step("load", duration="2s", exit_code=3,
                                                 message="schema mismatch")], [clean()]),
        "passing": with_finally("passing", [step("load", duration="2s")], [clean()]),
    }
    for manifest in made_runs.values():
        apply(crds, namespace, manifest)
    most = dict.fromkeys(made_runs, 0)

    def ended() -> bool:
        for name in made_runs:
            most[name] = max(most[name], going(crds, namespace, name))
        return all(get_run(crds, namespace, name).get("status", {}).get("phase") in (
            "Succeeded", "Failed", "Canceled", "TimedOut") for name in made_runs)
    wait_for("both runs to end", ended, timeout=180, interval=0.5)

    expected = {"failing": ("Failed", "StepFailed"), "passing": ("Succeeded", "Completed")}
    for name, (phase, reason) in expected.items():
        run = get_run(crds, namespace, name)
        status, state = run["status"], step_states(run)["clean"]
        outcome = status["outcome"]
        # The run ends with its outcome: the finally fan-out succeeded.
        assert (outcome["phase"], outcome["reason"]) == (phase, reason), outcome
        assert (status["phase"], status["reason"], status.get("message")) == (
            outcome["phase"], outcome["reason"], outcome.get("message")), status
        assert (state["phase"], state["reason"]) == ("Succeeded", "Completed"), state
        assert state["items"] == {"total": 5, "Succeeded": 5}, state
        assert "stepRun" not in state
        assert most[name] <= 2, f"{name}: {most[name]} items going at once, parallelism 2"
        made = item_runs(crds, namespace, name)
        assert sorted(made) == [0, 1, 2, 3, 4]
        decided = when(outcome["decidedAt"])
        for index, sr in made.items():
            assert sr["metadata"]["name"] == f"{name}-clean-{index}"
            assert sr["status"]["phase"] == "Succeeded", sr["status"]
            assert sr["spec"]["item"] == {"index": index, "value": TARGETS[index]}
            assert sr["spec"]["args"] == ["--target", TARGETS[index], "--slot", str(index)]
            # Rendered once the outcome was recorded: made after the main steps ended.
            assert sr["spec"]["env"] == [{"name": "OUTCOME", "value": phase}]
            assert when(sr["metadata"]["creationTimestamp"]) >= decided
        assert when(step_states(run)["load"]["finishedAt"]) <= decided
        no_pod_left(crds, namespace, name)


def test_a_stop_while_a_finally_fan_out_runs_leaves_it_running_unless_skipped(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """`shutdown.finally: Run` (the default): the stop leaves every item running and the ones
    not started still start; the run ends with its outcome. `Skip`: the running items are
    stopped (Canceled), those not started never get a StepRun and are counted Canceled, and
    an outcome of Succeeded ends Canceled."""
    runs = {
        "keep": with_finally("keep", [step("load")], [clean("4s")]),
        "cut": with_finally("cut", [step("load")], [clean("forever")],
                            shutdown={"gracePeriodSeconds": 5}),
    }
    for manifest in runs.values():
        apply(crds, namespace, manifest)

    def first_wave(name: str) -> bool:
        counts = step_states(get_run(crds, namespace, name)).get("clean", {}).get("items", {})
        return bool(counts.get("Running", 0) >= 1)
    wait_for("keep: clean's items running", lambda: first_wave("keep"), timeout=90)

    def written_running() -> bool:
        # Both items of cut written Running on their StepRuns (once their pods ran 5s): this
        # test checks a stop of items that every record shows running. A stop before that
        # write is tested in test_fan_out.py (held back, it stops them as running too).
        made = item_runs(crds, namespace, "cut")
        return sorted(made) == [0, 1] and all(
            (sr.get("status") or {}).get("phase") == "Running" for sr in made.values())
    wait_for("cut: clean's items 0 and 1 written Running", written_running, timeout=90)
    patch(crds, namespace, "keep", {"cancelRequested": True})
    patch(crds, namespace, "cut", {"cancelRequested": True, "shutdown": {"finally": "Skip"}})

    kept = wait_terminal(crds, namespace, "keep", timeout=120)
    status, state = kept["status"], step_states(kept)["clean"]
    assert status["outcome"]["phase"] == "Succeeded"
    # The stop came while the finally steps ran (after the outcome) and was seen.
    assert when(status["stop"]["observedAt"]) >= when(status["outcome"]["decidedAt"])
    # ...and completed when the run ended.
    assert status["stop"]["completedAt"] == status["finishedAt"], status["stop"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    assert (state["phase"], state["items"]) == ("Succeeded", {"total": 5, "Succeeded": 5})
    made = item_runs(crds, namespace, "keep")
    assert sorted(made) == [0, 1, 2, 3, 4]
    assert {sr["status"]["phase"] for sr in made.values()} == {"Succeeded"}
    no_pod_left(crds, namespace, "keep")

    cut = wait_terminal(crds, namespace, "cut", timeout=120)
    status, state = cut["status"], step_states(cut)["clean"]
    assert status["outcome"]["phase"] == "Succeeded"
    assert (status["phase"], status["reason"]) == ("Canceled", "Canceled"), status
    assert status["stop"]["completedAt"] == status["finishedAt"], status["stop"]
    assert state["phase"] == "Canceled", state
    assert state["items"] == {"total": 5, "Canceled": 5}, state
    made = item_runs(crds, namespace, "cut")
    # Items 0 and 1 were running: stopped, recorded Canceled. 2 to 4 never started.
    assert sorted(made) == [0, 1]
    for sr in made.values():
        assert sr["status"]["phase"] == "Canceled", sr["status"]
        assert sr["status"]["reason"] in ("Canceled", "GracePeriodExpired"), sr["status"]
    no_pod_left(crds, namespace, "cut")
