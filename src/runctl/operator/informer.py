"""List-then-watch streams that keep the cache current, one thread per kind and scope.

Each informer lists its kind (runs, or the children carrying the run label), hands the list to the
cache, then watches from the list's resourceVersion. It lists again when the watch is too old to
resume (410 Gone), after any error (with backoff), and every `resync_seconds`, so an event a watch
missed is repaired within that period. Events are plain JSON: no typed models, no per-object
handler machinery; each one updates the cache and names the run to reconcile, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from runctl.api.crds import GROUP, VERSION
from runctl.operator.cache import RUN_LABEL

log = logging.getLogger(__name__)


WATCH_SECONDS = 270
"""The longest one watch request lasts; the server ends it and the informer resumes it."""
CONNECT_SECONDS = 10
MAX_BACKOFF = 30.0


class Sink(Protocol):
    """Where an informer's findings go; called on the event loop only."""

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None: ...

    def event(self, kind: str, type_: str, body: dict[str, Any]) -> None: ...


class _Gone(Exception):
    """The watch cannot resume from its resourceVersion (410): list again."""


@dataclass(frozen=True)
class Source:
    """How to list and watch one kind in one scope (a namespace, or all of them)."""

    kind: str
    namespace: str | None
    call: Callable[..., Any]
    args: tuple[Any, ...]
    label_selector: str | None


def sources(api: client.ApiClient, namespaces: tuple[str, ...]) -> list[Source]:
    """StoryRuns, and each child kind with the run label, per namespace or cluster-wide."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    batch, apps = client.BatchV1Api(api), client.AppsV1Api(api)
    found = []
    for ns in namespaces or (None,):
        for kind, plural, selector in (("StoryRun", "storyruns", None),
                                       ("StepRun", "stepruns", RUN_LABEL)):
            if ns is None:
                found.append(Source(kind, ns, custom.list_cluster_custom_object,
                                    (GROUP, VERSION, plural), selector))
            else:
                found.append(Source(kind, ns, custom.list_namespaced_custom_object,
                                    (GROUP, VERSION, ns, plural), selector))
        for kind, every, one in (
            ("Job", batch.list_job_for_all_namespaces, batch.list_namespaced_job),
            ("Deployment", apps.list_deployment_for_all_namespaces,
             apps.list_namespaced_deployment),
            ("Pod", core.list_pod_for_all_namespaces, core.list_namespaced_pod),
        ):
            found.append(Source(kind, ns, every, (), RUN_LABEL) if ns is None
                         else Source(kind, ns, one, (ns,), RUN_LABEL))
    return found


class Informer:
    """Keep one kind of one scope flowing into a `Sink`, from a thread of its own."""

    def __init__(self, source: Source, sink: Sink, loop: asyncio.AbstractEventLoop,
                 resync_seconds: float) -> None:
        self.source = source
        self.sink = sink
        self.loop = loop
        self.resync_seconds = resync_seconds
        self.synced = asyncio.Event()
        """Set once the first list has reached the sink."""
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"watch-{source.kind.lower()}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the stream: the thread returns at its next line or error, unseen by the sink."""
        self._stopped.set()
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            # Wakes the read blocked on it; close() would wait for that read to return first.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end after `stop()`; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- in the informer's thread ------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                version = self._list()
                backoff = 1.0
                relist_at = (time.monotonic() + self.resync_seconds
                             if self.resync_seconds > 0 else float("inf"))
                while not self._stopped.is_set() and time.monotonic() < relist_at:
                    version = self._watch(version, min(WATCH_SECONDS,
                                                       relist_at - time.monotonic()))
            except _Gone:
                log.info("watch of %s: resourceVersion too old, listing again", self.source.kind)
            except Exception as exc:  # the thread must outlive any error, or the cache goes stale
                if self._stopped.is_set():
                    return  # closing the stream under a read ends it with some error or other
                expected = (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError,
                            ValueError)
                log.log(logging.WARNING if isinstance(exc, expected) else logging.ERROR,
                        "watch of %s failed (%s); listing again in %.0fs",
                        self.source.kind, _describe(exc), backoff,
                        exc_info=not isinstance(exc, expected))
                self._stopped.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    def _call(self, **kwargs: Any) -> Any:
        if self.source.label_selector:
            kwargs["label_selector"] = self.source.label_selector
        return self.source.call(*self.source.args, _preload_content=False, **kwargs)

    def _list(self) -> str:
        response = self._call(_request_timeout=(CONNECT_SECONDS, 120))
        listed = json.loads(response.data)
        items = list(listed.get("items") or ())
        version = str(listed["metadata"].get("resourceVersion") or "")
        self._deliver(self._listed, items, _int(version))
        return version

    def _listed(self, items: list[dict[str, Any]], version: int) -> None:
        self.sink.listed(self.source.kind, self.source.namespace, items, version)
        self.synced.set()

    def _watch(self, version: str, seconds: float) -> str:
        """One watch request from `version`; returns the last resourceVersion it saw."""
        try:
            response = self._call(watch=True, resource_version=version,
                                  allow_watch_bookmarks=True, timeout_seconds=max(1, int(seconds)),
                                  _request_timeout=(CONNECT_SECONDS, seconds + 30))
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone from exc
            raise
        self._response = response
        clean = False
        try:
            for line in iter_resp_lines(response):
                if self._stopped.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ValueError(f"watch error: {obj.get('message') or obj}")
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(self.sink.event, self.source.kind, kind, obj)
            clean = not self._stopped.is_set()
        finally:
            self._response = None
            if clean:
                response.release_conn()  # the server ended the stream: reuse the connection
            else:
                response.close()
        return version

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._stopped.is_set():
            self.loop.call_soon_threadsafe(fn, *args)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__


def _int(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return 0
