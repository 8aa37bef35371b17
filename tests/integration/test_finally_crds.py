"""Finally steps and stop modes against the real API server, no operator: bad input refused at
create with the field named; shutdown.mode and shutdown.finally changeable until the run is
terminal and not after; the outcome, once recorded, fixed; a terminal run needs a terminal
entry for every finally step."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from tests.integration.test_crd_immutability import (
    FAILED_RUN,
    GROUP,
    T0,
    T1,
    VERSION,
    create,
    get,
    kubectl_writer,
    step,
    terminal_run,
)

pytestmark = pytest.mark.integration


def run(name: str, finally_: list[dict[str, Any]] | None = None, **spec: Any
        ) -> dict[str, Any]:
    extra = {"finally": finally_} if finally_ is not None else {}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun", "metadata": {"name": name},
            "spec": {"steps": [step("a")], **extra, **spec}}


BAD = [
    pytest.param({"finally": [step("a")]},
                 ["spec.finally", "a step name is unique across steps and finally"],
                 id="name-in-both-lists"),
    pytest.param({"finally": [step("clean", "a")]},
                 ["spec.finally", "needs must name finally steps (never a step of spec.steps), "
                  "but step clean needs a, which is not a finally step"],
                 id="finally-needs-a-main-step"),
    pytest.param({"finally": [step("x", "y"), step("y", "x")]},
                 ["spec.finally", "needs must form a DAG", "step x needs y which needs x"],
                 id="cycle-among-finally-steps"),
    pytest.param({"finallyTimeoutSeconds": 0},
                 ["spec.finallyTimeoutSeconds", "greater than or equal to 1"],
                 id="finally-timeout-too-small"),
    pytest.param({"finallyTimeoutSeconds": 86401},
                 ["spec.finallyTimeoutSeconds", "less than or equal to 86400"],
                 id="finally-timeout-too-large"),
    pytest.param({"shutdown": {"mode": "Abort"}},
                 ["spec.shutdown.mode", 'Unsupported value: "Abort"', '"Cancel", "Drain"'],
                 id="unknown-shutdown-mode"),
    pytest.param({"shutdown": {"finally": "Never"}},
                 ["spec.shutdown.finally", 'Unsupported value: "Never"', '"Run", "Skip"'],
                 id="unknown-shutdown-finally"),
]


@pytest.mark.parametrize(("spec", "expected"), BAD)
def test_bad_finally_input_is_refused_naming_the_field(
        crds: ControlPlane, namespace: str, spec: dict[str, Any], expected: list[str]) -> None:
    out = crds.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(run("bad", **spec)),
                       check=False)
    assert out.returncode != 0
    for text in expected:
        assert text in out.stderr, out.stderr


def _patch(crds: ControlPlane, namespace: str, name: str, patch: dict[str, Any]
           ) -> tuple[int, str]:
    out = crds.kubectl("patch", "sr", name, "-n", namespace, "--type=merge", "-p",
                       json.dumps(patch), check=False)
    return out.returncode, out.stderr


def test_shutdown_changes_until_terminal_and_not_after(crds: ControlPlane,
                                                       namespace: str) -> None:
    create(crds, namespace, run("live", finally_=[step("clean")], shutdown={"mode": "Drain"}))
    # Stop and choose how, in one patch; then change the mind while the run is not terminal.
    assert _patch(crds, namespace, "live", {"spec": {
        "cancelRequested": True, "shutdown": {"finally": "Skip"}}})[0] == 0
    assert _patch(crds, namespace, "live", {"spec": {"shutdown": {"mode": "Cancel"}}})[0] == 0
    spec = get(crds, namespace, "storyruns", "live")["spec"]
    assert spec["shutdown"] == {"gracePeriodSeconds": 30, "mode": "Cancel", "finally": "Skip"}
    # The grace period is not one of them.
    code, err = _patch(crds, namespace, "live", {"spec": {"shutdown": {"gracePeriodSeconds": 5}}})
    assert code != 0
    assert "this update changes spec.shutdown.gracePeriodSeconds" in err
    # Terminal: shutdown is fixed.
    terminal_run(crds, namespace, "done")
    code, err = _patch(crds, namespace, "done", {"spec": {"shutdown": {"finally": "Skip"}}})
    assert code != 0
    assert "spec.shutdown: Forbidden: spec.shutdown cannot change once the run is terminal" in err


def test_the_outcome_is_recorded_once(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "o"},
                             "spec": {"steps": [step("a")], "finally": [step("clean")]}})
    outcome = {"phase": "Failed", "reason": "StepFailed", "message": "exit 1", "decidedAt": T1}
    status = {"phase": "Running", "reason": "RunningFinally", "startedAt": T0,
              "outcome": outcome, "stepStates": {
                  "a": {"phase": "Failed", "reason": "StepFailed", "finishedAt": T1},
                  "clean": {"phase": "Running", "stepRun": "o-clean", "attempts": 1}}}
    assert kubectl_writer(crds, namespace, "storyruns", "o", status).accepted
    changed = {**status, "outcome": {**outcome, "phase": "Succeeded"}}
    refused = kubectl_writer(crds, namespace, "storyruns", "o", changed)
    assert not refused.accepted
    assert "status.outcome is what the main steps ended as: once set it never changes" \
        in refused.message
    # Terminal with a finally step not terminal: refused, the step named.
    ended = {**FAILED_RUN, "outcome": outcome, "stepStates": {
        "a": {"phase": "Failed", "reason": "StepFailed", "finishedAt": T1},
        "clean": {"phase": "Running", "stepRun": "o-clean", "attempts": 1}}}
    refused = kubectl_writer(crds, namespace, "storyruns", "o", ended)
    assert not refused.accepted
    assert "needs a terminal status.stepStates entry for every step of spec.finally; " \
           "missing or not terminal: clean" in refused.message
