"""A small simulated cluster for property tests: StepRuns and workloads that the core's actions
create, stop and delete, and that random events move (pods run, succeed, fail, get deleted,
report late). It plays the API server too: a write that changes a terminal status is refused and
recorded as a violation, as the CRD rules would refuse it; and it can fail as one does: away for
a while (no write lands), creates refused while the run's status write lands, or the run's
status write lost after its children's writes landed (a crash between them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision, decide
from runctl.machine.naming import parse_key, step_run_name
from runctl.machine.phases import (
    RUN_TERMINAL,
    STEP_TERMINAL,
    FailureClass,
    FinallyPolicy,
    Mode,
    Reason,
    StepPhase,
)
from tests.unit.builders import RUN, T0

W = m.WorkloadState
LIVE = (W.PENDING, W.RUNNING)


@dataclass
class Workload:
    state: m.WorkloadState = W.PENDING
    exit_code: int | None = None
    reason: str | None = None
    hint: FailureClass | None = None
    outputs: m.Outputs = ()
    live_pods: int = 1
    stopping: bool = False
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    """When it failed, as its pod's container says: no retry may start sooner than its delay
    after it."""


@dataclass
class StepRun:
    name: str
    created_at: dt.datetime
    status: m.StepRunStatus | None = None
    finalizer: bool = True
    deleting: bool = False
    gone: bool = False
    workloads: dict[int, Workload] = field(default_factory=dict)


@dataclass
class World:
    spec: m.RunSpec
    now: dt.datetime = T0
    status: m.RunStatus = field(default_factory=m.RunStatus)
    runs: dict[str, StepRun] = field(default_factory=dict)
    topology_terminated: bool = False
    cancel_at: dt.datetime | None = None
    emitted: list[act.EmitEvent] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    last: Decision | None = None
    outage: int = 0
    """Decisions still to be applied while the API server is away: none of their writes lands."""
    lost_creates: int = 0
    """Decisions still to be applied whose creates fail while their other writes land."""
    lost_status: int = 0
    """Decisions still to be applied whose children's writes land but not the run's status."""
    reused: tuple[tuple[str, m.Reuse], ...] = ()
    """A re-run: the steps its record says it reuses."""

    # -- what the shell would observe ----------------------------------------------------

    def all_steps(self) -> tuple[m.StepSpec, ...]:
        return (*self.spec.steps, *self.spec.finally_steps)

    def batch(self, step: str) -> bool:
        """Does the step (or item) run as a batch step (every step of a batch run, and finally
        steps)?"""
        return self.spec.mode is Mode.BATCH or parse_key(step)[0] in {
            s.name for s in self.spec.finally_steps}

    def current(self, sr: StepRun, step: str) -> tuple[int, Workload | None]:
        n = max(1, sr.status.attempts if sr.status else 1)
        if not self.batch(step):
            n = 1
        return n, sr.workloads.get(n)

    def read_fan_outs(self) -> set[str]:
        """Fan-out steps recorded Succeeded that a step not ended reads: the shell tells the
        core of their items' StepRuns seen deleted (no other item's)."""
        states = dict(self.status.step_states)
        going = [s for s in self.all_steps()
                 if s.name not in states or states[s.name].phase not in STEP_TERMINAL]
        return {p for s in going for p, _ in s.consumes
                if p in states and states[p].items is not None
                and states[p].phase is StepPhase.SUCCEEDED}

    def observe(self) -> m.Observed:
        runs: dict[str, m.StepRunObservation] = {}
        read = self.read_fan_outs()
        for step, sr in self.runs.items():
            if sr.gone:
                recorded = m.step_state(self.status, step)
                owner, index = parse_key(step)
                if (recorded is not None and recorded.step_run) or (
                        index is not None and owner in read):
                    runs[step] = m.StepRunObservation(sr.name, None, True, True, None)
                continue
            n, w = self.current(sr, step)
            attempt = (m.AttemptObservation(n, W.ABSENT) if w is None else m.AttemptObservation(
                n, w.state, w.exit_code, w.reason, None, w.outputs, w.hint, w.live_pods,
                w.started_at, w.finished_at, w.stopping, *self.checked(step, w)))
            runs[step] = m.StepRunObservation(sr.name, sr.status, sr.deleting, False, attempt,
                                              sr.created_at)
        return m.Observed(RUN, 1, T0, self.spec, self.status, m.frozen_step_runs(runs.items()),
                          self.topology_terminated, self.cancel_at, self.gates(),
                          reused=self.reused)

    def gates(self) -> tuple[tuple[str, m.Gate], ...]:
        """As the shell gives them: for a gated step once every producer it reads has its
        outputs recorded on its StepRun, one not deleted (or is recorded Skipped, or is
        reused: its outputs are in the run's record). Whether its condition holds is a fixed
        function of its name, as a condition is of its inputs; so are the items of a fan-out
        step (how many, which its condition skips; some lists cannot be had). A fan-out's
        outputs are gathered from its items' StepRuns: one deleted, the shell still renders
        (a missing item's value as a skipped one's)."""
        out = []
        for s in self.all_steps():
            if not s.gated:
                continue
            # The run's facts exist once its outcome is recorded.
            ready = not s.reads_facts or self.status.outcome is not None
            for producer, _ in s.consumes:
                sr = self.runs.get(producer)
                state = m.step_state(self.status, producer)
                ready &= (sr is not None and not sr.gone and sr.status is not None
                          and sr.status.phase is StepPhase.SUCCEEDED) or (
                    m.lookup(self.reused, producer) is not None) or (
                    state is not None and state.phase is StepPhase.SKIPPED) or (
                    # A fan-out's outputs: on its items' StepRuns, all written before its
                    # record says it succeeded.
                    state is not None and state.items is not None
                    and state.phase is StepPhase.SUCCEEDED)
            if ready:
                out.append((s.name, self.gate_of(s)))
        return tuple(out)

    @staticmethod
    def gate_of(s: m.StepSpec) -> m.Gate:
        """The gate of a gated step once its inputs are there: a fixed function of its name."""
        n = int(s.name[1:])
        if n % 11 == 5:
            return m.Gate(False, Reason.CONDITION_ERROR)
        if s.for_each is not None:
            total = n % 6
            return m.Gate(True, items=total, skipped=frozenset(
                i for i in range(total) if s.conditional and (i + n) % 4 == 3))
        return m.Gate(n % 3 != 0)

    def checked(self, step: str, w: Workload) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
        """A success's outputs checked against the step's declarations, as the shell does."""
        declared = next(s.outputs for s in self.all_steps() if s.name == parse_key(step)[0])
        if w.state is not W.SUCCEEDED or not declared:
            return None, ()
        names = {k for k, _ in w.outputs}
        if any(not o.has_default and o.name not in names for o in declared):
            return (Reason.OUTPUT_MISSING, "a required output is missing"), ()
        return None, tuple(o.name for o in declared if o.name not in names)

    # -- the shell applying a decision, the API server judging its writes ------------------

    def _gone(self, sr: StepRun) -> None:
        sr.gone = True
        for w in sr.workloads.values():
            w.state, w.live_pods = W.GONE, 0

    def apply(self, decision: Decision) -> bool:
        """Apply what lands of a decision; False when a fault kept some of it from landing."""
        self.last = decision
        if self.outage:
            self.outage -= 1
            return False
        drop_creates, drop_status = self.lost_creates > 0, self.lost_status > 0
        self.lost_creates -= drop_creates
        self.lost_status -= drop_status
        for a in decision.actions:
            if drop_creates and isinstance(a, act.CreateStepRun | act.StartAttempt):
                continue
            sr = self.runs.get(a.step or "") if not isinstance(a, act.EmitEvent) else None
            match a:
                case act.CreateStepRun(step=step, name=name):
                    if name != step_run_name(RUN, step):
                        self.violations.append(f"StepRun {name} is not named for {step}")
                    if sr is not None and sr.gone:
                        self.violations.append(f"a second StepRun for {step}")
                    if sr is None:
                        self.runs[step] = StepRun(name, self.now)
                case act.WriteStepRunStatus(step=step, status=status) if sr and not sr.gone:
                    old = sr.status
                    if old is not None and old.phase in STEP_TERMINAL and _final(old) != _final(
                            status):
                        self.violations.append(f"G2: StepRun {step} {old} rewritten {status}")
                    else:
                        sr.status = status
                case act.StartAttempt(step=step) if m.lookup(self.reused, step):
                    self.violations.append(f"a workload for {step}, which the re-run reuses")
                case act.StartAttempt(step=step, attempt=n) if sr and not sr.gone:
                    if n in sr.workloads and sr.workloads[n].state is W.GONE:
                        self.violations.append(f"a second workload for {step} attempt {n}")
                    sr.workloads.setdefault(n, Workload())
                case act.StopWorkload() if sr:
                    for w in sr.workloads.values():
                        if w.state is not W.GONE:
                            w.stopping = True
                case act.StopItems(step=step):  # the live pods of each of its items
                    for key, item in self.runs.items():
                        if parse_key(key)[0] == step and parse_key(key)[1] is not None:
                            for w in item.workloads.values():
                                if w.state not in (W.GONE, W.SUCCEEDED, W.FAILED):
                                    w.stopping = True
                case act.RemoveFinalizer() if sr:
                    sr.finalizer = False
                    if sr.deleting:
                        self._gone(sr)
                case act.DeleteStepRun() if sr:
                    sr.deleting = True
                    if not sr.finalizer:
                        self._gone(sr)
                case act.EmitEvent():
                    self.emitted.append(a)
                case _:
                    pass
        if drop_status:
            return False
        before, after = self.status, decision.status
        if before.phase in RUN_TERMINAL and (
                (before.phase, before.reason, before.message, before.finished_at)
                != (after.phase, after.reason, after.message, after.finished_at)):
            self.violations.append(f"G2: terminal run rewritten: {before} -> {after}")
        for step, state in before.step_states:
            if state.phase in STEP_TERMINAL and m.step_state(after, step) != state:
                self.violations.append(f"G2: terminal entry {step} rewritten")
        self.status = after
        return not drop_creates

    def decide(self) -> tuple[m.Observed, Decision]:
        observed = self.observe()
        return observed, decide(observed, self.now)

    # -- things happening in the cluster -----------------------------------------------------

    def workload(self, step: str) -> Workload | None:
        sr = self.runs.get(step)
        if sr is None or sr.gone:
            return None
        return self.current(sr, step)[1]

    def all_workloads(self) -> list[Workload]:
        return [w for sr in self.runs.values() if not sr.gone for w in sr.workloads.values()]


def _final(s: m.StepRunStatus) -> tuple[object, ...]:
    return (s.phase, s.reason, s.message, s.outputs, s.finished_at)


EXIT_CODES = (1, 2, 3, 75, 137, 143, 255)
REASONS = (None, None, "Evicted", "ErrImagePull", "OOMKilled", "Preempted")
HINTS = (None, None, FailureClass.TRANSIENT, FailureClass.PERMANENT)


def happen(world: World, kind: str, step: str, param: int) -> None:
    """One random thing happening to the run or one of its steps."""
    w = world.workload(step)
    sr = world.runs.get(step)
    match kind:
        case "run" if w is not None and w.state is W.PENDING:
            w.state, w.started_at = W.RUNNING, world.now
        case "succeed" if w is not None and w.state in LIVE:
            # Mostly with its required output; now and then without it (OutputMissing).
            said = (("o0", str(param)),) if param % 5 else (("n", str(param)),)
            w.state, w.live_pods, w.outputs = W.SUCCEEDED, 0, said
        case "fail" if w is not None and w.state in LIVE:
            w.state, w.live_pods, w.finished_at = W.FAILED, 0, world.now
            w.exit_code = EXIT_CODES[param % len(EXIT_CODES)]
            w.reason = REASONS[(param // 7) % len(REASONS)]
            w.hint = HINTS[(param // 41) % len(HINTS)]
        case "late_success" if w is not None and w.state is not W.SUCCEEDED:
            w.state, w.live_pods, w.outputs = W.SUCCEEDED, 0, (("late", "1"),)
        case "heartbeat" if sr is not None and sr.status is not None and not sr.gone:
            sr.status = replace(sr.status, heartbeat_at=world.now)
        case "delete_workload" if w is not None:
            w.state, w.live_pods = W.GONE, 0
        case "terminate":
            for x in world.all_workloads():
                if x.stopping:
                    x.state, x.live_pods = W.GONE, 0
        case "delete_steprun" if sr is not None and not sr.gone:
            sr.deleting = True
            if not sr.finalizer:
                world._gone(sr)
        case "stop":
            world.spec = replace(world.spec, cancel_requested=True)
            world.cancel_at = world.now - dt.timedelta(seconds=param % 5)
        case "skip_finally":
            # shutdown.finally set to Skip (it may change until the run is terminal), mostly
            # in the patch that stops the run.
            world.spec = replace(world.spec, shutdown_finally=FinallyPolicy.SKIP,
                                 cancel_requested=world.spec.cancel_requested or param % 3 > 0)
            world.cancel_at = world.cancel_at or world.now
        case "suspend":
            world.spec = replace(world.spec, suspend=True)
        case "resume":
            world.spec = replace(world.spec, suspend=False)
        case "topology":
            world.topology_terminated = True
        case "pods_gone":
            for x in world.all_workloads():
                x.state, x.live_pods = W.GONE, 0
        case "outage":
            world.outage = 1 + param % 6
        case "lost_creates":
            world.lost_creates = 1 + param % 3
        case "lost_status":
            world.lost_status = 1 + param % 3
        case "tick":
            world.now += dt.timedelta(seconds=1 + param % 40)
        case "jump" if world.last is not None and world.last.requeue_at is not None:
            world.now = max(world.now, world.last.requeue_at)
        case _:
            pass


KINDS = ("run", "run", "run", "succeed", "succeed", "fail", "fail", "late_success", "heartbeat",
         "delete_workload", "terminate", "delete_steprun", "stop", "skip_finally", "topology",
         "pods_gone", "suspend", "resume",
         "tick", "tick", "jump", "jump", "outage", "lost_creates", "lost_status")
