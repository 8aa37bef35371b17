"""The snapshot a decision is made on: one run and its children, read from the cache alone.

This is the only place where cached API objects become the core's `Observed`, so a reconcile
reads as snapshot, decide, apply. It makes no API call: what the cache lacks was not seen yet,
and only a deletion the cache saw (a tombstone) counts as gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from runctl.api import wire
from runctl.api.wire import STEP_LABEL, STEPRUN_UID_LABEL
from runctl.flow import definition as flow_definition
from runctl.flow import items as flow_items
from runctl.flow import outputs as flow_outputs
from runctl.machine import model as m
from runctl.machine.actions import EventReason
from runctl.machine.naming import item_key, item_keys, parse_key, step_run_name, workload_ref
from runctl.machine.phases import STEP_TERMINAL, FailureClass, Mode, StepPhase
from runctl.operator import rerun, resolve
from runctl.operator.cache import ObjectCache, RunKey, owned_by
from runctl.operator.memo import PerGeneration
from runctl.timefmt import parse_time
from runctl.workloads import observe as reading

Obj = Mapping[str, Any]


def mine(workload: dict[str, Any] | None, steprun_uid: str) -> dict[str, Any] | None:
    """The workload if it belongs to this StepRun (not to an earlier one of the same name): it
    names the StepRun as its owner, or carries its uid label (which outlives an owner
    reference the garbage collector removed when the StepRun was deleted orphaning it)."""
    if workload is None:
        return None
    labelled = workload["metadata"].get("labels", {}).get(STEPRUN_UID_LABEL) == steprun_uid
    return workload if labelled or owned_by(workload, steprun_uid) else None


_SPECS: PerGeneration[m.RunSpec] = PerGeneration()


def _spec(run: Obj, definition: resolve.Definition) -> m.RunSpec:
    """The spec the core decides on, read through the API models once per generation while
    the run executes its own spec or its record (both fixed); a run of a Story (or a re-run)
    not recorded yet is read afresh."""
    if wire.executes_record(run["spec"]) and "resolved" not in (run.get("status") or {}):
        return wire.run_spec(run["spec"], definition.spec)
    return _SPECS.get(run, lambda: wire.run_spec(run["spec"], definition.spec))


def snapshot(cache: ObjectCache, key: RunKey, run: Obj,
             definition: resolve.Definition) -> m.Observed:
    """Everything the core needs to know about one run: its spec (what it executes) and status,
    for each step its StepRun and the workload of the attempt that StepRun's status names (a
    success's outputs checked against the step's declarations), and the gates of the steps
    whose inputs are there."""
    ns, name = key
    spec = _spec(run, definition)
    declared = {s["name"]: s.get("outputs") for s in definition.steps(run)}
    status = wire.parse_run_status(run.get("status"))
    run_uid = run["metadata"].get("uid")
    pods_by_steprun: dict[str, list[Obj]] = {}  # a Deployment's pods (a batch pod is named)
    for pod in cache.children("Pod", key) if spec.mode is Mode.REALTIME else ():
        uid = pod["metadata"]["labels"].get(STEPRUN_UID_LABEL, "")
        pods_by_steprun.setdefault(uid, []).append(pod)

    step_runs: dict[str, m.StepRunObservation] = {}
    for sr in cache.children("StepRun", key):
        if not owned_by(sr, run_uid):
            continue  # a StepRun of an earlier run of the same name, on its way out
        sr_status = wire.parse_steprun_status(sr.get("status"))
        step_runs[wire.key_of(sr["metadata"]["labels"])] = m.StepRunObservation(
            name=sr["metadata"]["name"],
            status=sr_status,
            deleting=bool(sr["metadata"].get("deletionTimestamp")),
            gone=False,
            attempt=_checked(_attempt(cache, ns, Mode(sr["spec"].get("mode", spec.mode)),
                                      sr, sr_status,
                                      pods_by_steprun.get(sr["metadata"]["uid"], [])),
                             declared.get(sr["metadata"]["labels"].get(STEP_LABEL, ""))),
            created_at=parse_time(sr["metadata"].get("creationTimestamp")),
        )
    states = dict(m.step_state_items(status))
    for step, state in states.items():
        if step in step_runs or not state.step_run:
            continue
        if cache.was_deleted("StepRun", ns, state.step_run, run_uid):
            step_runs[step] = m.StepRunObservation(
                name=state.step_run, status=None, deleting=True, gone=True, attempt=None)
    for item in _read_items(spec, states):
        item_run = step_run_name(name, item)
        if item not in step_runs and cache.was_deleted("StepRun", ns, item_run, run_uid):
            step_runs[item] = m.StepRunObservation(
                name=item_run, status=None, deleting=True, gone=True, attempt=None)
    for refusal in cache.refused("StepRun", ns, run_uid):  # the few of this run, if any
        if refusal.key and refusal.key not in step_runs and _of_spec(spec, refusal.key):
            step_runs[refusal.key] = m.StepRunObservation(  # a step's, or an item's
                name=refusal.name, status=None, attempt=refused(1, refusal.message))

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
        cancel_requested_at=wire.cancel_requested_at(run) if spec.cancel_requested
        else None,
        gates=_gates(run, definition, step_runs, states),
        story_wait=definition.wait,
        reused=definition.reused + _reused_items(cache, run, definition, spec, step_runs,
                                                 states),
        problems=definition.problems,
    )


def _read_items(spec: m.RunSpec, states: Mapping[str, m.StepState]) -> list[str]:
    """The items of each fan-out step that succeeded and that a step not ended reads: the
    core fails what of that reader is not made yet once one of their StepRuns is seen deleted
    (its outputs went with it). Any other item's deletion is of no use to it, so it is not
    looked up (a wide fan-out's items would cost a look-up each at every reconcile)."""
    steps = (*spec.steps, *spec.finally_steps)
    read = {producer for s in steps
            if s.name not in states or states[s.name].phase not in STEP_TERMINAL
            for producer, _ in s.consumes}
    keys: list[str] = []
    for s in steps:
        state = states.get(s.name)
        if (s.for_each is not None and s.name in read and state is not None
                and state.items is not None and state.phase is StepPhase.SUCCEEDED):
            keys += item_keys(s.name, state.items.total)
    return keys


def _of_spec(spec: m.RunSpec, key: str) -> bool:
    """Is `key` a step of the spec, or an item of one of its steps?"""
    step = parse_key(key)[0]
    return any(s.name == step for s in (*spec.steps, *spec.finally_steps))


def _reused_items(cache: ObjectCache, run: Obj, definition: resolve.Definition,
                  spec: m.RunSpec, step_runs: Mapping[str, m.StepRunObservation],
                  states: Mapping[str, m.StepState]) -> tuple[tuple[str, m.Reuse], ...]:
    """A recorded re-run's fan-out steps that may reuse items (main steps not ended, not named
    in `rerun.from`, every step they need reused), with their items not made yet: which of
    those it reuses (`rerun.reused_items`). Nothing for any other run."""
    if "rerun" not in (run.get("status") or {}) or spec.mode is Mode.REALTIME:
        return ()
    reused = {step for step, _ in definition.reused}
    again = set((run["spec"].get("rerun") or {}).get("from") or ())
    candidates = [s for s in spec.steps if s.for_each is not None and s.name not in again
                  and all(n in reused for n in s.needs) and (
                      s.name not in states or states[s.name].phase not in STEP_TERMINAL)]
    if not candidates:
        return ()
    offered = resolve.produced(run, definition,
                               {key: obs.status for key, obs in step_runs.items()}, states)
    fan_outs = []
    for candidate in candidates:
        step = definition.step(run, candidate.name)
        found = resolve.items_of(run, step, definition.params, offered, definition.facts, states)
        if found.gate is None or not found.gate.holds:
            continue
        unmade = frozenset(
            i for i in range(len(found.items)) if i not in found.gate.skipped and (
                (obs := step_runs.get(item_key(candidate.name, i))) is None
                or (obs.status is None and not obs.gone)))
        if unmade:
            fan_outs.append(rerun.FanOut(step, found.items, unmade))
    return rerun.reused_items(cache, run, spec, definition.params, offered.outputs, fan_outs,
                              reused)


def _checked(attempt: m.AttemptObservation, declared: Sequence[Obj] | None
             ) -> m.AttemptObservation:
    """A success's outputs as its declarations make them (`runctl.flow.outputs`): checked,
    defaults filled in, or the problem that fails the step."""
    if attempt.state is not m.WorkloadState.SUCCEEDED or not declared:
        return attempt
    checked = flow_outputs.check(attempt.message, declared)
    if checked.reason is not None:
        return replace(attempt, outputs=(), output_problem=(checked.reason,
                                                            checked.message or checked.reason))
    return replace(attempt, outputs=checked.outputs, defaulted=checked.defaulted)


def _gates(run: Obj, definition: resolve.Definition,
           step_runs: Mapping[str, m.StepRunObservation],
           states: Mapping[str, m.StepState]) -> tuple[tuple[str, m.Gate], ...]:
    """The gate of every gated step not started yet whose inputs are all there (a reused step
    has none: it is not evaluated again), and of every fan-out step not ended (its items are
    read from its gate as long as it goes)."""
    reused = {step for step, _ in definition.reused}
    waiting = [s for s in definition.steps(run)
               if (s.get("when") or flow_definition.consumes(s) or flow_definition.reads_facts(s))
               and s["name"] not in step_runs and s["name"] not in reused
               and not flow_items.fans_out(s)]
    fanning = [s for s in definition.steps(run) if flow_items.fans_out(s) and (
        s["name"] not in states or states[s["name"]].phase not in STEP_TERMINAL)]
    if not waiting and not fanning:
        return ()
    offered = resolve.produced(run, definition,
                               {key: obs.status for key, obs in step_runs.items()}, states)
    gates = [(s["name"], resolve.gate(s, definition.params, offered, definition.facts))
             for s in waiting]
    gates += [(s["name"], resolve.items_of(run, s, definition.params, offered,
                                           definition.facts, states).gate) for s in fanning]
    return tuple(sorted(((n, g) for n, g in gates if g is not None), key=lambda ng: ng[0]))


def _attempt(cache: ObjectCache, ns: str, mode: Mode, sr: Obj,
             sr_status: m.StepRunStatus | None, pods: Sequence[Obj]) -> m.AttemptObservation:
    """The workload of a StepRun's current attempt: its Deployment with its pods (realtime), or
    the pod of the attempt its status counts (batch)."""
    sr_name, sr_uid = sr["metadata"]["name"], sr["metadata"]["uid"]
    if mode is Mode.REALTIME:
        live = reading.observe_deployment(
            mine(cache.get("Deployment", ns, sr_name), sr_uid), pods,
            cache.was_deleted("Deployment", ns, sr_name, sr_uid))
        why = cache.refusal("Deployment", ns, sr_name, sr_uid)
        return refused(1, why) if live.state is m.WorkloadState.ABSENT and why else live
    number = max(1, sr_status.attempts if sr_status else 1)
    pod = workload_ref(Mode.BATCH, sr_name, number).name
    seen = reading.observe_pod(number, mine(cache.get("Pod", ns, pod), sr_uid),
                               cache.was_deleted("Pod", ns, pod, sr_uid))
    why = cache.refusal("Pod", ns, pod, sr_uid)
    return refused(number, why) if seen.state is m.WorkloadState.ABSENT and why else seen


def refused(attempt: int, message: str) -> m.AttemptObservation:
    """A child the API server refused to create as invalid (`ObjectCache.refuse`; a forbidden
    create is tried again instead): the attempt failed, and sending the same create again
    cannot help (Permanent)."""
    return m.AttemptObservation(attempt=attempt, state=m.WorkloadState.FAILED,
                                reason=EventReason.CREATE_REFUSED, message=message,
                                failure_class_hint=FailureClass.PERMANENT)
