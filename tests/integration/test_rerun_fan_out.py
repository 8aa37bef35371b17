"""A re-run of a run whose fan-out had one item fail, on the real control plane with a real
operator: the items that succeeded with the same inputs are reused (their StepRuns made
Succeeded/Reused with the outputs of the items that made them, and never a pod), the failed one
runs again, the step below the fan-out executes again, and the run's record counts it all."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import OperatorProcess
from tests.integration.test_rerun import pod_steps, reasons, rerun, run, steprun, versions
from tests.support import apply, items, step, step_states, wait_terminal

pytestmark = pytest.mark.integration

API = "runctl.dev/v1alpha1"
SIM = "sim.runctl.dev/"

ITEMS = [{"n": "a", "code": "0"}, {"n": "b", "code": "3"}, {"n": "c", "code": "0"},
         {"n": "d", "code": "0"}]
"""Item 1 exits 3; the re-run mends it (and only it) through the params."""


def convert() -> dict[str, Any]:
    """prep -> work (a fan-out over the param `items`, two at a time, each item's output its
    name) -> after, which reads the items' outputs; onFailure continue, so every item runs."""
    work = step("work", "prep", exit_code=None, args=["--n", "${{ item.n }}"],
                annotations={SIM + "exit-code": "${{ item.code }}",
                             SIM + "message": '{"out": "${{ item.n }}"}'},
                outputs=[{"name": "out"}],
                forEach={"items": "${{ params.items }}", "parallelism": 2})
    after = step("after", args=["--outs", "${{ steps.work.outputs.out }}"])
    return {"apiVersion": API, "kind": "Story", "metadata": {"name": "convert"},
            "spec": {"params": [{"name": "items", "type": "array"}], "onFailure": "continue",
                     "steps": [step("prep"), work, after]}}


def item_pods(operator: OperatorProcess, namespace: str, run_name: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in items(
        operator.cluster, namespace, "pods",
        f"runctl.dev/storyrun={run_name},runctl.dev/step=work"))


def test_a_rerun_reuses_the_items_that_succeeded_and_runs_the_failed_one_again(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    apply(cluster, namespace, convert())
    apply(cluster, namespace, run("src", storyRef={"name": "convert"}, params={"items": ITEMS}))
    source = wait_terminal(cluster, namespace, "src", timeout=120)
    assert source["status"]["phase"] == "Failed", source["status"]
    work = step_states(source)["work"]
    assert work["items"] == {"total": 4, "Succeeded": 3, "Failed": 1}
    assert reasons(source)["after"] == ("Skipped", "UpstreamFailed")
    assert item_pods(operator, namespace, "src") == [f"src-work-{i}-1" for i in range(4)]
    before = versions(cluster, namespace, "src")

    mended = [dict(i, code="0") for i in ITEMS]
    apply(cluster, namespace, rerun("again", "src", items=mended))
    again = wait_terminal(cluster, namespace, "again", timeout=120)
    assert again["status"]["phase"] == "Succeeded", again["status"]
    work = step_states(again)["work"]
    assert work["items"] == {"total": 4, "Succeeded": 4}
    assert (work["phase"], work["reason"]) == ("Succeeded", "Completed")
    assert "failedItems" not in work
    assert reasons(again)["prep"] == ("Succeeded", "Reused")
    assert reasons(again)["after"] == ("Succeeded", "Completed")
    # The record names whole steps only: prep; the fan-out and the step below it executed.
    assert again["status"]["rerun"]["reused"] == 1
    assert set(again["status"]["rerun"]["steps"]) == {"prep"}

    # Items 0, 2 and 3: made Succeeded/Reused with the outputs of the source's items, no pod;
    # item 1 ran again (its value changed, and it had failed), with a pod of its own.
    for index in (0, 2, 3):
        made = steprun(cluster, namespace, f"src-work-{index}")
        reused = steprun(cluster, namespace, f"again-work-{index}")
        status = reused["status"]
        assert (status["phase"], status["reason"], status["attempts"]) == (
            "Succeeded", "Reused", 0)
        assert status.get("workload") is None
        assert status["outputs"] == made["status"]["outputs"] == {"out": ITEMS[index]["n"]}
        assert status["reusedFrom"] == {"storyRun": "src", "stepRun": f"src-work-{index}",
                                        "uid": made["metadata"]["uid"]}
        assert reused["spec"]["inputsDigest"] == made["spec"]["inputsDigest"]
        assert reused["spec"]["item"] == {"index": index, "value": ITEMS[index]}
    ran = steprun(cluster, namespace, "again-work-1")
    assert (ran["status"]["phase"], ran["status"]["reason"], ran["status"]["attempts"]) == (
        "Succeeded", "Completed", 1)
    assert ran["spec"]["inputsDigest"] != steprun(
        cluster, namespace, "src-work-1")["spec"]["inputsDigest"]
    assert item_pods(operator, namespace, "again") == ["again-work-1-1"]
    assert pod_steps(cluster, namespace, "again") == {"work", "after"}
    # The step below read every item's output, the reused ones' as the source made them.
    assert steprun(cluster, namespace, "again-after")["spec"]["args"] == [
        "--outs", '["a","b","c","d"]']
    # The source was only read.
    assert versions(cluster, namespace, "src") == before
