"""Carry out a decision: the only place that turns `runctl.machine` actions into API calls.

Everything a write needs was decided and rendered before (`decide`, `render`): each action kind
has one function here that sends it and returns its own `Outcome`, and `apply` sends them in
order (runs of writes of one kind a few at once: `_groups`), then the run's status, then the
decision's Events.

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
import enum
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from runctl.api import wire
from runctl.api.wire import (
    FINALIZER,
    GROUP,
    RERUN_LABEL,
    STEP_RUNS,
    STORY_RUNS,
    VERSION,
)
from runctl.machine import actions as act
from runctl.machine.actions import EventReason
from runctl.machine.decide import Decision
from runctl.operator import events, kube
from runctl.operator.cache import RunKey, owned_by, resource_version
from runctl.operator.context import Context
from runctl.operator.render import StepRuns
from runctl.operator.stopping import stop_items, stop_workloads
from runctl.workloads import build

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
CONFLICT_REQUEUE_SECONDS = 0.2
"""How soon a run is looked at again when a write did not land (a conflict, an outage)."""
FORBIDDEN_REQUEUE_SECONDS = 10.0
"""How soon a create that was forbidden (RBAC, a quota) is tried again: it may be allowed once
someone grants the right or frees the quota, as Kubernetes' own controllers assume."""

Obj = Mapping[str, Any]


class Retry(enum.IntEnum):
    """When the run wants another look because of what a write ran into; the later one wins."""

    NONE = 0
    SOON = 1
    """A conflict, an outage, a child not seen yet: decide again on a fresh view, in
    `CONFLICT_REQUEUE_SECONDS`."""
    LATER = 2
    """A create was forbidden: try again in `FORBIDDEN_REQUEUE_SECONDS`, not soon."""

    @property
    def seconds(self) -> float | None:
        """How soon to look again (None: no sooner than anything else asks)."""
        return {Retry.SOON: CONFLICT_REQUEUE_SECONDS,
                Retry.LATER: FORBIDDEN_REQUEUE_SECONDS}.get(self)


@dataclass(frozen=True)
class Outcome:
    """What one write ran into."""

    retry: Retry = Retry.NONE
    note: str | None = None
    """Said in the log: what did not happen, and why."""
    halt: bool = False
    """Nothing after this write may be sent in this apply."""
    hold_status: bool = False
    """The rest of the children's writes go on, but the run's status waits for a next apply."""


DONE = Outcome()


@dataclass(frozen=True)
class Applied:
    """What applying a decision ran into, for the caller to requeue on."""

    retry: Retry = Retry.NONE
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> Applied:
        done = list(outcomes)
        return cls(retry=max((o.retry for o in done), default=Retry.NONE),
                   notes=tuple(o.note for o in done if o.note is not None))

    @property
    def landed_short(self) -> bool:
        """Some write did not land: the run is looked at again (soon, or later if forbidden)."""
        return self.retry is not Retry.NONE

    @property
    def forbidden(self) -> bool:
        return self.retry is Retry.LATER


# -- writes of the run itself, before it is decided on ------------------------------------------


async def write_record(ctx: Context, key: RunKey, run: Obj, record: Obj) -> Outcome:
    """Write a run's record of the Story it executes (`status.story`, `status.resolved`), once,
    before anything of it starts: conditional on the run's resourceVersion, so two writers
    never record two versions; the API server refuses any change to it afterwards."""
    res = await _patch_kept(ctx, "StoryRun", key, {
        "metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
        "status": dict(record)}, status=True)
    if res.outcome in (kube.Outcome.OK, kube.Outcome.GONE):
        return DONE
    return Outcome(Retry.SOON, f"the run's record was not written ({res.outcome}: "
                               f"{res.message}); resolving again")


async def label_rerun(ctx: Context, key: RunKey, source: str) -> None:
    """Label a re-run with the run it re-runs, whoever created it, so `kubectl get sr -l
    runctl.dev/rerun-of=SOURCE` lists it. The one write runctl makes to a run outside its
    status (never its spec); a failure is tried again at the run's next reconcile."""
    res = await _patch_kept(ctx, "StoryRun", key,
                            {"metadata": {"labels": {RERUN_LABEL: source}}}, status=False)
    if res.outcome not in (kube.Outcome.OK, kube.Outcome.GONE):
        log.warning("%s/%s: label %s=%s not written (%s: %s)", *key, RERUN_LABEL, source,
                    res.outcome, res.message)


async def _patch_kept(ctx: Context, kind: str, key: RunKey, patch: Obj, *,
                      status: bool) -> kube.Result:
    """Patch a run or a StepRun (its status, or else its metadata), and keep the answer in the
    cache unless the cache already holds a copy as new."""
    plural = STORY_RUNS if kind == "StoryRun" else STEP_RUNS
    custom = ctx.custom
    method = (custom.patch_namespaced_custom_object_status if status
              else custom.patch_namespaced_custom_object)
    res = await kube.call("patch", f"{plural}/status" if status else plural, method,
                          GROUP, VERSION, key[0], plural, key[1], patch)
    if res.outcome is kube.Outcome.OK:
        if kind == "StoryRun":
            if resource_version(res.body) > resource_version(ctx.cache.runs.get(key)):
                ctx.cache.put_run(res.body)
        elif resource_version(res.body) > resource_version(ctx.cache.get(kind, *key)):
            ctx.cache.put(kind, res.body)
    return res


# -- a decision --------------------------------------------------------------------------------


async def apply(ctx: Context, key: RunKey, run: Obj, decision: Decision, rendered: StepRuns,
                now: dt.datetime) -> Applied:
    """Send the decision's actions in order (`rendered`: the StepRuns it creates), then the
    run's status, then its Events."""
    run_uid = run["metadata"].get("uid")
    step_runs: dict[str, Obj] = {wire.key_of(sr["metadata"]["labels"]): sr
                                 for sr in ctx.cache.children("StepRun", key)
                                 if owned_by(sr, run_uid)}
    outcomes: list[Outcome] = []
    for group in _groups(decision.actions):
        if isinstance(group[0], act.CreateStepRun | act.StartAttempt) and _stopped_since(
                ctx, key, run):
            # A wide decision takes a while to send: what it would start after a stop
            # arrived is not started (the run's next decision takes up the stop).
            outcomes.append(Outcome(Retry.SOON, halt=True))
            return Applied.of(outcomes)
        sent = list(await asyncio.gather(
            *(_send(ctx, key, run, rendered, step_runs, a, now) for a in group)))
        outcomes += sent
        if any(o.halt for o in sent):
            return Applied.of(outcomes)
    if any(o.hold_status for o in outcomes):
        return Applied.of(outcomes)
    written = await write_run_status(ctx, key, run, decision, now)
    outcomes.append(written)
    if not written.halt:
        for event in decision.actions:
            if isinstance(event, act.EmitEvent):
                await _emit(ctx, run, step_runs, event, now)
    return Applied.of(outcomes)


AT_ONCE = 16
"""Creates of one kind sent together: a decision on a wide fan-out starts hundreds of items,
which one after another take seconds (10,000 of them, minutes). A stop that arrives meanwhile is
checked between groups, so what a group has on its way is all that starts after it."""
ENDS_AT_ONCE = 32
"""Any other writes of one kind sent together (as many as there are threads for API calls): the
ends and stops of a stopped fan-out's items, which nothing after a stop waits for."""

_TOGETHER = (act.CreateStepRun, act.WriteStepRunStatus, act.StartAttempt, act.StopWorkload,
             act.StopItems, act.RemoveFinalizer, act.DeleteStepRun)
"""Kinds whose writes in a row depend on none of each other: each acts on its own step's
StepRun or workloads. Kinds still go in the decision's order (a StepRun is made before its
workload, an item's end is written before another starts)."""


def _groups(actions: Iterable[act.Action]) -> Iterable[list[act.Action]]:
    """The actions in order, runs of one kind (`_TOGETHER`) in groups of up to `AT_ONCE`
    (creates) or `ENDS_AT_ONCE` (the rest), anything else alone."""
    group: list[act.Action] = []
    for action in actions:
        together = isinstance(action, _TOGETHER)
        if group and (not together or type(action) is not type(group[0])
                      or len(group) == _at_once(group[0])):
            yield group
            group = []
        if together:
            group.append(action)
        else:
            yield [action]
    if group:
        yield group


def _at_once(action: act.Action) -> int:
    return AT_ONCE if isinstance(action, act.CreateStepRun | act.StartAttempt) else ENDS_AT_ONCE


def _stopped_since(ctx: Context, key: RunKey, run: Obj) -> bool:
    """Was a stop of the run requested after the view this decision was made on?"""
    now = ctx.cache.runs.get(key) or run
    return bool(now["spec"].get("cancelRequested")) and not run["spec"].get("cancelRequested")


async def _send(ctx: Context, key: RunKey, run: Obj, rendered: StepRuns,
                step_runs: dict[str, Obj], action: act.Action, now: dt.datetime) -> Outcome:
    """One action: a StepRun made (kept in `step_runs` for its workload and status, sent
    later in the same apply), or one on a step's StepRun or workloads (none needed once its
    StepRun is gone)."""
    match action:
        case act.CreateStepRun(step=step):
            outcome, created = await create_steprun(ctx, run, rendered[step],
                                                    step in step_runs, now)
            if created is not None:
                step_runs[step] = created
            return outcome
        case act.WriteStepRunStatus(step=step, status=status):
            sr = step_runs.get(step)
            return DONE if sr is None else await write_steprun_status(
                ctx, sr, wire.steprun_status(status))
        case act.StartAttempt(step=step, attempt=attempt):
            sr = step_runs.get(step)
            return Outcome(Retry.SOON) if sr is None else await start_attempt(
                ctx, run, sr, attempt, now)
        case act.StopWorkload(step=step, grace_seconds=grace):
            await stop_workloads(ctx, key[0], key[1], step, grace)
        case act.StopItems(step=step, grace_seconds=grace):
            await stop_items(ctx, key[0], key[1], step, grace)
        case act.DeleteStepRun(step=step):
            sr = step_runs.get(step)
            if sr is not None:
                await delete_steprun(ctx, sr)
        case act.RemoveFinalizer(step=step):
            sr = step_runs.get(step)
            return DONE if sr is None else await remove_finalizer(ctx, sr)
    return DONE  # an EmitEvent: posted once the run's status is written


# -- one function per action kind --------------------------------------------------------------


async def create_steprun(ctx: Context, run: Obj, body: dict[str, Any], seen: bool,
                         now: dt.datetime) -> tuple[Outcome, dict[str, Any] | None]:
    """Create a StepRun (`seen`: the cache holds one of this run for its step already); the
    StepRun created, if it was."""
    name = body["metadata"]["name"]
    res = await kube.call("create", STEP_RUNS, ctx.custom.create_namespaced_custom_object,
                          GROUP, VERSION, run["metadata"]["namespace"], STEP_RUNS, body)
    if res.outcome is kube.Outcome.OK:
        ctx.cache.put("StepRun", res.body)
        return DONE, res.body
    if res.outcome is kube.Outcome.EXISTS and not seen:
        # Either not in the cache yet, or a StepRun of an earlier run of this name still on
        # its way out: record nothing until ours is seen.
        return Outcome(Retry.SOON, f"StepRun {name} exists but is not yet seen as this run's; "
                                   "waiting", halt=True), None
    if not res.ok:
        # Not confirmed by the API server: a status naming it would record as started a step
        # that has no StepRun, so nothing is recorded this time.
        retry = await _not_created(ctx, run, "StepRun", name, run["metadata"].get("uid"), res,
                                   now, key=wire.key_of(body["metadata"].get("labels") or {}))
        return Outcome(retry, f"StepRun {name} not created ({res.outcome}: {res.message}); "
                              "the status waits for it", halt=True), None
    return DONE, None


async def start_attempt(ctx: Context, run: Obj, sr: Obj, attempt: int,
                        now: dt.datetime) -> Outcome:
    """Create the workload of an attempt: its pod (batch), or its Deployment and Service."""
    ns = sr["metadata"]["namespace"]
    if sr["spec"].get("mode") == "realtime":
        executes = ((run.get("status") or {}).get("resolved") or {}).get("spec")
        grace = wire.run_spec(run["spec"], executes).grace_period_seconds
        kind, workload = "Deployment", build.build_deployment(sr, grace)
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
        return Outcome(await _not_created(ctx, sr, kind, workload["metadata"]["name"],
                                          sr["metadata"]["uid"], res, now))
    return DONE


async def write_steprun_status(ctx: Context, sr: Obj, status: dict[str, Any]) -> Outcome:
    """Write what a StepRun's status should say, unless it says so already or the API server
    refused this very write before. One that did not land (an outage, a conflict) holds the
    run's status back: a step's end is recorded on its StepRun, with its outputs, before the
    run records it, since the run's record keeps no outputs. The other children's writes (a
    stop's deletes) go on: a stop never waits for a record."""
    meta = sr["metadata"]
    changes = wire.merge_patch(sr.get("status"), status)
    if not changes or ctx.refusals.refused_before("StepRun", sr, changes):
        return DONE
    res = await _patch_kept(ctx, "StepRun", (meta["namespace"], meta["name"]), {
        "metadata": {"resourceVersion": meta["resourceVersion"]}, "status": changes},
        status=True)
    if res.outcome is kube.Outcome.INVALID:
        # The API server's own rules refused it (a terminal StepRun cannot change): the next
        # observation of the StepRun drives the decision instead.
        await _refused(ctx, "StepRun", sr, changes, res.message, dt.datetime.now(dt.UTC))
        return Outcome(note=f"StepRun {meta['name']} status refused: {res.message}")
    if res.outcome in (kube.Outcome.OK, kube.Outcome.GONE):
        return DONE
    return Outcome(Retry.SOON, f"StepRun {meta['name']} status not written ({res.outcome}); "
                               "the run's status waits for it", hold_status=True)


async def delete_steprun(ctx: Context, sr: Obj) -> None:
    meta = sr["metadata"]
    await kube.call("delete", STEP_RUNS, ctx.custom.delete_namespaced_custom_object,
                    GROUP, VERSION, meta["namespace"], STEP_RUNS, meta["name"],
                    body=client.V1DeleteOptions(propagation_policy="Background"))


async def remove_finalizer(ctx: Context, sr: Obj) -> Outcome:
    """Let a StepRun go: take runctl's finalizer off it (tried again soon if that failed, or
    later if RBAC refused it, so a missing grant is not asked five times a second).

    A JSON patch that tests the finalizer is where the cache saw it, then removes it: it needs
    no resourceVersion, so a cache behind the API server (a namespace of 10,000 StepRuns being
    deleted floods the watches) does not make every removal conflict; should the list have
    changed meanwhile, the test fails (422) and it is tried again on a fresher view."""
    meta = sr["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER not in finalizers:
        return DONE
    at = f"/metadata/finalizers/{finalizers.index(FINALIZER)}"
    patch = [{"op": "test", "path": at, "value": FINALIZER}, {"op": "remove", "path": at}]
    res = await kube.call("patch", STEP_RUNS, ctx.custom.patch_namespaced_custom_object,
                          GROUP, VERSION, meta["namespace"], STEP_RUNS, meta["name"], patch,
                          _content_type=JSON_PATCH)
    if res.ok:
        return DONE
    return Outcome(Retry.LATER if res.outcome is kube.Outcome.FORBIDDEN else Retry.SOON)


async def write_run_status(ctx: Context, key: RunKey, run: Obj, decision: Decision,
                           now: dt.datetime) -> Outcome:
    """Write the decided status of the run (its record kept as it is); halts the apply (no
    Events) unless it was written or needed no write."""
    changes = wire.merge_patch(run.get("status"), {**wire.run_status(decision.status),
                                                   **wire.recorded(run.get("status"))})
    if not changes:
        return DONE
    if ctx.refusals.refused_before("StoryRun", run, changes):
        return Outcome(note="the same status write was refused before; not sent again",
                       halt=True)
    res = await _patch_kept(ctx, "StoryRun", key, {
        "metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
        "status": changes}, status=True)
    if res.outcome is kube.Outcome.OK:
        return DONE
    if res.outcome is kube.Outcome.GONE:
        return Outcome(halt=True)
    if res.outcome is kube.Outcome.INVALID:
        await _refused(ctx, "StoryRun", run, changes, res.message, now)
        return Outcome(note=f"status refused: {res.message}", halt=True)
    # A conflict means we decided on a stale view: re-decide on a fresh one, and post no
    # Events for a transition that was not recorded.
    return Outcome(Retry.SOON, halt=True)


# -- what the API server refused, said where a person looks -------------------------------------


async def _refused(ctx: Context, kind: str, obj: Obj, changes: Mapping[str, Any], message: str,
                   now: dt.datetime) -> None:
    """Remember the refused write, and say so where a person looks: the log and an Event."""
    ctx.refusals.refuse_write(kind, obj, changes)
    meta = obj["metadata"]
    log.error("%s %s/%s: status write refused by the API server, not retried unchanged: %s; "
              "write was %s", kind, meta["namespace"], meta["name"], message,
              json.dumps(changes, sort_keys=True))
    await events.post(ctx.core, kind, obj, type="Warning", reason=EventReason.WRITE_REJECTED,
                      message=f"status write refused by the API server: {message}", now=now)


async def _not_created(ctx: Context, parent: Obj, kind: str, name: str, owner: str | None,
                       res: kube.Result, now: dt.datetime, key: str = "") -> Retry:
    """A child the API server did not create. Invalid: it never will, so the refusal is
    observed (a StepRun's with `key`, the step or item it was made for) and the next decision
    fails the step, or the item, with the API server's words. Forbidden
    (RBAC, a quota): it may be allowed later, so it is tried again every few seconds, and a
    Warning Event on the parent says why it waits (once per reason). Anything else: soon."""
    if res.outcome is kube.Outcome.INVALID:
        ctx.cache.refuse(kind, parent["metadata"]["namespace"], name, owner or "", res.message,
                         key)
    elif res.outcome is kube.Outcome.FORBIDDEN:
        if ctx.refusals.forbid(kind, name, res.message):
            log.warning("%s %s not created: %s", kind, name, res.message)
            await events.post(
                ctx.core, "StepRun" if kind != "StepRun" else "StoryRun", parent,
                type="Warning", reason=EventReason.CREATE_FORBIDDEN,
                message=f"{kind} {name} not created, tried again every "
                        f"{FORBIDDEN_REQUEUE_SECONDS:.0f}s: {res.message}", now=now)
        return Retry.LATER
    return Retry.SOON


async def _emit(ctx: Context, run: Obj, step_runs: Mapping[str, Obj], event: act.EmitEvent,
                now: dt.datetime) -> None:
    target: Obj = run
    if event.target == "step":
        target = step_runs.get(event.step or "") or run
    await events.post(ctx.core, "StoryRun" if target is run else "StepRun", target,
                      type=event.type, reason=event.reason, message=event.message, now=now)
