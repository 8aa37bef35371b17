"""`runctl watch` in a real terminal (tmux), read off the screen as a person reads it.

The screen is captured when the run starts, while it is half done and once it has ended: the
tree is redrawn in place (one header, never a scroll of copies), in colour unless NO_COLOR is
set, and the command's exit status is the one documented for a Failed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import apply, step, storyrun

pytestmark = pytest.mark.integration

RUNCTL = Path(sys.executable).parent / "runctl"
COLOURS = [f"\x1b[{code}m" for code in range(31, 37)]
GREEN = COLOURS[1]


class Terminal:
    """One tmux session on a server of its own, 120 columns by 30 lines."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, text=True,
                              capture_output=True).stdout

    def run(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "30",
                  f"env {exports} {command}; echo \"[exit $?]\"; sleep 600")

    def screen(self, colours: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "t")

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        pytest.fail(f"{text!r} never appeared on the screen; it shows:\n{self.screen()}")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (hack/test.sh installs it)")
    term = Terminal(f"runctl-test-{os.getpid()}")
    yield term
    subprocess.run(["tmux", "-L", term.socket, "kill-server"], check=False,
                   capture_output=True)


def test_watch_redraws_the_tree_in_place_and_exits_3_when_the_run_fails(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str,
        terminal: Terminal) -> None:
    apply(cluster, namespace, storyrun("nightly", [
        step("extract", duration="2s"),
        step("load", "extract", duration="5s"),
        step("report", "load", exit_code=3, message="no template for week 48"),
    ]))
    terminal.run(f"{RUNCTL} watch nightly -n {namespace}",
                 {"KUBECONFIG": str(cluster.kubeconfig), "TERM": "xterm-256color"})

    start = terminal.wait_for("STEP")
    assert start.splitlines()[0] == f"Run:      {namespace}/nightly (batch)"
    rows = start.splitlines()[start.splitlines().index("") + 2:]
    assert rows[0].split()[1] == "extract"
    assert rows[0].split()[2] in ("Pending", "Running")
    assert rows[1].split() == ["└─", "◷", "load", "Pending"]
    assert rows[2].split() == ["└─", "◷", "report", "Pending"]

    middle = terminal.wait_for("● load")
    assert middle.count("Run:") == 1  # redrawn, not appended
    assert next(line for line in middle.splitlines() if "extract" in line).split()[:4] == [
        "✔", "extract", "Succeeded", "1/1"]
    assert "Phase:    Running  1/3 steps" in middle
    assert GREEN in terminal.screen(colours=True)  # glyphs and phases in colour

    end = terminal.wait_for("[exit ")
    assert "[exit 3]" in end
    assert end.count("Run:") == 1
    assert "Phase:    Failed (StepFailed)  3/3 steps" in end
    report = next(line for line in end.splitlines() if "report" in line)
    assert report.split()[:4] == ["└─", "✖", "report", "Failed"]
    assert "StepFailed: attempt 1 failed" in report  # cut at the screen's edge, not wrapped


def test_no_color_turns_colour_off_on_a_terminal(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str,
        terminal: Terminal) -> None:
    apply(cluster, namespace, storyrun("plain", [step("only")]))
    terminal.run(f"{RUNCTL} watch plain -n {namespace}",
                 {"KUBECONFIG": str(cluster.kubeconfig), "TERM": "xterm-256color",
                  "NO_COLOR": "1"})
    end = terminal.wait_for("[exit ")
    assert "[exit 0]" in end
    assert "✔ only  Succeeded" in end
    assert not any(colour in terminal.screen(colours=True) for colour in COLOURS)


def test_watch_shows_a_fan_out_as_one_line_of_counts_and_its_failed_items(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str,
        terminal: Terminal) -> None:
    wide = step("convert", duration="2s",
                annotations={"sim.runctl.dev/exit-code": "${{ item }}"},
                forEach={"items": [0] * 30 + [4] + [0] * 9, "parallelism": 10})
    apply(cluster, namespace, storyrun("wide", [wide], onFailure="continue"))
    terminal.run(f"{RUNCTL} watch wide -n {namespace}",
                 {"KUBECONFIG": str(cluster.kubeconfig), "TERM": "xterm-256color"})

    middle = terminal.wait_for("● convert")
    assert middle.count("Run:") == 1
    convert = next(line for line in middle.splitlines() if "convert" in line)
    assert convert.split()[:3] == ["●", "convert", "Running"]
    shown = [line for line in middle.splitlines() if line.strip()]
    assert len(shown) == 6, shown  # header, columns, one line for 40 items: not one an item

    end = terminal.wait_for("[exit ")
    assert "[exit 3]" in end
    convert = next(line for line in end.splitlines() if "convert" in line)
    assert convert.split()[:5] == ["✖", "convert", "Failed", "40/40", "✔39"]
    assert "✖ item 30" in end


def test_watch_follows_a_suspended_run_says_what_it_waits_for_and_ends_once_resumed(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str,
        terminal: Terminal) -> None:
    apply(cluster, namespace, storyrun("held", [step("first"), step("then", "first")],
                                       suspend=True))
    env = {"KUBECONFIG": str(cluster.kubeconfig), "TERM": "xterm-256color"}
    terminal.run(f"{RUNCTL} watch held -n {namespace}", env)

    waiting = terminal.wait_for("Pending (Suspended)")
    assert "Message:  spec.suspend is true: nothing new starts until it is false" in waiting
    first = next(line for line in waiting.splitlines() if " first " in line)
    assert first.split()[:3] == ["◷", "first", "Pending"]
    assert "Suspended: waiting: the run is suspended" in first  # cut at the edge
    time.sleep(2)  # still following, nothing started
    assert "[exit " not in terminal.screen()
    assert "Pending (Suspended)" in terminal.screen()

    resumed = subprocess.run([str(RUNCTL), "resume", "held", "-n", namespace],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             check=False)
    assert resumed.stdout == "storyrun held resumed\n", resumed
    end = terminal.wait_for("[exit ")
    assert "[exit 0]" in end
    assert end.count("Run:") == 1
    assert "Phase:    Succeeded (Completed)  2/2 steps" in end
