"""Start, wait for and stop the local control plane's processes.

Every process is started in its own session and its pid is written to `<workdir>/pids`, so a later
`stop()` (or the next `start()` after an interrupted run) can end exactly what was started, and
nothing else. Logs stay in `<workdir>/logs/` for a failing test to point at.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from runctl import pki

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane-build.sh"
NODE_COUNT = 3
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


def build_binaries() -> Path:
    """Build (or reuse from cache) the control plane binaries; return their directory."""
    if not BUILD_SCRIPT.exists():
        raise RuntimeError(f"{BUILD_SCRIPT} not found: run from a runctl checkout")
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes the local ports of outgoing connections from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, below the ephemeral range: a port the kernel hands
    out (bind to 0) can be taken, before the component that is to listen on it starts, as the
    local port of a connection the already running API server or etcd opens."""
    low = max(_ephemeral_ports()[0], 10001)
    for port in random.sample(range(10000, low), k=min(200, low - 10000)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between 10000 and {low}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state == "Z"


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
    def _pidfile(self) -> Path:
        return self.workdir / "pids"

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
        certs = self.workdir / "pki"
        certs.mkdir()
        self.ports = {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kwok")}
        ca = pki.make_ca(certs)
        serving = pki.issue(
            ca, certs, "apiserver", common_name="kube-apiserver", server=True,
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1", "10.96.0.1"),
        )
        admin = pki.issue(ca, certs, "admin", common_name="admin", org="system:masters",
                          client=True)
        sa = pki.make_service_account_keys(certs)
        # How the API server proves itself to a real node's kubelet (logs, exec).
        pki.issue(ca, certs, "kubelet-client", common_name="kube-apiserver-kubelet-client",
                  org="system:masters", client=True)
        self._write_kubeconfig(ca, admin)
        deadline = time.monotonic() + timeout
        try:
            self._start_etcd()
            self._start_apiserver(ca, serving, sa)
            self._wait_ready(ca, admin, deadline)
            self._start("kube-controller-manager", [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--concurrent-job-syncs=10", "--concurrent-deployment-syncs=10",
                "--concurrent-gc-syncs=20",
                # The default client limit (20 requests/s) lets the Job controller finish only
                # about four Jobs a second; the local API server takes far more, and the
                # benchmarks should measure the systems they compare, not this limit.
                "--kube-api-qps=300", "--kube-api-burst=400",
            ])
            self._start("kube-scheduler", [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ])
            stages = self._kwok_config()
            # Every node advertises loopback, on the port kwok serves: logs, exec and
            # port-forward through the API server can only ever dial this machine. Pod IPs come
            # from a loopback range for the same reason.
            self._start("kwok", [
                f"--kubeconfig={self.kubeconfig}", f"--config={stages}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address={NODE_IP}:{self.ports['kwok']}",
                f"--node-ip={NODE_IP}", f"--node-port={self.ports['kwok']}",
                f"--cidr={POD_CIDR}",
            ])
            self._create_nodes()
            self._wait_nodes_ready(deadline)
            self._wait_default_service_account(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End every process this workdir started (by recorded pid), newest first."""
        if not self._pidfile.exists():
            return
        pids = [pid for pid, _ in self._started()]
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in pids:  # reap our own children so they leave no zombies
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        self._pidfile.unlink()
        etcd_data = self.workdir / "etcd-data"
        if etcd_data.is_symlink():
            shutil.rmtree(etcd_data.resolve(), ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd and the rest keep running), as an outage would:
        every watch is cut and every call fails until `start_apiserver`."""
        for pid, name in self._started():
            if name == "kube-apiserver":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                end = time.monotonic() + 10
                while time.monotonic() < end and _alive(pid) and not _zombie(pid):
                    time.sleep(0.05)
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
        kept = [f"{pid} {name}\n" for pid, name in self._started() if name != "kube-apiserver"]
        self._pidfile.write_text("".join(kept))

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
        pids = [pid for pid, started in self._started() if started == name]
        if not pids:
            raise RuntimeError(f"no {name} was started in {self.workdir}")
        return pids

    def _signal(self, name: str, sig: signal.Signals) -> None:
        for pid in self.pids(name):
            os.killpg(pid, sig)

    # -- processes ----------------------------------------------------------------------------

    def _start(self, name: str, args: Sequence[str]) -> None:
        (self.workdir / f"{name}.args").write_text(json.dumps(list(args)))
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(self.bin_dir / name), *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        with self._pidfile.open("a") as f:
            f.write(f"{proc.pid} {name}\n")

    def _start_etcd(self) -> None:
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        data = Path(tempfile.mkdtemp(prefix="runctl-etcd-", dir=base))
        (self.workdir / "etcd-data").symlink_to(data)
        url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._start("etcd", [
            f"--data-dir={data}", f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296", "--log-level=warn",
        ])

    def _start_apiserver(self, ca: pki.CertPair, serving: pki.CertPair,
                         sa: pki.CertPair) -> None:
        self._start("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--allow-privileged=true", "--endpoint-reconciler-type=none",
            # A node is reached by its InternalIP alone (loopback), never by a name to resolve.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={self.workdir / 'pki' / 'kubelet-client.crt'}",
            f"--kubelet-client-key={self.workdir / 'pki' / 'kubelet-client.key'}",
            # kwok nodes have no node-lifecycle controller to lift the not-ready taint.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--profiling=false", "--v=1",
            *(self._audit_args() if self.audit else ()),
        ])

    def _audit_args(self) -> list[str]:
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
        path = self.workdir / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        return [f"--audit-policy-file={path}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-mode=blocking",
                "--audit-log-maxsize=0"]

    def _kwok_config(self) -> Path:
        """kwok's stages, and the log it serves for every simulated container.

        No container runs here, so there is no output to show; `kubectl logs` (and `runctl
        logs`) get one line saying so, through the API server and kwok exactly as a real
        kubelet's log would come, instead of an error that looks like a broken cluster."""
        log = self.workdir / "simulated-container.log"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        log.write_text(f"{now} stdout F {SIMULATED_LOG_LINE}\n")  # the CRI log format
        logs = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
                "metadata": {"name": "simulated-containers"},
                "spec": {"logs": [{"logsFile": str(log), "follow": True}]}}
        stages = resources.files("runctl.devcluster").joinpath("stages.yaml").read_text()
        config = self.workdir / "kwok.yaml"
        config.write_text(f"{stages}\n---\n{yaml.safe_dump(logs)}")
        return config

    # -- readiness ----------------------------------------------------------------------------

    def _wait_ready(self, ca: pki.CertPair, admin: pki.CertPair, deadline: float) -> None:
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        url = f"https://127.0.0.1:{self.ports['apiserver']}/readyz"
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            self._check_processes()
            time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready ({last}); see {self.logs}")

    def _check_processes(self) -> None:
        """Fail at once, with the log's last lines, when a started process has exited."""
        for pid, name in self._started():
            if not _alive(pid) or _zombie(pid):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited during start-up; its log ends:\n{tail}")

    def _started(self) -> list[tuple[int, str]]:
        if not self._pidfile.exists():
            return []
        rows = (line.split() for line in self._pidfile.read_text().splitlines() if line.strip())
        return [(int(r[0]), r[1] if len(r) > 1 else "?") for r in rows]

    def _wait_until(self, what: str, deadline: float, probe: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            if probe():
                return
            self._check_processes()
            time.sleep(0.3)
        raise TimeoutError(f"timed out waiting for {what}; see {self.logs}")

    def _create_nodes(self) -> None:
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

    def _wait_nodes_ready(self, deadline: float) -> None:
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

    def _write_kubeconfig(self, ca: pki.CertPair, admin: pki.CertPair) -> None:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "runctl-local",
            "clusters": [{"name": "runctl-local", "cluster": {
                "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                "certificate-authority-data": b64(ca.cert)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64(admin.cert),
                "client-key-data": b64(admin.key)}}],
            "contexts": [{"name": "runctl-local",
                          "context": {"cluster": "runctl-local", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m runctl.devcluster up|down|env [--workdir DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runctl.devcluster")
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".cluster" / "dev")
    parser.add_argument("--real-node", action="store_true",
                        help="also run a real node (containerd and a kubelet; needs root)")
    args = parser.parse_args(argv)
    if args.real_node or args.command == "down":
        from runctl.devcluster import realnode  # a real node is optional; kwok is the default
    if args.command == "down":
        node = realnode.RealNode(ControlPlane(args.workdir, Path()), Path())
        if os.geteuid() == 0 and node.owned():
            node.stop()
        ControlPlane(args.workdir, Path()).stop()
        print(f"control plane in {args.workdir} stopped", file=sys.stderr)
        return 0
    if args.command == "env":
        print(f"export KUBECONFIG={args.workdir / 'kubeconfig'}")
        return 0
    if args.real_node and (why := realnode.unavailable()):
        print(f"python -m runctl.devcluster: no real node here: {why}", file=sys.stderr)
        return 1
    try:
        node_bin = realnode.build_binaries() if args.real_node else None
    except subprocess.CalledProcessError:
        print("python -m runctl.devcluster: building the real node failed (its log is above)",
              file=sys.stderr)
        return 1
    cp = ControlPlane(args.workdir, build_binaries())
    started = time.monotonic()
    cp.start()
    if node_bin:
        try:
            realnode.RealNode(cp, node_bin).start()
        except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
            cp.stop()
            print(f"python -m runctl.devcluster: the real node did not start: "
                  f"{str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        except BaseException:
            cp.stop()
            raise
        print(f"real node {realnode.NODE_NAME} Ready: pods run there that select "
              f"{realnode.REAL_NODE_LABEL}=true and tolerate its taint", file=sys.stderr)
    print(f"control plane up in {time.monotonic() - started:.1f}s; "
          f"export KUBECONFIG={cp.kubeconfig}; logs in {cp.logs}", file=sys.stderr)
    return 0
