"""The real-pods tier: a local control plane with a real node (containerd and a kubelet on this
machine), where step pods run real processes. Skipped, with the reason, where the machine cannot
run one (not root, no overlayfs, cgroups read-only).

One control plane and node per test module (modules run one after another; only one real node
fits on a machine), so a module may also start and stop nodes of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl.devcluster import ControlPlane, build_binaries, realnode
from runctl.devcluster.cluster import REPO_ROOT
from runctl.devcluster.processes import alive
from tests.conftest import OperatorProcess
from tests.support import wait_for

ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
    "tolerations": [{"key": realnode.REAL_NODE_LABEL, "operator": "Exists",
                     "effect": "NoSchedule"}],
}
"""What a step's `pod` says to run on the real node."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = realnode.unavailable()
    for item in items:
        if item.get_closest_marker("realpods") and why:
            item.add_marker(pytest.mark.skip(reason=f"realpods tier skipped: {why}"))


@pytest.fixture(scope="session")
def node_binaries() -> Path:
    return realnode.build_binaries()


@pytest.fixture(scope="module")
def real_cluster(node_binaries: Path) -> Iterator[ControlPlane]:
    """A control plane with the runctl CRDs and a Ready real node."""
    for owner in (REPO_ROOT / ".cluster").glob("real-*/owner"):  # of sessions that died
        with contextlib.suppress(ValueError, OSError):
            if not alive(int(owner.read_text())):
                ControlPlane(owner.parent, Path()).stop()
    workdir = REPO_ROOT / ".cluster" / f"real-{os.getpid()}"
    cp = ControlPlane(workdir, build_binaries())
    node = realnode.RealNode(cp, node_binaries)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    try:
        cp.start()
        (workdir / "owner").write_text(str(os.getpid()))
        node.start()
        print(f"\n[realpods] control plane and real node up in "
              f"{time.monotonic() - started:.1f}s (logs: {cp.logs})")
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
        cp.wait_established("storyruns.runctl.dev", "stepruns.runctl.dev",
                            "stories.runctl.dev")
        yield cp
    finally:
        node.stop()
        cp.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def real_namespace(real_cluster: ControlPlane) -> Iterator[str]:
    name = f"r-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    wait_for(f"the default service account of {name}", lambda: real_cluster.kubectl(
        "get", "serviceaccount", "default", "-n", name, check=False).returncode == 0)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def real_operator(real_cluster: ControlPlane, real_namespace: str) -> Iterator[OperatorProcess]:
    op = OperatorProcess(real_cluster, real_cluster.logs, extra=("-n", real_namespace),
                         label=f"operator-{real_namespace}")
    op.start()
    yield op
    op.stop()
