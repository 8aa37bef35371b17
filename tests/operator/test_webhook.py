"""What the admission webhook refuses, and why, named by field: a Story's definition, a run's
inline steps, and a run's params against the Story the operator has seen."""

from __future__ import annotations

from typing import Any

from runctl.operator.webhook import run_problems, story_problems

STORY: dict[str, Any] = {
    "params": [{"name": "table", "type": "string"},
               {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"}],
    "steps": [{"name": "count", "image": "x", "outputs": [{"name": "rows"}]},
              {"name": "load", "image": "x", "args": ["${{ steps.count.outputs.rows }}"],
               "when": "params.region == 'eu'"}],
}


def seen(namespace: str, name: str) -> dict[str, Any] | None:
    return {"spec": STORY} if (namespace, name) == ("ns", "etl") else None


def texts(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


def test_a_sound_story_and_runs_of_it_pass() -> None:
    assert story_problems(STORY) == []
    assert run_problems({"storyRef": {"name": "etl"}, "params": {"table": "t"}}, "ns",
                        seen) == []


def test_a_story_is_refused_for_its_references_conditions_and_graph() -> None:
    bad = {"steps": [{"name": "a", "image": "x", "args": ["${{ steps.b.outputs.x }}"]},
                     {"name": "b", "image": "x", "when": "params.n > 1"}]}
    assert texts(story_problems(bad)) == [
        'spec.steps[0].args[0]: step "b" declares no output "x" (steps.b.outputs.x)',
        'spec.steps[1].when: unknown param "n"',
    ]


def test_params_are_checked_against_the_story_seen_naming_the_param() -> None:
    got = texts(run_problems({"storyRef": {"name": "etl"},
                              "params": {"region": "asia", "colour": 1}}, "ns", seen))
    assert got == ['spec.params.colour: unknown param "colour" (declared: table, region)',
                   "spec.params.table: required param missing (it has no default)",
                   'spec.params.region: the value "asia" is not one of "eu", "us"']


def test_a_run_of_a_story_not_seen_yet_is_checked_when_it_resolves() -> None:
    assert run_problems({"storyRef": {"name": "later"}, "params": {"x": 1}}, "ns", seen) == []


def test_inline_steps_are_checked_as_a_story_s() -> None:
    spec = {"steps": [{"name": "a", "image": "x", "needs": ["b"]},
                      {"name": "b", "image": "x", "needs": ["a"], "args": ["${{ params.p }}"]}]}
    got = texts(run_problems(spec, "ns", seen))
    assert 'spec.steps[1].args[0]: unknown param "p"' in got
    assert any("cycle" in t for t in got)


def test_bad_finally_steps_are_refused_naming_the_field() -> None:
    bad = {"steps": [{"name": "a", "image": "x", "when": "run.outcome == 'Failed'"}],
           "finally": [{"name": "a", "image": "x"},
                       {"name": "b", "image": "x", "needs": ["c"]},
                       {"name": "c", "image": "x", "needs": ["b"]},
                       {"name": "d", "image": "x", "needs": ["a"]}]}
    assert texts(run_problems(bad, "ns", seen)) == [
        "spec.steps[0].when: unknown variable run (use params.NAME or "
        "steps.STEP.outputs.NAME) (run only in a finally step)",
        'spec.finally[0].name: duplicate step "a" (also spec.steps[0])',
        'spec.finally[3].needs: a finally step cannot need main step "a": finally steps '
        "start once every main step is terminal",
    ]
    cycle = {"steps": [{"name": "a", "image": "x"}],
             "finally": [{"name": "b", "image": "x", "needs": ["c"]},
                         {"name": "c", "image": "x", "needs": ["b"]}]}
    assert texts(story_problems(cycle)) == ["spec.finally: cycle b -> c -> b"]
