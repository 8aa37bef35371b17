"""Records the objects of this directory again, from the local control plane with the operator
running: `.venv/bin/python -m tests.recorded.record` (after a change to what the operator creates
or reads, so the translation tests keep reading what a real API server stores).

Four runs in namespace `rec`: `ok` (extract succeeds with outputs, load still runs), `flaky`
(fetch fails once with a transient exit code, then succeeds), `bad` (check fails for good) and
`live` (a realtime hub, recorded serving, then stopped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runctl.devcluster.cluster import ControlPlane, build_binaries

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NS = "rec"
SIM = "sim.runctl.dev/"

RUNS: list[dict[str, Any]] = [
    {"name": "ok", "steps": [
        {"name": "extract", "image": "example.invalid/extract:1", "command": ["/bin/extract"],
         "args": ["--day", "2026-11-25"], "env": [{"name": "MODE", "value": "full"}],
         "pod": {"annotations": {SIM + "duration": "2s",
                                 SIM + "message": '{"rows": "1200", "table": "events"}'}}},
        {"name": "load", "image": "example.invalid/load:1", "needs": ["extract"],
         "pod": {"annotations": {SIM + "duration": "30s"}}}]},
    {"name": "flaky", "steps": [
        {"name": "fetch", "image": "example.invalid/fetch:1",
         "retry": {"limit": 2, "backoffSeconds": 2, "transientExitCodes": [75]},
         "pod": {"annotations": {SIM + "duration": "1s", SIM + "exit-code": "75",
                                 SIM + "fail-attempts": "1"}}}]},
    {"name": "bad", "steps": [
        {"name": "check", "image": "example.invalid/check:1",
         "pod": {"annotations": {SIM + "duration": "1s", SIM + "exit-code": "3",
                                 SIM + "message": "schema mismatch"}}}]},
    {"name": "live", "mode": "realtime", "steps": [
        {"name": "hub", "image": "example.invalid/hub:1", "port": 8080,
         "pod": {"annotations": {SIM + "duration": "forever"}}}]},
]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="runctl-record-"))
    cluster = ControlPlane(workdir, build_binaries())
    cluster.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/storyruns.runctl.dev", "crd/stepruns.runctl.dev")
        cluster.kubectl("create", "namespace", NS)
        until("the default service account", lambda: cluster.kubectl(
            "get", "serviceaccount", "default", "-n", NS, check=False).returncode == 0)
        runctl = Path(sys.executable).parent / "runctl"
        operator = subprocess.Popen(
            [str(runctl), "operator", "--metrics-port", "0", "--liveness", "", "-n", NS],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=(workdir / "operator.log").open("wb"), stderr=subprocess.STDOUT)
        for run in RUNS:
            body = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
                    "metadata": {"name": run["name"], "namespace": NS},
                    "spec": {k: v for k, v in run.items() if k != "name"}}
            cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

        until("ok's load to run", lambda: phase(cluster, "steprun", "ok-load") == "Running")
        save(cluster, "storyrun", "ok", "storyrun-ok-running")
        for step in ("extract", "load"):
            save(cluster, "steprun", f"ok-{step}", f"steprun-ok-{step}")
            save(cluster, "pod", f"ok-{step}-1", f"pod-ok-{step}-1")
        until("flaky to succeed", lambda: phase(cluster, "storyrun", "flaky") == "Succeeded")
        save(cluster, "steprun", "flaky-fetch", "steprun-flaky-fetch")
        for attempt in (1, 2):
            save(cluster, "pod", f"flaky-fetch-{attempt}", f"pod-flaky-fetch-{attempt}")
        until("bad to fail", lambda: phase(cluster, "storyrun", "bad") == "Failed")
        save(cluster, "storyrun", "bad", "storyrun-bad-failed")
        save(cluster, "steprun", "bad-check", "steprun-bad-check")
        save(cluster, "pod", "bad-check-1", "pod-bad-check-1")
        until("the hub to serve", lambda: phase(cluster, "steprun", "live-hub") == "Running")
        pods = json.loads(cluster.kubectl("get", "pods", "-n", NS, "-o", "json", "-l",
                                          "runctl.dev/step=hub").stdout)["items"]
        write("pod-live-hub", pods[0])
        save(cluster, "deployment", "live-hub", "deployment-live-hub")
        save(cluster, "service", "live-hub", "service-live-hub")
        cluster.kubectl("patch", "storyrun", "live", "-n", NS, "--type", "merge",
                        "-p", '{"spec":{"cancelRequested":true}}')
        until("live to be canceled", lambda: phase(cluster, "storyrun", "live") == "Canceled")
        save(cluster, "storyrun", "live", "storyrun-live-canceled")
        save(cluster, "steprun", "live-hub", "steprun-live-hub")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait()
        cluster.stop()


def until(what: str, probe: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"record: timed out waiting for {what}")
        time.sleep(0.2)


def get(cluster: ControlPlane, kind: str, name: str) -> dict[str, Any] | None:
    res = cluster.kubectl("get", kind, name, "-n", NS, "-o", "json", "--show-managed-fields",
                          check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def phase(cluster: ControlPlane, kind: str, name: str) -> str | None:
    obj = get(cluster, kind, name)
    return ((obj or {}).get("status") or {}).get("phase")


def save(cluster: ControlPlane, kind: str, name: str, file: str) -> None:
    obj = get(cluster, kind, name)
    if obj is None:
        raise SystemExit(f"record: {kind} {name} not found")
    write(file, obj)


def write(file: str, obj: dict[str, Any]) -> None:
    (HERE / f"{file}.json").write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    print(f"recorded {file}")


if __name__ == "__main__":
    main()
