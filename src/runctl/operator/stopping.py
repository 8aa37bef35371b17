"""Stop a step's workloads: the delete waves of a `StopWorkload`.

A Deployment is first scaled to zero, and the ReplicaSet controller deletes its pods, with the
grace their template carries (the run's `shutdown.gracePeriodSeconds`); the stop waits for that
(`SCALED_WAIT` at most). A pod deleted by anyone else while that controller still counts on one
replica is replaced, and the replacement would start after the stop; deleting the ReplicaSet
first is not enough, since the controller may see the pod go before it sees its ReplicaSet go.
Then three waves, each sent at once: the Deployment, the ReplicaSets that own pods of the step
still not deleted, those pods (only when the controller was too slow or is down). A batch
attempt's pod has no owner but its StepRun, so only the last wave finds it.

The items of a fan-out step that all stop at once (`StopItems`) go in a few requests, however
many there are: deletes of collections of the step's live item pods, chosen by label. Hundreds
of deletes one by one would each cost the API server a request of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Mapping
from typing import Any

from kubernetes import client

from runctl.api.wire import ATTEMPT_LABEL, ITEM_LABEL, RUN_LABEL, STEP_LABEL, key_of
from runctl.operator import kube
from runctl.operator.context import Context


async def stop_workloads(ctx: Context, ns: str, run: str, step: str, grace: int) -> None:
    """Delete the step's workloads (a Deployment, or a batch attempt's pod) and their pods,
    giving the pods `grace` seconds to exit."""
    key = (ns, run)
    options = client.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=grace)
    deployments = [d for d in ctx.cache.children("Deployment", key) if _stoppable(d, step)]
    if deployments:
        await _scale_to_zero(ctx, ns, run, step, deployments)
    await _delete_all(ctx, [("Deployment", d, kube.call(
        "delete", "deployments", ctx.apps.delete_namespaced_deployment, d["metadata"]["name"],
        ns, body=options)) for d in deployments])
    pods = [p for p in ctx.cache.children("Pod", key) if _stoppable(p, step)]
    await asyncio.gather(*(kube.call(
        "delete", "replicasets", ctx.apps.delete_namespaced_replica_set, name, ns, body=options)
        for name in _replicasets(pods)))
    await _delete_each_pod(ctx, ns, pods, grace)


SCALED_WAIT = 10.0
"""Seconds a stop waits for the ReplicaSet controller to delete a Deployment's pods once it is
scaled to zero; past it (a controller manager down or far behind) the stop deletes them itself:
a stop never hangs."""

POLL = 0.02
"""Seconds between two looks at the cache while waiting: the watch brings the pods' deletes."""


async def _scale_to_zero(ctx: Context, ns: str, run: str, step: str,
                         deployments: list[dict[str, Any]]) -> None:
    """Scale the step's Deployments to zero replicas, then wait until the step's pods the cache
    knows are being deleted: the ReplicaSet controller deletes them once it has seen its
    ReplicaSet at zero, and from then on it creates no pod for it again. A watch is what it
    waits on: no request of its own. Returns at once if a scale is refused (a role without
    the verb)."""
    scaled = await asyncio.gather(*(kube.call(
        "patch", "deployments", ctx.apps.patch_namespaced_deployment, d["metadata"]["name"],
        ns, {"spec": {"replicas": 0}}) for d in deployments))
    if any(res.outcome is not kube.Outcome.OK for res in scaled):
        return
    give_up = asyncio.get_running_loop().time() + SCALED_WAIT
    while any(_stoppable(p, step) for p in ctx.cache.children("Pod", (ns, run))):
        if asyncio.get_running_loop().time() >= give_up:
            return
        await asyncio.sleep(POLL)


LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
"""Pods not ended: an ended item's pod stays, with its logs, as long as its StepRun."""


SHARE = 25
"""Item pods per delete request: the API server deletes a collection one pod after another, so
a stop of hundreds is sent as several requests at once, a share of the pods each."""


async def stop_items(ctx: Context, ns: str, run: str, step: str, grace: int) -> None:
    """Delete the live pods of every item of fan-out step `step`, giving them `grace` seconds
    to exit: the pods the cache knows in shares of `SHARE`, plus one request for any other (a
    pod being created as the stop came, not seen yet), all sent at once."""
    options = client.V1DeleteOptions(grace_period_seconds=grace)
    known = [p for p in ctx.cache.children("Pod", (ns, run)) if _live_item_pod(p, step)]
    indices = sorted({p["metadata"]["labels"][ITEM_LABEL] for p in known}, key=int)
    selector = f"{RUN_LABEL}={run},{STEP_LABEL}={step},{ITEM_LABEL}"
    shares = [f"{selector} in ({','.join(indices[at:at + SHARE])})"
              for at in range(0, len(indices), SHARE)]
    shares.append(f"{selector} notin ({','.join(indices)})" if indices else selector)
    results = await asyncio.gather(*(kube.call(
        "deletecollection", "pods", _delete_pods, ctx.core, ns, share, options)
        for share in shares))
    now = dt.datetime.now(dt.UTC)
    for res in results:
        if res.outcome is kube.Outcome.OK:
            for pod in res.body:
                ctx.cache.mark_deleting("Pod", pod, now)
    if any(res.outcome is kube.Outcome.FORBIDDEN for res in results):
        # A role of an older chart, without the verb: one delete per pod the cache knows.
        await _delete_each_pod(ctx, ns, [p for p in known
                                         if not p["metadata"].get("deletionTimestamp")], grace)


async def _delete_each_pod(ctx: Context, ns: str, pods: list[dict[str, Any]],
                           grace: int) -> None:
    """One delete per pod, all sent at once, each seen deleting as soon as it landed."""
    options = client.V1DeleteOptions(grace_period_seconds=grace)
    await _delete_all(ctx, [("Pod", p, kube.call(
        "delete", "pods", ctx.core.delete_namespaced_pod, p["metadata"]["name"], ns,
        body=options)) for p in pods])


def _delete_pods(core: client.CoreV1Api, ns: str, selector: str,
                 options: client.V1DeleteOptions) -> list[dict[str, Any]]:
    """The pods deleted, as the API server listed them (the client would read the list as a
    Status)."""
    answer: Any = core.delete_collection_namespaced_pod(
        ns, label_selector=selector, field_selector=LIVE_PODS, body=options,
        _preload_content=False)  # the raw answer
    items: list[dict[str, Any]] = json.loads(answer.data).get("items") or []
    return items


def _live_item_pod(pod: Mapping[str, Any], step: str) -> bool:
    meta = pod["metadata"]
    labels = meta.get("labels", {})
    return (labels.get(STEP_LABEL) == step and ITEM_LABEL in labels
            and not meta.get("deletionTimestamp")
            and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"))


def _replicasets(pods: list[dict[str, Any]]) -> list[str]:
    """The ReplicaSets that own these pods, by name."""
    return sorted({o["name"] for p in pods for o in p["metadata"].get("ownerReferences") or ()
                   if o.get("kind") == "ReplicaSet"})


def _stoppable(obj: Mapping[str, Any], step: str) -> bool:
    """A workload or pod of `step` that no delete has reached yet. A batch attempt's pod is the
    workload itself: deleted even once it ended, so the stop is seen under way (a late report
    is then reported once); a Deployment's ended pods go with their ReplicaSet."""
    meta = obj["metadata"]
    labels = meta.get("labels", {})
    if key_of(labels) != step or meta.get("deletionTimestamp"):
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
