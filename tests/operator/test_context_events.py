"""How watch events wake runs: a change to the run at once, a child's change after the batching
window, so changes that arrive together are reconciled (and written) once."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from runctl.api.wire import RUN_LABEL
from runctl.operator import settings
from runctl.operator.cache import ObjectCache
from runctl.operator.context import Context
from runctl.operator.queue import WorkQueue


def body(name: str, rv: int, run: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": str(rv)}
    if run:
        meta["labels"] = {RUN_LABEL: run}
    return {"metadata": meta, "spec": {}}


def test_a_run_is_woken_at_once_and_its_children_after_the_window() -> None:
    async def main() -> None:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
        ctx.event("StoryRun", "MODIFIED", body("r", 1))
        assert len(ctx.queue) == 1
        assert await ctx.queue.get() == ("ns", "r")
        ctx.queue.done(("ns", "r"))

        for rv, kind in enumerate(("StepRun", "Deployment", "Pod"), start=2):
            ctx.event(kind, "MODIFIED", body(f"{kind.lower()}-1", rv, run="r"))
        assert len(ctx.queue) == 0  # all three wait on one timer
        assert ctx.queue.timers == 1
        assert ctx.cache.get("Pod", "ns", "pod-1") is not None  # the cache is current at once
        key = await asyncio.wait_for(ctx.queue.get(), settings.BATCH_SECONDS + 5)
        assert key == ("ns", "r")
        assert len(ctx.queue) == 0  # one reconcile for the three changes

    asyncio.run(main())


def test_the_run_s_own_write_coming_back_waits_for_the_window_with_its_children() -> None:
    """The cache holds the version a status write answered with; its watch event brings
    nothing new, so it shares the batching window's one reconcile with the children's changes
    that follow the write. A version the cache does not hold (anyone's write, a stop) wakes
    the run at once."""
    async def main() -> None:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
        ctx.cache.put_run(body("r", 5))  # the answer to the operator's own status write
        ctx.event("StoryRun", "MODIFIED", body("r", 5))
        assert (len(ctx.queue), ctx.queue.timers) == (0, 1)
        ctx.event("Pod", "MODIFIED", body("pod-1", 6, run="r"))
        assert ctx.queue.timers == 1  # one timer for both
        assert await asyncio.wait_for(ctx.queue.get(), settings.BATCH_SECONDS + 5) == ("ns", "r")
        ctx.queue.done(("ns", "r"))
        assert (len(ctx.queue), ctx.queue.timers) == (0, 0)

        ctx.event("StoryRun", "MODIFIED", body("r", 7))  # a version not seen before
        assert len(ctx.queue) == 1

    asyncio.run(main())


def test_a_deleted_child_wakes_its_run_and_leaves_a_tombstone() -> None:
    async def main() -> None:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
        ctx.event("Pod", "ADDED", body("p", 1, run="r"))
        ctx.event("Pod", "DELETED", body("p", 2, run="r"))
        assert ctx.cache.was_deleted("Pod", "ns", "p")
        assert await asyncio.wait_for(ctx.queue.get(), settings.BATCH_SECONDS + 5) == ("ns", "r")

    asyncio.run(main())


def test_a_child_of_a_run_being_stopped_wakes_it_at_once() -> None:
    async def main() -> None:
        ctx = Context(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
        run = body("r", 1)
        run["spec"] = {"cancelRequested": True}
        run["status"] = {"phase": "Stopping"}
        ctx.cache.put_run(run)
        ctx.event("Pod", "DELETED", body("p", 2, run="r"))
        assert len(ctx.queue) == 1  # the stop ends as soon as its pods are gone
        assert ctx.queue.timers == 0
        stopped = body("r", 3)
        stopped["spec"] = {"cancelRequested": True}
        stopped["status"] = {"phase": "Canceled"}
        ctx.cache.put_run(stopped)
        await ctx.queue.get()
        ctx.event("Pod", "MODIFIED", body("p2", 4, run="r"))
        assert ctx.queue.timers == 1  # a finished run's clean-up is not urgent

    asyncio.run(main())
