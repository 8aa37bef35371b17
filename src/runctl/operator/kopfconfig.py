"""How kopf is configured for runctl, deliberately.

kopf watches StoryRuns and their children and hands each event to an `@kopf.on.event` handler
that only updates runctl's cache and work queue. Everything kopf would do per event beyond that is
switched off or made free:

- no diff base and no handler progress are kept: with only on.event handlers kopf never reads
  them, yet its default storages deep-copy every body to build them (`NoDiffBase`, `NoProgress`);
- children are filtered by the run label on the API server, so unlabelled pods and
  Deployments are never sent at all (kopf's `labels=` filters would run after its per-event work);
- no limit on kopf's per-object workers: with a limit, a new object waits for an idle worker of
  another object to time out, which throttles a burst of new pods;
- no Kubernetes Events from log lines, and no "handler succeeded" line per event: runctl posts
  the Events a person wants to see, once per transition;
- no error line for a refusal of the admission webhook: refusing bad input is its job, and
  runctl logs each refusal at INFO itself.

The settings' names are those of kopf 1.45 (pinned in pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from runctl.operator import settings as operator_settings
from runctl.operator import webhook
from runctl.operator.watched import WATCHED

IDLE_SECONDS = 5.0
"""How long kopf keeps an object's worker task after its last event. With no worker limit this
throttles nothing; it only saves re-creating the task for an object that changes again soon."""


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled state: only change-detecting handlers would read it, and runctl
    registers none (a test makes sure)."""

    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """Keeps no handler progress: on.event handlers are called once per event and never
    retried, so there is nothing to resume."""

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        return None

    def store(self, *, key: kopf.HandlerId, record: kopf.ProgressRecord, body: kopf.Body,
              patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def configure(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False
    settings.networking.request_timeout = 60
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = IDLE_SECONDS
    for watched in WATCHED:
        if watched.label_selector:
            settings.watching.label_selectors[watched.group, watched.version,
                                              watched.plural] = watched.label_selector
    objects = logging.getLogger("kopf.objects")
    objects.setLevel(logging.WARNING)
    if not any(isinstance(f, webhook.RefusalsAreNotErrors) for f in objects.filters):
        objects.addFilter(webhook.RefusalsAreNotErrors())
    options = operator_settings.OPTIONS
    if options.webhook_port:
        webhook.configure(settings, host=options.webhook_host, port=options.webhook_port,
                          cert_dir=options.webhook_cert_dir)
