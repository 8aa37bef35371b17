"""How a step becomes a workload: a pod per attempt, or a Deployment (and a Service).

The builders are pure: they take the StepRun object as read from the API and return manifests.
Names are deterministic (`<steprun>-<attempt>` for a batch attempt's pod, the StepRun's name for a
Deployment), so creating twice is harmless: the second create is refused as AlreadyExists.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from runctl.api.wire import (
    API_VERSION,
    ATTEMPT_LABEL,
    CONTAINER,
    ITEM_LABEL,
    RUN_LABEL,
    STEP_LABEL,
    STEPRUN_UID_LABEL,
)
from runctl.machine.naming import workload_ref
from runctl.machine.phases import Mode

Manifest = dict[str, Any]


def _owner(steprun: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = steprun["metadata"]
    return [{
        "apiVersion": API_VERSION, "kind": "StepRun", "name": meta["name"],
        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
    }]


def _labels(steprun: Mapping[str, Any]) -> dict[str, str]:
    spec = steprun["spec"]
    item = {ITEM_LABEL: str(spec["item"]["index"])} if spec.get("item") else {}
    return {RUN_LABEL: spec["storyRun"], STEP_LABEL: spec["step"], **item,
            STEPRUN_UID_LABEL: steprun["metadata"]["uid"]}


def _pod_parts(spec: Mapping[str, Any], restart_policy: str,
               extra_labels: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A step's pod: its metadata (the step's labels and annotations, then runctl's labels) and
    its spec."""
    pod = spec.get("pod") or {}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec["image"],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    for field in ("command", "args"):
        if spec.get(field):
            container[field] = list(spec[field])
    if spec.get("env"):
        container["env"] = [dict(e) for e in spec["env"]]
    if spec.get("port"):
        container["ports"] = [{"name": "main", "containerPort": spec["port"]}]
    pod_spec: dict[str, Any] = {"restartPolicy": restart_policy, "containers": [container]}
    if pod.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = pod["serviceAccountName"]
    else:
        # A step that names no service account gets no API credentials at all.
        pod_spec["automountServiceAccountToken"] = False
    if pod.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(pod["nodeSelector"])
    if pod.get("tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in pod["tolerations"]]
    metadata = {
        "labels": {**(pod.get("labels") or {}), **extra_labels},
        "annotations": dict(pod.get("annotations") or {}),
    }
    return metadata, pod_spec


def _seconds_until(deadline: str | None, now: dt.datetime) -> int | None:
    if not deadline:
        return None
    when = dt.datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    return max(1, math.ceil((when - now).total_seconds()))


def build_pod(steprun: Mapping[str, Any], attempt: int, now: dt.datetime) -> Manifest:
    """One attempt of a batch step: a pod that runs once (`restartPolicy: Never`; runctl owns
    retries, so it can classify failures), owned by its StepRun. Its `activeDeadlineSeconds` is
    the attempt's timeout capped by the run's deadline, so the kubelet ends it on time even while
    no operator is there to."""
    spec = steprun["spec"]
    labels = {**_labels(steprun), ATTEMPT_LABEL: str(attempt)}
    metadata, pod_spec = _pod_parts(spec, "Never", labels)
    limits = [s for s in (spec.get("timeoutSeconds"), _seconds_until(spec.get("deadline"), now))
              if s]
    if limits:
        pod_spec["activeDeadlineSeconds"] = min(limits)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            **metadata,
            "name": workload_ref(Mode.BATCH, steprun["metadata"]["name"], attempt).name,
            "namespace": steprun["metadata"]["namespace"],
            "ownerReferences": _owner(steprun),
        },
        "spec": pod_spec,
    }


def build_deployment(steprun: Mapping[str, Any], grace_seconds: int) -> Manifest:
    """A realtime step: one long-lived replica, kept running until the run's topology ends.
    Its pods get the run's shutdown grace (`grace_seconds`) from whoever deletes them: a stop
    scales the Deployment to zero, and the ReplicaSet controller deletes them with the grace
    their spec carries."""
    spec = steprun["spec"]
    labels = _labels(steprun)
    metadata, pod_spec = _pod_parts(spec, "Always", labels)
    pod_spec["terminationGracePeriodSeconds"] = grace_seconds
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": steprun["metadata"]["name"],
            "namespace": steprun["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": _owner(steprun),
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": metadata, "spec": pod_spec},
        },
    }


def build_service(steprun: Mapping[str, Any]) -> Manifest | None:
    """A Service for a realtime step that declares a port; None when it declares none."""
    spec = steprun["spec"]
    if not spec.get("port"):
        return None
    labels = _labels(steprun)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": steprun["metadata"]["name"],
            "namespace": steprun["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": _owner(steprun),
        },
        "spec": {
            "selector": labels,
            "ports": [{"name": "main", "port": spec["port"], "targetPort": "main"}],
        },
    }
