"""Deterministic names of what the operator creates, so a restarted or second operator finds
the object it would have made instead of making another (docs/API.md guarantee 9)."""

from __future__ import annotations

import hashlib

from runctl.machine.model import WorkloadRef
from runctl.machine.phases import Mode

MAX_STEP_RUN_NAME = 60
"""63 (a label value and a pod's hostname) less room for `-<attempt>` up to -11."""
_HASH = 8


def step_run_name(run: str, step: str) -> str:
    """`<run>-<step>`, or when longer than MAX_STEP_RUN_NAME a prefix of it plus `-<hash>` of
    the whole, so two long names that share a prefix still differ."""
    name = f"{run}-{step}".lower()
    if len(name) <= MAX_STEP_RUN_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH]
    prefix = name[: MAX_STEP_RUN_NAME - _HASH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def workload_ref(mode: Mode, step_run: str, attempt: int) -> WorkloadRef:
    """A batch attempt is the pod `<steprun>-<attempt>`; a realtime step is the Deployment
    named like its StepRun (Kubernetes restarts its pods; the core does not retry it)."""
    if mode is Mode.REALTIME:
        return WorkloadRef(kind="Deployment", name=step_run)
    return WorkloadRef(kind="Pod", name=f"{step_run}-{attempt}")
