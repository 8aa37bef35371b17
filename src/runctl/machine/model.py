"""The frozen values the core decides from and returns.

Mappings are stored as tuples of pairs sorted by key, so values hash, compare whole and never
change under a caller; `lookup` and the `*_from` helpers are the ways in and out. Datetimes are
timezone-aware UTC. Only what the lifecycle needs is here: images, commands and pod templates are
the shell's business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import field
from enum import StrEnum
from typing import Literal, TypeVar

from runctl.machine.phases import (
    FailureClass,
    FinallyPolicy,
    Mode,
    OnFailure,
    RunPhase,
    ShutdownMode,
    StepPhase,
    StopTrigger,
)
from runctl.machine.value import value

V = TypeVar("V")

Outputs = tuple[tuple[str, str], ...]


def _pairs(items: Iterable[tuple[str, V]]) -> tuple[tuple[str, V], ...]:
    return tuple(sorted(dict(items).items(), key=lambda kv: kv[0]))


def lookup(pairs: tuple[tuple[str, V], ...], key: str) -> V | None:
    """The value stored under `key` in a frozen mapping, or None."""
    for k, v in pairs:
        if k == key:
            return v
    return None


def frozen_outputs(items: Iterable[tuple[str, str]]) -> Outputs:
    return _pairs(items)


# -- spec ------------------------------------------------------------------------------------


@value
class RetryPolicy:
    """No defaults here: the API models own them (`runctl.api.wire` passes every field). The
    delay before each retry is `runctl.machine.backoff`'s."""

    limit: int
    backoff_seconds: int
    backoff_factor: int
    max_backoff_seconds: int | None
    """None: no cap of the policy's own (`backoff.MAX_BACKOFF_SECONDS` bounds every delay)."""
    transient_exit_codes: tuple[int, ...]


NO_RETRY = RetryPolicy(limit=0, backoff_seconds=0, backoff_factor=1, max_backoff_seconds=None,
                       transient_exit_codes=())
"""A step without a retry policy: nothing is retried, so no backoff is ever waited."""


@value
class OutputSpec:
    name: str
    has_default: bool = False
    """A declared output without a default is required."""


@value
class ForEach:
    """A fan-out: the step runs once per item, as items of its own (one StepRun each). Which
    items there are is the shell's business (`Gate.items`); the core counts and starts them."""

    parallelism: int
    """How many of its items may be going (started, not terminal) at once."""


@value
class StepSpec:
    name: str
    needs: tuple[str, ...] = ()
    """Named needs and the producers of the outputs it reads (references imply needs)."""
    timeout_seconds: int | None = None
    retry: RetryPolicy = NO_RETRY
    heartbeat_timeout_seconds: int | None = None
    outputs: tuple[OutputSpec, ...] = ()
    consumes: tuple[tuple[str, str], ...] = ()
    """(producer, output) pairs its references and condition read."""
    conditional: bool = False
    """It has a `when`: it starts only once the shell's gate for it says the condition holds."""
    reads_facts: bool = False
    """A finally step reading the run's outcome or a main step's phase: rendered by the shell
    once the outcome is recorded."""
    for_each: ForEach | None = None

    @property
    def gated(self) -> bool:
        """Does it wait for a gate (a condition to evaluate, values to render, its items to
        count)?"""
        return (self.conditional or bool(self.consumes) or self.reads_facts
                or self.for_each is not None)


@value
class RunSpec:
    """Fields the API defaults have no default here: `runctl.api.wire` passes each one."""

    steps: tuple[StepSpec, ...]
    mode: Mode
    on_failure: OnFailure
    grace_period_seconds: int
    shutdown_mode: ShutdownMode
    shutdown_finally: FinallyPolicy
    finally_timeout_seconds: int
    finally_steps: tuple[StepSpec, ...] = ()
    """Steps that run once every step of `steps` is terminal (always batch steps)."""
    timeout_seconds: int | None = None
    cancel_requested: bool = False
    drain_timeout_seconds: int | None = None
    """Carried so tests can prove it plays no part in any decision (docs/API.md guarantee 4)."""
    ttl_seconds_after_finished: int | None = None
    parallelism: int | None = None
    """The most of its steps and items holding a slot at once (a StepRun made, not terminal);
    None: no bound. Finally steps share it; a realtime run has none (`dag.validate`)."""
    suspend: bool = False
    """`spec.suspend`: nothing starts while it holds (`slots.suspended`), what runs goes on."""


# -- StoryRun status -------------------------------------------------------------------------


@value
class ItemCounts:
    """How many items of a fan-out step are in each phase: they always add up to `total`."""

    total: int
    by_phase: tuple[tuple[StepPhase, int], ...] = ()
    """Phases with at least one item, in `StepPhase` order."""


@value
class FailedItem:
    index: int
    reason: str | None
    message: str | None
    finished_at: dt.datetime | None = None
    """When it failed: a fan-out fails with its first failed item (`onFailure: stop`)."""


@value
class StepState:
    phase: StepPhase
    reason: str | None = None
    message: str | None = None
    step_run: str | None = None
    attempts: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    items: ItemCounts | None = None
    """A fan-out step's items by phase, once it knows how many it has (per-item detail is in
    the items' StepRuns: the record stays the same size however many there are)."""
    failed_items: tuple[FailedItem, ...] = ()
    """The first items of a fan-out step to fail, at most `MAX_FAILED_ITEMS`."""


StepStates = tuple[tuple[str, StepState], ...]


@value
class StopState:
    requested_at: dt.datetime | None
    observed_at: dt.datetime | None
    completed_at: dt.datetime | None = None
    trigger: StopTrigger | None = None


@value
class Outcome:
    """What the main steps ended as: the run's end without its finally steps. Recorded once."""

    phase: RunPhase
    reason: str | None
    message: str | None
    decided_at: dt.datetime


ConditionStatus = Literal["True", "False", "Unknown"]


@value
class Condition:
    type: str
    status: ConditionStatus
    reason: str | None = None
    message: str | None = None
    last_transition_time: dt.datetime | None = None
    observed_generation: int | None = None


@value
class RunStatus:
    phase: RunPhase | None = None
    """None: the run was never reconciled."""
    reason: str | None = None
    message: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration: str | None = None
    step_states: StepStates = ()
    stop: StopState | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None
    progress: str = ""
    """Terminal steps over all steps, e.g. "3/5", for a printer column."""
    outcome: Outcome | None = None
    """Set once every main step is terminal, and never changed."""


def step_states_from(items: Iterable[tuple[str, StepState]]) -> StepStates:
    return _pairs(items)


def step_state_items(status: RunStatus) -> StepStates:
    return status.step_states


def step_state(status: RunStatus, step: str) -> StepState | None:
    return lookup(status.step_states, step)


# -- StepRun ---------------------------------------------------------------------------------


@value
class WorkloadRef:
    kind: Literal["Pod", "Deployment"]
    name: str
    observed: bool = field(default=False, compare=False)
    """The workload was seen: missing from then on, it was deleted, whoever watched or not.
    Not compared: recording it is never worth a write of its own, so it rides along with the
    next write the step makes anyway (the one that records it Running, or its end)."""


@value
class ReusedFrom:
    """The StepRun that executed a step whose result a re-run took instead of executing it."""

    story_run: str
    step_run: str
    uid: str


@value
class Reuse:
    """A step a re-run reuses, as its record says: who made its outputs, and what they are."""

    source: ReusedFrom
    outputs: Outputs = ()


@value
class StepRunStatus:
    phase: StepPhase
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    started_at: dt.datetime | None = None
    """When the step's first attempt was started."""
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    """Written by the step itself; the core only carries it over."""
    outputs: Outputs = ()
    failure_class: FailureClass | None = None
    workload: WorkloadRef | None = None
    next_attempt_at: dt.datetime | None = None
    """When attempt `attempts` starts: during a retry backoff, when the next one may start
    (`backoff.next_start`), then the time that attempt was started (its per-attempt
    timeout counts from it). None for the first attempt."""
    reused_from: ReusedFrom | None = None
    """Set on a step a re-run reused (it never had a workload)."""


# -- what the shell observed -----------------------------------------------------------------


class WorkloadState(StrEnum):
    ABSENT = "Absent"
    """Not seen (not created yet, or not in the watch cache yet): never evidence of deletion."""
    PENDING = "Pending"
    RUNNING = "Running"
    """A pod runs (for a realtime step: is ready)."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    GONE = "Gone"
    """It existed and its deletion was observed."""


@value
class AttemptObservation:
    attempt: int
    state: WorkloadState
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    outputs: Outputs = ()
    failure_class_hint: FailureClass | None = None
    live_pods: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    stopping: bool = False
    """A stop was already sent (deletion under way or scaled to zero): no need to send another."""
    output_problem: tuple[str, str] | None = None
    """(reason, message) when a success's outputs fail the step's declarations (the shell
    checks them with `runctl.flow.outputs`); `outputs` then holds nothing."""
    defaulted: tuple[str, ...] = ()
    """Declared outputs the step left out, which took their defaults."""


@value
class StepRunObservation:
    name: str
    status: StepRunStatus | None = None
    """None: created, status never written."""
    deleting: bool = False
    gone: bool = False
    """Its deletion was observed: it no longer exists."""
    attempt: AttemptObservation | None = None
    """The workload of the attempt its status names (None when the StepRun is gone)."""
    created_at: dt.datetime | None = None
    """When the API server made it: a StepRun never written started its first attempt then,
    unless the run recorded an earlier start."""


StepRuns = tuple[tuple[str, StepRunObservation], ...]


@value
class Gate:
    """The shell's verdict on a gated step whose inputs are recorded: its condition evaluated
    and its references rendered (`runctl.flow`). No gate yet: the step waits."""

    holds: bool
    reason: str | None = None
    """Why the step cannot run at all (ConditionError, InvalidSpec; for a fan-out
    ItemsInvalid, TooManyItems): it fails."""
    message: str | None = None
    """Why it is skipped; for a fan-out, why its `skipped` items are."""
    items: int = 0
    """A fan-out step's number of items (its gate holds once they are known)."""
    skipped: frozenset[int] = frozenset()
    """The indexes of the items of a fan-out step its condition skips."""


@value
class StoryWait:
    """A run of a Story that does not exist (yet)."""

    story: str
    give_up_at: dt.datetime


def frozen_step_runs(items: Iterable[tuple[str, StepRunObservation]]) -> StepRuns:
    return _pairs(items)


@value
class Observed:
    run_name: str
    generation: int
    created_at: dt.datetime | None
    spec: RunSpec
    status: RunStatus = field(default_factory=RunStatus)
    step_runs: StepRuns = ()
    """Step name (or an item's key) -> its StepRun. An absent key: no StepRun was seen for
    that step. One seen deleted is here (`gone`) when the run records it made; an item's,
    when its fan-out step succeeded and a step not ended reads its outputs."""
    topology_terminated: bool = False
    """Someone outside set the condition TopologyTerminated=True."""
    cancel_requested_at: dt.datetime | None = None
    """When spec.cancelRequested was set, if the API says; else the stop counts from its
    observation."""
    gates: tuple[tuple[str, Gate], ...] = ()
    """Step name -> the shell's gate for it (only for gated steps whose inputs are recorded)."""
    story_wait: StoryWait | None = None
    """Set while the run's Story was not found: the run has no definition yet."""
    reused: tuple[tuple[str, Reuse], ...] = ()
    """Step name (or an item's key) -> what a re-run reuses (`runctl.machine.reuse` chose
    them): the steps its record names, and the items of a fan-out step the shell found
    reusable before they were made. Those get a StepRun that is Succeeded from the start, and
    no workload."""
    problems: tuple[tuple[str, str], ...] = ()
    """(field, message) of what the shell found wrong with what the run executes (its params,
    references, conditions: `runctl.flow`); the run fails InvalidSpec as for a bad graph."""
    _reuses: dict[str, Reuse] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A fan-out may offer thousands of items: looked up by key, never scanned.
        object.__setattr__(self, "_reuses", dict(self.reused))

    def reuse(self, key: str) -> Reuse | None:
        """What the run reuses for a step or an item (None: it executes it)."""
        return self._reuses.get(key)
