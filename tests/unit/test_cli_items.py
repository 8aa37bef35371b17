"""`runctl get RUN --items STEP`: a fan-out step's items a page at a time, from the API
server's pages (limit and continue), with the command for the next page; any other step is one
clear line and exit status 1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runctl.cli import main, show
from runctl.timefmt import parse_time
from tests.unit.test_cli_render import RUNS, recorded


class Pages:
    """The API server's pages of the items, each asked for recorded as (limit, token)."""

    def __init__(self, storyrun: dict[str, Any], pages: list[list[dict[str, Any]]]) -> None:
        self.storyrun = storyrun
        self.pages = pages
        self.asked: list[tuple[str, str, int, str | None]] = []

    def get_run(self, name: str) -> dict[str, Any]:
        return self.storyrun

    def list_items(self, run: str, step: str, limit: int, token: str | None
                   ) -> tuple[list[dict[str, Any]], str]:
        self.asked.append((run, step, limit, token))
        at = int(token[4:]) if token else 0
        return self.pages[at], f"page{at + 1}" if at + 1 < len(self.pages) else ""


@pytest.fixture
def items(monkeypatch: pytest.MonkeyPatch) -> Pages:
    data = recorded("fanout-items")
    stepruns = data["stepruns"]
    pages = Pages(data["storyrun"], [stepruns[:3], stepruns[3:]])
    monkeypatch.setattr(show, "connect", lambda args: pages)
    monkeypatch.setattr(show.output, "now", lambda: parse_time(data["now"]))
    return pages


def test_a_page_is_listed_with_the_command_for_the_next(
        items: Pages, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "convert-all", "--items", "convert", "--limit", "3", "-n", "rec"]) == 0
    out = capsys.readouterr().out
    whole = (RUNS / "fanout-items.txt").read_text().splitlines()  # items 0, 1, 2, 3, 10
    assert out.splitlines() == [*whole[:6], whole[8], "",
                                "More: runctl get convert-all --items convert --limit 3 -n rec "
                                "--continue page1"]
    assert items.asked == [("convert-all", "convert", 3, None)]


def test_the_last_page_says_no_more(items: Pages, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "convert-all", "--items", "convert", "--continue", "page1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("✖ 3   Failed     3/3")
    assert "More:" not in out
    assert items.asked == [("convert-all", "convert", 50, "page1")]


def test_a_phase_reads_pages_until_the_limit_is_met_and_skips_no_item(
        items: Pages, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "convert-all", "--items", "convert", "--phase", "Failed",
                 "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[4:]] == ["3"]  # page 0 has no failed item
    assert [token for *_, token in items.asked] == [None, "page1"]

    items.asked.clear()
    assert main(["get", "convert-all", "--items", "convert", "--phase", "Succeeded",
                 "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[4:6]] == ["0", "1"]
    assert lines[-1] == ("More: runctl get convert-all --items convert --limit 2 "
                         "--phase Succeeded --continue page1")
    assert [token for *_, token in items.asked] == [None]


def test_json_is_the_page_as_a_list_with_the_next_token(
        items: Pages, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "convert-all", "--items", "convert", "--limit", "3", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["metadata"] == {"continue": "page1"}
    assert [i["metadata"]["name"] for i in document["items"]] == [
        "convert-all-convert-0", "convert-all-convert-1", "convert-all-convert-10"]


@pytest.mark.parametrize(("step", "error"), [
    pytest.param("list", "runctl get: step list of storyrun convert-all is not a fan-out (it "
                 "has no forEach): runctl get convert-all shows it", id="not a fan-out"),
    pytest.param("nope", "runctl get: storyrun convert-all has no step nope (its steps: list, "
                 "convert, report, notify)", id="no such step"),
])
def test_any_other_step_is_one_line_and_status_1(
        items: Pages, capsys: pytest.CaptureFixture[str], step: str, error: str) -> None:
    assert main(["get", "convert-all", "--items", step]) == 1
    assert capsys.readouterr().err == error + "\n"
    assert items.asked == []


def test_page_flags_without_items_are_a_usage_error(
        items: Pages, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["get", "convert-all", "--phase", "Failed"])
    assert exit.value.code == 2
    assert "--limit, --continue and --phase go with --items STEP" in capsys.readouterr().err

