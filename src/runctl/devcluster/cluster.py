"""The local control plane: started, waited for and stopped as one, in one working directory.

Its processes (`components`) start one after the other, each waited for where the next needs it;
their pids, logs and arguments stay in the working directory (`processes`), so `stop()` (or the
next `start()` after an interrupted run) ends exactly what was started, and a failing test can
point at the logs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl import pki
from runctl.devcluster import certs, components, kubeconfig
from runctl.devcluster.components import Component
from runctl.devcluster.ports import free_port
from runctl.devcluster.processes import Processes

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane-build.sh"
NODE_COUNT = 3


def build_binaries() -> Path:
    """Build (or reuse from cache) the control plane binaries; return their directory."""
    if not BUILD_SCRIPT.exists():
        raise RuntimeError(f"{BUILD_SCRIPT} not found: run from a runctl checkout")
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass
class ControlPlane:
    """One local control plane rooted at `workdir` (certs, kubeconfig, logs, pid file)."""

    workdir: Path
    bin_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    audit: bool = False
    """Log every write to the API server (`audit_log`): who wrote what, when, and with which
    user agent, for a checker that judges the writers from outside."""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def audit_log(self) -> Path:
        """One JSON audit event a line (`audit=True` only)."""
        return self.logs / "audit.log"

    @property
    def processes(self) -> Processes:
        """The processes this control plane started (pids, logs)."""
        return Processes(self.workdir / "pids", self.logs)

    @property
    def ca(self) -> pki.CertPair:
        """The CA its certificates are signed by (a node joining it is signed by it too)."""
        return certs.ca(self._certs_dir)

    @property
    def _certs_dir(self) -> Path:
        return self.workdir / "pki"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run this cluster's kubectl against this cluster."""
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, text=True, capture_output=True, check=check, timeout=timeout,
        )

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each named CRD (`storyruns.runctl.dev`) is Established. Polled, not
        `kubectl wait`, which exits at the first error it meets (a request refused while the
        API server is busy starting its controllers) instead of asking again."""
        deadline = time.monotonic() + timeout
        last = ""

        def established() -> bool:
            nonlocal last
            for crd in crds:
                done = self.kubectl("get", f"crd/{crd}", "-o", "jsonpath={.status.conditions"
                                    '[?(@.type=="Established")].status}', check=False,
                                    timeout=20)
                last = done.stderr.strip()
                if done.returncode != 0 or done.stdout.strip() != "True":
                    return False
            return True

        try:
            self._wait_until(f"CRDs {', '.join(crds)} to be Established", deadline, established)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; kubectl said: {last or 'nothing'}") from None

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` authenticated as this cluster's admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        self.stop()  # whatever an interrupted run left behind in this workdir
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.logs.mkdir(parents=True)
        self._certs_dir.mkdir()
        self.ports = {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kwok")}
        made = certs.make(self._certs_dir)
        kubeconfig.write(self.kubeconfig, f"https://127.0.0.1:{self.ports['apiserver']}",
                         made.ca, made.admin)
        deadline = time.monotonic() + timeout
        try:
            for component in self._components(made):
                self._start(component.name, component.flags)
                if component.ready:
                    component.ready(deadline)
            self._wait_default_service_account(deadline)
        except BaseException:
            self.stop()
            raise

    def _components(self, made: certs.Certs) -> Iterator[Component]:
        """The five processes in the order they start, each described when its turn comes."""
        yield components.etcd(self.ports, self._etcd_data())
        yield components.apiserver(
            self.workdir, self.ports, made, self.audit_log if self.audit else None,
            ready=lambda deadline: self._wait_ready(made, deadline))
        yield components.controller_manager(self.kubeconfig, made)
        yield components.scheduler(self.kubeconfig)
        yield components.kwok(self.workdir, self.kubeconfig, self.ports["kwok"],
                              ready=self._nodes_ready)

    def stop(self) -> None:
        """End every process this workdir started (by recorded pid), newest first."""
        if not self.processes.pidfile.exists():
            return
        self.processes.end_all()
        etcd_data = self.workdir / "etcd-data"
        if etcd_data.is_symlink():
            shutil.rmtree(etcd_data.resolve(), ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd and the rest keep running), as an outage would:
        every watch is cut and every call fails until `start_apiserver`."""
        self.processes.kill("kube-apiserver")

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start kube-apiserver again with the arguments it first had; wait until it serves."""
        args = json.loads((self.workdir / "kube-apiserver.args").read_text())
        self._start("kube-apiserver", args)
        deadline = time.monotonic() + timeout
        self._wait_until("kube-apiserver to serve again", deadline, lambda: self.kubectl(
            "get", "--raw", "/readyz", check=False, timeout=10).returncode == 0)

    def pause(self, name: str) -> None:
        """Freeze one process (`etcd`, `kube-apiserver`, ...) with SIGSTOP, as a stalled disk or
        a starved machine would: its connections stay open and nothing answers."""
        self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """Let a paused process go on (SIGCONT)."""
        self._signal(name, signal.SIGCONT)

    def pids(self, name: str) -> list[int]:
        """The process ids of one component (`kube-apiserver`, `etcd`, ...), to measure it."""
        pids = self.processes.pids(name)
        if not pids:
            raise RuntimeError(f"no {name} was started in {self.workdir}")
        return pids

    def _signal(self, name: str, sig: signal.Signals) -> None:
        for pid in self.pids(name):
            os.killpg(pid, sig)

    # -- processes ----------------------------------------------------------------------------

    def _start(self, name: str, flags: Sequence[str]) -> None:
        (self.workdir / f"{name}.args").write_text(json.dumps(list(flags)))
        self.processes.spawn(name, [str(self.bin_dir / name), *flags])

    def _etcd_data(self) -> Path:
        """etcd's data in memory where it can be (/dev/shm), linked from the workdir so `stop()`
        finds and removes it."""
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        data = Path(tempfile.mkdtemp(prefix="runctl-etcd-", dir=base))
        (self.workdir / "etcd-data").symlink_to(data)
        return data

    # -- readiness ----------------------------------------------------------------------------

    def _wait_ready(self, made: certs.Certs, deadline: float) -> None:
        """Wait until kube-apiserver answers its readiness check (asked as the admin)."""
        ctx = ssl.create_default_context(cafile=str(made.ca.cert))
        ctx.load_cert_chain(str(made.admin.cert), str(made.admin.key))
        url = f"https://127.0.0.1:{self.ports['apiserver']}/readyz"
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            self.processes.check()
            time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready ({last}); see {self.logs}")

    def _wait_until(self, what: str, deadline: float, probe: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            if probe():
                return
            self.processes.check()
            time.sleep(0.3)
        raise TimeoutError(f"timed out waiting for {what}; see {self.logs}")

    def _nodes_ready(self, deadline: float) -> None:
        """kwok serves when the nodes it simulates are Ready: create them, and wait."""
        nodes = [
            {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{i}",
                    "annotations": {"kwok.x-k8s.io/node": "fake",
                                    "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": f"kwok-node-{i}",
                               "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                },
                "spec": {},
            }
            for i in range(NODE_COUNT)
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                            "items": nodes}))

        def ready() -> bool:
            out = self.kubectl("get", "nodes", "-o", "json", check=False)
            if out.returncode:
                return False
            items = json.loads(out.stdout)["items"]
            return len(items) == NODE_COUNT and all(
                any(c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", []))
                for n in items
            )

        self._wait_until("kwok nodes to be Ready", deadline, ready)

    def _wait_default_service_account(self, deadline: float) -> None:
        self._wait_until(
            "the default service account", deadline,
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        )
