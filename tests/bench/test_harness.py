"""The bench harness leaves no control plane behind, even when it fails to set one up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import harness
from runctl.devcluster import processes
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_a_control_plane_whose_crds_are_refused_is_stopped(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "broken.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: broken.runctl.dev}\nspec: {group: runctl.dev}\n")
    monkeypatch.setattr(harness, "REPO_ROOT", tmp_path)
    bench = harness.Bench(tmp_path / "cluster")
    stopped: list[tuple[int, str]] = []
    stop = bench.cluster.stop

    def recording_stop() -> None:
        stopped.extend(bench.cluster.processes.started())
        stop()

    monkeypatch.setattr(bench.cluster, "stop", recording_stop)
    try:
        with pytest.raises(subprocess.CalledProcessError), bench:
            pass
        assert {name for _, name in stopped} >= {"etcd", "kube-apiserver"}
        # SIGKILLed processes may take a moment to go: wait for them, as stop() does not.
        wait_for("the control plane's processes to be gone",
                 lambda: not [name for pid, name in stopped
                              if not processes.exited(pid)],
                 timeout=30)
    finally:
        stop()
