"""Run parallelism on the real control plane (docs/API.md "Run parallelism", guarantee 14): a
run never has more of its steps and items going than `spec.parallelism`, as the StepRuns' own
recorded startedAt and finishedAt show, and it keeps every slot busy while a step waits; a
waiting step says so in the run's record and in `runctl get`; a Story's bound is its runs'.
What is refused at apply is in test_crd_admission, test_story_crds and test_story_webhook."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.integration.test_cli import runctl
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

WAITING = "RunParallelism"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "parallelism.yaml"


def most_at_once(stepruns: list[dict[str, Any]]) -> int:
    """The most StepRuns whose recorded [startedAt, finishedAt) spans hold one instant: a slot
    is held from when a StepRun is made until it is terminal, and the decision that ends one
    makes the next with the same time, so spans that only touch do not overlap."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for sr in stepruns:
        status = sr["status"]
        started, finished = parse_time(status["startedAt"]), parse_time(status["finishedAt"])
        assert started is not None, status
        assert finished is not None, status
        spans.append((started, finished))
    return max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)


def seen_waiting(cluster: ControlPlane, namespace: str, name: str, step_name: str,
                 message: str) -> dict[str, Any]:
    """Wait until the run's record shows `step_name` waiting for a slot; its entry."""
    def probe() -> dict[str, Any] | None:
        state = step_states(get_run(cluster, namespace, name)).get(step_name) or {}
        return state if state.get("reason") == WAITING else None
    state: dict[str, Any] = wait_for(f"{step_name} of {name} to wait for a slot", probe,
                                     timeout=60, interval=0.2)
    assert state["message"] == message, state
    return state


def test_six_independent_steps_two_at_a_time_never_more_and_all_succeed(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """examples/parallelism.yaml: six exports of 3 s, parallelism 2."""
    apply(crds, namespace, yaml.safe_load(EXAMPLE.read_text()))
    waiting = seen_waiting(crds, namespace, "nightly-exports", "export-me",
                           "waiting for a slot: 2 of 2 running")
    assert waiting["phase"] == "Pending"
    assert "stepRun" not in waiting
    shown = runctl(crds, "get", "nightly-exports", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert f"{WAITING}: waiting for a slot: 2 of 2 running" in shown.stdout, shown.stdout

    run = wait_terminal(crds, namespace, "nightly-exports", timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    exports = [f"export-{r}" for r in ("eu", "us", "ap", "sa", "af", "me")]
    assert {n: (s["phase"], s["reason"]) for n, s in step_states(run).items()} == (
        dict.fromkeys(exports, ("Succeeded", "Completed")))
    made = items(crds, namespace, "stepruns", "runctl.dev/storyrun=nightly-exports")
    assert len(made) == 6
    assert most_at_once(made) == 2
    # DAG order, the spec's between steps that need nothing: the first two start first.
    first = sorted(made, key=lambda sr: (sr["status"]["startedAt"], sr["spec"]["step"]))
    assert {sr["spec"]["step"] for sr in first[:2]} == {"export-eu", "export-us"}


def test_a_fan_out_under_both_limits_never_passes_the_run_s(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """10 items, forEach.parallelism 5, run parallelism 3: the run's bound holds them."""
    convert = step("convert", duration="2s",
                   forEach={"items": list(range(10)), "parallelism": 5})
    apply(crds, namespace, storyrun("both", [convert], parallelism=3))
    waiting = seen_waiting(crds, namespace, "both", "convert",
                           "items waiting for a slot: 3 of 3 running")
    assert waiting["phase"] in ("Pending", "Running")

    run = wait_terminal(crds, namespace, "both", timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    state = step_states(run)["convert"]
    assert (state["phase"], state["reason"]) == ("Succeeded", "Completed")
    assert state["items"] == {"total": 10, "Succeeded": 10}
    made = items(crds, namespace, "stepruns", "runctl.dev/step=convert")
    assert len(made) == 10
    assert most_at_once(made) == 3


def test_a_run_of_a_story_takes_its_parallelism(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    spec = {"parallelism": 1,
            "steps": [step(n, duration="2s") for n in ("x", "y", "z")]}
    apply(crds, namespace, {"apiVersion": "runctl.dev/v1alpha1", "kind": "Story",
                            "metadata": {"name": "one-by-one"}, "spec": spec})
    apply(crds, namespace, {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
                            "metadata": {"name": "single"},
                            "spec": {"storyRef": {"name": "one-by-one"}}})
    seen_waiting(crds, namespace, "single", "z", "waiting for a slot: 1 of 1 running")
    run = wait_terminal(crds, namespace, "single", timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    made = items(crds, namespace, "stepruns", "runctl.dev/storyrun=single")
    assert len(made) == 3
    assert most_at_once(made) == 1


def test_kubectl_explain_describes_the_field(crds: ControlPlane) -> None:
    for kind in ("storyrun", "story"):
        out = " ".join(crds.kubectl("explain", f"{kind}.spec.parallelism").stdout.split())
        assert "The most of the run's steps running at once" in out, out
        assert "reason RunParallelism" in out, out
        assert "Default: no bound." in out, out
