"""Named, reusable pieces of observed state for table tests: one run "r", times in seconds
from T0, StepRuns named `r-<step>` with pods `r-<step>-<attempt>`."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from runctl.api.wire import run_spec
from runctl.machine import model as m
from runctl.machine.phases import Mode, RunPhase, StepPhase

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RUN = "r"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def step(name: str, *needs: str, **kw: Any) -> m.StepSpec:
    return m.StepSpec(name, tuple(needs), **kw)


API_DEFAULTS = run_spec({"steps": [{"name": "a", "image": "x"}]})
"""A spec that sets nothing: what the API models default every run-level field to."""


def retry(limit: int, backoff_seconds: int = 0, transient_exit_codes: tuple[int, ...] = (),
          *, factor: int = 1, max_backoff_seconds: int | None = None) -> m.RetryPolicy:
    return m.RetryPolicy(limit=limit, backoff_seconds=backoff_seconds, backoff_factor=factor,
                         max_backoff_seconds=max_backoff_seconds,
                         transient_exit_codes=transient_exit_codes)


def spec(*steps: m.StepSpec, **kw: Any) -> m.RunSpec:
    return replace(API_DEFAULTS, steps=tuple(steps), **kw)


def ref(name: str, attempt: int = 1, mode: Mode = Mode.BATCH) -> m.WorkloadRef:
    if mode is Mode.REALTIME:
        return m.WorkloadRef("Deployment", f"{RUN}-{name}")
    return m.WorkloadRef("Pod", f"{RUN}-{name}-{attempt}")


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


# -- whole runs ------------------------------------------------------------------------------

UNKNOWN = m.Condition("Succeeded", "Unknown", "Running", None, T0, 1)


def running_run(run_spec: m.RunSpec, steps: dict[str, tuple[m.StepRunStatus | None,
                                                              m.AttemptObservation | None]],
                *, phase: RunPhase = RunPhase.RUNNING, extra: dict[str, m.StepState] | None = None,
                stop: m.StopState | None = None, conditions: tuple[m.Condition, ...] = (UNKNOWN,),
                **kw: Any) -> m.Observed:
    """A run reconciled before: its recorded entries mirror the StepRuns given; every other
    step is a Pending entry (or as `extra` says)."""
    entries: dict[str, m.StepState] = {s.name: pending()
                                       for s in (*run_spec.steps, *run_spec.finally_steps)}
    runs: dict[str, m.StepRunObservation] = {}
    for name, (status, attempt) in steps.items():
        if status is not None:
            entries[name] = entry(name, status)
        runs[name] = seen(name, status, attempt)
    entries.update(extra or {})
    done = sum(1 for e in entries.values() if e.phase not in (StepPhase.PENDING,
                                                              StepPhase.RUNNING))
    return observed(run_spec, run_status(phase, entries, stop=stop, conditions=conditions,
                                         observed_generation=1,
                                         progress=f"{done}/{len(entries)}"), runs, **kw)


def expect(before: m.Observed, phase: RunPhase, changes: dict[str, m.StepState] | None = None,
           *, reason: str | None = None, message: str | None = None, now: float = 0,
           duration: str | None = None, stop: m.StopState | None = None,
           condition: m.Condition | None = None, outcome: m.Outcome | None = None
           ) -> m.RunStatus:
    """The status `before` becomes: its entries with `changes`, the rest spelled out (a
    terminal run with no outcome given records its end as its outcome)."""
    states = dict(before.status.step_states) | (changes or {})
    terminal = phase in {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELED,
                         RunPhase.TIMED_OUT}
    done = sum(1 for s in states.values() if s.phase not in (StepPhase.PENDING,
                                                             StepPhase.RUNNING))
    if condition is None:
        flag: m.ConditionStatus = ("True" if phase is RunPhase.SUCCEEDED else
                                   "False" if terminal else "Unknown")
        since = at(now) if terminal else T0
        condition = m.Condition("Succeeded", flag, reason or phase.value, message, since, 1)
    others = tuple(c for c in before.status.conditions if c.type != "Succeeded")
    return m.RunStatus(phase=phase, reason=reason, message=message,
                       started_at=before.status.started_at or at(now),
                       finished_at=at(now) if terminal else None, duration=duration,
                       step_states=m.step_states_from(states.items()), stop=stop,
                       conditions=(condition, *others), observed_generation=1,
                       progress=f"{done}/{len(states)}",
                       outcome=outcome or before.status.outcome or (
                           m.Outcome(phase, reason, message, at(now)) if terminal else None))
