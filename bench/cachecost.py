"""What the operator's cache costs a deletion it sees, by how many tombstones it holds.

    python -m bench.cachecost

The cache keeps a tombstone for every deletion it saw for an hour (`TOMBSTONE_TTL`): at a few
hundred diamond runs a minute that is hundreds of thousands of pods and StepRuns. Every deletion
seen also expires the tombstones past their hour, on the event path, so its cost must not grow
with how many are held. No control plane: the cache alone, with the clock it reads moved on so
that each deletion expires the oldest tombstone. Written to results/<date>-cachecost.md and .json.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from unittest import mock

from bench.report import Report
from runctl.operator.cache import TOMBSTONE_TTL, ObjectCache

HELD = (1_000, 10_000, 100_000, 300_000)
DELETIONS = 2_000


def pod(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"p{i}", "namespace": "ns", "resourceVersion": str(i),
                         "labels": {"runctl.dev/storyrun": f"r{i // 5}"},
                         "ownerReferences": [{"uid": f"u{i // 5}"}]}}


def microseconds_per_deletion(held: int) -> float:
    """Hold `held` tombstones, one a millisecond apart, then see DELETIONS more deletions, each
    an hour after the oldest tombstone still held."""
    clock = [0.0]

    def now() -> float:
        return clock[0]

    with mock.patch("runctl.operator.cache.time.monotonic", new=now):
        cache = ObjectCache()
        for i in range(held):
            clock[0] = i / 1000
            cache.drop("Pod", pod(i))
        began = time.perf_counter()
        for i in range(held, held + DELETIONS):
            clock[0] = TOMBSTONE_TTL + (i - held) / 1000
            cache.drop("Pod", pod(i))
        return (time.perf_counter() - began) / DELETIONS * 1e6


def main() -> int:
    out = Report()
    began = time.monotonic()
    for held in HELD:
        out.record(f"cache: a deletion seen, {held:,} tombstones held",
                   microseconds_per_deletion(held), "us")
    out.write("cachecost", time.monotonic() - began, where="the operator's cache alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
