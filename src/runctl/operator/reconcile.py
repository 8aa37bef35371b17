"""One reconcile of one run, in named stages, returning when to look at the run again.

1. `release_orphans`: let go of the StepRuns of a run deleted (or created again under its name).
2. `record`: a run of a Story (or a re-run) resolved just now writes its record of what it
   executes, before anything of it starts; from then on it runs from the record only.
3. `label`: a re-run is labelled with the run it re-runs.
4. snapshot (from the cache), decide (pure), render (pure) and apply (API calls).

The verdict is a `Result` (as controller-runtime's `Result{RequeueAfter}`) the worker acts on:
a reconcile never requeues itself. Level-triggered: whatever event woke it, a reconcile looks at
everything about the run again, so a missed or reordered event only delays the right outcome,
never changes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from runctl.api import wire
from runctl.api.wire import RERUN_LABEL
from runctl.machine.decide import decide
from runctl.machine.phases import RUN_TERMINAL
from runctl.operator import apply as applying
from runctl.operator import metrics, render, resolve
from runctl.operator.apply import Retry
from runctl.operator.cache import RunKey, owned_by
from runctl.operator.context import Context
from runctl.operator.queue import Result
from runctl.operator.snapshot import snapshot

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def reconcile_run(ctx: Context, key: RunKey) -> Result:
    run: Obj | None = ctx.cache.runs.get(key)
    orphans = await release_orphans(ctx, key, run)
    if run is None:
        return Result(forget=True) if orphans is Retry.NONE else Result(orphans.seconds)
    started = time.perf_counter()
    now = _now()
    definition = resolve.definition(ctx.cache, run, now)
    if definition.record is not None:
        recorded = await record(ctx, key, run, definition.record)
        if recorded is None:
            return Result(Retry.SOON.seconds)
        run, definition = recorded, resolve.definition(ctx.cache, recorded, now)
    run = await label(ctx, key, run)
    observed = snapshot(ctx.cache, key, run, definition)
    decision = decide(observed, now)
    was_terminal = observed.status.phase in RUN_TERMINAL
    applied = await applying.apply(ctx, key, run, decision,
                                   render.step_runs(run, definition, observed, decision), now)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    for note in applied.notes:
        log.warning("%s/%s: %s", *key, note)
    if not was_terminal and decision.status.phase in RUN_TERMINAL and not applied.landed_short:
        stop = decision.status.stop
        if stop is not None and stop.observed_at is not None:
            metrics.STOP_LATENCY.observe(max(0.0, (now - stop.observed_at).total_seconds()))
    return Result(requeue_after(max(orphans, applied.retry), decision.requeue_at, _now()))


def requeue_after(retry: Retry, requeue_at: dt.datetime | None,
                  now: dt.datetime) -> float | None:
    """When to look at the run again: soon (or later) if a write did not land, else when the
    decision asked (a timer: a retry's backoff, a grace period, a deadline), else only when an
    event wakes it."""
    if retry is not Retry.NONE:
        return retry.seconds
    if requeue_at is not None:
        return max(0.0, (requeue_at - now).total_seconds())
    return None


async def release_orphans(ctx: Context, key: RunKey, run: Obj | None) -> Retry:
    """Let go of the StepRuns of a run whose deletion was seen (or that was created again under
    the same name): there is no record left to keep their final state in, and the garbage
    collector removes them and their workloads once the finalizer is off. A finalizer not
    removed asks for a retry."""
    if run is None and key not in ctx.cache.deleted_runs:
        return Retry.NONE  # not seen yet, which is not evidence of deletion
    uid = run["metadata"].get("uid") if run is not None else None
    left = ctx.cache.children("StepRun", key)
    orphans = [sr for sr in left if uid is None or not owned_by(sr, uid)]
    released: list[applying.Outcome] = []
    step = applying.AT_ONCE
    for at in range(0, len(orphans), step):
        released += await asyncio.gather(*(applying.remove_finalizer(ctx, sr)
                                           for sr in orphans[at:at + step]))
    if run is None and not left:
        ctx.cache.deleted_runs.discard(key)  # nothing of it left to let go
    return applying.Applied.of(released).retry


async def record(ctx: Context, key: RunKey, run: Obj, what: Obj) -> Obj | None:
    """Write the run's record (resolved just now); the run as the cache holds it then, or None
    if the record was not written (it is resolved again soon)."""
    written = await applying.write_record(ctx, key, run, what)
    if written.retry is not Retry.NONE:
        log.warning("%s/%s: %s", *key, written.note)
        return None
    return ctx.cache.runs.get(key) or run


async def label(ctx: Context, key: RunKey, run: Obj) -> Obj:
    """Label a re-run with its source if it lacks the label; the run as the cache holds it."""
    source = wire.rerun_of(run["spec"])
    if source is None or (run["metadata"].get("labels") or {}).get(RERUN_LABEL) == source:
        return run
    await applying.label_rerun(ctx, key, source)
    return ctx.cache.runs.get(key) or run
