"""`runctl start`'s and `runctl rerun`'s translation of their arguments into a StoryRun, and
their refusal, before anything is created, of what the webhook would refuse."""

from __future__ import annotations

import argparse

import pytest

from runctl.api.spec import MAX_RUN_NAME
from runctl.cli.rerun import declared, rerun_body
from runctl.cli.session import Failed
from runctl.cli.start import create_run, param, param_values, run_body
from runctl.flow.params import check_run

DECLARED = {"table": "string", "dryRun": "boolean", "limit": "number", "tags": "array"}


def test_a_value_is_text_for_a_string_param_and_json_for_any_other_type() -> None:
    pairs = [("table", "42"), ("dryRun", "true"), ("limit", "2.5"), ("tags", '["a", "b"]')]
    assert param_values(pairs, DECLARED) == {
        "table": "42", "dryRun": True, "limit": 2.5, "tags": ["a", "b"]}


def test_what_does_not_fit_is_sent_as_it_is_for_the_api_server_to_name() -> None:
    assert param_values([("dryRun", "yes"), ("colour", "1")], DECLARED) == {
        "dryRun": "yes", "colour": "1"}


def test_a_later_value_of_the_same_param_wins_and_values_may_hold_equals_signs() -> None:
    assert param("expr=a=b") == ("expr", "a=b")
    assert param("empty=") == ("empty", "")
    assert param_values([("table", "a"), ("table", "b")], DECLARED) == {"table": "b"}


@pytest.mark.parametrize("text", ["table", "=x", ""])
def test_a_pair_without_a_name_or_an_equals_sign_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        param(text)


def test_the_run_is_named_from_the_story_within_the_run_name_limit() -> None:
    body = run_body("etl", {"table": "t"})
    assert body["metadata"] == {"generateName": "etl-"}
    assert body["spec"] == {"storyRef": {"name": "etl"}, "params": {"table": "t"}}
    assert "params" not in run_body("etl", {})["spec"]
    long = run_body("a" * 100, {})["metadata"]["generateName"]
    assert len(long) + 5 <= MAX_RUN_NAME
    assert run_body("ab-" + "c" * 53 + ".x", {})["metadata"]["generateName"].endswith("c-")


def test_a_rerun_names_its_source_and_only_what_it_changes() -> None:
    assert rerun_body("nightly", [], {}) == {
        "apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
        "metadata": {"generateName": "nightly-"}, "spec": {"rerunOf": {"name": "nightly"}}}
    assert rerun_body("nightly", ["load", "clean"], {"day": "tue"})["spec"] == {
        "rerunOf": {"name": "nightly"}, "rerun": {"from": ["load", "clean"]},
        "params": {"day": "tue"}}
    assert len(rerun_body("a" * 63, [], {})["metadata"]["generateName"]) + 5 <= MAX_RUN_NAME


def test_a_rerun_types_its_params_as_the_source_s_definition_declares_them() -> None:
    source = {"status": {"resolved": {"spec": {"params": [
        {"name": "day"}, {"name": "dryRun", "type": "boolean"}]}}}}
    assert declared(source) == {"day": "string", "dryRun": "boolean"}
    assert declared({"spec": {"steps": []}}) == {}


class _NoApi:
    """A session whose API must not be called."""

    namespace = "data"

    @property
    def custom(self) -> object:
        raise AssertionError("nothing may be created")


def test_params_that_do_not_fit_are_refused_in_the_webhook_s_words_before_any_create() -> None:
    definition = {"params": [{"name": "table"}, {"name": "dryRun", "type": "boolean",
                                                 "default": False}]}
    given = param_values([("dryRun", "maybe"), ("tabel", "x")], {"dryRun": "boolean"})
    problems = check_run(definition, given)
    with pytest.raises(Failed) as refused:
        create_run(_NoApi(), run_body("etl", given), "a run of story etl",  # type: ignore[arg-type]
                   watch=False, problems=problems)
    assert str(refused.value) == (
        'a run of story etl would be refused: spec.params.tabel: unknown param "tabel" '
        "(declared: table, dryRun); spec.params.table: required param missing (it has no "
        "default); spec.params.dryRun: the value must be of type boolean, not string")
