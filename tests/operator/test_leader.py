"""Leader election against the real API server: one leader, takeover on a crash, handover."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from runctl.devcluster import ControlPlane
from runctl.operator.leader import LeaderElector

LEASE, RENEW, RETRY = 4, 1.0, 0.25


def electors(cluster: ControlPlane, namespace: str, count: int = 2,
             **kwargs: Any) -> list[LeaderElector]:
    api = cluster.api_client()
    settings: dict[str, Any] = {
        "lease_seconds": LEASE, "renew_seconds": RENEW, "retry_seconds": RETRY, **kwargs}
    return [LeaderElector(api, namespace, "runctl-leader", f"replica-{i}", **settings)
            for i in range(count)]


def lease(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "lease", "runctl-leader", "-n", namespace, "-o", "json")
    spec: dict[str, Any] = json.loads(out.stdout)["spec"]
    return spec


async def until(what: str, probe: Callable[[], bool], timeout: float) -> float:
    """Wait until `probe()` holds; return how long it took."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def leaders(group: list[LeaderElector]) -> list[str]:
    return [e.identity for e in group if e.leading.is_set()]


async def campaign(group: list[LeaderElector],
                   body: Callable[[dict[str, asyncio.Task[None]]], Awaitable[None]]) -> None:
    tasks = {e.identity: asyncio.create_task(e.run()) for e in group}
    try:
        await body(tasks)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


@pytest.mark.integration
def test_exactly_one_of_two_leads(cluster: ControlPlane, namespace: str) -> None:
    group = electors(cluster, namespace)

    async def body(_tasks: dict[str, asyncio.Task[None]]) -> None:
        await until("a leader", lambda: bool(leaders(group)), timeout=10)
        # Several renew periods: the leader keeps the lease, the other never leads.
        for _ in range(int(3 * LEASE / 0.1)):
            assert len(leaders(group)) == 1
            await asyncio.sleep(0.1)

    asyncio.run(campaign(group, body))
    spec = lease(cluster, namespace)
    assert spec["leaseDurationSeconds"] in (LEASE, 1)  # 1: released on exit


@pytest.mark.integration
def test_lease_records_the_holder_and_renews(cluster: ControlPlane, namespace: str) -> None:
    group = electors(cluster, namespace)

    async def body(_: dict[str, asyncio.Task[None]]) -> None:
        await until("a leader", lambda: bool(leaders(group)), timeout=10)
        first = await asyncio.to_thread(lease, cluster, namespace)
        assert first["holderIdentity"] == leaders(group)[0]
        assert first["leaseDurationSeconds"] == LEASE
        await asyncio.sleep(RENEW * 2.5)
        second = await asyncio.to_thread(lease, cluster, namespace)
        assert second["holderIdentity"] == first["holderIdentity"]
        assert second["renewTime"] > first["renewTime"]
        assert second["acquireTime"] == first["acquireTime"]

    asyncio.run(campaign(group, body))


@pytest.mark.integration
def test_a_leader_that_stops_renewing_is_replaced_within_the_lease(
        cluster: ControlPlane, namespace: str) -> None:
    group = electors(cluster, namespace, release_on_cancel=False)  # a crash: nothing released

    async def body(tasks: dict[str, asyncio.Task[None]]) -> None:
        await until("a leader", lambda: bool(leaders(group)), timeout=10)
        old = leaders(group)[0]
        # Let the follower see the lease for a while, as a long-running replica would.
        await asyncio.sleep(RENEW * 2)
        tasks[old].cancel()
        await asyncio.gather(tasks[old], return_exceptions=True)
        assert await asyncio.to_thread(lambda: lease(cluster, namespace)["holderIdentity"]) == old
        took = await until("the other replica to lead",
                           lambda: leaders(group) not in ([], [old]), timeout=LEASE + 10)
        # Not before the lease expired: it was renewed at most RENEW before the crash, and the
        # follower saw that renewal at most RETRY later.
        assert took > LEASE - RENEW - RETRY, took
        new = await asyncio.to_thread(lease, cluster, namespace)
        assert new["holderIdentity"] != old
        assert new["leaseTransitions"] == 1

    asyncio.run(campaign(group, body))


@pytest.mark.integration
def test_a_clean_release_hands_over_before_the_lease_expires(
        cluster: ControlPlane, namespace: str) -> None:
    # A lease far longer than the wait below: a takeover within it can only come from a release.
    long_lease = 120
    group = electors(cluster, namespace, lease_seconds=long_lease)

    async def body(tasks: dict[str, asyncio.Task[None]]) -> None:
        await until("a leader", lambda: bool(leaders(group)), timeout=10)
        old = leaders(group)[0]
        await asyncio.sleep(RENEW * 2)
        tasks[old].cancel()
        await asyncio.gather(tasks[old], return_exceptions=True)
        await until("the other replica to lead",
                    lambda: leaders(group) not in ([], [old]), timeout=long_lease / 4)

    asyncio.run(campaign(group, body))


@pytest.mark.integration
def test_release_wins_over_a_renewal_that_lands_after_its_read(
        cluster: ControlPlane, namespace: str) -> None:
    """A renewal still in flight when the campaign is cancelled must not make the release fail."""
    [elector] = electors(cluster, namespace, count=1)
    read = elector.api.read_namespaced_lease
    renewals: list[str] = []

    def read_then_renew(*args: Any, **kwargs: Any) -> Any:
        response = read(*args, **kwargs)
        if not renewals:  # the in-flight renewal lands between the release's read and write
            patch = {"spec": {"renewTime": "2030-01-01T00:00:00.000000Z"}}
            cluster.kubectl("patch", "lease", "runctl-leader", "-n", namespace,
                            "--type", "merge", "-p", json.dumps(patch))
            renewals.append("landed")
        return response

    async def main() -> None:
        assert await elector.try_acquire_or_renew()
        elector.api.read_namespaced_lease = read_then_renew  # type: ignore[method-assign]
        assert await elector.release()

    asyncio.run(main())
    assert renewals == ["landed"]
    assert not lease(cluster, namespace).get("holderIdentity")


@pytest.mark.integration
def test_callbacks_and_losing_the_lease_to_another_writer(
        cluster: ControlPlane, namespace: str) -> None:
    """A leader that finds someone else in the Lease stops leading at its next renewal."""
    [elector] = electors(cluster, namespace, count=1)
    calls: list[str] = []

    async def started() -> None:
        calls.append("started")

    async def stopped() -> None:
        calls.append("stopped")

    async def main() -> None:
        task = asyncio.create_task(elector.run(started, stopped))
        try:
            await until("leading", elector.leading.is_set, timeout=10)
            assert calls == ["started"]
            # An intruder takes the lease over (as a replica whose clock ran ahead might).
            patch = {"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600}}
            await asyncio.to_thread(
                cluster.kubectl, "patch", "lease", "runctl-leader", "-n", namespace,
                "--type", "merge", "-p", json.dumps(patch))
            await until("losing the lead", lambda: not elector.leading.is_set(),
                        timeout=RENEW + 2)
            assert calls == ["started", "stopped"]
            # The intruder's lease is valid for an hour: no re-acquisition meanwhile.
            await asyncio.sleep(RENEW * 2)
            assert not elector.leading.is_set()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert calls == ["started", "stopped"]  # cancelled while not leading: no second stop
        assert lease(cluster, namespace)["holderIdentity"] == "intruder"  # not ours to release

    asyncio.run(main())


@pytest.mark.integration
def test_cancelling_the_leader_calls_stopped_and_releases(
        cluster: ControlPlane, namespace: str) -> None:
    [elector] = electors(cluster, namespace, count=1)
    calls: list[str] = []

    async def started() -> None:
        calls.append("started")

    async def stopped() -> None:
        calls.append("stopped")

    async def main() -> None:
        task = asyncio.create_task(elector.run(started, stopped))
        await until("leading", elector.leading.is_set, timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == ["started", "stopped"]
    spec = lease(cluster, namespace)
    assert not spec.get("holderIdentity")


def test_timings_must_leave_the_leader_time_to_stop_first() -> None:
    with pytest.raises(ValueError, match="renew_seconds"):
        LeaderElector(None, "ns", "lease", "me", lease_seconds=5, renew_seconds=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="renew_seconds"):
        LeaderElector(None, "ns", "lease", "me", lease_seconds=5, renew_seconds=1,  # type: ignore[arg-type]
                      renew_deadline_seconds=5)
