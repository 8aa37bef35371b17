"""Whole expected Decisions for the decision tables (test_decide*.py), shaped once.

`builders` makes the runs a table starts from; this module makes what a table expects of them:
the StepRun statuses a decision writes, the StepRuns it makes, the Events it posts, and the
table test itself. A new table is a list of named cases, `rows(...)`, and `table(rows)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import pytest

from runctl.machine import model as m
from runctl.machine.actions import CreateStepRun, EmitEvent, StartAttempt
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import StepPhase
from tests.unit.builders import at, sr_status, work

Case = tuple[m.Observed, dt.datetime, Decision]
"""A row of a decision table: the run as observed, when it is decided, the whole Decision."""

STARTED = EmitEvent("run", None, "Normal", "Started", "the run started")
STOP_REQUESTED = EmitEvent("run", None, "Normal", "StopRequested",
                           "stop requested: no step starts from now on")


def created(name: str, deadline: dt.datetime | None = None
            ) -> tuple[CreateStepRun, StartAttempt]:
    """A StepRun made for a first attempt: no status is written for it (none implies the
    first attempt, `first_status`), its workload is created at once."""
    return CreateStepRun(name, f"r-{name}", deadline), StartAttempt(name, 1)


def ended(name: str, status: m.StepRunStatus, phase: StepPhase, reason: str, message: str | None,
          now: float, **kw: Any) -> m.StepRunStatus:
    """`status` as the decision at `now` ends it (`name` says whose, for the reader)."""
    return replace(status, phase=phase, reason=reason, message=message, finished_at=at(now),
                   **kw)


def done(name: str, phase: StepPhase, reason: str, message: str | None, now: float,
         started: float = 0, **kw: Any) -> m.StepRunStatus:
    """The first attempt of step `name`, Running since `started`, ended at `now`."""
    return ended(name, sr_status(name, started=started), phase, reason, message, now, **kw)


def running(name: str, started: float = 0) -> tuple[m.StepRunStatus, m.AttemptObservation]:
    """Step `name`'s first attempt, recorded and observed Running since `started`."""
    return sr_status(name, started=started), work(m.WorkloadState.RUNNING)


def run_event(phase: str, message: str,
              kind: Literal["Normal", "Warning"] = "Warning") -> EmitEvent:
    return EmitEvent("run", None, kind, phase, message)


def step_event(step: str, reason: str, message: str) -> EmitEvent:
    """The Warning a step's failure (or a late report on it) posts."""
    return EmitEvent("step", step, "Warning", reason, message)


def rows(*cases: Callable[[], Case]) -> list[Any]:
    """A table's rows, each named for the function that builds it."""
    return [pytest.param(*case(), id=case.__name__.replace("_", "-")) for case in cases]


def table(cases: list[Any]) -> Callable[[m.Observed, dt.datetime, Decision], None]:
    """The test of a decision table (bind it to a `test_` name): each row's run, decided at
    its time, makes exactly its Decision."""
    @pytest.mark.parametrize(("before", "now", "expected"), cases)
    def test_decide(before: m.Observed, now: dt.datetime, expected: Decision) -> None:
        assert decide(before, now) == expected
    return test_decide
