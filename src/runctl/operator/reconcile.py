"""One reconcile of one run: observe (from the cache), decide (pure), apply (API calls).

Level-triggered: whatever event woke it, a reconcile looks at everything about the run again, so
a missed or reordered event only delays the right outcome, never changes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from runctl.machine.decide import decide
from runctl.machine.phases import RUN_TERMINAL, Mode
from runctl.operator import apply as applying
from runctl.operator import metrics, serialize
from runctl.operator.cache import STEP_LABEL, RunKey, owned_by
from runctl.operator.context import Context
from runctl.timefmt import parse_time
from runctl.workloads import build
from runctl.workloads import observe as reading

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def mine(workload: dict[str, Any] | None, steprun_uid: str) -> dict[str, Any] | None:
    """The workload if it belongs to this StepRun (not to an earlier one of the same name)."""
    if workload is None:
        return None
    return workload if owned_by(workload, steprun_uid) else None


def observe(ctx: Context, key: RunKey, run: Mapping[str, Any]) -> Any:
    """Everything the core needs to know about one run, from the cache alone."""
    from runctl.machine import model as m

    ns, name = key
    spec = serialize.run_spec(run["spec"])
    status = serialize.parse_run_status(run.get("status"))
    run_uid = run["metadata"].get("uid")
    pods_by_steprun: dict[str, list[dict[str, Any]]] = {}
    for pod in ctx.cache.children("Pod", key):
        uid = pod["metadata"]["labels"].get(build.STEPRUN_UID_LABEL, "")
        pods_by_steprun.setdefault(uid, []).append(pod)

    step_runs: dict[str, Any] = {}
    seen: set[str] = set()
    for sr in ctx.cache.children("StepRun", key):
        if not owned_by(sr, run_uid):
            continue  # a StepRun of an earlier run of the same name, on its way out
        step = sr["metadata"]["labels"].get(STEP_LABEL, "")
        seen.add(step)
        sr_uid = sr["metadata"]["uid"]
        sr_status = serialize.parse_steprun_status(sr.get("status"))
        pods = pods_by_steprun.get(sr_uid, [])
        attempt: Any
        if spec.mode is Mode.REALTIME:
            sr_name = sr["metadata"]["name"]
            attempt = reading.observe_deployment(
                mine(ctx.cache.get("Deployment", ns, sr_name), sr_uid), pods,
                ctx.cache.was_deleted("Deployment", ns, sr_name, sr_uid))
        else:
            number = max(1, sr_status.attempts if sr_status else 1)
            job = build.job_name(sr["metadata"]["name"], number)
            attempt = reading.observe_job(
                number, mine(ctx.cache.get("Job", ns, job), sr_uid),
                [p for p in pods
                 if p["metadata"]["labels"].get(build.ATTEMPT_LABEL) == str(number)],
                ctx.cache.was_deleted("Job", ns, job, sr_uid))
        step_runs[step] = m.StepRunObservation(
            name=sr["metadata"]["name"],
            status=sr_status,
            deleting=bool(sr["metadata"].get("deletionTimestamp")),
            gone=False,
            attempt=attempt,
        )
    for step, state in m.step_state_items(status):
        if step in seen or not state.step_run:
            continue
        if ctx.cache.was_deleted("StepRun", ns, state.step_run, run_uid):
            step_runs[step] = m.StepRunObservation(
                name=state.step_run, status=None, deleting=True, gone=True, attempt=None)

    conditions = (run.get("status") or {}).get("conditions") or ()
    return m.Observed(
        run_name=name,
        generation=run["metadata"].get("generation", 1),
        created_at=parse_time(run["metadata"].get("creationTimestamp")),
        spec=spec,
        status=status,
        step_runs=m.frozen_step_runs(step_runs.items()),
        topology_terminated=any(c.get("type") == "TopologyTerminated"
                                and c.get("status") == "True" for c in conditions),
        cancel_requested_at=serialize.cancel_requested_at(run) if spec.cancel_requested
        else None,
    )


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
    observed = observe(ctx, key, run)
    decision = decide(observed, now)
    was_terminal = observed.status.phase in RUN_TERMINAL
    result = await applying.apply(ctx, key, run, decision, now)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    for note in result.notes:
        log.warning("%s/%s: %s", *key, note)
    if not was_terminal and decision.status.phase in RUN_TERMINAL and not result.retry_soon:
        stop = decision.status.stop
        if stop is not None and stop.observed_at is not None:
            metrics.STOP_LATENCY.observe(max(0.0, (now - stop.observed_at).total_seconds()))
    if result.retry_soon:
        ctx.queue.add_after(key, applying.CONFLICT_REQUEUE_SECONDS)
    elif decision.requeue_at is not None:
        ctx.queue.add_after(key, max(0.0, (decision.requeue_at - _now()).total_seconds()))
