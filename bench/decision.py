"""The pure decision at runctl's item limit: `decide()` alone, no control plane.

A fan-out of 10,000 items, 500 at once, caught mid-way: 6,000 items ended, 500 running, 3,500
not started. The operator decides on such a run at every event of it, so what one decision
costs bounds how fast a wide fan-out can go. Three shapes: the ended items' pods still there;
their pods gone; and 500 items ending in the decision (their pods succeeded, their StepRuns
not written yet), so 500 more start.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from bench.report import Report
from runctl.api.wire import run_spec
from runctl.machine import model as m
from runctl.machine.decide import decide
from runctl.machine.phases import RunPhase, StepPhase

ITEMS, PARALLELISM, ENDED, RUNNING = 10_000, 500, 6_000, 500
TARGET_MS = 20
REPEATS = 31
"""Decisions timed per shape (after two untimed): the median is the figure. Timed as this
process's CPU time, so what else runs on the machine counts only through the caches and the
core it shares: with 7 a burst of that moved the median by half, with 31 it moves it little."""

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
W = m.WorkloadState


def _status(index: int, phase: StepPhase, finished: bool) -> m.StepRunStatus:
    """As written once its pod was seen (running, then ended): its workload recorded seen."""
    return m.StepRunStatus(phase=phase, attempts=1, started_at=T0,
                           finished_at=T0 + dt.timedelta(seconds=5) if finished else None,
                           workload=m.WorkloadRef("Pod", f"r-f-{index}-1", observed=True))


def _pod(state: m.WorkloadState) -> m.AttemptObservation:
    return m.AttemptObservation(1, state, live_pods=1 if state is W.RUNNING else 0)


def observed(shape: str) -> m.Observed:
    """The run mid-way, in `shape`: "pods kept", "pods gone" or "ending"."""
    # The core reads only the parallelism: the items themselves are the gate's business.
    spec = run_spec({"steps": [{"name": "f", "image": "x",
                                "forEach": {"parallelism": PARALLELISM}}]})
    ended = _pod(W.ABSENT if shape == "pods gone" else W.SUCCEEDED)
    runs = {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", _status(i, StepPhase.SUCCEEDED, True),
                                            attempt=ended) for i in range(ENDED)}
    going = _pod(W.SUCCEEDED if shape == "ending" else W.RUNNING)
    runs |= {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", _status(i, StepPhase.RUNNING, False),
                                             attempt=going)
             for i in range(ENDED, ENDED + RUNNING)}
    waiting = ITEMS - ENDED - RUNNING
    entry = m.StepState(StepPhase.RUNNING, started_at=T0, items=m.ItemCounts(ITEMS, (
        (StepPhase.PENDING, waiting), (StepPhase.RUNNING, RUNNING),
        (StepPhase.SUCCEEDED, ENDED))))
    status = m.RunStatus(phase=RunPhase.RUNNING, started_at=T0,
                         step_states=m.step_states_from([("f", entry)]))
    return m.Observed("r", 1, T0, spec, status, m.frozen_step_runs(runs.items()),
                      gates=(("f", m.Gate(True, items=ITEMS)),))


def milliseconds(o: m.Observed) -> float:
    """The median time of one decision on `o`."""
    now = T0 + dt.timedelta(seconds=10)
    for _ in range(2):
        decide(o, now)
    times = []
    for _ in range(REPEATS):
        began = time.process_time()
        decide(o, now)
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times)


def case(out: Report) -> None:
    for shape in ("pods kept", "pods gone", "ending"):
        ms = milliseconds(observed(shape))
        out.record(f"pure decision at {ITEMS:,} items ({shape})", ms, "ms",
                   f"< {TARGET_MS} ms", ms < TARGET_MS,
                   f"{ENDED:,} ended, {RUNNING} running, {ITEMS - ENDED - RUNNING:,} waiting")
