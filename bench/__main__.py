"""runctl's benchmarks, against a real local control plane with kwok-simulated pods.

    python -m bench            # the whole harness (about 5 minutes on 2 cores)
    python -m bench --quick    # smaller sizes (about 1.5 minutes), same measurements
    python -m bench --peers    # and the same diamond and stop cases on Argo and Tekton
    python -m bench --peers --cases fanout   # one case: a fan-out of 1,000 items on all three
    python -m bench --cases decision   # the pure decision at 10,000 items (no control plane)

Prints a table of figures against their targets and writes it to bench/results/<date>-<size>.md
and .json. Figures, not assertions: tests never time anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import decision, fanout, peers, scenarios
from bench.harness import Bench
from bench.peers.argo import Argo
from bench.peers.tekton import Tekton
from bench.report import Report
from bench.systems import Runctl

RUN_SIZES = {"quick": (20,), "full": (50, 200)}
STOP_SIZES = {"quick": (1, 10, 30), "full": (1, 10, 100)}
BATCH_STOP_SIZES = {"quick": (10,), "full": (10, 100)}
"""Batch runs stopped mid-step; 100 at once is the peers' stop case (one step that runs until
stopped), so it is runctl's figure beside theirs."""
MEMORY_SIZES = {"quick": [100, 300], "full": [100, 1000]}
CASES = ("stops", "throughput", "memory", "fanout", "fanout-wide", "decision")
DEFAULT_CASES = ("stops", "throughput", "memory")
ALONE = {"decision"}
"""Cases that time the core alone: no control plane is started for them."""
"""The fan-out cases are left out of a default run: they take minutes each (bench/README.md)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 1.5 minutes")
    parser.add_argument("--peers", action="store_true",
                        help="also run Argo Workflows and Tekton Pipelines, at their defaults "
                             "and tuned (built once into the cache)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated, of {', '.join(CASES)} "
                             f"({','.join(DEFAULT_CASES)})")
    parser.add_argument("--runctl", action=argparse.BooleanOptionalAction, default=True,
                        help="run runctl's side of the cases (--no-runctl: the peers' only)")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    if not cases or set(cases) - set(CASES):
        parser.error(f"--cases: {args.cases!r} is not a list of {', '.join(CASES)}")
    size = "quick" if args.quick else "full"
    out = Report()
    # Built before the clock starts: a first build takes minutes, and is no part of a run.
    peers_bin = peers.build() if args.peers else None
    began = time.monotonic()
    if "decision" in cases and args.runctl:
        print(f"[bench] runctl: the pure decision at {decision.ITEMS:,} items", flush=True)
        decision.case(out)
    if set(cases) <= ALONE:
        out.write(f"{size}-{'-'.join(cases)}", time.monotonic() - began,
                  where="the core alone, no control plane")
        return 0
    with tempfile.TemporaryDirectory(prefix="runctl-bench-") as tmp, Bench(Path(tmp)) as b:
        if args.runctl:
            run_runctl(b, out, size, cases, peers_next=peers_bin is not None)
        if peers_bin is not None:
            b.stop_operator()  # idle from here on: the peers have the machine to themselves
            for peer, install in ((Argo, peers.argo.install), (Tekton, peers.tekton.install)):
                install(b)
                # Fanning out is measured tuned only: at its defaults Argo requeues a
                # Workflow every 10 s and each controller makes 20 requests a second.
                for tuned in (False, True) if {"stops", "throughput"} & set(cases) else (True,):
                    with peer(b, peers_bin, tuned) as system:
                        print(f"[bench] {system.label}", flush=True)
                        if {"stops", "throughput"} & set(cases):
                            scenarios.peer(b, out, system, RUN_SIZES[size],
                                           max(STOP_SIZES[size]))
                        if tuned and "fanout" in cases:
                            fanout.case(b, out, system)
    name = size if cases == list(DEFAULT_CASES) else f"{size}-{'-'.join(cases)}"
    out.write(name, time.monotonic() - began)
    return 0


def run_runctl(b: Bench, out: Report, size: str, cases: list[str], peers_next: bool) -> None:
    """runctl's side of the cases, in the order a default run has always run them."""
    b.start_operator()
    if "stops" in cases:
        print(f"[bench] {size}: stop latency", flush=True)
        for n in STOP_SIZES[size]:
            scenarios.stop_latency(b, out, n, "realtime")
        for n in BATCH_STOP_SIZES[size]:
            scenarios.stop_latency(b, out, n, "batch")
    if "throughput" in cases:
        print("[bench] API server ceiling and runctl throughput", flush=True)
        ceiling = scenarios.api_ceiling(b, out, 5 if size == "quick" else 10)
        for n in RUN_SIZES[size]:
            scenarios.throughput(b, out, n, ceiling, itemize=n == max(RUN_SIZES[size]))
    if "fanout" in cases:
        print(f"[bench] runctl: fan-out of {fanout.ITEMS} items", flush=True)
        fanout.case(b, out, Runctl(b))
    # Fresh processes from here: RSS never shrinks much, so an operator that just ran the
    # scenarios above would report their high-water mark as its own.
    if "fanout-wide" in cases:
        print(f"[bench] runctl: fan-out of {fanout.WIDE_ITEMS} items", flush=True)
        b.stop_operator()
        b.start_operator()
        fanout.wide(b, out, Runctl(b))
    if "memory" in cases:
        print("[bench] operator memory", flush=True)
        b.stop_operator()
        b.start_operator()
        busy = scenarios.memory(b, out, MEMORY_SIZES[size])
        if peers_next:
            # Its pods would end, and their StepRuns be written, while the peers are measured.
            b.drop_namespace(busy)


if __name__ == "__main__":
    sys.exit(main())
