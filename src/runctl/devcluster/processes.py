"""The processes one pid file records: started alike, checked alike, ended by recorded pid.

Every process is started in its own session, logs to `<logs>/<name>.log` and gets a line
`<pid> <name>` in the pid file, so a later stop (or the next start after an interrupted run) ends
exactly what was started, and nothing else, and a failing start can show the log of the process
that exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def state(pid: int) -> str | None:
    """The process's state letter in /proc (`R`, `S`, `Z`, ...); None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return None


def zombie(pid: int) -> bool:
    return state(pid) == "Z"


def exited(pid: int) -> bool:
    """Whether the process has ended (a zombie has: it only waits to be reaped)."""
    return not alive(pid) or zombie(pid)


@dataclass(frozen=True)
class Processes:
    """The processes recorded in `pidfile`, each logging to a file of its own under `logs`."""

    pidfile: Path
    logs: Path

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def spawn(self, name: str, command: Sequence[str],
              env: Mapping[str, str] | None = None) -> None:
        """Start `command` as `name` in a session of its own, its output appended to its log."""
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )
        with self.pidfile.open("a") as f:
            f.write(f"{proc.pid} {name}\n")

    def started(self) -> list[tuple[int, str]]:
        """(pid, name) of every recorded process, oldest first."""
        if not self.pidfile.exists():
            return []
        rows = (line.split() for line in self.pidfile.read_text().splitlines() if line.strip())
        return [(int(r[0]), r[1] if len(r) > 1 else "?") for r in rows]

    def pids(self, name: str) -> list[int]:
        return [pid for pid, started in self.started() if started == name]

    def check(self, name: str | None = None) -> None:
        """Fail at once, with the log's last lines, when a started process (or the one named)
        has exited."""
        for pid, who in self.started():
            if name in (None, who) and exited(pid):
                tail = self.log(who).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{who} exited during start-up; its log ends:\n{tail}")

    def end_all(self) -> None:
        """SIGTERM every recorded process, newest first; SIGKILL what is left after 10 s; forget
        them all."""
        if not self.pidfile.exists():
            return
        pids = [pid for pid, _ in self.started()]
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(exited(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in pids:  # reap our own children so they leave no zombies
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        self.pidfile.unlink()

    def kill(self, name: str) -> None:
        """SIGKILL the processes named `name`, wait until they are gone, and forget them."""
        for pid in self.pids(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            end = time.monotonic() + 10
            while time.monotonic() < end and not exited(pid):
                time.sleep(0.05)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        kept = [f"{pid} {who}\n" for pid, who in self.started() if who != name]
        self.pidfile.write_text("".join(kept))
