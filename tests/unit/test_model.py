"""Frozen mappings: sorted pairs in, lookups out, equal whatever order they were given in."""

from __future__ import annotations

from runctl.machine import model as m
from runctl.machine.phases import StepPhase


def test_frozen_mappings_are_canonical() -> None:
    assert m.frozen_outputs([("b", "2"), ("a", "1")]) == (("a", "1"), ("b", "2"))
    states = m.step_states_from([("y", m.StepState(StepPhase.PENDING)),
                                 ("x", m.StepState(StepPhase.RUNNING))])
    status = m.RunStatus(step_states=states)
    assert [name for name, _ in m.step_state_items(status)] == ["x", "y"]
    assert m.step_state(status, "x") == m.StepState(StepPhase.RUNNING)
    assert m.step_state(status, "z") is None
    assert m.lookup(m.frozen_step_runs([("a", m.StepRunObservation("r-a"))]), "a") == (
        m.StepRunObservation("r-a"))
