"""Limits a user can see (docs/API.md, Limits): each refused at apply by the API server naming the
field and the bound, and a run at every bound at once still runs to Succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import kubectl_json, wait_terminal
from tests.support_limits import MAX_RUN_TEXT, at_every_bound, run_text, step_name

pytestmark = pytest.mark.integration

Edit = Callable[[dict[str, Any]], None]


def first(run: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = run["spec"]["steps"][0]
    return step


def grow(field: str, item: Any) -> Edit:
    def edit(run: dict[str, Any]) -> None:
        first(run)[field].append(item)
    return edit


def longer(get: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Edit:
    def edit(run: dict[str, Any]) -> None:
        get(run)[key] += "x"
    return edit


def pod(meta: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda run: first(run)["pod"][meta]


def more_steps(run: dict[str, Any]) -> None:
    run["spec"]["steps"].append({"name": "extra", "image": "x"})


def more_needs(run: dict[str, Any]) -> None:
    run["spec"]["steps"][-1]["needs"].append(step_name(50))


def longer_run_name(run: dict[str, Any]) -> None:
    run["metadata"]["name"] += "x"


def longer_step_name(run: dict[str, Any]) -> None:
    run["spec"]["steps"][-1]["name"] += "x"


def more_text(run: dict[str, Any]) -> None:
    first(run)["command"][0] += "x"  # within its own bound, over the run's


OVER = [
    pytest.param(more_steps, ["spec.steps: Too many: 101: must have at most 100 items"],
                 id="steps"),
    pytest.param(more_needs, ["spec.steps[99].needs: Too many: 51: must have at most 50 items"],
                 id="needs"),
    pytest.param(longer_run_name, ["metadata.name: a StoryRun name is at most 63 characters"],
                 id="run-name"),
    pytest.param(longer_step_name, ["spec.steps[99].name: Too long: may not be more than 63"],
                 id="step-name"),
    pytest.param(grow("command", "c"),
                 ["spec.steps[0].command: Too many: 17: must have at most 16 items"],
                 id="command"),
    pytest.param(grow("args", "a"), ["spec.steps[0].args: Too many: 65: must have at most 64"],
                 id="args"),
    pytest.param(longer(lambda r: first(r)["args"], 0),
                 ["spec.steps[0].args[0]: Too long: may not be more than 4096"], id="arg"),
    pytest.param(grow("env", {"name": "MORE"}),
                 ["spec.steps[0].env: Too many: 33: must have at most 32 items"], id="env"),
    pytest.param(longer(lambda r: first(r)["env"][0], "name"),
                 ["spec.steps[0].env[0].name: Too long: may not be more than 253"],
                 id="env-name"),
    pytest.param(longer(lambda r: first(r)["env"][0], "value"),
                 ["spec.steps[0].env[0].value: Too long: may not be more than 32768"],
                 id="env-value"),
    pytest.param(longer(first, "image"),
                 ["spec.steps[0].image: Too long: may not be more than 1024"], id="image"),
    pytest.param(lambda r: pod("labels")(r).update(more="x"),
                 ["spec.steps[0].pod.labels: Too many: 33: must have at most 32 items"],
                 id="labels"),
    pytest.param(longer(pod("labels"), "l00"),
                 ["spec.steps[0].pod.labels.l00: Too long: may not be more than 63"],
                 id="label-value"),
    pytest.param(lambda r: pod("annotations")(r).update(more="x"),
                 ["spec.steps[0].pod.annotations: Too many: 33: must have at most 32 items"],
                 id="annotations"),
    pytest.param(longer(pod("annotations"), "a00"),
                 ["spec.steps[0].pod.annotations.a00: Too long: may not be more than 16384"],
                 id="annotation-value"),
    pytest.param(lambda r: pod("nodeSelector")(r).update(more=""),
                 ["spec.steps[0].pod.nodeSelector: Too many: 9: must have at most 8 items"],
                 id="node-selector"),
    pytest.param(lambda r: pod("tolerations")(r).append({"operator": "Exists"}),
                 ["spec.steps[0].pod.tolerations: Too many: 9: must have at most 8 items"],
                 id="tolerations"),
    pytest.param(more_text, [f"spec.steps: together the steps' images, command, args, env and "
                             f"pod labels, annotations, nodeSelector and tolerations are at most "
                             f"{MAX_RUN_TEXT} characters"],
                 id="run-text"),
]


def dry_run(cluster: ControlPlane, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    out = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                          input=json.dumps(body), check=False)
    return out.returncode, out.stdout + out.stderr


def test_the_run_at_every_bound_is_accepted(crds: ControlPlane, namespace: str) -> None:
    code, output = dry_run(crds, namespace, at_every_bound())
    assert code == 0, output


@pytest.mark.parametrize(("edit", "expected"), OVER)
def test_one_past_a_bound_is_refused_naming_the_field_and_bound(
        crds: ControlPlane, namespace: str, edit: Edit, expected: list[str]) -> None:
    body = at_every_bound()
    edit(body)
    code, output = dry_run(crds, namespace, body)
    assert code != 0
    assert "is invalid" in output
    for text in expected:
        assert text in output, output[-2000:]


def test_a_status_message_past_its_bound_is_refused_naming_it(
        crds: ControlPlane, namespace: str) -> None:
    body = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun", "metadata": {"name": "m"},
            "spec": {"steps": [{"name": "a", "image": "x"}]}}
    crds.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    for length, refused in ((32768, False), (32769, True)):
        out = crds.kubectl("patch", "sr", "m", "-n", namespace, "--subresource=status",
                           "--type=merge", "-p", json.dumps({"status": {"message": "m" * length}}),
                           check=False)
        assert (out.returncode != 0) is refused, out.stderr
    assert "status.message: Too long: may not be more than 32768" in out.stderr


def test_a_run_at_every_bound_runs_to_succeeded(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    body = at_every_bound()
    name = body["metadata"]["name"]
    assert run_text(body["spec"]) == MAX_RUN_TEXT
    # Its pods select nodes by every label their nodeSelector may name: kwok's nodes get them.
    selector = body["spec"]["steps"][0]["pod"]["nodeSelector"]
    crds.kubectl("label", "nodes", "-l", "type=kwok", "--overwrite",
                 *[f"{k}={v}" for k, v in selector.items()])
    try:
        crds.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
        run = wait_terminal(crds, namespace, name, timeout=300)
    finally:
        crds.kubectl("label", "nodes", "-l", "type=kwok", *[f"{k}-" for k in selector])
    assert (run["status"]["phase"], run["status"]["progress"]) == ("Succeeded", "100/100")
    assert {s["phase"] for s in run["status"]["stepStates"].values()} == {"Succeeded"}
    # Stored with its status and bookkeeping, the largest run still leaves room under the
    # API server's limit of about 1.5 MiB per object.
    assert len(json.dumps(run)) < 1024 * 1024
    step_runs = kubectl_json(crds, "get", "stepruns", "-n", namespace)["items"]
    assert len(step_runs) == 100
    biggest = max(step_runs, key=lambda s: len(json.dumps(s)))
    assert biggest["spec"]["env"] == next(
        s["env"] for s in body["spec"]["steps"] if s["name"] == biggest["spec"]["step"])


def test_a_two_megabyte_run_is_refused_naming_the_field_not_a_server_error(
        crds: ControlPlane, namespace: str) -> None:
    """Within every per-field bound of before, 2 MB of env values made the API server answer
    500 (its object limit): the run's text bound now refuses it first."""
    steps = [{"name": f"s{i}", "image": "x",
              "env": [{"name": f"E{j}", "value": "v" * 32768} for j in range(8)]}
             for i in range(8)]
    code, output = dry_run(crds, namespace, {"apiVersion": "runctl.dev/v1alpha1",
                                             "kind": "StoryRun", "metadata": {"name": "big"},
                                             "spec": {"steps": steps}})
    assert code != 0
    assert "spec.steps: together the steps' images" in output, output[-1000:]
    assert "InternalError" not in output
