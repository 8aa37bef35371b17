"""Carry out a decision: the only place that turns `runctl.machine` actions into API calls.

Order matters only for what a crash in the middle could leave behind, so children are written
first and the run's status last: a restarted operator that finds a StepRun the status does not
mention yet just adopts it (deterministic names). A StepRun create the API server did not
confirm stops the apply before the run's status is written, so a status never names a StepRun
that was not created (and should one anyway, the core creates it again). Events are posted only
once the run's status write succeeded (or when the status needed no write), so a conflict (and
the re-decision it causes) never posts an Event twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from runctl.api import wire
from runctl.api.wire import (
    API_VERSION,
    ATTEMPT_LABEL,
    FINALIZER,
    GROUP,
    RERUN_LABEL,
    STEP_LABEL,
    STORY_RUNS,
    VERSION,
)
from runctl.flow import inputs
from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision
from runctl.operator import kube
from runctl.operator.cache import (
    RunKey,
    owned_by,
    resource_version,
)
from runctl.operator.context import Context
from runctl.operator.events import event_for
from runctl.operator.resolve import Definition, produced, recorded, rendered
from runctl.workloads import build

log = logging.getLogger(__name__)

CONFLICT_REQUEUE_SECONDS = 0.2
FORBIDDEN_REQUEUE_SECONDS = 10.0
"""How soon a create that was forbidden (RBAC, a quota) is tried again: it may be allowed once
someone grants the right or frees the quota, as Kubernetes' own controllers assume."""
REFUSALS_KEPT = 10_000


@dataclass
class Applied:
    """What applying a decision ran into, for the caller to requeue on."""

    retry_soon: bool = False
    forbidden: bool = False
    """A create was forbidden: try again later rather than soon."""
    notes: list[str] = field(default_factory=list)


async def write_record(ctx: Context, key: RunKey, run: Mapping[str, Any],
                       record: Mapping[str, Any]) -> Applied:
    """Write a run's record of the Story it executes (`status.story`, `status.resolved`), once,
    before anything of it starts: conditional on the run's resourceVersion, so two writers
    never record two versions; the API server refuses any change to it afterwards."""
    result = Applied()
    patch = {"metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
             "status": dict(record)}
    res = await kube.call("patch", "storyruns/status",
                          ctx.custom.patch_namespaced_custom_object_status,
                          GROUP, VERSION, key[0], STORY_RUNS, key[1], patch)
    if res.outcome is kube.Outcome.OK:
        if resource_version(res.body) > resource_version(ctx.cache.runs.get(key)):
            ctx.cache.put_run(res.body)
    elif res.outcome is not kube.Outcome.GONE:
        result.retry_soon = True
        result.notes.append(f"the run's record was not written ({res.outcome}: "
                            f"{res.message}); resolving again")
    return result


async def label_rerun(ctx: Context, key: RunKey, run: Mapping[str, Any], source: str) -> None:
    """Label a re-run with the run it re-runs, whoever created it, so `kubectl get sr -l
    runctl.dev/rerun-of=SOURCE` lists it. The one write runctl makes to a run outside its
    status (never its spec); a failure is tried again at the run's next reconcile."""
    patch = {"metadata": {"labels": {RERUN_LABEL: source}}}
    res = await kube.call("patch", "storyruns", ctx.custom.patch_namespaced_custom_object,
                          GROUP, VERSION, key[0], STORY_RUNS, key[1], patch)
    if res.outcome is kube.Outcome.OK:
        if resource_version(res.body) > resource_version(ctx.cache.runs.get(key)):
            ctx.cache.put_run(res.body)
    elif res.outcome is not kube.Outcome.GONE:
        log.warning("%s/%s: label %s=%s not written (%s: %s)", *key, RERUN_LABEL, source,
                    res.outcome, res.message)


async def apply(ctx: Context, key: RunKey, run: Mapping[str, Any], decision: Decision,
                now: dt.datetime, definition: Definition) -> Applied:
    ns, name = key
    result = Applied()
    run_uid = run["metadata"].get("uid")
    step_runs = {sr["metadata"]["labels"][STEP_LABEL]: sr
                 for sr in ctx.cache.children("StepRun", key) if owned_by(sr, run_uid)}
    events: list[act.EmitEvent] = []

    for action in decision.actions:
        match action:
            case act.WriteStepRunStatus(step=step, status=status):
                sr = step_runs.get(step)
                if sr is not None:
                    await write_steprun_status(ctx, sr, wire.steprun_status(status), result)
            case act.CreateStepRun(step=step, name=sr_name, deadline=deadline):
                outputs = produced(run, definition, recorded(
                    {s: wire.parse_steprun_status(sr.get("status"))
                     for s, sr in step_runs.items()}),
                    dict(m.step_state_items(decision.status)))
                step_spec = rendered(definition.step(run, step), definition.params, outputs,
                                     definition.facts)
                body = wire.new_steprun(
                    run, step_spec, definition.mode(run, step), sr_name, deadline,
                    inputs.inputs_digest(step_spec, definition.params, outputs,
                                         definition.facts))
                res = await kube.call("create", "stepruns",
                                      ctx.custom.create_namespaced_custom_object,
                                      GROUP, VERSION, ns, "stepruns", body)
                if res.outcome is kube.Outcome.OK:
                    ctx.cache.put("StepRun", res.body)
                    step_runs[step] = res.body
                elif res.outcome is kube.Outcome.EXISTS and step not in step_runs:
                    # Either not in the cache yet, or a StepRun of an earlier run of this name
                    # still on its way out: record nothing until ours is seen.
                    result.retry_soon = True
                    result.notes.append(f"StepRun {sr_name} exists but is not yet seen as "
                                        "this run's; waiting")
                    return result
                elif not res.ok:
                    # Not confirmed by the API server: a status naming it would record as
                    # started a step that has no StepRun, so nothing is recorded this time.
                    await _not_created(ctx, run, "StepRun", sr_name, run_uid, res, now, result)
                    result.notes.append(f"StepRun {sr_name} not created ({res.outcome}: "
                                        f"{res.message}); the status waits for it")
                    return result
            case act.StartAttempt(step=step, attempt=attempt):
                sr = step_runs.get(step)
                if sr is None:
                    result.retry_soon = True
                    continue
                await _start_attempt(ctx, sr, attempt, now, result)
            case act.StopWorkload(step=step, grace_seconds=grace):
                await _stop_workloads(ctx, ns, name, step, grace)
            case act.DeleteStepRun(step=step):
                sr = step_runs.get(step)
                if sr is not None:
                    await kube.call("delete", "stepruns",
                                    ctx.custom.delete_namespaced_custom_object,
                                    GROUP, VERSION, ns, "stepruns", sr["metadata"]["name"],
                                    propagation_policy="Background")
            case act.RemoveFinalizer(step=step):
                sr = step_runs.get(step)
                if sr is not None:
                    await remove_finalizer(ctx, sr, result)
            case act.EmitEvent():
                events.append(action)

    changes = wire.merge_patch(run.get("status"), {**wire.run_status(decision.status),
                                                   **wire.recorded(run.get("status"))})
    if changes and _refused_before(ctx, "StoryRun", run, changes):
        result.notes.append("the same status write was refused before; not sent again")
        return result
    if changes:
        patch = {"metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
                 "status": changes}
        res = await kube.call("patch", "storyruns/status",
                              ctx.custom.patch_namespaced_custom_object_status,
                              GROUP, VERSION, ns, "storyruns", name, patch)
        if res.outcome is kube.Outcome.OK:
            if resource_version(res.body) > resource_version(ctx.cache.runs.get(key)):
                ctx.cache.put_run(res.body)
        elif res.outcome is kube.Outcome.GONE:
            return result
        elif res.outcome is kube.Outcome.INVALID:
            await _refused(ctx, "StoryRun", run, changes, res.message, now)
            result.notes.append(f"status refused: {res.message}")
            return result
        else:
            # A conflict means we decided on a stale view: re-decide on a fresh one, and post
            # no Events for a transition that was not recorded.
            result.retry_soon = True
            return result
    for event in events:
        await _emit(ctx, run, step_runs, event, now)
    return result


async def write_steprun_status(ctx: Context, sr: Mapping[str, Any], status: dict[str, Any],
                                result: Applied) -> None:
    meta = sr["metadata"]
    changes = wire.merge_patch(sr.get("status"), status)
    if not changes:
        return
    if _refused_before(ctx, "StepRun", sr, changes):
        return
    patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": changes}
    res = await kube.call("patch", "stepruns/status",
                          ctx.custom.patch_namespaced_custom_object_status,
                          GROUP, VERSION, meta["namespace"], "stepruns", meta["name"], patch)
    if res.outcome is kube.Outcome.OK:
        cached = ctx.cache.get("StepRun", meta["namespace"], meta["name"])
        if resource_version(res.body) > resource_version(cached):
            ctx.cache.put("StepRun", res.body)
    elif res.outcome is kube.Outcome.INVALID:
        # The API server's own rules refused it (a terminal StepRun cannot change): the next
        # observation of the StepRun drives the decision instead.
        await _refused(ctx, "StepRun", sr, changes, res.message, dt.datetime.now(dt.UTC))
        result.notes.append(f"StepRun {meta['name']} status refused: {res.message}")
    elif res.outcome is not kube.Outcome.GONE:
        result.retry_soon = True


def _refusal_key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return kind, obj["metadata"].get("uid", ""), obj["metadata"]["name"]


def _refused_before(ctx: Context, kind: str, obj: Mapping[str, Any],
                    changes: Mapping[str, Any]) -> bool:
    """A write the API server refused is never sent again unchanged (it cannot succeed)."""
    return ctx.refused.get(_refusal_key(kind, obj)) == json.dumps(changes, sort_keys=True)


async def _refused(ctx: Context, kind: str, obj: Mapping[str, Any], changes: Mapping[str, Any],
                   message: str, now: dt.datetime) -> None:
    """Remember the refused write, and say so where a person looks: the log and an Event."""
    _remember(ctx, _refusal_key(kind, obj), json.dumps(changes, sort_keys=True))
    meta = obj["metadata"]
    log.error("%s %s/%s: status write refused by the API server, not retried unchanged: %s; "
              "write was %s", kind, meta["namespace"], meta["name"], message,
              json.dumps(changes, sort_keys=True))
    await _event(ctx, kind, obj, "Warning", "WriteRejected",
                 f"status write refused by the API server: {message}", now)


def _remember(ctx: Context, key: tuple[str, str, str], value: str) -> None:
    ctx.refused[key] = value
    while len(ctx.refused) > REFUSALS_KEPT:  # oldest first: objects long gone
        del ctx.refused[next(iter(ctx.refused))]


async def _event(ctx: Context, kind: str, obj: Mapping[str, Any], type_: str, reason: str,
                 message: str, now: dt.datetime) -> None:
    body = event_for({"apiVersion": API_VERSION, "kind": kind, **obj},
                     type=type_, reason=reason, message=message, now=now)
    await kube.call("create", "events", ctx.core.create_namespaced_event,
                    obj["metadata"]["namespace"], body)


async def _start_attempt(ctx: Context, sr: Mapping[str, Any], attempt: int, now: dt.datetime,
                         result: Applied) -> None:
    ns = sr["metadata"]["namespace"]
    if sr["spec"].get("mode") == "realtime":
        kind, workload = "Deployment", build.build_deployment(sr)
        res = await kube.call("create", "deployments", ctx.apps.create_namespaced_deployment,
                              ns, workload)
        service = build.build_service(sr)
        if service is not None:
            await kube.call("create", "services", ctx.core.create_namespaced_service, ns, service)
    else:
        kind, workload = "Pod", build.build_pod(sr, attempt, now)
        res = await kube.call("create", "pods", ctx.core.create_namespaced_pod, ns, workload)
    if res.outcome is kube.Outcome.OK:
        ctx.cache.put(kind, ctx.api.sanitize_for_serialization(res.body))
    elif not res.ok:
        await _not_created(ctx, sr, kind, workload["metadata"]["name"], sr["metadata"]["uid"],
                           res, now, result)


async def _not_created(ctx: Context, parent: Mapping[str, Any], kind: str, name: str,
                       owner: str | None, res: kube.Result, now: dt.datetime,
                       result: Applied) -> None:
    """A child the API server did not create. Invalid: it never will, so the refusal is
    observed and the next decision fails the step with the API server's words. Forbidden
    (RBAC, a quota): it may be allowed later, so it is tried again every few seconds, and a
    Warning Event on the parent says why it waits (once per reason). Anything else: soon."""
    result.retry_soon = True
    if res.outcome is kube.Outcome.INVALID:
        ctx.cache.refuse(kind, parent["metadata"]["namespace"], name, owner or "", res.message)
    elif res.outcome is kube.Outcome.FORBIDDEN:
        result.forbidden = True
        said = ("CreateForbidden", kind, name)
        if ctx.refused.get(said) != res.message:
            _remember(ctx, said, res.message)
            log.warning("%s %s not created: %s", kind, name, res.message)
            parent_kind = "StepRun" if kind != "StepRun" else "StoryRun"
            await _event(ctx, parent_kind, parent, "Warning", "CreateForbidden",
                         f"{kind} {name} not created, tried again every "
                         f"{FORBIDDEN_REQUEUE_SECONDS:.0f}s: {res.message}", now)


async def _stop_workloads(ctx: Context, ns: str, run: str, step: str, grace: int) -> None:
    """Delete the step's workloads (a Deployment, or a batch attempt's pod) and their pods,
    giving the pods `grace` seconds to exit.

    A Deployment is stopped in three waves, each sent at once: the Deployment (so its controller
    makes no new ReplicaSet), then the ReplicaSets that own the step's pods (so none replaces a
    pod deleted under it: a replacement would start after the stop), then the pods."""
    key = (ns, run)
    options = client.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=grace)
    deployments = [d for d in ctx.cache.children("Deployment", key) if _stoppable(d, step)]
    await _delete_all(ctx, [("Deployment", d, kube.call(
        "delete", "deployments", ctx.apps.delete_namespaced_deployment, d["metadata"]["name"],
        ns, body=options)) for d in deployments])
    pods = [p for p in ctx.cache.children("Pod", key) if _stoppable(p, step)]
    owners = sorted({o["name"] for p in pods for o in p["metadata"].get("ownerReferences") or ()
                     if o.get("kind") == "ReplicaSet"})
    await asyncio.gather(*(kube.call(
        "delete", "replicasets", ctx.apps.delete_namespaced_replica_set, name, ns, body=options)
        for name in owners))
    await _delete_all(ctx, [("Pod", p, kube.call(
        "delete", "pods", ctx.core.delete_namespaced_pod, p["metadata"]["name"], ns,
        grace_period_seconds=grace)) for p in pods])


def _stoppable(obj: Mapping[str, Any], step: str) -> bool:
    """A workload or pod of `step` that no delete has reached yet. A batch attempt's pod is the
    workload itself: deleted even once it ended, so the stop is seen under way (a late report
    is then reported once); a Deployment's ended pods go with their ReplicaSet."""
    meta = obj["metadata"]
    labels = meta.get("labels", {})
    if labels.get(STEP_LABEL) != step or meta.get("deletionTimestamp"):
        return False
    ended = obj.get("status", {}).get("phase") in ("Succeeded", "Failed")
    return not ended or ATTEMPT_LABEL in labels


async def _delete_all(ctx: Context, deletes: list[tuple[str, Mapping[str, Any],
                                                         Awaitable[kube.Result]]]) -> None:
    results = await asyncio.gather(*(call for _, _, call in deletes))
    for (kind, target, _), res in zip(deletes, results, strict=True):
        _deleting(ctx, kind, target, res)


def _deleting(ctx: Context, kind: str, obj: Mapping[str, Any], res: kube.Result) -> None:
    """Record a delete that landed in the cache at once, so the next reconcile (which may come
    before the watch event) sees the stop under way and neither sends it nor reports it twice."""
    if res.outcome is kube.Outcome.GONE:
        ctx.cache.drop(kind, obj)
    elif res.outcome is kube.Outcome.OK:
        ctx.cache.mark_deleting(kind, obj, dt.datetime.now(dt.UTC))


async def remove_finalizer(ctx: Context, sr: Mapping[str, Any], result: Applied) -> None:
    meta = sr["metadata"]
    finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
    if finalizers == list(meta.get("finalizers") or []):
        return
    patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": finalizers}}
    res = await kube.call("patch", "stepruns", ctx.custom.patch_namespaced_custom_object,
                          GROUP, VERSION, meta["namespace"], "stepruns", meta["name"], patch)
    if not res.ok:
        result.retry_soon = True


async def _emit(ctx: Context, run: Mapping[str, Any], step_runs: Mapping[str, Any],
                event: act.EmitEvent, now: dt.datetime) -> None:
    target: Mapping[str, Any] = run
    if event.target == "step":
        target = step_runs.get(event.step or "") or run
    await _event(ctx, "StoryRun" if target is run else "StepRun", target, event.type,
                 event.reason, event.message, now)


__all__ = ["Applied", "apply"]
