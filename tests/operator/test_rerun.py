"""A re-run in the shell, on recorded objects (the source: run `ok` and its StepRuns, as a real
API server stored them, ended): what it records of its source, the exact calls its first
reconcile makes (the record, the label, a reused StepRun with no pod, the rest started), and
that nothing is ever sent about the source."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from runctl.api import wire
from runctl.flow import inputs, references
from runctl.flow.references import Item
from runctl.machine.decide import decide
from runctl.machine.phases import Reason
from runctl.machine.steps import reused_status
from runctl.operator import apply as applying
from runctl.operator import reconcile, render, resolve
from runctl.operator.rerun import check
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


def reused_extract(objects: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The re-run's StepRun of `extract`, made by reuse with its status (the source's, renamed
    and owned by `run`)."""
    extract = copy.deepcopy(objects[1])
    extract["metadata"] |= {"name": "again-extract", "uid": "uid-again-extract",
                            "ownerReferences": [{"uid": run["metadata"]["uid"],
                                                 "kind": "StoryRun", "name": "again",
                                                 "controller": True}],
                            "labels": {wire.RUN_LABEL: "again", wire.STEP_LABEL: "extract"}}
    extract["status"] = wire.steprun_status(
        reused_status(dict(wire.reuses(run["status"]))["extract"], NOW))
    return extract


def test_the_step_after_a_reused_one_reads_its_recorded_outputs() -> None:
    objects = source()
    objects[0]["spec"]["steps"][0]["outputs"] = [{"name": "rows"}]
    objects[0]["spec"]["steps"][1]["args"] = ["${{ steps.extract.outputs.rows }}"]
    ctx = context(*objects, run := recorded_run(context(*objects)))
    # The reused StepRun, made with its status, seen before the step after it starts.
    ctx.cache.put("StepRun", reused_extract(objects, run))
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


# -- a fan-out step, item by item ------------------------------------------------------------

ITEMS = ["a", "b", "c", "d"]


def fanned_source() -> list[dict[str, Any]]:
    """Run `ok` with `load` a fan-out over four items, ended Failed: items 0 and 2 succeeded,
    item 1 failed, item 3 succeeded with other inputs than the re-run's (its digest differs);
    each item's StepRun made from the recorded one as the operator makes an item's."""
    run, extract, template = source()[0], source()[1], load("steprun-ok-load")
    load_ = run["spec"]["steps"][1]
    load_ |= {"forEach": {"items": ITEMS, "parallelism": 1}, "args": ["${{ item }}"]}
    run["status"]["stepStates"]["load"] = {
        "phase": "Failed", "reason": "StepFailed", "attempts": 0,
        "items": {"total": 4, "Succeeded": 3, "Failed": 1}}
    made = {"extract": {"rows": "1200", "table": "events"}}
    items = []
    for index, value in enumerate(ITEMS):
        sr = copy.deepcopy(template)
        sr["metadata"] |= {"name": f"ok-load-{index}", "uid": f"uid-ok-load-{index}",
                           "labels": {**sr["metadata"]["labels"],
                                      wire.ITEM_LABEL: str(index)}}
        item = Item(index, value)
        spec = references.render_step(load_, {}, made, None, item)
        sr["spec"] = {**sr["spec"], **spec, "item": {"index": index, "value": value},
                      "inputsDigest": inputs.inputs_digest(spec, {}, made, None, item)}
        failed = index == 1
        sr["status"] |= {"phase": "Failed" if failed else "Succeeded",
                         "reason": "StepFailed" if failed else "Completed",
                         "outputs": {} if failed else {"n": str(index)}}
        items.append(sr)
    items[3]["spec"]["inputsDigest"] = "sha256:other"
    return [run, extract, *items]


def fanned_rerun(objects: list[dict[str, Any]], uid: str) -> dict[str, Any]:
    """The re-run of the fanned source, recorded; a uid of its own (what the operator keeps of a
    run, it keeps by uid)."""
    run = recorded_run(context(*objects))
    run["metadata"]["uid"] = uid
    return run


def test_a_rerun_reuses_the_items_whose_digest_matches_and_runs_the_others() -> None:
    objects = fanned_source()
    ctx = context(*objects, run := fanned_rerun(objects, "uid-again-fanned"))
    assert run["status"]["rerun"]["reused"] == 1  # extract; a fan-out is never reused whole
    assert set(run["status"]["rerun"]["steps"]) == {"extract"}
    ctx.cache.put("StepRun", reused_extract(objects, run))
    reconcile_once(ctx, run)
    creates = [args[-1] for name, args in ctx.fake.calls
               if name == "create_namespaced_custom_object"]
    # Items 0 and 2 reused (made whatever the parallelism of 1); item 1 runs; item 3 waits.
    assert [c["metadata"]["name"] for c in creates] == [
        "again-load-0", "again-load-1", "again-load-2"]
    assert [c["spec"]["inputsDigest"] for c in creates] == [
        objects[2 + i]["spec"]["inputsDigest"] for i in range(3)]
    pods = [args[-1]["metadata"]["name"] for name, args in ctx.fake.calls
            if name == "create_namespaced_pod"]
    assert pods == ["again-load-1-1"]
    written = {args[-2]: args[-1]["status"] for name, args in ctx.fake.calls
               if name == "patch_namespaced_custom_object_status" and args[-2] != "again"}
    assert set(written) == {"again-load-0", "again-load-2"}
    for index in (0, 2):
        status = written[f"again-load-{index}"]
        assert (status["phase"], status["reason"], status["attempts"]) == (
            "Succeeded", Reason.REUSED, 0)
        assert status["outputs"] == {"n": str(index)}
        assert status["reusedFrom"] == {"storyRun": "ok", "stepRun": f"ok-load-{index}",
                                        "uid": f"uid-ok-load-{index}"}
    record = [args[-1]["status"] for name, args in ctx.fake.calls
              if name == "patch_namespaced_custom_object_status" and args[-2] == "again"][-1]
    assert record["stepStates"]["load"]["items"] == {"total": 4, "Succeeded": 2, "Pending": 2}
    assert not [c for c in ctx.fake.calls for a in c[1]
                if isinstance(a, str) and a.startswith("ok")]


def test_no_item_is_reused_when_the_source_is_gone_or_another_run() -> None:
    objects = fanned_source()
    run = fanned_rerun(objects, "uid-again-gone")
    gone = context(*objects[2:], run)
    definition = resolve.definition(gone.cache, run, NOW)
    there = context(*objects, run)
    offered = snapshot(there.cache, KEY, run, definition).reused
    assert [k for k, _ in offered] == ["extract", "load[0]", "load[2]"]
    assert snapshot(gone.cache, KEY, run, definition).reused == definition.reused
    other = copy.deepcopy(objects[0])
    other["metadata"]["uid"] = "uid-another-ok"
    again = context(other, *objects[1:], run)
    assert snapshot(again.cache, KEY, run, definition).reused == definition.reused


def test_items_are_not_offered_for_reuse_below_from_or_once_made() -> None:
    objects = fanned_source()
    run = fanned_rerun(objects, "uid-again-from")
    named = copy.deepcopy(run)
    named["spec"]["rerun"] = {"from": ["load"]}
    ctx = context(*objects, named)
    definition = resolve.definition(ctx.cache, named, NOW)
    assert snapshot(ctx.cache, KEY, named, definition).reused == definition.reused
    ended = copy.deepcopy(run)
    ended["status"]["stepStates"] = {"load": {"phase": "Failed", "reason": "StepFailed"}}
    ctx = context(*objects, ended)
    assert snapshot(ctx.cache, KEY, ended, definition).reused == definition.reused


def test_which_items_are_reused_is_decided_once() -> None:
    """Read once before the items are made: what becomes of the source afterwards (here an
    item's StepRun rewritten) changes nothing of it; items made are offered no more."""
    objects = fanned_source()
    run = fanned_rerun(objects, "uid-again-once")
    ctx = context(*objects, run)
    definition = resolve.definition(ctx.cache, run, NOW)
    first = snapshot(ctx.cache, KEY, run, definition).reused
    changed = copy.deepcopy(objects[2])
    changed["spec"]["inputsDigest"] = "sha256:changed"
    changed["metadata"]["resourceVersion"] = "999"
    ctx.cache.put("StepRun", changed)
    assert snapshot(ctx.cache, KEY, run, definition).reused == first
    made = copy.deepcopy(objects[2])
    made["metadata"] |= {"name": "again-load-0", "uid": "uid-again-load-0",
                         "ownerReferences": [{"uid": "uid-again-once", "kind": "StoryRun",
                                              "name": "again", "controller": True}],
                         "labels": {wire.RUN_LABEL: "again", wire.STEP_LABEL: "load",
                                    wire.ITEM_LABEL: "0"}}
    ctx.cache.put("StepRun", made)
    assert [k for k, _ in snapshot(ctx.cache, KEY, run, definition).reused] == [
        "extract", "load[2]"]


def test_a_rerun_takes_the_parallelism_of_the_definition_it_records() -> None:
    """An inline source's bound is part of its definition; a run of a Story's own bound is not
    (the Story's is), as its shutdown.mode is not; the re-run's own wins over either."""
    steps = [{"name": "a", "image": "x"}]
    inline = {"metadata": {"name": "src", "uid": "u1"},
              "spec": {"steps": steps, "parallelism": 2}, "status": {"phase": "Succeeded"}}
    of_story = {"metadata": {"name": "src", "uid": "u2"},
                "spec": {"storyRef": {"name": "etl"}, "parallelism": 1},
                "status": {"phase": "Succeeded",
                           "resolved": {"spec": {"steps": steps, "parallelism": 4},
                                        "params": {}}}}
    again: dict[str, Any] = {"rerunOf": {"name": "src"}}
    for source, bound in ((inline, 2), (of_story, 4)):
        found, problems = check(again, "rec", source)
        assert problems == []
        assert found is not None
        assert wire.run_spec(again, found.spec).parallelism == bound
        assert wire.run_spec({**again, "parallelism": 3}, found.spec).parallelism == 3
