"""The step-level ladder's building blocks that are made for speed: what they build is what
the plain way builds."""

from __future__ import annotations

from dataclasses import fields, replace

from runctl.machine import model as m
from runctl.machine.phases import FailureClass, StepPhase
from runctl.machine.steps import Rest, Track, seen, start_first, state_of
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


def test_a_step_run_made_now_is_the_track_with_its_first_status() -> None:
    status = m.StepRunStatus(StepPhase.PENDING, attempts=1, started_at=at(0))
    every = {
        "spec": m.StepSpec("a"), "recorded": m.StepState(StepPhase.PENDING),
        "observation": m.StepRunObservation("r-a"), "state": m.StepState(StepPhase.PENDING),
        "status": None, "late_report": True, "standing": None, "items": (),
        "rest": Rest(waiting=(1,)),
    }
    # Every field is set, so a field added later and not carried over shows here.
    assert set(every) == {f.name for f in fields(Track)}
    track = Track(**every)  # type: ignore[arg-type]
    assert start_first(track, status, "r-a") == replace(
        track, status=status, state=state_of(status, "r-a"), standing=status)
