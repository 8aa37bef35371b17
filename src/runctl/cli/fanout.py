"""A fan-out step as the CLI reads it: counts from the run's record, items from their StepRuns.

A fan-out step has no StepRun of its own: its line in `runctl get` comes from the counts and
first failures the run records (`status.stepStates.<step>.items` and `.failedItems`), which stay
small at any width; each item is a StepRun labelled with its index, listed a page at a time
(`runctl get RUN --items STEP`). The run's tree and `runctl watch` never read the items' StepRuns,
so they cost the same at 10 items as at 10,000. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runctl.api.wire import ITEM_LABEL, RUN_LABEL, STEP_LABEL
from runctl.machine.phases import STEP_FAILURES, STEP_TERMINAL, StepPhase

FAILED = tuple(p for p in StepPhase if p in STEP_FAILURES)
"""The phases counted under `✖`: the item ended without succeeding, of itself."""


@dataclass(frozen=True)
class FailedItem:
    index: int
    reason: str
    message: str


@dataclass(frozen=True)
class Items:
    """The counts of a fan-out step's items by phase, and the first of them to fail."""

    total: int
    counts: Mapping[str, int]
    failed_items: tuple[FailedItem, ...]

    def count(self, *phases: StepPhase) -> int:
        return sum(self.counts.get(p.value, 0) for p in phases)

    @property
    def done(self) -> int:
        return self.count(*STEP_TERMINAL)

    @property
    def failed(self) -> int:
        return self.count(*FAILED)


def fan_out_steps(storyrun: Mapping[str, Any]) -> frozenset[str]:
    """The names of the run's steps (main and finally) that have `forEach`: in the run's own
    spec, or in the Story's spec the run recorded when it resolved it."""
    spec = storyrun.get("spec") or {}
    if spec.get("steps") is None:
        spec = ((storyrun.get("status") or {}).get("resolved") or {}).get("spec") or {}
    steps = [*(spec.get("steps") or ()), *(spec.get("finally") or ())]
    return frozenset(s["name"] for s in steps if s.get("forEach") is not None)


def items_of(state: Mapping[str, Any] | None) -> Items | None:
    """The items a step's record counts, or None when it counts none (not a fan-out, or not
    evaluated yet)."""
    recorded = (state or {}).get("items")
    if recorded is None:
        return None
    counts = {phase: int(n) for phase, n in recorded.items() if phase != "total" and n}
    failed = tuple(FailedItem(index=int(f["index"]), reason=f.get("reason") or "",
                              message=" ".join((f.get("message") or "").split()))
                   for f in (state or {}).get("failedItems") or ())
    return Items(total=int(recorded.get("total", 0)), counts=counts, failed_items=failed)


def steps_selector(run: str) -> str:
    """The run's StepRuns but its items': what the tree and `watch` read."""
    return f"{RUN_LABEL}={run},!{ITEM_LABEL}"


def items_selector(run: str, step: str) -> str:
    """The StepRuns of one fan-out step's items."""
    return f"{RUN_LABEL}={run},{STEP_LABEL}={step},{ITEM_LABEL}"


def item_index(step_run: Mapping[str, Any]) -> int:
    """An item StepRun's index, from its label (set by the operator, a decimal number)."""
    return int(((step_run.get("metadata") or {}).get("labels") or {})[ITEM_LABEL])
