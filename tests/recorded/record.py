"""Records the objects of this directory again, from the local control plane with the operator
running: `.venv/bin/python -m tests.recorded.record` (after a change to what the operator creates
or reads, so the translation tests keep reading what a real API server stores).

Four runs in namespace `rec`: `ok` (extract succeeds with outputs, load still runs), `flaky`
(fetch fails once with a transient exit code, then succeeds), `bad` (check fails for good) and
`live` (a realtime hub, recorded serving, then stopped); and a re-run, `part-again`, of run
`part` (a run of Story `part` whose second step failed), reusing its first step; and `placed`
and `placed-live` (a batch and a realtime step that choose their nodes). Name the sets to record
only those (`... record rerun`; default: all of them: runs, rerun, placed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from runctl.devcluster.cluster import ControlPlane, build_binaries
from tests.support import kubectl_json, wait_for

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NS = "rec"
SIM = "sim.runctl.dev/"

ON_KWOK: dict[str, Any] = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "example.invalid/dedicated", "operator": "Equal", "value": "etl",
                     "effect": "NoSchedule"}],
}
"""A step's choice of nodes (kwok's nodes, by their label), recorded on its pods."""

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
        cluster.wait_established("storyruns.runctl.dev", "stepruns.runctl.dev",
                                 "stories.runctl.dev")
        cluster.kubectl("create", "namespace", NS)
        wait_for("the default service account", lambda: kubectl_json(
            cluster, "get", "serviceaccount", "default", "-n", NS))
        runctl = Path(sys.executable).parent / "runctl"
        operator = subprocess.Popen(
            [str(runctl), "operator", "--metrics-port", "0", "--liveness", "", "-n", NS],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=(workdir / "operator.log").open("wb"), stderr=subprocess.STDOUT)
        wanted = set(sys.argv[1:]) or {"runs", "rerun", "placed"}
        if "rerun" in wanted:
            record_rerun(cluster)
        if "placed" in wanted:
            record_placed(cluster)
        if "runs" in wanted:
            record_runs(cluster)
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait()
        cluster.stop()


PART: dict[str, Any] = {
    "params": [{"name": "exit", "type": "string", "default": "0"}],
    "steps": [
        {"name": "first", "image": "example.invalid/first:1", "outputs": [{"name": "rows"}],
         "pod": {"annotations": {SIM + "duration": "1s", SIM + "message": '{"rows": "7"}'}}},
        {"name": "second", "image": "example.invalid/second:1",
         "args": ["${{ steps.first.outputs.rows }}"],
         "pod": {"annotations": {SIM + "duration": "1s",
                                 SIM + "exit-code": "${{ params.exit }}"}}}]}


def record_placed(cluster: ControlPlane) -> None:
    """Run `placed`: a batch step and a realtime step that choose their nodes."""
    for name, mode in (("placed", "batch"), ("placed-live", "realtime")):
        cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
            "metadata": {"name": name},
            "spec": {"mode": mode, "steps": [
                {"name": "work", "image": "example.invalid/work:1",
                 "pod": {"annotations": {SIM + "duration": "forever"}, **ON_KWOK}}]}}))
    wait_for("placed's pod to run", lambda: phase(cluster, "steprun", "placed-work") == "Running")
    save(cluster, "steprun", "placed-work", "steprun-placed-work")
    save(cluster, "pod", "placed-work-1", "pod-placed-work-1")
    wait_for("placed-live to serve",
             lambda: phase(cluster, "steprun", "placed-live-work") == "Running")
    save(cluster, "steprun", "placed-live-work", "steprun-placed-live-work")
    save(cluster, "deployment", "placed-live-work", "deployment-placed-live-work")


def record_rerun(cluster: ControlPlane) -> None:
    """Run `part` fails at its second step; `part-again` runs it again with exit 0."""
    for body in ({"kind": "Story", "metadata": {"name": "part"}, "spec": PART},
                 {"kind": "StoryRun", "metadata": {"name": "part"},
                  "spec": {"storyRef": {"name": "part"}, "params": {"exit": "3"}}}):
        cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(
            {"apiVersion": "runctl.dev/v1alpha1", **body}))
    wait_for("part to fail", lambda: phase(cluster, "storyrun", "part") == "Failed")
    save(cluster, "storyrun", "part", "storyrun-part-failed")
    save(cluster, "steprun", "part-first", "steprun-part-first")
    cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
        "metadata": {"name": "part-again"},
        "spec": {"rerunOf": {"name": "part"}, "params": {"exit": "0"}}}))
    wait_for("part-again to succeed",
             lambda: phase(cluster, "storyrun", "part-again") == "Succeeded")
    save(cluster, "storyrun", "part-again", "storyrun-part-again-succeeded")
    save(cluster, "steprun", "part-again-first", "steprun-part-again-first")
    save(cluster, "steprun", "part-again-second", "steprun-part-again-second")


def record_runs(cluster: ControlPlane) -> None:
    """The four runs of RUNS, each recorded where it shows what its file is for."""
    for run in RUNS:
        body = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
                "metadata": {"name": run["name"], "namespace": NS},
                "spec": {k: v for k, v in run.items() if k != "name"}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    wait_for("ok's load to run", lambda: phase(cluster, "steprun", "ok-load") == "Running")
    save(cluster, "storyrun", "ok", "storyrun-ok-running")
    for step in ("extract", "load"):
        save(cluster, "steprun", f"ok-{step}", f"steprun-ok-{step}")
        save(cluster, "pod", f"ok-{step}-1", f"pod-ok-{step}-1")
    wait_for("flaky to succeed", lambda: phase(cluster, "storyrun", "flaky") == "Succeeded")
    save(cluster, "steprun", "flaky-fetch", "steprun-flaky-fetch")
    for attempt in (1, 2):
        save(cluster, "pod", f"flaky-fetch-{attempt}", f"pod-flaky-fetch-{attempt}")
    wait_for("bad to fail", lambda: phase(cluster, "storyrun", "bad") == "Failed")
    save(cluster, "storyrun", "bad", "storyrun-bad-failed")
    save(cluster, "steprun", "bad-check", "steprun-bad-check")
    save(cluster, "pod", "bad-check-1", "pod-bad-check-1")
    wait_for("the hub to serve", lambda: phase(cluster, "steprun", "live-hub") == "Running")
    pods = kubectl_json(cluster, "get", "pods", "-n", NS, "-l", "runctl.dev/step=hub")["items"]
    write("pod-live-hub", pods[0])
    save(cluster, "deployment", "live-hub", "deployment-live-hub")
    save(cluster, "service", "live-hub", "service-live-hub")
    cluster.kubectl("patch", "storyrun", "live", "-n", NS, "--type", "merge",
                    "-p", '{"spec":{"cancelRequested":true}}')
    wait_for("live to be canceled", lambda: phase(cluster, "storyrun", "live") == "Canceled")
    save(cluster, "storyrun", "live", "storyrun-live-canceled")
    save(cluster, "steprun", "live-hub", "steprun-live-hub")


def phase(cluster: ControlPlane, kind: str, name: str) -> str | None:
    obj = kubectl_json(cluster, "get", kind, name, "-n", NS)
    return (obj.get("status") or {}).get("phase")


def save(cluster: ControlPlane, kind: str, name: str, file: str) -> None:
    write(file, kubectl_json(cluster, "get", kind, name, "-n", NS, "--show-managed-fields"))


def write(file: str, obj: dict[str, Any]) -> None:
    (HERE / f"{file}.json").write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    print(f"recorded {file}")


if __name__ == "__main__":
    main()
