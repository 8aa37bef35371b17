"""runctl's benchmarks, against a real local control plane with kwok-simulated pods.

    python -m bench            # the whole harness (about 5 minutes on 2 cores)
    python -m bench --quick    # smaller sizes (about 1.5 minutes), same measurements

Prints a table of figures against their targets and writes it to bench/results/<date>-<size>.md
and .json. Figures, not assertions: tests never time anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import scenarios
from bench.harness import Bench
from bench.report import Report

RUN_SIZES = {"quick": (20,), "full": (50, 200)}
STOP_SIZES = {"quick": (1, 10, 30), "full": (1, 10, 100)}
MEMORY_SIZES = {"quick": [100, 300], "full": [100, 1000]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 1.5 minutes")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    out = Report()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runctl-bench-") as tmp, Bench(Path(tmp)) as b:
        b.start_operator()
        print(f"[bench] {size}: stop latency", flush=True)
        for n in STOP_SIZES[size]:
            scenarios.stop_latency(b, out, n, "realtime")
        scenarios.stop_latency(b, out, 10, "batch")
        print("[bench] API server ceiling and runctl throughput", flush=True)
        ceiling = scenarios.api_ceiling(b, out, 5 if size == "quick" else 10)
        for n in RUN_SIZES[size]:
            scenarios.throughput(b, out, n, ceiling, itemize=n == max(RUN_SIZES[size]))
        print("[bench] operator memory", flush=True)
        # A fresh process: RSS never shrinks much, so an operator that just ran the scenarios
        # above would report their high-water mark as its idle size.
        b.stop_operator()
        b.start_operator()
        scenarios.memory(b, out, MEMORY_SIZES[size])
    out.write(size, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
