"""The invariant checker: judges a load's history from outside the operator.

It is fed what a watcher saw (`Seen`: every StoryRun, StepRun, pod and Deployment of the load,
each time it changed, with the time it was seen) and what the API server's audit log recorded
(`chaos.audit`), and reports every violation of:

- terminal-final: no terminal StoryRun, StepRun or `stepStates` entry ever changes;
- complete: every terminal run has a terminal entry for every step (finally steps included);
- nothing-after-stop: no StepRun or workload (a batch attempt's pod, a Deployment) of a main
  step (nor of a finally step under `shutdown.finally: Skip`) is created after the run's
  `stop.observedAt`. The pods of a Deployment are Kubernetes' to make, not runctl's: they are
  judged by no-live-workload-after-end (docs/API.md, guarantee 4, says why);
- one-steprun-per-step and one-pod-per-attempt: never a second object for the same step, or
  the same batch attempt (runctl runs each batch attempt as one pod: it has no Jobs);
- not-stuck: every run is terminal within its own bound, or within a recovery allowance after
  the last fault, whichever is later;
- no-live-workload-after-end: no pod of a terminal run is live (Pending or Running, not being
  deleted), and none of its Deployments exists, longer than the grace period after it ended.
  Pods a ReplicaSet made after its Deployment was deleted (Kubernetes' Deployment controller
  acting on a stale view: docs/API.md, guarantee 8) are reported apart (`orphans`), not here;
- fenced: no operator replica writes while it does not hold the leader Lease (`chaos.audit`).

The records it reads have whole-second times (`stop.observedAt`); a create is counted after a
stop only when the audit log has it at least a second after the recorded instant, so the check
is as fine as the record and never finer.

Nothing here imports runctl: the checker must not share a mistake with what it checks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos import audit

RUN_TERMINAL = frozenset({"Succeeded", "Failed", "Canceled", "TimedOut"})
STEP_TERMINAL = RUN_TERMINAL | {"Lost", "Skipped"}
RUN_LABEL = "runctl.dev/storyrun"
STEP_LABEL = "runctl.dev/step"
ATTEMPT_LABEL = "runctl.dev/attempt"
FINAL_FIELDS = ("phase", "reason", "message", "finishedAt")
INVARIANTS = ("terminal-final", "complete", "nothing-after-stop", "one-steprun-per-step",
              "one-pod-per-attempt", "not-stuck", "no-live-workload-after-end", "fenced")


@dataclass(frozen=True)
class Seen:
    """One state of one object, as a watch (or a list) delivered it, at wall time `at`."""

    at: float
    kind: str  # StoryRun, StepRun, Pod or Deployment
    type: str  # ADDED, MODIFIED, DELETED, or LISTED (found by a fresh list)
    obj: Mapping[str, Any]

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid") or "")

    def label(self, key: str) -> str:
        return str((self.obj["metadata"].get("labels") or {}).get(key) or "")


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str


@dataclass
class Limits:
    """What the load promises about time: each run's own bound (seconds after it was first
    seen), the recovery allowance after the last fault ends, and the grace period after a run
    ends for its workloads to go."""

    bounds: Mapping[tuple[str, str], float] = field(default_factory=dict)
    default_bound: float = 300.0
    last_fault: float = 0.0
    allowance: float = 120.0
    grace: float = 30.0


def _final(state: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(state.get(k) for k in FINAL_FIELDS)


def _status(s: Seen) -> Mapping[str, Any]:
    return s.obj.get("status") or {}


def _by_uid(seen: Iterable[Seen], kind: str) -> dict[str, list[Seen]]:
    found: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        if s.kind == kind:
            found[s.uid].append(s)
    return found


class Checker:
    def __init__(self, seen: Iterable[Seen], writes: Iterable[audit.Write] = (),
                 lease: tuple[str, str] | None = None, limits: Limits | None = None) -> None:
        self.seen = sorted(seen, key=lambda s: s.at)
        self.writes = list(writes)
        self.lease = lease
        self.limits = limits or Limits()
        self.runs = _by_uid(self.seen, "StoryRun")

    def check(self, end: float) -> list[Violation]:
        """Every violation in the history up to `end` (wall time)."""
        found = [*self.terminal_final(), *self.complete(), *self.nothing_after_stop(),
                 *self.duplicates(), *self.stuck(end), *self.live_after_end(end)]
        if self.lease is not None:
            found += [Violation("fenced", f"{u.write.replica}: {u.write.verb} "
                                f"{u.write.resource}/{u.write.name}", u.why)
                      for u in audit.fencing(self.writes, *self.lease)]
        return found

    # -- the run's own record ----------------------------------------------------------------

    def terminal_final(self) -> list[Violation]:
        found = []
        for kind in ("StoryRun", "StepRun"):
            for history in _by_uid(self.seen, kind).values():
                first: tuple[Any, ...] | None = None
                entries: dict[str, tuple[Any, ...]] = {}
                subject = f"{kind} {history[0].namespace}/{history[0].name}"
                for s in history:
                    status = _status(s)
                    if first is not None and _final(status) != first and s.type != "DELETED":
                        found.append(Violation("terminal-final", subject,
                                               f"was {first}, then {_final(status)}"))
                        first = _final(status)
                    if first is None and status.get("phase") in (
                            RUN_TERMINAL if kind == "StoryRun" else STEP_TERMINAL):
                        first = _final(status)
                    for step, state in (status.get("stepStates") or {}).items():
                        was = entries.get(step)
                        if was is not None and _final(state) != was:
                            found.append(Violation("terminal-final", f"{subject} step {step}",
                                                   f"was {was}, then {_final(state)}"))
                            entries[step] = _final(state)
                        if was is None and state.get("phase") in STEP_TERMINAL:
                            entries[step] = _final(state)
        return found

    def complete(self) -> list[Violation]:
        found = []
        for history in self.runs.values():
            last = history[-1]
            status = _status(last)
            if status.get("phase") not in RUN_TERMINAL:
                continue
            spec = (status.get("resolved") or {}).get("spec") or last.obj.get("spec") or {}
            steps = [s["name"] for s in [*(spec.get("steps") or []), *(spec.get("finally") or [])]]
            states = status.get("stepStates") or {}
            missing = [s for s in steps if (states.get(s) or {}).get("phase") not in STEP_TERMINAL]
            if missing:
                found.append(Violation("complete", f"StoryRun {last.namespace}/{last.name}",
                                       f"{status['phase']} with steps not terminal: {missing}"))
        return found

    # -- what the operator created -------------------------------------------------------------

    def _run_specs(self) -> dict[tuple[str, str], Seen]:
        return {(h[-1].namespace, h[-1].name): h[-1] for h in self.runs.values()}

    def nothing_after_stop(self) -> list[Violation]:
        found = []
        runs = self._run_specs()
        created = self._creates()
        for (ns, name), last in runs.items():
            status = _status(last)
            observed = (status.get("stop") or {}).get("observedAt")
            if not observed:
                continue
            after = audit.parse_time(observed) + 1.0  # the record's whole second, then later
            spec = (status.get("resolved") or {}).get("spec") or last.obj.get("spec") or {}
            skip = ((last.obj.get("spec") or {}).get("shutdown") or {}).get("finally") == "Skip"
            finally_steps = {s["name"] for s in spec.get("finally") or []}
            for (kind, cns, step, obj), at in created.items():
                if cns != ns or obj[0] != name or at < after:
                    continue
                if step in finally_steps and not skip:
                    continue
                found.append(Violation("nothing-after-stop", f"StoryRun {ns}/{name}",
                                       f"{kind} {obj[1]} (step {step}) created "
                                       f"{at - after + 1.0:.1f}s after the stop's observedAt"))
        return found

    def _creates(self) -> dict[tuple[str, str, str, tuple[str, str]], float]:
        """(kind, namespace, step, (run, object name)) -> when the API server received its
        create (the audit log's time), for the StepRuns and workloads watched."""
        received = {(w.resource, w.namespace, w.name): w.received for w in self.writes
                    if w.verb == "create" and w.succeeded}
        plural = {"StepRun": "stepruns", "Pod": "pods", "Deployment": "deployments"}
        found = {}
        for s in self.seen:
            if s.kind not in plural or s.type == "DELETED" or not s.label(RUN_LABEL):
                continue
            if s.kind == "Pod" and not s.label(ATTEMPT_LABEL):
                continue  # a Deployment's pod, made by its ReplicaSet
            at = received.get((plural[s.kind], s.namespace, s.name))
            if at is not None:
                found[(s.kind, s.namespace, s.label(STEP_LABEL), (s.label(RUN_LABEL), s.name))] = at
        return found

    def duplicates(self) -> list[Violation]:
        found = []
        stepruns: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        pods: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
        for s in self.seen:
            run = s.label(RUN_LABEL)
            if not run:
                continue
            if s.kind == "StepRun":
                stepruns[(s.namespace, run, s.label(STEP_LABEL))].add(s.uid)
            elif s.kind == "Pod" and s.label(ATTEMPT_LABEL):
                pods[(s.namespace, run, s.label(STEP_LABEL), s.label(ATTEMPT_LABEL))].add(s.uid)
        for (ns, run, step), uids in stepruns.items():
            if len(uids) > 1:
                found.append(Violation("one-steprun-per-step", f"StoryRun {ns}/{run}",
                                       f"{len(uids)} StepRuns for step {step}"))
        for (ns, run, step, attempt), uids in pods.items():
            if len(uids) > 1:
                found.append(Violation("one-pod-per-attempt", f"StoryRun {ns}/{run}",
                                       f"{len(uids)} pods for step {step} attempt {attempt}"))
        return found

    # -- time ------------------------------------------------------------------------------------

    def ended(self) -> dict[tuple[str, str], float]:
        """When each run was first seen terminal."""
        found = {}
        for history in self.runs.values():
            for s in history:
                if _status(s).get("phase") in RUN_TERMINAL:
                    found[(s.namespace, s.name)] = s.at
                    break
        return found

    def stuck(self, end: float) -> list[Violation]:
        found = []
        ended = self.ended()
        lim = self.limits
        for history in self.runs.values():
            first = history[0]
            key = (first.namespace, first.name)
            deadline = max(first.at + lim.bounds.get(key, lim.default_bound),
                           lim.last_fault + lim.allowance)
            done = ended.get(key)
            if done is None and end > deadline:
                found.append(Violation("not-stuck", f"StoryRun {key[0]}/{key[1]}",
                                       f"not terminal {end - deadline:.0f}s past its bound, "
                                       f"phase {_status(history[-1]).get('phase')}"))
            elif done is not None and done > deadline:
                found.append(Violation("not-stuck", f"StoryRun {key[0]}/{key[1]}",
                                       f"terminal {done - deadline:.0f}s past its bound"))
        return found

    def live_after_end(self, end: float) -> list[Violation]:
        return [v for v, orphan in self._live_after_end(end) if not orphan]

    def orphans(self, end: float) -> list[Violation]:
        """Pods live after their run's grace period that a ReplicaSet made after the
        Deployment it belongs to was deleted: Kubernetes' own controllers acting on a stale view
        (docs/API.md, guarantee 8), counted apart from runctl's violations."""
        return [v for v, orphan in self._live_after_end(end) if orphan]

    def _live_after_end(self, end: float) -> list[tuple[Violation, bool]]:
        found = []
        ended = self.ended()
        by_object: dict[tuple[str, str], list[Seen]] = defaultdict(list)
        deployment_gone: dict[tuple[str, str, str], float] = {}
        for s in self.seen:
            if s.kind in ("Pod", "Deployment") and s.label(RUN_LABEL):
                by_object[(s.kind, s.uid)].append(s)
            if s.kind == "Deployment" and s.type == "DELETED":
                key = (s.namespace, s.label(RUN_LABEL), s.label(STEP_LABEL))
                deployment_gone.setdefault(key, s.at)
        for (kind, _), history in by_object.items():
            first = history[0]
            done = ended.get((first.namespace, first.label(RUN_LABEL)))
            if done is None:
                continue
            gone = deployment_gone.get((first.namespace, first.label(RUN_LABEL),
                                        first.label(STEP_LABEL)))
            orphan = (kind == "Pod" and not first.label(ATTEMPT_LABEL) and gone is not None
                      and first.at > gone)
            limit = done + self.limits.grace
            for s, nxt in zip(history, [*history[1:], None], strict=True):
                until = nxt.at if nxt is not None else end
                if _live(s) and until > limit:
                    found.append((Violation(
                        "no-live-workload-after-end",
                        f"StoryRun {s.namespace}/{s.label(RUN_LABEL)}",
                        f"{kind} {s.name} still live {until - done:.0f}s after the run ended"
                        + (" (made by a ReplicaSet after its Deployment was deleted)"
                           if orphan else "")), orphan))
                    break
        return found


def _live(s: Seen) -> bool:
    if s.type == "DELETED" or s.obj["metadata"].get("deletionTimestamp"):
        return False
    if s.kind == "Deployment":
        return True
    return _status(s).get("phase") in (None, "Pending", "Running")


def counts(violations: Iterable[Violation]) -> dict[str, int]:
    """Violations by invariant, every invariant named (0 where none)."""
    found = dict.fromkeys(INVARIANTS, 0)
    for v in violations:
        found[v.invariant] += 1
    return found


def dump(seen: Iterable[Seen]) -> str:
    """A history as JSON lines, for a failing run to be judged again."""
    return "".join(json.dumps({"at": s.at, "kind": s.kind, "type": s.type, "obj": s.obj}) + "\n"
                   for s in seen)
