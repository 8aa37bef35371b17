"""Terminal is final, for every writer: the API server itself refuses (422) any write that moves a
terminal StoryRun or StepRun, or a terminal stepStates entry, and accepts the same terminal state
written again as a no-op. A StoryRun's spec is fixed except cancelRequested false -> true.

The writers here are foreign on purpose: `kubectl patch --subresource=status` and the Python
client (a read-modify-write PUT, as a straggling worker would do). No operator takes part: these
tests assume none is acting on their namespace (steps run `forever` so that one which did could
not finish a run by itself).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.devcluster import ControlPlane
from tests.support import kubectl_json

pytestmark = pytest.mark.integration

GROUP, VERSION = "runctl.dev", "v1alpha1"
T0, T1, T2 = "2026-11-22T10:00:00Z", "2026-11-22T10:02:13Z", "2026-11-22T10:05:00Z"

Status = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    code: int | None  # the HTTP status of a refusal, where the writer reports it
    message: str


# -- the two foreign writers -----------------------------------------------------------------


def kubectl_writer(cluster: ControlPlane, namespace: str, plural: str, name: str,
                   status: Status | None) -> Outcome:
    """`kubectl patch --subresource=status` with a JSON patch that sets (or removes) status."""
    op = ({"op": "remove", "path": "/status"} if status is None
          else {"op": "replace", "path": "/status", "value": status})
    out = cluster.kubectl("patch", plural, name, "-n", namespace, "--subresource=status",
                          "--type=json", "-p", json.dumps([op]), check=False)
    return Outcome(out.returncode == 0, None if out.returncode == 0 else 422,
                   out.stdout + out.stderr)


def python_writer(cluster: ControlPlane, namespace: str, plural: str, name: str,
                  status: Status | None) -> Outcome:
    """The Python client: read the object, replace its status, PUT it to /status."""
    api = client.CustomObjectsApi(cluster.api_client())
    body = cast(dict[str, Any],
                api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
    if status is None:
        body.pop("status", None)
    else:
        body["status"] = status
    try:
        api.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name,
                                                    body)
    except ApiException as exc:
        message = json.loads(exc.body)["message"] if exc.body else str(exc)
        return Outcome(False, exc.status, message)
    return Outcome(True, None, "")


Writer = Callable[[ControlPlane, str, str, str, "Status | None"], Outcome]
WRITERS = [pytest.param(kubectl_writer, id="kubectl"), pytest.param(python_writer, id="python")]


# -- objects ---------------------------------------------------------------------------------


def step(name: str, *needs: str) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1",
            "pod": {"annotations": {"sim.runctl.dev/duration": "forever"}}}


def create(cluster: ControlPlane, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))


def get(cluster: ControlPlane, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", plural, name, "-n", namespace)


def write(cluster: ControlPlane, namespace: str, plural: str, name: str, status: Status) -> None:
    outcome = kubectl_writer(cluster, namespace, plural, name, status)
    assert outcome.accepted, outcome.message


FAILED_RUN: Status = {
    "phase": "Failed", "reason": "StepFailed", "message": "extract: exit code 3",
    "startedAt": T0, "finishedAt": T1, "duration": "2m13s", "progress": "2/2",
    "stepStates": {
        "extract": {"phase": "Failed", "reason": "StepFailed", "message": "exit code 3",
                    "stepRun": "nightly-extract", "attempts": 1, "startedAt": T0,
                    "finishedAt": T1},
        "load": {"phase": "Skipped", "reason": "UpstreamFailed", "attempts": 0,
                 "finishedAt": T1},
    },
}


def terminal_run(cluster: ControlPlane, namespace: str, name: str = "nightly") -> Status:
    """A StoryRun that went Running, then Failed; returns its stored status."""
    create(cluster, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                                "metadata": {"name": name},
                                "spec": {"steps": [step("extract"), step("load", "extract")]}})
    write(cluster, namespace, "storyruns", name, {
        "phase": "Running", "startedAt": T0, "progress": "0/2",
        "stepStates": {"extract": {"phase": "Running", "stepRun": "nightly-extract",
                                   "attempts": 1, "startedAt": T0},
                       "load": {"phase": "Pending"}}})
    write(cluster, namespace, "storyruns", name, FAILED_RUN)
    status: Status = get(cluster, namespace, "storyruns", name)["status"]
    assert status["phase"] == "Failed"
    return status


def lost_step_run(cluster: ControlPlane, namespace: str, name: str = "nightly-extract",
                  phase: str = "Lost", **fields: Any) -> Status:
    """A StepRun (as the operator creates it) that went Running, then `phase`."""
    create(cluster, namespace, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun", "metadata": {"name": name},
        "spec": {**step("extract"), "storyRun": "nightly", "step": "extract", "mode": "batch"}})
    write(cluster, namespace, "stepruns", name, {
        "phase": "Running", "attempts": 1, "startedAt": T0, "heartbeatAt": T0,
        "workload": {"kind": "Pod", "name": name}})
    final = {"phase": phase, "reason": "WorkloadDeleted",
             "message": "the step's pod was deleted while it ran", "attempts": 1,
             "startedAt": T0, "finishedAt": T1, "failureClass": "Permanent",
             "workload": {"kind": "Pod", "name": name}, **fields}
    write(cluster, namespace, "stepruns", name, final)
    status: Status = get(cluster, namespace, "stepruns", name)["status"]
    return status


def changed(status: Status, **fields: Any) -> Status:
    new = copy.deepcopy(status)
    for key, value in fields.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    return new


def with_step(status: Status, name: str, entry: dict[str, Any] | None) -> Status:
    new = copy.deepcopy(status)
    if entry is None:
        del new["stepStates"][name]
    else:
        new["stepStates"][name] = entry
    return new


def assert_refused(outcome: Outcome, *texts: str) -> None:
    assert not outcome.accepted, "the API server accepted a write that moves a terminal status"
    assert outcome.code == 422
    for text in texts:
        assert text in outcome.message


# -- a terminal StoryRun ---------------------------------------------------------------------

RUN_CHANGES = [
    pytest.param(lambda s: changed(s, phase="Running"),
                 ["status.phase", "cannot go from Failed to Running", "Failed is terminal"],
                 id="terminal-to-Running"),
    pytest.param(lambda s: changed(s, phase="Succeeded", reason="Completed"),
                 ["cannot go from Failed to Succeeded"], id="Failed-to-Succeeded"),
    pytest.param(lambda s: changed(s, phase="Canceled"),
                 ["cannot go from Failed to Canceled"], id="Failed-to-Canceled"),
    pytest.param(lambda s: changed(s, message="all good after all"),
                 ["status is terminal (Failed)", "phase, reason, message and finishedAt",
                  "immutable", "changes message"], id="message"),
    pytest.param(lambda s: changed(s, reason="Completed"),
                 ["status is terminal (Failed)", "changes reason"], id="reason"),
    pytest.param(lambda s: changed(s, finishedAt=T2),
                 ["status is terminal (Failed)", "changes finishedAt"], id="finishedAt"),
    pytest.param(lambda s: changed(s, finishedAt=None),
                 ["status is terminal (Failed)", "changes finishedAt"], id="finishedAt-removed"),
    pytest.param(lambda s: changed(s, phase=None),
                 ["cannot go from Failed to nothing"], id="phase-removed"),
    pytest.param(lambda s: None, ["status cannot be removed once written"],
                 id="status-removed"),
]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("change", "texts"), RUN_CHANGES)
def test_a_terminal_story_run_cannot_move(
        crds: ControlPlane, namespace: str, writer: Writer,
        change: Callable[[Status], Status | None], texts: list[str]) -> None:
    before = terminal_run(crds, namespace)
    assert_refused(writer(crds, namespace, "storyruns", "nightly", change(before)), *texts)
    assert get(crds, namespace, "storyruns", "nightly")["status"] == before


STEP_STATE_CHANGES = [
    pytest.param(lambda s: with_step(s, "extract", {**s["stepStates"]["extract"],
                                                    "phase": "Running"}),
                 "changes extract", id="entry-to-Running"),
    pytest.param(lambda s: with_step(s, "extract", {**s["stepStates"]["extract"],
                                                    "phase": "Succeeded",
                                                    "reason": "Completed"}),
                 "changes extract", id="entry-Failed-to-Succeeded"),
    pytest.param(lambda s: with_step(s, "extract", {**s["stepStates"]["extract"],
                                                    "message": "fine"}),
                 "changes extract", id="entry-message"),
    pytest.param(lambda s: with_step(s, "load", None), "changes load", id="entry-removed"),
    # Map order is not defined: either entry may be named first.
    pytest.param(lambda s: changed(s, stepStates=None), " (and more)", id="all-entries-removed"),
]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("change", "names"), STEP_STATE_CHANGES)
def test_a_terminal_step_state_cannot_move(
        crds: ControlPlane, namespace: str, writer: Writer,
        change: Callable[[Status], Status], names: str) -> None:
    before = terminal_run(crds, namespace)
    outcome = writer(crds, namespace, "storyruns", "nightly", change(before))
    assert_refused(outcome, "status.stepStates", "a terminal step state is final",
                   names)
    assert get(crds, namespace, "storyruns", "nightly")["status"] == before


@pytest.mark.parametrize("writer", WRITERS)
def test_the_same_terminal_status_again_is_a_no_op(
        crds: ControlPlane, namespace: str, writer: Writer) -> None:
    before = terminal_run(crds, namespace)
    version = get(crds, namespace, "storyruns", "nightly")["metadata"]["resourceVersion"]
    outcome = writer(crds, namespace, "storyruns", "nightly", before)
    assert outcome.accepted, outcome.message
    after = get(crds, namespace, "storyruns", "nightly")
    assert after["status"] == before
    assert after["metadata"]["resourceVersion"] == version


def test_fields_outside_the_final_record_may_still_be_written(
        crds: ControlPlane, namespace: str) -> None:
    """The stop record, conditions and counters of a terminal run are not frozen."""
    before = terminal_run(crds, namespace)
    after = changed(before, stop={"requestedAt": T1, "observedAt": T1, "completedAt": T1,
                                  "trigger": "AllStepsTerminal"},
                    conditions=[{"type": "Succeeded", "status": "False", "reason": "StepFailed",
                                 "message": "extract: exit code 3",
                                 "lastTransitionTime": T1}],
                    observedGeneration=1)
    write(crds, namespace, "storyruns", "nightly", after)
    assert get(crds, namespace, "storyruns", "nightly")["status"] == after


def test_metadata_of_a_terminal_run_may_change(crds: ControlPlane, namespace: str) -> None:
    """Labels, annotations (kopf keeps its bookkeeping there) and finalizers stay writable."""
    terminal_run(crds, namespace)
    crds.kubectl("annotate", "sr", "nightly", "-n", namespace, "kopf.runctl.dev/last=x")
    crds.kubectl("label", "sr", "nightly", "-n", namespace, "team=data")


def test_a_terminal_run_needs_a_terminal_entry_for_every_step(
        crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "early"},
                             "spec": {"steps": [step("extract"), step("load", "extract")]}})
    status = with_step(FAILED_RUN, "load", {"phase": "Pending"})
    outcome = python_writer(crds, namespace, "storyruns", "early", status)
    assert_refused(outcome, "a terminal StoryRun (Failed) needs a terminal status.stepStates "
                            "entry for every step", "not terminal: load")
    outcome = python_writer(crds, namespace, "storyruns", "early",
                            with_step(FAILED_RUN, "load", None))
    assert_refused(outcome, "missing or not terminal: load")


# -- the run's phase graph -------------------------------------------------------------------


@pytest.mark.parametrize(("path", "refused"), [
    pytest.param(["Running", "Pending"], "cannot go from Running to Pending",
                 id="Running-to-Pending"),
    pytest.param(["Running", "Stopping", "Running"], "cannot go from Stopping to Running",
                 id="Stopping-to-Running"),
    pytest.param(["Stopping", "Pending"], "cannot go from Stopping to Pending",
                 id="Stopping-to-Pending"),
])
def test_a_run_does_not_go_back(crds: ControlPlane, namespace: str, path: list[str],
                                refused: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "back"}, "spec": {"steps": [step("a")]}})
    for phase in path[:-1]:
        write(crds, namespace, "storyruns", "back", {"phase": phase})
    outcome = kubectl_writer(crds, namespace, "storyruns", "back", {"phase": path[-1]})
    assert_refused(outcome, refused)


def test_a_stop_ends_in_a_terminal_phase(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "stop"}, "spec": {"steps": [step("a")]}})
    for status in ({"phase": "Pending", "stepStates": {"a": {"phase": "Pending"}}},
                   {"phase": "Stopping", "stepStates": {"a": {"phase": "Pending"}}},
                   {"phase": "Canceled", "reason": "Canceled", "finishedAt": T1,
                    "stepStates": {"a": {"phase": "Canceled", "reason": "StoppedBeforeStart",
                                         "finishedAt": T1}}}):
        write(crds, namespace, "storyruns", "stop", status)
    assert get(crds, namespace, "storyruns", "stop")["status"]["phase"] == "Canceled"


# -- a terminal StepRun ----------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_a_lost_step_never_becomes_succeeded(crds: ControlPlane, namespace: str,
                                             writer: Writer) -> None:
    before = lost_step_run(crds, namespace)
    late = changed(before, phase="Succeeded", reason="Completed", message="done",
                   outputs={"rows": "1200"}, failureClass=None)
    assert_refused(writer(crds, namespace, "stepruns", "nightly-extract", late),
                   "status.phase of a StepRun cannot go from Lost to Succeeded",
                   "Lost is terminal and final")
    assert get(crds, namespace, "stepruns", "nightly-extract")["status"] == before


STEP_RUN_CHANGES = [
    pytest.param(lambda s: changed(s, phase="Running"), ["cannot go from Succeeded to Running"],
                 id="terminal-to-Running"),
    pytest.param(lambda s: changed(s, phase="Failed"), ["cannot go from Succeeded to Failed"],
                 id="Succeeded-to-Failed"),
    pytest.param(lambda s: changed(s, outputs={"rows": "9999"}),
                 ["status is terminal (Succeeded)",
                  "phase, reason, message, outputs, finishedAt and reusedFrom",
                  "changes outputs"],
                 id="outputs"),
    pytest.param(lambda s: changed(s, outputs=None), ["changes outputs"], id="outputs-removed"),
    pytest.param(lambda s: changed(s, message="rewritten"), ["changes message"], id="message"),
    pytest.param(lambda s: changed(s, finishedAt=T2), ["changes finishedAt"], id="finishedAt"),
    pytest.param(lambda s: None, ["status cannot be removed once written"],
                 id="status-removed"),
]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("change", "texts"), STEP_RUN_CHANGES)
def test_a_terminal_step_run_cannot_move(
        crds: ControlPlane, namespace: str, writer: Writer,
        change: Callable[[Status], Status | None], texts: list[str]) -> None:
    before = lost_step_run(crds, namespace, phase="Succeeded", reason="Completed",
                           message="done", outputs={"rows": "1200"}, failureClass=None)
    assert_refused(writer(crds, namespace, "stepruns", "nightly-extract", change(before)),
                   *texts)
    assert get(crds, namespace, "stepruns", "nightly-extract")["status"] == before


@pytest.mark.parametrize("writer", WRITERS)
def test_the_same_terminal_step_run_status_again_is_a_no_op(
        crds: ControlPlane, namespace: str, writer: Writer) -> None:
    before = lost_step_run(crds, namespace)
    version = get(crds, namespace, "stepruns", "nightly-extract")["metadata"]["resourceVersion"]
    outcome = writer(crds, namespace, "stepruns", "nightly-extract", before)
    assert outcome.accepted, outcome.message
    after = get(crds, namespace, "stepruns", "nightly-extract")
    assert after["status"] == before
    assert after["metadata"]["resourceVersion"] == version


REUSED: Status = {
    "phase": "Succeeded", "reason": "Reused", "attempts": 0, "finishedAt": T1,
    "message": "not executed: reused the result of StepRun src-extract of run src",
    "outputs": {"rows": "1200"},
    "reusedFrom": {"storyRun": "src", "stepRun": "src-extract", "uid": "u1"}}


def reused_step_run(cluster: ControlPlane, namespace: str) -> None:
    create(cluster, namespace, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun", "metadata": {"name": "again-a"},
        "spec": {**step("a"), "storyRun": "again", "step": "a", "mode": "batch"}})


@pytest.mark.parametrize("writer", WRITERS)
def test_a_reused_step_run_is_written_succeeded_at_once_then_never_moves(
        crds: ControlPlane, namespace: str, writer: Writer) -> None:
    """A re-run's reused StepRun: its first status is terminal, with no workload; its record of
    who made it is then as final as the rest."""
    reused_step_run(crds, namespace)
    outcome = writer(crds, namespace, "stepruns", "again-a", REUSED)
    assert outcome.accepted, outcome.message
    for change in (changed(REUSED, reusedFrom={**REUSED["reusedFrom"], "stepRun": "other"}),
                   changed(REUSED, reusedFrom=None)):
        assert_refused(writer(crds, namespace, "stepruns", "again-a", change),
                       "status is terminal (Succeeded)", "changes reusedFrom")
    assert get(crds, namespace, "stepruns", "again-a")["status"] == REUSED


def test_a_step_may_go_back_to_pending_between_attempts(crds: ControlPlane,
                                                        namespace: str) -> None:
    create(crds, namespace, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun", "metadata": {"name": "retry"},
        "spec": {**step("a"), "storyRun": "nightly", "step": "a"}})
    for status in ({"phase": "Running", "attempts": 1},
                   {"phase": "Pending", "attempts": 1, "failureClass": "Transient",
                    "nextAttemptAt": T1},
                   {"phase": "Running", "attempts": 2},
                   {"phase": "Succeeded", "attempts": 2, "reason": "Completed",
                    "finishedAt": T2}):
        write(crds, namespace, "stepruns", "retry", status)


# -- spec ------------------------------------------------------------------------------------


def test_editing_the_steps_of_a_story_run_is_refused(crds: ControlPlane,
                                                     namespace: str) -> None:
    terminal_run(crds, namespace)
    for patch_type, patch, field in [
        ("json", [{"op": "replace", "path": "/spec/steps/0/image", "value": "other:2"}],
         "spec.steps"),
        ("json", [{"op": "add", "path": "/spec/steps/-", "value": step("more")}], "spec.steps"),
        # A shape the run's spec rules (checked when a value is written) would refuse.
        ("json", [{"op": "add", "path": "/spec/steps/0/needs", "value": ["extract"]}],
         "spec.steps"),
        ("merge", {"spec": {"timeoutSeconds": 60}}, "spec.timeoutSeconds"),
        ("merge", {"spec": {"mode": "realtime", "onFailure": "continue"}},
         "spec.mode spec.onFailure"),
        ("merge", {"spec": {"shutdown": {"gracePeriodSeconds": 1}}}, "spec.shutdown"),
    ]:
        out = crds.kubectl("patch", "sr", "nightly", "-n", namespace, f"--type={patch_type}",
                           "-p", json.dumps(patch), check=False)
        assert out.returncode != 0, patch
        assert "spec is immutable after creation, except cancelRequested (false to true)" \
            in out.stderr
        assert f"this update changes {field}" in out.stderr


def test_cancel_requested_goes_from_false_to_true_only(crds: ControlPlane,
                                                       namespace: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "stop"}, "spec": {"steps": [step("a")]}})

    def patch(p: Any, kind: str = "merge") -> tuple[int, str]:
        out = crds.kubectl("patch", "sr", "stop", "-n", namespace, f"--type={kind}", "-p",
                           json.dumps(p), check=False)
        return out.returncode, out.stderr

    assert patch({"spec": {"cancelRequested": False}})[0] == 0  # false -> false: no change
    assert patch({"spec": {"cancelRequested": True}})[0] == 0
    assert get(crds, namespace, "storyruns", "stop")["spec"]["cancelRequested"] is True
    assert patch({"spec": {"cancelRequested": True}})[0] == 0  # again: accepted
    for attempt, kind in [({"spec": {"cancelRequested": False}}, "merge"),
                          ([{"op": "remove", "path": "/spec/cancelRequested"}], "json")]:
        code, err = patch(attempt, kind)
        assert code != 0
        assert "spec.cancelRequested: Forbidden: spec.cancelRequested cannot go back to " \
               "false: a requested stop cannot be withdrawn" in err
    assert get(crds, namespace, "storyruns", "stop")["spec"]["cancelRequested"] is True


def test_cancel_requested_through_the_python_client(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
                             "metadata": {"name": "stop"}, "spec": {"steps": [step("a")]}})
    api = client.CustomObjectsApi(crds.api_client())
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "storyruns", "stop",
                                       {"spec": {"cancelRequested": True}})
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "storyruns", "stop",
                                           {"spec": {"cancelRequested": False}})
    assert refused.value.status == 422
    (cause,) = json.loads(refused.value.body or "{}")["details"]["causes"]
    assert cause["field"] == "spec.cancelRequested"


def test_a_step_run_spec_is_immutable(crds: ControlPlane, namespace: str) -> None:
    lost_step_run(crds, namespace)
    out = crds.kubectl("patch", "stpr", "nightly-extract", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": {"image": "other:2"}}), check=False)
    assert out.returncode != 0
    assert "spec is immutable: a StepRun records its step as it was when it was created" \
        in out.stderr
