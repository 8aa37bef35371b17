"""The reconcile's verdict and the queue acting on it; what is rendered before apply; the
stages a reconcile goes through, on recorded objects against a fake API."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import FINALIZER
from runctl.machine.decide import decide
from runctl.operator import reconcile, render, resolve
from runctl.operator.apply import CONFLICT_REQUEUE_SECONDS, FORBIDDEN_REQUEUE_SECONDS, Retry
from runctl.operator.queue import Result, WorkQueue
from runctl.operator.snapshot import snapshot
from tests.operator.test_apply import KEY, NOW, context, fresh_run, methods
from tests.recorded import load

LATER = NOW + dt.timedelta(seconds=30)


@pytest.mark.parametrize(("retry", "requeue_at", "after"), [
    pytest.param(Retry.NONE, None, None, id="nothing-asked"),
    pytest.param(Retry.NONE, LATER, 30.0, id="the-decision-s-timer"),
    pytest.param(Retry.NONE, NOW - dt.timedelta(seconds=1), 0.0, id="a-timer-already-due"),
    pytest.param(Retry.SOON, LATER, CONFLICT_REQUEUE_SECONDS, id="a-write-that-did-not-land"),
    pytest.param(Retry.LATER, LATER, FORBIDDEN_REQUEUE_SECONDS, id="a-forbidden-create"),
])
def test_when_a_run_is_looked_at_again(retry: Retry, requeue_at: dt.datetime | None,
                                       after: float | None) -> None:
    assert reconcile.requeue_after(retry, requeue_at, NOW) == after


def test_the_queue_acts_on_a_result() -> None:
    async def run() -> tuple[int, int, int, int]:
        queue = WorkQueue()
        queue.requeue("a", Result())
        nothing = queue.timers + len(queue)
        queue.requeue("a", Result(requeue_after=60))
        timer = queue.timers
        queue.requeue("a", Result(forget=True))
        forgotten = queue.timers
        queue.requeue("b", Result(requeue_after=0))
        return nothing, timer, forgotten, len(queue)
    assert asyncio.run(run()) == (0, 1, 0, 1)


def test_the_steprun_a_decision_creates_is_rendered_before_apply() -> None:
    ctx = context(run := fresh_run())
    definition = resolve.definition(ctx.cache, run, NOW)
    observed = snapshot(ctx.cache, KEY, run, definition)
    decision = decide(observed, NOW)
    bodies = render.step_runs(run, definition, observed, decision)
    assert list(bodies) == ["extract"]
    assert bodies["extract"]["metadata"]["name"] == "ok-extract"
    assert bodies["extract"]["spec"]["step"] == "extract"
    assert render.step_runs(run, definition, observed, decide(observed, NOW)) == bodies
    assert ctx.fake.calls == []  # rendering sends nothing


def test_a_deleted_run_s_steprun_whose_finalizer_stays_is_tried_again_soon() -> None:
    """Its run is gone: the finalizer comes off, and a removal that failed is retried, not
    forgotten."""
    ctx = context(load("steprun-ok-extract"))
    ctx.cache.deleted_runs.add(KEY)
    ctx.fake.answers["patch_namespaced_custom_object"] = [ApiException(status=409)]
    assert asyncio.run(reconcile.reconcile_run(ctx, KEY)) == Result(CONFLICT_REQUEUE_SECONDS)
    assert methods(ctx) == ["patch_namespaced_custom_object"]
    assert asyncio.run(reconcile.reconcile_run(ctx, KEY)) == Result(forget=True)
    patch = ctx.fake.calls[-1][1][-1]
    assert patch == [{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                     {"op": "remove", "path": "/metadata/finalizers/0"}]


def test_a_first_reconcile_asks_for_no_look_before_an_event() -> None:
    ctx = context(fresh_run())
    result = asyncio.run(reconcile.reconcile_run(ctx, KEY))
    assert result == Result(requeue_after=None)
    assert methods(ctx)[0] == "create_namespaced_custom_object"
