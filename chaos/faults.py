"""Faults: a seeded plan of what to break and when, and how each one is done.

The plan (`plan`) depends on the seed alone: the same seed gives the same kinds, in the same
order, at the same offsets. Which object a deletion hits is chosen by the plan's own draw among
the candidates there are at that moment, so it depends on how far the load has got as well.

The load goes on while a fault is aimed: a pod listed Running may end before its delete arrives,
a leader may be gone before it is found. Such a fault found nothing; it is aimed again (a
deletion, up to `CHOICES` times) or recorded as having found nothing (`Done.hit`), and is never
the end of the run.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from chaos.world import World
from runctl.api.wire import ATTEMPT_LABEL, GROUP, STEP_RUNS, VERSION

KINDS = ("kill-leader", "kill-standby", "pause-leader", "apiserver-restart", "etcd-pause",
         "delete-steprun", "delete-pod", "delete-deployment")
RESTART_AFTER = 3.0
"""Seconds a killed replica stays down before it is started again."""
ETCD_PAUSE = 6.0
APISERVER_DOWN = 4.0
CANDIDATE_WAIT = 30.0
"""Seconds a deletion waits for something of its kind to delete."""
CHOICES = 3
"""Targets a deletion chooses in turn while each ends before its delete arrives."""
PAUSE_PAST_TAKEOVER = 2.0
"""Seconds a frozen leader stays frozen after the other replica took the Lease."""


@dataclass(frozen=True)
class Planned:
    at: float
    """Seconds after the load started."""
    kind: str
    draw: float
    """In [0, 1): which candidate a deletion hits."""


def plan(seed: int, count: int, span: float) -> list[Planned]:
    """`count` faults spread over `span` seconds: every kind at least once when `count` allows,
    the rest drawn at random."""
    rng = random.Random(seed)
    kinds = list(KINDS[:count]) + [rng.choice(KINDS) for _ in range(count - len(KINDS))]
    rng.shuffle(kinds)
    times = sorted(rng.uniform(0, span) for _ in kinds)
    return [Planned(round(t, 1), k, rng.random()) for t, k in zip(times, kinds, strict=True)]


@dataclass
class Done:
    kind: str
    started: float
    ended: float
    """Wall times (the API server's audit log and the records use the same clock)."""
    detail: str
    hit: bool = True
    """False: the fault found nothing to break (no target, or every one chosen ended first)."""
    extra: dict[str, Any] = field(default_factory=dict)


class FoundNothing(Exception):
    """The fault's target was not there (any more) when the fault came: the load moved on."""


class Injector:
    def __init__(self, world: World) -> None:
        self.world = world

    def inject(self, fault: Planned) -> Done:
        started = time.time()
        try:
            detail = getattr(self, "_" + fault.kind.replace("-", "_"))(fault.draw)
        except FoundNothing as nothing:
            return Done(fault.kind, started, time.time(), f"found nothing: {nothing}", hit=False)
        return Done(fault.kind, started, time.time(), detail)

    # -- the operator's replicas ---------------------------------------------------------------

    def _acting(self, want_leader: bool) -> Any:
        holder = ""
        deadline = time.monotonic() + 60
        while not holder and time.monotonic() < deadline:
            holder = self.world.holder()
            if not holder:
                time.sleep(0.5)
        leader = self.world.replica(holder)
        if want_leader:
            return leader
        return next((r for r in self.world.replicas if r is not leader), None)

    def _kill(self, want_leader: bool) -> str:
        target = self._acting(want_leader)
        if target is None:
            raise FoundNothing("no replica to kill")
        target.kill()
        time.sleep(RESTART_AFTER)
        target.start()
        return f"{target.identity} killed, started again {RESTART_AFTER:g}s later"

    def _kill_leader(self, _: float) -> str:
        return self._kill(True)

    def _kill_standby(self, _: float) -> str:
        return self._kill(False)

    def _pause_leader(self, _: float) -> str:
        leader = self._acting(True)
        if leader is None:
            raise FoundNothing("no leader to pause")
        leader.signal(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            deadline = frozen + 90
            while self.world.holder() in ("", leader.identity) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(PAUSE_PAST_TAKEOVER)
        finally:
            leader.signal(signal.SIGCONT)
        return f"{leader.identity} frozen {time.monotonic() - frozen:.1f}s"

    # -- the control plane ---------------------------------------------------------------------

    def _apiserver_restart(self, _: float) -> str:
        self.world.cluster.stop_apiserver()
        time.sleep(APISERVER_DOWN)
        began = time.monotonic()
        self.world.cluster.start_apiserver()
        return f"down {APISERVER_DOWN:g}s, then {time.monotonic() - began:.1f}s to serve again"

    def _etcd_pause(self, _: float) -> str:
        self.world.cluster.pause("etcd")
        try:
            time.sleep(ETCD_PAUSE)
        finally:
            self.world.cluster.resume("etcd")
        return f"etcd frozen {ETCD_PAUSE:g}s"

    # -- objects deleted by hand ---------------------------------------------------------------

    def _delete(self, kind: str, draw: float, live: Callable[[dict[str, Any]], bool]) -> str:
        """Delete the live object of `kind` the draw picks; one that ended between the list and
        the delete is a target no longer there: choose again among those live now."""
        deadline = time.monotonic() + CANDIDATE_WAIT
        ended: list[str] = []
        while len(ended) < CHOICES:
            candidates = self._candidates(kind, live, deadline, ended)
            name = candidates[int(draw * len(candidates))]
            try:
                self._delete_one(kind, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                ended.append(name)
                continue
            gone = f"; {', '.join(ended)} had ended meanwhile" if ended else ""
            return f"{kind} {name} deleted (1 of {len(candidates)}{gone})"
        raise FoundNothing(f"the {CHOICES} {kind}s chosen in turn ({', '.join(ended)}) had "
                           "ended before their delete")

    def _candidates(self, kind: str, live: Callable[[dict[str, Any]], bool], deadline: float,
                    ended: list[str]) -> list[str]:
        """The names of the live objects of `kind`, once there are any before `deadline`."""
        ns = self.world.namespace
        listed: dict[str, Callable[[], list[dict[str, Any]]]] = {
                  "StepRun": lambda: self.world.custom.list_namespaced_custom_object(
                      GROUP, VERSION, ns, STEP_RUNS)["items"],  # type: ignore[index]
                  "Pod": lambda: [p.to_dict() for p in self.world.core.list_namespaced_pod(
                      ns, label_selector=ATTEMPT_LABEL).items],
                  "Deployment": lambda: [d.to_dict() for d in
                                         self.world.apps.list_namespaced_deployment(ns).items]}
        while not (candidates := sorted(o["metadata"]["name"] for o in listed[kind]()
                                        if live(o))):
            if time.monotonic() > deadline:
                raise FoundNothing(f"no live {kind} to delete within {CANDIDATE_WAIT:g}s"
                                   + (f" ({', '.join(ended)} ended meanwhile)" if ended else ""))
            time.sleep(0.5)
        return candidates

    def _delete_one(self, kind: str, name: str) -> None:
        ns = self.world.namespace
        if kind == "StepRun":
            self.world.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, STEP_RUNS,
                                                              name)
        elif kind == "Pod":
            self.world.core.delete_namespaced_pod(name, ns)
        else:
            self.world.apps.delete_namespaced_deployment(name, ns)

    def _delete_steprun(self, draw: float) -> str:
        return self._delete("StepRun", draw, lambda o: (o.get("status") or {}).get("phase")
                            == "Running" and not o["metadata"].get("deletionTimestamp"))

    def _delete_pod(self, draw: float) -> str:
        return self._delete("Pod", draw, lambda o: (o.get("status") or {}).get("phase")
                            == "Running" and not o["metadata"].get("deletion_timestamp"))

    def _delete_deployment(self, draw: float) -> str:
        return self._delete("Deployment", draw,
                            lambda o: not o["metadata"].get("deletion_timestamp"))

