"""The operator's process-wide state (API clients, the cache, the work queue, its workers), and
what an observation does to it: every watch event and every list updates the cache and names the
runs to reconcile."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kubernetes import client

from runctl.machine.phases import RUN_TERMINAL
from runctl.operator import kube, login
from runctl.operator.cache import ObjectCache, RunKey, resource_version
from runctl.operator.queue import WorkQueue
from runctl.operator.refusals import Refusals
from runctl.operator.settings import API_THREADS, BATCH_SECONDS

log = logging.getLogger(__name__)


def user_agent(identity: str) -> str:
    """`runctl-operator/<identity>`, or `runctl-operator` for a replica that acts alone."""
    return f"runctl-operator/{identity}" if identity else "runctl-operator"


@dataclass
class Context:
    cache: ObjectCache
    queue: WorkQueue
    api: client.ApiClient
    namespaces: tuple[str, ...] = ()
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    listed_scopes: set[tuple[str, str | None]] = field(default_factory=set)
    """(kind, namespace or None) that have been listed at least once."""
    refusals: Refusals = field(default_factory=Refusals)
    """The status writes the API server refused (never sent again unchanged), and the forbidden
    creates already said in an Event."""

    @classmethod
    def connect(cls, cache: ObjectCache, queue: WorkQueue, namespaces: tuple[str, ...] = (),
                identity: str = "") -> Context:
        """Log in the way kubectl would (`runctl.operator.login`: in-cluster service account,
        else the kubeconfig), the same login `runctl operator` checked before starting.

        Every request carries the replica's `identity` (its name in the leader election) in its
        user agent, so the API server's audit log tells which replica made each write."""
        cfg = login.load().configuration
        cfg.connection_pool_maxsize = API_THREADS
        api = client.ApiClient(cfg)
        api.user_agent = user_agent(identity)
        kube.fence_connections(api)
        return cls(cache=cache, queue=queue, api=api, namespaces=namespaces)

    # Made once: each `client.XxxApi` name is imported lazily by the kubernetes package, which
    # costs an import-machinery walk at every access.
    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    # -- observations (called on the event loop) -----------------------------------------------

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None:
        """A fresh list: correct the cache where a watch missed something (above all a
        deletion). After a list of runs every run is reconciled again (the periodic sweep);
        its writes are as conditional as any other, so nothing finished meanwhile is harmed."""
        first = (kind, namespace) not in self.listed_scopes
        self.listed_scopes.add((kind, namespace))
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

    def event(self, kind: str, type_: str | None, body: dict[str, Any]) -> None:
        """One watch event (`type_` None: the object was found by the watch's own list): update
        the cache, wake the run it concerns: at once for a change to the run or to a child of a
        run being stopped (it ends as soon as its workloads are gone), after the batching window
        for a child of any other run, and for the run's own status write coming back (the cache
        holds that version already, from the write's answer: nothing in it is new, so the look
        it is owed can wait for the children's changes that follow the write)."""
        if kind == "StoryRun":
            if type_ == "DELETED":
                self.queue.add(self.cache.drop_run(body))
                return
            echo = resource_version(body) == resource_version(self.cache.run_of(body))
            key = self.cache.put_run(body)
            if echo:
                self.queue.add_after(key, BATCH_SECONDS)
            else:
                self.queue.add(key)
            return
        if kind == "Story":
            self.story(type_, body)
            return
        run = self.cache.drop(kind, body) if type_ == "DELETED" else self.cache.put(kind, body)
        if run is None:
            return
        if self._stopping(run):
            self.queue.add(run)
        else:
            self.queue.add_after(run, BATCH_SECONDS)

    def story(self, type_: str | None, body: dict[str, Any]) -> None:
        """A Story seen: kept for the runs that resolve it; the runs waiting for it (no record
        yet) are woken, so one that appears starts them at once. A run that recorded it is
        never woken by it: nothing of a Story changes a run after its record."""
        if type_ == "DELETED":
            self.cache.drop("Story", body)
            return
        self.cache.put("Story", body)
        meta = body["metadata"]
        for key, run in list(self.cache.runs.items()):
            if (key[0] == meta["namespace"] and "resolved" not in (run.get("status") or {})
                    and ((run.get("spec") or {}).get("storyRef") or {}).get("name")
                    == meta["name"]):
                self.queue.add(key)

    def _stopping(self, key: RunKey) -> bool:
        run = self.cache.runs.get(key)
        return bool(run and (run.get("spec") or {}).get("cancelRequested")
                    and (run.get("status") or {}).get("phase") not in RUN_TERMINAL)
