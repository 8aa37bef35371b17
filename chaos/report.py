"""A chaos run's figures: a summary of what ran, what broke and what the checker found, as
Markdown to read and JSON to compare runs (chaos/results/<date>-seed<seed>.md and .json)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.checker import RUN_TERMINAL, counts
from chaos.faults import KINDS
from chaos.harness import Outcome

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = (*sorted(RUN_TERMINAL), "not terminal")


def summary(out: Outcome) -> dict[str, Any]:
    by_kind: dict[str, Counter[str]] = {}
    for r in out.runs:
        phase = out.phases.get(r.name, "")
        by_kind.setdefault(r.kind, Counter())[phase if phase in RUN_TERMINAL
                                             else "not terminal"] += 1
    violations = counts(out.violations)
    injected = Counter(d.kind for d in out.done)
    missed = Counter(d.kind for d in out.done if not d.hit)
    return {
        "seed": out.seed, "runs": len(out.runs), "seconds": round(out.seconds),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "runs_by_kind": {k: dict(v) for k, v in by_kind.items()},
        "faults_by_kind": {k: injected.get(k, 0) for k in KINDS},
        "found_nothing_by_kind": {k: missed.get(k, 0) for k in KINDS},
        "recovery_seconds": out.recovery,
        "violations_by_invariant": violations,
        "stuck_runs": violations["not-stuck"],
        "duplicate_stepruns": violations["one-steprun-per-step"],
        "duplicate_pods": violations["one-pod-per-attempt"],
        "watch_breaks": out.watch_breaks,
        "orphan_pods": len(out.orphans),
        "orphans": [v.detail for v in out.orphans[:50]],
        "faults": [{"at": round(d.started - out.done[0].started, 1) if out.done else 0,
                    "kind": d.kind, "seconds": round(d.ended - d.started, 1),
                    "detail": d.detail} for d in out.done],
        "violations": [{"invariant": v.invariant, "subject": v.subject, "detail": v.detail}
                       for v in out.violations[:200]],
    }


def markdown(s: dict[str, Any], stamp: str) -> str:
    lines = [f"# runctl under faults, {stamp} (seed {s['seed']})", "",
             f"{s['machine']}; local control plane with kwok, two operator replicas electing "
             f"a leader; {s['runs']} runs, {len(s['faults'])} faults; took {s['seconds']} s. "
             f"Reproduce: `make chaos CHAOS_ARGS='--seed {s['seed']} --runs {s['runs']}'`.",
             "", "## Runs by kind and outcome", "",
             "| kind | " + " | ".join(PHASES) + " |", "| --- |" + " --- |" * len(PHASES)]
    for kind, phases in s["runs_by_kind"].items():
        lines.append(f"| {kind} | " + " | ".join(str(phases.get(p, 0)) for p in PHASES) + " |")
    lines += ["", "## Faults by kind", "",
              "| fault | injected | found nothing | longest from the fault to an affected run "
              "moving again |", "| --- | --- | --- | --- |"]
    for kind, n in s["faults_by_kind"].items():
        took = s["recovery_seconds"].get(kind)
        lines.append(f"| {kind} | {n} | {s['found_nothing_by_kind'][kind]} | "
                     f"{'' if took is None else f'{took} s'} |")
    lines += ["", "## Violations by invariant (target: 0 each)", "", "| invariant | violations |",
              "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in s["violations_by_invariant"].items()]
    lines += ["", f"Stuck runs: {s['stuck_runs']}. Duplicate StepRuns: "
              f"{s['duplicate_stepruns']}. Duplicate pods (a batch attempt's workload): "
              f"{s['duplicate_pods']}.", "",
              f"Pods a ReplicaSet made after its Deployment had been deleted, live past the "
              f"grace period (Kubernetes' Deployment controller on a stale view after an API "
              f"server restart; docs/API.md, guarantee 8; not counted above): "
              f"{s['orphan_pods']}.", "", "## Faults in order", "",
              "| at (s) | fault | took (s) | what |", "| --- | --- | --- | --- |"]
    lines += [f"| {f['at']} | {f['kind']} | {f['seconds']} | {f['detail']} |"
              for f in s["faults"]]
    if s["violations"]:
        lines += ["", "## Violations", ""]
        lines += [f"- {v['invariant']}: {v['subject']}: {v['detail']}" for v in s["violations"]]
    return "\n".join(lines) + "\n"


def write(out: Outcome, results: Path = RESULTS) -> Path:
    """Write the run's .md and .json; return the Markdown's path."""
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    s = summary(out)
    base = results / f"{stamp}-seed{out.seed}"
    base.with_suffix(".json").write_text(json.dumps({"date": stamp, **s}, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(s, stamp))
    return base.with_suffix(".md")
