"""Reading a step's workload back: from a batch attempt's pod or a Deployment (and its pods) to
the core's `AttemptObservation`.

This is where Kubernetes' vocabulary (pod phases, container states, eviction and deadline
reasons) is translated into the few states the core reasons about. "Gone" is reported only when
the deletion was observed: absence alone means "not seen yet".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from runctl.api.wire import CONTAINER, FAILURE_CLASS_KEY
from runctl.machine import model as m
from runctl.machine.phases import FailureClass
from runctl.timefmt import parse_time

Obj = Mapping[str, Any]

# Waiting reasons after which a pod will not start without someone changing something.
STUCK_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError"})

def parse_outputs(message: str | None) -> tuple[dict[str, str], FailureClass | None]:
    """A step's outputs: its termination message, when that is a JSON object, as strings."""
    if not message:
        return {}, None
    try:
        data = json.loads(message)
    except ValueError:
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    hint_text = data.pop(FAILURE_CLASS_KEY, None)
    hint = FailureClass(hint_text) if hint_text in {c.value for c in FailureClass} else None
    outputs = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return outputs, hint


def _main_container(pod: Obj) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for s in statuses:
        if s.get("name") == CONTAINER:
            return dict(s)
    return dict(statuses[0]) if statuses else {}


def _latest(pods: Sequence[Obj]) -> Obj | None:
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")] or list(pods)
    if not live:
        return None
    return max(live, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def _pod_observation(attempt: int, pod: Obj, live_pods: int) -> m.AttemptObservation:
    status = pod.get("status", {})
    phase = status.get("phase")
    container = _main_container(pod)
    state = container.get("state") or {}
    terminated = state.get("terminated") or {}
    waiting = state.get("waiting") or {}
    started = parse_time((state.get("running") or {}).get("startedAt")
                          or terminated.get("startedAt") or status.get("startTime"))
    if phase == "Succeeded":
        outputs, hint = parse_outputs(terminated.get("message"))
        return m.AttemptObservation(
            attempt=attempt, state=m.WorkloadState.SUCCEEDED, exit_code=0, reason=None,
            message=terminated.get("message"), outputs=m.frozen_outputs(outputs.items()),
            failure_class_hint=hint, live_pods=live_pods, started_at=started,
            finished_at=parse_time(terminated.get("finishedAt")))
    if phase == "Failed":
        outputs, hint = parse_outputs(terminated.get("message"))
        reason = status.get("reason") or terminated.get("reason")
        return m.AttemptObservation(
            attempt=attempt, state=m.WorkloadState.FAILED,
            exit_code=terminated.get("exitCode"), reason=reason,
            message=terminated.get("message") or status.get("message"),
            outputs=m.frozen_outputs(outputs.items()), failure_class_hint=hint,
            live_pods=live_pods, started_at=started,
            finished_at=parse_time(terminated.get("finishedAt")))
    if waiting.get("reason") in STUCK_WAITING and waiting.get("reason") != "ErrImagePull":
        return m.AttemptObservation(
            attempt=attempt, state=m.WorkloadState.FAILED, exit_code=None,
            reason=waiting.get("reason"), message=waiting.get("message"),
            outputs=m.frozen_outputs(()), failure_class_hint=None, live_pods=live_pods,
            started_at=None, finished_at=None)
    running = phase == "Running" and bool(container.get("ready", True))
    return m.AttemptObservation(
        attempt=attempt, state=m.WorkloadState.RUNNING if running else m.WorkloadState.PENDING,
        exit_code=None, reason=None, message=None, outputs=m.frozen_outputs(()),
        failure_class_hint=None, live_pods=live_pods, started_at=started, finished_at=None)


def _empty(attempt: int, state: m.WorkloadState, reason: str | None = None,
           message: str | None = None, live_pods: int = 0) -> m.AttemptObservation:
    return m.AttemptObservation(
        attempt=attempt, state=state, exit_code=None, reason=reason, message=message,
        outputs=m.frozen_outputs(()), failure_class_hint=None, live_pods=live_pods,
        started_at=None, finished_at=None)


def _live(pods: Sequence[Obj]) -> int:
    return sum(1 for p in pods
               if not p["metadata"].get("deletionTimestamp")
               and p.get("status", {}).get("phase") not in ("Succeeded", "Failed"))


def observe_pod(attempt: int, pod: Obj | None, deleted: bool) -> m.AttemptObservation:
    """One batch attempt, from its pod, and whether a stop of it is already under way (the pod
    is being deleted, or is gone), so nothing is sent twice and a late success is reported once.

    How a pod ended wins over its deletion; a pod deleted or being deleted before it ended is
    `Gone` (its work with it: the step is Lost, unless a stop of the run explains it)."""
    if pod is None:
        return replace(_empty(attempt, m.WorkloadState.GONE if deleted
                              else m.WorkloadState.ABSENT), stopping=deleted)
    stopping = bool(pod["metadata"].get("deletionTimestamp"))
    obs = _pod_observation(attempt, pod, _live([pod]))
    if stopping and obs.state not in (m.WorkloadState.SUCCEEDED, m.WorkloadState.FAILED):
        obs = _empty(attempt, m.WorkloadState.GONE)
    return replace(obs, stopping=stopping)


def observe_deployment(deployment: Obj | None, pods: Sequence[Obj],
                       deleted: bool) -> m.AttemptObservation:
    """A realtime step, and whether a stop of it is already under way (being deleted, scaled to
    zero, or gone with no pod left running)."""
    obs = _deployment_state(deployment, pods, deleted)
    if deployment is not None:
        stopping = (bool(deployment["metadata"].get("deletionTimestamp"))
                    or deployment.get("spec", {}).get("replicas") == 0)
    else:
        stopping = deleted and obs.live_pods == 0
    return replace(obs, stopping=stopping)


def _deployment_state(deployment: Obj | None, pods: Sequence[Obj],
                      deleted: bool) -> m.AttemptObservation:
    """Running while a pod of it is running and ready."""
    live = _live(pods)
    if deployment is None:
        return _empty(1, m.WorkloadState.GONE if deleted else m.WorkloadState.ABSENT,
                      live_pods=live)
    if deployment["metadata"].get("deletionTimestamp") and live == 0:
        return _empty(1, m.WorkloadState.GONE)
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp")
             and p.get("status", {}).get("phase") == "Running"]
    if ready:
        return _pod_observation(1, ready[0], live)
    pod = _latest(pods)
    if pod is not None:
        obs = _pod_observation(1, pod, live)
        if obs.state is m.WorkloadState.FAILED:
            return obs
    return _empty(1, m.WorkloadState.PENDING, live_pods=live)
