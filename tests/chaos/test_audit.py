"""The audit log's reading and the fencing check, on recorded and synthetic writes."""

from __future__ import annotations

from pathlib import Path

from chaos.audit import Write

from chaos import audit

RECORDED = Path(__file__).parents[1] / "recorded" / "audit-writes.jsonl"


def test_recorded_events_read_as_writes_with_their_replica_and_lease_holder() -> None:
    writes = audit.read(RECORDED)
    assert [w.received for w in writes] == sorted(w.received for w in writes)
    lease, pod, patch = (next(w for w in writes if w.resource == r and w.verb == v)
                         for r, v in (("leases", "create"), ("pods", "create"),
                                      ("stepruns", "patch")))
    assert (lease.verb, lease.resource, lease.code) == ("create", "leases", 201)
    assert lease.holder == lease.replica == "fence-a-t-9465609f"
    assert lease.lease_seconds == 15
    assert (pod.verb, pod.resource, pod.name, pod.replica) == (
        "create", "pods", "chain-1-s0-1", "fence-a-t-9465609f")
    assert pod.holder is None
    assert patch.resource == "stepruns"
    assert patch.received <= patch.done


def test_a_read_is_not_a_write() -> None:
    assert audit.from_event({"stage": "ResponseComplete", "verb": "get"}) is None
    assert audit.from_event({"stage": "RequestReceived", "verb": "create"}) is None


def lease(at: float, holder: str, by: str | None = None, code: int = 200) -> Write:
    return Write(at, at + 0.01, f"runctl-operator/{by or holder or 'x'}", "update", "leases",
                 "", "ns", "runctl-leader", code, holder=holder, lease_seconds=15)


def write(at: float, replica: str, agent: str = "runctl-operator/", code: int = 200) -> Write:
    return Write(at, at + 0.01, f"{agent}{replica}", "patch", "stepruns", "status", "ns",
                 "r-a", code)


def fenced(*writes: Write) -> list[str]:
    return [u.why for u in audit.fencing(writes, "ns", "runctl-leader")]


def test_writes_while_holding_and_renewing_are_fenced_in() -> None:
    assert fenced(lease(0, "a"), write(5, "a"), lease(10, "a"), write(24, "a")) == []


def test_a_write_after_the_lease_expired_unrenewed_is_caught() -> None:
    (why,) = fenced(lease(0, "a"), write(16, "a"))
    assert "expired" in why


def test_a_write_after_another_replica_took_the_lease_is_caught() -> None:
    (why,) = fenced(lease(0, "a"), lease(16, "b"), write(16.5, "a"), write(16.5, "b"))
    assert "b" in why


def test_a_write_after_a_release_or_before_any_lease_is_caught() -> None:
    assert len(fenced(write(1, "a"), lease(2, "a"), lease(3, "", by="a"), write(4, "a"))) == 2


def test_replicas_of_another_lease_are_not_judged_by_this_one() -> None:
    other = Write(0, 0.01, "runctl-operator/c", "update", "leases", "", "elsewhere",
                  "runctl-leader", 200, holder="c", lease_seconds=15)
    assert fenced(lease(0, "a"), other, write(5, "c")) == []


def test_a_refused_lease_write_grants_nothing_and_others_writers_are_not_judged() -> None:
    assert len(fenced(lease(0, "a"), lease(10, "b", code=409), write(12, "b"))) == 1
    assert fenced(write(1, "x", agent="kubectl/")) == []


def test_a_late_write_the_api_server_refused_changed_nothing_and_is_not_caught() -> None:
    """Past its deadline (504), cut short (500), conflicting (409): nothing was written."""
    late = [write(16.5, "a", code=code) for code in (504, 500, 409)]
    assert fenced(lease(0, "a"), lease(16, "b"), *late) == []
    assert len(fenced(lease(0, "a"), lease(16, "b"), *late, write(17, "a"))) == 1
