"""What the bench records of a system's CPU: the API server's per run, and every process's."""

from __future__ import annotations

from collections import Counter

import pytest

from bench import report, scenarios


def test_cpu_per_run_counts_the_controller_and_every_control_plane_process() -> None:
    plane = {"kube-apiserver": 0.2, "etcd": 0.02, "kube-controller-manager": 0.01,
             "kube-scheduler": 0.01, "kwok": 0.02}
    measured = scenarios.Measured(300.0, 0.08, Counter(), Counter(), plane)
    out = report.Report()
    scenarios.record_cpu(out, "Argo: ", measured, 200)
    api, every = out.figures
    assert (api["name"], api["value"]) == ("Argo: API server CPU per run, 200 in flight", 0.2)
    assert every["name"] == "Argo: CPU per run, every process, 200 in flight"
    assert every["value"] == pytest.approx(0.34)
    assert every["note"] == ("ms: controller 80, kube-apiserver 200, etcd 20, "
                             "kube-controller-manager 10, kube-scheduler 10, kwok 20")
