"""What finally steps read (the run's outcome, its failures, its main steps' phases): found,
checked at apply with the field named, rendered and evaluated on typed values."""

from __future__ import annotations

from typing import Any

import pytest

from runctl.api import wire
from runctl.flow import conditions, definition, references
from runctl.flow.references import Facts, Malformed, Ref
from runctl.machine import model as m
from runctl.machine.phases import RunPhase, StepPhase
from runctl.operator import resolve

FAILED = Facts("Failed", "StepFailed", ("load",), {"extract": "Succeeded", "load": "Failed"})
SUCCEEDED = Facts("Succeeded", "Completed", (), {"extract": "Succeeded", "load": "Succeeded"})


@pytest.mark.parametrize(("text", "refs"), [
    pytest.param("${{ run.outcome }}", (Ref("outcome", fact=True),), id="outcome"),
    pytest.param("${{run.reason}}/${{ run.failures }}",
                 (Ref("reason", fact=True), Ref("failures", fact=True)), id="reason-failures"),
    pytest.param("${{ steps.load.phase }}", (Ref("phase", "load", fact=True),), id="phase"),
])
def test_facts_are_references(text: str, refs: tuple[Ref, ...]) -> None:
    assert references.find(text) == refs


def test_an_unknown_fact_is_malformed() -> None:
    with pytest.raises(Malformed, match=r"run\.outcome"):
        references.find("${{ run.status }}")


@pytest.mark.parametrize(("facts", "expected"), [
    pytest.param(FAILED, 'Failed StepFailed ["load"] Failed', id="failed"),
    pytest.param(SUCCEEDED, "Succeeded Completed [] Succeeded", id="empty-list-on-success"),
])
def test_facts_render(facts: Facts, expected: str) -> None:
    text = "${{ run.outcome }} ${{ run.reason }} ${{ run.failures }} ${{ steps.load.phase }}"
    assert references.render(text, {}, {}, facts) == expected


def test_facts_not_recorded_yet_do_not_render() -> None:
    with pytest.raises(KeyError):
        references.render("${{ run.outcome }}", {}, {})


@pytest.mark.parametrize(("expr", "facts", "holds"), [
    pytest.param("run.outcome == 'Failed'", FAILED, True, id="notify-on-failure"),
    pytest.param("run.outcome == 'Failed'", SUCCEEDED, False, id="not-on-success"),
    pytest.param("size(run.failures) == 0", SUCCEEDED, True, id="failures-always-a-list"),
    pytest.param("'load' in run.failures && steps.extract.phase == 'Succeeded'", FAILED, True,
                 id="failures-and-phases"),
])
def test_conditions_read_facts(expr: str, facts: Facts, holds: bool) -> None:
    conditions.check(expr, {}, {"extract": frozenset(), "load": frozenset()},
                     frozenset({"extract", "load"}))
    assert conditions.evaluate(expr, {}, {}, facts) == conditions.Evaluated(holds)


def _spec(**kw: Any) -> dict[str, Any]:
    return {"steps": [{"name": "extract", "image": "x", "outputs": [{"name": "rows"}]},
                      {"name": "load", "image": "x", **kw.pop("main", {})}],
            "finally": [{"name": "notify", "image": "x", **kw.pop("notify", {})},
                        {"name": "unlock", "image": "x", "needs": ["notify"]}], **kw}


@pytest.mark.parametrize(("spec", "problem"), [
    pytest.param(_spec(main={"when": "run.outcome == 'Failed'"}),
                 "spec.steps[1].when: unknown variable run (use params.NAME or "
                 "steps.STEP.outputs.NAME) (run only in a finally step)",
                 id="main-step-condition-reads-the-outcome"),
    pytest.param(_spec(main={"args": ["${{ run.outcome }}"]}),
                 "spec.steps[1].args[0]: run.outcome: only finally steps read the run's "
                 "outcome and its steps' phases", id="main-step-renders-the-outcome"),
    pytest.param(_spec(notify={"args": ["${{ steps.unlock.phase }}"]}),
                 'spec.finally[0].args[0]: steps.unlock.phase: "unlock" is not a step of '
                 "spec.steps", id="phase-of-a-finally-step"),
    pytest.param(_spec(notify={"when": "steps.unlock.phase == 'x'"}),
                 'spec.finally[0].when: steps.unlock.phase: "unlock" is not a step of '
                 "spec.steps", id="condition-on-a-finally-phase"),
    pytest.param(_spec(notify={"when": "run.state == 'x'"}),
                 "spec.finally[0].when: run may only be used as run.outcome, run.reason, "
                 "run.failures", id="unknown-fact-in-condition"),
    pytest.param(_spec(notify={"outputs": [{"name": "sent"}]},
                       main={"args": ["${{ steps.notify.outputs.sent }}"]}),
                 'spec.steps[1].args[0]: steps.notify.outputs.sent: step "notify" is not '
                 'upstream of "load" (reading it would make a cycle)',
                 id="main-step-reads-a-finally-output"),
])
def test_bad_reads_are_refused_naming_the_field(spec: dict[str, Any], problem: str) -> None:
    assert [str(p) for p in definition.check(spec)] == [problem]


def test_a_finally_step_reads_main_outputs_and_facts() -> None:
    spec = _spec(notify={"when": "run.outcome == 'Failed' || steps.load.phase == 'Skipped'",
                         "args": ["${{ steps.extract.outputs.rows }}", "${{ run.failures }}"]})
    assert definition.check(spec) == []
    core = wire.run_spec(spec)
    notify = next(s for s in core.finally_steps if s.name == "notify")
    # It reads `extract` without needing it: every main step is terminal before it starts.
    assert (notify.needs, notify.consumes, notify.reads_facts, notify.gated) == (
        (), (("extract", "rows"),), True, True)


def test_facts_come_from_the_recorded_outcome_and_main_steps() -> None:
    status = m.RunStatus(step_states=m.step_states_from([
        ("extract", m.StepState(StepPhase.SUCCEEDED)), ("load", m.StepState(StepPhase.LOST)),
        ("notify", m.StepState(StepPhase.FAILED))]))
    facts = resolve.facts(["extract", "load"], {"phase": RunPhase.FAILED.value,
                                                "reason": "WorkloadDeleted"}, status)
    assert facts == Facts("Failed", "WorkloadDeleted", ("load",),
                          {"extract": "Succeeded", "load": "Lost"})


def test_a_gate_on_facts_waits_for_the_outcome() -> None:
    step = {"name": "notify", "image": "x", "when": "run.outcome == 'Failed'"}
    assert resolve.gate(step, {}, resolve.Offered({})) is None
    assert resolve.gate(step, {}, resolve.Offered({}), FAILED) == m.Gate(True)
    assert resolve.gate(step, {}, resolve.Offered({}), SUCCEEDED) == m.Gate(
        False, message="when \"run.outcome == 'Failed'\" is false")
