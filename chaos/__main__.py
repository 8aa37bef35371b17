"""runctl under faults: two operator replicas on the local control plane run a mixed load while
a seeded plan kills, freezes and cuts off what they depend on; an independent checker then
judges everything the load did.

    python -m chaos                    # 100 runs, 24 faults (every kind at least once)
    python -m chaos --seed 7           # the same fault plan as any other run with seed 7
    python -m chaos --runs 20 --faults 8

Prints the seed first and each fault as it is injected; writes chaos/results/<date>-seed<seed>.md
and .json; exits 1 if the checker found any violation.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

from chaos import faults, load, report
from chaos.harness import Chaos
from chaos.world import World
from runctl.devcluster.cluster import ControlPlane, build_binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--faults", type=int, default=24)
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--span", type=float, default=None,
                        help="seconds over which runs are created and faults injected "
                             "(default: 2.5 s a run, at least 90)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the control plane's directory (logs, audit log, history)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 100000)
    span = args.span or max(90.0, 2.5 * args.runs)
    print(f"[chaos] seed {seed}: {args.runs} runs and {args.faults} faults over {span:.0f}s",
          flush=True)
    planned = faults.plan(seed, args.faults, span)
    workdir = Path(tempfile.mkdtemp(prefix="runctl-chaos-"))
    cluster = ControlPlane(workdir, build_binaries(), audit=True)
    try:
        cluster.start()
        with World(cluster) as world:
            out = Chaos(world, load.load(args.runs), planned, span,
                        log=lambda line: print(line, flush=True)).run(seed)
    except (RuntimeError, TimeoutError) as exc:
        print(f"[chaos] failed: {exc} (logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    path = report.write(out)
    print(f"[chaos] {len(out.violations)} violations; wrote {path} and .json "
          f"({out.seconds:.0f}s)")
    for v in out.violations[:20]:
        print(f"  {v.invariant}: {v.subject}: {v.detail}")
    if out.violations or args.keep:
        print(f"[chaos] logs, audit log and history kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if out.violations else 0


if __name__ == "__main__":
    sys.exit(main())
