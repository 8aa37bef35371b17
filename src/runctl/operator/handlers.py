"""The kopf wiring: kopf handlers observe, workers reconcile.

An `async` `@kopf.on.event` handler per watched kind hands each event to the cache and the work
queue (`Context.event`), on the event loop, and does nothing else: no phase logic lives in a
handler. Workers take runs off the queue and reconcile them one at a time
(`reconcile.reconcile_run`: its stages, then snapshot, decide, render, apply), and act on
the `Result` it returns (look again later, or not). At start-up the first plain-JSON list of
every kind fills the cache before any worker acts, and a relist every `RUNCTL_RESYNC_SECONDS`
repairs what the watches missed. With leader election, only the leader's workers act; every
replica keeps its cache current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

import kopf

from runctl.operator import kopfconfig, kube, metrics, relist
from runctl.operator import settings as operator_settings
from runctl.operator.cache import ObjectCache, RunKey
from runctl.operator.context import Context
from runctl.operator.leader import LeaderElector
from runctl.operator.queue import WorkQueue
from runctl.operator.reconcile import reconcile_run
from runctl.operator.watched import WATCHED

log = logging.getLogger(__name__)

_ctx: Context | None = None


def context() -> Context:
    if _ctx is None:
        raise RuntimeError("the operator has not started")
    return _ctx


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _ctx
    kopfconfig.configure(settings)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
        max_workers=operator_settings.API_THREADS, thread_name_prefix="runctl-api"))
    lease = operator_settings.OPTIONS.lease
    ctx = Context.connect(cache=ObjectCache(), queue=WorkQueue(),
                          namespaces=operator_settings.OPTIONS.namespaces,
                          identity=lease.identity if lease else "")
    _ctx = ctx
    await relist.first_relist(ctx.api, ctx, ctx.namespaces)
    log.info("cache filled: %d runs, %s", len(ctx.cache.runs),
             {w.kind: ctx.cache.count(w.kind) for w in WATCHED if w.kind != "StoryRun"})
    if operator_settings.RESYNC_SECONDS > 0:
        ctx.background.append(asyncio.create_task(relist.keep_relisting(
            ctx.api, ctx, ctx.namespaces, operator_settings.RESYNC_SECONDS)))
    ctx.background.append(asyncio.create_task(_refresh_gauges(ctx)))
    if lease is None:
        await _start_workers()
    else:
        elector = LeaderElector(ctx.api, lease.namespace, lease.name, lease.identity)
        kube.fence(elector.holds)
        ctx.background.append(asyncio.create_task(
            elector.run(on_started_leading=_start_workers, on_stopped_leading=_stop_workers)))
    log.info("runctl operator started")


async def _start_workers() -> None:
    """Act: reconcile every known run, with a fixed pool of workers."""
    ctx = context()
    ctx.workers = [asyncio.create_task(_worker(ctx, i)) for i in range(operator_settings.WORKERS)]
    for key in list(ctx.cache.runs):
        ctx.queue.add(key)
    log.info("acting with %d workers", operator_settings.WORKERS)


async def _stop_workers() -> None:
    """Stop acting at once (leadership lost): in-flight reconciles are cancelled."""
    ctx = context()
    workers, ctx.workers = ctx.workers, []
    await _cancel(workers)
    log.warning("stopped acting")


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _ctx is None:
        return
    await _cancel(_ctx.workers)
    await _cancel(_ctx.background)


def _observer(kind: str) -> Callable[..., Awaitable[None]]:
    """The handler for one kind's events: the raw event's own dict goes to the cache (slimmed
    there, never copied). It returns None: kopf would write a handler's result into the
    object's status."""

    async def observe(event: dict[str, Any], **_: Any) -> None:
        context().event(kind, event["type"], event["object"])

    observe.__name__ = observe.__qualname__ = f"observe_{kind.lower()}"
    return observe


class _Resource(TypedDict):
    group: str
    version: str
    plural: str
    id: str


def _resource(kind: str) -> _Resource:
    """What kopf watches for one kind of the `watched` table, and the handler's id."""
    w = next(w for w in WATCHED if w.kind == kind)
    return {"group": w.group, "version": w.version, "plural": w.plural,
            "id": f"observe-{w.plural}"}


# The handlers that feed every reconcile, one per watched kind (a test holds them to the table).
observe_storyruns = kopf.on.event(**_resource("StoryRun"))(_observer("StoryRun"))
observe_stories = kopf.on.event(**_resource("Story"))(_observer("Story"))
observe_stepruns = kopf.on.event(**_resource("StepRun"))(_observer("StepRun"))
observe_deployments = kopf.on.event(**_resource("Deployment"))(_observer("Deployment"))
observe_pods = kopf.on.event(**_resource("Pod"))(_observer("Pod"))


async def _worker(ctx: Context, index: int) -> None:
    while True:
        key: RunKey = await ctx.queue.get()  # type: ignore[assignment]
        try:
            ctx.queue.requeue(key, await reconcile_run(ctx, key))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling %s/%s failed; retrying shortly", *key)
            ctx.queue.add_after(key, operator_settings.ERROR_REQUEUE_SECONDS)
        finally:
            ctx.queue.done(key)


async def _refresh_gauges(ctx: Context) -> None:
    """Runs and steps by phase, from the cache, for Prometheus."""
    while True:
        runs: Counter[str] = Counter()
        steps: Counter[str] = Counter()
        for run in ctx.cache.runs.values():
            status = run.get("status") or {}
            runs[status.get("phase") or "New"] += 1
            for state in (status.get("stepStates") or {}).values():
                steps[state.get("phase", "Pending")] += 1
        for gauge, counts in ((metrics.RUNS, runs), (metrics.STEPS, steps)):
            gauge.clear()
            for phase, n in counts.items():
                gauge.labels(phase=phase).set(n)
        await asyncio.sleep(5)
