"""What `runctl get`, `list` and `watch` print, from runs recorded on the local control plane.

Each file in `runs/` holds a StoryRun, its StepRuns and the time they were read; its `.txt`
twin is the text a person sees for it, compared whole. The `fanout-*` runs are written by hand
to the fan-out status of docs/API.md (counts and first failed items, one StepRun an item), and
so is `retries-waiting` (a step waiting for its next attempt, docs/API.md "Retries")."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from runctl.cli import render
from runctl.cli.fanout import FailedItem, Items, items_selector, steps_selector
from runctl.cli.view import age, item_lines, run_view
from runctl.timefmt import parse_time

RUNS = Path(__file__).parent / "runs"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RUNS / f"{name}.json").read_text())
    return data


def view_of(name: str):
    data = recorded(name)
    return run_view(data["storyrun"], data["stepruns"], parse_time(data["now"]))


def text(lines) -> str:
    return "".join(line.plain + "\n" for line in lines)


@pytest.mark.parametrize("name", [
    pytest.param("diamond-running", id="running: a fan-out under way, the fan-in waiting"),
    pytest.param("diamond-succeeded", id="success"),
    pytest.param("continue-failed", id="failure with a skip, the other branch finished"),
    pytest.param("stopped", id="stop: running steps canceled, a pending one never started"),
    pytest.param("realtime-serving", id="realtime: every step serving"),
    pytest.param("realtime-canceled", id="realtime stopped: the topology terminated"),
    pytest.param("retries", id="retries: attempts of a limit, a permanent failure"),
    pytest.param("retries-waiting", id="retries: a step waiting for its next attempt, and when"),
    pytest.param("rerun-running", id="re-run: reused steps marked with their run, load runs"),
    pytest.param("rerun-succeeded", id="re-run: reused steps, the rest and finally executed"),
    pytest.param("invalid-params", id="invalid spec: every step skipped, none counted done"),
    pytest.param("fanout-running", id="fan-out: counts on one line, first failures under it"),
    pytest.param("fanout-failed", id="fan-out failed: the failures recorded, the rest counted"),
    pytest.param("parallelism-waiting", id="run parallelism: two running, two waiting a slot"),
])
def test_get_renders_the_recorded_run(name: str) -> None:
    assert text(render.run_tree(view_of(name))) == (RUNS / f"{name}.txt").read_text()


def test_wide_adds_the_steprun_times_and_workload() -> None:
    assert text(render.run_tree(view_of("retries"), wide=True)) == \
        (RUNS / "retries-wide.txt").read_text()


def test_watch_prints_each_transition_once_when_not_on_a_terminal() -> None:
    running, done = view_of("diamond-running"), view_of("diamond-succeeded")
    assert text(render.transitions(None, running, "10:00:02")) == """\
10:00:02 ✔ extract Succeeded  after 2s  Completed
10:00:02 ● clean Running  attempt 1/1
10:00:02 ● enrich Running  attempt 1/1
10:00:02 ● run nightly-etl Running  1/5 steps
"""
    assert text(render.transitions(running, done, "10:00:09")) == """\
10:00:09 ✔ clean Succeeded  after 3s  Completed
10:00:09 ✔ join Succeeded  after 2s  Completed
10:00:09 ✔ publish Succeeded  after 1s  Completed
10:00:09 ✔ enrich Succeeded  after 2s  Completed
10:00:09 ✔ run nightly-etl Succeeded  Completed  5/5 steps  after 8s  all 5 steps succeeded
"""
    assert render.transitions(done, done, "10:00:10") == []


def test_a_steprun_of_an_earlier_run_of_the_same_name_is_not_shown() -> None:
    data = recorded("diamond-running")
    data["storyrun"]["metadata"]["uid"] = "a-new-run"
    view = run_view(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    steps = {s.name: s for s in view.steps}
    assert steps["clean"].workload == ""  # the old StepRun's Job is not this run's
    assert steps["clean"].phase == "Running"  # the run's own record still shows


def test_a_steprun_not_written_yet_shows_its_first_attempt_s_workload() -> None:
    """No status yet means the first attempt: the run's record gives the phase, the fixed name
    of that attempt's pod the workload."""
    data = recorded("diamond-running")
    clean = next(sr for sr in data["stepruns"] if sr["spec"]["step"] == "clean")
    del clean["status"]
    view = run_view(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    steps = {s.name: s for s in view.steps}
    assert steps["clean"].workload == f"Pod/{clean['metadata']['name']}-1"
    assert steps["clean"].phase == "Running"  # as the run recorded it


def test_phases_are_coloured_and_the_words_stay_the_same() -> None:
    lines = render.run_tree(view_of("continue-failed"))
    failed = next(line for line in lines if "reports" in line.plain)
    styles = {failed.plain[span.start:span.end]: str(span.style) for span in failed.spans}
    assert styles["✖"] == "red"
    assert styles["Failed"] == "red"


def test_list_names_each_run_with_phase_progress_reason_and_age() -> None:
    rows = [render.RunRow("data", "nightly-etl", "Running", "1/5", "", "6s"),
            render.RunRow("ops", "keep-going", "Failed", "4/4", "StepFailed", "3m")]
    assert text(render.run_list(rows, all_namespaces=True)) == """\
NAMESPACE  NAME           PHASE    PROGRESS  REASON      AGE
data       ● nightly-etl  Running  1/5                   6s
ops        ✖ keep-going   Failed   4/4       StepFailed  3m
"""


def test_a_run_whose_spec_was_invalid_counts_no_step_done_in_get_watch_and_list() -> None:
    """The core records each step of such a run Skipped, a terminal phase, yet none began: the
    run records `0/4` (runctl.machine.status.progress), and the CLI shows what it records."""
    data = recorded("invalid-params")
    status = data["storyrun"]["status"]
    assert (status["reason"], status["progress"]) == ("InvalidSpec", "0/4")
    assert view_of("invalid-params").progress == "0/4"
    assert "0/4 steps" in text(render.transitions(None, view_of("invalid-params"), "t"))


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (119, "119s"), (120, "2m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"),
    (2 * 86400, "2d"),
])
def test_age_uses_kubectls_units(seconds: int, shown: str) -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    created = (now - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age(created, now) == shown


def test_finally_steps_are_drawn_after_the_main_steps_and_marked() -> None:
    data = recorded("diamond-succeeded")
    spec = data["storyrun"]["spec"]
    spec["finally"] = [{"name": "notify", "image": "x"},
                       {"name": "unlock", "image": "x", "needs": ["notify"]}]
    view = run_view(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    main = [s["name"] for s in spec["steps"]]
    assert [s.name for s in view.steps[:len(main)]] == [s.name for s in view_of(
        "diamond-succeeded").steps]
    assert [(s.branch, s.name, s.phase) for s in view.steps[len(main):]] == [
        ("finally: ", "notify", "Pending"), ("         └─ ", "unlock", "Pending")]


def test_a_rerun_s_reused_steps_are_said_once_with_the_run_they_came_from() -> None:
    running, done = view_of("rerun-running"), view_of("rerun-succeeded")
    assert text(render.transitions(None, running, "10:00:00")) == """\
10:00:00 ✔ extract Succeeded  Reused from run nightly-1
10:00:00 ✔ clean Succeeded  Reused from run nightly-1
10:00:00 ● load Running  attempt 1/1
10:00:00 ● run nightly-1-zvstq Running  2/5 steps
"""
    assert [line.plain.split()[2] for line in render.transitions(running, done, "t")] == [
        "load", "publish", "notify", "run"]


def test_a_rerun_not_recorded_yet_names_its_source() -> None:
    data = recorded("rerun-running")
    del data["storyrun"]["status"]
    assert run_view(data["storyrun"], [], parse_time(data["now"])).rerun == "of nightly-1"


def _fan_out(view, name="convert"):
    return next(s for s in view.steps if s.name == name)


def test_a_fan_out_step_is_one_line_whatever_its_items_steprun_say() -> None:
    """Its line comes from the run's record: an item's StepRun (read with the run's) lends it
    neither a StepRun, a workload nor attempts."""
    convert = _fan_out(view_of("fanout-running"))
    assert (convert.fan_out, convert.step_run, convert.workload, convert.attempts) == (
        True, "", "", "")
    assert convert.items == Items(total=1000, counts={
        "Succeeded": 380, "Failed": 2, "Running": 30, "Pending": 588}, failed_items=(
        FailedItem(3, "StepFailed", "attempt 3 failed (exit code 1, Error): bad header"),
        FailedItem(17, "StepFailed", "attempt 3 failed (exit code 1, Error): empty file")))


def test_a_fan_out_step_not_counted_yet_has_an_empty_items_cell() -> None:
    view = view_of("fanout-running")
    notify = _fan_out(view, "notify")
    assert (notify.fan_out, notify.items) == (True, None)
    assert text(render.run_tree(view)).splitlines()[-1] == "finally: ◷ notify  Pending"


@pytest.mark.parametrize(("counts", "shown"), [
    pytest.param({"Pending": 20}, "0/20 ✔0 ✖0 ●0", id="none started"),
    pytest.param({"Succeeded": 17, "Failed": 1, "TimedOut": 1, "Lost": 1}, "20/20 ✔17 ✖3 ●0",
                 id="timed out and lost count as failed"),
    pytest.param({"Succeeded": 10, "Skipped": 4, "Canceled": 3, "Running": 3},
                 "17/20 ✔10 ✖0 ●3 ○4 ⊘3", id="skipped and canceled when there are any"),
])
def test_item_counts_say_done_of_all_then_each_kind_of_end(counts, shown) -> None:
    assert render.counts(Items(total=20, counts=counts, failed_items=())).plain == shown


def test_item_counts_are_coloured_as_their_phases() -> None:
    line = render.counts(Items(total=5, counts={"Succeeded": 2, "Failed": 1, "Running": 1,
                                                "Skipped": 1}, failed_items=()))
    styles = {line.plain[span.start:span.end]: str(span.style) for span in line.spans}
    assert styles == {"✔2": "green", "✖1": "red", "●1": "cyan", "○1": "yellow"}


def test_watch_summarizes_a_fan_out_s_items_in_one_line_a_change() -> None:
    """Never a line an item: the counts, how many ended in each phase since the last line, and
    each failed item once, as the run records it (at most a few)."""
    data = recorded("fanout-running")
    running = view_of("fanout-running")
    convert = data["storyrun"]["status"]["stepStates"]["convert"]
    convert["items"] = {"total": 1000, "Succeeded": 392, "Failed": 3, "Running": 30,
                        "Pending": 575}
    convert["failedItems"].append({"index": 420, "reason": "StepFailed", "message": "no space"})
    later = run_view(data["storyrun"], data["stepruns"], parse_time("2026-11-25T21:50:45Z"))
    assert text(render.transitions(running, later, "21:50:45")) == """\
21:50:45 ● convert Running  395/1000 ✔392 ✖3 ●30  +12 Succeeded, +1 Failed
21:50:45 ✖ convert[420]  StepFailed: no space
"""
    assert render.transitions(later, later, "21:50:46") == []
    assert text(render.transitions(None, running, "21:50:42")) == """\
21:50:42 ✔ list Succeeded  after 2s  Completed
21:50:42 ● convert Running  382/1000 ✔380 ✖2 ●30
21:50:42 ✖ convert[3]  StepFailed: attempt 3 failed (exit code 1, Error): bad header
21:50:42 ✖ convert[17]  StepFailed: attempt 3 failed (exit code 1, Error): empty file
21:50:42 ● run convert-all Running  1/4 steps
"""


def test_watch_says_a_fan_out_s_end_with_its_counts_and_reason() -> None:
    before, done = view_of("fanout-running"), view_of("fanout-failed")
    lines = text(render.transitions(before, done, "21:53:00")).splitlines()
    assert lines[0] == (
        "21:53:00 ✖ convert Failed  1000/1000 ✔980 ✖14 ●0 ○6  +600 Succeeded, +9 Failed, "
        "+2 TimedOut, +1 Lost, +6 Skipped  after 2m26s  StepFailed: item 3 of 1000 failed: "
        "attempt 3 failed (exit code 1, Error): bad header; 14 of 1000 items failed")
    assert [line.split()[2] for line in lines[1:9]] == [
        "convert[64]", "convert[101]", "convert[230]", "convert[311]", "convert[388]",
        "convert[402]", "convert[555]", "convert[690]"]
    assert lines[9:] == [
        "21:53:00 ✔ report Succeeded  after 2s  Completed",
        "21:53:00 ✔ notify Succeeded  2/2 ✔2 ✖0 ●0  after 1s  Completed",
        "21:53:00 ✖ run convert-all Failed  StepFailed  4/4 steps  after 2m31s  item 3 of 1000 "
        "failed: attempt 3 failed (exit code 1, Error): bad header; 14 of 1000 items failed"]


def test_a_fan_out_step_not_evaluated_yet_is_said_without_counts() -> None:
    data = recorded("fanout-running")
    states = data["storyrun"]["status"]["stepStates"]
    states["notify"] = {"phase": "Running", "startedAt": "2026-11-25T21:50:42Z"}
    later = run_view(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    assert text(render.transitions(view_of("fanout-running"), later, "t")) == \
        "t ● notify Running\n"


def test_items_are_listed_in_index_order_with_the_next_page_s_command() -> None:
    data = recorded("fanout-items")
    view = view_of("fanout-items")
    items = item_lines(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    more = f"runctl get convert-all --items convert --continue {data['continue']}"
    page = text(render.items_page(view, _fan_out(view), items, more))
    assert page == (RUNS / "fanout-items.txt").read_text()
    assert page.endswith(f"\n\nMore: {more}\n")
    assert text(render.items_page(view, _fan_out(view), [], "")).splitlines()[-1] == \
        "No items on this page."


def test_the_tree_and_watch_read_the_run_s_stepruns_but_not_its_items() -> None:
    assert steps_selector("convert-all") == "runctl.dev/storyrun=convert-all,!runctl.dev/item"
    assert items_selector("convert-all", "convert") == \
        "runctl.dev/storyrun=convert-all,runctl.dev/step=convert,runctl.dev/item"


def test_an_item_of_an_earlier_run_of_the_same_name_is_not_listed() -> None:
    data = recorded("fanout-items")
    data["stepruns"][0]["metadata"]["ownerReferences"][0]["uid"] = "an-earlier-run"
    lines = item_lines(data["storyrun"], data["stepruns"], parse_time(data["now"]))
    assert [line.name for line in lines] == ["1", "2", "3", "10"]
