"""A re-run in the shell, on recorded objects (the source: run `ok` and its StepRuns, as a real
API server stored them, ended): what it records of its source, the exact calls its first
reconcile makes (the record, the label, a reused StepRun with no pod, the rest started), and
that nothing is ever sent about the source."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from runctl.api import wire
from runctl.flow import inputs
from runctl.machine.decide import decide
from runctl.machine.phases import Reason
from runctl.machine.steps import reused_status
from runctl.operator import apply as applying
from runctl.operator import reconcile, render, resolve
from runctl.operator.snapshot import snapshot
from tests.operator.test_apply import NOW, FakeContext, context, methods
from tests.recorded import load

KEY = ("rec", "again")


def source() -> list[dict[str, Any]]:
    """Run `ok` ended Failed: extract succeeded (its StepRun recording its inputs digest, as
    StepRuns made from now on do), load failed."""
    run, extract, load_ = (load("storyrun-ok-running"), load("steprun-ok-extract"),
                           load("steprun-ok-load"))
    run["status"] |= {"phase": "Failed", "reason": "StepFailed", "progress": "2/2"}
    run["status"]["stepStates"]["load"] |= {"phase": "Failed", "reason": "StepFailed"}
    extract["spec"]["inputsDigest"] = inputs.inputs_digest(extract["spec"], {}, {})
    load_["status"] |= {"phase": "Failed", "reason": "StepFailed"}
    return [run, extract, load_]


def rerun(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
            "metadata": {"name": "again", "namespace": "rec", "uid": "uid-again",
                         "resourceVersion": "500", "generation": 1,
                         "creationTimestamp": "2026-11-26T00:25:20Z"},
            "spec": {"rerunOf": {"name": "ok"}, "mode": "batch", "onFailure": "stop",
                     "shutdown": {"gracePeriodSeconds": 30}, "cancelRequested": False},
            **({"status": status} if status else {})}


def reconcile_once(ctx: FakeContext, run: dict[str, Any]) -> None:
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, KEY, run, definition)
    decision = decide(observed, NOW)
    asyncio.run(applying.apply(
        ctx, KEY, run, decision, render.step_runs(run, definition, observed, decision), NOW))


def recorded_run(ctx: FakeContext) -> dict[str, Any]:
    record = resolve.definition(ctx.cache, rerun(), NOW).record
    assert record is not None
    return rerun(record)


def test_a_rerun_records_the_source_s_definition_and_the_steps_it_reuses() -> None:
    ctx = context(*(objects := source()))
    ok, extract = objects[0], objects[1]
    record = resolve.definition(ctx.cache, rerun(), NOW).record
    assert record is not None
    assert "story" not in record  # an inline source ran no Story
    assert record["resolved"] == {"params": {}, "spec": {
        k: v for k, v in ok["spec"].items() if k != "cancelRequested"}}
    assert record["rerun"] == {
        "source": {"name": "ok", "uid": ok["metadata"]["uid"]}, "reused": 1,
        "steps": {"extract": {"storyRun": "ok", "stepRun": "ok-extract",
                              "uid": extract["metadata"]["uid"],
                              "outputs": {"rows": "1200", "table": "events"}}}}


def test_a_source_steprun_with_no_digest_is_not_reused() -> None:
    objects = source()
    del objects[1]["spec"]["inputsDigest"]
    record = resolve.definition(context(*objects).cache, rerun(), NOW).record
    assert record is not None
    assert record["rerun"]["reused"] == 0


def test_its_first_reconcile_records_labels_then_makes_the_reused_steprun_with_no_pod(
        ) -> None:
    ctx = context(*source(), rerun())
    ctx.fake.answers["patch_namespaced_custom_object_status"] = [
        {**recorded_run(context(*source())), "metadata": {
            **rerun()["metadata"], "resourceVersion": "501"}}]
    asyncio.run(reconcile.reconcile_run(ctx, KEY))
    calls = [(name, args[-2] if name.startswith("patch") else "") for name, args in
             ctx.fake.calls]
    assert calls == [
        ("patch_namespaced_custom_object_status", "again"),  # the record, once
        ("patch_namespaced_custom_object", "again"),         # the label
        ("create_namespaced_custom_object", ""),             # StepRun again-extract (reused)
        ("create_namespaced_custom_object", ""),             # StepRun again-load
        ("patch_namespaced_custom_object_status", "again-extract"),  # Succeeded/Reused
        ("create_namespaced_pod", ""),                       # again-load-1, and only that
        ("patch_namespaced_custom_object_status", "again"),  # the run
        ("create_namespaced_event", ""),                     # Started
    ]
    assert ctx.fake.calls[5][1][-1]["metadata"]["name"] == "again-load-1"
    assert ctx.fake.calls[1][1][-1] == {"metadata": {"labels": {wire.RERUN_LABEL: "ok"}}}
    made = ctx.fake.calls[2][1][-1]
    assert made["spec"]["inputsDigest"] == source()[1]["spec"]["inputsDigest"]
    status = ctx.fake.calls[4][1][-1]["status"]
    assert (status["phase"], status["reason"], status["attempts"]) == (
        "Succeeded", Reason.REUSED, 0)
    assert status["outputs"] == {"rows": "1200", "table": "events"}
    assert status["reusedFrom"]["stepRun"] == "ok-extract"
    assert "workload" not in status
    assert not [c for c in ctx.fake.calls for a in c[1] if a in ("ok", "ok-extract", "ok-load")]


def test_the_step_after_a_reused_one_reads_its_recorded_outputs() -> None:
    objects = source()
    objects[0]["spec"]["steps"][0]["outputs"] = [{"name": "rows"}]
    objects[0]["spec"]["steps"][1]["args"] = ["${{ steps.extract.outputs.rows }}"]
    ctx = context(*objects, run := recorded_run(context(*objects)))
    # The reused StepRun, made with its status, seen before the step after it starts.
    extract = copy.deepcopy(objects[1])
    extract["metadata"] |= {"name": "again-extract", "uid": "uid-again-extract",
                            "ownerReferences": [{"uid": "uid-again", "kind": "StoryRun",
                                                 "name": "again", "controller": True}],
                            "labels": {wire.RUN_LABEL: "again", wire.STEP_LABEL: "extract"}}
    extract["status"] = wire.steprun_status(
        reused_status(dict(wire.reuses(run["status"]))["extract"], NOW))
    ctx.cache.put("StepRun", extract)
    reconcile_once(ctx, run)
    assert methods(ctx)[:2] == ["create_namespaced_custom_object", "create_namespaced_pod"]
    assert ctx.fake.calls[0][1][-1]["spec"]["args"] == ["1200"]


def test_what_a_rerun_records_is_what_a_real_api_server_stored() -> None:
    """Recorded: run `part` (its first step succeeded, its second failed) and its re-run."""
    again = load("storyrun-part-again-succeeded")
    stored = again.pop("status")
    ctx = context(load("storyrun-part-failed"), load("steprun-part-first"))
    record = resolve.definition(ctx.cache, again, NOW).record
    assert record == {k: stored[k] for k in ("story", "resolved", "rerun")}
