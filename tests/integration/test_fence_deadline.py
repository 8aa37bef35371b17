"""The API server's last word on a fenced write: a replica frozen between the last check of its
hold and the send of a write's body delivers the body past the write's deadline, and the real
API server refuses it without writing anything (`runctl.operator.kube`)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from runctl.devcluster import ControlPlane
from runctl.operator import kube

pytestmark = pytest.mark.integration


@pytest.fixture
def core(cluster: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.CoreV1Api]:
    """A client fenced as the operator's is; a write that does not land is not tried again."""
    monkeypatch.setattr(kube, "MAX_TRIES", 1)
    api = cluster.api_client()
    kube.fence_connections(api)
    try:
        yield client.CoreV1Api(api)
    finally:
        kube.fence(None)


def frozen_at(check: int) -> Callable[[], bool]:
    """A hold that is current at every check, but whose `check`-th check is followed by a
    freeze longer than the deadline (the checks: before the request is built, as its headers
    go out, as its body goes out)."""
    count = itertools.count(1)

    def holds() -> bool:
        if next(count) == check:
            time.sleep(kube.SERVER_DEADLINE + 1.5)
        return True
    return holds


def config_map(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"written": "yes"}}


def names(core: client.CoreV1Api, namespace: str) -> set[str]:
    return {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}


def test_a_write_whose_body_arrives_past_its_deadline_writes_nothing(
        core: client.CoreV1Api, namespace: str) -> None:
    kube.fence(frozen_at(3))
    late = asyncio.run(kube.call("create", "configmaps", core.create_namespaced_config_map,
                                 namespace, config_map("late")))
    assert (late.outcome, late.status) == (kube.Outcome.TRANSIENT, 504)
    kube.fence(frozen_at(2))  # frozen before the headers: they go late, the body on time
    slow = asyncio.run(kube.call("create", "configmaps", core.create_namespaced_config_map,
                                 namespace, config_map("slow-start")))
    kube.fence(lambda: True)
    timely = asyncio.run(kube.call("create", "configmaps", core.create_namespaced_config_map,
                                   namespace, config_map("timely")))
    assert (slow.ok, timely.ok) == (True, True)
    assert names(core, namespace) >= {"slow-start", "timely"}
    assert "late" not in names(core, namespace)


def test_a_delete_whose_options_arrive_past_its_deadline_deletes_nothing(
        core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("kept"))
    kube.fence(frozen_at(3))
    late = asyncio.run(kube.call("delete", "configmaps", core.delete_namespaced_config_map,
                                 "kept", namespace, body=client.V1DeleteOptions()))
    assert (late.outcome, late.status) == (kube.Outcome.TRANSIENT, 504)
    assert "kept" in names(core, namespace)
