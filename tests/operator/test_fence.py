"""The write fence: a replica sends no write unless its last won Lease round started less than
the renew deadline ago (on the monotonic clock), whatever froze it meanwhile."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.operator import kube, leader
from runctl.operator.leader import LeaderElector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(leader.time, "monotonic", c)
    return c


@pytest.fixture
def unfenced() -> Iterator[None]:
    yield
    kube.fence(None)


def elector(rounds: list[Any], clock: Clock, takes: float = 0.0) -> LeaderElector:
    """An elector whose rounds end as listed (True, False or an exception to raise), each
    taking `takes` seconds."""
    e = LeaderElector(client.ApiClient(), "ns", "lease", "me", lease_seconds=15,
                      renew_seconds=5, renew_deadline_seconds=10)

    async def one_round() -> bool:
        clock.now += takes
        outcome = rounds.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    e._try_acquire_or_renew = one_round  # type: ignore[method-assign]
    return e


def test_a_replica_that_never_won_does_not_hold(clock: Clock) -> None:
    e = elector([False], clock)
    assert not e.holds()
    assert not asyncio.run(e.try_acquire_or_renew())
    assert not e.holds()


def test_a_won_round_holds_until_the_renew_deadline_from_when_it_started(clock: Clock) -> None:
    e = elector([True], clock, takes=3.0)
    assert asyncio.run(e.try_acquire_or_renew())
    started = clock.now - 3.0
    clock.now = started + 9.99
    assert e.holds()
    clock.now = started + 10.0
    assert not e.holds()


def test_lost_or_failed_rounds_do_not_extend_the_hold(clock: Clock) -> None:
    e = elector([True, False, ApiException(status=500), OSError("reset")], clock)
    assert asyncio.run(e.try_acquire_or_renew())
    won = clock.now
    for _ in range(3):
        clock.now += 3
        assert not asyncio.run(e.try_acquire_or_renew())
    clock.now = won + 10
    assert not e.holds()


def test_a_renewal_after_a_long_freeze_holds_again(clock: Clock) -> None:
    e = elector([True, True], clock)
    assert asyncio.run(e.try_acquire_or_renew())
    clock.now += 60  # frozen past the whole lease: nothing may be sent on what it saw before
    assert not e.holds()
    assert asyncio.run(e.try_acquire_or_renew())
    assert e.holds()


def test_a_fenced_write_is_not_sent_and_comes_back_transient(unfenced: None) -> None:
    sent: list[str] = []
    kube.fence(lambda: False)
    res = asyncio.run(kube.call("patch", "stepruns", sent.append, "x"))
    assert sent == []
    assert res.outcome is kube.Outcome.TRANSIENT
    assert res.message == kube.NOT_HELD


def test_the_fence_is_asked_when_the_write_is_sent(unfenced: None) -> None:
    answers = iter([True, False])
    sent: list[str] = []
    kube.fence(lambda: next(answers))
    assert asyncio.run(kube.call("create", "pods", sent.append, "first")).ok
    assert not asyncio.run(kube.call("create", "pods", sent.append, "second")).ok
    assert sent == ["first"]


def test_without_a_fence_every_write_is_sent(unfenced: None) -> None:
    sent: list[str] = []
    kube.fence(None)
    assert asyncio.run(kube.call("delete", "pods", sent.append, "x")).ok
    assert sent == ["x"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with an empty JSON object and remembers what reached it (a
    request whose body did not all arrive, as cut short)."""

    seen: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if len(self.rfile.read(length)) < length:
            self.seen.append(f"{self.command} {self.path} cut short")
            return
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[client.ApiClient, list[str]]]:
    """A loopback HTTP server that records requests, and an API client fenced as the
    operator's is."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    cfg = client.Configuration(host=f"http://127.0.0.1:{httpd.server_address[1]}")
    api = client.ApiClient(cfg)
    kube.fence_connections(api)
    try:
        yield api, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        kube.fence(None)


def test_a_replica_frozen_after_the_first_check_sends_nothing_when_it_wakes(
        server: tuple[client.ApiClient, list[str]]) -> None:
    """The hold is asked again as the request's bytes go out, after the client has built the
    request: a freeze while it was being built (the hold ran out meanwhile) sends nothing."""
    api, seen = server
    answers = iter([True, False])
    kube.fence(lambda: next(answers, False))
    pods = client.CoreV1Api(api)
    res = asyncio.run(kube.call("create", "pods", pods.create_namespaced_pod, "ns",
                                {"metadata": {"name": "p"}}, _preload_content=False))
    assert res.outcome is kube.Outcome.TRANSIENT
    assert res.message == kube.NOT_HELD
    assert seen == []


def test_a_held_write_and_the_elections_own_calls_reach_the_server(
        server: tuple[client.ApiClient, list[str]]) -> None:
    api, seen = server
    kube.fence(lambda: True)
    pods = client.CoreV1Api(api)
    assert asyncio.run(kube.call("create", "pods", pods.create_namespaced_pod, "ns",
                                 {"metadata": {"name": "p"}}, _preload_content=False)).ok
    kube.fence(lambda: False)  # the Lease's calls are not writes of a reconcile: never fenced
    client.CoordinationV1Api(api).read_namespaced_lease("lease", "ns", _preload_content=False)
    assert seen == [f"POST /api/v1/namespaces/ns/pods?timeout={kube.SERVER_DEADLINE}s",
                    "GET /apis/coordination.k8s.io/v1/namespaces/ns/leases/lease"]


def test_a_fenced_write_asks_the_api_server_to_give_up_past_the_deadline(
        server: tuple[client.ApiClient, list[str]]) -> None:
    """Its query kept; a delete's options go as its body."""
    api, seen = server
    kube.fence(lambda: True)
    options = client.V1DeleteOptions(grace_period_seconds=3)
    assert asyncio.run(kube.call("delete", "pods", client.CoreV1Api(api).delete_namespaced_pod,
                                 "p", "ns", body=options, dry_run="All",
                                 _preload_content=False)).ok
    assert seen == [f"DELETE /api/v1/namespaces/ns/pods/p?dryRun=All"
                    f"&timeout={kube.SERVER_DEADLINE}s"]


def test_a_fenced_write_without_a_body_is_never_sent(
        server: tuple[client.ApiClient, list[str]]) -> None:
    """Its headers would be its only send: a freeze right after their check would deliver
    them whole, with nothing left to check or to be late."""
    api, seen = server
    kube.fence(lambda: True)
    with pytest.raises(ValueError, match="needs a body"):
        asyncio.run(kube.call("delete", "pods", client.CoreV1Api(api).delete_namespaced_pod,
                              "p", "ns", _preload_content=False))
    assert seen == []


def test_a_replica_frozen_between_its_headers_and_its_body_sends_no_body(
        server: tuple[client.ApiClient, list[str]]) -> None:
    """The headers went out while the hold was current; it ran out before the body: the body
    is not sent (the API server sees a request cut short, and writes nothing)."""
    api, seen = server
    answers = iter([True, True, False])  # before building, at the headers, at the body
    kube.fence(lambda: next(answers, False))
    res = asyncio.run(kube.call("create", "pods", client.CoreV1Api(api).create_namespaced_pod,
                                "ns", {"metadata": {"name": "p"}}, _preload_content=False))
    assert res.outcome is kube.Outcome.TRANSIENT
    assert res.message == kube.NOT_HELD
    assert seen == [f"POST /api/v1/namespaces/ns/pods?timeout={kube.SERVER_DEADLINE}s"
                    " cut short"]
