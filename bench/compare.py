"""Two checkouts' operators, measured in turns on one control plane.

    python -m bench.compare BEFORE AFTER [--rounds 5] [--runs 100] [--name NAME]
                            [--cases stops,throughput]

BEFORE and AFTER are checkouts of runctl (a `git worktree` of each commit); the operator of each
runs from its own `src` and with its own CRDs (applied at the start of its turn: their rules are
part of what a write costs the API server), started and stopped between turns, with this
checkout's harness. A round stops `--runs` realtime runs and 10 batch runs on each side; the sides
take turns (ABBA ...), so a machine that gets busier or quieter during the comparison weighs on
both alike. The figures are the percentiles of all rounds' stops pooled: a p99 of 500 stops says
more than the second-worst of 100 in one `python -m bench` run each. The throughput case runs
the diamond at 50 and 200 in flight in each turn: runs per minute, every client's writes per run
and the operator's CPU per run, as medians of the rounds with their ranges. Written to
results/<date>-compare-<name>.md and .json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import scenarios
from bench.harness import Bench
from bench.report import Report
from bench.systems import Runctl, run_body, step

CASES = (("realtime", None), ("batch", 10))
"""Each round's stop cases: the mode, and how many runs (None: `--runs`)."""
IN_FLIGHT = (50, 200)
"""Each round's throughput cases: diamond runs at once."""
WARM_UP = 20
"""Diamond runs each side's fresh operator runs, unmeasured, before its throughput cases."""
CRDS = ("storyruns.runctl.dev", "stepruns.runctl.dev")


def _bodies(system: Runctl, mode: str, n: int) -> list[dict[str, object]]:
    if mode == "realtime":
        return [system.long_run(f"r{i}") for i in range(n)]
    return [run_body(f"r{i}", [step("long", duration="600s")]) for i in range(n)]


def _commit(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()[:72] or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="checkout of the commit before")
    parser.add_argument("after", type=Path, help="checkout of the commit after")
    parser.add_argument("--rounds", type=int, default=5, help="turns of each side (5)")
    parser.add_argument("--runs", type=int, default=100,
                        help="realtime runs stopped at once in each turn (100)")
    parser.add_argument("--name", default="stops",
                        help="what is compared, for the results' file name (stops)")
    parser.add_argument("--cases", default="stops",
                        help="comma-separated: stops, throughput (stops)")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    if not cases or cases - {"stops", "throughput"}:
        parser.error(f"--cases: {args.cases!r} is not a list of stops and throughput")
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    for label, path in sides.items():
        if not (path / "src" / "runctl").is_dir():
            parser.error(f"{label}: {path} is not a runctl checkout (no src/runctl)")
    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {
        (side, mode): ([], []) for side in sides for mode, _ in CASES}
    rates: dict[tuple[str, int], list[tuple[float, ...]]] = {
        (side, n): [] for side in sides for n in IN_FLIGHT}
    """Per side and size, each round's runs/min, writes per run, and CPU per run: the operator's,
    the API server's, every process's."""
    out = Report()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runctl-compare-") as tmp, Bench(Path(tmp)) as b:
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                os.environ["PYTHONPATH"] = str(sides[side] / "src")
                b.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                                  str(sides[side] / "crds"))
                b.cluster.wait_established(*CRDS)
                b.start_operator()
                system = Runctl(b)
                if "throughput" in cases:
                    # Unmeasured: a fresh operator's first runs pay for what it loads lazily.
                    warm = b.namespace(f"cmp-{side}-warm-{r}")
                    scenarios.measure_runs(b, system, warm, WARM_UP)
                    b.drop_namespace(warm)
                for n in IN_FLIGHT if "throughput" in cases else ():
                    ns = b.namespace(f"cmp-{side}-tput-{n}-{r}")
                    m = scenarios.measure_runs(b, system, ns, n)
                    writes = scenarios.writes_per_run(m.before, m.after, n)
                    api, every = m.plane["kube-apiserver"], m.cpu + sum(m.plane.values())
                    rates[side, n].append((m.per_min, writes, m.cpu, api, every))
                    print(f"[compare] round {r + 1} {side} {n} in flight: {m.per_min:.0f} "
                          f"runs/min, {writes:.1f} writes/run, CPU/run {m.cpu:.4f} s operator, "
                          f"{api:.4f} s API server, {every:.4f} s every process", flush=True)
                    b.drop_namespace(ns)
                for mode, size in CASES if "stops" in cases else ():
                    n = size or args.runs
                    ns = b.namespace(f"cmp-{side}-{mode}-{r}")
                    to_terminal, pods_gone = scenarios.measure_stop(
                        b, system, ns, _bodies(system, mode, n))
                    samples[side, mode][0].extend(to_terminal)
                    samples[side, mode][1].extend(pods_gone)
                    print(f"[compare] round {r + 1} {side} {mode}: p99 "
                          f"{scenarios.percentile(to_terminal, 99):.3f} s to terminal, "
                          f"{scenarios.percentile(pods_gone, 99):.3f} s until pods gone",
                          flush=True)
                    b.drop_namespace(ns)
                b.stop_operator()
    for side, path in sides.items():
        out.record(f"{side}: commit", _commit(path), "")
    for (side, n), rounds in rates.items():
        for i, what, unit in ((0, "throughput, 5-step diamond runs", "runs/min"),
                              (1, "writes per run by every client", ""),
                              (2, "operator CPU per run", "s"),
                              (3, "API server CPU per run", "s"),
                              (4, "CPU per run, every process", "s")):
            values = sorted(r[i] for r in rounds)
            if values:
                out.record(f"{side}: {what}, {n} in flight, median of {len(values)} rounds",
                           statistics.median(values), unit,
                           note=f"range {values[0]:.4g}-{values[-1]:.4g}")
    for (side, mode), (to_terminal, pods_gone) in samples.items():
        if not to_terminal:
            continue
        n = args.runs if mode == "realtime" else 10
        label = f"{side}: stop latency, {mode}, {n} concurrent, {args.rounds} rounds pooled"
        for p in (50, 95, 99):
            out.record(f"{label}, p{p}", scenarios.percentile(to_terminal, p), "s")
        for p in (50, 99):
            out.record(f"{label}, until pods gone, p{p}", scenarios.percentile(pods_gone, p),
                       "s")
    out.write(f"compare-{args.name}", time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
