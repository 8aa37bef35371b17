"""Values computed from a run's spec, kept per generation.

A StoryRun's spec changes only with its generation (cancelRequested included), while a run is
reconciled far more often than that: what is read or checked from the spec alone is done once
per generation, not at every reconcile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

KEPT = 10_000
"""Generations remembered, oldest forgotten first (runs long gone)."""


class PerGeneration(Generic[T]):
    def __init__(self) -> None:
        self._values: OrderedDict[tuple[str, int], T] = OrderedDict()

    def get(self, run: Mapping[str, Any], compute: Callable[[], T]) -> T:
        """The value for this generation of `run`, computed at its first request. A run with
        no uid (never stored) is computed every time."""
        meta = run["metadata"]
        if not meta.get("uid"):
            return compute()
        key = (str(meta["uid"]), int(meta.get("generation", 0)))
        if key not in self._values:
            self._values[key] = compute()
            while len(self._values) > KEPT:
                self._values.popitem(last=False)
        return self._values[key]
