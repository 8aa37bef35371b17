"""What a decision writes, rendered before anything is written: the StepRun of each step it
starts, its references filled from the run's params, facts and the outputs the decided status
offers. Pure: apply then only sends what is rendered here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runctl.api import wire
from runctl.flow import inputs
from runctl.flow.references import Item
from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision
from runctl.machine.naming import parse_key
from runctl.operator.resolve import Definition, Offered, items_of, produced, rendered

StepRuns = Mapping[str, dict[str, Any]]
"""The body of each StepRun to create, by step."""


def step_runs(run: Mapping[str, Any], definition: Definition, observed: m.Observed,
              decision: Decision) -> StepRuns:
    """The StepRuns `decision` creates (a step's, or an item's). Their inputs are the outputs
    as the decided status offers them (a step it skips offers its defaults), from the StepRun
    statuses the snapshot parsed."""
    creates = [a for a in decision.actions if isinstance(a, act.CreateStepRun)]
    if not creates:
        return {}
    states = dict(m.step_state_items(decision.status))
    offered = produced(run, definition, {key: obs.status for key, obs in observed.step_runs},
                       states)
    return {create.step: _step_run(run, definition, create, offered, states)
            for create in creates}


def _step_run(run: Mapping[str, Any], definition: Definition, create: act.CreateStepRun,
              offered: Offered, states: Mapping[str, m.StepState]) -> dict[str, Any]:
    step, index = parse_key(create.step)
    spec = definition.step(run, step)
    item = None
    if index is not None:
        values = items_of(run, spec, definition.params, offered, definition.facts,
                          states).items
        item = Item(index, values[index])
    step_spec = rendered(spec, definition.params, offered.outputs, definition.facts, item)
    return wire.new_steprun(
        run, step_spec, definition.mode(run, step), create.name, create.deadline,
        inputs.inputs_digest(step_spec, definition.params, offered.outputs, definition.facts,
                             item),
        None if item is None else (item.index, item.value))
