"""`python -m runctl.devcluster up|down|env [--workdir DIR] [--real-node]`: the local control
plane for people."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runctl.devcluster import realnode
from runctl.devcluster.cluster import REPO_ROOT, ControlPlane, build_binaries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl.devcluster")
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".cluster" / "dev")
    parser.add_argument("--real-node", action="store_true",
                        help="also run a real node (containerd and a kubelet; needs root)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
