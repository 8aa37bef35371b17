"""kopf only observes: its handlers are `async` on.event handlers that feed the cache and the queue,
its storages keep nothing, the child kinds are filtered on the API server, and nothing that
detects changes (it would misbehave silently with storages that keep nothing) is registered."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import pkgutil
from typing import Any

import kopf
import pytest

import runctl
from runctl.api.wire import RUN_LABEL
from runctl.operator import handlers, kopfconfig, settings, webhook
from runctl.operator.cache import ObjectCache
from runctl.operator.context import Context
from runctl.operator.queue import WorkQueue
from runctl.operator.watched import WATCHED


def _import_everything() -> None:
    for module in pkgutil.walk_packages(runctl.__path__, "runctl."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _resource(group: str, version: str, plural: str) -> kopf.Resource:
    return kopf.Resource(group, version, plural, namespaced=True, preferred=True)


def test_runctl_registers_no_change_detecting_handler_daemon_timer_or_index() -> None:
    _import_everything()
    webhook.register(lambda ns, name: None, lambda ns, name: (True, None))  # when served
    registry = kopf.get_default_registry()
    assert registry._changing.get_all_handlers() == []  # on.create/update/delete/resume/field
    assert registry._spawning.get_all_handlers() == []  # daemons and timers
    assert registry._indexing.get_all_handlers() == []  # kopf.index


def test_one_async_event_handler_per_watched_kind() -> None:
    _import_everything()
    watching = kopf.get_default_registry()._watching.get_all_handlers()
    assert sorted(str(h.id) for h in watching) == sorted(f"observe-{w.plural}" for w in WATCHED)
    for handler in watching:
        assert inspect.iscoroutinefunction(handler.fn), "a sync handler would run in a thread"
        assert handler.labels is None  # filtered on the server instead
        assert handler.when is None
    for watched in WATCHED:
        resource = _resource(watched.group, watched.version, watched.plural)
        assert [str(h.id) for h in watching if h.selector and h.selector.check(resource)] == [
            f"observe-{watched.plural}"]


def test_kopf_keeps_no_state_and_filters_children_on_the_server() -> None:
    config = kopf.OperatorSettings()
    kopfconfig.configure(config)
    assert isinstance(config.persistence.diffbase_storage, kopfconfig.NoDiffBase)
    assert isinstance(config.persistence.progress_storage, kopfconfig.NoProgress)
    assert config.queueing.worker_limit is None
    assert config.posting.enabled is False
    for watched in WATCHED:
        selectors = config.watching.label_selectors.collect(
            _resource(watched.group, watched.version, watched.plural))
        assert selectors == ([] if watched.label_selector is None else [RUN_LABEL])
    # The same plural in another group is not filtered (nor watched).
    assert config.watching.label_selectors.collect(_resource("other.dev", "v1", "jobs")) == []


def test_a_webhook_refusal_is_no_error_line_and_other_errors_still_are(
        caplog: pytest.LogCaptureFixture) -> None:
    kopfconfig.configure(kopf.OperatorSettings())
    objects = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO):
        objects.error("Webhook 'story-spec' failed permanently: spec.steps: cycle a -> a")
        objects.error("Webhook 'other' failed permanently: boom")
        objects.error("Handler 'observe-pods' failed with an exception")
    assert [r.getMessage() for r in caplog.records] == [
        "Webhook 'other' failed permanently: boom",
        "Handler 'observe-pods' failed with an exception"]


def test_the_storages_copy_nothing() -> None:
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"big": list(range(100))}})
    patch = kopf.Patch()
    diffbase, progress = kopfconfig.NoDiffBase(), kopfconfig.NoProgress()
    assert diffbase.build(body=body) == {}
    assert diffbase.fetch(body=body) is None
    diffbase.store(body=body, patch=patch, essence=kopf.BodyEssence())
    essence = kopf.BodyEssence()
    assert progress.clear(essence=essence) is essence
    assert progress.fetch(key=kopf.HandlerId("h"), body=body) is None
    progress.touch(body=body, patch=patch, value="x")
    assert not patch


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> Context:
    from kubernetes import client

    context = Context(cache=ObjectCache(), queue=WorkQueue(), api=client.ApiClient())
    monkeypatch.setattr(handlers, "_ctx", context)
    return context


def _handler(plural: str) -> Any:
    (handler,) = [h for h in kopf.get_default_registry()._watching.get_all_handlers()
                  if str(h.id) == f"observe-{plural}"]
    return handler.fn


def test_an_event_goes_to_the_cache_itself_and_wakes_its_run(ctx: Context) -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "5",
                                        "labels": {RUN_LABEL: "r"}},
                           "spec": {"containers": []}, "status": {"phase": "Running"}}
    run: dict[str, Any] = {"metadata": {"name": "r", "namespace": "ns", "resourceVersion": "4"},
                           "spec": {}}

    async def main() -> None:
        await _handler("storyruns")(event={"type": None, "object": run})
        assert ctx.cache.runs[("ns", "r")] is run
        assert await ctx.queue.get() == ("ns", "r")
        ctx.queue.done(("ns", "r"))
        await _handler("pods")(event={"type": "ADDED", "object": pod})
        assert ctx.cache.get("Pod", "ns", "p") is pod  # not a copy
        assert "spec" not in pod  # slimmed before caching
        assert ctx.queue.timers == 1  # after the batching window
        await _handler("pods")(event={"type": "DELETED", "object": pod})
        assert ctx.cache.was_deleted("Pod", "ns", "p")
        key = await asyncio.wait_for(ctx.queue.get(), settings.BATCH_SECONDS + 5)
        assert key == ("ns", "r")

    asyncio.run(main())
