"""What a decision writes, rendered before anything is written: the StepRun of each step it
starts, its references filled from the run's params, facts and the outputs the decided status
offers. Pure: apply then only sends what is rendered here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runctl.api import wire
from runctl.flow import inputs
from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision
from runctl.operator.resolve import Definition, produced, rendered

StepRuns = Mapping[str, dict[str, Any]]
"""The body of each StepRun to create, by step."""


def step_runs(run: Mapping[str, Any], definition: Definition, observed: m.Observed,
              decision: Decision) -> StepRuns:
    """The StepRuns `decision` creates. Their inputs are the outputs as the decided status
    offers them (a step it skips offers its defaults), from the StepRun statuses the snapshot
    parsed."""
    creates = [a for a in decision.actions if isinstance(a, act.CreateStepRun)]
    if not creates:
        return {}
    outputs = produced(run, definition, {step: obs.status for step, obs in observed.step_runs},
                       dict(m.step_state_items(decision.status)))
    return {create.step: _step_run(run, definition, create, outputs) for create in creates}


def _step_run(run: Mapping[str, Any], definition: Definition, create: act.CreateStepRun,
              outputs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    step_spec = rendered(definition.step(run, create.step), definition.params, outputs,
                         definition.facts)
    return wire.new_steprun(
        run, step_spec, definition.mode(run, create.step), create.name, create.deadline,
        inputs.inputs_digest(step_spec, definition.params, outputs, definition.facts))
