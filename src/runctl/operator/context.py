"""The operator's process-wide state: API clients, the cache, the work queue, its workers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from runctl.operator.cache import RUN_LABEL, ObjectCache
from runctl.operator.queue import WorkQueue
from runctl.operator.settings import API_THREADS

log = logging.getLogger(__name__)

GROUP, VERSION = "runctl.dev", "v1alpha1"


@dataclass
class Context:
    cache: ObjectCache
    queue: WorkQueue
    api: client.ApiClient
    namespaces: tuple[str, ...] = ()
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    refused: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(kind, uid, name) -> the status write the API server refused last, never sent again."""

    @classmethod
    def connect(cls, cache: ObjectCache, queue: WorkQueue,
                namespaces: tuple[str, ...] = ()) -> Context:
        """Log in the way kubectl would: in-cluster service account, else the kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        cfg = client.Configuration.get_default_copy()
        cfg.connection_pool_maxsize = API_THREADS
        return cls(cache=cache, queue=queue, api=client.ApiClient(cfg), namespaces=namespaces)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def _snapshot(self) -> dict[str, tuple[list[Any], int]]:
        """Kind -> (every object of it that runctl cares about, the list's resourceVersion),
        listed cluster-wide, or per namespace when only some are watched (all a namespaced Role
        may list)."""
        selector = RUN_LABEL
        sanitize = self.api.sanitize_for_serialization
        scopes: tuple[str | None, ...] = self.namespaces or (None,)
        found: dict[str, tuple[list[Any], int]] = {}

        def add(kind: str, items: list[Any], rv: str | None) -> None:
            old_items, old_rv = found.get(kind, ([], 0))
            found[kind] = ([*old_items, *items], max(old_rv, _int(rv)))

        for ns in scopes:
            for kind, plural, labels in (("StoryRun", "storyruns", None),
                                         ("StepRun", "stepruns", selector)):
                res: Any = (self.custom.list_cluster_custom_object(
                                GROUP, VERSION, plural, label_selector=labels)
                            if ns is None else
                            self.custom.list_namespaced_custom_object(
                                GROUP, VERSION, ns, plural, label_selector=labels))
                add(kind, list(res["items"]), res["metadata"].get("resourceVersion"))
            for kind, every, one in (
                ("Job", self.batch.list_job_for_all_namespaces, self.batch.list_namespaced_job),
                ("Deployment", self.apps.list_deployment_for_all_namespaces,
                 self.apps.list_namespaced_deployment),
                ("Pod", self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod),
            ):
                typed = (every(label_selector=selector) if ns is None
                         else one(ns, label_selector=selector))
                add(kind, sanitize(typed.items),
                    typed.metadata.resource_version if typed.metadata else None)
        return found

    async def prime_cache(self) -> None:
        """One list per kind at start-up, so the first reconcile of every run sees its children.

        Watches keep the cache current after that; reconciles never list."""
        found = await asyncio.to_thread(self._snapshot)
        for body in found.pop("StoryRun")[0]:
            self.cache.put_run(body)
        for kind, (items, _) in found.items():
            for body in items:
                self.cache.put(kind, body)
        log.info("cache primed: %d runs, %s", len(self.cache.runs),
                 {k: len(v[0]) for k, v in found.items()})

    async def resync(self) -> int:
        """List everything again and correct the cache where a watch missed something (above
        all a deletion); returns how many objects were corrected."""
        found = await asyncio.to_thread(self._snapshot)
        return sum(self.cache.sync(kind, items, rv) for kind, (items, rv) in found.items())


def _int(rv: str | None) -> int:
    try:
        return int(rv or 0)
    except ValueError:
        return 0
