"""What one write costs the API server: its CPU per status patch of a five-step StoryRun and of
a StepRun, beside a patch of an Argo Workflow carrying the same diamond's node state.

    python -m bench.writecost [--rounds 3] [--writes 1500]

The local control plane is bound by the API server's CPU, so the cost of each write weighs as
much as their number. All three kinds are written on one control plane in interleaved rounds
(nothing else runs: no operator, no controller), each patch changing a message so the API server
stores every one; figures are the rounds' medians. Argo's CRDs are installed from its module
(`hack/peers-build.sh` first). Written to results/<date>-writecost.md and .json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peers
from bench.harness import Bench
from bench.peers import argo
from bench.report import Report
from bench.systems import SHAPE, Runctl

OBJECTS = 50
T = "2026-11-26T10:00:00Z"
STEPS = [name for name, _ in SHAPE]
Body = Callable[[int, int], dict[str, Any]]


def run_status(i: int, w: int) -> dict[str, Any]:
    """A StoryRun's status midway: two steps done, one running, two pending."""
    states = {s: {"phase": ("Succeeded", "Succeeded", "Running", "Pending", "Pending")[k],
                  **({"reason": "Completed", "finishedAt": T} if k < 2 else {}),
                  **({"stepRun": f"d{i}-{s}", "attempts": 1, "startedAt": T} if k < 3
                     else {"attempts": 0})}
              for k, s in enumerate(STEPS)}
    return {"status": {
        "phase": "Running", "message": f"write {w}", "startedAt": T, "progress": "2/5",
        "observedGeneration": 1, "stepStates": states,
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                        "message": f"write {w}", "lastTransitionTime": T,
                        "observedGeneration": 1}]}}


def step_status(i: int, w: int) -> dict[str, Any]:
    return {"status": {"phase": "Running", "attempts": 1, "startedAt": T, "message": f"write {w}",
                       "workload": {"kind": "Pod", "name": f"d{i}-{STEPS[0]}-1",
                                    "observed": True}}}


def workflow_status(i: int, w: int) -> dict[str, Any]:
    """What Argo's controller keeps of the same diamond midway: a DAG node and a node a step."""
    nodes: dict[str, Any] = {f"d{i}": {
        "id": f"d{i}", "name": f"d{i}", "displayName": f"d{i}", "type": "DAG",
        "templateName": "diamond", "phase": "Running", "startedAt": T, "progress": "2/5",
        "children": [f"d{i}-0"]}}
    for k, s in enumerate(STEPS):
        nodes[f"d{i}-{k}"] = {
            "id": f"d{i}-{k}", "name": f"d{i}.{s}", "displayName": s, "type": "Pod",
            "templateName": "step", "phase": "Succeeded" if k < 2 else "Running",
            "boundaryID": f"d{i}", "startedAt": T, "progress": "1/1",
            "hostNodeName": "kwok-node-0", "message": f"write {w}",
            **({"finishedAt": T, "outputs": {"exitCode": "0"}} if k < 2 else {})}
    return {"status": {"phase": "Running", "startedAt": T, "progress": "2/5",
                       "message": f"write {w}", "nodes": nodes}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writecost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--writes", type=int, default=1500, help="writes of each kind a round")
    args = parser.parse_args(argv)
    peers.build()
    out = Report()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runctl-writecost-") as tmp, Bench(Path(tmp)) as b:
        argo.install(b)
        ns = b.namespace("writecost")
        runs = Runctl(b)
        for i in range(OBJECTS):
            b.custom.create_namespaced_custom_object("runctl.dev", "v1alpha1", ns, "storyruns",
                                                     runs.diamond(f"d{i}"))
            b.custom.create_namespaced_custom_object("runctl.dev", "v1alpha1", ns, "stepruns", {
                "apiVersion": "runctl.dev/v1alpha1", "kind": "StepRun",
                "metadata": {"name": f"d{i}-{STEPS[0]}"},
                "spec": {"name": STEPS[0], "image": f"example.invalid/{STEPS[0]}:1",
                         "storyRun": f"d{i}", "step": STEPS[0], "mode": "batch"}})
            b.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "workflows",
                                                     argo.Argo.diamond(f"d{i}"))
        cases: list[tuple[str, str, str, str, Body]] = [
            ("StoryRun status patch, five steps", "runctl.dev", "storyruns", "d{i}", run_status),
            ("StepRun status patch", "runctl.dev", "stepruns", "d{i}-" + STEPS[0], step_status),
            ("Argo Workflow patch, the diamond's nodes", "argoproj.io", "workflows", "d{i}",
             workflow_status)]
        costs: dict[str, list[float]] = {what: [] for what, *_ in cases}
        per_object = max(1, args.writes // OBJECTS)
        for r in range(args.rounds):
            for what, group, plural, name, body in cases:
                patch = (b.custom.patch_namespaced_custom_object_status if group == "runctl.dev"
                         else b.custom.patch_namespaced_custom_object)
                before = b.control_plane_cpu()["kube-apiserver"]
                for w in range(per_object):
                    for i in range(OBJECTS):
                        patch(group, "v1alpha1", ns, plural, name.format(i=i),
                              body(i, r * per_object + w))
                spent = b.control_plane_cpu()["kube-apiserver"] - before
                ms = 1000 * spent / (per_object * OBJECTS)
                costs[what].append(ms)
                print(f"[writecost] round {r + 1} {what}: {ms:.2f} ms", flush=True)
    for what, values in costs.items():
        out.record(f"API server CPU per write: {what}", statistics.median(values), "ms",
                   note=f"rounds {', '.join(f'{v:.2f}' for v in values)}")
    out.write("writecost", time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
