"""The kopf wiring: start-up and clean-up of the informers, the workers and the leader election.

Informers (`runctl.operator.informer`) fill the cache and enqueue the run an event concerns;
workers reconcile. Nothing here decides anything about a lifecycle: `reconcile.reconcile_run`
observes, asks `runctl.machine.decide`, applies. kopf runs the process (signals, liveness probe,
admission webhook); it watches nothing itself, so no event pays for its per-object machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from runctl.operator import metrics
from runctl.operator import settings as operator_settings
from runctl.operator.cache import ObjectCache, RunKey
from runctl.operator.context import Context
from runctl.operator.leader import LeaderElector
from runctl.operator.queue import WorkQueue
from runctl.operator.reconcile import reconcile_run

log = logging.getLogger(__name__)

_ctx: Context | None = None


def context() -> Context:
    if _ctx is None:
        raise RuntimeError("the operator has not started")
    return _ctx


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _ctx
    operator_settings.configure(settings)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
        max_workers=operator_settings.API_THREADS, thread_name_prefix="runctl-api"))
    ctx = Context.connect(cache=ObjectCache(), queue=WorkQueue(),
                          namespaces=operator_settings.OPTIONS.namespaces)
    _ctx = ctx
    ctx.start_informers(operator_settings.RESYNC_SECONDS)
    await ctx.informers_synced()
    ctx.background.append(asyncio.create_task(_refresh_gauges(ctx)))
    lease = operator_settings.OPTIONS.lease
    if lease is None:
        await _start_workers()
    else:
        elector = LeaderElector(ctx.api, lease.namespace, lease.name, lease.identity)
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
    _ctx.stop_informers()
    await _cancel(_ctx.workers)
    await _cancel(_ctx.background)


async def _worker(ctx: Context, index: int) -> None:
    while True:
        key: RunKey = await ctx.queue.get()  # type: ignore[assignment]
        try:
            await reconcile_run(ctx, key)
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
