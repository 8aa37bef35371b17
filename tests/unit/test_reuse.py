"""A re-run in the core: which steps it reuses (`runctl.machine.reuse`), as a table of the rule's
rungs and as properties over random DAGs, sources and `from` lists (chains of re-runs
included); and how `decide` treats the steps it reuses (whole decisions compared)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runctl.machine import actions as act
from runctl.machine import model as m
from runctl.machine.decide import Decision, decide
from runctl.machine.phases import Mode, Reason, RunPhase, StepPhase
from runctl.machine.reuse import SourceStep, reused, reused_items, why_not
from runctl.machine.steps import reused_status
from tests.unit.builders import (
    T0,
    at,
    expect,
    observed,
    running_run,
    spec,
    sr_status,
    step,
)
from tests.unit.test_properties import steps

S = StepPhase.SUCCEEDED
SRC = "nightly"
A, B, C = step("a"), step("b", "a"), step("c", "b")
CHAIN = spec(A, B, C)


def done(name: str, outputs: m.Outputs = (("o0", "1"),), **kw: object) -> m.StepRunStatus:
    return replace(sr_status(name, S, finished=3), outputs=outputs, **kw)  # type: ignore[arg-type]


def source(name: str, digest: str | None = "d", **kw: object) -> SourceStep:
    """A step that succeeded in the source, its StepRun there, the re-run rendering it alike."""
    fields: dict[str, object] = {"phase": S, "step_run": f"{SRC}-{name}", "uid": f"u-{name}",
                                 "status": done(name), "recorded_digest": digest,
                                 "digest": digest, **kw}
    return SourceStep(**fields)  # type: ignore[arg-type]


def made_by(name: str, run: str = SRC) -> m.ReusedFrom:
    return m.ReusedFrom(run, f"{run}-{name}", f"u-{name}")


# -- the rule, rung by rung ------------------------------------------------------------------


@pytest.mark.parametrize(("found", "rerun_from", "reused_now", "why"), [
    pytest.param(source("b"), ["b"], {"a"}, "named in rerun.from", id="from"),
    pytest.param(source("b"), [], set(), "needs a, which executes again", id="downstream"),
    pytest.param(None, [], {"a"}, "it did not succeed in the source", id="not-in-source"),
    pytest.param(replace(source("b"), phase=StepPhase.FAILED), [], {"a"},
                 "it did not succeed in the source", id="failed"),
    pytest.param(replace(source("b"), step_run=None), [], {"a"},
                 "its StepRun in the source is gone", id="steprun-gone"),
    pytest.param(replace(source("b"), status=sr_status("b")), [], {"a"},
                 "its StepRun in the source is gone", id="steprun-not-succeeded"),
    pytest.param(source("b", digest=None), [], {"a"},
                 "its StepRun in the source records no inputs digest", id="no-digest"),
    pytest.param(replace(source("b"), digest="other"), [], {"a"}, "its inputs changed",
                 id="inputs-changed"),
    pytest.param(source("b"), [], {"a"}, None, id="reused"),
])
def test_why_a_step_executes_again(found: SourceStep | None, rerun_from: list[str],
                                   reused_now: set[str], why: str | None) -> None:
    assert why_not(B, found, rerun_from, reused_now) == why


def test_a_rerun_reuses_what_succeeded_upstream_of_the_failure_with_its_outputs() -> None:
    src = {"a": source("a"), "b": replace(source("b"), phase=StepPhase.FAILED),
           "c": source("c")}
    assert reused(CHAIN, SRC, src, []) == (("a", m.Reuse(made_by("a"), (("o0", "1"),))),)


def test_a_step_the_source_reused_points_at_the_run_that_made_it() -> None:
    first = made_by("a", "first")
    src = {"a": source("a", status=done("a", reused_from=first))}
    assert reused(spec(A), SRC, src, []) == (("a", m.Reuse(first, (("o0", "1"),))),)


def test_a_realtime_run_reuses_nothing() -> None:
    src = {n: source(n) for n in "abc"}
    assert reused(replace(CHAIN, mode=Mode.REALTIME), SRC, src, []) == ()


# -- the rule, as properties -----------------------------------------------------------------

DIGESTS = ("d1", "d2", None)


@st.composite
def sources(draw: st.DrawFn, run_steps: tuple[m.StepSpec, ...], run: str = SRC
            ) -> dict[str, SourceStep]:
    """Each step of the source as drawn: succeeded or not, its StepRun kept or gone, its digest
    recorded or not, rendered alike or not, itself reused from an earlier run or not."""
    out = {}
    for s in run_steps:
        if draw(st.integers(0, 5)) == 0:
            continue  # nothing recorded of it
        phase = draw(st.sampled_from((S, S, S, StepPhase.FAILED, StepPhase.SKIPPED)))
        earlier = m.ReusedFrom("first", f"first-{s.name}", "u0") if draw(st.booleans()) else None
        status = replace(sr_status(s.name, phase), outputs=(("o0", draw(st.text(max_size=3))),),
                         reused_from=earlier)
        out[s.name] = SourceStep(
            phase=phase, step_run=None if draw(st.integers(0, 7)) == 0 else f"{run}-{s.name}",
            uid=f"u-{s.name}", status=status, recorded_digest=draw(st.sampled_from(DIGESTS)),
            digest=draw(st.sampled_from(DIGESTS)))
    return out


@given(data=st.data())
def test_a_step_is_reused_exactly_when_the_rule_says(data: st.DataObject) -> None:
    """The reused steps are exactly those that succeeded in the source with their StepRun and a
    recorded digest equal to the re-run's, are not in `from`, and need only reused steps; so
    none is downstream of `from` or of a step that executes again, and each carries the outputs
    of the StepRun that made them."""
    run_steps = data.draw(steps(max_steps=15))
    src = data.draw(sources(run_steps))
    rerun_from = data.draw(st.sets(st.sampled_from([s.name for s in run_steps])))
    got = dict(reused(spec(*run_steps), SRC, src, rerun_from))
    below_from = set(rerun_from)
    for s in _ordered(run_steps):
        if below_from & set(s.needs):
            below_from.add(s.name)
    for s in run_steps:
        found = src.get(s.name)
        rule = (found is not None and found.phase is S and found.step_run is not None
                and found.status is not None and found.status.phase is S
                and found.recorded_digest is not None and found.digest == found.recorded_digest
                and s.name not in rerun_from and all(n in got for n in s.needs))
        assert (s.name in got) == rule, s.name
        if s.name not in got:
            continue
        assert found is not None
        assert found.status is not None
        assert s.name not in below_from, "reused below a step of rerun.from"
        assert found.digest == found.recorded_digest, "reused with other inputs"
        assert got[s.name].outputs == found.status.outputs, "outputs not the producer's"
        assert got[s.name].source == (found.status.reused_from or m.ReusedFrom(
            SRC, f"{SRC}-{s.name}", f"u-{s.name}")), "not the StepRun that made it"


@given(data=st.data())
def test_a_rerun_of_a_rerun_reuses_the_values_of_the_run_that_made_them(
        data: st.DataObject) -> None:
    """A chain of re-runs, each reusing what it may of the one before: every reused step's
    outputs and origin are those of the run where it last really executed."""
    run_steps = data.draw(steps(max_steps=12))
    made = {s.name: (m.ReusedFrom("r0", f"r0-{s.name}", "u0"), (("o0", "r0"),))
            for s in run_steps}
    src = {s.name: SourceStep(S, f"r0-{s.name}", "u0", replace(
        sr_status(s.name, S), outputs=made[s.name][1]), "d", "d") for s in run_steps}
    for k in range(1, data.draw(st.integers(2, 4))):
        rerun_from = data.draw(st.sets(st.sampled_from([s.name for s in run_steps]),
                                       max_size=2))
        got = dict(reused(spec(*run_steps), f"r{k - 1}", src, rerun_from))
        assert {n: (r.source, r.outputs) for n, r in got.items()} == {
            n: made[n] for n in got}
        # The next run's source: this run's StepRuns, reused ones as the core makes them,
        # the rest executed afresh (with the same inputs, so with the same digest).
        for s in run_steps:
            if s.name not in got:
                made[s.name] = (m.ReusedFrom(f"r{k}", f"r{k}-{s.name}", f"u{k}"),
                                (("o0", f"r{k}"),))
        src = {s.name: SourceStep(S, f"r{k}-{s.name}", f"u{k}", reused_status(
            got[s.name], T0) if s.name in got else replace(
            sr_status(s.name, S), outputs=made[s.name][1]), "d", "d") for s in run_steps}


def _ordered(run_steps: tuple[m.StepSpec, ...]) -> list[m.StepSpec]:
    by_name = {s.name: s for s in run_steps}
    return [by_name[f"s{i}"] for i in range(len(run_steps))]


# -- decide() on a re-run --------------------------------------------------------------------

REUSE_A = m.Reuse(made_by("a"), (("o0", "1"),))
REUSED_A = reused_status(REUSE_A, T0)
RERUN = observed(CHAIN, reused=(("a", REUSE_A), ("b", m.Reuse(made_by("b"), ()))))


def _made(name: str, status: m.StepRunStatus) -> tuple[act.CreateStepRun,
                                                       act.WriteStepRunStatus]:
    return act.CreateStepRun(name, f"r-{name}", None), act.WriteStepRunStatus(name, status)


def _reused_entry(name: str, status: m.StepRunStatus) -> m.StepState:
    return m.StepState(S, Reason.REUSED, status.message, f"r-{name}", 0, None, status.finished_at)


def test_reused_steps_are_made_succeeded_and_what_follows_starts_at_once() -> None:
    """The first decision makes every reused step's StepRun with its final status (no
    workload), records them Succeeded, and starts the first step that executes again."""
    d = decide(RERUN, T0)
    reused_b = reused_status(m.Reuse(made_by("b"), ()), T0)
    c = m.step_state(d.status, "c")
    assert d == Decision(expect(RERUN, RunPhase.RUNNING, {
        "a": _reused_entry("a", REUSED_A), "b": _reused_entry("b", reused_b), "c": c}), (
        act.CreateStepRun("a", "r-a", None), act.CreateStepRun("b", "r-b", None),
        act.CreateStepRun("c", "r-c", None), act.WriteStepRunStatus("a", REUSED_A),
        act.WriteStepRunStatus("b", reused_b), act.StartAttempt("c", 1),
        act.EmitEvent("run", None, "Normal", "Started", "the run started")), None)
    assert m.StepRunStatus(
        phase=S, reason=Reason.REUSED, attempts=0, finished_at=T0, outputs=(("o0", "1"),),
        message="not executed: reused the result of StepRun nightly-a of run nightly",
        reused_from=made_by("a")) == REUSED_A


def _seen(status: m.StepRunStatus | None) -> m.StepRunObservation:
    return m.StepRunObservation("r-a", status, attempt=m.AttemptObservation(
        1, m.WorkloadState.ABSENT))


def test_a_reused_steprun_seen_without_its_status_gets_it_and_never_a_workload() -> None:
    before = running_run(spec(A), {}, reused=RERUN.reused[:1])
    before = replace(before, step_runs=m.frozen_step_runs([("a", _seen(None))]))
    d = decide(before, at(2))
    written = reused_status(REUSE_A, at(2))
    assert [a for a in d.actions if not isinstance(a, act.EmitEvent)] == [
        act.WriteStepRunStatus("a", written)]
    assert m.step_state(d.status, "a") == _reused_entry("a", written)


def test_a_reused_steprun_with_another_status_is_never_run() -> None:
    """Written by someone else: the run follows it, but never runs anything for it."""
    before = running_run(spec(A), {}, reused=RERUN.reused[:1])
    before = replace(before, step_runs=m.frozen_step_runs([
        ("a", _seen(sr_status("a", StepPhase.PENDING)))]))
    d = decide(before, at(2))
    assert not [a for a in d.actions if isinstance(a, act.StartAttempt | act.CreateStepRun)]


def test_a_reused_steprun_recorded_but_never_seen_is_made_again() -> None:
    """Its create never landed (the run's status did): made again, as any StepRun recorded
    but never seen, and still with no workload."""
    before = running_run(spec(A, step("x")), {"x": (sr_status("x"), None)},
                         extra={"a": _reused_entry("a", REUSED_A)}, reused=RERUN.reused[:1])
    d = decide(before, at(2))
    assert d.actions[:2] == (act.CreateStepRun("a", "r-a", None),
                             act.WriteStepRunStatus("a", reused_status(REUSE_A, at(2))))
    assert not [a for a in d.actions if isinstance(a, act.StartAttempt) and a.step == "a"]


def test_a_stop_before_the_reuse_is_made_cancels_it_as_any_step_not_started() -> None:
    stopping = observed(replace(CHAIN, cancel_requested=True), reused=RERUN.reused)
    d = decide(stopping, T0)
    assert {n: (s.phase, s.reason) for n, s in d.status.step_states} == dict.fromkeys(
        "abc", (StepPhase.CANCELED, Reason.STOPPED_BEFORE_START))
    assert not [a for a in d.actions if isinstance(a, act.CreateStepRun | act.StartAttempt)]


def test_a_reused_step_with_a_condition_is_never_failed_by_its_gate() -> None:
    """Its condition held in the source with the same inputs; the gate is not asked again."""
    gated = spec(step("a", conditional=True))
    before = observed(gated, reused=RERUN.reused[:1],
                      gates=(("a", m.Gate(False, Reason.CONDITION_ERROR, "boom")),))
    d = decide(before, T0)
    assert d.actions[:2] == (act.CreateStepRun("a", "r-a", None),
                             act.WriteStepRunStatus("a", REUSED_A))


def test_a_rerun_that_reuses_every_step_succeeds_in_its_first_decision() -> None:
    d = decide(observed(spec(A), reused=RERUN.reused[:1]), T0)
    assert (d.status.phase, d.status.reason) == (RunPhase.SUCCEEDED, Reason.COMPLETED)
    assert m.step_state(d.status, "a") == _reused_entry("a", REUSED_A)
    assert [a for a in d.actions if not isinstance(a, act.EmitEvent)] == [
        act.CreateStepRun("a", "r-a", None), act.WriteStepRunStatus("a", REUSED_A)]


# -- a fan-out step, item by item ------------------------------------------------------------

FAN = step("f", "a", for_each=m.ForEach(parallelism=2))
FANNED = spec(A, FAN, step("after", "f"))


def item_source(index: int, digest: str | None = "d", **kw: object) -> SourceStep:
    return source(f"f-{index}", digest, **kw)


@pytest.mark.parametrize(("items", "rerun_from", "reused_now", "want"), [
    pytest.param([item_source(0), item_source(1)], [], {"a"}, [0, 1], id="all"),
    pytest.param([item_source(0), None, item_source(2)], [], {"a"}, [0, 2],
                 id="no-such-item-in-source"),
    pytest.param([item_source(0), replace(item_source(1), phase=StepPhase.FAILED,
                                          status=sr_status("f-1", StepPhase.FAILED))],
                 [], {"a"}, [0], id="one-failed"),
    pytest.param([item_source(0), replace(item_source(1), digest="other")], [], {"a"}, [0],
                 id="value-or-index-changed"),
    pytest.param([item_source(0, digest=None)], [], {"a"}, [], id="no-digest"),
    pytest.param([replace(item_source(0), step_run=None)], [], {"a"}, [], id="steprun-gone"),
    pytest.param([item_source(0)], ["f"], {"a"}, [], id="from"),
    pytest.param([item_source(0)], [], set(), [], id="a-need-executes-again"),
])
def test_which_items_of_a_fan_out_a_rerun_reuses(items: list[SourceStep | None],
                                                  rerun_from: list[str], reused_now: set[str],
                                                  want: list[int]) -> None:
    got = reused_items(FANNED, "f", SRC, items, rerun_from, reused_now)
    assert [i for i, _ in got] == want
    for index, r in got:
        assert r == m.Reuse(made_by(f"f-{index}"), (("o0", "1"),))


@pytest.mark.parametrize(("run_spec", "name"), [
    pytest.param(replace(FANNED, mode=Mode.REALTIME), "f", id="realtime"),
    pytest.param(FANNED, "after", id="not-a-fan-out"),
    pytest.param(replace(FANNED, steps=(A,), finally_steps=(FAN,)), "f", id="finally-step"),
])
def test_items_that_are_never_reused(run_spec: m.RunSpec, name: str) -> None:
    assert reused_items(run_spec, name, SRC, [item_source(0)], [], {"a"}) == ()


def test_an_item_the_source_reused_points_at_the_run_that_made_it() -> None:
    first = made_by("f-0", "first")
    got = reused_items(FANNED, "f", SRC, [item_source(0, status=done("f-0", reused_from=first))],
                       [], {"a"})
    assert got == ((0, m.Reuse(first, (("o0", "1"),))),)


ITEM_REUSE = m.Reuse(made_by("f-0"), (("o0", "1"),))
ALONE = spec(step("f", for_each=m.ForEach(parallelism=1)))
F_GATE = (("f", m.Gate(True, items=3)),)


def test_reused_items_are_made_succeeded_at_once_beside_parallelism() -> None:
    """Items 0 and 2 are reused: made with their final status in the decision that makes the
    step's items, whatever its parallelism; item 1 runs."""
    reuses = (("f[0]", ITEM_REUSE), ("f[2]", m.Reuse(made_by("f-2"), ())))
    d = decide(observed(ALONE, gates=F_GATE, reused=reuses), T0)
    creates = [a for a in d.actions if isinstance(a, act.CreateStepRun)]
    assert creates == [act.CreateStepRun("f[0]", "r-f-0", None),
                       act.CreateStepRun("f[1]", "r-f-1", None),
                       act.CreateStepRun("f[2]", "r-f-2", None)]
    assert [a for a in d.actions if isinstance(a, act.StartAttempt)] == [
        act.StartAttempt("f[1]", 1)]
    assert [a.step for a in d.actions if isinstance(a, act.WriteStepRunStatus)] == [
        "f[0]", "f[2]"]
    assert reused_status(ITEM_REUSE, T0) in [
        a.status for a in d.actions if isinstance(a, act.WriteStepRunStatus)]
    state = m.step_state(d.status, "f")
    assert state is not None
    assert state.items == m.ItemCounts(3, ((StepPhase.PENDING, 1), (S, 2)))


def test_a_rerun_reusing_every_item_succeeds_in_its_first_decision() -> None:
    reuses = tuple((f"f[{i}]", ITEM_REUSE) for i in range(3))
    d = decide(observed(ALONE, gates=F_GATE, reused=reuses), T0)
    assert (d.status.phase, d.status.reason) == (RunPhase.SUCCEEDED, Reason.COMPLETED)
    assert not [a for a in d.actions if isinstance(a, act.StartAttempt)]


def test_a_reused_item_seen_without_its_status_gets_it_and_never_a_workload() -> None:
    """Its create landed, its status write did not: written now, nothing started for it."""
    entry = m.StepState(StepPhase.RUNNING, items=m.ItemCounts(1, ((StepPhase.PENDING, 1),)),
                        started_at=T0)
    seen = m.StepRunObservation("r-f-0", None, attempt=m.AttemptObservation(
        1, m.WorkloadState.ABSENT))
    before = running_run(ALONE, {}, extra={"f": entry}, reused=(("f[0]", ITEM_REUSE),))
    before = replace(before, step_runs=m.frozen_step_runs([("f[0]", seen)]),
                     gates=(("f", m.Gate(True, items=1)),))
    d = decide(before, at(2))
    written = reused_status(ITEM_REUSE, at(2))
    assert act.WriteStepRunStatus("f[0]", written) in d.actions
    assert not [a for a in d.actions if isinstance(a, act.StartAttempt | act.CreateStepRun)]
    assert (d.status.phase, d.status.reason) == (RunPhase.SUCCEEDED, Reason.COMPLETED)
