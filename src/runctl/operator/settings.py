"""What the operator was asked for: its command line, and the tunables read from the environment.

How kopf itself is configured is `runctl.operator.kopfconfig`'s business; nothing here imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runctl.flow.items import MAX_ITEMS

WORKERS = int(os.environ.get("RUNCTL_WORKERS", "32"))
"""Runs reconciled at once. A reconcile spends nearly all its time waiting on API calls, so many
runs stopped together finish sooner with many workers than with a few (`make bench` measures stop
latency at 100 realtime runs; results in bench/results)."""
API_THREADS = 32
"""Threads that make blocking API calls (the client's connection pool is as large): asyncio's
default executor would allow only a few on a small machine, and every worker waits on them."""
ERROR_REQUEUE_SECONDS = 2.0
BATCH_SECONDS = float(os.environ.get("RUNCTL_BATCH_SECONDS", "0.25"))
"""How long a child's event waits before it wakes its run, so that one reconcile sees the pod
and StepRun changes that come together and writes one status instead of several (`make bench`
counts the writes a run; results in bench/results). A change to the run itself, such as a stop
request, or to a child of a run being stopped, wakes it at once."""
RESYNC_SECONDS = float(os.environ.get("RUNCTL_RESYNC_SECONDS", "60"))
"""How often every watched kind is listed again, and every run reconciled again (0: never). kopf
resumes a broken watch with a fresh list but never reports what was deleted meanwhile; a relist
marks what vanished as deleted."""

STORY_WAIT_SECONDS = float(os.environ.get("RUNCTL_STORY_WAIT_SECONDS", "300"))
"""How long a run waits for a Story that does not exist (yet) before it fails StoryNotFound:
a directory applied in alphabetical order creates runs before their stories."""


@dataclass(frozen=True)
class Lease:
    """Where replicas elect their leader, and this replica's name in the election."""

    namespace: str
    name: str
    identity: str


@dataclass
class Options:
    """What `runctl operator` was asked for on its command line."""

    namespaces: tuple[str, ...] = ()
    lease: Lease | None = None
    webhook_port: int = 0
    webhook_host: str = "127.0.0.1"
    webhook_cert_dir: Path = Path("/tmp/runctl-webhook")
    max_items: int = MAX_ITEMS
    """The most items a run's fan-outs may have together, counted as they become known."""


OPTIONS = Options()

