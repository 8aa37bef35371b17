"""The operator's process-wide state: API clients, the cache, the work queue, its workers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from runctl.machine.phases import RUN_TERMINAL
from runctl.operator import login
from runctl.operator.cache import ObjectCache, RunKey
from runctl.operator.informer import Informer, sources
from runctl.operator.queue import WorkQueue
from runctl.operator.settings import API_THREADS, BATCH_SECONDS

log = logging.getLogger(__name__)


@dataclass
class Context:
    cache: ObjectCache
    queue: WorkQueue
    api: client.ApiClient
    namespaces: tuple[str, ...] = ()
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    informers: list[Informer] = field(default_factory=list)
    refused: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(kind, uid, name) -> the status write the API server refused last, never sent again."""

    @classmethod
    def connect(cls, cache: ObjectCache, queue: WorkQueue,
                namespaces: tuple[str, ...] = ()) -> Context:
        """Log in the way kubectl would (`runctl.operator.login`: in-cluster service account,
        else the kubeconfig), the same login `runctl operator` checked before starting."""
        cfg = login.load().configuration
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

    # -- the informers' sink (called on the event loop) ---------------------------------------

    def start_informers(self, resync_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self.informers = [Informer(source, self, loop, resync_seconds)
                          for source in sources(self.api, self.namespaces)]
        for informer in self.informers:
            informer.start()

    async def informers_synced(self) -> None:
        """Wait for every informer's first list, so the first reconcile of a run sees all its
        children."""
        for informer in self.informers:
            await informer.synced.wait()
        log.info("cache filled: %d runs, %s", len(self.cache.runs),
                 {kind: self.cache.count(kind) for kind in ("StepRun", "Job", "Deployment", "Pod")})

    def stop_informers(self) -> None:
        for informer in self.informers:
            informer.stop()

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None:
        """A fresh list: correct the cache where a watch missed something (above all a
        deletion). After a list of runs every run is reconciled again (the periodic sweep);
        its writes are as conditional as any other, so nothing finished meanwhile is harmed."""
        first = not all(i.synced.is_set() for i in self.informers if i.source.kind == kind)
        corrected = self.cache.sync(kind, items, resource_version, namespace)
        if corrected and not first:
            log.warning("relist of %s corrected %d cached objects a watch had missed",
                        kind, corrected)
        if kind == "StoryRun" or (corrected and not first):
            for key in list(self.cache.runs):
                self.queue.add(key)
            for key in list(self.cache.deleted_runs):
                if self.cache.children("StepRun", key):
                    self.queue.add(key)

    def event(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        """One watch event: update the cache, wake the run it concerns: at once for a change to
        the run or to a child of a run being stopped (it ends as soon as its workloads are gone),
        after the batching window for a child of any other run."""
        if kind == "StoryRun":
            self.queue.add(self.cache.drop_run(body) if type_ == "DELETED"
                           else self.cache.put_run(body))
            return
        run = self.cache.drop(kind, body) if type_ == "DELETED" else self.cache.put(kind, body)
        if run is None:
            return
        if self._stopping(run):
            self.queue.add(run)
        else:
            self.queue.add_after(run, BATCH_SECONDS)

    def _stopping(self, key: RunKey) -> bool:
        run = self.cache.runs.get(key)
        return bool(run and (run.get("spec") or {}).get("cancelRequested")
                    and (run.get("status") or {}).get("phase") not in RUN_TERMINAL)
