"""Fan-out on the real control plane: one StepRun per item, made as parallelism allows, a
record that counts them, outputs gathered into arrays, failures and stops acting item by item.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pytest
import yaml

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fan-out.yaml"
MATRIX = EXAMPLE.with_name("matrix.yaml")
STOP = json.dumps({"spec": {"cancelRequested": True}})


def _going(cluster: ControlPlane, namespace: str, selector: str) -> int:
    return sum(1 for sr in items(cluster, namespace, "stepruns", selector)
               if (sr.get("status") or {}).get("phase", "Pending") in ("Pending", "Running"))


def test_the_example_fans_out_a_listed_output_and_gathers_the_items_outputs(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    apply(crds, namespace, yaml.safe_load(EXAMPLE.read_text()))
    most = 0

    def ended() -> bool:
        nonlocal most
        most = max(most, _going(crds, namespace, "runctl.dev/step=convert"))
        return get_run(crds, namespace, "nightly-convert").get("status", {}).get(
            "phase") in ("Succeeded", "Failed", "Canceled", "TimedOut")
    wait_for("nightly-convert to end", ended, timeout=240, interval=0.5)
    run = get_run(crds, namespace, "nightly-convert")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    convert = step_states(run)["convert"]
    assert convert["items"] == {"total": 20, "Succeeded": 20}
    assert (convert["phase"], convert["reason"]) == ("Succeeded", "Completed")
    assert "stepRun" not in convert
    assert most <= 5, f"{most} items going at once, parallelism 5"
    made = items(crds, namespace, "stepruns", "runctl.dev/step=convert")
    assert sorted(sr["metadata"]["name"] for sr in made) == sorted(
        f"nightly-convert-convert-{i}" for i in range(20))
    third = items(crds, namespace, "stepruns", "runctl.dev/step=convert,runctl.dev/item=3")
    assert len(third) == 1
    assert third[0]["spec"]["item"] == {"index": 3, "value": "f03.csv"}
    assert third[0]["spec"]["args"] == ["--file", "f03.csv", "--slot", "3"]
    assert "forEach" not in third[0]["spec"]
    pods = items(crds, namespace, "pods", "runctl.dev/step=convert,runctl.dev/item=3")
    assert [p["metadata"]["name"] for p in pods] == ["nightly-convert-convert-3-1"]
    report = items(crds, namespace, "stepruns", "runctl.dev/step=report")[0]
    sizes = json.loads(report["spec"]["args"][1])
    assert sizes == [f"{i}00" for i in range(20)]


def test_an_item_that_fails_stops_the_others_and_the_record_names_it(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    work = step("work", duration="${{ item.d }}", exit_code=None,
                annotations={"sim.runctl.dev/exit-code": "${{ item.code }}"},
                forEach={"items": [{"d": "30s", "code": "0"}, {"d": "1s", "code": "3"},
                                   {"d": "30s", "code": "0"}, {"d": "1s", "code": "0"}],
                         "parallelism": 3})
    apply(crds, namespace, storyrun("fails", [work, step("after", "work")]))
    run = wait_terminal(crds, namespace, "fails", timeout=120)
    status = run["status"]
    assert status["phase"] == "Failed"
    state = step_states(run)["work"]
    assert state["phase"] == "Failed"
    assert state["message"].startswith("item 1 of 4 ended Failed")
    assert state["message"].endswith("1 of 4 items failed")
    assert status["message"] == state["message"]
    assert [f["index"] for f in state["failedItems"]] == [1]
    assert state["items"] == {"total": 4, "Failed": 1, "Canceled": 3}
    assert step_states(run)["after"]["reason"] == "UpstreamFailed"
    assert len(items(crds, namespace, "stepruns", "runctl.dev/step=work")) == 3
    wait_for("the items' pods to go", lambda: not [
        p for p in items(crds, namespace, "pods", "runctl.dev/storyrun=fails")
        if p["status"].get("phase") in ("Pending", "Running")
        and not p["metadata"].get("deletionTimestamp")], timeout=60)


def test_a_stop_of_a_thousand_items_ends_every_one_in_the_record_and_leaves_no_pod(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    many = step("many", duration="forever",
                forEach={"items": list(range(1000)), "parallelism": 100})
    apply(crds, namespace, storyrun("wide", [many], shutdown={"gracePeriodSeconds": 5}))

    def running() -> bool:
        counts = step_states(get_run(crds, namespace, "wide")).get("many", {}).get("items", {})
        return counts.get("Running", 0) >= 50
    wait_for("50 items of wide to run", running, timeout=180, interval=1)
    crds.kubectl("patch", "storyrun", "wide", "-n", namespace, "--type", "merge", "-p", STOP)
    run = wait_terminal(crds, namespace, "wide", timeout=180)
    assert run["status"]["phase"] == "Canceled"
    counts = step_states(run)["many"]["items"]
    assert counts["total"] == 1000
    assert sum(n for phase, n in counts.items() if phase != "total") == 1000
    assert set(counts) <= {"total", "Canceled", "Succeeded"}, counts
    made = items(crds, namespace, "stepruns", "runctl.dev/step=many")
    assert len(made) <= 100
    assert all(sr["status"]["phase"] == "Canceled" for sr in made)
    wait_for("every pod of wide to be gone",
             lambda: not items(crds, namespace, "pods", "runctl.dev/storyrun=wide"),
             timeout=120, interval=1)


def test_a_stop_before_an_item_s_running_write_stops_it_as_running_not_as_never_started(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """docs/API.md: an item's StepRun is written Running only once its pod has run 5 s;
    meanwhile the run's stepStates counts it Running. A stop seen then, after the pod
    started, stops it as a running item: it ends Canceled (reason Canceled) once its pod is
    gone, never StoppedBeforeStart, which is only for items not started (item 3 here, beyond
    parallelism: no StepRun). The stop is sent as soon as the run counts the three items
    Running, well within the 5 s. Were it seen later, their StepRuns would say Running
    first and the contract would be the same, so every assertion holds either way; the test
    says where it landed (a warning if outside), as only inside can the fault show."""
    work = step("work", duration="forever",
                forEach={"items": ["a", "b", "c", "d"], "parallelism": 3})
    apply(crds, namespace, storyrun("held", [work]))

    def counted_running() -> list[dt.datetime] | None:
        # The pods first, so their start times are read before the stop deletes them.
        pods = items(crds, namespace, "pods", "runctl.dev/storyrun=held")
        started = [parse_time(((p["status"].get("containerStatuses") or [{}])[0].get(
            "state") or {}).get("running", {}).get("startedAt")) for p in pods]
        if len(started) != 3 or None in started:
            return None
        counts = step_states(get_run(crds, namespace, "held")).get("work", {}).get("items", {})
        return [s for s in started if s is not None] if counts.get("Running") == 3 else None
    started = wait_for("the run to count held's three items Running", counted_running,
                       timeout=90, interval=0.1)
    crds.kubectl("patch", "storyrun", "held", "-n", namespace, "--type", "merge", "-p", STOP)

    run = wait_terminal(crds, namespace, "held", timeout=90)
    status = run["status"]
    assert (status["phase"], status["reason"]) == ("Canceled", "Canceled"), status
    state = step_states(run)["work"]
    assert (state["phase"], state["reason"]) == ("Canceled", "Canceled"), state
    assert state["items"] == {"total": 4, "Canceled": 4}, state
    assert not state.get("failedItems"), state
    made = {int(sr["metadata"]["labels"]["runctl.dev/item"]): sr["status"]
            for sr in items(crds, namespace, "stepruns", "runctl.dev/storyrun=held")}
    assert sorted(made) == [0, 1, 2], made
    for index, item in made.items():
        assert (item["phase"], item["reason"]) == ("Canceled", "Canceled"), (index, item)
    # The step's record ends as its first canceled item did: item 0, which ran.
    assert state["message"] == f"4 of 4 items canceled: {made[0]['message']}", state
    wait_for("held's pods to be gone",
             lambda: not items(crds, namespace, "pods", "runctl.dev/storyrun=held"),
             timeout=60)
    # Where the stop landed (times recorded to the second): within 4 s of the last pod's
    # start, it was seen before that item's Running write was due (at its start + 5 s).
    observed = parse_time(status["stop"]["observedAt"])
    assert observed is not None
    lag = (observed - max(started)).total_seconds()
    where = (f"stop seen {lag:.0f}s after the last item's pod started, "
             f"{'inside' if lag <= 4 else 'outside'} the 5 s before its Running write")
    print(f"\n[held-back stop] {where}")
    if lag > 4:
        warnings.warn(f"held: the {where}: the contract held, but the held-back case was "
                      "not exercised", stacklevel=1)


def test_an_empty_list_succeeds_with_no_stepruns_and_a_non_list_fails_the_step(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    apply(crds, namespace, storyrun("none", [
        step("list", message='{"files": "[]"}', outputs=[{"name": "files"}]),
        step("each", forEach={"items": "${{ steps.list.outputs.files }}"}),
        step("odd", message='{"files": "{}"}', outputs=[{"name": "files"}]),
        step("each-odd", forEach={"items": "${{ steps.odd.outputs.files }}"}),
    ], onFailure="continue"))
    run = wait_terminal(crds, namespace, "none", timeout=120)
    each, odd = step_states(run)["each"], step_states(run)["each-odd"]
    assert (each["phase"], each["reason"], each["items"]) == (
        "Succeeded", "NoItems", {"total": 0})
    assert (odd["phase"], odd["reason"]) == ("Failed", "ItemsInvalid")
    assert "not a JSON array" in odd["message"]
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Failed", "ItemsInvalid")
    assert items(crds, namespace, "stepruns", "runctl.dev/step in (each,each-odd)") == []


def test_the_operator_s_item_limit_fails_a_longer_list_known_at_run_time(
        crds: ControlPlane, namespace: str) -> None:
    op = OperatorProcess(crds, crds.logs, extra=("-n", namespace, "--max-items", "3"),
                         label=f"operator-{namespace}")
    op.start()
    try:
        apply(crds, namespace, storyrun("long", [
            step("list", message='{"files": "[1, 2, 3, 4]"}', outputs=[{"name": "files"}]),
            step("each", forEach={"items": "${{ steps.list.outputs.files }}"}),
        ]))
        run = wait_terminal(crds, namespace, "long", timeout=120)
    finally:
        op.stop()
    each = step_states(run)["each"]
    assert (each["phase"], each["reason"]) == ("Failed", "TooManyItems")
    assert each["message"] == "forEach: 4 items, more than 3 a run may have"
    assert items(crds, namespace, "stepruns", "runctl.dev/step=each") == []


def test_the_matrix_example_skips_one_combination_and_its_reader_sees_null_there(
        crds: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    apply(crds, namespace, yaml.safe_load(MATRIX.read_text()))
    run = wait_terminal(crds, namespace, "train-models", timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    train = step_states(run)["train"]
    assert train["items"] == {"total": 6, "Succeeded": 5, "Skipped": 1}
    made = items(crds, namespace, "stepruns", "runctl.dev/step=train")
    values = sorted((sr["spec"]["item"]["index"], sr["spec"]["item"]["value"]) for sr in made)
    assert values == [(0, {"region": "eu", "size": "s"}), (1, {"region": "eu", "size": "m"}),
                      (2, {"region": "eu", "size": "l"}), (3, {"region": "us", "size": "s"}),
                      (4, {"region": "us", "size": "m"})]
    compare = items(crds, namespace, "stepruns", "runctl.dev/step=compare")[0]
    assert json.dumps(["0.90", "0.91", "0.92", "0.93", "0.94", None],
                      separators=(",", ":")) in " ".join(compare["spec"]["args"])
