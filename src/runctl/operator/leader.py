"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Several operator replicas may run; exactly one of them acts (reconciles) at a time. They share one
Lease in the operator's namespace:

- a replica acquires the Lease when nobody holds it (`holderIdentity` empty: released), or when
  the holder has not renewed it for `leaseDurationSeconds`, measured on this replica's own
  monotonic clock from the moment it last saw the Lease change (never by comparing wall clocks
  of two machines, which may disagree);
- every write is a replace carrying the `resourceVersion` that was read (or the create of a Lease
  not there yet), so two replicas racing for an expired Lease cannot both win: the API server
  refuses the second write (409);
- the leader renews every `renew_seconds`; if it cannot renew for `renew_deadline_seconds`
  (shorter than the lease, so it stops acting before anyone else may start), or sees another
  holder, it stops leading and goes back to waiting;
- on a clean shutdown the leader releases the Lease (empty holder), so another replica takes over
  on its next try instead of waiting for the lease to expire.
- a leader writes nothing once its last successful renewal is older than the renew deadline
  (`holds()`, asked before every write: `runctl.operator.kube.fence`): a replica that was frozen
  (SIGSTOP, a stalled VM) past its lease wakes up with a stale view while another replica may be
  acting, and must not write on it before the election has renewed or let go. The renewal's
  age is counted from when its round started, on the monotonic clock, which runs on while the
  process is frozen.

Every API call is the blocking `kubernetes` client run in a thread (`asyncio.to_thread`), made
here rather than through `runctl.operator.kube`: a failed call is this module's to judge (a round
that did not win), not a write to classify and requeue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def default_identity() -> str:
    """This process's name in the Lease: the host (a pod's name) plus a random suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _now() -> str:
    return datetime.now(UTC).strftime(MICROTIME)


@dataclass(frozen=True)
class LeaseRecord:
    """What the Lease says, as far as the election is concerned."""

    holder: str
    lease_seconds: int
    transitions: int
    resource_version: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> LeaseRecord:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(body["metadata"]["resourceVersion"]),
        )


class LeaderElector:
    """Campaign for one Lease; `leading` is set exactly while this replica holds it.

    `run()` campaigns until cancelled. It calls `on_started_leading` after acquiring the Lease and
    `on_stopped_leading` after losing or releasing it; both are awaited in line, so they should
    only start or stop work, not do it.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        identity: str | None = None,
        *,
        lease_seconds: int = 15,
        renew_seconds: float = 5,
        renew_deadline_seconds: float | None = None,
        retry_seconds: float = 2,
        release_on_cancel: bool = True,
    ) -> None:
        self.renew_deadline_seconds = (
            renew_deadline_seconds if renew_deadline_seconds is not None else lease_seconds * 2 / 3
        )
        if not renew_seconds < self.renew_deadline_seconds < lease_seconds:
            raise ValueError("need renew_seconds < renew_deadline_seconds < lease_seconds")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.release_on_cancel = release_on_cancel
        self.leading = asyncio.Event()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        """When the last round that won the Lease started (monotonic); None: not leading."""

    # -- the campaign --------------------------------------------------------------------------

    async def run(self, on_started_leading: Callback | None = None,
                  on_stopped_leading: Callback | None = None) -> None:
        try:
            while True:
                while not await self.try_acquire_or_renew():
                    await asyncio.sleep(self.retry_seconds)
                self.leading.set()
                log.info("leader election: %s leads (lease %s/%s)",
                         self.identity, self.namespace, self.name)
                if on_started_leading:
                    await on_started_leading()
                await self._renew_until_lost()
                self._renewed_at = None
                self.leading.clear()
                log.warning("leader election: %s lost the lease %s/%s",
                            self.identity, self.namespace, self.name)
                if on_stopped_leading:
                    await on_stopped_leading()
        except asyncio.CancelledError:
            self._renewed_at = None
            if self.leading.is_set():
                self.leading.clear()
                if on_stopped_leading:
                    await on_stopped_leading()
            if self.release_on_cancel:
                # Also when not (yet) leading: a write may have won in its thread just as the
                # campaign was cancelled. release() only gives up a Lease this replica holds.
                await self.release()
            raise

    def holds(self) -> bool:
        """Whether this replica may write as the leader now: its last won round started less
        than the renew deadline ago, so no other replica can have taken the Lease since (they
        wait the whole lease from when they saw that round's write)."""
        won = self._renewed_at
        return won is not None and time.monotonic() - won < self.renew_deadline_seconds

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            while not await self.try_acquire_or_renew():
                if self._observed and self._observed.holder not in ("", self.identity):
                    return  # someone else holds it now
                if not self.holds():
                    return  # stop acting before anyone else may start
                await asyncio.sleep(self.retry_seconds)

    # -- one attempt ---------------------------------------------------------------------------

    def _observe(self, record: LeaseRecord) -> None:
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()

    def _expired(self, record: LeaseRecord) -> bool:
        return time.monotonic() >= self._observed_at + (record.lease_seconds or self.lease_seconds)

    async def try_acquire_or_renew(self) -> bool:
        """One read-decide-write round; True if this replica holds the Lease afterwards."""
        started = time.monotonic()
        try:
            won = await self._try_acquire_or_renew()
        except ApiException as exc:
            level = logging.ERROR if exc.status in (401, 403) else logging.WARNING
            log.log(level, "leader election: lease %s/%s: %s %s",
                    self.namespace, self.name, exc.status, exc.reason)
            return False
        except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
            log.warning("leader election: lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        if won:
            self._renewed_at = started
        return won

    async def _try_acquire_or_renew(self) -> bool:
        timeout = self.renew_deadline_seconds / 2
        try:
            lease = await asyncio.to_thread(
                self.api.read_namespaced_lease, self.name, self.namespace,
                _request_timeout=timeout, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return await self._write(None, timeout)
        body = _json(lease)
        record = LeaseRecord.from_body(body)
        self._observe(record)
        if record.holder not in ("", self.identity) and not self._expired(record):
            return False
        return await self._write(body, timeout)

    async def _write(self, body: dict[str, Any] | None, timeout: float) -> bool:
        now = _now()
        if body is None:
            new: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"leaseTransitions": 0},
            }
        else:
            new = {**body, "spec": dict(body.get("spec") or {})}
        spec = new["spec"]
        if spec.get("holderIdentity") != self.identity:
            if body is not None:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.lease_seconds,
                    renewTime=now)
        payload: Any = new  # a plain dict is sent as it is; the client's V1Lease is not needed
        try:
            if body is None:
                written = await asyncio.to_thread(
                    self.api.create_namespaced_lease, self.namespace, payload,
                    _request_timeout=timeout, _preload_content=False)
            else:
                written = await asyncio.to_thread(
                    self.api.replace_namespaced_lease, self.name, self.namespace, payload,
                    _request_timeout=timeout, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return False  # someone else wrote first: re-read next time
            raise
        self._observe(LeaseRecord.from_body(_json(written)))
        return True

    async def release(self, attempts: int = 5) -> bool:
        """Give the Lease up if this replica holds it, so another one takes over at once.

        A renewal sent just before the campaign was cancelled may still land after the read
        below; its write makes ours conflict (409), so the release reads again and retries.
        """
        for _ in range(attempts):
            try:
                if not await self._release_once():
                    return False
            except ApiException as exc:
                if exc.status == 409:
                    continue
                self._release_failed(exc)
                return False
            except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
                self._release_failed(exc)
                return False
            log.info("leader election: %s released the lease %s/%s",
                     self.identity, self.namespace, self.name)
            return True
        log.warning("leader election: could not release %s/%s: %d conflicting writes",
                    self.namespace, self.name, attempts)
        return False

    async def _release_once(self) -> bool:
        lease: Any = _json(await asyncio.to_thread(
            self.api.read_namespaced_lease, self.name, self.namespace,
            _request_timeout=self.renew_deadline_seconds, _preload_content=False))
        if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return False
        now = _now()
        lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=now,
                             acquireTime=now)
        await asyncio.to_thread(
            self.api.replace_namespaced_lease, self.name, self.namespace, lease,
            _request_timeout=self.renew_deadline_seconds, _preload_content=False)
        return True

    def _release_failed(self, exc: Exception) -> None:
        log.warning("leader election: could not release %s/%s: %s",
                    self.namespace, self.name, exc)


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (`_preload_content=False`) response, as plain JSON."""
    data: dict[str, Any] = json.loads(response.data)
    return data
