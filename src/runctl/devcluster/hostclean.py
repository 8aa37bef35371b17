"""What a real node leaves on the machine, found and removed: its processes, containers, mounts,
cgroups, iptables chains, files and bridge.

Everything is found by what marks it as the node's own, never by a broad name: processes by
their binary's name and an argument under STATE or RUN; containers by the kubepods cgroups only a
kubelet makes; mounts by their place under STATE, RUN or /var/lib/kubelet; chains by name (the
kubelet's three, and this node's RUNCTL-REAL-*). `leftovers()` lists what is still there, so a
test can prove a stop (or a start after an interrupted run) left nothing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from runctl.devcluster import processes

STATE = Path("/var/lib/runctl-realnode")
RUN = Path("/run/runctl-realnode")
BRIDGE = "runctl0"
NODE_BINARIES = ("kubelet", "containerd", "containerd-shim-runc-v2")
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
OUR_CHAINS = ("RUNCTL-REAL-IN", "RUNCTL-REAL-FWD", "RUNCTL-REAL-DNAT")
TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_FIXED = Path("/var/lib/kubelet")  # device-plugins lands here whatever --root-dir says
CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni")

# -- finding ---------------------------------------------------------------------------------


def node_processes() -> list[tuple[int, str]]:
    """(pid, name) of every kubelet, containerd and shim started for a real node."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(args[0].decode(errors="replace"))
        if name in NODE_BINARIES and any(
                str(STATE).encode() in a or str(RUN).encode() in a for a in args[1:]):
            found.append((int(proc.name), name))
    return found


def kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory in every hierarchy, deepest first."""
    found: list[Path] = []
    for top in sorted(CGROUP_ROOT.glob("*/kubepods")) + sorted(CGROUP_ROOT.glob("kubepods")):
        found.extend(Path(d) for d, _, _ in os.walk(top))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")


def node_mounts() -> list[str]:
    """Mount points under STATE, RUN or /var/lib/kubelet, deepest (and latest) first."""
    places = (str(STATE), str(RUN), str(KUBELET_FIXED))
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in places):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def _iptables(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-w", "5", *args], capture_output=True, text=True, check=False)


def node_chains() -> list[str]:
    """`tool/table/chain` for every chain of the kubelet's or this node's still there."""
    found = []
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in TABLES:
            out = _iptables(tool, "-t", table, "-S").stdout
            found += [f"{tool}/{table}/{line.split()[1]}" for line in out.splitlines()
                      if line.startswith("-N ") and line.split()[1] in KUBELET_CHAINS + OUR_CHAINS]
    return found


def leftovers() -> list[str]:
    """What of a real node is still on this machine, one line each; empty when nothing."""
    out = [f"process {name} ({pid})" for pid, name in node_processes()]
    out += [f"cgroup {c}" for c in kubepods_cgroups()]
    out += [f"mount {m}" for m in node_mounts()]
    out += [f"iptables chain {c}" for c in node_chains()]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        out.append(f"bridge {BRIDGE}")
    for path in (STATE, RUN, KUBELET_FIXED / "device-plugins", CNI_CACHE / "results"):
        if path.exists():
            out.append(f"directory {path}")
    out += [f"log link {p}" for p in _our_log_links()]
    return out


# -- removing --------------------------------------------------------------------------------


def dead(pid: int) -> bool:
    now = processes.state(pid)
    if now == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # ours: reap it
    return now in (None, "Z")


def _end(pids: list[int], grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end and not all(dead(p) for p in pids):
            time.sleep(0.05)
        if all(dead(p) for p in pids):
            return


def _kill_containers() -> None:
    """SIGKILL every process in a kubepods cgroup, until none is left."""
    end = time.monotonic() + 15
    while time.monotonic() < end:
        pids = set()
        for cgroup in kubepods_cgroups():
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _unmount_all() -> None:
    for _ in range(5):  # a mount may hide another under it
        points = node_mounts()
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _remove_chains() -> None:
    targets = set(KUBELET_CHAINS + OUR_CHAINS)
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in TABLES:
            rules = _iptables(tool, "-t", table, "-S").stdout.splitlines()
            for rule in rules:  # the jumps into the chains first
                words = shlex.split(rule)
                if words[:1] == ["-A"] and "-j" in words and \
                        words[words.index("-j") + 1] in targets:
                    _iptables(tool, "-t", table, "-D", *words[1:])
            for rule in rules:
                words = rule.split()
                if words[:1] == ["-N"] and words[1] in targets:
                    _iptables(tool, "-t", table, "-F", words[1])
                    _iptables(tool, "-t", table, "-X", words[1])


def _remove_cgroups() -> None:
    end = time.monotonic() + 15
    while time.monotonic() < end:
        left = kubepods_cgroups()
        if not left:
            return
        for cgroup in left:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        time.sleep(0.1)


def _our_log_links() -> list[Path]:
    """/var/log/containers links the kubelet made into this node's pod logs (or dangling)."""
    if not CONTAINER_LOGS.is_dir():
        return []
    return [p for p in CONTAINER_LOGS.iterdir() if p.is_symlink() and (
        str(os.readlink(p)).startswith(str(STATE)) or not p.exists())]


def _remove_files() -> None:
    for link in _our_log_links():
        link.unlink()
    shutil.rmtree(KUBELET_FIXED / "device-plugins", ignore_errors=True)
    shutil.rmtree(CNI_CACHE / "results", ignore_errors=True)
    for path in (STATE, RUN):
        shutil.rmtree(path, ignore_errors=True)
    for empty in (CONTAINER_LOGS, KUBELET_FIXED, CNI_CACHE):
        with contextlib.suppress(OSError):
            empty.rmdir()


def clean() -> None:
    """Remove every trace of a real node, running or abandoned: the kubelet first (so it
    starts nothing more), then the containers, the shims and containerd, then mounts, files,
    cgroups, chains and the bridge."""
    procs = node_processes()
    _end([pid for pid, name in procs if name == "kubelet"], grace=5)
    _kill_containers()
    _end([pid for pid, name in procs if name != "kubelet"] +
         [pid for pid, name in node_processes() if name != "kubelet"], grace=5)
    _unmount_all()
    _remove_files()
    _remove_cgroups()
    _remove_chains()
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


# -- the pods' network -----------------------------------------------------------------------


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(args)} failed: {done.stderr.strip()}")


def network_up(subnet: str, gateway: str, service_ip: str, apiserver_port: int) -> None:
    """The bridge the pods' interfaces join, and what may cross it: pods reach each other and
    the API server (its service address translated to loopback), and nothing else."""
    prefix = subnet.split("/")[1]
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{gateway}/{prefix}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1")
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6").write_text("1")
    ipt = ("iptables", "-w", "5")
    for table, chain in (("nat", "RUNCTL-REAL-DNAT"), ("filter", "RUNCTL-REAL-IN"),
                         ("filter", "RUNCTL-REAL-FWD")):
        _run(*ipt, "-t", table, "-N", chain)
    _run(*ipt, "-t", "nat", "-A", "RUNCTL-REAL-DNAT", "-d", service_ip, "-p", "tcp",
         "--dport", "443", "-j", "DNAT", "--to-destination", f"127.0.0.1:{apiserver_port}")
    _run(*ipt, "-t", "nat", "-I", "PREROUTING", "-i", BRIDGE, "-j", "RUNCTL-REAL-DNAT")
    _run(*ipt, "-A", "RUNCTL-REAL-IN", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
         "-j", "ACCEPT")
    _run(*ipt, "-A", "RUNCTL-REAL-IN", "-d", "127.0.0.1", "-p", "tcp", "--dport",
         str(apiserver_port), "-j", "ACCEPT")
    _run(*ipt, "-A", "RUNCTL-REAL-IN", "-j", "DROP")
    _run(*ipt, "-I", "INPUT", "-i", BRIDGE, "-j", "RUNCTL-REAL-IN")
    _run(*ipt, "-A", "RUNCTL-REAL-FWD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
    _run(*ipt, "-A", "RUNCTL-REAL-FWD", "-j", "DROP")
    _run(*ipt, "-I", "FORWARD", "-i", BRIDGE, "-j", "RUNCTL-REAL-FWD")
    _run(*ipt, "-I", "FORWARD", "-o", BRIDGE, "-j", "RUNCTL-REAL-FWD")
