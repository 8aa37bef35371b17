"""The checker's eyes: a watch of every StoryRun, StepRun, pod and Deployment of one namespace,
from before the load starts, kept going through API server restarts and etcd pauses.

Each kind has a thread of its own. A watch that breaks (the API server went away, or the
resource version is too old) is replaced by a fresh list: every object listed is recorded
(`LISTED`), and every object known before but no longer listed is recorded `DELETED`, so the
history misses no state the API server still had when it came back. Nothing here imports
runctl.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from chaos.checker import Seen

GROUP, VERSION = "runctl.dev", "v1alpha1"


class Recorder:
    """Watch a namespace until `stop()`; `seen` holds every state recorded, in order."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.seen: list[Seen] = []
        self.breaks = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        custom, core, apps = (client.CustomObjectsApi(api), client.CoreV1Api(api),
                              client.AppsV1Api(api))

        def crd(plural: str) -> Callable[..., Any]:
            def list_fn(namespace: str, **kw: Any) -> Any:
                return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural,
                                                            **kw)
            return list_fn

        self._lists: dict[str, Callable[..., Any]] = {
            "StoryRun": crd("storyruns"), "StepRun": crd("stepruns"),
            "Pod": core.list_namespaced_pod, "Deployment": apps.list_namespaced_deployment,
        }
        self._threads = [threading.Thread(target=self._follow, args=(kind,), daemon=True,
                                          name=f"chaos-watch-{kind}") for kind in self._lists]
        self._ready = threading.Barrier(len(self._threads) + 1)

    def start(self) -> None:
        """Start watching; returns once every kind has been listed once."""
        for t in self._threads:
            t.start()
        self._ready.wait(timeout=60)

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(timeout=15)

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def _record(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self.seen.append(Seen(time.time(), kind, type_, obj))

    def _follow(self, kind: str) -> None:
        list_fn = self._lists[kind]
        known: dict[str, dict[str, Any]] = {}
        first = True
        while not self._stopping.is_set():
            try:
                version = self._list(kind, list_fn, known)
                if first:
                    first = False
                    self._ready.wait(timeout=60)
                while not self._stopping.is_set():  # a watch that simply timed out goes on
                    version = self._stream(kind, list_fn, version, known)
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError):
                self.breaks += 1
                self._stopping.wait(0.5)

    def _list(self, kind: str, list_fn: Callable[..., Any],
              known: dict[str, dict[str, Any]]) -> str:
        """List afresh; record what changed or vanished since last seen; the list's version."""
        body = _json(list_fn(self.namespace, _preload_content=False, _request_timeout=20))
        now = {o["metadata"]["uid"]: o for o in body["items"]}
        for uid, obj in known.items():
            if uid not in now:
                self._record(kind, "DELETED", obj)
        for uid, obj in now.items():
            was = known.get(uid)
            if was is None or was["metadata"]["resourceVersion"] != obj["metadata"][
                    "resourceVersion"]:
                self._record(kind, "LISTED", obj)
        known.clear()
        known.update(now)
        version: str = body["metadata"]["resourceVersion"]
        return version

    def _stream(self, kind: str, list_fn: Callable[..., Any], version: str,
                known: dict[str, dict[str, Any]]) -> str:
        w = watch.Watch()
        for event in w.stream(list_fn, self.namespace, resource_version=version,
                              allow_watch_bookmarks=True, timeout_seconds=30,
                              _request_timeout=40):
            if self._stopping.is_set():
                w.stop()
                break
            type_, raw = event["type"], event["raw_object"]
            if type_ == "ERROR":
                raise ValueError(str(raw))  # too old a version: list afresh
            version = raw["metadata"]["resourceVersion"]
            if type_ not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # a bookmark: only its version counts
            uid = raw["metadata"]["uid"]
            if type_ == "DELETED":
                known.pop(uid, None)
            else:
                known[uid] = raw
            self._record(kind, type_, raw)
        return version


def _json(response: Any) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(response.data)
    return data
