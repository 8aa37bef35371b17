"""The spec as a DAG: refusals that name the field, order, readiness by mode."""

from __future__ import annotations

import pytest

from runctl.machine import dag
from runctl.machine.model import StepSpec, StepState
from runctl.machine.phases import Mode, Reason, StepPhase
from tests.unit.builders import spec, step


@pytest.mark.parametrize(("steps", "problems"), [
    pytest.param((), ["spec.steps: a run needs at least one step"], id="empty"),
    pytest.param((step("a"), step("b", "a"), step("a")),
                 ['spec.steps[2].name: duplicate step "a" (also spec.steps[0])'],
                 id="duplicate"),
    pytest.param((step("a", "a"),), ['spec.steps[0].needs: step "a" cannot need itself'],
                 id="self-need"),
    pytest.param((step("a"), step("b"), step("c", "a", "x")),
                 ['spec.steps[2].needs: unknown step "x"'], id="unknown-need"),
    pytest.param((step("a", "b"), step("b", "a")), ["spec.steps: cycle a -> b -> a"],
                 id="cycle-of-two"),
    pytest.param((step("x"), step("a", "c"), step("b", "a"), step("c", "b", "x")),
                 ["spec.steps: cycle a -> c -> b -> a"], id="longer-cycle"),
    pytest.param((step("a"), step("b", "a"), step("c", "a", "b")), [], id="valid-diamond"),
])
def test_validation_names_the_field(steps: tuple[StepSpec, ...], problems: list[str]) -> None:
    assert [str(p) for p in dag.validate(spec(*steps))] == problems


def test_a_cycle_is_looked_for_only_once_names_are_sound() -> None:
    bad = spec(step("a", "b"), step("b", "a"), step("c", "zz"))
    assert [str(p) for p in dag.validate(bad)] == ['spec.steps[2].needs: unknown step "zz"']


def test_topological_order_keeps_spec_order_between_independent_steps() -> None:
    steps = (step("load", "join"), step("b"), step("join", "a", "b"), step("a"))
    assert dag.topological_order(steps) == ("b", "a", "join", "load")


@pytest.mark.parametrize(("mode", "phases", "ready"), [
    pytest.param(Mode.BATCH, {"a": StepPhase.SUCCEEDED, "b": StepPhase.SUCCEEDED}, True,
                 id="batch-needs-succeeded"),
    pytest.param(Mode.BATCH, {"a": StepPhase.SUCCEEDED, "b": StepPhase.RUNNING}, False,
                 id="batch-running-is-not-enough"),
    pytest.param(Mode.REALTIME, {"a": StepPhase.RUNNING, "b": StepPhase.RUNNING}, True,
                 id="realtime-needs-running"),
    pytest.param(Mode.REALTIME, {"a": StepPhase.RUNNING, "b": StepPhase.PENDING}, False,
                 id="realtime-pending-is-not-enough"),
])
def test_readiness_by_mode(mode: Mode, phases: dict[str, StepPhase], ready: bool) -> None:
    states = {n: StepState(p) for n, p in phases.items()}
    assert dag.is_ready(step("c", "a", "b"), states, mode) is ready


@pytest.mark.parametrize(("reason", "ready"), [
    (Reason.CONDITION_FALSE, True), (Reason.UPSTREAM_OUTPUT_MISSING, True),
    (Reason.UPSTREAM_FAILED, False),
])
def test_a_skip_that_is_no_failure_lets_dependents_run(reason: Reason, ready: bool) -> None:
    states = {"a": StepState(StepPhase.SKIPPED, reason), "b": StepState(StepPhase.SUCCEEDED)}
    assert dag.is_ready(step("c", "a", "b"), states, Mode.BATCH) is ready
