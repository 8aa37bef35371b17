"""The peers' runs are the bench's diamond and stop case, written so that no controller has a
reason to reach beyond this machine; the build script builds the versions the bench installs."""

from __future__ import annotations

import re
from typing import Any

from bench.peers import ARGO, BUILD_SCRIPT, TEKTON
from bench.peers.argo import Argo
from bench.peers.tekton import Tekton
from bench.systems import SHAPE


def test_the_build_script_builds_the_versions_the_bench_installs() -> None:
    script = BUILD_SCRIPT.read_text()
    defaults = dict(re.findall(r"^(\w+_VERSION)=\$\{\w+:-(v[\d.]+)\}$", script, re.M))
    assert defaults == {"ARGO_VERSION": ARGO[1], "TEKTON_VERSION": TEKTON[1]}


def test_argo_runs_the_diamond_with_commands_and_no_outputs() -> None:
    wf = Argo.diamond("d0")
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    dag = templates[wf["spec"]["entrypoint"]]["dag"]["tasks"]
    assert [(t["name"], tuple(t.get("dependencies", ()))) for t in dag] == SHAPE
    for t in templates.values():
        assert "outputs" not in t
        if "container" in t:
            assert t["container"]["command"]
            assert t["metadata"]["annotations"]["sim.runctl.dev/duration"] == "1ms"


def test_tekton_runs_the_diamond_with_every_step_commanded() -> None:
    run = Tekton.diamond("d0")
    tasks = run["spec"]["pipelineSpec"]["tasks"]
    assert [(t["name"], tuple(t.get("runAfter", ()))) for t in tasks] == SHAPE
    steps: list[dict[str, Any]] = [s for t in tasks for s in t["taskSpec"]["steps"]]
    assert steps
    assert all(s["command"] for s in steps)
    assert all("results" not in t["taskSpec"] for t in tasks)
    assert run["metadata"]["annotations"]["sim.runctl.dev/duration"] == "1ms"


def test_the_stop_case_runs_until_stopped() -> None:
    wf = Argo.long_run("r0")
    assert wf["spec"]["templates"][0]["metadata"]["annotations"] == {
        "sim.runctl.dev/duration": "forever"}
    run = Tekton.long_run("r0")
    assert run["metadata"]["annotations"] == {"sim.runctl.dev/duration": "forever"}
