"""Plain-JSON lists of every watched kind: the first fills the cache before any worker acts, and
one every `RUNCTL_RESYNC_SECONDS` repairs what the watches missed.

kopf resumes a broken watch by listing again, which brings back what exists but says nothing of
what was deleted meanwhile; only a list handed to `ObjectCache.sync` marks what vanished as
deleted. Each list is read in pages of plain JSON in an API thread, then handed to the sink on
the event loop. (kopf's watches begin with a list of their own, after the first relist: a
deletion in the moment between the two is repaired by the next relist.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.operator.cache import slim
from runctl.operator.watched import WATCHED, Watched

log = logging.getLogger(__name__)

LIST_TIMEOUT = (10, 120)
"""Seconds to connect, and to read one page of a list."""
PAGE = 500
"""Objects a page of a list holds."""
MAX_BACKOFF = 30.0
FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError, ValueError)
"""What the API server or the network may make a list fail with (anything else is a bug)."""


class Sink(Protocol):
    """Where a list goes; called on the event loop only."""

    def listed(self, kind: str, namespace: str | None, items: list[dict[str, Any]],
               resource_version: int) -> None: ...


def list_kind(api: client.ApiClient, watched: Watched, namespace: str | None,
              page: int = PAGE) -> tuple[list[dict[str, Any]], int]:
    """One kind in one scope (blocking): its items (children slimmed as the cache keeps them)
    and the list's resourceVersion. Read `page` objects at a time, each page slimmed before the
    next is read: a full pod is about 22 KB once decoded and 3 KB slimmed, so a list of 10,000
    read whole would hold hundreds of MB at once, every period. The pages are one consistent
    list: the API server serves them all at the first one's resourceVersion."""
    items: list[dict[str, Any]] = []
    version, token = "", ""
    while True:
        query = [("labelSelector", watched.label_selector)] if watched.label_selector else []
        query += [("limit", str(page))] + ([("continue", token)] if token else [])
        request = api.param_serialize("GET", watched.path(namespace), query_params=query,
                                      header_params={"Accept": "application/json"},
                                      auth_settings=["BearerToken"])
        response = api.call_api(*request, _request_timeout=LIST_TIMEOUT)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        listed = json.loads(data)
        meta = listed.get("metadata") or {}
        version = version or str(meta.get("resourceVersion") or "0")
        bodies = listed.get("items") or ()
        items += bodies if watched.kind == "StoryRun" else (
            slim(watched.kind, b) for b in bodies)
        token = meta.get("continue") or ""
        if not token:
            return items, int(version) if version.isdigit() else 0


async def relist(api: client.ApiClient, sink: Sink, namespaces: tuple[str, ...]) -> None:
    """List every watched kind in every scope at once; each list reaches the sink as it
    arrives. Raises the first failure (after the other lists have ended)."""
    scopes = [(watched, ns) for ns in namespaces or (None,) for watched in WATCHED]
    results = await asyncio.gather(
        *(asyncio.to_thread(list_kind, api, watched, ns) for watched, ns in scopes),
        return_exceptions=True)
    failure: BaseException | None = None  # gathered, so one failure drops no other list
    for (watched, ns), result in zip(scopes, results, strict=True):
        if isinstance(result, BaseException):
            failure = failure or result
        else:
            sink.listed(watched.kind, ns, *result)
    if failure is not None:
        raise failure


async def first_relist(api: client.ApiClient, sink: Sink, namespaces: tuple[str, ...]) -> None:
    """The first complete list, tried until it succeeds: a worker that acted on a partial
    cache would see a run without the children it already has."""
    backoff = 1.0
    while True:
        try:
            await relist(api, sink, namespaces)
            return
        except Exception as exc:  # whatever it is, a cache never filled would stop everything
            _failed(exc, f"trying again in {backoff:.0f}s")
        await asyncio.sleep(backoff)
        backoff = min(MAX_BACKOFF, backoff * 2)


async def keep_relisting(api: client.ApiClient, sink: Sink, namespaces: tuple[str, ...],
                         period: float) -> None:
    """List everything again every `period` seconds, for as long as the operator runs."""
    while True:
        await asyncio.sleep(period)
        try:
            await relist(api, sink, namespaces)
        except Exception as exc:  # the loop must outlive any error, or nothing is repaired
            _failed(exc, f"the next one is in {period:.0f}s")


def _failed(exc: Exception, then: str) -> None:
    """A failure of the API server or the network is a warning; anything else is a bug."""
    expected = isinstance(exc, FAILURES)
    described = (f"{exc.status} {exc.reason}" if isinstance(exc, ApiException)
                 else str(exc) or type(exc).__name__)
    log.log(logging.WARNING if expected else logging.ERROR,
            "listing what the operator watches failed (%s); %s", described, then,
            exc_info=not expected)
