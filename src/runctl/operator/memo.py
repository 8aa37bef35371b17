"""What the operator remembers between reconciles, each store bounded.

A StoryRun's spec changes only with its generation (cancelRequested included), while a run is
reconciled far more often than that: what is read or checked from the spec alone is done once
per generation, not at every reconcile. What the API server refused is remembered too, so the
same write or create is not sent again. Every such memory is keyed by objects that come and go,
so each keeps a bounded number of entries and forgets the oldest first (runs long gone).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

KEPT = 10_000
"""Entries a store keeps, oldest forgotten first."""


class Bounded(Generic[K, T]):
    """A mapping of at most `kept` entries: a new key beyond that forgets the oldest one (and
    tells `forgotten`, so an index kept beside it forgets it too). A key stored again keeps
    its place (it was first seen then)."""

    def __init__(self, kept: int = KEPT,
                 forgotten: Callable[[K, T], None] | None = None) -> None:
        self._kept = kept
        self._forgotten = forgotten
        self._values: OrderedDict[K, T] = OrderedDict()

    def get(self, key: K) -> T | None:
        return self._values.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __setitem__(self, key: K, value: T) -> None:
        self._values[key] = value
        while len(self._values) > self._kept:
            old, was = self._values.popitem(last=False)
            if self._forgotten is not None:
                self._forgotten(old, was)

    def __getitem__(self, key: K) -> T:
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)


class PerGeneration(Generic[T]):
    def __init__(self) -> None:
        self._values: Bounded[tuple[str, int], T] = Bounded()

    def get(self, run: Mapping[str, Any], compute: Callable[[], T]) -> T:
        """The value for this generation of `run`, computed at its first request. A run with
        no uid (never stored) is computed every time."""
        meta = run["metadata"]
        if not meta.get("uid"):
            return compute()
        key = (str(meta["uid"]), int(meta.get("generation", 0)))
        if key not in self._values:
            self._values[key] = compute()
        return self._values[key]
