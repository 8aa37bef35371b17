"""Finally steps that fan out (docs/API.md, "Fan-out (forEach)" and "Finally steps and stop
modes"), as properties of the core over random runs driven through the simulated cluster of
`tests.unit.world`: item counts from 0 to 5, parallelism 1 to 4, items that fail, retry, are
lost or skipped by their condition, gates that fail, stops (Cancel or Drain, finally Run or
Skip) before and while the finally steps run, the finally budget running out, and an API
server that loses writes.

Every decision is checked against the contract for finally fan-outs: never more items going
than `parallelism`; counts that add up to the total; no item before every main step is terminal
(nor after a stop that skips finally steps); a terminal run's record counts no item Pending or
Running; under `shutdown.finally: Run` nothing but the finally budget cancels a finally item;
and the run ends as its outcome says, but for a failed finally step (FinallyFailed) or a stop
that skips them (Canceled).

Two cases are pinned by examples at the end: a finally step cut off by the finally budget
before it ran fails a Succeeded outcome; and an item whose pod has run less than 5s, counted
Running by the run's record, is stopped as running, never recorded "not started".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision, decide
from runctl.machine.naming import parse_key
from runctl.machine.phases import (
    RUN_TERMINAL,
    STEP_FAILURES,
    STEP_TERMINAL,
    FinallyPolicy,
    Mode,
    Reason,
    RunPhase,
    ShutdownMode,
    StepPhase,
)
from tests.unit.builders import at, observed, run_status, spec, step, work
from tests.unit.test_properties import (
    check_finally_ran,
    cycle,
    finish,
    play,
    run_specs,
    stays_terminal,
)
from tests.unit.world import KINDS, LIVE, W, World, happen

P = StepPhase
MAIN_STEPS = 4
"""Main steps kept of a drawn run: few, so the events reach its finally steps."""

# -- strategies ------------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> m.RunSpec:
    """A run of `run_specs` (either mode, either failure policy, any stop settings) cut to its
    first main steps, whose finally steps (at least one) are renamed `fK` for random K and most
    of them fan out with parallelism 1 to 4. The world gives a fan-out `fK` K % 6 items (0 to
    5), skips some of them when it has a condition, and fails its gate when K % 11 == 5."""
    base = draw(run_specs())
    kept = draw(st.integers(1, MAIN_STEPS))
    main = tuple(s for s in base.steps if int(s.name[1:]) < kept)  # closed under needs
    names = {s.name for s in main}
    finals = base.finally_steps or (m.StepSpec("f0"),)
    ks = draw(st.lists(st.integers(0, 65), min_size=len(finals), max_size=len(finals),
                       unique=True))
    rename = {s.name: f"f{k}" for s, k in zip(finals, ks, strict=True)}
    fans = draw(st.lists(st.integers(0, 3), min_size=len(finals), max_size=len(finals)))
    fans[draw(st.integers(0, len(finals) - 1))] = 1
    out = tuple(replace(
        s, name=rename[s.name], needs=tuple(rename[n] for n in s.needs),
        consumes=tuple(c for c in s.consumes if c[0] in names),
        for_each=m.ForEach(draw(st.integers(1, 4))) if fan else None)
        for s, fan in zip(finals, fans, strict=True))
    return replace(base, steps=main, finally_steps=out)


def scripts(kinds: tuple[str, ...], most: int) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Up to `most` events, each (kind, which step or item, a parameter), as
    `test_properties.events` draws them."""
    return st.lists(st.tuples(st.sampled_from(kinds), st.integers(0, 29),
                              st.integers(0, 10**6)), max_size=most)


FINALLY_KINDS = (*KINDS, "run", "run", "succeed", "succeed", "fail", "stop", "stop",
                 "skip_finally", "skip_finally")
"""While the finally steps run: everything that may happen, items going on and stops more
often."""

# -- the rules, checked on every decision ----------------------------------------------------

Rule = Callable[[m.Observed, Decision, dt.datetime], None]


def _fan_outs(spec: m.RunSpec) -> dict[str, int]:
    """The finally steps that fan out, and their parallelism."""
    return {s.name: s.for_each.parallelism for s in spec.finally_steps
            if s.for_each is not None}


def _counts(status: m.RunStatus, step: str) -> dict[StepPhase, int] | None:
    state = m.step_state(status, step)
    return None if state is None or state.items is None else dict(state.items.by_phase)


def _skipping(observed: m.Observed) -> bool:
    """A stop is in effect (recorded, or asked for) and `shutdown.finally` is Skip."""
    spec = observed.spec
    return spec.shutdown_finally is FinallyPolicy.SKIP and (
        observed.status.stop is not None or spec.cancel_requested)


def _finally_deadline(spec: m.RunSpec, status: m.RunStatus) -> dt.datetime | None:
    """The finally steps' budget ends finallyTimeoutSeconds after the outcome's decidedAt."""
    if status.outcome is None:
        return None
    return status.outcome.decided_at + dt.timedelta(seconds=spec.finally_timeout_seconds)


def _ended(observed: m.Observed, d: Decision, key: str) -> bool:
    """Is the item's StepRun terminal once the decision is applied (as written now, or as
    observed)?"""
    written = [a.status for a in d.actions
               if isinstance(a, act.WriteStepRunStatus) and a.step == key]
    obs = m.lookup(observed.step_runs, key)
    status = written[-1] if written else obs.status if obs is not None else None
    return status is not None and status.phase in STEP_TERMINAL


def items_add_up_within_parallelism(observed: m.Observed, d: Decision,
                                    now: dt.datetime) -> None:
    """The counts add up to `total`, the number of items its list has; never more items going
    (made, not ended) than `parallelism`, in the record or on the cluster."""
    made = {a.step for a in d.actions if isinstance(a, act.CreateStepRun)} | {
        k for k, obs in observed.step_runs if not obs.gone}
    for name, parallelism in _fan_outs(observed.spec).items():
        state = m.step_state(d.status, name)
        if state is None or state.items is None:
            continue
        counts = dict(state.items.by_phase)
        assert sum(counts.values()) == state.items.total, f"{name}: {state.items}"
        assert all(n > 0 for n in counts.values()), f"{name}: a count of none"
        gate = m.lookup(observed.gates, name)
        if gate is not None and gate.reason is None:
            assert state.items.total == gate.items, f"{name}: {state.items} of {gate.items}"
        assert counts.get(P.RUNNING, 0) <= parallelism, f"{name}: {state.items} running"
        going = [k for k in made if parse_key(k)[0] == name and parse_key(k)[1] is not None
                 and not _ended(observed, d, k)]
        assert len(going) <= parallelism, f"{name}: {sorted(going)} going at once"


def no_item_before_the_main_steps_end(observed: m.Observed, d: Decision,
                                      now: dt.datetime) -> None:
    """An item is made (or an attempt of it started) only once every main step is terminal and
    the outcome recorded (at the latest in this very write), never after a stop that skips
    finally steps, and its StepRun once."""
    spec, entries = observed.spec, dict(d.status.step_states)
    fans = _fan_outs(spec)
    for a in d.actions:
        if not isinstance(a, act.CreateStepRun | act.StartAttempt):
            continue
        owner, index = parse_key(a.step)
        if owner not in fans or index is None:
            continue
        going = [s.name for s in spec.steps if entries[s.name].phase not in STEP_TERMINAL]
        assert not going, f"{a.step} started while main steps {going} go"
        assert d.status.outcome is not None, f"{a.step} started before the outcome"
        assert not _skipping(observed), f"{a.step} started after a stop that skips finally"
        if isinstance(a, act.CreateStepRun):
            assert m.lookup(observed.step_runs, a.step) is None, f"{a.step} made twice"


def a_terminal_record_counts_no_item_going(observed: m.Observed, d: Decision,
                                           now: dt.datetime) -> None:
    """From the write that makes the run terminal, each finally fan-out is terminal and
    counts no item Pending or Running."""
    if d.status.phase not in RUN_TERMINAL:
        return
    for name in _fan_outs(observed.spec):
        state = m.step_state(d.status, name)
        assert state is not None
        assert state.phase in STEP_TERMINAL, f"{name} {state.phase} in a terminal run"
        going = {P.PENDING, P.RUNNING} & set(_counts(d.status, name) or {})
        assert not going, f"{name}: {state.items}"


def only_the_budget_or_a_skip_cancels_finally(observed: m.Observed, d: Decision,
                                              now: dt.datetime) -> None:
    """`shutdown.finally: Run`: a stop leaves finally steps running, item by item; only the
    finally budget cancels a finally step or item. Skip: no item is left Pending (each not
    started becomes Canceled), and under a Cancel stop every item still holding a pod is
    stopped."""
    spec = observed.spec
    if _skipping(observed):
        for name in _fan_outs(spec):
            assert P.PENDING not in (_counts(d.status, name) or {}), f"{name}: Pending, skipped"
        if spec.shutdown_mode is ShutdownMode.CANCEL:
            stopped = {a.step for a in d.actions if isinstance(a, act.StopWorkload)}
            every_item = {a.step for a in d.actions if isinstance(a, act.StopItems)}
            for key, obs in observed.step_runs:
                a = obs.attempt
                if (parse_key(key)[0] in _fan_outs(spec) and not obs.gone and a is not None
                        and not a.stopping and (a.state in LIVE or a.live_pods)):
                    assert key in stopped or parse_key(key)[0] in every_item, (
                        f"{key} left running after a skipping stop")
        return
    deadline = _finally_deadline(spec, d.status)
    cut = deadline is not None and now >= deadline
    for s in spec.finally_steps:
        state = m.step_state(d.status, s.name)
        canceled = (_counts(d.status, s.name) or {}).get(P.CANCELED, 0) or (
            state is not None and state.phase is P.CANCELED)
        assert not canceled or cut, f"{s.name} canceled under finally Run: {state}"


def the_run_ends_as_its_finally_steps_say(observed: m.Observed, d: Decision,
                                          now: dt.datetime) -> None:
    """Once every finally step is terminal the run ends with its outcome's phase, reason and
    message; but a finally step that failed (Failed, TimedOut, Lost, or cut off by the finally
    budget) turns an outcome of Succeeded into Failed/FinallyFailed, its message naming that
    step and quoting its message; and a stop that skips finally steps turns it Canceled."""
    spec, old, new = observed.spec, observed.status, d.status
    if old.phase in RUN_TERMINAL or new.phase not in RUN_TERMINAL or new.outcome is None:
        return
    o, entries = new.outcome, dict(new.step_states)
    ended, outcome = (new.phase, new.reason, new.message), (o.phase, o.reason, o.message)
    event(f"a run with finally fan-outs ended {new.phase}/{new.reason} ({o.phase} outcome)")
    if o.phase is not RunPhase.SUCCEEDED:
        assert ended == outcome, f"a {o.phase} outcome ended {ended}"
        return
    if _skipping(observed):
        assert (new.phase, new.reason) == (RunPhase.CANCELED, Reason.CANCELED), ended
        return
    finals = [s.name for s in spec.finally_steps]
    failed = [n for n in finals if entries[n].phase in STEP_FAILURES]
    # Under Run only the budget cancels a finally step (`only_the_budget_...`).
    cut_off = [n for n in finals if entries[n].phase is P.CANCELED]
    if failed:
        assert (new.phase, new.reason) == (RunPhase.FAILED, Reason.FINALLY_FAILED), ended
        assert new.message is not None
        assert any(new.message.startswith(f"finally step {n} ")
                   and (entries[n].message or "")[:200] in new.message for n in failed), \
            f"{new.message!r} names none of {failed}"
    elif cut_off:
        event("a finally step cut off by the budget before it ran")
        assert (new.phase, new.reason) == (RunPhase.FAILED, Reason.FINALLY_FAILED), ended
        assert new.message is not None
        assert any(new.message.startswith(f"finally step {n} ") for n in cut_off), new.message
    else:
        assert ended == outcome, f"a Succeeded outcome with finally steps ended {ended}"


RULES: tuple[Rule, ...] = (
    items_add_up_within_parallelism, no_item_before_the_main_steps_end,
    a_terminal_record_counts_no_item_going, only_the_budget_or_a_skip_cancels_finally,
    the_run_ends_as_its_finally_steps_say,
)


class Watched(World):
    """The simulated cluster, each decision checked by RULES before it is applied (besides
    every guarantee `cycle` checks), and its pods once it is."""

    def decide(self) -> tuple[m.Observed, Decision]:
        observed, d = super().decide()
        for rule in RULES:
            rule(observed, d, self.now)
        return observed, d

    def apply(self, decision: Decision) -> bool:
        whole = super().apply(decision)
        fans = _fan_outs(self.spec)
        for name, parallelism in fans.items():
            live = [k for k, sr in self.runs.items() if parse_key(k)[0] == name
                    and parse_key(k)[1] is not None and any(
                        w.state in LIVE and not w.stopping for w in sr.workloads.values())]
            assert len(live) <= parallelism, f"{name}: pods of {sorted(live)} live at once"
        return whole


# -- driving a run ---------------------------------------------------------------------------


def let_go(world: World, rounds: int, done: Callable[[World], bool], stubborn: bool) -> None:
    """Pods run, then succeed (with output o0), stopped ones go (unless `stubborn`: then only
    the grace period ends them), and time moves to the next requeue only when no pod moved (so
    no budget runs out while pods are quick), until `done`."""
    for _ in range(rounds):
        d = cycle(world)
        if done(world):
            return
        moved = False
        for key, sr in world.runs.items():
            for w in sr.workloads.values():
                if w.stopping and w.state is not W.GONE and not stubborn:
                    w.state, w.live_pods, moved = W.GONE, 0, True
                elif w.state is W.PENDING and not w.stopping:
                    w.state, moved = W.RUNNING, True
                elif w.state is W.RUNNING and world.batch(key):
                    w.state, w.live_pods, w.outputs, moved = W.SUCCEEDED, 0, (("o0", "x"),), True
        if not moved and d.requeue_at is not None:
            world.now = max(world.now, d.requeue_at)


def _decided(world: World) -> bool:
    return world.status.outcome is not None or world.status.phase in RUN_TERMINAL


def _terminal(world: World) -> bool:
    return world.status.phase in RUN_TERMINAL


def check_items_at_the_end(world: World) -> None:
    """After the run: every item StepRun of a finally fan-out left is terminal; under
    `shutdown.finally: Run`, a fan-out that ended within its budget made a StepRun for every
    item its condition did not skip (but those whose inputs were deleted first), and counts
    as Succeeded exactly the items whose StepRuns say so."""
    spec, status = world.spec, world.status
    deadline = _finally_deadline(spec, status)
    skipped_all = spec.shutdown_finally is FinallyPolicy.SKIP and status.stop is not None
    # Its gate as the shell gave it when it made the items (the outputs it read may be gone
    # since, with their StepRuns).
    gates = {s.name: world.gate_of(s) for s in spec.finally_steps}
    for name in _fan_outs(spec):
        mine = {parse_key(k)[1]: sr for k, sr in world.runs.items()
                if parse_key(k)[0] == name and parse_key(k)[1] is not None}
        for index, sr in mine.items():
            assert sr.gone or (sr.status is not None and sr.status.phase in STEP_TERMINAL), \
                f"{name}[{index}] left {sr.status}"
        state = m.step_state(status, name)
        assert state is not None
        if (state.items is None or skipped_all or deadline is None
                or state.finished_at is None or state.finished_at >= deadline):
            continue
        gate = gates[name]
        # An item not made when an output it reads went with its StepRun never is.
        lost = {f.index for f in state.failed_items
                if f.reason == Reason.UPSTREAM_OUTPUT_DELETED}
        missing = set(range(state.items.total)) - set(mine) - gate.skipped - lost
        assert not missing, f"{name}: items {sorted(missing)} never made"
        succeeded = sum(1 for sr in mine.values()
                        if sr.status is not None and sr.status.phase is P.SUCCEEDED)
        assert dict(state.items.by_phase).get(P.SUCCEEDED, 0) == succeeded, state.items
        event(f"a finally fan-out of {state.items.total} ran, ended {state.phase}")


STOPS = st.none() | st.tuples(st.sampled_from(["stop", "skip_finally"]), st.integers(0, 30),
                              st.integers(0, 10**6))
"""A stop (or Skip set, mostly with a stop) at some point while the finally steps run."""


OUTS = (m.OutputSpec("o0"), m.OutputSpec("o1", has_default=True))
DELETED_BEFORE_READ = spec(
    step("s0", heartbeat_timeout_seconds=10, outputs=OUTS, conditional=True),
    step("s1", outputs=OUTS, conditional=True),
    step("s2", "s0", "s1", timeout_seconds=5, heartbeat_timeout_seconds=10, outputs=OUTS,
         consumes=(("s0", "o1"), ("s1", "o0")), conditional=True,
         for_each=m.ForEach(parallelism=1)),
    grace_period_seconds=0, finally_timeout_seconds=30,
    finally_steps=(step("f0", for_each=m.ForEach(parallelism=1)),))
"""s1 succeeds, then its StepRun is deleted before s2, which reads its output, has made an
item: s2 can never render it, and must fail rather than wait for ever."""
RELEASED_WHILE_READ = spec(
    step("s0", timeout_seconds=5, heartbeat_timeout_seconds=10, outputs=OUTS),
    grace_period_seconds=0, finally_timeout_seconds=30, timeout_seconds=50,
    finally_steps=(
        step("f3", timeout_seconds=5, retry=m.RetryPolicy(0, 0, 1, None, (75,)),
             consumes=(("s0", "o0"),), conditional=True, for_each=m.ForEach(parallelism=1)),
        step("f0", timeout_seconds=5, retry=m.RetryPolicy(0, 0, 1, None, (75,)), conditional=True)))
"""s0's StepRun is deleted once it succeeded; the decision that lets it go must fail what of
f3 is not made yet, not make its first item and leave the next to fail after."""


@given(spec=runs(), before=scripts(KINDS, 8), after=scripts(FINALLY_KINDS, 30),
       stop=STOPS, stubborn=st.booleans(), by_topology=st.booleans())
@example(spec=DELETED_BEFORE_READ, before=[("outage", 0, 3), ("delete_steprun", 0, 0),
                                          ("lost_creates", 0, 1)],
         after=[], stop=None, stubborn=False, by_topology=False)
@example(spec=RELEASED_WHILE_READ, before=[("succeed", 0, 1), ("delete_steprun", 0, 0)],
         after=[], stop=None, stubborn=False, by_topology=False)
def test_finally_fan_outs_keep_the_contract_whatever_happens(
        spec: m.RunSpec, before: list[tuple[str, int, int]],
        after: list[tuple[str, int, int]], stop: tuple[str, int, int] | None,
        stubborn: bool, by_topology: bool) -> None:
    """Random events while the main steps run (stops included), the main steps driven to
    their end, random events on the finally items (failures, stops, skips, time), then every
    step let end: each decision keeps RULES and every guarantee `cycle` checks."""
    world = Watched(spec)
    names = play(world, before)
    if spec.mode is Mode.REALTIME:
        # Its main steps serve until its topology ends, or a stop.
        happen(world, "topology" if by_topology else "stop", "", 0)
    let_go(world, 32 + 24 * len(spec.steps), _decided, stubborn)
    finals = {s.name for s in spec.finally_steps}
    if stop is not None:
        after = [*after[:stop[1]], (stop[0], 0, stop[2]), *after[stop[1]:]]
    for kind, index, param in after:
        cycle(world)
        targets = [k for k, sr in world.runs.items()
                   if not sr.gone and parse_key(k)[0] in finals] or sorted(finals)
        happen(world, kind, targets[index % len(targets)], param)
    rounds = 32 + 24 * (len(names) + sum(int(n[1:]) % 6 for n in _fan_outs(spec)))
    let_go(world, rounds, _terminal, stubborn)
    finish(world, rounds, stubborn=stubborn)
    stays_terminal(world)
    final = world.status
    check_finally_ran(world)
    check_items_at_the_end(world)
    for name in _fan_outs(spec):
        state = m.step_state(final, name)
        assert state is not None
        event(f"a finally fan-out ended {state.phase}/{state.reason}")
    if final.stop is not None and final.outcome is not None:
        # A stop that came while main steps ran made the outcome Canceled (or TimedOut).
        when = ("before the finally steps" if final.outcome.phase in (
            RunPhase.CANCELED, RunPhase.TIMED_OUT) else "while finally steps ran")
        event(f"stopped {when}: {spec.shutdown_mode}, finally {world.spec.shutdown_finally}")


# -- the deviations found --------------------------------------------------------------------


OUTCOME = m.Outcome(RunPhase.SUCCEEDED, Reason.COMPLETED, "all 1 steps succeeded", at(5))
A = m.StepState(P.SUCCEEDED, Reason.COMPLETED, None, "r-a", 1, at(0), at(5))


def _pod_waits(name: str) -> m.StepRunObservation:
    """A StepRun made when the outcome was recorded (5s), its pod not running yet."""
    return m.StepRunObservation(f"r-{name}", None, attempt=work(W.PENDING), created_at=at(5))


def fan_out_waiting() -> m.Observed:
    """The finally fan-out f, 3 items, parallelism 2: items 0 and 1 made, their pods waiting
    (image pull, no room on a node)."""
    run = spec(step("a"), finally_steps=(step("f", for_each=m.ForEach(2)),),
               finally_timeout_seconds=60)
    f = m.StepState(P.PENDING, items=m.ItemCounts(3, ((P.PENDING, 3),)), started_at=at(5))
    return observed(run, run_status(RunPhase.RUNNING, {"a": A, "f": f}, outcome=OUTCOME),
                    {f"f[{i}]": _pod_waits(f"f-{i}") for i in (0, 1)},
                    gates=(("f", m.Gate(True, items=3)),))


def step_waiting() -> m.Observed:
    """The same with a finally step f that does not fan out."""
    run = spec(step("a"), finally_steps=(step("f"),), finally_timeout_seconds=60)
    f = m.StepState(P.PENDING, step_run="r-f", started_at=at(5))
    return observed(run, run_status(RunPhase.RUNNING, {"a": A, "f": f}, outcome=OUTCOME),
                    {"f": _pod_waits("f")})


@pytest.mark.parametrize("before", [fan_out_waiting(), step_waiting()],
                         ids=["fan-out", "step"])
def test_a_finally_step_cut_off_before_it_ran_fails_a_success(before: m.Observed) -> None:
    """docs/API.md: when the finally budget passes, "those not started [end] Canceled
    (StoppedBeforeStart)", and a finally step "cut off by the finally budget" turns an outcome
    of Succeeded into Failed/FinallyFailed. The budget (60s from the outcome at 5s) passes
    while f's pods wait: f ends Canceled/StoppedBeforeStart, the run must end FinallyFailed."""
    d = decide(before, at(66))
    state = m.step_state(d.status, "f")
    assert state is not None
    assert (state.phase, state.reason) == (P.CANCELED, Reason.STOPPED_BEFORE_START)
    assert (d.status.phase, d.status.reason) == (RunPhase.FAILED, Reason.FINALLY_FAILED)


def items_running(finals: bool) -> m.RunSpec:
    """Fan-out f (3 items, parallelism 2), a finally step after main step a, or a main step;
    a stop is asked for (and for the finally one, `shutdown.finally: Skip`)."""
    fan = step("f", for_each=m.ForEach(2))
    if finals:
        return spec(step("a"), finally_steps=(fan,), finally_timeout_seconds=600)
    return spec(fan)


@pytest.mark.parametrize("finals", [True, False], ids=["finally", "main"])
def test_an_item_counted_running_is_stopped_not_said_never_started(finals: bool) -> None:
    """docs/API.md: an item is written Running once its workload has run 5s, "meanwhile the
    run's stepStates counts it Running"; a stop stops running items (recorded Canceled), only
    "items not started become Canceled (StoppedBeforeStart)". Items 0 and 1 run since 6s: the
    record counts them Running at 8s; the stop, seen at 9s, must record them Canceled as
    stopped, not as never started."""
    run = items_running(finals)
    entries = {"a": A} if finals else {}
    f = m.StepState(P.PENDING, items=m.ItemCounts(3, ((P.PENDING, 3),)), started_at=at(5))
    runs = {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", None, attempt=work(
        W.RUNNING, started_at=at(6)), created_at=at(5)) for i in (0, 1)}
    before = observed(run, run_status(RunPhase.RUNNING, {**entries, "f": f},
                                      outcome=OUTCOME if finals else None), runs,
                      gates=(("f", m.Gate(True, items=3)),))
    going = decide(before, at(8))
    assert _counts(going.status, "f") == {P.PENDING: 1, P.RUNNING: 2}
    stop = replace(run, cancel_requested=True, shutdown_finally=FinallyPolicy.SKIP)
    stopping = replace(before, spec=stop, status=going.status)
    d = decide(stopping, at(9))
    # Stopped as running: their pods are deleted, their record still counts them Running
    # (only item 2, never started, is Canceled now), and no write says they never started.
    assert [a for a in d.actions if isinstance(a, act.StopItems | act.StopWorkload)] == [
        act.StopItems("f", 30)]
    assert not [a for a in d.actions if isinstance(a, act.WriteStepRunStatus)]
    assert _counts(d.status, "f") == {P.RUNNING: 2, P.CANCELED: 1}
    # Their pods gone, they end Canceled as stopped.
    gone = m.frozen_step_runs((key, replace(obs, attempt=work(W.GONE, started_at=at(6))))
                              for key, obs in runs.items())
    after = decide(replace(stopping, status=d.status, step_runs=gone), at(10))
    ended = {a.step: a.status for a in after.actions if isinstance(a, act.WriteStepRunStatus)}
    assert sorted(ended) == ["f[0]", "f[1]"]
    assert {s.phase for s in ended.values()} == {P.CANCELED}
    assert {s.reason for s in ended.values()} <= {Reason.CANCELED, Reason.GRACE_PERIOD_EXPIRED}


def test_an_item_whose_pod_started_in_the_stop_s_second_is_stopped_as_running() -> None:
    """The record keeps times to the second. Pods started at 9.2s (9s as the API server says),
    a stop seen at 9.6s: the first decision counts the items running (9s < 9.6s). Its record,
    read back, says the stop was seen at 9s; a decision from it alone (an operator that
    restarted before their pods went) must still stop them as running, never as not started:
    a second shared by the pod's start and the stop is no evidence the stop came first."""
    run = items_running(False)
    f = m.StepState(P.PENDING, items=m.ItemCounts(3, ((P.PENDING, 3),)), started_at=at(5))
    runs = {f"f[{i}]": m.StepRunObservation(f"r-f-{i}", None, attempt=work(
        W.RUNNING, started_at=at(9)), created_at=at(5)) for i in (0, 1)}
    stopping = observed(replace(run, cancel_requested=True),
                        run_status(RunPhase.RUNNING, {"f": f}), runs,
                        gates=(("f", m.Gate(True, items=3)),))
    first = decide(stopping, at(9) + dt.timedelta(milliseconds=600))
    assert first.status.stop is not None
    assert first.status.stop.observed_at is not None
    read_back = replace(first.status, stop=replace(
        first.status.stop, observed_at=first.status.stop.observed_at.replace(microsecond=0)))
    assert _counts(first.status, "f") == {P.RUNNING: 2, P.CANCELED: 1}
    d = decide(replace(stopping, status=read_back), at(9) + dt.timedelta(milliseconds=800))
    assert _counts(d.status, "f") == {P.RUNNING: 2, P.CANCELED: 1}
    assert not [a for a in d.actions if isinstance(a, act.WriteStepRunStatus)]
