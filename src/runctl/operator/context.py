"""The operator's process-wide state: API clients, the cache, the work queue, its workers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from runctl.operator.cache import RUN_LABEL, ObjectCache
from runctl.operator.queue import WorkQueue

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

    @classmethod
    def connect(cls, cache: ObjectCache, queue: WorkQueue,
                namespaces: tuple[str, ...] = ()) -> Context:
        """Log in the way kubectl would: in-cluster service account, else the kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        cfg = client.Configuration.get_default_copy()
        cfg.connection_pool_maxsize = 32
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

    async def prime_cache(self) -> None:
        """One list per kind at start-up, so the first reconcile of every run sees its children.

        Watches keep the cache current after that; reconciles never list."""
        selector = RUN_LABEL

        def items_of(listing: Any) -> list[Any]:
            return list(listing["items"])

        def lists() -> dict[str, list[Any]]:
            sanitize = self.api.sanitize_for_serialization
            if not self.namespaces:
                return {
                    "StoryRun": items_of(self.custom.list_cluster_custom_object(
                        GROUP, VERSION, "storyruns")),
                    "StepRun": items_of(self.custom.list_cluster_custom_object(
                        GROUP, VERSION, "stepruns", label_selector=selector)),
                    "Job": sanitize(self.batch.list_job_for_all_namespaces(
                        label_selector=selector).items),
                    "Deployment": sanitize(self.apps.list_deployment_for_all_namespaces(
                        label_selector=selector).items),
                    "Pod": sanitize(self.core.list_pod_for_all_namespaces(
                        label_selector=selector).items),
                }
            found: dict[str, list[Any]] = {k: [] for k in
                                           ("StoryRun", "StepRun", "Job", "Deployment", "Pod")}
            for ns in self.namespaces:  # only what a namespaced Role may list
                found["StoryRun"] += items_of(self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "storyruns"))
                found["StepRun"] += items_of(self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "stepruns", label_selector=selector))
                found["Job"] += sanitize(self.batch.list_namespaced_job(
                    ns, label_selector=selector).items)
                found["Deployment"] += sanitize(self.apps.list_namespaced_deployment(
                    ns, label_selector=selector).items)
                found["Pod"] += sanitize(self.core.list_namespaced_pod(
                    ns, label_selector=selector).items)
            return found

        found = await asyncio.to_thread(lists)
        for body in found.pop("StoryRun"):
            self.cache.put_run(body)
        for kind, items in found.items():
            for body in items:
                self.cache.put(kind, body)
        log.info("cache primed: %d runs, %s", len(self.cache.runs),
                 {k: len(v) for k, v in found.items()})
