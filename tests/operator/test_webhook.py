"""What the admission webhook refuses, and why, named by field: a Story's definition, a run's
inline steps, a run's params against the Story the operator has seen, and a re-run against its
source."""

from __future__ import annotations

from typing import Any

import pytest

from runctl.machine.dag import REALTIME_PARALLELISM
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


RUNS: dict[str, dict[str, Any]] = {
    "nightly": {"metadata": {"name": "nightly", "uid": "u1"},
                "spec": {"steps": STORY["steps"], "cancelRequested": True},
                "status": {"phase": "Failed"}},
    "of-etl": {"metadata": {"name": "of-etl", "uid": "u2"}, "spec": {"storyRef": {"name": "etl"}},
               "status": {"phase": "Succeeded",
                          "resolved": {"spec": STORY, "params": {"table": "t", "region": "eu"}}}},
    "waited": {"metadata": {"name": "waited", "uid": "u3"}, "spec": {"storyRef": {"name": "x"}},
               "status": {"phase": "Failed", "reason": "StoryNotFound"}},
    "going": {"metadata": {"name": "going", "uid": "u4"}, "spec": {"steps": STORY["steps"]},
              "status": {"phase": "Running"}},
}


def runs(namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
    return namespace == "ns", RUNS.get(name)


def check(spec: dict[str, Any]) -> list[str]:
    return texts(run_problems(spec, "ns", seen, runs))


def texts(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


def test_a_sound_story_and_runs_of_it_pass() -> None:
    assert story_problems(STORY) == []
    assert check({"storyRef": {"name": "etl"}, "params": {"table": "t"}}) == []


def test_a_story_is_refused_for_its_references_conditions_and_graph() -> None:
    bad = {"steps": [{"name": "a", "image": "x", "args": ["${{ steps.b.outputs.x }}"]},
                     {"name": "b", "image": "x", "when": "params.n > 1"}]}
    assert texts(story_problems(bad)) == [
        'spec.steps[0].args[0]: step "b" declares no output "x" (steps.b.outputs.x)',
        'spec.steps[1].when: unknown param "n"',
    ]


def test_params_are_checked_against_the_story_seen_naming_the_param() -> None:
    got = texts(run_problems({"storyRef": {"name": "etl"},
                              "params": {"region": "asia", "colour": 1}}, "ns", seen, runs))
    assert got == ['spec.params.colour: unknown param "colour" (declared: table, region)',
                   "spec.params.table: required param missing (it has no default)",
                   'spec.params.region: the value "asia" is not one of "eu", "us"']


def test_a_run_of_a_story_not_seen_yet_is_checked_when_it_resolves() -> None:
    assert run_problems({"storyRef": {"name": "later"}, "params": {"x": 1}}, "ns", seen, runs) == []


def test_inline_steps_are_checked_as_a_story_s() -> None:
    spec = {"steps": [{"name": "a", "image": "x", "needs": ["b"]},
                      {"name": "b", "image": "x", "needs": ["a"], "args": ["${{ params.p }}"]}]}
    got = texts(run_problems(spec, "ns", seen, runs))
    assert 'spec.steps[1].args[0]: unknown param "p"' in got
    assert any("cycle" in t for t in got)


def test_bad_finally_steps_are_refused_naming_the_field() -> None:
    bad = {"steps": [{"name": "a", "image": "x", "when": "run.outcome == 'Failed'"}],
           "finally": [{"name": "a", "image": "x"},
                       {"name": "b", "image": "x", "needs": ["c"]},
                       {"name": "c", "image": "x", "needs": ["b"]},
                       {"name": "d", "image": "x", "needs": ["a"]}]}
    assert texts(run_problems(bad, "ns", seen, runs)) == [
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


def test_a_rerun_of_a_terminal_run_in_its_namespace_passes() -> None:
    assert check({"rerunOf": {"name": "nightly"}, "rerun": {"from": ["load"]}}) == []
    assert check({"rerunOf": {"name": "of-etl", "namespace": "ns"},
                  "params": {"region": "us"}}) == []


@pytest.mark.parametrize(("spec", "problems"), [
    pytest.param({"rerunOf": {"name": "gone"}},
                 ["spec.rerunOf.name: run gone not found in namespace ns"], id="missing"),
    pytest.param({"rerunOf": {"name": "going"}},
                 ["spec.rerunOf.name: run going is Running: only a terminal run can run again"],
                 id="not-terminal"),
    pytest.param({"rerunOf": {"name": "waited"}},
                 ["spec.rerunOf.name: run waited ended before it resolved its Story: it has no "
                  "definition to run again"], id="no-definition"),
    pytest.param({"rerunOf": {"name": "nightly", "namespace": "other"}},
                 ["spec.rerunOf.namespace: must be the run's own namespace, ns: a run re-runs "
                  "only runs of its namespace"], id="other-namespace"),
    pytest.param({"rerunOf": {"name": "nightly"}, "rerun": {"from": ["count", "publish"]}},
                 ['spec.rerun.from[1]: "publish" is not a step of run nightly'], id="from"),
    pytest.param({"rerunOf": {"name": "of-etl"}, "params": {"region": "asia", "n": 1}},
                 ['spec.params.n: unknown param "n" (declared: table, region)',
                  'spec.params.region: the value "asia" is not one of "eu", "us"'],
                 id="params"),
    pytest.param({"rerunOf": {"name": "nightly"}, "params": {"table": "t"}},
                 ['spec.params.table: unknown param "table" (declared: none)'],
                 id="params-of-inline"),
])
def test_a_bad_rerun_is_refused_naming_the_field(spec: dict[str, Any],
                                                 problems: list[str]) -> None:
    assert check(spec) == problems


REALTIME: dict[str, Any] = {"mode": "realtime", "steps": [{"name": "serve", "image": "x"}]}
PARALLEL = [f"spec.parallelism: {REALTIME_PARALLELISM}"]


def realtime_seen(namespace: str, name: str) -> dict[str, Any] | None:
    return {"spec": REALTIME} if name == "live" else seen(namespace, name)


def realtime_runs(namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
    if name == "live-run":
        return True, {"metadata": {"name": name, "uid": "u5"}, "spec": REALTIME,
                      "status": {"phase": "Canceled"}}
    return runs(namespace, name)


@pytest.mark.parametrize(("spec", "problems"), [
    pytest.param({"steps": [{"name": "a", "image": "x"}], "parallelism": 2}, [], id="inline"),
    pytest.param({**REALTIME, "parallelism": 2}, PARALLEL, id="inline-realtime"),
    pytest.param({"storyRef": {"name": "etl"}, "params": {"table": "t"}, "parallelism": 2}, [],
                 id="of-a-story"),
    pytest.param({"storyRef": {"name": "live"}, "parallelism": 2}, PARALLEL,
                 id="of-a-realtime-story"),
    pytest.param({"storyRef": {"name": "live"}}, [], id="of-a-realtime-story-no-bound"),
    pytest.param({"rerunOf": {"name": "nightly"}, "parallelism": 1}, [], id="a-rerun"),
    pytest.param({"rerunOf": {"name": "live-run"}, "parallelism": 1}, PARALLEL,
                 id="a-rerun-of-a-realtime-run"),
    pytest.param({"rerunOf": {"name": "gone"}, "parallelism": 1},
                 ["spec.rerunOf.name: run gone not found in namespace ns"],
                 id="a-rerun-of-nothing"),
])
def test_a_parallelism_in_a_realtime_run_is_refused_whatever_defines_it(
        spec: dict[str, Any], problems: list[str]) -> None:
    assert texts(run_problems(spec, "ns", realtime_seen, realtime_runs)) == problems


def test_a_realtime_story_with_a_parallelism_is_refused() -> None:
    assert texts(story_problems({**REALTIME, "parallelism": 3})) == PARALLEL


def test_a_rerun_in_a_namespace_the_operator_does_not_watch_is_left_to_its_operator() -> None:
    assert run_problems({"rerunOf": {"name": "gone"}}, "elsewhere", seen, runs) == []
