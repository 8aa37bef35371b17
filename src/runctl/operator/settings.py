"""How kopf is configured for runctl, deliberately.

- kopf keeps no bookkeeping in `status` (the contract owns every status field, and the CRD's
  validation rules would refuse kopf's own writes to a terminal object): its progress and
  diff-base storage are annotations under `kopf.runctl.dev`, and runctl only registers event
  handlers, which need neither storage nor finalizers;
- kopf posts no Kubernetes Events of its own from log lines: runctl posts the Events a person
  wants to see, once per transition;
- watches are re-established every few minutes (server and client timeouts), so a silently
  dropped connection cannot leave the cache stale for long.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import kopf

PREFIX = "kopf.runctl.dev"
WORKERS = int(os.environ.get("RUNCTL_WORKERS", "8"))
API_THREADS = 32
"""Threads that make blocking API calls (the client's connection pool is as large): asyncio's
default executor would allow only a few on a small machine, and every worker waits on them."""
ERROR_REQUEUE_SECONDS = 2.0
RESYNC_SECONDS = float(os.environ.get("RUNCTL_RESYNC_SECONDS", "60"))
"""How often everything is listed again to catch what a watch missed (0: never)."""


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


OPTIONS = Options()


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.enabled = False
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.batching.worker_limit = 64
    settings.networking.request_timeout = 60
    if OPTIONS.webhook_port:
        from runctl.operator import webhook

        webhook.configure(settings, host=OPTIONS.webhook_host, port=OPTIONS.webhook_port,
                          cert_dir=OPTIONS.webhook_cert_dir)
