"""One chaos run: the load created over a span of time while the planned faults are injected,
every object of the load watched from before the first run, then judged by the checker.

Three threads share the work: the main one creates the runs on schedule and acts on them (a
stop, the hub's end of a session) when they are due, one injects the faults in order, and the
recorder watches. Every call the harness makes is retried until the API server answers, since
it too is cut off by the faults it injects.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from chaos import audit, faults, load
from chaos.checker import RUN_LABEL, RUN_TERMINAL, Checker, Limits, Seen, Violation, dump
from chaos.watch import Recorder
from chaos.world import LEASE, World
from runctl.api.wire import GROUP, STORIES, STORY_RUNS, VERSION

T = TypeVar("T")
ALLOWANCE = 120.0
"""Seconds after the last fault by which every run must be terminal, whatever its own bound."""
GRACE = 30.0
"""Seconds after a run ends by which none of its workloads may be live."""


@dataclass
class Outcome:
    seed: int
    runs: list[load.LoadRun]
    planned: list[faults.Planned]
    done: list[faults.Done]
    violations: list[Violation]
    phases: dict[str, str]
    recovery: dict[str, float]
    seconds: float
    watch_breaks: int
    orphans: list[Violation] = field(default_factory=list)
    """Pods a ReplicaSet made after its Deployment was deleted, live past the grace period:
    Kubernetes' controllers on a stale view, counted apart (`Checker.orphans`)."""


def retry(what: str, fn: Callable[[], T], timeout: float = 300) -> T:
    """Call `fn` until the API server answers (a 409 on create counts as done: it exists)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except ApiException as exc:
            if exc.status == 409:
                return None  # type: ignore[return-value]
            if exc.status and exc.status < 500 and exc.status != 429:
                raise RuntimeError(f"{what}: {exc.status} {exc.reason}: {exc.body}") from exc
            error: Exception = exc
        except Exception as exc:  # connection refused, timeouts: the API server is away
            error = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no answer for {timeout:g}s ({error})")
        time.sleep(0.5)


class Chaos:
    def __init__(self, world: World, runs: list[load.LoadRun], planned: list[faults.Planned],
                 span: float, log: Callable[[str], None] = print) -> None:
        self.world = world
        self.runs = runs
        self.planned = planned
        self.span = span
        self.log = log
        self.done: list[faults.Done] = []
        self.created: dict[str, float] = {}
        self.failed: list[BaseException] = []

    def run(self, seed: int) -> Outcome:
        began = time.time()
        w = self.world
        recorder = Recorder(w.api, w.namespace)
        recorder.start()
        w.start_replicas()
        retry("create the Story", lambda: w.custom.create_namespaced_custom_object(
            GROUP, VERSION, w.namespace, STORIES, load.story()))
        injector = threading.Thread(target=self._inject, name="chaos-faults", daemon=True)
        start = time.monotonic()
        injector.start()
        self._drive(start)
        injector.join()
        if self.failed:
            raise RuntimeError(f"a fault could not be injected: {self.failed[0]}")
        last_fault = max((d.ended for d in self.done), default=began)
        limits = Limits(bounds={(w.namespace, r.name): r.bound for r in self.runs},
                        last_fault=last_fault, allowance=ALLOWANCE, grace=GRACE)
        self._settle(recorder, limits)
        recorder.stop()
        seen = recorder.snapshot()
        writes = audit.read(w.cluster.audit_log)
        checker = Checker(seen, writes, lease=(w.namespace, LEASE), limits=limits)
        end = time.time()
        violations = checker.check(end)
        (w.cluster.logs / "chaos-history.jsonl").write_text(dump(seen))
        phases = {}
        for s in seen:
            if s.kind == "StoryRun":
                phases[s.name] = (s.obj.get("status") or {}).get("phase") or "New"
        return Outcome(seed, self.runs, self.planned, self.done, violations, phases,
                       recovery(seen, self.done), end - began, recorder.breaks,
                       checker.orphans(end))

    # -- the load --------------------------------------------------------------------------------

    def _drive(self, start: float) -> None:
        """Create each run at its time, and act on it once it is due."""
        gap = self.span / max(len(self.runs), 1)
        pending_acts: list[load.LoadRun] = []
        for i, r in enumerate(self.runs):
            while time.monotonic() < start + i * gap:
                pending_acts = self._act(pending_acts)
                time.sleep(0.2)
            retry(f"create {r.name}", functools.partial(
                self.world.custom.create_namespaced_custom_object, GROUP, VERSION,
                self.world.namespace, STORY_RUNS, r.body))
            self.created[r.name] = time.monotonic()
            if r.act:
                pending_acts.append(r)
        while pending_acts:
            pending_acts = self._act(pending_acts)
            time.sleep(0.2)

    def _act(self, pending: list[load.LoadRun]) -> list[load.LoadRun]:
        left = []
        for r in pending:
            if time.monotonic() < self.created[r.name] + r.act_after:
                left.append(r)
            elif r.act == "stop":
                retry(f"stop {r.name}", functools.partial(
                    self.world.custom.patch_namespaced_custom_object, GROUP, VERSION,
                    self.world.namespace, STORY_RUNS, r.name,
                    {"spec": {"cancelRequested": True}}))
            else:
                self._hub_ends(r.name)
        return left

    def _hub_ends(self, name: str) -> None:
        """What a media hub does when a session ends: the run's TopologyTerminated condition."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = {"type": "TopologyTerminated", "status": "True", "reason": "SessionEnded",
                     "message": "the room was closed", "lastTransitionTime": now}
        w = self.world

        def patch() -> None:
            run: Any = w.custom.get_namespaced_custom_object(
                GROUP, VERSION, w.namespace, STORY_RUNS, name)
            kept = [c for c in (run.get("status") or {}).get("conditions") or []
                    if c["type"] != "TopologyTerminated"]
            w.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, w.namespace, STORY_RUNS, name,
                {"metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
                 "status": {"conditions": [*kept, condition]}})
        retry(f"end the session of {name}", patch)

    # -- the faults ------------------------------------------------------------------------------

    def _inject(self) -> None:
        injector = faults.Injector(self.world)
        start = time.monotonic()
        try:
            for fault in self.planned:
                while time.monotonic() < start + fault.at:
                    time.sleep(0.2)
                done = injector.inject(fault)
                self.done.append(done)
                self.log(f"[chaos] {fault.at:6.1f}s {done.kind}: {done.detail}")
        except BaseException as exc:
            self.failed.append(exc)

    # -- the end ---------------------------------------------------------------------------------

    def _settle(self, recorder: Recorder, limits: Limits) -> None:
        """Wait until every run is terminal (or past its bound) and the grace period after the
        last of them has passed, so the checker sees the workloads go."""
        def state() -> tuple[int, float]:
            phases: dict[str, str] = {}
            for s in recorder.snapshot():
                if s.kind == "StoryRun":
                    phases[s.name] = (s.obj.get("status") or {}).get("phase") or ""
            return sum(p in RUN_TERMINAL for p in phases.values()), time.time()

        latest = max(limits.last_fault + limits.allowance,
                     time.time() + max((r.bound for r in self.runs), default=0))
        while True:
            terminal, now = state()
            if terminal >= len(self.runs) or now > latest:
                break
            time.sleep(1)
        time.sleep(limits.grace + 5)


def recovery(seen: list[Seen], done: list[faults.Done]) -> dict[str, float]:
    """For each fault kind, the longest time from a fault's start to the next change seen of a
    run that was in flight when it started (the run itself or one of its StepRuns or
    workloads). An upper bound: a run with nothing to do counts until its next change."""
    changes: dict[str, list[float]] = defaultdict(list)
    terminal_at: dict[str, float] = {}
    for s in seen:
        run = s.name if s.kind == "StoryRun" else s.label(RUN_LABEL)
        if not run:
            continue
        changes[run].append(s.at)
        if (s.kind == "StoryRun" and run not in terminal_at
                and (s.obj.get("status") or {}).get("phase") in RUN_TERMINAL):
            terminal_at[run] = s.at
    longest: dict[str, float] = {}
    for d in done:
        for run, times in changes.items():
            if times[0] > d.started or terminal_at.get(run, float("inf")) <= d.started:
                continue
            after = next((t for t in times if t > d.ended), None)
            if after is not None:
                longest[d.kind] = max(longest.get(d.kind, 0.0), after - d.started)
    return {k: round(v, 1) for k, v in longest.items()}

