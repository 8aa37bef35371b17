"""The bench's world: a local control plane, runctl's operator (and any other controller) as a
process, and what is read from both.

The operator runs as its own process, as it would in a cluster, so its CPU time and RSS come from
/proc and its request counts from its metrics endpoint, never from inside the bench.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from bench import metrics
from runctl.devcluster import ControlPlane, ports
from runctl.devcluster.cluster import REPO_ROOT, build_binaries

GROUP, VERSION = "runctl.dev", "v1alpha1"
TERMINAL = {"Succeeded", "Failed", "Canceled", "TimedOut"}


@dataclass(frozen=True)
class Kind:
    """A custom resource the bench creates runs of: runctl's StoryRun or a peer's run."""

    group: str
    version: str
    plural: str


STORYRUNS = Kind(GROUP, VERSION, "storyruns")
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
"""The processes every system's runs also cost: the machine's two cores are shared by them and
the controller under test, so runs a minute follow the CPU a run costs all of them together."""


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """End a process the bench started in a session of its own, and everything it started."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


class Bench:
    """A started control plane with runctl's CRDs; the operator is started and stopped apart,
    so a scenario can measure a fresh process."""

    def __init__(self, workdir: Path) -> None:
        self.cluster = ControlPlane(workdir, build_binaries())
        self.op: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Bench:
        self.cluster.start()
        try:
            self.cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
            self.cluster.wait_established("storyruns.runctl.dev", "stepruns.runctl.dev",
                                          "stories.runctl.dev")
        except BaseException:
            self.cluster.stop()  # `with` calls no __exit__ when __enter__ fails
            raise
        self.api = self.cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_operator()
        self.cluster.stop()

    def start_operator(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        path = self.cluster.logs / "operator.log"
        since = path.stat().st_size if path.exists() else 0  # an earlier process's lines
        log = path.open("ab")
        runctl = Path(sys.executable).parent / "runctl"
        self.metrics_port = ports.free_port()
        self.op = subprocess.Popen([str(runctl), "operator", "--metrics-address", "127.0.0.1",
                                    "--metrics-port", str(self.metrics_port),
                                    "--liveness", ""], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"runctl operator started" not in path.read_bytes()[since:]:
            if time.monotonic() > deadline or self.op.poll() is not None:
                raise RuntimeError("the operator did not start")
            time.sleep(0.1)

    def stop_operator(self) -> None:
        stop_process(self.op)
        self.op = None

    def start_controller(self, name: str, argv: Sequence[str], env: Mapping[str, str],
                         ready: bytes, what: str) -> subprocess.Popen[bytes]:
        """Another controller as a process of its own, its output in the cluster's logs,
        returned once its log says `ready` (within 60 s); the caller ends it with
        `stop_process`."""
        path = self.cluster.logs / f"{name}.log"
        since = path.stat().st_size if path.exists() else 0
        log = path.open("ab")
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while ready not in path.read_bytes()[since:]:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_process(proc)
                raise RuntimeError(f"{what} did not start; see {path}")
            time.sleep(0.2)
        return proc

    # -- what the figures are read from ------------------------------------------------------

    def cpu_seconds(self) -> float:
        assert self.op is not None
        return cpu_seconds(self.op.pid)

    def control_plane_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each control plane process, by component."""
        return {name: sum(cpu_seconds(pid) for pid in self.cluster.pids(name))
                for name in CONTROL_PLANE}

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def peak_rss_mb(self) -> float:
        """The operator's largest RSS since it started (the kernel's high-water mark)."""
        return self._status_mb("VmHWM:")

    def _status_mb(self, field: str) -> float:
        assert self.op is not None
        for line in Path(f"/proc/{self.op.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return 0.0

    def apiserver_requests(self) -> Counter[tuple[str, str, str]]:
        """Every client's requests as the API server counts them, from its /metrics."""
        return metrics.apiserver_requests(self.cluster.kubectl("get", "--raw", "/metrics").stdout)

    def operator_requests(self) -> Counter[tuple[str, str]]:
        """runctl's requests as it counts them, from its metrics endpoint."""
        return metrics.operator_requests(self._operator_metrics())

    def reconciles(self) -> tuple[float, float]:
        """How many reconciles the operator has made, and their seconds in all."""
        return metrics.reconciles(self._operator_metrics())

    def _operator_metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())

    # -- runs ----------------------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def drop_namespace(self, name: str) -> None:
        """Delete a scenario's namespace and wait until it is gone, so its clean-up (StepRuns let
        go, pods deleted) is not counted against the next scenario."""
        self.core.delete_namespace(name)

        def gone() -> bool:
            try:
                self.core.read_namespace(name)
            except client.ApiException as exc:
                return bool(exc.status == 404)
            return False

        self.wait(f"namespace {name} to be gone", gone, timeout=300)

    def create_runs(self, ns: str, bodies: Iterable[dict[str, Any]],
                    kind: Kind = STORYRUNS) -> None:
        def create(body: dict[str, Any]) -> None:
            self.custom.create_namespaced_custom_object(kind.group, kind.version, ns,
                                                        kind.plural, body)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, bodies))

    def objects(self, ns: str, plural: str) -> list[dict[str, Any]]:
        """The StoryRuns or StepRuns of a namespace, as the API server has them now."""
        return self.runs(ns, Kind(GROUP, VERSION, plural))

    def runs(self, ns: str, kind: Kind) -> list[dict[str, Any]]:
        """The runs of a kind in a namespace, as the API server has them now."""
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
            kind.group, kind.version, ns, kind.plural))
        items: list[dict[str, Any]] = listed["items"]
        return items

    def wait(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                tail = (self.cluster.logs / "operator.log").read_text(errors="replace")[-3000:]
                raise TimeoutError(f"timed out waiting for {what}; operator log:\n{tail}")
            time.sleep(0.5)
