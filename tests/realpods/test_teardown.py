"""A real node leaves nothing behind: not when stopped, not when its start is interrupted, and
what an abandoned one left (its control plane's process gone, its node still running) is
removed by the next start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runctl.devcluster import ControlPlane, build_binaries, hostclean, realnode
from runctl.devcluster.cluster import REPO_ROOT
from tests.realpods.conftest import ON_REAL_NODE
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.realpods]


def up(workdir: Path) -> subprocess.Popen[str]:
    """`up` as a person starts it from a terminal, where Ctrl-C interrupts it: a test run in
    the background (CI, `make test &`) inherits SIGINT ignored, and the child would ignore it
    too."""
    return subprocess.Popen(
        [sys.executable, "-m", "runctl.devcluster", "up", "--real-node",
         f"--workdir={workdir}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_interruptible)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_start_leaves_nothing(node_binaries: Path) -> None:
    workdir = REPO_ROOT / ".cluster" / f"real-interrupted-{os.getpid()}"
    for _ in range(3):
        said = interrupted_start(workdir)
        if said is not None:
            break
        # The node was Ready before the interrupt landed: `up` finished as it should and
        # left it running. Taken down, and the start interrupted again.
        subprocess.run([sys.executable, "-m", "runctl.devcluster", "down",
                        f"--workdir={workdir}"], capture_output=True, check=True, timeout=300)
    else:
        pytest.fail("three starts were all Ready before their interrupt landed")
    assert hostclean.leftovers() == [], said
    shutil.rmtree(workdir)  # its logs, kept only when something failed


def interrupted_start(workdir: Path) -> str | None:
    """Start a real node and interrupt it once its kubelet runs (containerd, mounts, chains and
    cgroups exist); what `up` said, or None if it had finished starting by then."""
    proc = up(workdir)
    try:
        wait_for("the kubelet to start", lambda: any(
            name == "kubelet" for _, name in hostclean.node_processes()), timeout=120)
        proc.send_signal(signal.SIGINT)
        said, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        ControlPlane(workdir, Path()).stop()
    return None if proc.returncode == 0 and "Ready" in said else said


def test_a_start_removes_what_an_abandoned_node_left(node_binaries: Path) -> None:
    old = REPO_ROOT / ".cluster" / f"real-abandoned-{os.getpid()}"
    new = REPO_ROOT / ".cluster" / f"real-next-{os.getpid()}"
    first = up(old)
    assert first.wait(timeout=300) == 0, first.stdout.read() if first.stdout else ""
    abandoned = ControlPlane(old, build_binaries())
    cp = ControlPlane(new, abandoned.bin_dir)
    node = realnode.RealNode(cp, node_binaries)
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "left"},
               "spec": {**ON_REAL_NODE, "automountServiceAccountToken": False,
                        "containers": [{"name": "main", "image": "docker.io/local/busybox:1",
                                        "command": ["sleep", "7777"]}]}}
        abandoned.kubectl("apply", "-f", "-", input=json.dumps(pod))
        wait_for("a container to run", lambda: any(
            b"sleep\x007777" in _cmdline(p) for p in _container_pids()), timeout=120)
        # While its control plane runs, another control plane may not take the machine's node.
        with pytest.raises(RuntimeError, match="a real node already runs on this machine"):
            node.start()
        # Its owner is gone: the kubelet and containerd die abruptly, shims and containers stay.
        for pid, name in hostclean.node_processes():
            if name in ("kubelet", "containerd"):
                os.kill(pid, signal.SIGKILL)
        abandoned.stop()
        assert hostclean.leftovers() != []

        cp.start()
        node.start()
        assert not any(b"sleep\x007777" in _cmdline(p) for p in _container_pids())
        assert cp.kubectl("get", "node", realnode.NODE_NAME, "-o",
                          "jsonpath={.spec.taints[0].key}").stdout == realnode.REAL_NODE_LABEL
    finally:
        node.stop()
        cp.stop()
        abandoned.stop()
    assert hostclean.leftovers() == []
    for workdir in (old, new):  # their logs, kept only when something failed
        shutil.rmtree(workdir)


def _container_pids() -> list[int]:
    pids = []
    for cgroup in hostclean.kubepods_cgroups():
        try:
            pids += [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
        except OSError:
            continue
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""

