"""The kopf wiring: watch events fill the cache and enqueue the run they concern; workers reconcile.

No handler here decides anything about a lifecycle. Each one records what it saw and names the
run to look at again; `reconcile.reconcile_run` observes, asks `runctl.machine.decide`, applies.
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
from runctl.operator.cache import RUN_LABEL, ObjectCache, RunKey
from runctl.operator.context import Context
from runctl.operator.leader import LeaderElector
from runctl.operator.queue import WorkQueue
from runctl.operator.reconcile import reconcile_run

log = logging.getLogger(__name__)

GROUP, VERSION = "runctl.dev", "v1alpha1"
CHILD_KINDS = {
    "StepRun": (GROUP, VERSION, "stepruns"),
    "Job": ("batch", "v1", "jobs"),
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
}
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
    await ctx.prime_cache()
    _ctx = ctx
    ctx.background.append(asyncio.create_task(_refresh_gauges(ctx)))
    if operator_settings.RESYNC_SECONDS > 0:
        ctx.background.append(asyncio.create_task(_resync(ctx, operator_settings.RESYNC_SECONDS)))
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


async def _resync(ctx: Context, every: float) -> None:
    """The sweep: list everything again now and then, correct the cache where a watch missed an
    event, and reconcile every run. Its writes are as conditional as any other (each names the
    resourceVersion it decided on), so a step that finished meanwhile is never marked Lost."""
    while True:
        await asyncio.sleep(every)
        try:
            corrected = await ctx.resync()
        except Exception:
            log.exception("resync failed; trying again in %ss", every)
            continue
        if corrected:
            log.warning("resync corrected %d cached objects a watch had missed", corrected)
        for key in list(ctx.cache.runs):
            ctx.queue.add(key)
        for key in list(ctx.cache.deleted_runs):
            if ctx.cache.children("StepRun", key):
                ctx.queue.add(key)


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


@kopf.on.event(GROUP, VERSION, "storyruns")
def storyrun_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    ctx = context()
    key = ctx.cache.drop_run(body) if type == "DELETED" else ctx.cache.put_run(body)
    ctx.queue.add(key)


def _child_event(kind: str) -> Any:
    def handler(type: str | None, body: kopf.Body, **_: Any) -> None:
        ctx = context()
        run = ctx.cache.drop(kind, body) if type == "DELETED" else ctx.cache.put(kind, body)
        if run is not None:
            ctx.queue.add(run)
    handler.__name__ = f"{kind.lower()}_event"
    return handler


for _kind, (_group, _version, _plural) in CHILD_KINDS.items():
    kopf.on.event(_group, _version, _plural, labels={RUN_LABEL: kopf.PRESENT},
                  id=f"{_kind.lower()}-event")(_child_event(_kind))
