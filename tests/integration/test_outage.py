"""An API server outage mid-run (docs/API.md, "While the API server is away"): kube-apiserver is
stopped and started again with the same arguments while runs are in flight, so some of the
operator's creates and status writes fail. Every run must still finish, each step with exactly
one StepRun, and no run may stay Running.

The outage gets a control plane of its own, so no other test shares the restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from runctl.devcluster import ControlPlane, build_binaries
from tests.conftest import CLUSTERS, OperatorProcess, _reap_abandoned
from tests.support import items, step, storyrun, wait_for

pytestmark = pytest.mark.integration

RUNS = 20
STEPS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[ControlPlane]:
    _reap_abandoned()
    workdir = CLUSTERS / f"test-{os.getpid()}-outage"
    cp = ControlPlane(workdir, build_binaries())
    cp.start()
    (workdir / "owner").write_text(str(os.getpid()))
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CLUSTERS.parent / "crds"))
        cp.wait_established("storyruns.runctl.dev", "stepruns.runctl.dev")
        yield cp
    finally:
        with contextlib.suppress(Exception):  # the control plane goes whatever happened
            cp.stop()


def _diamond(name: str) -> dict:
    return storyrun(name, [step("a", duration="3s"), step("b", "a", duration="3s"),
                           step("c", "a", duration="3s"), step("d", "b", "c", duration="3s")])


def test_runs_in_flight_through_an_api_server_outage_all_finish(own_cluster: ControlPlane
                                                                ) -> None:
    cp = own_cluster
    ns = f"t-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", ns)
    wait_for("the default service account", lambda: cp.kubectl(
        "get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0)
    operator = OperatorProcess(cp, cp.logs, extra=("-n", ns), label="operator-outage")
    operator.start()
    try:
        names = [f"y{i:02d}" for i in range(RUNS)]
        cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [_diamond(n) for n in names]}))
        time.sleep(3)
        cp.stop_apiserver()
        time.sleep(15)
        cp.start_apiserver()

        def all_terminal() -> list[dict] | None:
            runs = items(cp, ns, "storyruns")
            done = [r for r in runs if (r.get("status") or {}).get("phase") in (
                "Succeeded", "Failed", "Canceled", "TimedOut")]
            return runs if len(done) == RUNS else None

        runs = wait_for("every run to finish after the outage", all_terminal, timeout=240,
                        interval=1)
        step_runs = items(cp, ns, "stepruns")
        by_run: dict[str, list[str]] = {}
        for sr in step_runs:
            labels = sr["metadata"]["labels"]
            by_run.setdefault(labels["runctl.dev/storyrun"], []).append(labels["runctl.dev/step"])
        for run in runs:
            name, status = run["metadata"]["name"], run["status"]
            assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), (
                name, status)
            states = status["stepStates"]
            assert {s: states[s]["phase"] for s in STEPS} == dict.fromkeys(STEPS, "Succeeded")
            assert sorted(by_run.get(name, [])) == list(STEPS), (name, by_run.get(name))
    finally:
        operator.stop()
