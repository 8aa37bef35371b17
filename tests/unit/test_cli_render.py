"""What `runctl get`, `list` and `watch` print, from runs recorded on the local control plane.

Each file in `runs/` holds a StoryRun, its StepRuns and the time they were read; its `.txt`
twin is the text a person sees for it, compared whole."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from runctl.cli import render
from runctl.cli.view import age, run_view
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
    pytest.param("rerun-running", id="re-run: reused steps marked with their run, load runs"),
    pytest.param("rerun-succeeded", id="re-run: reused steps, the rest and finally executed"),
    pytest.param("invalid-params", id="invalid spec: every step skipped, none counted done"),
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
