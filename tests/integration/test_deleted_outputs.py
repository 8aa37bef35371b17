"""A StepRun deleted after its step succeeded, against the real API server: the step that
reads its outputs, not made yet, fails `UpstreamOutputDeleted` at once (API.md, "A StepRun
deleted with the outputs it holds"), and the run ends instead of waiting for ever."""

from __future__ import annotations

import pytest

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import (
    apply,
    get_run,
    items,
    step,
    step_states,
    storyrun,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration


def test_a_reader_of_outputs_deleted_with_their_steprun_fails_and_the_run_ends(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("gone", [
        step("slow", duration="120s"),
        step("fast", message='{"rows": "7"}', outputs=[{"name": "rows"}]),
        step("reader", "slow", "fast", args=["--rows", "${{ steps.fast.outputs.rows }}"])]))
    # Its finalizer lets fast's StepRun go once the run records fast's end.
    wait_for("fast to be recorded Succeeded while slow runs", lambda: (
        step_states(get_run(cluster, namespace, "gone")).get("fast", {}).get("phase")
        == "Succeeded"), timeout=60)
    assert step_states(get_run(cluster, namespace, "gone"))["slow"]["phase"] != "Succeeded"
    cluster.kubectl("delete", "steprun", "gone-fast", "-n", namespace, "--timeout=30s")

    # Bounded well below slow's 120s: the reader does not wait for slow to fail.
    run = wait_terminal(cluster, namespace, "gone", timeout=45)
    why = ("step fast's outputs are gone: its StepRun gone-fast was deleted after it "
           "succeeded")
    states = step_states(run)
    assert (states["reader"]["phase"], states["reader"]["reason"],
            states["reader"]["message"]) == ("Failed", "UpstreamOutputDeleted", why)
    assert "stepRun" not in states["reader"]
    assert (run["status"]["phase"], run["status"]["reason"], run["status"]["message"]) == (
        "Failed", "UpstreamOutputDeleted", why)
    # onFailure: stop (the default): slow is stopped, never let run out.
    assert (states["slow"]["phase"], states["slow"]["reason"]) == ("Canceled", "Canceled")
    assert states["fast"]["phase"] == "Succeeded"
    made = {s["metadata"]["name"] for s in items(cluster, namespace, "stepruns",
                                                  "runctl.dev/storyrun=gone")}
    assert "gone-reader" not in made
