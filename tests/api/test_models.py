"""The API models read what users and the API server write, and write it back unchanged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from runctl.api import (
    StepRunSpec,
    StepRunStatus,
    StepSpec,
    StoryRunSpec,
    StoryRunStatus,
    StorySpec,
)
from runctl.api.wire import run_spec
from runctl.flow import definition, params
from runctl.machine.dag import validate
from runctl.machine.phases import FailureClass, Mode, OnFailure, RunPhase, StepPhase

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))

FULL_SPEC: dict[str, Any] = {
    "mode": "batch",
    "onFailure": "continue",
    "timeoutSeconds": 3600,
    "cancelRequested": False,
    "suspend": False,
    "shutdown": {"gracePeriodSeconds": 30},
    "transport": {"lifecycle": {"drainTimeoutSeconds": 120}},
    "ttlSecondsAfterFinished": 300,
    "steps": [
        {
            "name": "extract",
            "needs": [],
            "image": "ghcr.io/acme/extract:1.2",
            "command": ["python", "-m", "extract"],
            "args": [],
            "env": [{"name": "DAY", "value": "2026-11-22"}, {"name": "EMPTY"}],
            "timeoutSeconds": 600,
            "retry": {"limit": 2, "backoffSeconds": 5, "backoffFactor": 2,
                      "maxBackoffSeconds": 60, "transientExitCodes": [75]},
            "pod": {
                "labels": {"team": "data"},
                "annotations": {"sim.runctl.dev/duration": "3s"},
                "serviceAccountName": "etl-runner",
            },
            "heartbeatTimeoutSeconds": 30,
            "port": 8080,
        },
        {"name": "load", "needs": ["extract"], "image": "ghcr.io/acme/load:1.2"},
    ],
}

RUN_STATUS: dict[str, Any] = {
    "phase": "Failed",
    "reason": "StepFailed",
    "message": "extract: exit code 3",
    "startedAt": "2026-11-22T10:00:00Z",
    "finishedAt": "2026-11-22T10:02:13Z",
    "duration": "2m13s",
    "stepStates": {
        "extract": {"phase": "Failed", "reason": "StepFailed", "message": "exit code 3",
                    "stepRun": "nightly-extract", "attempts": 3,
                    "startedAt": "2026-11-22T10:00:00Z", "finishedAt": "2026-11-22T10:02:13Z"},
        "load": {"phase": "Skipped", "reason": "UpstreamFailed", "attempts": 0},
    },
    "stop": {"requestedAt": "2026-11-22T10:02:13Z", "observedAt": "2026-11-22T10:02:13Z",
             "completedAt": "2026-11-22T10:02:13Z", "trigger": "AllStepsTerminal"},
    "conditions": [{"type": "Succeeded", "status": "False", "reason": "StepFailed",
                    "message": "extract: exit code 3",
                    "lastTransitionTime": "2026-11-22T10:02:13Z", "observedGeneration": 1}],
    "observedGeneration": 1,
    "progress": "2/2",
}

STEP_RUN: dict[str, Any] = {
    "apiVersion": "runctl.dev/v1alpha1",
    "kind": "StepRun",
    "metadata": {"name": "nightly-extract", "namespace": "data",
                 "labels": {"runctl.dev/storyrun": "nightly", "runctl.dev/step": "extract"}},
    "spec": {**FULL_SPEC["steps"][0], "storyRun": "nightly", "step": "extract",
             "mode": "batch", "deadline": "2026-11-22T11:00:00Z"},
    "status": {
        "phase": "Succeeded", "reason": "Completed", "message": "done", "attempts": 1,
        "startedAt": "2026-11-22T10:00:00Z", "finishedAt": "2026-11-22T10:00:03Z",
        "heartbeatAt": "2026-11-22T10:00:02Z", "outputs": {"rows": "1200"},
        "failureClass": "Transient", "workload": {"kind": "Pod", "name": "nightly-extract-1"},
        "nextAttemptAt": "2026-11-22T10:00:01Z",
    },
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_reads_and_passes_every_check(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    stories = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Story"}
    for story in stories.values():
        assert StorySpec.model_validate(story).steps
        assert definition.check(story) == []
        assert validate(run_spec({}, story)) == ()
    for spec in (d["spec"] for d in docs if d["kind"] == "StoryRun"):
        StoryRunSpec.model_validate(spec)
        story = stories.get((spec.get("storyRef") or {}).get("name", ""))
        if story is None:
            assert definition.check(spec) == []
            assert validate(run_spec(spec)) == ()
        else:
            assert params.resolve(params.declared(story.get("params")), spec["params"])[1] == []


def test_a_full_story_run_round_trips_unchanged() -> None:
    assert StoryRunSpec.model_validate(FULL_SPEC).to_api() == FULL_SPEC
    assert StoryRunStatus.model_validate(RUN_STATUS).to_api() == RUN_STATUS


def test_a_full_step_run_round_trips_unchanged() -> None:
    assert StepRunSpec.model_validate(STEP_RUN["spec"]).to_api() == STEP_RUN["spec"]
    assert StepRunStatus.model_validate(STEP_RUN["status"]).to_api() == STEP_RUN["status"]


FAN_OUT: dict[str, Any] = {
    "name": "convert", "needs": ["list"], "image": "ghcr.io/acme/convert:1.0",
    "args": ["--file", "${{ item }}", "--slot", "${{ index }}"],
    "outputs": [{"name": "size"}],
    "forEach": {"items": "${{ steps.list.outputs.files }}", "parallelism": 50},
}
"""A fan-out step as the API server stores it (parallelism defaulted or given)."""

ITEM_STEP_RUN: dict[str, Any] = {
    "name": "convert", "needs": ["list"], "image": "ghcr.io/acme/convert:1.0",
    "args": ["--file", "b.csv", "--slot", "1"], "outputs": [{"name": "size"}],
    "storyRun": "nightly", "step": "convert", "mode": "batch",
    "inputsDigest": "sha256:" + "0" * 64, "item": {"index": 1, "value": "b.csv"},
}
"""An item's StepRun spec: the step rendered for item 1, and the item."""


@pytest.mark.parametrize("for_each", [
    pytest.param(FAN_OUT["forEach"], id="a reference"),
    pytest.param({"items": ["a", 2, {"k": [None, True]}], "parallelism": 100}, id="a list"),
    pytest.param({"matrix": {"region": ["eu", "us"], "size": [{"cpu": 1}]},
                  "parallelism": 1}, id="a matrix"),
])
def test_a_fan_out_step_round_trips_unchanged(for_each: dict[str, Any]) -> None:
    step = {**FAN_OUT, "forEach": for_each}
    assert StepSpec.model_validate(step).to_api() == step
    story = {"steps": [{"name": "list", "image": "x", "outputs": [{"name": "files"}]}, step]}
    assert StorySpec.model_validate(story).to_api()["steps"][1] == step
    assert definition.check(story) == []


def test_a_fan_out_s_parallelism_defaults_to_100() -> None:
    step = StepSpec.model_validate({**FAN_OUT, "forEach": {"items": ["a"]}})
    assert step.for_each is not None
    assert step.for_each.parallelism == 100
    assert step.for_each.matrix is None


def test_an_item_s_step_run_round_trips_unchanged() -> None:
    spec = StepRunSpec.model_validate(ITEM_STEP_RUN)
    assert spec.item is not None
    assert (spec.item.index, spec.item.value) == (1, "b.csv")
    assert spec.to_api() == ITEM_STEP_RUN
    assert StepRunSpec.model_validate(
        {**ITEM_STEP_RUN, "item": {"index": 0, "value": None}}).to_api()["item"] == {"index": 0}


def test_defaults_are_the_contract_s() -> None:
    spec = StoryRunSpec.model_validate({"steps": [{"name": "a", "image": "x"}]})
    assert spec.mode is Mode.BATCH
    assert spec.on_failure is OnFailure.STOP
    assert spec.cancel_requested is False
    assert spec.shutdown.grace_period_seconds == 30
    assert spec.timeout_seconds is None
    assert spec.transport is None
    assert spec.ttl_seconds_after_finished is None
    step = spec.steps[0]
    assert step.needs == []
    assert step.retry is None
    assert StepSpec.model_validate({"name": "a", "image": "x", "retry": {}}).retry == \
        StepSpec.model_validate({"name": "a", "image": "x", "retry": {
            "limit": 0, "backoffSeconds": 10, "backoffFactor": 1,
            "transientExitCodes": []}}).retry
    assert StepSpec.model_validate({"name": "a", "image": "x", "retry": {}}).to_api()[
        "retry"] == {"limit": 0, "backoffSeconds": 10, "backoffFactor": 1,
                     "transientExitCodes": []}


def test_python_code_may_use_snake_case_names() -> None:
    step = StepSpec(name="extract", image="x", timeout_seconds=5, heartbeat_timeout_seconds=9)
    assert step.to_api() == {"name": "extract", "image": "x", "needs": [], "timeoutSeconds": 5,
                             "heartbeatTimeoutSeconds": 9}


def test_typed_values_come_out_as_enums_and_times() -> None:
    status = StoryRunStatus.model_validate(RUN_STATUS)
    assert status.phase is RunPhase.FAILED
    assert status.step_states is not None
    assert status.step_states["load"].phase is StepPhase.SKIPPED
    assert status.finished_at == dt.datetime(2026, 11, 22, 10, 2, 13, tzinfo=dt.UTC)
    assert StepRunStatus.model_validate(STEP_RUN["status"]).failure_class is (
        FailureClass.TRANSIENT)
    assert StepRunSpec.model_validate(STEP_RUN["spec"]).story_run == "nightly"


def test_status_dumps_camel_case_whole_seconds_utc_without_absent_fields() -> None:
    status = StoryRunStatus(
        phase=RunPhase.RUNNING,
        started_at=dt.datetime(2026, 11, 22, 11, 0, 0, 700_000,
                               tzinfo=dt.timezone(dt.timedelta(hours=1))),
        progress="0/2",
    )
    assert status.to_api() == {"phase": "Running", "startedAt": "2026-11-22T10:00:00Z",
                               "progress": "0/2"}
    assert StepRunStatus(phase=StepPhase.PENDING).to_api() == {
        "phase": "Pending", "attempts": 0}


def test_unknown_fields_are_ignored_when_reading() -> None:
    assert "future" not in StoryRunSpec.model_validate({**FULL_SPEC, "future": 1}).to_api()
    assert "later" not in StoryRunStatus.model_validate({**RUN_STATUS, "later": "x"}).to_api()


BAD_SPECS = [
    pytest.param({"steps": []}, "steps", id="no-steps"),
    pytest.param({"steps": [{"name": "Bad_Name", "image": "x"}]}, "name", id="bad-name"),
    pytest.param({"steps": [{"name": "a" * 64, "image": "x"}]}, "name", id="long-name"),
    pytest.param({"steps": [{"name": "a"}]}, "image", id="no-image"),
    pytest.param({"timeoutSeconds": -1, "steps": [{"name": "a", "image": "x"}]},
                 "timeoutSeconds", id="negative-timeout"),
    pytest.param({"timeoutSeconds": 0, "steps": [{"name": "a", "image": "x"}]},
                 "timeoutSeconds", id="zero-timeout"),
    pytest.param({"mode": "bursty", "steps": [{"name": "a", "image": "x"}]}, "mode",
                 id="unknown-mode"),
    pytest.param({"onFailure": "ignore", "steps": [{"name": "a", "image": "x"}]},
                 "onFailure", id="unknown-onFailure"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"limit": 11}}]}, "limit",
                 id="retry-limit"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"backoffFactor": 0}}]},
                 "backoffFactor", id="backoff-factor-below-1"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"backoffFactor": 11}}]},
                 "backoffFactor", id="backoff-factor-over-10"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"maxBackoffSeconds": -1}}]},
                 "maxBackoffSeconds", id="negative-max-backoff"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"maxBackoffSeconds": 86401}}]},
                 "maxBackoffSeconds", id="max-backoff-over-a-day"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"backoffSeconds": 30,
                                                                  "maxBackoffSeconds": 20}}]},
                 "maxBackoffSeconds", id="max-backoff-below-backoff"),
    pytest.param({"steps": [{"name": "a", "image": "x", "retry": {"maxBackoffSeconds": 5}}]},
                 "maxBackoffSeconds", id="max-backoff-below-the-default-backoff"),
    pytest.param({"steps": [{"name": "a", "image": "x", "port": 0}]}, "port", id="port"),
    pytest.param({"shutdown": {"gracePeriodSeconds": -1}, "steps": [{"name": "a", "image": "x"}]},
                 "gracePeriodSeconds", id="grace"),
    pytest.param({"steps": [{"name": "a", "image": "x", "forEach": {"items": [1],
                                                                     "parallelism": 0}}]},
                 "parallelism", id="parallelism"),
    pytest.param({"steps": [{"name": "a", "image": "x", "forEach": {"matrix": {"r": []}}}]},
                 "matrix", id="empty-dimension"),
    pytest.param({"steps": [{"name": "a", "image": "x", "forEach": {"matrix": {"r": "eu"}}}]},
                 "matrix", id="dimension-not-a-list"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS)
def test_the_models_refuse_what_the_schema_refuses(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        StoryRunSpec.model_validate(spec)
