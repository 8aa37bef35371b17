"""Shared fixtures: the real local control plane, the CRDs installed into it, a namespace a test.

Integration tests talk to a real kube-apiserver (with etcd, controllers, scheduler and kwok) that
is started once per test session on loopback. Set RUNCTL_KUBECONFIG to use a control plane that is
already running (for example one from `make cluster-up`) instead of starting one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.devcluster import ControlPlane, build_binaries
from runctl.devcluster.cluster import REPO_ROOT
from runctl.devcluster.processes import alive

CLUSTERS = REPO_ROOT / ".cluster"


def _reap_abandoned() -> None:
    """Stop control planes whose test session died without cleaning up (by owner pid)."""
    for owner_file in CLUSTERS.glob("test-*/owner"):
        with contextlib.suppress(ValueError, OSError):
            if not alive(int(owner_file.read_text())):
                ControlPlane(owner_file.parent, Path()).stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    external = os.environ.get("RUNCTL_KUBECONFIG")
    if external:
        cp = ControlPlane(Path(external).parent, build_binaries())
        yield cp
        return
    _reap_abandoned()
    workdir = CLUSTERS / f"test-{os.getpid()}"
    cp = ControlPlane(workdir, build_binaries())
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    cp.start()
    (workdir / "owner").write_text(str(os.getpid()))
    print(f"\n[cluster] control plane up in {time.monotonic() - started:.1f}s "
          f"(logs: {cp.logs})")
    try:
        yield cp
    finally:
        cp.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def crds(cluster: ControlPlane) -> ControlPlane:
    """The runctl CRDs applied and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    cluster.wait_established("storyruns.runctl.dev", "stepruns.runctl.dev",
                             "stories.runctl.dev")
    return cluster


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sa = cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
        if sa.returncode == 0:
            break
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class OperatorProcess:
    """`runctl operator` as a real process against the test control plane."""

    def __init__(self, cluster: ControlPlane, log_dir: Path, extra: tuple[str, ...] = (),
                 label: str = "operator", kubeconfig: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.extra = extra
        self.label = label
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.label}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        # A short resync interval: the sweep runs all through every test, so a cache it
        # corrupted would show up as a wrong outcome somewhere.
        env = {"RUNCTL_RESYNC_SECONDS": "3", **os.environ, **self.env,
               "KUBECONFIG": str(self.kubeconfig)}
        runctl = Path(sys.executable).parent / "runctl"
        self.proc = subprocess.Popen(
            [str(runctl), "operator", "--metrics-port", "0", "--liveness", "", *self.extra],
            env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "runctl operator started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the operator did not start; log:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """End the process abruptly (SIGKILL), as a crash or an evicted pod would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def operator(crds: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    """An operator confined to the test's namespace, so tests that write StoryRuns by hand
    elsewhere (as a foreign writer would) are never acted on."""
    op = OperatorProcess(crds, crds.logs, extra=("-n", namespace), label=f"operator-{namespace}")
    op.start()
    yield op
    op.stop()
