"""One reconcile of one run: snapshot (from the cache), decide (pure), apply (API calls).

Level-triggered: whatever event woke it, a reconcile looks at everything about the run again, so
a missed or reordered event only delays the right outcome, never changes it.
"""

from __future__ import annotations

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
from runctl.operator import metrics, resolve
from runctl.operator.cache import RunKey, owned_by
from runctl.operator.context import Context
from runctl.operator.snapshot import snapshot

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def release_orphans(ctx: Context, key: RunKey, run: Mapping[str, Any] | None) -> None:
    """Let go of the StepRuns of a run whose deletion was seen (or that was created again under
    the same name): there is no record left to keep their final state in, and the garbage
    collector removes them and their workloads once the finalizer is off."""
    if run is None and key not in ctx.cache.deleted_runs:
        return  # not seen yet, which is not evidence of deletion
    uid = run["metadata"].get("uid") if run is not None else None
    left = ctx.cache.children("StepRun", key)
    for sr in left:
        if uid is None or not owned_by(sr, uid):
            await applying.remove_finalizer(ctx, sr, applying.Applied())
    if run is None and not left:
        ctx.cache.deleted_runs.discard(key)  # nothing of it left to let go


async def reconcile_run(ctx: Context, key: RunKey) -> None:
    run = ctx.cache.runs.get(key)
    await release_orphans(ctx, key, run)
    if run is None:
        ctx.queue.forget(key)
        return
    started = time.perf_counter()
    now = _now()
    definition = resolve.definition(ctx.cache, run, now)
    if definition.record is not None:
        # Resolved just now: recorded before anything starts, then run from the record only.
        written = await applying.write_record(ctx, key, run, definition.record)
        if written.retry_soon:
            ctx.queue.add_after(key, applying.CONFLICT_REQUEUE_SECONDS)
            return
        run = ctx.cache.runs.get(key) or run
        definition = resolve.definition(ctx.cache, run, now)
    source = wire.rerun_of(run["spec"])
    if source is not None and (run["metadata"].get("labels") or {}).get(RERUN_LABEL) != source:
        await applying.label_rerun(ctx, key, run, source)
        run = ctx.cache.runs.get(key) or run
    observed = snapshot(ctx.cache, key, run, definition)
    decision = decide(observed, now)
    was_terminal = observed.status.phase in RUN_TERMINAL
    result = await applying.apply(ctx, key, run, decision, now, definition)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    for note in result.notes:
        log.warning("%s/%s: %s", *key, note)
    if not was_terminal and decision.status.phase in RUN_TERMINAL and not result.retry_soon:
        stop = decision.status.stop
        if stop is not None and stop.observed_at is not None:
            metrics.STOP_LATENCY.observe(max(0.0, (now - stop.observed_at).total_seconds()))
    if result.forbidden:
        ctx.queue.add_after(key, applying.FORBIDDEN_REQUEUE_SECONDS)
    elif result.retry_soon:
        ctx.queue.add_after(key, applying.CONFLICT_REQUEUE_SECONDS)
    elif decision.requeue_at is not None:
        ctx.queue.add_after(key, max(0.0, (decision.requeue_at - _now()).total_seconds()))
