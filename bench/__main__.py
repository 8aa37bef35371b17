"""runctl's benchmarks, against a real local control plane with kwok-simulated pods.

    python -m bench            # the whole harness (about 5 minutes on 2 cores)
    python -m bench --quick    # smaller sizes (about 1.5 minutes), same measurements
    python -m bench --peers    # and the same diamond and stop cases on Argo and Tekton

Prints a table of figures against their targets and writes it to bench/results/<date>-<size>.md
and .json. Figures, not assertions: tests never time anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import peers, scenarios
from bench.harness import Bench
from bench.peers.argo import Argo
from bench.peers.tekton import Tekton
from bench.report import Report

RUN_SIZES = {"quick": (20,), "full": (50, 200)}
STOP_SIZES = {"quick": (1, 10, 30), "full": (1, 10, 100)}
BATCH_STOP_SIZES = {"quick": (10,), "full": (10, 100)}
"""Batch runs stopped mid-step; 100 at once is the peers' stop case (one step that runs until
stopped), so it is runctl's figure beside theirs."""
MEMORY_SIZES = {"quick": [100, 300], "full": [100, 1000]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 1.5 minutes")
    parser.add_argument("--peers", action="store_true",
                        help="also run Argo Workflows and Tekton Pipelines, at their defaults "
                             "and tuned (built once into the cache)")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    out = Report()
    # Built before the clock starts: a first build takes minutes, and is no part of a run.
    peers_bin = peers.build() if args.peers else None
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runctl-bench-") as tmp, Bench(Path(tmp)) as b:
        b.start_operator()
        print(f"[bench] {size}: stop latency", flush=True)
        for n in STOP_SIZES[size]:
            scenarios.stop_latency(b, out, n, "realtime")
        for n in BATCH_STOP_SIZES[size]:
            scenarios.stop_latency(b, out, n, "batch")
        print("[bench] API server ceiling and runctl throughput", flush=True)
        ceiling = scenarios.api_ceiling(b, out, 5 if size == "quick" else 10)
        for n in RUN_SIZES[size]:
            scenarios.throughput(b, out, n, ceiling, itemize=n == max(RUN_SIZES[size]))
        print("[bench] operator memory", flush=True)
        # A fresh process: RSS never shrinks much, so an operator that just ran the scenarios
        # above would report their high-water mark as its idle size.
        b.stop_operator()
        b.start_operator()
        busy = scenarios.memory(b, out, MEMORY_SIZES[size])
        if peers_bin is not None:
            # Its pods would end, and their StepRuns be written, while the peers are measured.
            b.drop_namespace(busy)
            b.stop_operator()  # idle from here on: the peers have the machine to themselves
            for peer, install in ((Argo, peers.argo.install), (Tekton, peers.tekton.install)):
                install(b)
                for tuned in (False, True):
                    with peer(b, peers_bin, tuned) as system:
                        print(f"[bench] {system.label}", flush=True)
                        scenarios.peer(b, out, system, RUN_SIZES[size], max(STOP_SIZES[size]))
    out.write(size, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
