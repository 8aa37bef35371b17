"""Params, references, outputs, conditions and whole definitions: each check as a table row."""

from __future__ import annotations

from typing import Any

import pytest

from runctl.flow import conditions, definition, inputs, outputs, params, references
from runctl.flow.references import Malformed, Ref
from runctl.machine.phases import Reason

DECLS = params.declared([
    {"name": "table", "type": "string"},
    {"name": "dryRun", "type": "boolean", "default": False},
    {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"},
    {"name": "limit", "type": "number", "default": 10},
    {"name": "tags", "type": "array", "default": []},
    {"name": "extra", "type": "object", "default": {}},
])


# -- params ----------------------------------------------------------------------------------


def test_params_take_defaults_and_given_values() -> None:
    values, problems = params.resolve(DECLS, {"table": "events", "limit": 2.5})
    assert problems == []
    assert values == {"table": "events", "dryRun": False, "region": "eu", "limit": 2.5,
                      "tags": [], "extra": {}}


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param({"table": "t", "nope": 1}, 'spec.params.nope: unknown param "nope" '
                 "(declared: table, dryRun, region, limit, tags, extra)", id="unknown"),
    pytest.param({}, "spec.params.table: required param missing (it has no default)",
                 id="missing"),
    pytest.param({"table": "t", "dryRun": "false"},
                 "spec.params.dryRun: the value must be of type boolean, not string",
                 id="mistyped"),
    pytest.param({"table": "t", "limit": True},
                 "spec.params.limit: the value must be of type number, not boolean",
                 id="a boolean is no number"),
    pytest.param({"table": "t", "region": "ap"},
                 'spec.params.region: the value "ap" is not one of "eu", "us"', id="enum"),
    pytest.param({"table": "${{ params.x }}"},
                 "spec.params.table: the value cannot contain '${{'", id="marker"),
    pytest.param({"table": "x" * 40000}, "spec.params: 40012 bytes as JSON, more than 32768",
                 id="too large"),
])
def test_params_that_do_not_fit_are_named(given: dict[str, Any], expected: str) -> None:
    assert [str(p) for p in params.resolve(DECLS, given)[1]] == [expected]


def test_declarations_are_checked() -> None:
    problems = params.check_declarations([
        {"name": "a", "type": "number", "default": "1"},
        {"name": "a", "type": "string"},
        {"name": "b", "type": "text"},
        {"name": "c", "type": "string", "enum": ["x", 2], "default": "y"},
    ])
    assert [str(p) for p in problems] == [
        "spec.params[0].default: the default must be of type number, not string",
        'spec.params[1].name: duplicate param "a" (also spec.params[0])',
        "spec.params[2].type: unknown type 'text'",
        "spec.params[3].enum[1]: must be of type string, not number",
        'spec.params[3].default: the default "y" is not one of "x", 2',
    ]


def test_type_of_null() -> None:
    assert params.type_of(None) == "null"


# -- references ------------------------------------------------------------------------------

VALUES = {"table": "events", "dryRun": True, "tags": ["a", "b"], "extra": {"z": 1, "a": None}}
OUTS = {"count": {"rows": "42"}}


@pytest.mark.parametrize(("text", "rendered"), [
    ("plain", "plain"),
    ("${{ params.table }}", "events"),
    ("--t=${{params.table}}/${{ steps.count.outputs.rows }}", "--t=events/42"),
    ("${{ params.dryRun }}", "true"),
    ("${{ params.tags }}", '["a","b"]'),
    ("${{ params.extra }}", '{"a":null,"z":1}'),
    ("$ {{ not one }} }}", "$ {{ not one }} }}"),
])
def test_rendering(text: str, rendered: str) -> None:
    assert references.render(text, VALUES, OUTS) == rendered


def test_values_that_would_spell_the_marker_are_not_rendered() -> None:
    with pytest.raises(Malformed, match="rendered, the text would hold"):
        references.render("$${{ params.table }}", {"table": "{{x"}, {})


@pytest.mark.parametrize("text", [
    "${{ params.table", "${{ }}", "${{ param.table }}", "${{ steps.count.rows }}",
    "${{ ${{ params.table }}", "a ${{ params.table }} b ${{",
    "${{ steps.Count.outputs.rows }}",
])
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(Malformed, match="malformed reference"):
        references.find(text)


def test_references_are_found_in_order() -> None:
    assert references.find("${{ steps.a.outputs.x }}${{ params.p }}") == (
        Ref("x", "a"), Ref("p"))
    assert str(Ref("x", "a")) == "steps.a.outputs.x"
    assert str(Ref("p")) == "params.p"


def test_a_step_renders_in_every_field_that_may_reference() -> None:
    step = {"name": "s", "image": "i", "command": ["${{ params.table }}"],
            "args": ["${{ steps.count.outputs.rows }}"],
            "env": [{"name": "A", "value": "${{ params.dryRun }}"}, {"name": "B"}],
            "pod": {"labels": {"x": "y"}, "annotations": {"k": "${{ params.table }}"}}}
    assert references.render_step(step, VALUES, OUTS) == {
        "name": "s", "image": "i", "command": ["events"], "args": ["42"],
        "env": [{"name": "A", "value": "true"}, {"name": "B"}],
        "pod": {"labels": {"x": "y"}, "annotations": {"k": "events"}}}
    assert references.render_step({"name": "s", "pod": {}}, {}, {}) == {"name": "s", "pod": {}}


# -- outputs ---------------------------------------------------------------------------------

DECLARED = [{"name": "rows"}, {"name": "table", "default": "unknown"}]


@pytest.mark.parametrize(("message", "expected"), [
    pytest.param('{"rows": 3, "table": "t"}', outputs.Checked((("rows", "3"), ("table", "t"))),
                 id="all there"),
    pytest.param('{"rows": "3"}', outputs.Checked((("rows", "3"), ("table", "unknown")),
                                                  ("table",)), id="defaulted"),
    pytest.param('{"table": "t"}', outputs.Checked(
        reason=Reason.OUTPUT_MISSING,
        message="required output rows missing from the termination message"), id="missing"),
    pytest.param(None, outputs.Checked(
        reason=Reason.OUTPUT_MISSING,
        message="required output rows missing from the termination message"), id="no message"),
    pytest.param("[1]", outputs.Checked(
        reason=Reason.OUTPUT_INVALID, message="the termination message is not a JSON object"),
        id="not an object"),
    pytest.param("rows=3", outputs.Checked(
        reason=Reason.OUTPUT_INVALID,
        message="the termination message is not JSON (Expecting value: line 1 column 1 "
                "(char 0))"), id="not JSON"),
    pytest.param('{"rows": "' + "x" * 4090 + '"}', outputs.Checked(
        reason=Reason.OUTPUT_INVALID,
        message="the termination message has 4102 bytes, more than 4096"), id="too large"),
    pytest.param('{"rows": "${{ params.x }}"}', outputs.Checked(
        reason=Reason.OUTPUT_INVALID, message="output rows contains '${{'"), id="marker"),
])
def test_declared_outputs_are_checked(message: str | None, expected: outputs.Checked) -> None:
    assert outputs.check(message, DECLARED) == expected


@pytest.mark.parametrize(("message", "expected"), [
    ('{"n": 1, "s": "x"}', (("n", "1"), ("s", "x"))),
    ("plain text", ()),
    (None, ()),
])
def test_undeclared_outputs_stay_lenient(message: str | None,
                                         expected: tuple[tuple[str, str], ...]) -> None:
    assert outputs.check(message, None) == outputs.Checked(expected)


# -- conditions ------------------------------------------------------------------------------

STEPS = {"count": frozenset({"rows"}), "load-data": frozenset({"n"})}


@pytest.mark.parametrize("expr", [
    "params.dryRun == false",
    "int(steps.count.outputs.rows) > 0",
    "'x' in params.tags",
    "params.table == 'it\\'s \"quoted\"'",
    "steps['load-data'].outputs.n == '1'",
    "params.limit > 2.5",
    "params.tags.exists(t, t == 'a')",
    "'steps.nope.outputs.x' == params.table",
    "params.region == 'eu'",
])
def test_conditions_users_write_compile(expr: str) -> None:
    conditions.check(expr, DECLS, STEPS)


@pytest.mark.parametrize(("expr", "why"), [
    ("params.dryRun ==", "not valid CEL"),
    ("foo == 1", "unknown variable foo"),
    ("params.nope == 1", 'unknown param "nope"'),
    ("steps.nope.outputs.x == ''", 'unknown step "nope"'),
    ("steps.count.outputs.zz == ''", 'step "count" declares no output "zz"'),
    ("size(steps) > 0", "steps may only be used as steps.STEP.outputs.NAME"),
    ("steps.count.outputs.rows", "gives str, not a boolean"),
    ("params.limit + 1", "gives int, not a boolean"),
    ("params.dryRun ? 'a' : 'b'", "gives str, not a boolean"),
    ("1 + 'a' == 2", "No such overload"),
])
def test_bad_conditions_are_refused(expr: str, why: str) -> None:
    with pytest.raises(conditions.Invalid, match=why):
        conditions.check(expr, DECLS, STEPS)


@pytest.mark.parametrize(("expr", "values", "outs", "expected"), [
    ("params.dryRun == false", {"dryRun": True}, {}, conditions.Evaluated(False)),
    ("int(steps.count.outputs.rows) > 0", {}, {"count": {"rows": "7"}},
     conditions.Evaluated(True)),
    ("'x' in params.tags", {"tags": ["x"]}, {}, conditions.Evaluated(True)),
])
def test_conditions_evaluate_on_typed_values(expr: str, values: dict[str, Any],
                                             outs: dict[str, dict[str, str]],
                                             expected: conditions.Evaluated) -> None:
    assert conditions.evaluate(expr, values, outs) == expected


def test_a_condition_that_fails_at_run_time_says_why() -> None:
    result = conditions.evaluate("int(steps.count.outputs.rows) > 0", {},
                                 {"count": {"rows": "many"}})
    assert not result.holds
    assert result.error is not None
    assert "int" in result.error


def test_condition_references_skip_string_literals() -> None:
    assert conditions.references(
        "steps['load-data'].outputs.n == 'params.q' && params[\"limit\"] > 1") == (
        Ref("n", "load-data"), Ref("limit"))


# -- whole definitions -----------------------------------------------------------------------


def test_a_definition_is_checked_with_field_paths() -> None:
    spec = {
        "params": [{"name": "table", "type": "string"}],
        "steps": [
            {"name": "count", "outputs": [{"name": "rows"}, {"name": "rows"}]},
            {"name": "load", "outputs": [{"name": "n"}],
             "args": ["${{ steps.count.outputs.rows }}", "${{ steps.publish.outputs.x }}",
                      "${{ params.nope }}", "${{ oops", "${{ steps.count.outputs.zz }}",
                      "${{ steps.ghost.outputs.a }}"]},
            {"name": "publish", "when": "int(steps.load.outputs.n) > 0",
             "outputs": [{"name": "x"}]},
            {"name": "bad", "when": "params.table"},
        ]}
    assert [str(p) for p in definition.check(spec)] == [
        'spec.steps[0].outputs[1].name: output "rows" declared twice',
        'spec.steps[1].args[1]: steps.publish.outputs.x: step "publish" is not upstream of '
        '"load" (reading it would make a cycle)',
        'spec.steps[1].args[2]: unknown param "nope"',
        "spec.steps[1].args[3]: malformed reference: '${{' is not closed by '}}'",
        'spec.steps[1].args[4]: step "count" declares no output "zz" '
        "(steps.count.outputs.zz)",
        'spec.steps[1].args[5]: unknown step "ghost" in steps.ghost.outputs.a',
        'spec.steps[2].when: steps.load.outputs.n: step "load" is not upstream of "publish" '
        "(reading it would make a cycle)",
        "spec.steps[3].when: the condition gives str, not a boolean",
    ]


def test_realtime_steps_reference_params_only() -> None:
    spec = {"mode": "realtime", "params": [{"name": "p", "type": "string"}], "steps": [
        {"name": "a", "outputs": [{"name": "x"}], "args": ["${{ params.p }}"]},
        {"name": "b", "env": [{"name": "X", "value": "${{ steps.a.outputs.x }}"}],
         "when": "true"},
    ]}
    assert [str(p) for p in definition.check(spec)] == [
        "spec.steps[0].outputs: a realtime step has no outputs",
        "spec.steps[1].env[0].value: steps.a.outputs.x: a realtime step cannot reference "
        "outputs (its upstreams do not end)",
        "spec.steps[1].when: conditions are for batch runs",
    ]


def test_references_imply_needs() -> None:
    step = {"name": "c", "needs": ["z"], "args": ["${{ steps.b.outputs.x }}", "${{ bad"],
            "when": "steps.a.outputs.y == ''"}
    assert definition.needs(step) == ("z", "a", "b")
    assert definition.consumes(step) == (("a", "y"), ("b", "x"))


# -- inputs digests --------------------------------------------------------------------------

STEP = {"name": "load", "image": "x:1", "args": ["--rows", "12"], "env": [{"name": "A"}],
        "pod": {"annotations": {"k": "v"}}, "timeoutSeconds": 5}


def test_the_same_rendered_step_has_the_same_digest_whatever_the_key_order() -> None:
    again = dict(reversed(list(STEP.items())))
    digest = inputs.inputs_digest(STEP, {}, {})
    assert digest == inputs.inputs_digest(again, {"unread": 1}, {"x": {"y": "z"}})
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64


@pytest.mark.parametrize("change", [
    pytest.param({"image": "x:2"}, id="image"),
    pytest.param({"command": ["run"]}, id="command"),
    pytest.param({"args": ["--rows", "13"]}, id="args"),
    pytest.param({"env": [{"name": "A", "value": "1"}]}, id="env"),
    pytest.param({"pod": {"annotations": {"k": "w"}}}, id="pod"),
])
def test_what_a_workload_is_made_from_changes_the_digest(change: dict[str, Any]) -> None:
    assert inputs.inputs_digest({**STEP, **change}, {}, {}) != inputs.inputs_digest(STEP, {}, {})


def test_what_does_not_make_the_workload_leaves_the_digest_alone() -> None:
    assert inputs.inputs_digest({**STEP, "timeoutSeconds": 9, "retry": {"limit": 2}}, {}, {}
                                ) == inputs.inputs_digest(STEP, {}, {})


def test_a_condition_and_every_value_it_reads_are_in_the_digest() -> None:
    gated = {**STEP, "when": "params.dry == false && int(steps.count.outputs.rows) > 0"}
    rows = {"count": {"rows": "12"}}
    digest = inputs.inputs_digest(gated, {"dry": False, "other": 1}, rows)
    assert digest == inputs.inputs_digest(gated, {"dry": False, "other": 2}, rows)
    assert digest != inputs.inputs_digest(gated, {"dry": True}, rows)
    assert digest != inputs.inputs_digest(gated, {"dry": False}, {"count": {"rows": "0"}})
    assert digest != inputs.inputs_digest(STEP, {"dry": False}, rows)


def test_a_finally_step_s_digest_reads_the_run_s_facts() -> None:
    notify = {**STEP, "when": "run.outcome == 'Failed'"}
    failed = references.Facts("Failed", "StepFailed", ("a",), {"a": "Failed"})
    assert inputs.inputs_digest(notify, {}, {}, failed) != inputs.inputs_digest(
        notify, {}, {}, None)
