"""Snapshot and apply against a fake API that records every call, on recorded objects: the exact
calls a decision makes, in order, and what a refusal, a conflict or a failed create does."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import decide
from runctl.machine.model import WorkloadState
from runctl.machine.phases import RunPhase, StepPhase
from runctl.operator import apply as applying
from runctl.operator import render, resolve, stopping
from runctl.operator.cache import ObjectCache
from runctl.operator.context import Context
from runctl.operator.queue import WorkQueue
from runctl.operator.settings import API_THREADS
from runctl.operator.snapshot import snapshot
from tests.recorded import load

NOW = dt.datetime(2026, 11, 26, 0, 25, 13, tzinfo=dt.UTC)
KEY = ("rec", "ok")


@dataclass
class FakeApi:
    """Any client method: records (method, positional args), answers from `answers` (an
    exception to raise, or a body), else echoes the body it was given."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    answers: dict[str, list[Any]] = field(default_factory=dict)
    options: list[dict[str, Any]] = field(default_factory=list)
    """Each call's keyword arguments, in the order of `calls`."""

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, args))
            self.options.append(kwargs)
            queued = self.answers.get(method)
            if queued:
                answer = queued.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return answer
            return _echo(method, args)
        return call


def _echo(method: str, args: tuple[Any, ...]) -> Any:
    if method.startswith("patch"):  # (group, version, namespace, plural, name, patch)
        return {"metadata": {"namespace": args[2], "name": args[4], "resourceVersion": "0"}}
    body = next((a for a in reversed(args) if isinstance(a, dict)), {})
    if method.startswith("create"):
        body = copy.deepcopy(body)
        name = body["metadata"].get("name") or body["metadata"].get("generateName")
        body["metadata"].setdefault("uid", f"uid-{name}")
        body["metadata"].setdefault("resourceVersion", "100")
    return body


class FakeContext(Context):
    """The real context, its API clients replaced by one recording fake."""

    fake: FakeApi

    @property
    def custom(self) -> Any:
        return self.fake

    @property
    def core(self) -> Any:
        return self.fake

    @property
    def apps(self) -> Any:
        return self.fake


def context(*objects: dict[str, Any]) -> FakeContext:
    ctx = FakeContext(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
    ctx.fake = FakeApi()
    for obj in objects:
        if obj["kind"] == "StoryRun":
            ctx.cache.put_run(obj)
        else:
            ctx.cache.put(obj["kind"], obj)
    return ctx


def fresh_run() -> dict[str, Any]:
    """The recorded run as it was created: no status yet."""
    run = load("storyrun-ok-running")
    del run["status"]
    return run


def reconcile(ctx: FakeContext, run: dict[str, Any]) -> applying.Applied:
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, KEY, run, definition)
    decision = decide(observed, NOW)

    async def send() -> applying.Applied:
        # As many threads for blocking calls as the operator has (asyncio's default has few).
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(API_THREADS))
        return await applying.apply(
            ctx, KEY, run, decision, render.step_runs(run, definition, observed, decision), NOW)
    return asyncio.run(send())


def methods(ctx: FakeContext) -> list[str]:
    return [name for name, _ in ctx.fake.calls]


def test_a_first_reconcile_creates_the_steprun_its_pod_then_the_run_status() -> None:
    """No status is written to a StepRun made for its first attempt: none means attempt 1,
    and its first write is the one that records its pod running."""
    ctx = context(run := fresh_run())
    result = reconcile(ctx, run)
    assert (result.landed_short, result.notes) == (False, ())
    assert methods(ctx) == [
        "create_namespaced_custom_object",        # StepRun ok-extract
        "create_namespaced_pod",                  # ok-extract-1
        "patch_namespaced_custom_object_status",  # the run: Running, extract Pending
        "create_namespaced_event",                # Started
    ]
    created = ctx.fake.calls[0][1][-1]
    assert created["metadata"]["name"] == "ok-extract"
    assert ctx.fake.calls[1][1][-1]["metadata"]["name"] == "ok-extract-1"
    patch = ctx.fake.calls[2][1][-1]
    assert patch["metadata"]["resourceVersion"] == run["metadata"]["resourceVersion"]
    assert patch["status"]["phase"] == "Running"
    assert patch["status"]["stepStates"]["extract"]["stepRun"] == "ok-extract"


def refusal(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = json.dumps({"message": message})
    return exc


def test_a_steprun_create_refused_as_invalid_fails_the_step_with_the_api_server_s_words(
        ) -> None:
    """A status must never name a StepRun the API server did not confirm; an invalid create
    can never succeed, so the refusal is observed and fails the step: never a run left
    Running forever, never the same create sent again."""
    ctx = context(run := fresh_run())
    why = 'StepRun.runctl.dev "ok-extract" is invalid: spec.image: Required value'
    ctx.fake.answers["create_namespaced_custom_object"] = [refusal(422, why)]
    result = reconcile(ctx, run)
    assert (result.landed_short, result.forbidden) == (True, False)
    assert "ok-extract not created" in result.notes[0]
    assert methods(ctx) == ["create_namespaced_custom_object"]

    ctx.fake.calls.clear()
    reconcile(ctx, run)
    assert "create_namespaced_custom_object" not in methods(ctx)
    patch = next(c[1][-1] for c in ctx.fake.calls
                 if c[0] == "patch_namespaced_custom_object_status")
    assert patch["status"]["phase"] == "Failed"
    extract = patch["status"]["stepStates"]["extract"]
    assert extract["phase"] == "Failed"
    assert "CreateRefused, Permanent" in extract["message"]
    assert why in extract["message"]


def test_a_forbidden_steprun_create_waits_says_why_once_and_is_tried_again() -> None:
    """Forbidden (RBAC, a quota) may be allowed later: the run waits, a Warning Event on it
    says why (once per reason), and the create is tried again later rather than soon."""
    ctx = context(run := fresh_run())
    why = 'stepruns.runctl.dev "ok-extract" is forbidden: exceeded quota: none'
    ctx.fake.answers["create_namespaced_custom_object"] = [refusal(403, why)] * 2
    result = reconcile(ctx, run)
    assert (result.landed_short, result.forbidden) == (True, True)
    assert methods(ctx) == ["create_namespaced_custom_object", "create_namespaced_event"]
    event = ctx.fake.calls[1][1][-1]
    assert (event["reason"], event["involvedObject"]["kind"]) == ("CreateForbidden", "StoryRun")
    assert why in event["message"]
    ctx.fake.calls.clear()
    reconcile(ctx, run)
    assert methods(ctx) == ["create_namespaced_custom_object"]  # tried again, said once
    ctx.fake.calls.clear()
    reconcile(ctx, run)  # allowed now
    assert methods(ctx)[0] == "create_namespaced_custom_object"
    assert "patch_namespaced_custom_object_status" in methods(ctx)


def test_a_steprun_create_lost_in_an_outage_leaves_the_run_status_unwritten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(applying.kube, "BASE_DELAY", 0.001)
    ctx = context(run := fresh_run())
    ctx.fake.answers["create_namespaced_custom_object"] = [
        ConnectionRefusedError("connection refused")] * applying.kube.MAX_TRIES
    result = reconcile(ctx, run)
    assert result.landed_short
    assert methods(ctx) == ["create_namespaced_custom_object"] * applying.kube.MAX_TRIES


def load_succeeded() -> tuple[FakeContext, dict[str, Any]]:
    """The recorded run with load Running, and load's pod just ended with its outputs."""
    pod = load("pod-ok-load-1")
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
        "exitCode": 0, "reason": "Completed", "message": '{"loaded": "1200"}',
        "startedAt": "2026-11-26T00:25:12Z", "finishedAt": "2026-11-26T00:25:13Z"}}
    run = load("storyrun-ok-running")
    return context(run, load("steprun-ok-extract"), load("steprun-ok-load"), pod), run


@pytest.mark.parametrize("answer", [
    pytest.param(ConnectionRefusedError("connection refused"), id="outage"),
    pytest.param(ApiException(status=409), id="conflict"),
])
def test_a_steprun_status_write_that_did_not_land_leaves_the_run_status_unwritten(
        monkeypatch: pytest.MonkeyPatch, answer: Exception) -> None:
    """A step's end (with its outputs) is recorded on its StepRun before the run records it:
    were the run written first, its record (which keeps no outputs) would be all that is
    left of the step's end, and the steps reading its outputs would wait for ever. Found by
    make chaos (seed 2026): a StepRun write lost in an API server restart, the run's write
    landing after it."""
    monkeypatch.setattr(applying.kube, "BASE_DELAY", 0.001)
    ctx, run = load_succeeded()
    ctx.fake.answers["patch_namespaced_custom_object_status"] = (
        [answer] * applying.kube.MAX_TRIES)
    result = reconcile(ctx, run)
    assert result.landed_short
    patched = [c[1][3] for c in ctx.fake.calls if c[0] == "patch_namespaced_custom_object_status"]
    assert set(patched) == {"stepruns"}, patched  # never the run's status
    assert "create_namespaced_event" not in methods(ctx)

    ctx.fake.calls.clear()
    ctx.fake.answers.clear()
    reconcile(ctx, run)  # the API server answers again: the StepRun first, then the run
    patched = [(c[1][3], c[1][-1]["status"]) for c in ctx.fake.calls
               if c[0] == "patch_namespaced_custom_object_status"]
    assert [plural for plural, _ in patched] == ["stepruns", "storyruns"]
    assert patched[0][1]["outputs"] == {"loaded": "1200"}


def test_a_steprun_status_write_that_did_not_land_never_holds_back_a_stop_s_deletes() -> None:
    """Only the run's status waits for a StepRun's record: the workloads a decision stops are
    deleted in the same apply, whatever became of the record (a stop stops at once)."""
    ctx, run = load_succeeded()
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, KEY, run, definition)
    decision = decide(observed, NOW)
    write = next(a for a in decision.actions if isinstance(a, act.WriteStepRunStatus))
    stopping_too = replace(decision, actions=(write, act.StopWorkload("load", 30)))
    ctx.fake.answers["patch_namespaced_custom_object_status"] = [ApiException(status=409)]
    result = asyncio.run(applying.apply(ctx, KEY, run, stopping_too, {}, NOW))
    assert result.landed_short
    assert methods(ctx) == ["patch_namespaced_custom_object_status",  # the StepRun: refused
                            "delete_namespaced_pod"]                  # load-1, at once
    assert ctx.fake.calls[1][1][0] == "ok-load-1"


def test_a_recorded_steprun_never_seen_is_created_again() -> None:
    """The run's status names ok-load (Running), which the cache has never seen: it is created
    again under the same name (the API server answers AlreadyExists if it does exist), at the
    attempt the record names; ok-extract, recorded Succeeded, is left alone."""
    run = load("storyrun-ok-running")
    ctx = context(run)
    result = reconcile(ctx, run)
    assert methods(ctx)[:3] == ["create_namespaced_custom_object",
                                "patch_namespaced_custom_object_status",
                                "create_namespaced_pod"]
    assert ctx.fake.calls[0][1][-1]["metadata"]["name"] == "ok-load"
    assert ctx.fake.calls[2][1][-1]["metadata"]["name"] == "ok-load-1"
    assert not result.landed_short


def test_an_existing_steprun_not_yet_seen_is_waited_for() -> None:
    ctx = context(run := fresh_run())
    ctx.fake.answers["create_namespaced_custom_object"] = [ApiException(status=409)]
    result = reconcile(ctx, run)
    assert result.landed_short
    assert methods(ctx) == ["create_namespaced_custom_object"]


def test_a_conflicting_status_write_posts_no_event_and_looks_again() -> None:
    ctx = context(run := fresh_run())
    ctx.fake.answers["patch_namespaced_custom_object_status"] = [
        ApiException(status=409)]  # the run's status (the new StepRun's needs no write)
    result = reconcile(ctx, run)
    assert result.landed_short
    assert "create_namespaced_event" not in methods(ctx)


def test_a_refused_status_write_is_reported_once_and_never_sent_again() -> None:
    ctx = context(run := load("storyrun-ok-running"), load("steprun-ok-extract"),
                  load("steprun-ok-load"),
                  load("pod-ok-extract-1"), load("pod-ok-load-1"))
    ctx.cache.put("Pod", _finished(load("pod-ok-load-1")))
    ctx.fake.answers["patch_namespaced_custom_object_status"] = [
        _echo("patch", ("", "", "rec", "stepruns", "ok-load")),
        ApiException(status=422, reason="Invalid")]
    first = reconcile(ctx, run)
    assert any("status refused" in n for n in first.notes)
    events = [c[1][-1] for c in ctx.fake.calls if c[0] == "create_namespaced_event"]
    assert [e["reason"] for e in events] == ["WriteRejected"]
    ctx.fake.calls.clear()
    second = reconcile(ctx, run)
    assert second.notes == ("the same status write was refused before; not sent again",)
    assert "create_namespaced_event" not in methods(ctx)


def _finished(pod: dict[str, Any]) -> dict[str, Any]:
    """The recorded running pod of `load`, a little later: it exited 0."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1000)
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
        "exitCode": 0, "startedAt": "2026-11-26T00:25:12Z",
        "finishedAt": "2026-11-26T00:25:13Z"}}
    return pod


def test_a_late_success_of_a_lost_step_deletes_its_ended_pod_and_is_reported_once() -> None:
    """The batch attempt's pod is the workload: the stop that follows a late report deletes it
    although it ended, and the next reconcile sees that stop under way."""
    lost = load("steprun-ok-load")
    lost["status"].update(phase="Lost", reason="WorkloadDeleted", message="its pod vanished",
                          finishedAt="2026-11-26T00:25:13Z")
    ctx = context(run := load("storyrun-ok-running"), load("steprun-ok-extract"), lost,
                  load("pod-ok-extract-1"), _finished(load("pod-ok-load-1")))
    def sent() -> tuple[list[str], int]:
        deletes = [c[1][0] for c in ctx.fake.calls if c[0] == "delete_namespaced_pod"]
        late = [c for c in ctx.fake.calls if c[0] == "create_namespaced_event"
                and c[1][-1]["reason"] == "LateReportRejected"]
        ctx.fake.calls.clear()
        return deletes, len(late)

    reconcile(ctx, run)
    assert sent() == (["ok-load-1"], 1)
    reconcile(ctx, run)
    assert sent() == ([], 0)


def test_a_realtime_stop_scales_to_zero_and_lets_the_replicaset_controller_delete_the_pods(
        ) -> None:
    """No pod is deleted by the stop while the ReplicaSet controller may still count on it (it
    would replace it, after the stop): the Deployment is scaled to zero, the controller deletes
    the pod (the watch brings that), and only then is the Deployment deleted."""
    pod = load("pod-live-hub")
    ctx = context(load("storyrun-live-canceled"), load("deployment-live-hub"), pod)
    ctx.fake.answers["patch_namespaced_deployment"] = [{"metadata": {"name": "live-hub"}}]

    async def controller() -> None:
        await asyncio.sleep(0.1)
        ctx.fake.calls.append(("watch: pod deleted by its ReplicaSet", ()))
        ctx.cache.mark_deleting("Pod", pod, NOW)

    async def stop() -> None:
        await asyncio.gather(stopping.stop_workloads(ctx, "rec", "live", "hub", 30),
                             controller())
    asyncio.run(stop())
    assert [c[0] for c in ctx.fake.calls] == [
        "patch_namespaced_deployment", "watch: pod deleted by its ReplicaSet",
        "delete_namespaced_deployment"]
    assert ctx.fake.calls[0][1] == ("live-hub", "rec", {"spec": {"replicas": 0}})
    ctx.fake.calls.clear()
    asyncio.run(stopping.stop_workloads(ctx, "rec", "live", "hub", 30))
    assert ctx.fake.calls == []  # the Deployment and the pod are seen being deleted


def test_a_realtime_stop_deletes_the_pods_itself_when_the_controller_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller manager that is down never deletes the pods: past the wait, the stop
    deletes the Deployment, then its ReplicaSet, then its pod, each wave once the last landed.
    A role that may not scale (an older chart's) skips the wait."""
    for refused, wait in ((False, 0.2), (True, 60.0)):
        monkeypatch.setattr(stopping, "SCALED_WAIT", wait)
        pod = load("pod-live-hub")
        ctx = context(load("storyrun-live-canceled"), load("deployment-live-hub"), pod)
        ctx.fake.answers["patch_namespaced_deployment"] = [
            refusal(403, "forbidden") if refused else {"metadata": {"name": "live-hub"}}]
        asyncio.run(asyncio.wait_for(
            stopping.stop_workloads(ctx, "rec", "live", "hub", 30), timeout=30))
        replicaset = next(o["name"] for o in pod["metadata"]["ownerReferences"]
                          if o["kind"] == "ReplicaSet")
        assert [(c[0], c[1][0]) for c in ctx.fake.calls] == [
            ("patch_namespaced_deployment", "live-hub"),
            ("delete_namespaced_deployment", "live-hub"),
            ("delete_namespaced_replica_set", replicaset),
            ("delete_namespaced_pod", pod["metadata"]["name"])], refused


def item_pod(index: int, phase: str = "Running") -> dict[str, Any]:
    """The recorded pod of ok's load step, made item `index` of a fan-out step `load`."""
    pod = load("pod-ok-load-1")
    pod["metadata"]["name"] = f"ok-load-{index}-1"
    pod["metadata"]["labels"]["runctl.dev/item"] = str(index)
    pod["status"]["phase"] = phase
    return pod


class Collections(FakeApi):
    """Deletes of pod collections: each answers the pods of `pods` its item selector chooses
    (`in (...)`, or `notin (...)`), as the API server lists what it deleted."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        super().__init__()
        self.pods = pods
        self.lock = threading.Lock()

    def delete_collection_namespaced_pod(self, ns: str, **options: Any) -> Any:
        with self.lock:
            self.calls.append(("delete_collection_namespaced_pod", (ns,)))
            self.options.append(options)
        selector = options["label_selector"].rsplit(",runctl.dev/item", 1)[1].strip()
        op, _, listed = selector.partition(" (")
        chosen = set(listed.rstrip(")").split(",")) if listed else set()
        items = [p for p in self.pods if (p["metadata"]["labels"]["runctl.dev/item"] in chosen)
                 == (op == "in")]
        return SimpleNamespace(data=json.dumps({"kind": "PodList", "items": items}).encode())


def test_a_fan_out_s_items_are_stopped_in_a_few_requests_and_seen_stopping() -> None:
    """`StopItems`: the step's live item pods the cache knows are deleted as collections of
    `SHARE` pods each, chosen by label and phase, all sent at once, plus one collection for any
    pod of the step not known yet (being created as the stop came); the pods the API server
    says it deleted are seen deleting at once (the next decision sends no stop again), and an
    ended item's pod is left with its logs."""
    known = [item_pod(i) for i in range(stopping.SHARE + 1)]
    ended, unseen = item_pod(40, phase="Succeeded"), item_pod(41)
    ctx = context(*known, ended)
    ctx.fake = Collections([*known, unseen])
    asyncio.run(stopping.stop_items(ctx, "rec", "ok", "load", 30))
    assert methods(ctx) == ["delete_collection_namespaced_pod"] * 3
    base = "runctl.dev/storyrun=ok,runctl.dev/step=load,runctl.dev/item"
    share = ",".join(str(i) for i in range(stopping.SHARE))
    everyone = f"{share},{stopping.SHARE}"
    assert sorted(o["label_selector"] for o in ctx.fake.options) == sorted([
        f"{base} in ({share})", f"{base} in ({stopping.SHARE})", f"{base} notin ({everyone})"])
    for options in ctx.fake.options:
        assert options["field_selector"] == "status.phase!=Succeeded,status.phase!=Failed"
        assert options["body"].grace_period_seconds == 30
    assert all(ctx.cache.get("Pod", "rec", p["metadata"]["name"])["metadata"].get(
        "deletionTimestamp") for p in known)
    assert "deletionTimestamp" not in ctx.cache.get("Pod", "rec", "ok-load-40-1")["metadata"]


def test_a_role_without_deletecollection_stops_the_items_one_by_one() -> None:
    """A role of an older chart may lack the verb: the live item pods the cache knows are
    deleted one by one instead (an ended one keeps its logs), and the stop goes on."""
    ctx = context(item_pod(0), item_pod(1), item_pod(2, phase="Succeeded"), load("pod-ok-load-1"))
    ctx.fake.answers["delete_collection_namespaced_pod"] = [ApiException(status=403)] * 2
    asyncio.run(stopping.stop_items(ctx, "rec", "ok", "load", 30))
    assert [(c[0], c[1][0]) for c in ctx.fake.calls] == [
        ("delete_collection_namespaced_pod", "rec"), ("delete_collection_namespaced_pod", "rec"),
        ("delete_namespaced_pod", "ok-load-0-1"), ("delete_namespaced_pod", "ok-load-1-1")]
    assert ctx.fake.options[2]["body"].grace_period_seconds == 30


def test_a_snapshot_of_recorded_objects_is_what_the_core_needs() -> None:
    ctx = context(run := load("storyrun-ok-running"), load("steprun-ok-extract"),
                  load("steprun-ok-load"),
                  load("pod-ok-extract-1"), load("pod-ok-load-1"))
    observed = snapshot(ctx.cache, KEY, run, resolve.definition(ctx.cache, run, NOW))
    assert observed.run_name == "ok"
    assert observed.status.phase is RunPhase.RUNNING
    extract = m.lookup(observed.step_runs, "extract")
    load_ = m.lookup(observed.step_runs, "load")
    assert extract is not None
    assert load_ is not None
    assert extract.status is not None
    assert extract.status.phase is StepPhase.SUCCEEDED
    assert extract.attempt is not None
    assert (extract.attempt.state, extract.attempt.outputs) == (
        WorkloadState.SUCCEEDED, (("rows", "1200"), ("table", "events")))
    assert load_.attempt is not None
    assert load_.attempt.state is WorkloadState.RUNNING
    assert decide(observed, NOW).actions == ()  # nothing new: the run goes on


def load_attempt(ctx: FakeContext, run: dict[str, Any]) -> m.AttemptObservation:
    """What the snapshot of `run` says of step load's current attempt."""
    observed = snapshot(ctx.cache, KEY, run, resolve.definition(ctx.cache, run, NOW))
    obs = m.lookup(observed.step_runs, "load")
    assert obs is not None
    assert obs.attempt is not None
    return obs.attempt


def test_a_pod_orphaned_by_its_steprun_s_deletion_still_counts_as_its_own() -> None:
    """Deleting a StepRun with --cascade=orphan removes the pod's owner reference; its uid label
    still says whose it is, so the step's stop still reaches it."""
    orphan = load("pod-ok-load-1")
    orphan["metadata"]["ownerReferences"] = []
    ctx = context(run := load("storyrun-ok-running"), load("steprun-ok-load"), orphan)
    attempt = load_attempt(ctx, run)
    assert (attempt.state, attempt.live_pods) == (WorkloadState.RUNNING, 1)


def test_a_pod_of_an_earlier_steprun_of_the_same_name_never_counts() -> None:
    stale = load("pod-ok-load-1")
    stale["metadata"]["ownerReferences"][0]["uid"] = "an-earlier-steprun"
    stale["metadata"]["labels"]["runctl.dev/steprun-uid"] = "an-earlier-steprun"
    ctx = context(run := load("storyrun-ok-running"), load("steprun-ok-load"), stale)
    attempt = load_attempt(ctx, run)
    assert (attempt.state, attempt.live_pods) == (WorkloadState.ABSENT, 0)


@pytest.mark.parametrize(("answer", "seen", "outcome"), [
    pytest.param(None, False, applying.DONE, id="created"),
    pytest.param(ApiException(status=409), True, applying.DONE, id="exists-and-seen"),
    pytest.param(ApiException(status=409), False, applying.Outcome(
        applying.Retry.SOON, "StepRun ok-extract exists but is not yet seen as this run's; "
        "waiting", halt=True), id="exists-not-seen-yet"),
    pytest.param(refusal(403, "quota"), False, applying.Outcome(
        applying.Retry.LATER, "StepRun ok-extract not created (forbidden: quota); the status "
        "waits for it", halt=True), id="forbidden"),
])
def test_a_steprun_create_returns_its_own_outcome(
        answer: Exception | None, seen: bool, outcome: applying.Outcome) -> None:
    ctx = context(run := fresh_run())
    if answer is not None:
        ctx.fake.answers["create_namespaced_custom_object"] = [answer]
    body = {"metadata": {"name": "ok-extract", "namespace": "rec"}}
    done, created = asyncio.run(applying.create_steprun(ctx, run, body, seen, NOW))
    assert done == outcome
    assert (created is not None) == (answer is None)


@pytest.mark.parametrize(("answer", "retry"), [
    pytest.param(None, applying.Retry.NONE, id="removed"),
    pytest.param(ApiException(status=404), applying.Retry.NONE, id="gone-already"),
    pytest.param(ApiException(status=409), applying.Retry.SOON, id="conflict"),
    pytest.param(ApiException(status=403), applying.Retry.LATER, id="forbidden"),
])
def test_a_finalizer_removal_returns_its_own_outcome(answer: Exception | None,
                                                     retry: applying.Retry) -> None:
    ctx = context(sr := load("steprun-ok-extract"))
    if answer is not None:
        ctx.fake.answers["patch_namespaced_custom_object"] = [answer]
    assert asyncio.run(applying.remove_finalizer(ctx, sr)).retry is retry
    sr["metadata"]["finalizers"] = []
    ctx.fake.calls.clear()
    assert asyncio.run(applying.remove_finalizer(ctx, sr)) == applying.DONE
    assert ctx.fake.calls == []  # nothing to remove


def test_the_outcomes_of_an_apply_add_up_to_the_latest_retry_and_every_note() -> None:
    applied = applying.Applied.of([
        applying.Outcome(applying.Retry.LATER, "forbidden"), applying.DONE,
        applying.Outcome(applying.Retry.SOON, "conflict")])
    assert (applied.retry, applied.notes) == (applying.Retry.LATER, ("forbidden", "conflict"))
    assert (applied.landed_short, applied.forbidden) == (True, True)
    assert applying.Applied.of([]) == applying.Applied()


def test_a_stop_that_arrives_while_a_decision_is_sent_starts_nothing_more() -> None:
    """The decision was made before the stop: what it has not yet started is left alone, and
    the run's status waits for the decision that takes up the stop."""
    ctx = context(run := fresh_run())
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, KEY, run, definition)
    decision = decide(observed, NOW)
    stopped = copy.deepcopy(run)
    stopped["spec"]["cancelRequested"] = True
    stopped["metadata"]["resourceVersion"] = str(int(run["metadata"]["resourceVersion"]) + 1)
    ctx.cache.put_run(stopped)
    result = asyncio.run(applying.apply(
        ctx, KEY, run, decision, render.step_runs(run, definition, observed, decision), NOW))
    assert methods(ctx) == []
    assert result.landed_short


def test_writes_of_one_kind_in_a_row_go_in_groups_anything_else_alone() -> None:
    """Creates in groups of `AT_ONCE` (a stop is checked between them), anything else of one
    kind in groups of `ENDS_AT_ONCE`."""
    let_go = [act.RemoveFinalizer(f"s{i}") for i in range(applying.ENDS_AT_ONCE + 2)]
    deletes = [act.DeleteStepRun("a"), act.DeleteStepRun("b")]
    makes = [act.CreateStepRun(f"s{i}", f"r-s{i}", None) for i in range(applying.AT_ONCE + 1)]
    write = act.WriteStepRunStatus("s0", m.StepRunStatus(StepPhase.SUCCEEDED))
    event = act.EmitEvent("run", None, "Normal", act.EventReason.STARTED, "started")
    groups = list(applying._groups([write, *let_go, *deletes, event, *makes, write]))
    assert groups == [[write], let_go[:applying.ENDS_AT_ONCE], let_go[applying.ENDS_AT_ONCE:],
                      deletes, [event], makes[:applying.AT_ONCE], makes[applying.AT_ONCE:],
                      [write]]


def fan_out_run(items: int) -> dict[str, Any]:
    """The recorded run, fresh, as one step over `items` items, all of them free to start."""
    run = fresh_run()
    run["metadata"]["uid"] = f"fan-out-of-{items}"  # another run: nothing of it is remembered
    run["spec"]["steps"] = [{"name": "each", "image": "busybox", "command": ["true"],
                             "forEach": {"items": list(range(items)), "parallelism": items}}]
    return run


class Meeting(FakeApi):
    """Creates of StepRuns wait until `AT_ONCE` of them are in flight together (a call sent
    alone would wait in vain and fail the test); those named in `lost` are lost in an outage."""

    def __init__(self, lost: set[str]) -> None:
        super().__init__()
        self.met = threading.Barrier(applying.AT_ONCE, timeout=30)
        self.lost = lost

    def create_namespaced_custom_object(self, *args: Any) -> Any:
        self.calls.append(("create_namespaced_custom_object", args))
        self.met.wait()
        if args[-1]["metadata"]["name"] in self.lost:
            raise ConnectionRefusedError("connection refused")
        return _echo("create_namespaced_custom_object", args)


def test_a_wide_decision_makes_its_stepruns_together_then_their_pods() -> None:
    ctx = context(run := fan_out_run(2 * applying.AT_ONCE))
    ctx.fake = Meeting(lost=set())
    result = reconcile(ctx, run)
    assert (result.landed_short, result.notes) == (False, ())
    made = 2 * applying.AT_ONCE
    assert methods(ctx) == (["create_namespaced_custom_object"] * made
                            + ["create_namespaced_pod"] * made
                            + ["patch_namespaced_custom_object_status", "create_namespaced_event"])


def test_a_steprun_create_lost_in_a_group_sends_nothing_after_the_group(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The others of its group were on their way already; nothing later is sent (no pod, no
    second group, no run status), as when the create is alone."""
    monkeypatch.setattr(applying.kube, "MAX_TRIES", 1)
    ctx = context(run := fan_out_run(2 * applying.AT_ONCE))
    ctx.fake = Meeting(lost={f"{run['metadata']['name']}-each-3"})
    result = reconcile(ctx, run)
    assert result.landed_short
    assert methods(ctx) == ["create_namespaced_custom_object"] * applying.AT_ONCE


class RefusingItem(FakeApi):
    """Creates of the StepRuns named in `refused` are refused as invalid (422), with `why`."""

    def __init__(self, refused: set[str], why: str) -> None:
        super().__init__()
        self.refused, self.why = refused, why

    def create_namespaced_custom_object(self, *args: Any) -> Any:
        self.calls.append(("create_namespaced_custom_object", args))
        if args[-1]["metadata"]["name"] in self.refused:
            raise refusal(422, self.why)
        return _echo("create_namespaced_custom_object", args)


def created_stepruns(ctx: FakeContext) -> list[str]:
    return [args[-1]["metadata"]["name"] for method, args in ctx.fake.calls
            if method == "create_namespaced_custom_object"]


def run_status_written(ctx: FakeContext) -> dict[str, Any]:
    return next(args[-1]["status"] for method, args in reversed(ctx.fake.calls)
                if method == "patch_namespaced_custom_object_status" and args[3] == "storyruns")


@pytest.mark.parametrize("on_failure", ["stop", "continue"])
def test_an_item_steprun_create_refused_as_invalid_fails_that_item_with_the_api_server_s_words(
        on_failure: str) -> None:
    """As for a step: the item's refusal is observed and fails the item (recorded in the
    step's counts and `failedItems`, then the step as `onFailure` says), never a run left
    Running forever with the same create sent at every reconcile."""
    run = fan_out_run(4)
    run["metadata"]["uid"] = f"fan-out-refused-{on_failure}"
    run["spec"]["onFailure"] = on_failure
    ctx = context(run)
    why = 'StepRun.runctl.dev "ok-each-2" is invalid: denied by policy no-item-2'
    ctx.fake = RefusingItem({"ok-each-2"}, why)
    result = reconcile(ctx, run)
    assert result.landed_short
    assert sorted(created_stepruns(ctx)) == ["ok-each-0", "ok-each-1", "ok-each-2", "ok-each-3"]

    ctx.fake.calls.clear()
    reconcile(ctx, run)
    assert "ok-each-2" not in created_stepruns(ctx)
    record = run_status_written(ctx)
    each = record["stepStates"]["each"]
    [failed] = each["failedItems"]
    assert (failed["index"], failed["reason"]) == (2, "StepFailed")
    assert why in failed["message"]
    assert "CreateRefused, Permanent" in failed["message"]
    if on_failure == "stop":  # the others never started: stopped with the step
        assert each["items"] == {"total": 4, "Failed": 1, "Canceled": 3}
        assert (record["phase"], each["phase"]) == ("Failed", "Failed")
        assert each["message"].startswith("item 2 of 4 ended Failed")
        assert why in record["message"]
    else:  # the others go on
        assert each["items"] == {"total": 4, "Failed": 1, "Pending": 3}
        assert (record["phase"], each["phase"]) == ("Running", "Running")
        assert sorted(args[-1]["metadata"]["name"] for method, args in ctx.fake.calls
                      if method == "create_namespaced_pod") == [
            "ok-each-0-1", "ok-each-1-1", "ok-each-3-1"]

    run["status"] = record  # as the watch brings it
    ctx.fake.calls.clear()
    reconcile(ctx, run)
    assert "ok-each-2" not in created_stepruns(ctx)  # kept: never sent again
