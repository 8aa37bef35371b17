"""The phase graphs: valid at import, and the typed verdicts they give on a phase change."""

from __future__ import annotations

import pytest

from runctl.machine import transitions as t
from runctl.machine.phases import RUN_TERMINAL, STEP_TERMINAL, RunPhase, StepPhase


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(None, RunPhase.PENDING, t.NoOp(), id="first-reconcile-pending"),
    pytest.param(None, RunPhase.FAILED, t.Accepted(), id="invalid-spec-fails-at-once"),
    pytest.param(RunPhase.PENDING, RunPhase.RUNNING, t.Accepted(), id="starts"),
    pytest.param(RunPhase.RUNNING, RunPhase.STOPPING, t.Accepted(), id="stop"),
    pytest.param(RunPhase.STOPPING, RunPhase.CANCELED, t.Accepted(), id="stopped"),
    pytest.param(RunPhase.SUCCEEDED, RunPhase.SUCCEEDED, t.NoOp(), id="same-terminal"),
    pytest.param(RunPhase.RUNNING, RunPhase.PENDING,
                 t.Refused("Running cannot be followed by Pending"), id="no-way-back"),
    pytest.param(RunPhase.STOPPING, RunPhase.RUNNING,
                 t.Refused("Stopping cannot be followed by Running"), id="stop-not-withdrawn"),
    pytest.param(RunPhase.FAILED, RunPhase.SUCCEEDED,
                 t.Refused("Failed is terminal and final; it cannot become Succeeded"),
                 id="terminal-final"),
])
def test_run_transitions(old: RunPhase | None, new: RunPhase,
                         expected: t.TransitionResult) -> None:
    assert t.check_run_transition(old, new) == expected


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(None, StepPhase.SKIPPED, t.Accepted(), id="skipped-unstarted"),
    pytest.param(StepPhase.PENDING, StepPhase.RUNNING, t.Accepted(), id="runs"),
    pytest.param(StepPhase.RUNNING, StepPhase.RUNNING, t.NoOp(), id="retry-stays-running"),
    pytest.param(StepPhase.RUNNING, StepPhase.LOST, t.Accepted(), id="lost"),
    pytest.param(StepPhase.RUNNING, StepPhase.PENDING,
                 t.Refused("Running cannot be followed by Pending"), id="no-way-back"),
    pytest.param(StepPhase.LOST, StepPhase.SUCCEEDED,
                 t.Refused("Lost is terminal and final; it cannot become Succeeded"),
                 id="lost-never-succeeds"),
    pytest.param(StepPhase.LOST, StepPhase.LOST, t.NoOp(), id="same-terminal"),
])
def test_step_transitions(old: StepPhase | None, new: StepPhase,
                          expected: t.TransitionResult) -> None:
    assert t.check_step_transition(old, new) == expected


@pytest.mark.parametrize(("table", "terminal", "initial"), [
    pytest.param(t.RUN_TRANSITIONS, RUN_TERMINAL, t.RUN_INITIAL, id="run"),
    pytest.param(t.STEP_TRANSITIONS, STEP_TERMINAL, t.STEP_INITIAL, id="step"),
])
def test_shipped_tables_are_sound(table: t.Table[RunPhase], terminal: frozenset[RunPhase],
                                  initial: RunPhase) -> None:
    assert t.table_problems(table, terminal, initial) == []


_BAD: dict[RunPhase, frozenset[RunPhase]] = {
    RunPhase.PENDING: frozenset({RunPhase.RUNNING}),
    RunPhase.RUNNING: frozenset({RunPhase.RUNNING}),
    RunPhase.STOPPING: frozenset({RunPhase.CANCELED}),
    RunPhase.SUCCEEDED: frozenset({RunPhase.SUCCEEDED}),
    RunPhase.FAILED: frozenset({RunPhase.RUNNING}),
    RunPhase.CANCELED: frozenset({RunPhase.CANCELED}),
}


def test_a_bad_table_is_refused_naming_each_fault() -> None:
    assert t.table_problems(_BAD, RUN_TERMINAL, RunPhase.PENDING) == [
        "TimedOut has no row",
        "Failed may leave a terminal phase",
        "TimedOut may leave a terminal phase",
        "Pending can never end",
        "Running can never end",
        "Stopping is unreachable from Pending",
        "Succeeded is unreachable from Pending",
        "Failed is unreachable from Pending",
        "Canceled is unreachable from Pending",
        "TimedOut is unreachable from Pending",
        "the initial phase must be Pending alone, not Pending, Stopping, "
        "Succeeded, Failed, TimedOut",
    ]
    with pytest.raises(t.TableError, match="TimedOut has no row"):
        t.assert_valid(_BAD, RUN_TERMINAL, RunPhase.PENDING)
