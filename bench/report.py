"""The figures a bench run measured: printed as they come, written to bench/results at the end.

Printed at once so a long run shows its progress (and what it had measured when it failed);
written as Markdown to read and JSON to compare runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

from runctl.devcluster.cluster import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"


class Report:
    def __init__(self) -> None:
        self.figures: list[dict[str, Any]] = []

    def record(self, name: str, value: float | str, unit: str, target: str = "",
               met: bool | None = None, note: str = "") -> None:
        """One figure; `met` is None for a figure with no target to meet."""
        self.figures.append({"name": name, "value": value, "unit": unit, "target": target,
                             "met": met, "note": note})
        shown = f"{value:.3g}" if isinstance(value, float) else value
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"  {name}: {shown} {unit}  {target} {verdict} {note}".rstrip(), flush=True)

    def write(self, size: str, seconds: float,
              where: str = "local control plane with kwok") -> None:
        """results/<date>-<size>.md and .json; a second run of the same size that day replaces
        them. `where`: what the figures were measured on."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        base = RESULTS / f"{stamp}-{size}"
        machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
        base.with_suffix(".json").write_text(json.dumps(
            {"date": stamp, "size": size, "machine": machine, "seconds": round(seconds),
             "figures": self.figures}, indent=2) + "\n")
        lines = [f"# runctl benchmarks, {stamp} ({size})", "",
                 f"{machine}; {where}; harness took {seconds:.0f} s.", "",
                 "| figure | value | unit | target | |", "| --- | --- | --- | --- | --- |"]
        for f in self.figures:
            value = f"{f['value']:.3g}" if isinstance(f["value"], float) else f["value"]
            verdict = "" if f["met"] is None else ("met" if f["met"] else "**missed**")
            lines.append(f"| {f['name']} | {value} | {f['unit']} | {f['target']} | {verdict} |")
        base.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print(f"[bench] wrote {base}.md and .json ({seconds:.0f} s)")
