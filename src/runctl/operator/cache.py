"""What the operator has observed of runs and their children, kept from watch events.

A reconcile reads the cache instead of listing, so it costs no API calls. The cache also remembers
deletions it saw (tombstones): "deleted" must be a fact observed (a watch's DELETED event, or an
object missing from a fresh list taken after its cached copy), never inferred from absence from
the cache, because watch streams of different kinds lag each other (a pod created a moment ago may
simply not have arrived yet).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from runctl.api.wire import RUN_LABEL, STEPRUN_UID_LABEL
from runctl.operator.memo import Bounded
from runctl.timefmt import fmt_time

TOMBSTONE_TTL = 3600.0

Body = Mapping[str, Any]
RunKey = tuple[str, str]  # (namespace, storyrun name)


@dataclass
class _Kind:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    by_run: dict[RunKey, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    tombstones: OrderedDict[tuple[str, str], tuple[float, frozenset[str]]] = field(
        default_factory=OrderedDict)
    """Deleted object -> (when the deletion was seen, the uids of its owners, and of the StepRun
    its label names), oldest first: expiring looks at the expired ones only, however many are
    kept (an hour of deletions is hundreds of thousands at a few hundred runs a minute). An
    OrderedDict, because a plain dict's first key is found by skipping the holes that deleting
    from its front leaves."""


class Refusal(NamedTuple):
    """A child's create the API server refused as invalid (`ObjectCache.refuse`)."""

    name: str
    key: str
    """The core's key of what the child was made for (`wire.key_of`: a step, or an item);
    empty for a workload."""
    message: str


RefusalId = tuple[str, str, str, str]  # (kind, namespace, name, owner uid)


def run_key_of(body: Body) -> RunKey | None:
    """The run a child belongs to, from its label."""
    meta = body.get("metadata", {})
    run = (meta.get("labels") or {}).get(RUN_LABEL)
    return (meta.get("namespace", ""), run) if run else None


class ObjectCache:
    """Runs, and their children (StepRun, Deployment, Pod) by kind, grouped by run."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = defaultdict(_Kind)
        self.runs: dict[RunKey, dict[str, Any]] = {}
        self.deleted_runs: set[RunKey] = set()
        self._refusals: Bounded[RefusalId, Refusal] = Bounded(forgotten=self._unindex)
        self._refused_of: dict[tuple[str, str, str], dict[str, Refusal]] = {}
        """(kind, namespace, owner uid) -> the refused children of that owner, by name: the
        same refusals as `_refusals`, forgotten with them."""

    # -- creates the API server refused ------------------------------------------------------

    def refuse(self, kind: str, namespace: str, name: str, owner: str, message: str,
               key: str = "") -> None:
        """The API server refused to create this child of `owner` as invalid: sending the same
        create again cannot succeed, so it is observed as a failure. `key`: what a StepRun
        was made for (a step, or an item). (A forbidden create is not remembered here: it may
        be allowed later, and is tried again.)"""
        refusal = Refusal(name, key, message)
        self._refused_of.setdefault((kind, namespace, owner), {})[name] = refusal
        self._refusals[(kind, namespace, name, owner)] = refusal  # may forget the oldest, both

    def refusal(self, kind: str, namespace: str, name: str, owner: str | None) -> str | None:
        """Why the create of this child of `owner` was refused, if it was."""
        refusal = self._refusals.get((kind, namespace, name, owner or ""))
        return refusal.message if refusal is not None else None

    def refused(self, kind: str, namespace: str, owner: str | None) -> list[Refusal]:
        """Every remembered refusal of a create of a child of `owner`, in the order they came:
        a lookup, however many children `owner` has (a wide fan-out's run has thousands)."""
        return list(self._refused_of.get((kind, namespace, owner or ""), {}).values())

    def _unindex(self, ident: RefusalId, refusal: Refusal) -> None:
        kind, namespace, name, owner = ident
        of = self._refused_of.get((kind, namespace, owner))
        if of is not None:
            of.pop(name, None)
            if not of:
                del self._refused_of[(kind, namespace, owner)]

    # -- runs --------------------------------------------------------------------------------

    def run_of(self, body: Body) -> Body | None:
        """The cached copy of the run `body` is a copy of, if any."""
        return self.runs.get(_run_key(body))

    def put_run(self, body: dict[str, Any]) -> RunKey:
        """Store a run (the dict itself, not a copy), unless the cache holds a newer copy."""
        key = _run_key(body)
        if not _older(body, self.runs.get(key)):
            self.runs[key] = body
        self.deleted_runs.discard(key)
        return key

    def drop_run(self, body: Body) -> RunKey:
        key = _run_key(body)
        self.runs.pop(key, None)
        self.deleted_runs.add(key)
        return key

    # -- children ----------------------------------------------------------------------------

    def put(self, kind: str, body: dict[str, Any]) -> RunKey | None:
        """Store a child (the dict itself, slimmed), unless the cache holds a newer copy: a
        write's response may reach the cache before the watch event of an earlier change."""
        run = run_key_of(body)
        meta = body["metadata"]
        ident = (meta.get("namespace", ""), meta["name"])
        store = self._kinds[kind]
        if _older(body, store.objects.get(ident)):
            return run
        store.objects[ident] = slim(kind, body)
        store.tombstones.pop(ident, None)
        if run:
            store.by_run[run].add(ident)
        return run

    def drop(self, kind: str, body: Body) -> RunKey | None:
        run = run_key_of(body)
        meta = body["metadata"]
        ident = (meta.get("namespace", ""), meta["name"])
        store = self._kinds[kind]
        store.objects.pop(ident, None)
        owners = frozenset(o.get("uid", "") for o in meta.get("ownerReferences") or ()) | {
            (meta.get("labels") or {}).get(STEPRUN_UID_LABEL, "")}
        store.tombstones[ident] = (time.monotonic(), owners)
        store.tombstones.move_to_end(ident)  # the order stays that of the deletions seen
        if run:
            store.by_run[run].discard(ident)
            if not store.by_run[run]:
                del store.by_run[run]
        self._expire(store)
        return run

    def mark_deleting(self, kind: str, body: Body, now: dt.datetime) -> None:
        """A deletion this process asked for: the cached copy shows it under way until the
        watch brings the object's real state."""
        meta = body["metadata"]
        current = self._kinds[kind].objects.get((meta.get("namespace", ""), meta["name"]))
        if current is not None and not current["metadata"].get("deletionTimestamp"):
            current["metadata"]["deletionTimestamp"] = fmt_time(now)

    def children(self, kind: str, run: RunKey) -> list[dict[str, Any]]:
        store = self._kinds[kind]
        return [store.objects[i] for i in sorted(store.by_run.get(run, ())) if i in store.objects]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._kinds[kind].objects.get((namespace, name))

    def was_deleted(self, kind: str, namespace: str, name: str, owner: str | None = None) -> bool:
        """True when a deletion of this object was observed (and it has not come back); with
        `owner`, only if the deleted object belonged to that owner uid."""
        tombstone = self._kinds[kind].tombstones.get((namespace, name))
        return tombstone is not None and (owner is None or owner in tombstone[1])

    def sync(self, kind: str, listed: list[dict[str, Any]], list_rv: int,
             namespace: str | None = None) -> int:
        """Correct the cache from a fresh list (of one namespace, or of all) taken at
        resourceVersion `list_rv`; returns how many objects changed. An object the list lacks
        was deleted only if the cache's copy is no newer than the list (else it was created
        after the list was taken)."""
        fresh = {(b["metadata"].get("namespace", ""), b["metadata"]["name"]): b for b in listed}
        held = self.runs if kind == "StoryRun" else self._kinds[kind].objects
        changed = 0
        for ident, body in fresh.items():
            current = held.get(ident)
            if current is None or resource_version(body) > resource_version(current):
                if kind == "StoryRun":
                    self.put_run(body)
                else:
                    self.put(kind, body)
                changed += 1
        for ident, current in list(held.items()):
            if namespace is not None and ident[0] != namespace:
                continue
            if ident not in fresh and resource_version(current) <= list_rv:
                if kind == "StoryRun":
                    self.drop_run(current)
                else:
                    self.drop(kind, current)
                changed += 1
        return changed

    def count(self, kind: str) -> int:
        return len(self._kinds[kind].objects)

    @staticmethod
    def _expire(store: _Kind) -> None:
        cutoff = time.monotonic() - TOMBSTONE_TTL
        tombstones = store.tombstones
        while tombstones:
            oldest = next(iter(tombstones))
            if tombstones[oldest][0] >= cutoff:
                return
            tombstones.popitem(last=False)


def _run_key(run: Body) -> RunKey:
    meta = run["metadata"]
    return meta["namespace"], meta["name"]


def resource_version(obj: Body | None) -> int:
    """An object's resourceVersion as a number, to tell the newer of two copies (0 if none)."""
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def owned_by(obj: Body, uid: str | None) -> bool:
    """Does `obj` name the object with this uid among its owners?"""
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or ())


def _older(body: Body, held: Body | None) -> bool:
    """Is `body` an older copy than the one held? (resourceVersions of one kind only grow.)"""
    return held is not None and resource_version(body) < resource_version(held)


def slim(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Drop, in place, what no reconcile reads of a child kind (on pods, most of the object:
    the cache holds thousands); returns the body."""
    body.get("metadata", {}).pop("managedFields", None)
    if kind == "Pod":
        body.pop("spec", None)
        (body.get("status") or {}).pop("conditions", None)
    elif kind == "Deployment":
        (body.get("spec") or {}).pop("template", None)
    return body
