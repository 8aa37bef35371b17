"""Two writers, random status writes, the real API server: once a StepRun or StoryRun is
recorded terminal, no write of anyone's moves it (API.md guarantee 2), whatever the order.

hypothesis draws the sequences; each example gets fresh objects, so examples do not interact.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.devcluster import ControlPlane

pytestmark = pytest.mark.integration

GROUP, VERSION = "runctl.dev", "v1alpha1"
STEP_PHASES = ["Pending", "Running", "Succeeded", "Failed", "Canceled", "TimedOut", "Lost",
               "Skipped"]
RUN_PHASES = ["Pending", "Running", "Stopping", "Succeeded", "Failed", "Canceled", "TimedOut"]
STEP_TERMINAL = {"Succeeded", "Failed", "Canceled", "TimedOut", "Lost", "Skipped"}
RUN_TERMINAL = {"Succeeded", "Failed", "Canceled", "TimedOut"}
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"
_names = itertools.count()

write = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(STEP_PHASES),
                  st.sampled_from(["one", "two"]), st.sampled_from([T1, T2]))
run_write = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(RUN_PHASES),
                      st.sampled_from(STEP_PHASES), st.sampled_from(["one", "two"]))


@pytest.fixture(scope="module")
def writers(crds: ControlPlane) -> dict[str, client.CustomObjectsApi]:
    return {w: client.CustomObjectsApi(crds.api_client()) for w in ("a", "b")}


@pytest.fixture(scope="module")
def space(crds: ControlPlane) -> str:
    crds.kubectl("create", "namespace", "writers")
    return "writers"


def _patch(api: client.CustomObjectsApi, plural: str, ns: str, name: str,
           status: dict[str, Any]) -> bool:
    try:
        api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, plural, name,
                                                  {"status": status})
    except ApiException as exc:
        if exc.status != 422:  # refused by a rule, never anything else
            raise
        return False
    return True


def _step_status(phase: str, message: str, finished: str) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "attempts": 1, "startedAt": T0,
                              "message": message}
    if phase in STEP_TERMINAL:
        status |= {"reason": f"Reason{message.title()}", "finishedAt": finished,
                   "outputs": {"out": message}}
    return status


def _final(status: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: status.get(k) for k in keys}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=st.lists(write, min_size=2, max_size=8))
def test_a_terminal_step_run_never_moves(writers: dict[str, client.CustomObjectsApi],
                                          space: str, writes: list[tuple]) -> None:
    name = f"s{next(_names)}"
    writers["a"].create_namespaced_custom_object(GROUP, VERSION, space, "stepruns", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun", "metadata": {"name": name},
        "spec": {"name": "work", "image": "example.invalid/w:1", "storyRun": "r",
                 "step": "work", "mode": "batch"}})
    final: dict[str, Any] | None = None
    keys = ("phase", "reason", "message", "outputs", "finishedAt")
    for writer, phase, message, finished in writes:
        wanted = _step_status(phase, message, finished)
        accepted = _patch(writers[writer], "stepruns", space, name, wanted)
        stored = writers["b"].get_namespaced_custom_object(GROUP, VERSION, space, "stepruns",
                                                           name).get("status", {})
        if final is not None:
            assert _final(stored, keys) == final, (writer, phase)
            assert accepted == (_final(wanted, keys) == final)
        elif accepted and phase in STEP_TERMINAL:
            final = _final(stored, keys)
    event("recorded terminal" if final else "never terminal")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=st.lists(run_write, min_size=2, max_size=8))
def test_a_terminal_story_run_and_its_step_states_never_move(
        writers: dict[str, client.CustomObjectsApi], space: str, writes: list[tuple]) -> None:
    name = f"r{next(_names)}"
    writers["a"].create_namespaced_custom_object(GROUP, VERSION, space, "storyruns", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun", "metadata": {"name": name},
        "spec": {"steps": [{"name": "work", "image": "example.invalid/w:1"}]}})
    final: dict[str, Any] | None = None
    entry: dict[str, Any] | None = None
    keys = ("phase", "reason", "message", "finishedAt")
    for writer, phase, step_phase, message in writes:
        wanted: dict[str, Any] = {"phase": phase, "message": message, "startedAt": T0,
                                  "stepStates": {"work": _step_status(step_phase, message, T1)}}
        wanted["stepStates"]["work"].pop("outputs", None)
        if phase in RUN_TERMINAL:
            wanted |= {"reason": f"Reason{message.title()}", "finishedAt": T2}
        accepted = _patch(writers[writer], "storyruns", space, name, wanted)
        stored = writers["b"].get_namespaced_custom_object(GROUP, VERSION, space, "storyruns",
                                                           name).get("status", {})
        step = stored.get("stepStates", {}).get("work", {})
        if final is not None:
            assert _final(stored, keys) == final, (writer, phase)
            assert accepted == (_final(wanted, keys) == final
                                and _final(wanted["stepStates"]["work"], keys) == entry)
        if entry is not None:
            assert _final(step, keys) == entry, (writer, step_phase)
        if final is None and accepted and phase in RUN_TERMINAL:
            final = _final(stored, keys)
        if entry is None and step.get("phase") in STEP_TERMINAL:
            entry = _final(step, keys)
    event("run recorded terminal" if final else "run never terminal")
