"""The Story CRD and a run's Story fields against the real API server: what the schema and its
CEL rules refuse at apply (naming the field), the run's record immutable once written,
`kubectl explain` and `kubectl get st` reading well."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from tests.support import kubectl_json

pytestmark = pytest.mark.integration

API = "runctl.dev/v1alpha1"
STORY_SPEC: dict[str, Any] = {
    "params": [{"name": "table", "type": "string"},
               {"name": "dryRun", "type": "boolean", "default": False},
               {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"}],
    "steps": [{"name": "count", "image": "example.invalid/count:1",
               "args": ["${{ params.table }}"], "outputs": [{"name": "rows"}]},
              {"name": "publish", "image": "example.invalid/publish:1",
               "when": "params.dryRun == false"}],
}


def story(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Story", "metadata": {"name": name}, "spec": spec}


def run(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StoryRun", "metadata": {"name": name}, "spec": spec}


def create(cluster: ControlPlane, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body),
                          check=False)
    return out.returncode, out.stdout + out.stderr


STEP = {"name": "a", "image": "example.invalid/a:1"}

BAD_RUNS = [
    pytest.param({"steps": [STEP], "storyRef": {"name": "etl"}},
                 "exactly one of steps, storyRef and rerunOf, not more", id="both"),
    pytest.param({"storyRef": {"name": "etl"}, "rerunOf": {"name": "r"}},
                 "exactly one of steps, storyRef and rerunOf, not more", id="story-and-rerun"),
    pytest.param({"mode": "batch"}, "exactly one of steps, storyRef and rerunOf; none is set",
                 id="neither"),
    pytest.param({"steps": [STEP], "params": {"a": 1}}, "spec.params: params are only for a "
                 "run of a Story (storyRef) or a re-run (rerunOf)", id="params-without-story"),
    pytest.param({"storyRef": {"name": "etl"}, "onFailure": "continue"},
                 "a run of a Story (or a re-run) takes its shape", id="shape-beside-story"),
    pytest.param({"storyRef": {"name": "etl"}, "timeoutSeconds": 5},
                 "a run of a Story (or a re-run) takes its shape", id="timeout-beside-story"),
    pytest.param({"rerunOf": {"name": "r"}, "finally": [STEP]},
                 "a run of a Story (or a re-run) takes its shape", id="finally-beside-rerun"),
    pytest.param({"steps": [STEP], "rerun": {"from": ["a"]}},
                 "spec.rerun: only for a re-run (rerunOf)", id="rerun-without-rerun-of"),
    pytest.param({"storyRef": {"name": "etl"}, "parallelism": -1}, "spec.parallelism",
                 id="parallelism-beside-story-below-one"),
    pytest.param({"rerunOf": {"name": "R"}}, "spec.rerunOf.name", id="rerun-of-bad-name"),
    pytest.param({"rerunOf": {"name": "r"}, "rerun": {"from": ["A b"]}},
                 "spec.rerun.from[0]", id="from-bad-name"),
]


@pytest.mark.parametrize(("spec", "words"), BAD_RUNS)
def test_a_run_names_exactly_one_of_steps_story_ref_and_rerun_of(
        crds: ControlPlane, namespace: str, spec: dict[str, Any], words: str) -> None:
    code, out = create(crds, namespace, run("bad", **spec))
    assert code != 0
    assert words in out


BAD_STORIES = [
    pytest.param({**STORY_SPEC, "params": [{"name": "a"}, {"name": "a"}]},
                 ["spec.params[1]: Duplicate value"], id="duplicate-param"),
    pytest.param({**STORY_SPEC, "params": [{"name": "a", "type": "date"}]},
                 ["spec.params[0].type", "Unsupported value"], id="unknown-type"),
    pytest.param({**STORY_SPEC, "params": [{"name": "a-b"}]},
                 ["spec.params[0].name", "should match"], id="param-name"),
    pytest.param({"steps": [{**STEP, "outputs": [{"name": "x"}, {"name": "x"}]}]},
                 ["spec.steps[0].outputs[1]: Duplicate value"], id="output-twice"),
    pytest.param({"steps": [{**STEP, "needs": ["b"]}]},
                 ["needs must name steps of this run"], id="unknown-needs"),
    pytest.param({"steps": [STEP], "parallelism": 0},
                 ["spec.parallelism", "greater than or equal to 1"], id="parallelism-zero"),
    pytest.param({"steps": [STEP], "mode": "realtime", "parallelism": 4},
                 ["spec.parallelism: a realtime run's steps all run at once"],
                 id="parallelism-in-a-realtime-story"),
]


@pytest.mark.parametrize(("spec", "words"), BAD_STORIES)
def test_a_bad_story_is_refused_at_apply_naming_the_field(
        crds: ControlPlane, namespace: str, spec: dict[str, Any], words: list[str]) -> None:
    code, out = create(crds, namespace, story("bad", spec))
    assert code != 0
    for word in words:
        assert word in out


def test_a_story_is_listed_with_its_params_and_steps(crds: ControlPlane, namespace: str) -> None:
    assert create(crds, namespace, story("etl", STORY_SPEC))[0] == 0
    out = crds.kubectl("get", "st", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "PARAMS", "STEPS", "AGE"]
    assert row.split()[:3] == ["etl", "table", "count"]  # kubectl prints the first of each
    assert "runctl" in crds.kubectl("api-resources", "--categories", "runctl").stdout


def test_kubectl_explain_describes_every_story_field(crds: ControlPlane) -> None:
    out = crds.kubectl("explain", "story.spec.params").stdout
    for field in ("name", "type", "default", "enum", "description"):
        assert f"  {field}\t" in out or f"  {field} " in out
    assert "any value of its type" in out
    out = crds.kubectl("explain", "storyrun.spec.storyRef").stdout
    assert "Name of a Story in the run's namespace" in out
    out = crds.kubectl("explain", "storyrun.spec.steps.when").stdout
    assert "CEL expression" in out
    out = crds.kubectl("explain", "storyrun.spec.rerunOf").stdout
    assert "Run this terminal StoryRun again" in out
    out = crds.kubectl("explain", "storyrun.status.rerun.steps").stdout
    assert "The steps it reuses" in out
    out = " ".join(crds.kubectl("explain", "steprun.spec.inputsDigest").stdout.split())
    assert "a StepRun without one is never reused" in out  # explain wraps its lines


def test_the_record_of_a_run_cannot_change_once_written(crds: ControlPlane,
                                                        namespace: str) -> None:
    """Whoever writes: the API server refuses a change to status.story or status.resolved."""
    assert create(crds, namespace, run("r", storyRef={"name": "etl"},
                                       params={"table": "t"}))[0] == 0
    record = {"story": {"name": "etl", "uid": "u1", "generation": 1, "digest": "sha256:aa"},
              "resolved": {"params": {"table": "t", "dryRun": False}, "spec": STORY_SPEC}}

    def patch(status: dict[str, Any]) -> tuple[int, str]:
        out = crds.kubectl("patch", "storyrun", "r", "-n", namespace, "--subresource=status",
                           "--type=merge", "-p", json.dumps({"status": status}), check=False)
        return out.returncode, out.stdout + out.stderr

    assert patch(record)[0] == 0
    assert patch(record)[0] == 0  # the same again: a no-op
    code, out = patch({"story": {"generation": 2}})
    assert code != 0
    assert "status.story is the run's record of what it executes" in out
    code, out = patch({"resolved": {"params": {"table": "other"}}})
    assert code != 0
    assert "status.resolved is the run's record" in out
    code, out = patch({"story": None})
    assert code != 0
    assert "status.story" in out
    got = kubectl_json(crds, "get", "sr", "r", "-n", namespace)["status"]
    assert got["story"] == record["story"]
    assert got["resolved"]["params"] == record["resolved"]["params"]


def test_a_rerun_s_record_cannot_change_once_written(crds: ControlPlane, namespace: str) -> None:
    """Whoever writes: status.rerun, like the rest of the record, is set once."""
    assert create(crds, namespace, run("again", rerunOf={"name": "nightly"}))[0] == 0
    reused = {"storyRun": "nightly", "stepRun": "nightly-a", "uid": "u2",
              "outputs": {"rows": "12"}}
    record = {"rerun": {"source": {"name": "nightly", "uid": "u1"}, "reused": 1,
                        "steps": {"a": reused}}}

    def patch(status: dict[str, Any]) -> tuple[int, str]:
        out = crds.kubectl("patch", "storyrun", "again", "-n", namespace,
                           "--subresource=status", "--type=merge", "-p",
                           json.dumps({"status": status}), check=False)
        return out.returncode, out.stdout + out.stderr

    assert patch(record)[0] == 0
    assert patch(record)[0] == 0  # the same again: a no-op
    code, out = patch({"rerun": {"steps": {"a": {"outputs": {"rows": "13"}}}}})
    assert code != 0
    assert "status.rerun is the run's record of what it executes" in out
    code, out = patch({"rerun": None})
    assert code != 0
    assert kubectl_json(crds, "get", "sr", "again", "-n", namespace)["status"] == record
