"""Named, reusable pieces of observed state for table tests: one run "r", times in seconds
from T0, StepRuns named `r-<step>` with Jobs `r-<step>-<attempt>`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runctl.machine import model as m
from runctl.machine.phases import Mode, RunPhase, StepPhase

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RUN = "r"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def step(name: str, *needs: str, **kw: Any) -> m.StepSpec:
    return m.StepSpec(name, tuple(needs), **kw)


def spec(*steps: m.StepSpec, **kw: Any) -> m.RunSpec:
    return m.RunSpec(tuple(steps), **kw)


def ref(name: str, attempt: int = 1, mode: Mode = Mode.BATCH) -> m.WorkloadRef:
    if mode is Mode.REALTIME:
        return m.WorkloadRef("Deployment", f"{RUN}-{name}")
    return m.WorkloadRef("Job", f"{RUN}-{name}-{attempt}")


def sr_status(name: str, phase: StepPhase = StepPhase.RUNNING, *, attempts: int = 1,
              started: float = 0, finished: float | None = None, mode: Mode = Mode.BATCH,
              **kw: Any) -> m.StepRunStatus:
    return m.StepRunStatus(phase=phase, attempts=attempts, started_at=at(started),
                           finished_at=None if finished is None else at(finished),
                           workload=ref(name, attempts, mode), **kw)


def entry(name: str, status: m.StepRunStatus) -> m.StepState:
    """The stepStates entry that mirrors a StepRun status."""
    return m.StepState(status.phase, status.reason, status.message, f"{RUN}-{name}",
                       status.attempts, status.started_at, status.finished_at)


def pending(step_run: str | None = None) -> m.StepState:
    return m.StepState(StepPhase.PENDING, step_run=step_run)


def work(state: m.WorkloadState, attempt: int = 1, **kw: Any) -> m.AttemptObservation:
    live = 1 if state in (m.WorkloadState.PENDING, m.WorkloadState.RUNNING) else 0
    return m.AttemptObservation(attempt, state, **{"live_pods": live, **kw})


def seen(name: str, status: m.StepRunStatus | None, attempt: m.AttemptObservation | None,
         **kw: Any) -> m.StepRunObservation:
    return m.StepRunObservation(f"{RUN}-{name}", status, attempt=attempt, **kw)


def run_status(phase: RunPhase | None, states: dict[str, m.StepState], *,
               started: float | None = 0, **kw: Any) -> m.RunStatus:
    return m.RunStatus(phase=phase, step_states=m.step_states_from(states.items()),
                       started_at=None if started is None else at(started), **kw)


def observed(run_spec: m.RunSpec, status: m.RunStatus | None = None,
             runs: dict[str, m.StepRunObservation] | None = None, **kw: Any) -> m.Observed:
    return m.Observed(RUN, 1, T0, run_spec, status or m.RunStatus(),
                      m.frozen_step_runs((runs or {}).items()), **kw)
