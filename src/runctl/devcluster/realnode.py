"""A real node for the local control plane: containerd and a kubelet on this machine, so pods
really run (processes, exit codes, termination messages, logs) where kwok only pretends.

One real node per machine (a kubelet claims port 10250 and /var/lib/kubelet/device-plugins): it
keeps its state under STATE and RUN and is known by its binaries' paths, so `stop()` ends and
removes exactly what a node started, and `start()` first removes what an interrupted one left
(see `runctl.devcluster.hostclean`). Only pods that select the node land on it: it carries the
label and the NoSchedule taint REAL_NODE_LABEL.

Network: the node's address is loopback; pods get addresses on a bridge of their own, may reach
each other and the API server (the service address 10.96.0.1:443 is translated to the API
server's loopback port), and nothing else: whatever else a pod sends is dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from runctl import pki
from runctl.devcluster import hostclean, images
from runctl.devcluster.cluster import REPO_ROOT, ControlPlane
from runctl.devcluster.processes import Processes

BUILD_SCRIPT = REPO_ROOT / "hack" / "realnode-build.sh"
NODE_NAME = "runctl-real-node"
REAL_NODE_LABEL = "runctl.dev/real-node"
STATE = hostclean.STATE
RUN = hostclean.RUN
BRIDGE = hostclean.BRIDGE
POD_SUBNET = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
SERVICE_IP = "10.96.0.1"
PAUSE_IMAGE = images.image_name("pause", "1")
BUSYBOX_IMAGE = images.image_name("busybox", "1")
CNI_BIN = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
LOCK = Path("/run/runctl-realnode.lock")


def build_binaries() -> Path:
    """Build (or reuse from cache) kubelet, containerd, ctr, the shim and pause."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return Path(out.strip().splitlines()[-1])


def unavailable() -> str | None:
    """Why this machine cannot run a real node, in one line; None when it can."""
    if os.geteuid() != 0:
        return "a real node needs root (containers, mounts, cgroups, iptables)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "a real node needs the overlay file system, which this kernel lacks"
    for controller in ("memory", "pids", "cpu"):
        v1 = Path("/sys/fs/cgroup") / controller
        probe = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
        if not os.access(probe, os.W_OK):
            return f"a real node needs writable cgroups ({probe} is not)"
    for tool in ("iptables", "ip", str(RUNC), str(CNI_BIN / "bridge")):
        if not shutil.which(tool):
            return f"a real node needs {tool} (hack/deps.sh installs it)"
    return None


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One real node's start or stop at a time on this machine."""
    with LOCK.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class RealNode:
    """containerd and a kubelet joined to `cluster` as node NODE_NAME."""

    cluster: ControlPlane
    bin_dir: Path

    @property
    def logs(self) -> Path:
        return self.cluster.logs

    @property
    def _processes(self) -> Processes:
        return Processes(RUN / "pids", self.logs)

    @property
    def socket(self) -> Path:
        return RUN / "containerd" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "ctr"), f"--address={self.socket}",
                               "-n", "k8s.io", *args], check=True, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with machine_lock():
            if other := self._other_owner():
                raise RuntimeError(f"a real node already runs on this machine for the control "
                                   f"plane in {other}; stop that one first")
            hostclean.clean()  # what an interrupted or abandoned node left
            try:
                for d in (STATE, RUN, STATE / "pod-logs"):
                    d.mkdir(parents=True, exist_ok=True)
                (RUN / "owner").write_text(str(self.cluster.workdir))
                hostclean.network_up(POD_SUBNET, GATEWAY, SERVICE_IP,
                                     self.cluster.ports["apiserver"])
                self._start_containerd(deadline)
                self.import_image(PAUSE_IMAGE, lambda root: images.pause_root(
                    self.bin_dir / "pause", root))
                self.import_image(BUSYBOX_IMAGE, images.busybox_root)
                self._join()
                self._start_kubelet()
                self._wait_ready(deadline)
            except BaseException:
                hostclean.clean()
                raise

    def owned(self) -> bool:
        """Whether the machine's real node, if any, was started for this control plane (one
        that names no owner is nobody else's either)."""
        owner = RUN / "owner"
        return not owner.exists() or owner.read_text() == str(self.cluster.workdir)

    def _other_owner(self) -> str | None:
        """The workdir of another control plane, still running, whose node this machine runs."""
        owner = RUN / "owner"
        if self.owned() or not hostclean.node_processes():
            return None
        other = owner.read_text()
        with contextlib.suppress(OSError, ValueError):
            for line in (Path(other) / "pids").read_text().splitlines():
                if not hostclean.dead(int(line.split()[0])):
                    return other
        return None

    def stop(self) -> None:
        """End the kubelet, every container, the shims and containerd; remove every mount,
        iptables chain, cgroup, file and the bridge the node made."""
        with machine_lock():
            hostclean.clean()

    def import_image(self, name: str, make_root: images.RootMaker | None = None,
                     archive: Path | None = None) -> None:
        """Load the image archive `archive`, or one made of the tree `make_root` fills."""
        with tempfile.TemporaryDirectory(dir=STATE) as tmp:
            if archive is None:
                assert make_root is not None, "an image needs a tree or an archive"
                root = Path(tmp) / "root"
                make_root(root)
                archive = Path(tmp) / "image.tar"
                images.write_archive(root, archive, name,
                                     entrypoint=["/pause"] if name == PAUSE_IMAGE else ())
            self.ctr("images", "import", "--local", str(archive), timeout=600)

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str]) -> None:
        self._processes.spawn(name, [str(self.bin_dir / name), *args], env=env)

    def _start_containerd(self, deadline: float) -> None:
        config = STATE / "containerd.toml"
        config.write_text(_containerd_config(self.socket))
        cni = STATE / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-runctl.conflist").write_text(json.dumps(_cni_config()))
        env = {"PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}
        self._spawn("containerd", [f"--config={config}"], env=env)
        while time.monotonic() < deadline:
            self._processes.check("containerd")
            if self.socket.exists() and subprocess.run(
                    [str(self.bin_dir / "ctr"), f"--address={self.socket}", "version"],
                    capture_output=True, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"containerd did not serve; see {self.logs / 'containerd.log'}")

    def _join(self) -> None:
        """Credentials for the node (system:node:NAME in system:nodes, which RBAC's system:node
        role lets do what a kubelet does) and for serving the API server over loopback."""
        certs = STATE / "pki"
        certs.mkdir(exist_ok=True)
        ca = self.cluster.ca
        client = pki.issue(ca, certs, "kubelet-client", common_name=f"system:node:{NODE_NAME}",
                           org="system:nodes", client=True)
        pki.issue(ca, certs, "kubelet-serving", common_name=NODE_NAME, server=True,
                  dns=(NODE_NAME,), ips=("127.0.0.1",))
        shutil.copy(ca.cert, certs / "ca.crt")
        kubeconfig = yaml.safe_load(self.cluster.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": "admin", "user": {
            "client-certificate": str(client.cert), "client-key": str(client.key)}}]
        (STATE / "kubelet.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubelets-as-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": "system:nodes"}],
        }))

    def _start_kubelet(self) -> None:
        config = STATE / "kubelet.yaml"
        config.write_text(yaml.safe_dump(_kubelet_config(self.socket)))
        self._spawn("kubelet", [
            f"--config={config}", f"--kubeconfig={STATE / 'kubelet.kubeconfig'}",
            f"--root-dir={STATE / 'kubelet'}", f"--cert-dir={STATE / 'pki'}",
            f"--hostname-override={NODE_NAME}", "--node-ip=127.0.0.1",
            f"--node-labels={REAL_NODE_LABEL}=true",
            f"--register-with-taints={REAL_NODE_LABEL}=true:NoSchedule", "--v=1",
        ], env={"PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})

    def _wait_ready(self, deadline: float) -> None:
        """Wait for the node to register, give it its address, then wait for it to be Ready.

        A kubelet refuses a loopback node IP and then reports no address at all (it keeps
        what the node has), so the address the API server dials for logs and exec is set here:
        loopback, never a name to resolve."""
        addressed = False
        while time.monotonic() < deadline:
            self._processes.check("kubelet")
            if not addressed:
                addressed = self.cluster.kubectl(
                    "patch", "node", NODE_NAME, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"}]}}),
                    check=False, timeout=20).returncode == 0
            out = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "jsonpath={.status."
                                       'conditions[?(@.type=="Ready")].status}', check=False,
                                       timeout=20)
            if addressed and out.returncode == 0 and out.stdout.strip() == "True":
                return
            time.sleep(0.5)
        raise TimeoutError(f"node {NODE_NAME} not Ready; see {self.logs / 'kubelet.log'}")


def _containerd_config(socket: Path) -> str:
    """containerd for this machine: state under STATE and RUN, cgroupfs, no hugetlb, and
    `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE: without it every sandbox fails
    to start). NRI is off (it would listen under /var/run/nri)."""
    return f"""version = 3
root = "{STATE / 'containerd'}"
state = "{RUN / 'containerd'}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{STATE / 'cni' / 'net.d'}"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
[plugins.'io.containerd.internal.v1.opt']
  path = "{STATE / 'opt'}"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
"""


def _cni_config() -> dict[str, object]:
    """The pods' network: one bridge, addresses from POD_SUBNET, no masquerade (pods reach
    nothing beyond the bridge and the API server)."""
    return {
        "cniVersion": "1.0.0", "name": "runctl-real",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(STATE / "cni" / "ipam"),
                      "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                      # A route to the API server's service address alone: anything else
                      # beyond the bridge is unreachable from a pod before any rule drops it.
                      "routes": [{"dst": f"{SERVICE_IP}/32"}]}},
            {"type": "loopback"},
        ],
    }


def _kubelet_config(socket: Path) -> dict[str, object]:
    """A kubelet for a cgroup v1 machine with swap, serving on loopback only, authenticating
    clients by the control plane's CA and asking the API server who may do what."""
    certs = STATE / "pki"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "address": "127.0.0.1", "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 0,
        "tlsCertFile": str(certs / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(certs / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(certs / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "podLogsDir": str(STATE / "pod-logs"),
        "volumePluginDir": str(STATE / "volume-plugins"),
        "resolvConf": "",
        "staticPodPath": "",
        "registerNode": True,
        "serializeImagePulls": False,
        # Images here cannot be pulled again: never collect them, and never evict for disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%",
                         "imagefs.available": "0%", "nodefs.inodesFree": "0%"},
        "nodeStatusReportFrequency": "10s", "nodeStatusUpdateFrequency": "10s",
        "localStorageCapacityIsolation": False,
    }
