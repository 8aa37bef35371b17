"""The relist against the real API server: plain JSON, only labelled children, only the watched
namespace, and what vanished since the last list marked deleted; the first list is retried until
it succeeds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from runctl.api.wire import RUN_LABEL
from runctl.devcluster import ControlPlane
from runctl.operator import relist
from runctl.operator.cache import ObjectCache
from runctl.operator.watched import WATCHED, Watched


class Recorder:
    """A sink that keeps a cache, as the operator's context does, and notes what reached it."""

    def __init__(self) -> None:
        self.cache = ObjectCache()
        self.lists: list[tuple[str, str | None]] = []

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None:
        self.lists.append((kind, namespace))
        self.cache.sync(kind, items, resource_version, namespace)


def test_paths_of_core_and_group_kinds() -> None:
    pods = next(w for w in WATCHED if w.kind == "Pod")
    deployments = next(w for w in WATCHED if w.kind == "Deployment")
    assert pods.path(None) == "/api/v1/pods"
    assert pods.path("a") == "/api/v1/namespaces/a/pods"
    assert deployments.path("a") == "/apis/apps/v1/namespaces/a/deployments"
    assert {w.kind for w in WATCHED if w.label_selector is None} == {"StoryRun", "Story"}


def configmap(cluster: ControlPlane, namespace: str, name: str, labelled: bool = True) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {RUN_LABEL: "r"} if labelled else {}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


CONFIGMAPS = Watched("ConfigMap", "", "v1", "configmaps", RUN_LABEL)
"""ConfigMaps stand in for a child kind: listing treats every kind the same way, and nothing
else in the cluster touches these."""


@pytest.mark.integration
def test_a_list_holds_only_labelled_objects_of_its_namespace(cluster: ControlPlane,
                                                             namespace: str) -> None:
    configmap(cluster, namespace, "labelled")
    configmap(cluster, namespace, "unlabelled", labelled=False)
    items, version = relist.list_kind(cluster.api_client(), CONFIGMAPS, namespace)
    assert [i["metadata"]["name"] for i in items] == ["labelled"]
    assert isinstance(items[0], dict)  # plain JSON, no client models
    assert version > 0
    everywhere, _ = relist.list_kind(cluster.api_client(), CONFIGMAPS, None)
    assert {i["metadata"]["namespace"] for i in everywhere} >= {namespace}


@pytest.mark.integration
def test_a_list_read_in_pages_holds_every_object_once_slimmed(cluster: ControlPlane,
                                                              namespace: str) -> None:
    for i in range(5):
        configmap(cluster, namespace, f"c{i}")
    whole, version = relist.list_kind(cluster.api_client(), CONFIGMAPS, namespace)
    paged, paged_version = relist.list_kind(cluster.api_client(), CONFIGMAPS, namespace,
                                            page=2)
    names = [f"c{i}" for i in range(5)]
    assert [i["metadata"]["name"] for i in whole] == names
    assert [i["metadata"]["name"] for i in paged] == names
    assert paged_version >= version > 0
    assert not any("managedFields" in i["metadata"] for i in paged)  # kept as the cache keeps it


@pytest.mark.integration
def test_a_relist_marks_what_vanished_as_deleted(crds: ControlPlane, namespace: str) -> None:
    run = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
           "metadata": {"name": "r", "namespace": namespace},
           "spec": {"steps": [{"name": "a", "image": "busybox"}]}}
    crds.kubectl("apply", "-f", "-", input=json.dumps(run))
    sink = Recorder()
    api = crds.api_client()

    async def main() -> None:
        await relist.first_relist(api, sink, (namespace,))
        assert sorted(sink.lists) == sorted((w.kind, namespace) for w in WATCHED)
        assert (namespace, "r") in sink.cache.runs
        crds.kubectl("delete", "storyrun", "r", "-n", namespace)
        await relist.relist(api, sink, (namespace,))
        assert (namespace, "r") not in sink.cache.runs
        assert (namespace, "r") in sink.cache.deleted_runs

    asyncio.run(main())


def test_the_first_list_is_tried_until_it_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []

    def flaky(api: object, watched: Watched, namespace: str | None) -> tuple[list[Any], int]:
        calls.append(namespace)
        if len(calls) <= len(WATCHED):
            raise OSError("connection refused")  # the first pass: every list fails
        return [], 7

    monkeypatch.setattr(relist, "list_kind", flaky)
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    sink = Recorder()
    asyncio.run(relist.first_relist(object(), sink, ()))  # type: ignore[arg-type]
    assert len(calls) == 2 * len(WATCHED)
    assert sorted(sink.lists) == sorted((w.kind, None) for w in WATCHED)


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float) -> None:
    await _real_sleep(0)
