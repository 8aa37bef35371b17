"""The control plane's five processes, each described the same way: the binary, its flags, and
how to wait until it serves.

A description is made when its process's turn to start comes, so a port chosen for it is chosen
once the processes before it listen on theirs; making one writes the files its flags name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from runctl.devcluster.certs import Certs
from runctl.devcluster.ports import free_port

SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "127.0.0.1"
POD_CIDR = "127.64.0.0/16"
SIMULATED_LOG_LINE = ("no container ran: this pod is simulated by kwok on runctl's local control "
                      "plane, so it has no output of its own")
# Controllers a run needs: garbage collection (owner references), namespaces, Deployments and
# their ReplicaSets, service accounts and their tokens, endpoints for Services, pod GC (pods on a
# vanished node), and resource quotas (a namespace's limits hold as on a real cluster); Jobs and
# their TTL for everything else a cluster runs (the benchmark's peers). Node lifecycle is left
# out: kwok nodes send no heartbeats.
CONTROLLERS = ",".join(
    f"{name}-controller"
    for name in (
        "garbage-collector", "namespace", "job", "deployment", "replicaset", "serviceaccount",
        "serviceaccount-token", "endpointslice", "pod-garbage-collector", "ttl-after-finished",
        "clusterrole-aggregation", "root-ca-certificate-publisher", "resourcequota",
    )
)

Wait = Callable[[float], None]
"""Waits until a process serves, or fails by the deadline (a `time.monotonic()` value)."""


@dataclass(frozen=True)
class Component:
    """One process: `name` is its binary (in the control plane's bin dir), its log
    (`logs/<name>.log`) and its arguments' record (`<name>.args`); `ready`, where there is one,
    is waited for before the next process starts."""

    name: str
    flags: tuple[str, ...]
    ready: Wait | None = None


def etcd(ports: Mapping[str, int], data: Path) -> Component:
    url = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return Component("etcd", (
        f"--data-dir={data}", f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}", "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296", "--log-level=warn",
    ))


def apiserver(workdir: Path, ports: Mapping[str, int], certs: Certs, audit_log: Path | None,
              ready: Wait) -> Component:
    """kube-apiserver; with `audit_log`, every write is logged there."""
    return Component("kube-apiserver", (
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={certs.directory}",
        f"--tls-cert-file={certs.apiserver.cert}", f"--tls-private-key-file={certs.apiserver.key}",
        f"--client-ca-file={certs.ca.cert}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={certs.service_accounts.cert}",
        f"--service-account-signing-key-file={certs.service_accounts.key}",
        "--allow-privileged=true", "--endpoint-reconciler-type=none",
        # A node is reached by its InternalIP alone (loopback), never by a name to resolve.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={certs.kubelet_client.cert}",
        f"--kubelet-client-key={certs.kubelet_client.key}",
        # kwok nodes have no node-lifecycle controller to lift the not-ready taint.
        "--disable-admission-plugins=TaintNodesByCondition",
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
        "--profiling=false", "--v=1",
        *(_audit_flags(workdir, audit_log) if audit_log else ()),
    ), ready)


def _audit_flags(workdir: Path, log: Path) -> list[str]:
    """Audit every create, update, patch and delete: Metadata (user, user agent, object,
    answer, times) for all, and the request's body too for Leases, whose holder says who
    took the lease and who let it go. Written synchronously, so a write is in the log
    before it is answered."""
    writes = ["create", "update", "patch", "delete", "deletecollection"]
    policy = {
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Request", "verbs": writes,
             "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
            {"level": "Metadata", "verbs": writes},
            {"level": "None"},
        ],
    }
    path = workdir / "audit-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return [f"--audit-policy-file={path}", f"--audit-log-path={log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            "--audit-log-maxsize=0"]


def _as_client_of(kubeconfig: Path) -> tuple[str, ...]:
    """A controller's flags to reach the API server as the admin, and to ask it who may call the
    controller's own endpoints."""
    return (
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    )


def controller_manager(kubeconfig: Path, certs: Certs) -> Component:
    return Component("kube-controller-manager", (
        *_as_client_of(kubeconfig),
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={certs.service_accounts.key}",
        f"--root-ca-file={certs.ca.cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false", "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}",
        "--concurrent-job-syncs=10", "--concurrent-deployment-syncs=10",
        "--concurrent-gc-syncs=20",
        # The default client limit (20 requests/s) lets the Job controller finish only
        # about four Jobs a second; the local API server takes far more, and the
        # benchmarks should measure the systems they compare, not this limit.
        "--kube-api-qps=300", "--kube-api-burst=400",
    ))


def scheduler(kubeconfig: Path) -> Component:
    return Component("kube-scheduler", (
        *_as_client_of(kubeconfig),
        "--leader-elect=false", "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}",
    ))


def kwok(workdir: Path, kubeconfig: Path, port: int, ready: Wait) -> Component:
    """kwok, for the nodes annotated as its own. Every node advertises loopback, on the port
    kwok serves: logs, exec and port-forward through the API server can only ever dial this
    machine. Pod IPs come from a loopback range for the same reason."""
    return Component("kwok", (
        f"--kubeconfig={kubeconfig}", f"--config={_kwok_config(workdir)}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--server-address={NODE_IP}:{port}",
        f"--node-ip={NODE_IP}", f"--node-port={port}",
        f"--cidr={POD_CIDR}",
    ), ready)


def _kwok_config(workdir: Path) -> Path:
    """kwok's stages, and the log it serves for every simulated container.

    No container runs here, so there is no output to show; `kubectl logs` (and `runctl
    logs`) get one line saying so, through the API server and kwok exactly as a real
    kubelet's log would come, instead of an error that looks like a broken cluster."""
    log = workdir / "simulated-container.log"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log.write_text(f"{now} stdout F {SIMULATED_LOG_LINE}\n")  # the CRI log format
    logs = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
            "metadata": {"name": "simulated-containers"},
            "spec": {"logs": [{"logsFile": str(log), "follow": True}]}}
    stages = resources.files("runctl.devcluster").joinpath("stages.yaml").read_text()
    config = workdir / "kwok.yaml"
    config.write_text(f"{stages}\n---\n{yaml.safe_dump(logs)}")
    return config
