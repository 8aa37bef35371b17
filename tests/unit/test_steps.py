"""The step-level ladder's building blocks that are made for speed: what they build is what
the plain way builds."""

from __future__ import annotations

from dataclasses import fields, replace

from runctl.machine import model as m
from runctl.machine.phases import FailureClass, StepPhase
from runctl.machine.steps import seen
from tests.unit.builders import at


def test_a_status_recorded_seen_is_the_status_with_its_workload_seen() -> None:
    every = {
        "phase": StepPhase.RUNNING, "reason": "r", "message": "m", "attempts": 2,
        "started_at": at(1), "finished_at": at(2), "heartbeat_at": at(3),
        "outputs": (("o", "v"),), "failure_class": FailureClass.TRANSIENT,
        "workload": m.WorkloadRef("Pod", "r-a-2"), "next_attempt_at": at(4),
        "reused_from": m.ReusedFrom("src", "src-a", "u"),
    }
    # Every field is set, so a field added later and not carried over shows here.
    assert set(every) == {f.name for f in fields(m.StepRunStatus)}
    status = m.StepRunStatus(**every)  # type: ignore[arg-type]
    made = seen(status, m.WorkloadRef("Pod", "r-a-2"))
    assert made == replace(status, workload=m.WorkloadRef("Pod", "r-a-2", observed=True))
    assert made.workload is not None
    assert made.workload.observed
    assert all(getattr(made, f) == v for f, v in every.items() if f != "workload")
