"""What the API server's audit log says about the operator's writes, and the fencing check.

The log (`ControlPlane(audit=True)`) has one JSON event a line for every write: who sent it (its
user agent: `runctl-operator/<identity>` for a replica), the verb, the object, the answer and when
the API server received and finished it, all on the API server's one clock. Lease writes carry
their body, so the log alone tells who held the Lease when.

Fencing: a replica's writes land only while it holds the Lease. It holds it from a successful
write of the Lease naming it the holder until the first of: another successful Lease write naming
someone else (or nobody), or that write's time plus its `leaseDurationSeconds` (after which any
other replica may take it, whether or not one did). A write the API server answered with an error
(a request cut short, one past its deadline, a conflict) changed nothing, so only writes that
succeeded are judged.

Nothing here imports runctl: the checker judges the operator from outside.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

OPERATOR_AGENT = "runctl-operator/"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (with or without fractions) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Write:
    """One write the API server answered."""

    received: float
    done: float
    agent: str
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    holder: str | None = None
    """For a Lease write: the holder it names ("" for a release)."""
    lease_seconds: float = 0.0
    message: str = ""
    """The answer's message, for a write that failed."""

    @property
    def replica(self) -> str | None:
        """The operator replica that sent it, from its user agent (None: someone else)."""
        if not self.agent.startswith(OPERATOR_AGENT):
            return None
        return self.agent[len(OPERATOR_AGENT):].split(" ", 1)[0]

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300


def from_event(event: dict[str, Any]) -> Write | None:
    """The write one audit event records; None for anything else (a read, an earlier stage)."""
    if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITES:
        return None
    ref = event.get("objectRef") or {}
    holder, lease_seconds = None, 0.0
    if ref.get("resource") == "leases":
        spec = (event.get("requestObject") or {}).get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        lease_seconds = float(spec.get("leaseDurationSeconds") or 0)
    return Write(
        received=parse_time(event["requestReceivedTimestamp"]),
        done=parse_time(event.get("stageTimestamp") or event["requestReceivedTimestamp"]),
        agent=event.get("userAgent") or "", verb=event["verb"],
        resource=ref.get("resource") or "", subresource=ref.get("subresource") or "",
        namespace=ref.get("namespace") or "", name=ref.get("name") or "",
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        holder=holder, lease_seconds=lease_seconds,
        message=str((event.get("responseStatus") or {}).get("message") or ""),
    )


def read(path: Path) -> list[Write]:
    """Every write in an audit log, oldest first (a torn last line is left for next time)."""
    writes = []
    with path.open(errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            write = from_event(event)
            if write is not None:
                writes.append(write)
    return sorted(writes, key=lambda w: w.received)


@dataclass(frozen=True)
class Unfenced:
    """A write by a replica that did not hold the Lease when the API server received it."""

    write: Write
    why: str


def fencing(writes: Iterable[Write], lease_namespace: str, lease_name: str) -> list[Unfenced]:
    """Every write that succeeded (other than to the Lease itself) by a replica competing for
    the Lease named (one that ever wrote it), received while that replica did not hold it."""
    writes = sorted(writes, key=lambda w: w.received)
    grants = sorted((w for w in writes if w.resource == "leases" and w.succeeded
                     and w.namespace == lease_namespace and w.name == lease_name),
                    key=lambda g: g.done)
    done = [g.done for g in grants]
    competing = {w.replica for w in writes if w.resource == "leases"
                 and w.namespace == lease_namespace and w.name == lease_name}
    found = []
    for w in writes:
        replica = w.replica
        if replica not in competing or w.resource == "leases" or not w.succeeded:
            continue
        count = bisect.bisect_right(done, w.received)
        if not count:
            found.append(Unfenced(w, "before any replica held the lease"))
            continue
        last = grants[count - 1]
        if last.holder != replica:
            found.append(Unfenced(w, f"the lease was {last.holder or 'released'} "
                                     f"({w.received - last.done:.1f}s before)"))
        elif w.received > last.received + last.lease_seconds:
            found.append(Unfenced(w, f"its lease had expired "
                                     f"{w.received - last.received - last.lease_seconds:.1f}s "
                                     "before"))
    return found
