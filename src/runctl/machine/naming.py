"""Deterministic names of what the operator creates, so a restarted or second operator finds
the object it would have made instead of making another (docs/API.md guarantee 9)."""

from __future__ import annotations

import hashlib

from runctl.machine.model import WorkloadRef
from runctl.machine.phases import Mode

MAX_STEP_RUN_NAME = 60
"""63 (a label value and a pod's hostname) less room for `-<attempt>` up to -11."""
_HASH = 8
_REALTIME = Mode.REALTIME
"""Bound once: every item started reads it, and on Python 3.11 reading a member off its Enum
class costs several times a global's."""


def item_key(step: str, index: int) -> str:
    """How the core names one item of a fan-out step: `<step>[<index>]`. A step name is a
    DNS label, so it never holds brackets and no key of an item is ever a step's name."""
    return f"{step}[{index}]"


def item_keys(step: str, total: int) -> list[str]:
    """`item_key` of each of a step's `total` items, in index order, made at a fraction of
    the cost of calling it for each (a wide fan-out's are looked up at every decision)."""
    prefix = f"{step}["
    return [f"{prefix}{i}]" for i in range(total)]


def parse_key(key: str) -> tuple[str, int | None]:
    """The step and, for an item, its index, of a key `item_key` made or a step's name."""
    step, bracket, rest = key.partition("[")
    return (step, int(rest[:-1])) if bracket else (step, None)


def step_run_name(run: str, key: str) -> str:
    """`<run>-<step>` for a step, `<run>-<step>-<index>` for an item (`key` is `item_key`'s),
    or when longer than MAX_STEP_RUN_NAME a prefix of it plus `-<hash>` of the whole, so two
    long names that share a prefix still differ. No step may be named like an item of another
    (`dag.validate`), so the names of two children never meet."""
    step, index = parse_key(key)
    name = (f"{run}-{step}" if index is None else f"{run}-{step}-{index}").lower()
    if len(name) <= MAX_STEP_RUN_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH]
    prefix = name[: MAX_STEP_RUN_NAME - _HASH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def workload_ref(mode: Mode, step_run: str, attempt: int) -> WorkloadRef:
    """A batch attempt is the pod `<steprun>-<attempt>`; a realtime step is the Deployment
    named like its StepRun (Kubernetes restarts its pods; the core does not retry it)."""
    if mode is _REALTIME:
        return WorkloadRef(kind="Deployment", name=step_run)
    return WorkloadRef(kind="Pod", name=f"{step_run}-{attempt}")
