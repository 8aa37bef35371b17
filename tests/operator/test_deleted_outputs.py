"""A StepRun deleted after its step succeeded, in the shell on recorded objects: the snapshot
tells the core what it needs to know (the producer's StepRun seen deleted; for a fan-out
producer, its item's), and a reconcile fails the reader that can no longer render what it
reads, without rendering (or making) its StepRun."""

from __future__ import annotations

from typing import Any

from runctl.machine import model as m
from runctl.machine.decide import decide
from runctl.machine.phases import Reason, StepPhase
from runctl.operator import render, resolve
from runctl.operator.snapshot import snapshot
from tests.operator.test_apply import NOW, context, reconcile
from tests.recorded import load


def reading_run(uid: str, *, fan_out: bool = False) -> dict[str, Any]:
    """The recorded run `ok` whose step load reads extract's output rows and has not
    started; extract succeeded (`fan_out`: over two items, each recorded Succeeded)."""
    run = load("storyrun-ok-running")
    run["metadata"]["uid"] = uid  # another run: nothing of it is remembered
    extract, reader = run["spec"]["steps"]
    extract["outputs"] = [{"name": "rows"}]
    reader["args"] = ["--rows", "${{ steps.extract.outputs.rows }}"]
    states = run["status"]["stepStates"]
    states["load"] = {"phase": "Pending"}
    if fan_out:
        extract["forEach"] = {"items": ["a", "b"]}
        del states["extract"]["stepRun"]
        states["extract"] |= {"attempts": 0, "message": "2 of 2 items succeeded",
                              "items": {"total": 2, "Succeeded": 2}}
    return run


def produced(run: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    """The recorded StepRun of extract as `run` made it (for `index`, that item's)."""
    sr = load("steprun-ok-extract")
    sr["metadata"]["ownerReferences"][0]["uid"] = run["metadata"]["uid"]
    if index is not None:
        sr["metadata"]["name"] = f"ok-extract-{index}"
        sr["metadata"]["uid"] = f"uid-extract-{index}"
        sr["metadata"]["labels"]["runctl.dev/item"] = str(index)
    return sr


def test_a_producer_s_steprun_seen_deleted_fails_its_reader_unrendered() -> None:
    run = reading_run("uid-deleted-producer")
    ctx = context(run, sr := produced(run))
    definition = resolve.definition(ctx.cache, run, NOW)
    assert m.lookup(snapshot(ctx.cache, ("rec", "ok"), run, definition).gates,
                    "load") is not None  # its output is there: load may start
    ctx.cache.drop("StepRun", sr)
    observed = snapshot(ctx.cache, ("rec", "ok"), run, definition)
    assert m.lookup(observed.step_runs, "extract") == m.StepRunObservation(
        "ok-extract", None, deleting=True, gone=True)
    assert m.lookup(observed.gates, "load") is None  # nothing to render it from
    decision = decide(observed, NOW)
    load_ = m.step_state(decision.status, "load")
    assert load_ is not None
    assert (load_.phase, load_.reason, load_.message) == (
        StepPhase.FAILED, Reason.UPSTREAM_OUTPUT_DELETED,
        "step extract's outputs are gone: its StepRun ok-extract was deleted after it "
        "succeeded")
    assert render.step_runs(run, definition, observed, decision) == {}


def test_an_item_s_steprun_seen_deleted_is_told_while_a_reader_waits_for_it() -> None:
    run = reading_run("uid-deleted-item", fan_out=True)
    ctx = context(run, produced(run, 0), item := produced(run, 1))
    ctx.cache.drop("StepRun", item)
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, ("rec", "ok"), run, definition)
    assert m.lookup(observed.step_runs, "extract[1]") == m.StepRunObservation(
        "ok-extract-1", None, deleting=True, gone=True)
    reconcile(ctx, run)
    written = next(args[-1]["status"] for method, args in reversed(ctx.fake.calls)
                   if method == "patch_namespaced_custom_object_status")
    assert (written["phase"], written["reason"]) == ("Failed", "UpstreamOutputDeleted")
    assert written["stepStates"]["load"]["message"] == (
        "step extract's outputs are gone: the StepRun ok-extract-1 of its item 1 was deleted "
        "after it succeeded")
    assert "create_namespaced_custom_object" not in [method for method, _ in ctx.fake.calls]


def test_an_item_s_deletion_is_not_looked_up_once_no_step_reads_it() -> None:
    """Its reader ended: the deletion changes nothing, and a wide fan-out's items are not
    looked up at every reconcile for it."""
    run = reading_run("uid-deleted-item-unread", fan_out=True)
    run["status"]["stepStates"]["load"] = {"phase": "Succeeded", "reason": "Completed",
                                           "stepRun": "ok-load", "attempts": 1}
    ctx = context(run, produced(run, 0), item := produced(run, 1))
    ctx.cache.drop("StepRun", item)
    observed = snapshot(ctx.cache, ("rec", "ok"), run, resolve.definition(ctx.cache, run, NOW))
    assert m.lookup(observed.step_runs, "extract[1]") is None
