"""The wire: every name runctl gives things in the API, and every conversion between API objects
(camelCase dicts) and the core's frozen values, both ways.

One owner for each fact, so nothing drifts: the group and version, the labels, the finalizer and
the keys below are defined here and nowhere else; child names come from the core
(`runctl.machine.naming`), which decides them; every default comes from the pydantic models
(`runctl.api.spec`), which also generate the CRDs. Reading a spec goes through those models, so
a field the API server defaulted and a field it left out read the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from runctl.api.spec import (
    FINALLY_TIMEOUT_SECONDS,
    RetryPolicy,
    RunShape,
    StoryRunSpec,
    StorySpec,
)
from runctl.flow import definition, inputs
from runctl.flow.items import DEFAULT_PARALLELISM
from runctl.machine import model as m
from runctl.machine.naming import item_key
from runctl.machine.phases import (
    FailureClass,
    FinallyPolicy,
    RunPhase,
    ShutdownMode,
    StepPhase,
    StopTrigger,
)
from runctl.timefmt import fmt_time, parse_time

GROUP = "runctl.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
STORY_RUNS = "storyruns"
STEP_RUNS = "stepruns"
STORIES = "stories"
"""The plurals of the three kinds, as their API paths name them."""

RUN_LABEL = "runctl.dev/storyrun"
"""On every StepRun, workload and pod of a run: the run's name. The operator watches by it."""
STEP_LABEL = "runctl.dev/step"
"""On every StepRun, workload and pod: the step's name."""
ITEM_LABEL = "runctl.dev/item"
"""On an item's StepRun, workload and pods (a fan-out step's): the item's index, so `kubectl get
stpr -l runctl.dev/item=3` finds it."""
ATTEMPT_LABEL = "runctl.dev/attempt"
"""On a batch attempt's pod: the attempt's number."""
RERUN_LABEL = "runctl.dev/rerun-of"
"""On a re-run: the name of the run it runs again (set by the operator), so `kubectl get sr -l`
lists the runs of a run again."""
STEPRUN_UID_LABEL = "runctl.dev/steprun-uid"
"""Which StepRun a workload and its pods belong to: a run deleted and created again under the
same name has StepRuns of the same names, and the old ones' pods must never count for the new."""
FINALIZER = "runctl.dev/record-final-state"
"""Holds a StepRun until its final state is recorded in its StoryRun (docs/API.md guarantee 1)."""
CONTAINER = "step"
"""The step's main container in every pod runctl makes: its exit and termination message are
what the step did."""
_DEFAULT_MODE = str(StoryRunSpec.model_fields["mode"].default)
FAILURE_CLASS_KEY = "runctl.dev/failureClass"
"""A key of a step's termination message JSON by which the step says how its failure is
classified (Transient or Permanent)."""


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`.

    A status is written whole, but a merge patch leaves alone every key it does not mention: a
    field the new status no longer has (a retry's `reason: RetryBackoff`, say) must be sent as
    null, or the stored status keeps it and says something no longer true."""
    old = old or {}
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    return patch


# -- StoryRun spec ---------------------------------------------------------------------------


def run_spec(spec: Mapping[str, Any], executes: Mapping[str, Any] | None = None) -> m.RunSpec:
    """The core's view of a StoryRun spec, every default taken from the API models. `executes`
    is the definition a run of a Story executes (its `status.resolved.spec`, a Story's spec);
    an inline run executes its own spec. References and conditions imply needs."""
    typed = StoryRunSpec.model_validate(spec)
    story = None if executes is None else StorySpec.model_validate(executes)
    shape: RunShape = typed if story is None else story
    steps = typed.steps if story is None else story.steps
    finals = typed.finally_ if story is None else story.finally_
    main = [s.name for s in steps or ()]
    no_retry = RetryPolicy()
    return m.RunSpec(
        steps=tuple(_step(s.to_api(), s.retry or no_retry) for s in steps or ()),
        finally_steps=tuple(_step(s.to_api(), s.retry or no_retry, main)
                            for s in finals or ()),
        mode=shape.mode,
        on_failure=shape.on_failure,
        timeout_seconds=shape.timeout_seconds,
        finally_timeout_seconds=shape.finally_timeout_seconds or FINALLY_TIMEOUT_SECONDS,
        cancel_requested=typed.cancel_requested,
        suspend=typed.suspend,
        grace_period_seconds=shape.shutdown.grace_period_seconds,
        # A run may choose how its stop acts, over its Story's choice.
        shutdown_mode=typed.shutdown.mode or shape.shutdown.mode or ShutdownMode.CANCEL,
        shutdown_finally=(typed.shutdown.finally_ or shape.shutdown.finally_
                          or FinallyPolicy.RUN),
        drain_timeout_seconds=(shape.transport.lifecycle.drain_timeout_seconds
                               if shape.transport and shape.transport.lifecycle else None),
        ttl_seconds_after_finished=shape.ttl_seconds_after_finished,
        # A run may bound its own parallelism, over its Story's (or its source's) bound.
        parallelism=(typed.parallelism if typed.parallelism is not None
                     else shape.parallelism),
    )


def _step(step: Mapping[str, Any], retry: RetryPolicy, main: list[str] | None = None
          ) -> m.StepSpec:
    """`main`: the main steps' names, for a finally step (it reads them, never needs them)."""
    return m.StepSpec(
        name=step["name"],
        needs=definition.needs(step, main or ()),
        timeout_seconds=step.get("timeoutSeconds"),
        retry=m.RetryPolicy(limit=retry.limit, backoff_seconds=retry.backoff_seconds,
                            backoff_factor=retry.backoff_factor,
                            max_backoff_seconds=retry.max_backoff_seconds,
                            transient_exit_codes=tuple(retry.transient_exit_codes)),
        heartbeat_timeout_seconds=step.get("heartbeatTimeoutSeconds"),
        outputs=tuple(m.OutputSpec(o["name"], "default" in o)
                      for o in step.get("outputs") or ()),
        consumes=definition.consumes(step),
        conditional=bool(step.get("when")),
        reads_facts=definition.reads_facts(step),
        for_each=None if step.get("forEach") is None else m.ForEach(
            step["forEach"].get("parallelism", DEFAULT_PARALLELISM)),
    )


def key_of(labels: Mapping[str, str]) -> str:
    """The core's key of a StepRun, workload or pod (`naming.item_key` for an item's)."""
    step, index = labels.get(STEP_LABEL, ""), labels.get(ITEM_LABEL)
    return step if index is None else item_key(step, int(index))


# -- a run of a Story ------------------------------------------------------------------------


def story_ref(spec: Mapping[str, Any]) -> str | None:
    """The name of the Story a run executes (None: its steps are inline, or it re-runs)."""
    return (spec.get("storyRef") or {}).get("name")


def rerun_of(spec: Mapping[str, Any]) -> str | None:
    """The name of the run a re-run runs again (None: not a re-run)."""
    return (spec.get("rerunOf") or {}).get("name")


def executes_record(spec: Mapping[str, Any]) -> bool:
    """Does the run execute a definition it records (`status.resolved`): a run of a Story, or
    a re-run? Otherwise it executes its own spec."""
    return story_ref(spec) is not None or rerun_of(spec) is not None


def digest(spec: Mapping[str, Any]) -> str:
    """`sha256:` of a Story's spec as canonical JSON: which version of it a run executes."""
    return inputs.canonical_digest(spec)


def record(story: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """What a run of `story` records of it, once (`status.story` and `status.resolved`)."""
    meta = story["metadata"]
    return {"story": {"name": meta["name"], "uid": meta["uid"],
                      "generation": meta.get("generation", 1), "digest": digest(story["spec"])},
            "resolved": {"params": dict(params), "spec": story["spec"]}}


def recorded(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The record a run's status holds (empty before it resolved its Story or its source): a
    status write carries it over unchanged, since the core knows nothing of it."""
    status = status or {}
    return {k: status[k] for k in ("story", "resolved", "rerun") if k in status}


def rerun_record(source: Mapping[str, Any], reused: tuple[tuple[str, m.Reuse], ...]
                 ) -> dict[str, Any]:
    """What a re-run of `source` records of it, once (`status.rerun`): the source, and each
    step it reuses with the StepRun that executed it and the outputs it made."""
    meta = source["metadata"]
    return {"source": {"name": meta["name"], "uid": meta["uid"]}, "reused": len(reused),
            "steps": {step: _drop_none({**_reused_from(r.source),
                                        "outputs": dict(r.outputs) or None})
                      for step, r in reused} or None}


def reuses(status: Mapping[str, Any] | None) -> tuple[tuple[str, m.Reuse], ...]:
    """The steps a re-run's record says it reuses (none before it recorded, or for a run that
    is not a re-run)."""
    steps = ((status or {}).get("rerun") or {}).get("steps") or {}
    return tuple((step, m.Reuse(_parse_reused_from(r),
                                m.frozen_outputs((r.get("outputs") or {}).items())))
                 for step, r in steps.items())


def _reused_from(r: m.ReusedFrom) -> dict[str, str]:
    return {"storyRun": r.story_run, "stepRun": r.step_run, "uid": r.uid}


def _parse_reused_from(d: Mapping[str, Any]) -> m.ReusedFrom:
    return m.ReusedFrom(d["storyRun"], d["stepRun"], d["uid"])


def cancel_requested_at(body: Mapping[str, Any]) -> dt.datetime | None:
    """When `spec.cancelRequested` was last set, from the API server's managedFields record."""
    latest: dt.datetime | None = None
    for entry in body.get("metadata", {}).get("managedFields") or ():
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:cancelRequested" in fields:
            when = parse_time(entry.get("time"))
            if when is not None and (latest is None or when > latest):
                latest = when
    return latest


# -- StoryRun status -------------------------------------------------------------------------


def _step_state(d: Mapping[str, Any]) -> m.StepState:
    items = d.get("items")
    return m.StepState(
        phase=StepPhase(d["phase"]),
        reason=d.get("reason"),
        message=d.get("message"),
        step_run=d.get("stepRun"),
        attempts=d.get("attempts", 0),
        started_at=parse_time(d.get("startedAt")),
        finished_at=parse_time(d.get("finishedAt")),
        items=None if items is None else m.ItemCounts(
            items["total"], tuple((p, items[p.value]) for p in StepPhase if items.get(p.value))),
        failed_items=tuple(
            m.FailedItem(f["index"], f.get("reason"), f.get("message"),
                         parse_time(f.get("finishedAt")))
            for f in d.get("failedItems") or ()),
    )


def _items(counts: m.ItemCounts | None) -> dict[str, int] | None:
    """A fan-out step's counts as the API has them: the total, then each phase with items."""
    if counts is None:
        return None
    return {"total": counts.total, **{p.value: n for p, n in counts.by_phase}}


def _condition(d: Mapping[str, Any]) -> m.Condition:
    return m.Condition(
        type=d["type"], status=d["status"], reason=d.get("reason"), message=d.get("message"),
        last_transition_time=parse_time(d.get("lastTransitionTime")),
        observed_generation=d.get("observedGeneration"),
    )


def run_status(status: m.RunStatus) -> dict[str, Any]:
    """The whole status as the API stores it (absent fields omitted)."""
    stop = status.stop
    return _drop_none({
        "phase": status.phase.value if status.phase else None,
        "reason": status.reason,
        "message": status.message,
        "startedAt": fmt_time(status.started_at),
        "finishedAt": fmt_time(status.finished_at),
        "duration": status.duration,
        "progress": status.progress,
        "observedGeneration": status.observed_generation,
        "stepStates": {
            name: _drop_none({
                "phase": s.phase.value, "reason": s.reason, "message": s.message,
                "stepRun": s.step_run, "attempts": s.attempts,
                "startedAt": fmt_time(s.started_at), "finishedAt": fmt_time(s.finished_at),
                "items": _items(s.items),
                "failedItems": [_drop_none({
                    "index": f.index, "reason": f.reason, "message": f.message,
                    "finishedAt": fmt_time(f.finished_at)}) for f in s.failed_items] or None,
            })
            for name, s in m.step_state_items(status)
        },
        "outcome": None if status.outcome is None else _drop_none({
            "phase": status.outcome.phase.value, "reason": status.outcome.reason,
            "message": status.outcome.message,
            "decidedAt": fmt_time(status.outcome.decided_at),
        }),
        "stop": None if stop is None else _drop_none({
            "requestedAt": fmt_time(stop.requested_at),
            "observedAt": fmt_time(stop.observed_at),
            "completedAt": fmt_time(stop.completed_at),
            "trigger": stop.trigger.value if stop.trigger else None,
        }),
        "conditions": [
            _drop_none({
                "type": c.type, "status": c.status, "reason": c.reason,
                "message": c.message if c.message is not None else "",
                "lastTransitionTime": fmt_time(c.last_transition_time),
                "observedGeneration": c.observed_generation,
            })
            for c in status.conditions
        ] or None,
    })


def parse_run_status(status: Mapping[str, Any] | None) -> m.RunStatus:
    status = status or {}
    stop = status.get("stop")
    return m.RunStatus(
        phase=RunPhase(status["phase"]) if status.get("phase") else None,
        reason=status.get("reason"),
        message=status.get("message"),
        started_at=parse_time(status.get("startedAt")),
        finished_at=parse_time(status.get("finishedAt")),
        duration=status.get("duration"),
        step_states=m.step_states_from(
            (name, _step_state(s)) for name, s in (status.get("stepStates") or {}).items()),
        stop=None if not stop else m.StopState(
            requested_at=parse_time(stop.get("requestedAt")),
            observed_at=parse_time(stop.get("observedAt")),
            completed_at=parse_time(stop.get("completedAt")),
            trigger=StopTrigger(stop["trigger"]) if stop.get("trigger") else None,
        ),
        conditions=tuple(_condition(c) for c in status.get("conditions") or ()),
        observed_generation=status.get("observedGeneration"),
        progress=status.get("progress") or "",
        outcome=_outcome(status.get("outcome")),
    )


def _outcome(d: Mapping[str, Any] | None) -> m.Outcome | None:
    """The outcome as recorded; the core always writes decidedAt with it."""
    if not d:
        return None
    when = parse_time(d["decidedAt"])
    assert when is not None
    return m.Outcome(RunPhase(d["phase"]), d.get("reason"), d.get("message"), when)



# -- StepRun ---------------------------------------------------------------------------------


def steprun_status(status: m.StepRunStatus) -> dict[str, Any]:
    return _drop_none({
        "phase": status.phase.value,
        "reason": status.reason,
        "message": status.message,
        "attempts": status.attempts,
        "startedAt": fmt_time(status.started_at),
        "finishedAt": fmt_time(status.finished_at),
        "heartbeatAt": fmt_time(status.heartbeat_at),
        "outputs": dict(status.outputs) or None,
        "failureClass": status.failure_class.value if status.failure_class else None,
        "workload": None if status.workload is None else {
            "kind": status.workload.kind, "name": status.workload.name,
            **({"observed": True} if status.workload.observed else {})},
        "nextAttemptAt": fmt_time(status.next_attempt_at),
        "reusedFrom": None if status.reused_from is None else _reused_from(status.reused_from),
    })


def parse_steprun_status(status: Mapping[str, Any] | None) -> m.StepRunStatus | None:
    if not status or not status.get("phase"):
        return None
    workload = status.get("workload")
    return m.StepRunStatus(
        phase=StepPhase(status["phase"]),
        reason=status.get("reason"),
        message=status.get("message"),
        attempts=status.get("attempts", 0),
        started_at=parse_time(status.get("startedAt")),
        finished_at=parse_time(status.get("finishedAt")),
        heartbeat_at=parse_time(status.get("heartbeatAt")),
        outputs=m.frozen_outputs((status.get("outputs") or {}).items()),
        failure_class=FailureClass(status["failureClass"]) if status.get("failureClass")
        else None,
        workload=m.WorkloadRef(kind=workload["kind"], name=workload["name"],
                               observed=bool(workload.get("observed"))) if workload
        else None,
        next_attempt_at=parse_time(status.get("nextAttemptAt")),
        reused_from=_parse_reused_from(status["reusedFrom"]) if status.get("reusedFrom")
        else None,
    )


def new_steprun(run: Mapping[str, Any], step_spec: Mapping[str, Any], mode: str | None,
                name: str, deadline: dt.datetime | None, inputs_digest: str | None = None,
                item: tuple[int, Any] | None = None) -> dict[str, Any]:
    """A StepRun for a step, or for one `item` (index, value) of a fan-out step: its definition
    as it runs (references rendered; an item's without its forEach), plus where it belongs, the
    run's mode, its deadline and its inputs digest."""
    meta, step = run["metadata"], step_spec["name"]
    labels = {RUN_LABEL: meta["name"], STEP_LABEL: step}
    if item is not None:
        labels[ITEM_LABEL] = str(item[0])
        step_spec = {**{k: v for k, v in step_spec.items() if k != "forEach"},
                     "item": {"index": item[0], "value": item[1]}}
    return {
        "apiVersion": API_VERSION, "kind": "StepRun",
        "metadata": {
            "name": name, "namespace": meta["namespace"],
            "labels": labels,
            "finalizers": [FINALIZER],
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "StoryRun", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": _drop_none({
            **step_spec,
            "storyRun": meta["name"], "step": step, "mode": mode or _DEFAULT_MODE,
            "deadline": fmt_time(deadline), "inputsDigest": inputs_digest,
        }),
    }
