"""Every write a reconcile makes (StepRuns and their status, workloads, pods, Events, the run's
status) goes through here, and every failure is classified. Two writers do not: leader election
writes its Lease itself (`runctl.operator.leader`: a renewal that fails is retried by the election
until its deadline, then leadership ends), and kopf registers the webhook's configuration.

- invalid (400, 422, and any other status not named below): the API server refused the content;
  sending it again unchanged can never succeed, so it is logged and not retried here (a refused
  status write is then recorded in an Event and never sent again unchanged: `apply`);
- forbidden (401, 403): logged, not retried here;
- conflict (409 on update): someone wrote first; re-read and re-decide (the caller requeues);
- exists (409 on create) and gone (404): the desired state is already true (idempotent creates,
  deletes of what is already deleted);
- transient (429, 5xx, timeouts, connection errors): retried here with capped exponential backoff
  and jitter, a bounded number of times, then handed back to the caller to requeue.
- fenced: with leader election, a write is not sent at all while this replica cannot be sure it
  still holds the Lease (`fence`); it is handed back as transient, not retried here: the
  election either renews (and the requeued reconcile writes then) or stops the workers.
  The hold is asked before the client builds the request (so nothing is built for nothing),
  and again as each of its sends goes out on the connection (`fence_connections`): its
  request line and headers, then its body. A check can pass just before a freeze and its
  send go out when the process wakes, so the API server keeps the last word: every fenced
  write asks it (`timeout`) to give up on a request it has not finished within
  `SERVER_DEADLINE` seconds of its headers. A freeze between the check of the headers and
  their send is caught by the check of the body; one between the check of the body and its
  send delivers the body past the deadline, and the API server refuses it (504) without
  writing anything. So a write lands only if it is finished within `SERVER_DEADLINE` of a
  check that found the Lease held, which is before any other replica may take it (the
  renew deadline plus `SERVER_DEADLINE` is within the lease). Every fenced write has a
  body for this (a delete sends its options as one).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
import urllib3.connection
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.operator import metrics

log = logging.getLogger(__name__)

MAX_TRIES = 5
BASE_DELAY = 0.2
MAX_DELAY = 5.0
NOT_HELD = "not sent: this replica's hold on the leader Lease is not known to be current"

SERVER_DEADLINE = 4
"""Seconds the API server is given to finish a fenced write from when its headers reached it:
less than the lease's length less the renew deadline (15 - 10 s), with room for the write
itself. A write the API server is slower than this on fails as transient (504) and is tried
again."""

_holds: Callable[[], bool] | None = None
_sending = threading.local()
"""`holds`, while this thread sends a write of a reconcile (the Lease's own calls do not)."""


def fence(holds: Callable[[], bool] | None) -> None:
    """Ask `holds()` right before sending each write, in the thread that sends it, and send
    nothing while it says no (None: act alone, always send)."""
    global _holds
    _holds = holds


class _Fenced(Exception):
    pass


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    holds = _holds
    if holds is None:
        return fn

    def send(*args: Any, **kwargs: Any) -> Any:
        if not holds():
            raise _Fenced
        _sending.holds = holds
        try:
            return fn(*args, **kwargs)
        finally:
            _sending.holds = None
    return send


def _still_held() -> None:
    holds = getattr(_sending, "holds", None)
    if holds is not None and not holds():
        raise _Fenced


def _with_deadline(url: str, body: Any) -> str:
    """A fenced write's URL, asking the API server to give up on it past `SERVER_DEADLINE`."""
    if getattr(_sending, "holds", None) is None:
        return url
    if not body:
        # Its only send would be its headers: nothing would be checked after them.
        raise ValueError("a fenced write needs a body (a delete sends its options as one)")
    return f"{url}{'&' if '?' in url else '?'}timeout={SERVER_DEADLINE}s"


class _FencedHTTPConnection(urllib3.connection.HTTPConnection):
    def request(self, method: str, url: str, body: Any = None, *args: Any,
                **kwargs: Any) -> None:
        super().request(method, _with_deadline(url, body), body, *args, **kwargs)

    def send(self, data: Any) -> None:
        _still_held()
        super().send(data)


class _FencedHTTPSConnection(_FencedHTTPConnection, urllib3.connection.HTTPSConnection):
    """The same two checks, over TLS (`super()` in them reaches HTTPSConnection first)."""


class _FencedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _FencedHTTPConnection


class _FencedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _FencedHTTPSConnection


def fence_connections(api: client.ApiClient) -> None:
    """Make `api`'s connections ask the hold again right before they put a write's bytes on
    the socket: building a request (serializing its body, taking a pooled connection) takes
    long enough for a freeze to land in between, and the first check is stale by then."""
    manager = api.rest_client.pool_manager
    manager.pool_classes_by_scheme = {"http": _FencedHTTPConnectionPool,
                                      "https": _FencedHTTPSConnectionPool}


class Outcome(enum.StrEnum):
    OK = "ok"
    EXISTS = "exists"
    GONE = "gone"
    CONFLICT = "conflict"
    INVALID = "invalid"
    FORBIDDEN = "forbidden"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    body: Any = None
    status: int | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.EXISTS, Outcome.GONE)


def classify(status: int | None) -> Outcome:
    if status is None:
        return Outcome.TRANSIENT
    if status in (400, 422):
        return Outcome.INVALID
    if status in (401, 403):
        return Outcome.FORBIDDEN
    if status == 404:
        return Outcome.GONE
    if status == 409:
        return Outcome.CONFLICT
    if status == 429 or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.INVALID


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


async def call(verb: str, resource: str, fn: Callable[..., Any], *args: Any,
               **kwargs: Any) -> Result:
    """Run a blocking client call in a thread; classify its outcome; retry only transient ones."""
    send = _guarded(fn)
    for attempt in range(1, MAX_TRIES + 1):
        try:
            body = await asyncio.to_thread(send, *args, **kwargs)
            metrics.API_CALLS.labels(verb=verb, resource=resource, outcome="ok").inc()
            return Result(Outcome.OK, body=body, status=200)
        except _Fenced:
            metrics.API_CALLS.labels(verb=verb, resource=resource, outcome="fenced").inc()
            log.warning("%s %s %s", verb, resource, NOT_HELD)
            return Result(Outcome.TRANSIENT, message=NOT_HELD)
        except ApiException as exc:
            outcome = classify(exc.status)
            if outcome is Outcome.CONFLICT and verb == "create":
                outcome = Outcome.EXISTS
            status, message = exc.status, _message(exc)
        except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
            outcome, status, message = Outcome.TRANSIENT, None, str(exc)
        metrics.API_CALLS.labels(verb=verb, resource=resource, outcome=outcome.value).inc()
        if outcome is not Outcome.TRANSIENT or attempt == MAX_TRIES:
            if outcome in (Outcome.INVALID, Outcome.FORBIDDEN):
                log.error("%s %s refused (%s %s): %s", verb, resource, status, outcome, message)
            return Result(outcome, status=status, message=message)
        delay = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
        await asyncio.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover
