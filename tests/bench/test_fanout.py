"""The fan-out case: each system's run of many items, and the figures computed from what the
watches saw (the run's largest size, its end, its items' ends and its pods' end)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from bench.fanout import Watched, size, stop_figures
from bench.peers.argo import Argo
from bench.peers.tekton import MAX_MATRIX, Tekton
from bench.systems import Runctl

from bench import __main__ as cli
from bench import fanout, metrics


def test_runctl_fans_one_step_out_over_the_items_at_the_parallelism() -> None:
    run = Runctl.fanout("fan", 1000, 200, "1s")
    [step] = run["spec"]["steps"]
    assert step["forEach"] == {"items": list(range(1000)), "parallelism": 200}
    assert step["args"] == ["${{ item }}"]
    assert step["pod"]["annotations"] == {"sim.runctl.dev/duration": "1s"}
    assert (run["kind"], run["metadata"]["name"]) == ("StoryRun", "fan")


def test_argo_runs_the_items_with_items_at_the_workflows_parallelism() -> None:
    wf = Argo.fanout("fan", 1000, 200, "1s")
    assert wf["spec"]["parallelism"] == 200
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    [[step]] = templates[wf["spec"]["entrypoint"]]["steps"]
    assert step["withItems"] == list(range(1000))
    assert step["arguments"]["parameters"] == [{"name": "index", "value": "{{item}}"}]
    item = templates[step["template"]]
    assert item["inputs"]["parameters"] == [{"name": "index"}]
    assert item["container"]["args"] == ["{{inputs.parameters.index}}"]
    assert item["container"]["command"]
    assert item["metadata"]["annotations"] == {"sim.runctl.dev/duration": "1s"}


def test_tekton_runs_the_items_as_one_matrix_it_is_configured_to_accept() -> None:
    run = Tekton.fanout("fan", 1000, 200, "1s")
    [task] = run["spec"]["pipelineSpec"]["tasks"]
    [param] = task["matrix"]["params"]
    assert param == {"name": "index", "value": [str(i) for i in range(1000)]}
    assert task["taskSpec"]["params"] == [{"name": "index"}]
    [step] = task["taskSpec"]["steps"]
    assert step["command"]
    assert step["args"] == ["$(params.index)"]
    assert run["metadata"]["annotations"] == {"sim.runctl.dev/duration": "1s"}
    assert MAX_MATRIX >= fanout.ITEMS


def test_each_system_names_its_items_and_whether_they_ended() -> None:
    assert Runctl.items({
        "metadata": {"name": "fan-item-3"}, "status": {"phase": "Canceled"}}) == {
        "fan-item-3": True}
    assert Runctl.items({"metadata": {"name": "fan-item-4"}}) == {
        "fan-item-4": False}
    task_run = {"metadata": {"name": "fan-item-0"},
                "status": {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}}
    assert Tekton.items(task_run) == {"fan-item-0": False}


ARGO_NODES: dict[str, Any] = {
    "fan": {"type": "Steps", "phase": "Running"},
    "fan-1": {"type": "StepGroup", "phase": "Running"},
    "fan-2": {"type": "Pod", "phase": "Succeeded"},
    "fan-3": {"type": "Pod", "phase": "Running"},
    "fan-4": {"type": "Pod", "phase": "Failed"},
}


@pytest.mark.parametrize("status", [
    pytest.param({"nodes": ARGO_NODES}, id="nodes"),
    pytest.param({"compressedNodes": base64.b64encode(gzip.compress(
        json.dumps(ARGO_NODES).encode())).decode()}, id="compressed"),
])
def test_argos_items_are_its_pod_nodes_compressed_or_not(status: dict[str, Any]) -> None:
    assert Argo.items({"status": status}) == {
        "fan-2": True, "fan-3": False, "fan-4": True}


def test_an_objects_size_is_its_compact_json_in_bytes() -> None:
    assert size({"a": [1, 2], "b": "é"}) == len('{"a":[1,2],"b":"é"}'.encode())


def test_the_run_is_recorded_at_its_largest_and_ended_at_its_first_terminal_sighting() -> None:
    w = Watched()
    meta = {"name": "fan"}
    w.run({"metadata": meta, "status": {"x": "a" * 100}}, False, "Running", 1.0)
    w.run({"metadata": meta, "status": {}}, True, "Succeeded", 2.0)
    w.run({"metadata": meta, "status": {}}, True, "Succeeded", 3.0)
    assert w.largest == size({"metadata": meta, "status": {"x": "a" * 100}})
    assert (w.ended_at, w.phase) == (2.0, "Succeeded")


def test_each_run_s_end_is_its_first_terminal_sighting() -> None:
    """Single-step runs stopped together: each one's end, by name."""
    w = Watched()
    w.run({"metadata": {"name": "r0"}}, False, "Stopping", 1.0)
    w.run({"metadata": {"name": "r0"}}, True, "Canceled", 2.0)
    w.run({"metadata": {"name": "r1"}}, True, "Canceled", 2.5)
    w.run({"metadata": {"name": "r0"}}, True, "Canceled", 3.0)
    assert w.runs_ended == {"r0": 2.0, "r1": 2.5}


def stopped_run() -> Watched:
    """Two items ended before the stop at 10.0, two live then (one ends at 10.5, one never),
    one that started after it and ended at 11.0; its pods gone at 12.0."""
    w = Watched()
    for name, seen, ended in (("a", 1.0, 5.0), ("b", 1.0, 9.0), ("c", 2.0, 10.5),
                              ("d", 3.0, None), ("e", 10.2, 11.0)):
        w.item(name, False, seen)
        if ended is not None:
            w.item(name, True, ended)
    w.pod("p1", True, 2.0)
    w.stopped(10.0)
    w.pod("p2", True, 10.2)
    w.pod("p1", False, 11.0)
    w.pod("p2", False, 12.0)
    w.run({"metadata": {"name": "fan"}}, True, "Canceled", 10.8)
    return w


def test_a_stop_times_each_item_live_at_it_or_started_after_it() -> None:
    w = stopped_run()
    s = stop_figures(w)
    assert w.pods_at_stop == 1
    assert s.live == 3
    assert s.to_terminal == [pytest.approx(0.5), pytest.approx(1.0)]
    assert s.run_terminal == pytest.approx(0.8)
    assert (s.pods_gone, s.pods_after) == (pytest.approx(2.0), 1)


def test_pods_are_not_gone_while_one_is_live_or_after_one_came_back() -> None:
    w = stopped_run()
    w.pod("p3", True, 12.5)
    assert stop_figures(w).pods_gone is None
    w.pod("p3", False, 13.0)
    assert stop_figures(w).pods_gone == pytest.approx(3.0)


def test_pods_already_gone_at_the_stop_count_as_gone_at_once() -> None:
    w = Watched()
    w.pod("p", True, 1.0)
    w.pod("p", False, 2.0)
    w.stopped(5.0)
    assert stop_figures(w).pods_gone == 0.0


def test_reconciles_are_read_from_the_operators_duration_histogram() -> None:
    text = ("# TYPE runctl_reconcile_duration_seconds histogram\n"
            'runctl_reconcile_duration_seconds_bucket{le="0.005"} 3.0\n'
            'runctl_reconcile_duration_seconds_bucket{le="+Inf"} 4.0\n'
            "runctl_reconcile_duration_seconds_count 4.0\n"
            "runctl_reconcile_duration_seconds_sum 0.02\n")
    assert metrics.reconciles(text) == (4.0, 0.02)


def test_an_unknown_case_is_refused_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--cases", "fanout,fanin"])
    assert exc.value.code == 2
    assert "--cases" in capsys.readouterr().err
