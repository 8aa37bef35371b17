"""Fan-out steps in flow: each check of a `forEach` as a table row, items expanded, item
references rendered, conditions per item, and the items' outputs put together for readers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runctl.flow import conditions, definition, inputs, items, params, references
from runctl.flow.items import MAX_ITEMS, MAX_RENDERED_ARRAY, Expansion
from runctl.flow.references import Item, Malformed, Ref
from runctl.machine.phases import Reason

LIST = {"name": "list", "image": "i", "outputs": [{"name": "files"}, {"name": "count"}]}


def fan(name: str = "convert", **fields: Any) -> dict[str, Any]:
    """A fan-out step over the listing's files (what `fields` does not change)."""
    return {"name": name, "image": "i", "forEach": {"items": "${{ steps.list.outputs.files }}"},
            **fields}


def spec(*steps: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"params": [{"name": "files", "type": "array", "default": ["a"]},
                       {"name": "text", "type": "string", "default": "[]"},
                       {"name": "n", "type": "number", "default": 1}],
            "steps": [LIST, *steps], **more}


def problems(*steps: dict[str, Any], **more: Any) -> list[str]:
    return [str(p) for p in definition.check(spec(*steps, **more))]


# -- checks at apply -------------------------------------------------------------------------


@pytest.mark.parametrize("step", [
    pytest.param(fan(args=["--file", "${{ item }}", "--slot", "${{ index }}"],
                     when="item != 'skip.csv' && index < 10", outputs=[{"name": "size"}]),
                 id="an upstream output"),
    pytest.param(fan(forEach={"items": "${{ params.files }}", "parallelism": 5}),
                 id="an array param"),
    pytest.param(fan(forEach={"items": " ${{ params.text }} "}), id="a string param"),
    pytest.param(fan(forEach={"items": [{"f": "a"}, {"f": "b"}]}, args=["${{ item.f }}"],
                     when="item.f == 'a'"), id="literal objects"),
    pytest.param(fan(forEach={"items": [1, 2]}, when="item > 1"), id="literal numbers"),
    pytest.param(fan(forEach={"items": []}, args=["${{ item.f }}"]), id="an empty list"),
    pytest.param(fan(forEach={"matrix": {"region": ["eu", "us"], "size": ["s", "m"]}},
                     env=[{"name": "R", "value": "${{ item.region }}"}],
                     when="item.size == 's'"), id="a matrix"),
    pytest.param(fan(forEach={"items": "${{ steps.list.outputs.files }}"},
                     when="size(item) > 0"), id="a condition one type of item can hold"),
    pytest.param(fan(name="convert-a"), id="a name like an item's, not digits"),
])
def test_a_sound_fan_out_passes(step: dict[str, Any]) -> None:
    assert problems(step) == []


@pytest.mark.parametrize(("step", "expected"), [
    pytest.param(fan(forEach={"items": ["a"], "matrix": {"r": ["eu"]}}),
                 "spec.steps[1].forEach: exactly one of items and matrix", id="both"),
    pytest.param(fan(forEach={"parallelism": 3}),
                 "spec.steps[1].forEach: exactly one of items and matrix", id="neither"),
    pytest.param(fan(forEach=["a"]),
                 "spec.steps[1].forEach: must be an object with items or matrix",
                 id="not an object"),
    pytest.param(fan(forEach={"items": 3}),
                 "spec.steps[1].forEach.items: must be a list, or one reference "
                 "${{ params.NAME }} or ${{ steps.STEP.outputs.NAME }}", id="a number"),
    pytest.param(fan(forEach={"items": "${{ params.files"}),
                 "spec.steps[1].forEach.items: malformed reference: '${{' is not closed by "
                 "'}}'", id="malformed"),
    pytest.param(fan(forEach={"items": "${{ params.n }}"}),
                 "spec.steps[1].forEach.items: params.n is a number; items are an array (or "
                 "a string holding one as JSON)", id="a number param"),
    pytest.param(fan(forEach={"items": "${{ params.nope }}"}),
                 'spec.steps[1].forEach.items: unknown param "nope"', id="an unknown param"),
    pytest.param(fan(forEach={"items": "${{ steps.list.outputs.nope }}"}),
                 'spec.steps[1].forEach.items: step "list" declares no output "nope" '
                 "(steps.list.outputs.nope)", id="an undeclared output"),
    pytest.param(fan(forEach={"items": ["a"], "parallelism": 0}),
                 "spec.steps[1].forEach.parallelism: must be a whole number of at least 1",
                 id="parallelism 0"),
    pytest.param(fan(forEach={"items": ["a"], "parallelism": True}),
                 "spec.steps[1].forEach.parallelism: must be a whole number of at least 1",
                 id="parallelism not a number"),
    pytest.param(fan(forEach={"matrix": {}}),
                 "spec.steps[1].forEach.matrix: must map at least one name to a list",
                 id="an empty matrix"),
    pytest.param(fan(forEach={"matrix": {"region": []}}),
                 "spec.steps[1].forEach.matrix.region: must be a list of at least one value",
                 id="an empty dimension"),
    pytest.param(fan(forEach={"matrix": {"region": "eu"}}),
                 "spec.steps[1].forEach.matrix.region: must be a list of at least one value",
                 id="a dimension not a list"),
    pytest.param(fan(forEach={"matrix": {"the-region": ["eu"]}}),
                 "spec.steps[1].forEach.matrix.the-region: a dimension's name is letters, "
                 "digits and '_', starting with a letter", id="a dimension's name"),
    pytest.param(fan(forEach={"items": ["a", "${{ params.n }}"]}),
                 "spec.steps[1].forEach.items[1]: cannot contain '${{'", id="marker in items"),
    pytest.param(fan(forEach={"matrix": {"r": [{"x": "${{"}]}}),
                 "spec.steps[1].forEach.matrix.r[0]: cannot contain '${{'",
                 id="marker in a matrix"),
    pytest.param(fan(forEach={"items": list(range(MAX_ITEMS + 1))}),
                 "spec.steps[1].forEach.items: 10001 items, more than 10000 (a run's fan-outs "
                 "have at most that many together)", id="a list over the limit"),
    pytest.param(fan(forEach={"matrix": {"a": list(range(100)), "b": list(range(100)),
                                         "c": [1, 2]}}),
                 "spec.steps[1].forEach.matrix: 20000 items, more than 10000 (a run's "
                 "fan-outs have at most that many together)", id="a matrix over the limit"),
    pytest.param(fan(forEach={"items": ["a", {"f": 1}]}, args=["${{ item.f }}"]),
                 "spec.steps[1].args[0]: item.f: item 0 is not an object with field 'f'",
                 id="a field literal items lack"),
    pytest.param(fan(forEach={"matrix": {"region": ["eu"]}}, args=["${{ item.size }}"]),
                 "spec.steps[1].args[0]: item.size: item 0 is not an object with field "
                 "'size'", id="a field a matrix lacks"),
    pytest.param(fan(forEach={"items": [1, "a"]}, when="item > 'b'"),
                 "spec.steps[1].when: TypeError: No such overload",
                 id="a condition its first item cannot be compared in"),
])
def test_a_bad_fan_out_is_refused_naming_the_field(step: dict[str, Any], expected: str
                                                   ) -> None:
    found = problems(step)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


@pytest.mark.parametrize("text", ["a,b", "${{ params.files }}x",
                                  "${{ params.files }}${{ params.text }}", "${{ index }}"])
def test_items_as_text_are_one_reference_to_a_param_or_an_output(text: str) -> None:
    assert problems(fan(forEach={"items": text})) == [
        "spec.steps[1].forEach.items: must be a list, or one reference ${{ params.NAME }} or "
        "${{ steps.STEP.outputs.NAME }} and nothing else"]


@pytest.mark.parametrize(("step", "expected"), [
    pytest.param({"name": "a", "image": "i", "args": ["${{ item }}"]},
                 ["spec.steps[1].args[0]: item: only a step with forEach has an item"],
                 id="item"),
    pytest.param({"name": "a", "image": "i", "env": [{"name": "I", "value": "${{ index }}"}]},
                 ["spec.steps[1].env[0].value: index: only a step with forEach has an item"],
                 id="index"),
    pytest.param({"name": "a", "image": "i", "args": ["${{ item.f }}"]},
                 ["spec.steps[1].args[0]: item.f: only a step with forEach has an item"],
                 id="a field"),
    pytest.param({"name": "a", "image": "i", "when": "item == 'x'"},
                 ["spec.steps[1].when: unknown variable item (use params.NAME or "
                  "steps.STEP.outputs.NAME) (item and index only in a step with forEach)"],
                 id="item in CEL"),
    pytest.param({"name": "a", "image": "i", "when": "index > 0"},
                 ["spec.steps[1].when: unknown variable index (use params.NAME or "
                  "steps.STEP.outputs.NAME) (item and index only in a step with forEach)"],
                 id="index in CEL"),
])
def test_item_references_need_a_fan_out(step: dict[str, Any], expected: list[str]) -> None:
    assert problems(step) == expected


def test_a_malformed_item_reference_is_said_once() -> None:
    assert problems(fan(forEach={"items": [1]}, args=["${{ item.f"])) == [
        "spec.steps[1].args[0]: malformed reference: '${{' is not closed by '}}'"]


def test_item_bound_in_a_comprehension_is_no_item() -> None:
    assert problems({"name": "a", "image": "i",
                     "when": "params.files.all(item, item != '')"}) == []


def test_a_realtime_run_s_main_steps_cannot_fan_out_its_finally_steps_may() -> None:
    run = {"mode": "realtime",
           "steps": [{"name": "serve", "image": "i", "forEach": {"items": ["a"]}}],
           "finally": [{"name": "clean", "image": "i", "forEach": {"items": ["a", "b"]},
                        "args": ["${{ item }}"]}]}
    assert [str(p) for p in definition.check(run)] == [
        "spec.steps[0].forEach: a realtime step cannot fan out (its steps are long-lived "
        "servers, not items of work)"]


def test_a_step_named_as_an_item_of_a_fan_out_is_refused() -> None:
    assert problems(fan(), {"name": "convert-12", "image": "i"}) == [
        'spec.steps[2].name: "convert-12" is the name of an item of fan-out step "convert" '
        "(their StepRuns would share names)"]
    assert [str(p) for p in definition.check({
        "steps": [LIST, fan()], "finally": [{"name": "convert-0", "image": "i"}]})] == [
        'spec.finally[0].name: "convert-0" is the name of an item of fan-out step "convert" '
        "(their StepRuns would share names)"]


def test_the_run_s_literal_fan_outs_together_are_bounded() -> None:
    half = MAX_ITEMS // 2
    assert problems(fan("a", forEach={"items": list(range(half))}),
                    fan("b", forEach={"matrix": {"x": list(range(half))}})) == []
    assert problems(fan("a", forEach={"items": list(range(half))}),
                    fan("b", forEach={"matrix": {"x": list(range(half)), "y": [1]}}),
                    fan("c", forEach={"items": [1]})) == [
        "spec: its fan-outs' literal items and matrices have 10001 items together, more than "
        "10000 a run may have"]


def test_a_fan_out_needs_the_step_its_items_come_from() -> None:
    step = fan(args=["${{ params.n }}"])
    assert definition.consumes(step) == (("list", "files"),)
    assert definition.needs(step) == ("list",)
    assert definition.needs(fan(forEach={"items": "${{ params.files }}"})) == ()
    assert definition.needs(fan(forEach={"items": "${{ nope"})) == ()


def test_items_that_make_a_cycle_are_refused() -> None:
    assert problems({**LIST, "args": ["${{ steps.convert.outputs.size }}"]} | {"name": "first"},
                    fan(forEach={"items": "${{ steps.first.outputs.files }}"},
                        outputs=[{"name": "size"}]))[-1:] == [
        'spec.steps[2].forEach.items: steps.first.outputs.files: step "first" is not upstream '
        'of "convert" (reading it would make a cycle)']


# -- expanding -------------------------------------------------------------------------------

FILES = {"list": {"files": json.dumps(["a.csv", "b.csv"])}}


@pytest.mark.parametrize(("step", "values", "outs", "expected"), [
    pytest.param(fan(), {}, FILES, Expansion(("a.csv", "b.csv")), id="an output"),
    pytest.param(fan(forEach={"items": "${{ params.files }}"}), {"files": [1, {"a": 2}]}, {},
                 Expansion((1, {"a": 2})), id="an array param"),
    pytest.param(fan(forEach={"items": "${{ params.text }}"}), {"text": '["x"]'}, {},
                 Expansion(("x",)), id="a string param holding an array"),
    pytest.param(fan(forEach={"items": ["x", None, 3]}), {}, {}, Expansion(("x", None, 3)),
                 id="a literal list"),
    pytest.param(fan(forEach={"matrix": {"size": ["s", "m", "l"], "region": ["eu", "us"]}}),
                 {}, {}, Expansion(tuple(
                     {"region": r, "size": s} for r in ("eu", "us") for s in ("s", "m", "l"))),
                 id="a matrix: names in order, the last fastest"),
    pytest.param(fan(), {}, {"list": {"files": "[]"}},
                 Expansion((), Reason.NO_ITEMS, "forEach: no items, nothing to run"),
                 id="an empty list"),
    pytest.param(fan(forEach={"items": []}), {}, {},
                 Expansion((), Reason.NO_ITEMS, "forEach: no items, nothing to run"),
                 id="an empty literal list"),
    pytest.param(fan(), {}, {"list": {"files": '{"a": 1}'}},
                 Expansion(None, Reason.ITEMS_INVALID, 'forEach.items: '
                           'steps.list.outputs.files is not a JSON array: {"a": 1}'),
                 id="an object"),
    pytest.param(fan(), {}, {"list": {"files": "a.csv b.csv"}},
                 Expansion(None, Reason.ITEMS_INVALID, "forEach.items: "
                           "steps.list.outputs.files is not a JSON array: a.csv b.csv"),
                 id="not JSON"),
    pytest.param(fan(forEach={"items": "${{ params.files }}"}), {"files": {"a": [1]}}, {},
                 Expansion(None, Reason.ITEMS_INVALID, 'forEach.items: params.files is not a '
                           'JSON array: {"a":[1]}'), id="an object param"),
    pytest.param(fan(args=["${{ item.f }}"]), {}, {"list": {"files": '[{"f": 1}, {"g": 2}]'}},
                 Expansion(None, Reason.ITEMS_INVALID, "forEach.items: "
                           "steps.list.outputs.files: item 1 is not an object with field 'f' "
                           "(item.f reads it)"), id="an item without a field read"),
    pytest.param(fan(args=["${{ item.f }}"]), {}, {"list": {"files": '[{"f": 1}]'}},
                 Expansion(({"f": 1},)), id="items with the field read"),
    pytest.param(fan(), {}, {"list": {"files": json.dumps(list(range(MAX_ITEMS + 1)))}},
                 Expansion(None, Reason.TOO_MANY_ITEMS,
                           "forEach: 10001 items, more than 10000 a run may have"),
                 id="too many"),
])
def test_expand(step: dict[str, Any], values: dict[str, Any], outs: dict[str, Any],
                expected: Expansion) -> None:
    assert items.expand(step, values, outs) == expected


def test_expand_takes_a_lower_limit() -> None:
    matrix = fan(forEach={"matrix": {"a": [1, 2], "b": [1, 2]}})
    assert items.expand(matrix, {}, {}, limit=4) == Expansion(
        ({"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 2, "b": 1}, {"a": 2, "b": 2}))
    assert items.expand(matrix, {}, {}, limit=3) == Expansion(
        None, Reason.TOO_MANY_ITEMS, "forEach: 4 items, more than 3 a run may have")
    assert items.expand(fan(), {}, FILES, limit=1).reason == Reason.TOO_MANY_ITEMS


def test_expand_waits_for_what_its_items_read() -> None:
    with pytest.raises(KeyError):
        items.expand(fan(), {}, {})
    with pytest.raises(KeyError):
        items.expand(fan(forEach={"items": "${{ params.files }}"}), {}, FILES)


# -- rendering an item -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "item", "expected"), [
    pytest.param("--file=${{ item }}", Item(0, "a.csv"), "--file=a.csv", id="a string"),
    pytest.param("${{ item }}", Item(0, {"b": [1, None], "a": True}),
                 '{"a":true,"b":[1,null]}', id="an object, compact"),
    pytest.param("${{ item }}", Item(0, 3), "3", id="a number"),
    pytest.param("${{item.region}}-${{ item.size }}", Item(0, {"region": "eu", "size": 2}),
                 "eu-2", id="fields"),
    pytest.param("slot ${{ index }} of ${{ params.n }}", Item(41, None), "slot 41 of 5",
                 id="the index"),
])
def test_item_references_render(text: str, item: Item, expected: str) -> None:
    assert references.render(text, {"n": 5}, {}, item=item) == expected


def test_item_references_are_found() -> None:
    assert references.find("${{ item }} ${{ item.f }} ${{ index }}") == (
        Ref("item", item=True), Ref("item.f", item=True), Ref("index", item=True))
    assert [(r.param, r.output, r.field, str(r)) for r in references.find("${{ item.f }}")] == [
        (False, False, "f", "item.f")]
    with pytest.raises(Malformed, match=r"fan-out steps \$\{\{ item \}\}"):
        references.find("${{ items }}")


def test_an_item_reference_without_an_item_waits_and_a_missing_field_is_malformed() -> None:
    with pytest.raises(KeyError):
        references.render("${{ index }}", {}, {})
    with pytest.raises(Malformed, match="item 2 has no field 'f'"):
        references.render("${{ item.f }}", {}, {}, item=Item(2, {"g": 1}))
    with pytest.raises(Malformed, match="item 0 has no field 'f'"):
        references.render("${{ item.f }}", {}, {}, item=Item(0, "f"))


def test_render_step_renders_each_field_for_its_item() -> None:
    step = fan(args=["${{ item }}"], command=["${{ index }}"],
               env=[{"name": "F", "value": "${{ item }}"}, {"name": "E"}],
               pod={"annotations": {"n": "${{ index }}"}})
    out = references.render_step(step, {}, FILES, item=Item(1, "b.csv"))
    assert (out["args"], out["command"], out["env"], out["pod"]) == (
        ["b.csv"], ["1"], [{"name": "F", "value": "b.csv"}, {"name": "E"}],
        {"annotations": {"n": "1"}})
    assert out["forEach"] == step["forEach"]


def test_an_item_cannot_spell_a_reference_with_its_text() -> None:
    with pytest.raises(Malformed, match="rendered, the text would hold"):
        references.render("$${{ item }}", {}, {}, item=Item(0, "{{ x }}"))


def test_trial_render_renders_every_literal_item() -> None:
    run = {"steps": [fan(forEach={"items": ["ok", "{{ x }}"]}, args=["$${{ item }}"]),
                     fan("dyn", args=["$${{ item }}"])]}
    assert [str(p) for p in definition.trial_render(run, {}, "spec")] == [
        "spec.steps[0].args[0]: rendered, the text would hold '${{': ${{ x }}"]
    assert definition.trial_render({"steps": [fan(forEach={"items": ["ok"]},
                                                  args=["$${{ item }}"])]}, {}, "spec") == []


def test_the_inputs_digest_tells_items_apart() -> None:
    step = {"image": "i", "args": ["x"], "forEach": {"items": ["a", "b"]}}
    assert inputs.inputs_digest(step, {}, {}) == inputs.inputs_digest(step, {}, {})
    assert inputs.inputs_digest(step, {}, {}, item=Item(0, "a")) != inputs.inputs_digest(
        step, {}, {}, item=Item(1, "a"))
    assert inputs.inputs_digest(step, {}, {}, item=Item(0, "a")) != inputs.inputs_digest(
        step, {}, {}, item=Item(0, "b"))


# -- conditions per item ---------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "item", "holds"), [
    pytest.param("item == 'a.csv'", Item(0, "a.csv"), True, id="a string item"),
    pytest.param("index % 2 == 0", Item(3, "x"), False, id="the index"),
    pytest.param("item.region == 'eu' && index == 1", Item(1, {"region": "eu"}), True,
                 id="a field"),
    pytest.param("item > 2 && params.n == 1", Item(0, 3), True, id="with params"),
])
def test_a_condition_reads_its_item(expr: str, item: Item, holds: bool) -> None:
    assert conditions.evaluate(expr, {"n": 1}, {}, item=item) == conditions.Evaluated(holds)


def test_a_condition_on_a_field_an_item_lacks_is_an_error() -> None:
    evaluated = conditions.evaluate("item.region == 'eu'", {}, {}, item=Item(0, {"size": 1}))
    assert not evaluated.holds
    assert evaluated.error


def test_a_condition_is_checked_against_the_items_it_may_see() -> None:
    decls = params.declared([])
    conditions.check("item.size > 1", decls, {}, items=[{"size": 2}])
    with pytest.raises(conditions.Invalid, match="not a boolean"):
        conditions.check("item", decls, {}, items=[{"size": 2}])
    conditions.check("item", decls, {}, items=items.probes(fan()))
    with pytest.raises(conditions.Invalid, match="not a boolean"):
        conditions.check("index", decls, {}, items=items.probes(fan()))


def test_probes() -> None:
    assert items.probes(LIST) is None
    assert items.literal(LIST) is None
    assert items.probes(fan(forEach={"items": ["a", "b"]})) == ("a",)
    assert items.probes(fan(forEach={"matrix": {"b": [1], "a": ["x"]}})) == (
        {"a": "x", "b": 1},)
    assert items.probes(fan()) == items.probes(fan(forEach={"items": []}))
    assert items.probes(fan(forEach={"matrix": {"a": "x"}})) == items.probes(fan())


# -- outputs downstream ----------------------------------------------------------------------


def test_outputs_are_arrays_in_item_order_skipped_items_giving_the_default_or_null() -> None:
    declared = [{"name": "size"}, {"name": "kind", "default": "csv"}]
    got = items.aggregate_outputs(declared, [{"size": "12", "kind": "tsv"}, None,
                                             {"size": "40", "kind": "csv"}])
    assert got == items.Aggregated({"size": '["12",null,"40"]', "kind": '["tsv","csv","csv"]'},
                                   {})
    assert items.aggregate_outputs(None, [{"size": "1"}]) == items.Aggregated({}, {})
    assert items.aggregate_outputs(declared, []).outputs == {"size": "[]", "kind": "[]"}


def test_an_output_array_over_the_bound_is_named_never_cut() -> None:
    big = "é" * 30
    per_item = [{"name": big, "n": "1"}] * 5000
    got = items.aggregate_outputs([{"name": "name"}, {"name": "n"}], per_item)
    size = len(json.dumps([big] * 5000, separators=(",", ":"), ensure_ascii=False).encode())
    assert size > MAX_RENDERED_ARRAY
    assert got.outputs == {"n": json.dumps(["1"] * 5000, separators=(",", ":"))}
    assert got.too_large == {"name": f"output name, the array of 5000 items' values, takes "
                                     f"{size} bytes, more than 262144 a reference renders"}
