"""Tekton Pipelines' controller on the bench's control plane.

Installed from its module (config/): the namespace, the CRDs with their conversion webhooks set
to `strategy: None` (runs are created and stored as v1, so nothing needs converting, and no
webhook runs here) and the config-* ConfigMaps, observability set to no metrics and no tracing.
The controller runs with the environment its Deployment (config/controller.yaml) gives it, as the
control plane's admin.

Settings read from cmd/controller and knative.dev/pkg at v1.12.0: 2 threads per controller, a
client limit of 20 requests a second with a burst of 20 (it doubles the `--kube-api-qps` and
`--kube-api-burst` it is given, so the tuned settings pass half of 300 and 400). High
availability (leader election) is off: one instance, as runctl's operator runs in the bench.
The images it must be given are never pulled (kwok runs the pods) and every step names its
command, or the controller would ask a registry for the image's entrypoint. Its probes listen on
every address, on a free port and on 8080 (fixed); nothing connects to them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.harness import Bench, Kind, cpu_seconds, stop_process
from bench.peers import (
    STEP_COMMAND,
    STEP_IMAGE,
    TEKTON,
    TUNED_BURST,
    TUNED_QPS,
    free_port,
    module_dir,
    plain_env,
)
from bench.systems import DURATION, FOREVER, SHAPE

NAMESPACE = "tekton-pipelines"
KIND = Kind("tekton.dev", "v1", "pipelineruns")
TUNED_THREADS = 32
# Observability off: no metrics server, no exporter, no tracing, no profiling.
OBSERVABILITY = {"metrics-protocol": "none", "tracing-protocol": "none",
                 "runtime-profiling": "disabled"}
MAX_MATRIX = 1000
"""A matrix's most combinations (`default-max-matrix-combinations-count`, 256 by default, read
by the reconciler with no upper bound of its own): raised so the fan-out case runs in one
PipelineRun."""


def install(b: Bench) -> None:
    """The namespace, the CRDs and the ConfigMaps the controller reads."""
    config = module_dir(*TEKTON) / "config"
    objects: list[dict[str, Any]] = []
    for path in [config / "100-namespace" / "100-namespace.yaml",
                 *sorted((config / "300-crds").glob("*.yaml")),
                 *sorted(config.glob("config-*.yaml"))]:
        objects += [o for o in yaml.safe_load_all(path.read_text()) if o]
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition" and "conversion" in obj["spec"]:
            obj["spec"]["conversion"] = {"strategy": "None"}
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "config-observability":
            obj["data"] = {**obj.get("data", {}), **OBSERVABILITY}
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "config-defaults":
            obj["data"] = {**obj.get("data", {}),
                           "default-max-matrix-combinations-count": str(MAX_MATRIX)}
    b.cluster.kubectl("apply", "--server-side", "-f", "-",
                      input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    b.cluster.wait_established(*(o["metadata"]["name"] for o in objects
                                 if o["kind"] == "CustomResourceDefinition"))


def task(name: str, needs: tuple[str, ...]) -> dict[str, Any]:
    """A pipeline task of one step with its command named."""
    return {"name": name, **({"runAfter": list(needs)} if needs else {}),
            "taskSpec": {"steps": [{"name": "run", "image": STEP_IMAGE,
                                    "command": STEP_COMMAND}]}}


class Tekton:
    """A running Tekton controller, at its defaults or tuned to the control plane."""

    kind = KIND
    run_label = "tekton.dev/pipelineRun"
    item_kind = Kind(KIND.group, KIND.version, "taskruns")
    stop_patch: dict[str, Any] = {"spec": {"status": "Cancelled"}}

    def __init__(self, b: Bench, bin_dir: Path, tuned: bool) -> None:
        self.b, self.bin_dir, self.tuned = b, bin_dir, tuned
        self.label = (f"Tekton {TEKTON[1]}, qps {TUNED_QPS}, burst {TUNED_BURST}, "
                      f"{TUNED_THREADS} threads" if tuned else f"Tekton {TEKTON[1]}, defaults")

    def __enter__(self) -> Tekton:
        images = {flag: f"example.invalid/tekton/{flag.removesuffix('-image')}:1"
                  for flag in ("entrypoint-image", "nop-image", "sidecarlogresults-image",
                               "workingdirinit-image", "shell-image", "shell-image-win")}
        argv = [str(self.bin_dir / "tekton-pipelines-controller"),
                f"-kubeconfig={self.b.cluster.kubeconfig}", "-disable-ha",
                *(f"-{flag}={image}" for flag, image in images.items())]
        if self.tuned:
            argv += [f"-kube-api-qps={TUNED_QPS // 2}", f"-kube-api-burst={TUNED_BURST // 2}",
                     f"-threads-per-controller={TUNED_THREADS}"]
        env = plain_env(
            SYSTEM_NAMESPACE=NAMESPACE, KUBERNETES_MIN_VERSION="v1.28.0",
            CONFIG_DEFAULTS_NAME="config-defaults", CONFIG_LOGGING_NAME="config-logging",
            CONFIG_OBSERVABILITY_NAME="config-observability",
            CONFIG_FEATURE_FLAGS_NAME="feature-flags",
            CONFIG_LEADERELECTION_NAME="config-leader-election-controller",
            CONFIG_SPIRE="config-spire", METRICS_DOMAIN="tekton.dev/pipeline",
            PROBES_PORT=str(free_port()), PROFILING_PORT=str(free_port()))
        self.proc = self.b.start_controller("tekton-pipelines-controller", argv, env,
                                            b"Starting controllers", "the Tekton controller")
        return self

    def __exit__(self, *_: object) -> None:
        stop_process(self.proc)

    @staticmethod
    def diamond(name: str) -> dict[str, Any]:
        return Tekton.pipeline_run(name, [task(step, needs) for step, needs in SHAPE], DURATION)

    @staticmethod
    def long_run(name: str) -> dict[str, Any]:
        return Tekton.pipeline_run(name, [task("hub", ())], FOREVER)

    @staticmethod
    def fanout(name: str, items: int, parallelism: int, duration: str) -> dict[str, Any]:
        """One task over a matrix of `items` combinations. A matrix has no parallelism of its
        own: all its TaskRuns are created at once."""
        del parallelism
        item = task("item", ())
        item["matrix"] = {"params": [{"name": "index", "value": [str(i) for i in range(items)]}]}
        item["taskSpec"]["params"] = [{"name": "index"}]
        item["taskSpec"]["steps"][0]["args"] = ["$(params.index)"]
        return Tekton.pipeline_run(name, [item], duration)

    @staticmethod
    def pipeline_run(name: str, tasks: list[dict[str, Any]], duration: str) -> dict[str, Any]:
        """A PipelineRun; its annotations reach its TaskRuns' pods, where kwok reads them."""
        return {"apiVersion": f"{KIND.group}/{KIND.version}", "kind": "PipelineRun",
                "metadata": {"name": name,
                             "annotations": {"sim.runctl.dev/duration": duration}},
                "spec": {"pipelineSpec": {"tasks": tasks}}}

    @staticmethod
    def succeeded(run: dict[str, Any]) -> dict[str, Any]:
        return next((c for c in (run.get("status") or {}).get("conditions") or []
                     if c.get("type") == "Succeeded"), {})

    def started(self, run: dict[str, Any]) -> bool:
        return self.succeeded(run).get("reason") == "Running"

    @staticmethod
    def items(task_run: dict[str, Any]) -> dict[str, bool]:
        return {task_run["metadata"]["name"]: Tekton.ended(task_run)}

    @staticmethod
    def phase(run: dict[str, Any]) -> str:
        return str(Tekton.succeeded(run).get("reason", ""))

    @staticmethod
    def ended(run: dict[str, Any]) -> bool:
        """A PipelineRun or a TaskRun has ended: its Succeeded condition is decided."""
        return Tekton.succeeded(run).get("status") in ("True", "False")

    def terminal(self, run: dict[str, Any]) -> bool:
        return self.ended(run)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)
