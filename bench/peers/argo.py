"""Argo Workflows' workflow-controller on the bench's control plane.

Installed from its module: the minimal CRDs (manifests/base/crds/minimal/) and the controller's
ClusterRole and Role (manifests/cluster-install-no-crds/workflow-controller-rbac/), less one
permission. Argo stops a step's pod by running `kill` in its containers through `pods/exec`, and
an exec makes the API server dial the pod's node; so the controller runs impersonating the
ServiceAccount `argo`, bound to that ClusterRole without `pods/exec`: it logs the refusal and
goes on, its stopped runs end and their pods run on (which the stop figures show).

Settings read from cmd/workflow-controller and workflow/controller at v3.7.18: client limits
`--qps 20 --burst 30`, a workflow requeued every `DEFAULT_REQUEUE_TIME` (10 s), 32 workflow
workers. Leader election is off (one instance, as runctl's operator runs in the bench); metrics
and telemetry are off (their server would listen on every address) and so is pprof. Its health
server listens on :6060, every address, and cannot be moved: nothing connects to it.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any, cast

import yaml

from bench.harness import Bench, Kind, cpu_seconds, stop_process
from bench.peers import (
    ARGO,
    STEP_COMMAND,
    STEP_IMAGE,
    TUNED_BURST,
    TUNED_QPS,
    module_dir,
    plain_env,
)
from bench.systems import DURATION, FOREVER, SHAPE

NAMESPACE = "argo"
SERVICE_ACCOUNT = "argo"
KIND = Kind("argoproj.io", "v1alpha1", "workflows")
TERMINAL = {"Succeeded", "Failed", "Error"}
NODE_TERMINAL = TERMINAL | {"Skipped", "Omitted"}


def install(b: Bench) -> None:
    """CRDs, the controller's namespace, ServiceAccount, roles and ConfigMap."""
    source = module_dir(*ARGO) / "manifests"
    crds = sorted((source / "base" / "crds" / "minimal").glob("argoproj.io_*.yaml"))
    b.cluster.kubectl("apply", "--server-side", *(f"--filename={c}" for c in crds))
    rbac = source / "cluster-install-no-crds" / "workflow-controller-rbac"
    cluster_role = yaml.safe_load((rbac / "workflow-controller-clusterrole.yaml").read_text())
    for rule in cluster_role["rules"]:
        rule["resources"] = [r for r in rule["resources"] if r != "pods/exec"]
    role = yaml.safe_load((rbac / "workflow-controller-role.yaml").read_text())
    role["metadata"]["namespace"] = NAMESPACE
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        cluster_role, role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": cluster_role["metadata"]["name"]}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": cluster_role["metadata"]["name"]}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": role["metadata"]["name"], "namespace": NAMESPACE},
         "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": role["metadata"]["name"]}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "workflow-controller-configmap", "namespace": NAMESPACE},
         "data": {"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"}},
    ]
    b.cluster.kubectl("apply", "--server-side", "-f", "-",
                      input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    b.cluster.wait_established(*(f"{c.name.removeprefix('argoproj.io_').removesuffix('.yaml')}"
                                 ".argoproj.io" for c in crds))


def template(name: str, duration: str) -> dict[str, Any]:
    """A step: one container with its command named, run by kwok for `duration`."""
    return {"name": name, "metadata": {"annotations": {"sim.runctl.dev/duration": duration}},
            "container": {"image": STEP_IMAGE, "command": STEP_COMMAND}}


def nodes(run: dict[str, Any]) -> dict[str, Any]:
    """A Workflow's nodes, also where the controller compressed them (gzip, then base64) to
    keep a large Workflow under its size limit."""
    status = run.get("status") or {}
    if packed := status.get("compressedNodes"):
        return cast(dict[str, Any], json.loads(gzip.decompress(base64.b64decode(packed))))
    return cast(dict[str, Any], status.get("nodes") or {})


class Argo:
    """A running workflow-controller, at its defaults or tuned to the control plane."""

    kind = KIND
    run_label = "workflows.argoproj.io/workflow"
    item_kind = None  # an item is a node of the Workflow's status
    stop_patch: dict[str, Any] = {"spec": {"shutdown": "Terminate"}}

    def __init__(self, b: Bench, bin_dir: Path, tuned: bool) -> None:
        self.b, self.bin_dir, self.tuned = b, bin_dir, tuned
        self.label = (f"Argo {ARGO[1]}, requeue 1 s, qps {TUNED_QPS}, burst {TUNED_BURST}"
                      if tuned else f"Argo {ARGO[1]}, defaults")

    def __enter__(self) -> Argo:
        settings = {"LEADER_ELECTION_DISABLE": "true"}
        argv = [str(self.bin_dir / "workflow-controller"),
                f"--kubeconfig={self.b.cluster.kubeconfig}",
                f"--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
                f"--namespace={NAMESPACE}"]
        if self.tuned:
            settings["DEFAULT_REQUEUE_TIME"] = "1s"
            argv += [f"--qps={TUNED_QPS}", f"--burst={TUNED_BURST}"]
        # Logged once its informers have synced, when its workers start.
        self.proc = self.b.start_controller("workflow-controller", argv, plain_env(**settings),
                                            b"Starting CronWorkflow controller",
                                            "workflow-controller")
        return self

    def __exit__(self, *_: object) -> None:
        stop_process(self.proc)

    @staticmethod
    def diamond(name: str) -> dict[str, Any]:
        tasks = [{"name": step, "template": "step", **({"dependencies": list(needs)}
                                                       if needs else {})}
                 for step, needs in SHAPE]
        return Argo.workflow(name, [{"name": "diamond", "dag": {"tasks": tasks}},
                                    template("step", DURATION)])

    @staticmethod
    def long_run(name: str) -> dict[str, Any]:
        return Argo.workflow(name, [template("hub", FOREVER)])

    @staticmethod
    def fanout(name: str, items: int, parallelism: int, duration: str) -> dict[str, Any]:
        """One step `withItems` over `items` items, the Workflow's `parallelism` at once."""
        step = {"name": "item", "template": "item", "withItems": list(range(items)),
                "arguments": {"parameters": [{"name": "index", "value": "{{item}}"}]}}
        item = template("item", duration)
        item["inputs"] = {"parameters": [{"name": "index"}]}
        item["container"]["args"] = ["{{inputs.parameters.index}}"]
        wf = Argo.workflow(name, [{"name": "fanout", "steps": [[step]]}, item])
        wf["spec"]["parallelism"] = parallelism
        return wf

    @staticmethod
    def workflow(name: str, templates: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": f"{KIND.group}/{KIND.version}", "kind": "Workflow",
                "metadata": {"name": name},
                "spec": {"entrypoint": templates[0]["name"], "templates": templates}}

    @staticmethod
    def items(run: dict[str, Any]) -> dict[str, bool]:
        return {k: n.get("phase") in NODE_TERMINAL for k, n in nodes(run).items()
                if n.get("type") == "Pod"}

    @staticmethod
    def phase(run: dict[str, Any]) -> str:
        return str((run.get("status") or {}).get("phase", ""))

    def started(self, run: dict[str, Any]) -> bool:
        status = run.get("status") or {}
        return status.get("phase") == "Running" and any(
            n.get("type") == "Pod" and n.get("phase") == "Running"
            for n in (status.get("nodes") or {}).values())

    def terminal(self, run: dict[str, Any]) -> bool:
        return (run.get("status") or {}).get("phase") in TERMINAL

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)
