"""The processes a pid file records: a start-up that lost one says which and shows its log; a
stop ends all of them, and one can be killed alone (as an API server outage is made)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runctl.devcluster import processes
from runctl.devcluster.processes import Processes


def wait_gone(pid: int) -> None:
    end = time.monotonic() + 10
    while not processes.exited(pid):
        assert time.monotonic() < end, f"process {pid} still runs"
        time.sleep(0.05)


@pytest.fixture
def table(tmp_path: Path) -> Processes:
    (tmp_path / "logs").mkdir()
    return Processes(tmp_path / "pids", tmp_path / "logs")


def test_a_process_that_exited_is_named_with_its_log(table: Processes) -> None:
    table.spawn("sleeper", ["sleep", "60"])
    table.spawn("quitter", ["sh", "-c", "echo the reason it quit; exit 3"])
    table.check("sleeper")
    wait_gone(table.pids("quitter")[0])
    with pytest.raises(RuntimeError, match="quitter exited during start-up") as exc:
        table.check()
    assert "the reason it quit" in str(exc.value)
    table.end_all()


def test_a_stop_ends_every_process_and_forgets_them(table: Processes) -> None:
    table.spawn("a", ["sleep", "60"])
    table.spawn("b", ["sleep", "60"])
    pids = [pid for pid, _ in table.started()]
    assert [name for _, name in table.started()] == ["a", "b"]
    table.end_all()
    for pid in pids:
        wait_gone(pid)
    assert not table.pidfile.exists()
    assert table.started() == []


def test_one_process_killed_alone_leaves_the_others(table: Processes) -> None:
    table.spawn("a", ["sleep", "60"])
    table.spawn("b", ["sleep", "60"])
    (a,) = table.pids("a")
    table.kill("a")
    assert processes.exited(a)
    assert [name for _, name in table.started()] == ["b"]
    table.check()
    table.end_all()
