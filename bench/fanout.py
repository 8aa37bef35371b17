"""The fan-out cases: one run of many items (runctl's `forEach`, Argo's `withItems`, Tekton's
`matrix`), timed to the end, then the same run stopped mid-way.

What a fan-out costs is mostly what its one run object costs: every item's state may live in it
(Argo keeps a node per item in the Workflow), so each write of it grows with the items. The
watches here record its largest size as served (compact JSON, managed fields and all: what etcd
stores and what each watcher decodes), when it ended, when each item's own record ended, and when
the run's pods were gone. `Watched` only records what it is shown, stamped with the caller's
clock, so the figures are computed from sightings alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from kubernetes import watch
from urllib3.exceptions import ProtocolError

from bench.harness import Bench, Kind
from bench.report import Report
from bench.scenarios import MUTATING, percentile, running, writes_per_run
from bench.systems import Runctl, System, run_body, step

ITEMS, PARALLELISM, DURATION = 1000, 200, "1s"
"""The fan-out every system runs: 1,000 items of 1 s, 200 at once."""
WIDE_ITEMS, WIDE_PARALLELISM = 10_000, 500
"""runctl alone: the most items a run may have, 500 at once."""
STOP_DURATION = "10s"
"""An item of the stopped run lasts long enough that most of its pods are live at the stop."""
STOP_AFTER = PARALLELISM
"""The stop comes once this many items have ended: the first wave done, the next one running."""
STOPPERS = 32
"""Clients stopping single-step runs together: enough that all the stops land within a moment."""
STOP_WATCH_SECONDS = 60
"""How long a stop is watched for: its items' ends, the run's end and its pods' end."""
RUN_SECONDS = 900
"""The longest a timed fan-out may take before the case gives up on it."""


class FanOut(System, Protocol):
    """A system that can run one step over many items."""

    @property
    def item_kind(self) -> Kind | None:
        """Where an item's own record is: a child object of the run (runctl's StepRuns,
        Tekton's TaskRuns, found by `run_label`), or None: in the run itself (Argo's nodes)."""
        ...

    def fanout(self, name: str, items: int, parallelism: int,
               duration: str) -> dict[str, Any]: ...
    def phase(self, run: dict[str, Any]) -> str:
        """How the run stands, in the system's own words."""
        ...
    def items(self, obj: dict[str, Any]) -> dict[str, bool]:
        """The item records in an object of `item_kind` (or in the run, when that is None):
        each one's name and whether it has ended."""
        ...


def size(obj: dict[str, Any]) -> int:
    """An object's size as the API server serves it: compact JSON, in bytes."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass
class Watched:
    """What the watches saw of one fan-out run, each sighting stamped by the caller."""

    largest: int = 0
    ended_at: float | None = None
    phase: str = ""
    item_seen: dict[str, float] = field(default_factory=dict)
    item_ended: dict[str, float] = field(default_factory=dict)
    live_pods: set[str] = field(default_factory=set)
    pods_seen: dict[str, float] = field(default_factory=dict)
    pods_gone_at: float | None = None
    """When the last live pod went, if none has started since."""
    stop_at: float | None = None
    pods_at_stop: int = 0
    runs_ended: dict[str, float] = field(default_factory=dict)
    """When each run of the namespace was first seen terminal, by name."""

    def run(self, obj: dict[str, Any], ended: bool, phase: str, now: float) -> None:
        self.largest = max(self.largest, size(obj))
        self.phase = phase
        if ended and self.ended_at is None:
            self.ended_at = now
        if ended:
            self.runs_ended.setdefault(obj["metadata"]["name"], now)

    def item(self, name: str, ended: bool, now: float) -> None:
        self.item_seen.setdefault(name, now)
        if ended:
            self.item_ended.setdefault(name, now)

    def pod(self, name: str, live: bool, now: float) -> None:
        self.pods_seen.setdefault(name, now)
        if live:
            self.live_pods.add(name)
            self.pods_gone_at = None
        elif name in self.live_pods:
            self.live_pods.discard(name)
            if not self.live_pods:
                self.pods_gone_at = now

    def stopped(self, now: float) -> None:
        self.stop_at = now
        self.pods_at_stop = len(self.live_pods)


class Stop(NamedTuple):
    """A fan-out's stop, from what was watched: every time is seconds after the stop request."""

    live: int
    """Items whose record had not ended at the stop (or that started after it)."""
    to_terminal: list[float]
    """Each of those items' time to its record's end, for those that ended."""
    run_terminal: float | None
    pods_gone: float | None
    """Until no pod of the run was left live, or None if one still was."""
    pods_after: int
    """Pods that appeared after the stop."""


def stop_figures(w: Watched) -> Stop:
    assert w.stop_at is not None
    at = w.stop_at
    live = [k for k in w.item_seen if w.item_ended.get(k, at + 1) > at]
    return Stop(len(live), [w.item_ended[k] - at for k in live if k in w.item_ended],
                None if w.ended_at is None else w.ended_at - at,
                None if w.live_pods or w.pods_gone_at is None else max(0.0, w.pods_gone_at - at),
                sum(1 for t in w.pods_seen.values() if t > at))


class Watching:
    """Watches of one namespace's run, its items and its pods feeding a `Watched`, each in a
    thread, until `close`."""

    def __init__(self, b: Bench, system: FanOut, ns: str, pods: bool) -> None:
        self.w, self.lock, self.closed = Watched(), threading.Lock(), False
        self.watches: list[watch.Watch] = []
        kind = system.kind

        def on_run(ev: dict[str, Any], now: float) -> None:
            run = ev["object"]
            self.w.run(run, system.terminal(run), system.phase(run), now)
            if system.item_kind is None:
                for name, ended in system.items(run).items():
                    self.w.item(name, ended, now)

        def on_item(ev: dict[str, Any], now: float) -> None:
            for name, ended in system.items(ev["object"]).items():
                self.w.item(name, ended, now)

        def on_pod(ev: dict[str, Any], now: float) -> None:
            pod = ev["object"]
            phase = (pod.get("status") or {}).get("phase")
            self.w.pod(pod["metadata"]["name"],
                       ev["type"] != "DELETED" and phase not in ("Succeeded", "Failed"), now)

        feeds: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any],
                          Callable[[dict[str, Any], float], None]]] = [
            (b.custom.list_namespaced_custom_object,
             (kind.group, kind.version, ns, kind.plural), {}, on_run)]
        if system.item_kind is not None:
            ik = system.item_kind
            feeds.append((b.custom.list_namespaced_custom_object,
                          (ik.group, ik.version, ns, ik.plural),
                          {"label_selector": system.run_label}, on_item))
        if pods:
            feeds.append((b.core.list_namespaced_pod, (ns,),
                          {"label_selector": system.run_label}, on_pod))
        self.threads = [threading.Thread(target=self._follow, args=feed, daemon=True)
                        for feed in feeds]
        for t in self.threads:
            t.start()

    def _follow(self, list_call: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any],
                seen: Callable[[dict[str, Any], float], None]) -> None:
        """Feed one watch's events to `seen` until closed. The API server may cut a watch
        whose reader falls behind (a Workflow of 1,000 nodes is half a megabyte an event): it is
        resumed from the last version seen, or listed again if that version is gone."""
        version: str | None = None
        while not self.closed:
            w = watch.Watch()
            self.watches.append(w)
            since = {"resource_version": version} if version else {}
            events: Iterator[dict[str, Any]] = w.stream(
                list_call, *args, deserialize=False, timeout_seconds=RUN_SECONDS,
                **since, **kwargs)
            try:
                for ev in events:
                    with self.lock:
                        if self.closed:
                            return
                        seen(ev, time.monotonic())
                    version = ev["object"]["metadata"]["resourceVersion"]
            except ProtocolError:
                if not self.closed:
                    print(f"[bench] a watch in {args[-1]} was cut; resumed", flush=True)
            except KeyError:  # an ERROR event, undecoded: its version is gone (410)
                print(f"[bench] a watch in {args[-1]} lost its place; listed again", flush=True)
                version = None

    def read(self, what: Callable[[Watched], Any]) -> Any:
        with self.lock:
            return what(self.w)

    def close(self) -> Watched:
        """What was seen until now: a watch ends at its next event, which is not recorded."""
        with self.lock:
            self.closed = True
        for w in self.watches:
            w.stop()
        return self.w


def timed(b: Bench, out: Report, system: FanOut, label: str, items: int, parallelism: int,
          ns: str) -> Watched:
    """One run of `items` items of DURATION, created and watched to its end: wall time, every
    client's writes, the controller's and every process's CPU per item."""
    watching = Watching(b, system, ns, pods=False)
    time.sleep(1)  # the watches have listed the empty namespace
    before_api, before_cpu = b.apiserver_requests(), system.cpu_seconds()
    before_plane = b.control_plane_cpu()
    began = time.monotonic()
    b.create_runs(ns, [system.fanout("fan", items, parallelism, DURATION)], system.kind)
    b.wait(f"a run of {items} items to end",
           lambda: watching.read(lambda w: w.ended_at is not None), timeout=RUN_SECONDS)
    time.sleep(5)  # the upkeep after the end (finalizers let go) belongs to the run too
    w = watching.close()
    after = b.apiserver_requests()
    cpu = (system.cpu_seconds() - before_cpu) / items
    plane = {k: (v - before_plane[k]) / items for k, v in b.control_plane_cpu().items()}
    assert w.ended_at is not None
    out.record(f"{label}: wall time, create to terminal", w.ended_at - began, "s",
               note=f"ended {w.phase}")
    out.record(f"{label}: writes per item by every client (API server's count)",
               writes_per_run(before_api, after, items), "", note=write_parts(
                   before_api, after, items))
    out.record(f"{label}: controller CPU per item", cpu, "s")
    parts = ", ".join(f"{k} {1000 * v:.1f}" for k, v in plane.items())
    out.record(f"{label}: CPU per item, every process", cpu + sum(plane.values()), "s",
               note=f"ms: controller {1000 * cpu:.1f}, {parts}")
    return w


def write_parts(before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]],
                items: int) -> str:
    """Where the writes per item go, by verb and resource, largest first."""
    parts = {f"{verb} {resource}{'/' + sub if sub else ''}": (after[k] - before[k]) / items
             for k in after if k[0] in MUTATING for verb, resource, sub in [k]}
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda p: -p[1])
                     if v >= 0.01)


def stopped(b: Bench, out: Report, system: FanOut, label: str, ns: str) -> Watched:
    """The same fan-out with longer items, stopped once STOP_AFTER items have ended: its items'
    records, the run and its pods watched to their end."""
    watching = Watching(b, system, ns, pods=True)
    time.sleep(1)
    b.create_runs(ns, [system.fanout("fan", ITEMS, PARALLELISM, STOP_DURATION)], system.kind)
    b.wait(f"{STOP_AFTER} items ended",
           lambda: watching.read(lambda w: len(w.item_ended) >= STOP_AFTER),
           timeout=RUN_SECONDS)
    with watching.lock:
        watching.w.stopped(time.monotonic())
    b.custom.patch_namespaced_custom_object(system.kind.group, system.kind.version, ns,
                                            system.kind.plural, "fan", system.stop_patch)

    def over(w: Watched) -> bool:
        return (w.ended_at is not None and w.pods_gone_at is not None and not w.live_pods
                and len(w.item_ended) == len(w.item_seen))

    deadline = time.monotonic() + STOP_WATCH_SECONDS
    while not watching.read(over) and time.monotonic() < deadline:
        time.sleep(0.2)
    w = watching.close()
    s = stop_figures(w)
    left = s.live - len(s.to_terminal)
    out.record(f"{label}: stop mid-way, items live at the stop", float(s.live), "",
               note=f"{len(w.item_ended)} of {len(w.item_seen)} item records ended by the end; "
               f"{w.pods_at_stop} pods live at the stop")
    for p in (50, 99):
        out.record(f"{label}: stop mid-way, items to terminal, p{p}",
                   percentile(s.to_terminal, p), "s",
                   note=f"{left} not terminal after {STOP_WATCH_SECONDS} s" if left else "")
    out.record(f"{label}: stop mid-way, run to terminal", nan_if_none(s.run_terminal), "s",
               note=f"ended {w.phase}" if s.run_terminal is not None
               else f"not terminal after {STOP_WATCH_SECONDS} s")
    out.record(f"{label}: stop mid-way, until pods gone", nan_if_none(s.pods_gone), "s",
               note=f"{len(w.live_pods)} pods live after {STOP_WATCH_SECONDS} s"
               if s.pods_gone is None else "")
    out.record(f"{label}: stop mid-way, pods created after the stop", float(s.pods_after), "")
    return w


def stopped_singly(b: Bench, out: Report, label: str, ns: str, count: int) -> None:
    """The same work as a fan-out's stop, as single steps: `count` runs of one step each (as
    many as a fan-out stopped mid-way has items live), all stopped at the same instant. Each
    time is from the first stop request, as a fan-out's one request starts its items' stop."""
    system = Runctl(b)
    bodies = [run_body(f"r{i}", [step("long", duration="600s")]) for i in range(count)]
    watching = Watching(b, system, ns, pods=True)
    b.create_runs(ns, bodies, system.kind)
    b.wait(f"{count} runs running", lambda: running(b, system, ns, count),
           timeout=60 + 3 * count)
    time.sleep(1)
    with watching.lock:
        watching.w.stopped(time.monotonic())
    with ThreadPoolExecutor(STOPPERS) as pool:
        list(pool.map(lambda body: b.custom.patch_namespaced_custom_object(
            system.kind.group, system.kind.version, ns, system.kind.plural,
            body["metadata"]["name"], system.stop_patch), bodies))
    deadline = time.monotonic() + STOP_WATCH_SECONDS
    while not watching.read(lambda w: len(w.runs_ended) == count and not w.live_pods
                            and w.pods_gone_at is not None) and time.monotonic() < deadline:
        time.sleep(0.2)
    w = watching.close()
    assert w.stop_at is not None
    ends = [t - w.stop_at for t in w.runs_ended.values()]
    for p in (50, 99):
        out.record(f"{label}: {count} single-step runs stopped at once, to terminal, p{p}",
                   percentile(ends, p), "s", note=f"{count - len(ends)} not terminal after "
                   f"{STOP_WATCH_SECONDS} s" if len(ends) < count else "")
    gone = None if w.live_pods or w.pods_gone_at is None else w.pods_gone_at - w.stop_at
    out.record(f"{label}: {count} single-step runs stopped at once, until pods gone",
               nan_if_none(gone), "s")


def nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def case(b: Bench, out: Report, system: FanOut) -> None:
    """The fan-out of ITEMS items on one system: timed, then stopped mid-way."""
    label = f"{system.label}: fan-out, {ITEMS} items, parallelism {PARALLELISM}"
    ns = b.namespace(f"fanout-{slug(system.label)}")
    largest = timed(b, out, system, label, ITEMS, PARALLELISM, ns).largest
    b.drop_namespace(ns)
    ns = b.namespace(f"fanout-stop-{slug(system.label)}")
    largest = max(largest, stopped(b, out, system, label, ns).largest)
    b.drop_namespace(ns)
    out.record(f"{label}: the run object's largest size", largest / 1024, "KiB")
    if isinstance(system, Runctl):
        ns = b.namespace("fanout-stop-singly")
        stopped_singly(b, out, system.label, ns, PARALLELISM)
        b.drop_namespace(ns)


def wide(b: Bench, out: Report, system: FanOut) -> None:
    """runctl alone at its limit: WIDE_ITEMS items at WIDE_PARALLELISM, on a fresh operator so
    its peak RSS is this run's."""
    label = f"{system.label}: fan-out, {WIDE_ITEMS} items, parallelism {WIDE_PARALLELISM}"
    ns = b.namespace("fanout-wide")
    before = b.reconciles()
    w = timed(b, out, system, label, WIDE_ITEMS, WIDE_PARALLELISM, ns)
    count, seconds = (a - z for a, z in zip(b.reconciles(), before, strict=True))
    peak = b.peak_rss_mb()
    out.record(f"{label}: operator peak RSS", peak, "MB", "< 500 MB", peak < 500)
    out.record(f"{label}: the StoryRun's largest size", w.largest / 1024, "KiB", "< 256 KiB",
               w.largest < 256 * 1024)
    out.record(f"{label}: mean reconcile time (observe, decide, apply)",
               1000 * seconds / count if count else float("nan"), "ms",
               note=f"{count:.0f} reconciles")
    b.drop_namespace(ns)


def slug(label: str) -> str:
    """A namespace name's part from a system's label: its first word."""
    return label.split()[0].rstrip(",").lower()
