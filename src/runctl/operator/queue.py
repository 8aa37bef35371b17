"""A keyed work queue: every event on a run or its children enqueues the run's key.

The same key is never handed to two workers at once, and a key added while it is being worked on
is handed out again once that work is done, so the latest observation is always reconciled
(level-triggered) without reconciling one run concurrently with itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """What a reconcile asks of the queue once it is done, as controller-runtime's
    `Result{RequeueAfter}`: the reconcile decides, the worker acts (`WorkQueue.requeue`)."""

    requeue_after: float | None = None
    """Look at the key again after this many seconds (at once if 0); None: only when woken."""
    forget: bool = False
    """The key needs no more work (its run is gone): drop a pending look."""


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Enqueue `key` after `delay` seconds; an earlier pending timer for it wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Hashable:
        key = await self._ready.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def requeue(self, key: Hashable, result: Result) -> None:
        """Act on what the reconcile of `key` asked."""
        if result.forget:
            self.forget(key)
        if result.requeue_after is not None:
            self.add_after(key, result.requeue_after)

    def forget(self, key: Hashable) -> None:
        """Drop a pending timer for a key that needs no more work (a finished, cleaned-up run)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def __len__(self) -> int:
        return self._ready.qsize()

    @property
    def timers(self) -> int:
        return len(self._timers)
