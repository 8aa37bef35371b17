"""Informers against the real API server: the first list, then every change in order, only the
labelled objects of the watched namespace, a relist that repairs the cache, a prompt stop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from runctl.operator.cache import RUN_LABEL, ObjectCache
from runctl.operator.informer import Informer, Source, sources

CONFIGMAP_LABEL = RUN_LABEL


class Recorder:
    """A sink that keeps a cache, as the operator's does, and writes down what reached it."""

    def __init__(self) -> None:
        self.cache = ObjectCache()
        self.lists: list[tuple[str, str | None, list[str], int]] = []
        self.events: list[tuple[str, str]] = []

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None:
        self.lists.append((kind, namespace, sorted(i["metadata"]["name"] for i in items),
                           resource_version))
        self.cache.sync(kind, items, resource_version, namespace)

    def event(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        self.events.append((type_, body["metadata"]["name"]))
        if type_ == "DELETED":
            self.cache.drop(kind, body)
        else:
            self.cache.put(kind, body)


async def until(what: str, probe: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def configmap(cluster: ControlPlane, namespace: str, name: str, labelled: bool = True) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {CONFIGMAP_LABEL: "r"} if labelled else {}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def configmaps(cluster: ControlPlane, namespace: str) -> Source:
    """ConfigMaps stand in for a child kind: the informer treats every kind the same way, and
    nothing else in the cluster touches these."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    return Source("ConfigMap", namespace, core.list_namespaced_config_map, (namespace,),
                  CONFIGMAP_LABEL)


@pytest.mark.integration
def test_list_then_every_change_of_labelled_objects(cluster: ControlPlane,
                                                    namespace: str) -> None:
    configmap(cluster, namespace, "before")
    configmap(cluster, namespace, "unlabelled", labelled=False)
    sink = Recorder()

    async def main() -> None:
        informer = Informer(configmaps(cluster, namespace), sink, asyncio.get_running_loop(),
                            resync_seconds=0)
        informer.start()
        try:
            await asyncio.wait_for(informer.synced.wait(), 30)
            assert [(k, ns, names) for k, ns, names, _ in sink.lists] == [
                ("ConfigMap", namespace, ["before"])]
            await asyncio.to_thread(configmap, cluster, namespace, "after")
            await asyncio.to_thread(cluster.kubectl, "label", "configmap", "after", "-n",
                                    namespace, "extra=1")
            await asyncio.to_thread(cluster.kubectl, "delete", "configmap", "before", "-n",
                                    namespace)
            await until("three events", lambda: len(sink.events) >= 3)
        finally:
            informer.stop()
        await asyncio.sleep(0.5)
        assert sink.events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
        assert sink.cache.was_deleted("ConfigMap", namespace, "before")
        assert sink.cache.get("ConfigMap", namespace, "after") is not None

    asyncio.run(main())


@pytest.mark.integration
def test_a_relist_repairs_what_the_cache_got_wrong(cluster: ControlPlane, namespace: str) -> None:
    configmap(cluster, namespace, "real")
    sink = Recorder()
    # What a missed deletion leaves behind: an object the cache holds that no longer exists.
    sink.cache.put("ConfigMap", {"metadata": {"name": "ghost", "namespace": namespace,
                                              "resourceVersion": "1",
                                              "labels": {CONFIGMAP_LABEL: "r"}}})

    async def main() -> None:
        informer = Informer(configmaps(cluster, namespace), sink, asyncio.get_running_loop(),
                            resync_seconds=1)
        informer.start()
        try:
            await until("two lists", lambda: len(sink.lists) >= 2)
        finally:
            informer.stop()

    asyncio.run(main())
    assert sink.cache.get("ConfigMap", namespace, "ghost") is None
    assert sink.cache.was_deleted("ConfigMap", namespace, "ghost")
    assert sink.cache.get("ConfigMap", namespace, "real") is not None
    assert sink.lists[1][3] >= sink.lists[0][3]  # resourceVersions only grow


@pytest.mark.integration
def test_stop_ends_the_thread_while_a_watch_is_open(cluster: ControlPlane, namespace: str) -> None:
    sink = Recorder()

    async def main() -> Informer:
        informer = Informer(configmaps(cluster, namespace), sink, asyncio.get_running_loop(),
                            resync_seconds=0)
        informer.start()
        await asyncio.wait_for(informer.synced.wait(), 30)
        await asyncio.sleep(0.5)  # the watch request is open, waiting for events
        informer.stop()
        return informer

    informer = asyncio.run(main())
    assert informer.join(timeout=10)


def test_sources_cover_runs_and_every_child_kind_per_namespace() -> None:
    from kubernetes import client

    found = sources(client.ApiClient(), ("a", "b"))
    assert sorted((s.kind, s.namespace) for s in found) == sorted(
        (kind, ns) for ns in ("a", "b")
        for kind in ("StoryRun", "StepRun", "Job", "Deployment", "Pod"))
    assert all(s.label_selector == CONFIGMAP_LABEL for s in found if s.kind != "StoryRun")
    everywhere = sources(client.ApiClient(), ())
    assert {s.namespace for s in everywhere} == {None}
    assert len(everywhere) == 5


class Flaky:
    """A list call that fails as told before it reaches the real API server: a dropped
    connection on a list, 410 Gone on a watch (what a compacted resourceVersion gets)."""

    def __init__(self, real: Callable[..., Any], fail_list: int = 0, gone_watch: int = 0) -> None:
        self.real = real
        self.fail_list = fail_list
        self.gone_watch = gone_watch
        self.lists = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if kwargs.get("watch"):
            if self.gone_watch:
                self.gone_watch -= 1
                raise ApiException(status=410, reason="Gone")
        else:
            self.lists += 1
            if self.fail_list:
                self.fail_list -= 1
                raise urllib3.exceptions.ProtocolError("connection reset by peer")
        return self.real(*args, **kwargs)


@pytest.mark.integration
def test_a_failed_list_is_retried_and_a_gone_watch_lists_again(
        cluster: ControlPlane, namespace: str) -> None:
    configmap(cluster, namespace, "a")
    real = configmaps(cluster, namespace)
    flaky = Flaky(real.call, fail_list=1, gone_watch=1)
    source = Source(real.kind, real.namespace, flaky, real.args, real.label_selector)
    sink = Recorder()

    async def main() -> None:
        informer = Informer(source, sink, asyncio.get_running_loop(), resync_seconds=0)
        informer.start()
        try:
            await asyncio.wait_for(informer.synced.wait(), 30)  # after the failed list
            await until("the list after 410 Gone", lambda: flaky.lists >= 3)
            await asyncio.to_thread(configmap, cluster, namespace, "b")
            await until("the event after it", lambda: ("ADDED", "b") in sink.events)
        finally:
            informer.stop()

    asyncio.run(main())
    assert flaky.lists == 3  # failed, listed, listed again after the watch was gone
    assert [names for _, _, names, _ in sink.lists] == [["a"], ["a"]]
