"""Shared fixtures: the real local control plane, the CRDs installed into it, a namespace a test.

Integration tests talk to a real kube-apiserver (with etcd, controllers, scheduler and kwok) that
is started once per test session on loopback. Set RUNCTL_KUBECONFIG to use a control plane that is
already running (for example one from `make cluster-up`) instead of starting one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.devcluster import ControlPlane, build_binaries
from runctl.devcluster.cluster import REPO_ROOT, _alive

CLUSTERS = REPO_ROOT / ".cluster"


def _reap_abandoned() -> None:
    """Stop control planes whose test session died without cleaning up (by owner pid)."""
    for owner_file in CLUSTERS.glob("test-*/owner"):
        with contextlib.suppress(ValueError, OSError):
            if not _alive(int(owner_file.read_text())):
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
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/storyruns.runctl.dev", "crd/stepruns.runctl.dev")
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
