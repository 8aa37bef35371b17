"""The chaos harness's world: a local control plane that audits every write, and two operator
replicas electing their leader through a Lease, each a process of its own (so it can be killed,
frozen and started again) whose user agent names it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import GROUP, STEP_RUNS, STORIES, STORY_RUNS
from runctl.devcluster import ControlPlane
from runctl.devcluster.cluster import REPO_ROOT

LEASE = "runctl-leader"
NAMESPACE = "chaos"


class Replica:
    """`runctl operator` with leader election, as a process in a session of its own."""

    def __init__(self, cluster: ControlPlane, identity: str, namespace: str) -> None:
        self.cluster = cluster
        self.identity = identity
        self.namespace = namespace
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.cluster.logs / f"{self.identity}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig),
               "RUNCTL_IDENTITY": self.identity}
        runctl = Path(sys.executable).parent / "runctl"
        self.proc = subprocess.Popen(
            [str(runctl), "operator", "-n", self.namespace, "--leader-election-namespace",
             self.namespace, "--metrics-port", "0", "--liveness", ""],
            env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while b"runctl operator started" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.identity} did not start; see {self.log}")
            time.sleep(0.2)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


class World:
    """runctl's CRDs, a namespace for the load and two replicas, on a started control plane
    that audits writes (`ControlPlane(audit=True)`); leaving it stops the replicas."""

    def __init__(self, cluster: ControlPlane, namespace: str = NAMESPACE) -> None:
        if not cluster.audit:
            raise ValueError("the chaos checker needs a control plane that audits writes")
        self.cluster = cluster
        self.namespace = namespace
        self.replicas = [Replica(cluster, f"replica-{x}-{namespace}", namespace) for x in "ab"]

    def __enter__(self) -> World:
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                             str(REPO_ROOT / "crds"))
        self.cluster.wait_established(*(f"{plural}.{GROUP}"
                                        for plural in (STORY_RUNS, STEP_RUNS, STORIES)))
        self.api = self.cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.core.create_namespace(client.V1Namespace(
            metadata=client.V1ObjectMeta(name=self.namespace)))
        deadline = time.monotonic() + 60
        while not self._has_default_account():
            if time.monotonic() > deadline:
                raise TimeoutError("no default service account in the load's namespace")
            time.sleep(0.3)
        return self

    def _has_default_account(self) -> bool:
        try:
            self.core.read_namespaced_service_account("default", self.namespace)
        except ApiException:
            return False
        return True

    def start_replicas(self) -> None:
        for r in self.replicas:
            r.start()

    def __exit__(self, *_: object) -> None:
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()

    def holder(self) -> str:
        """Who holds the Lease now ("" if nobody, or the API server cannot say)."""
        try:
            lease: Any = self.coordination.read_namespaced_lease(
                LEASE, self.namespace, _request_timeout=5)
        except Exception:  # an API server away or etcd frozen: nobody known
            return ""
        return str(lease.spec.holder_identity or "")

    def replica(self, identity: str) -> Replica | None:
        return next((r for r in self.replicas if r.identity == identity), None)
