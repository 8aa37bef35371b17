"""Items left alone are counted, not made tracks (`steps.Rest`): a decision on any fan-out
is exactly the one made with every item a track, statuses, actions and requeue included."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runctl.machine import items
from runctl.machine import model as m
from runctl.machine.decide import Decision, decide
from runctl.machine.items import expand
from runctl.machine.phases import STEP_TERMINAL, Mode, OnFailure, RunPhase, StepPhase
from runctl.machine.steps import StepContext, Track
from tests.unit.builders import at, observed, run_status, spec, sr_status, step, work

P = StepPhase
W = m.WorkloadState


def _eagerly(o: m.Observed, now: float) -> Decision:
    """The decision with every item of every fan-out made a track, wherever it is made."""
    def eager(*args: Any, **kw: Any) -> Track:
        return expand(*args, **{**kw, "lazy": False})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(items, "expand", eager)
        return decide(o, at(now))


@st.composite
def item_runs(draw: st.DrawFn, index: int) -> m.StepRunObservation:
    """The StepRun of item `index` of step f as a shell may see it: in any phase (mostly
    ended), its pod in any state (a stop sent or not, pods left), being deleted or gone."""
    phase = draw(st.sampled_from([None, *P, *[P.SUCCEEDED] * 6, P.CANCELED]))
    finished = draw(st.integers(1, 8)) if phase in STEP_TERMINAL else None
    status = None if phase is None else sr_status(
        f"f-{index}", phase, finished=finished, reason=draw(st.sampled_from(["StepFailed",
                                                                              "OutputMissing"])),
        message=f"m{index}")
    attempt = None if draw(st.integers(0, 5)) == 0 else work(
        draw(st.sampled_from(list(W))), stopping=draw(st.booleans()),
        live_pods=draw(st.integers(0, 1)),
        output_problem=draw(st.sampled_from([None, ("OutputMissing", "o is missing")])))
    gone = draw(st.integers(0, 7)) == 0
    return m.StepRunObservation(f"r-f-{index}", status, deleting=draw(st.integers(0, 5)) == 0,
                                gone=gone, attempt=None if gone else attempt)


@st.composite
def fan_outs(draw: st.DrawFn) -> tuple[m.Observed, float]:
    total = draw(st.integers(0, 12))
    made = draw(st.integers(0, total))  # items are made in index order, mostly
    runs = {f"f[{i}]": draw(item_runs(i)) for i in range(total)
            if i < made or draw(st.integers(0, 5)) == 0}
    recorded = draw(st.sampled_from([None, P.PENDING, P.RUNNING, P.SUCCEEDED, P.FAILED,
                                     P.CANCELED]))
    entry = None if recorded is None else m.StepState(
        recorded, items=m.ItemCounts(total, ((P.PENDING, total),) if total else ()),
        started_at=at(0), finished_at=at(5) if recorded in STEP_TERMINAL else None)
    run_spec = spec(step("f", for_each=m.ForEach(draw(st.integers(1, 4))),
                         timeout_seconds=draw(st.sampled_from([None, 4]))),
                    step("after", "f"),
                    on_failure=draw(st.sampled_from(list(OnFailure))),
                    cancel_requested=draw(st.integers(0, 5)) == 0,
                    timeout_seconds=draw(st.sampled_from([None, None, 9])),
                    ttl_seconds_after_finished=draw(st.sampled_from([None, 0])),
                    parallelism=draw(st.sampled_from([None, None, 1, 2, 3])))
    skipped = frozenset(draw(st.sets(st.integers(0, total - 1), max_size=2)) if total else ())
    gate = m.Gate(True, message="skipped", items=total, skipped=skipped)
    phase = draw(st.sampled_from([*[RunPhase.RUNNING] * 4, RunPhase.STOPPING,
                                  RunPhase.SUCCEEDED]))
    states = {"f": entry} if entry is not None else {}
    finished = at(6) if phase is RunPhase.SUCCEEDED else None
    o = observed(run_spec, run_status(phase, states, finished_at=finished), runs,
                 gates=(("f", gate),) if draw(st.integers(0, 5)) else ())
    return o, draw(st.sampled_from([6, 10]))


@given(fan_outs())
def test_a_decision_is_the_one_made_with_every_item_a_track(case: tuple[m.Observed, float]
                                                             ) -> None:
    o, now = case
    assert decide(o, at(now)) == _eagerly(o, now)


def test_items_left_alone_are_counted_not_made_tracks() -> None:
    """Of 6 items, one running, one ended with a pod still live, two ended for good, two not
    started: only the first two are tracks."""
    runs = {
        "f[0]": m.StepRunObservation("r-f-0", sr_status("f-0", P.RUNNING),
                                     attempt=work(W.RUNNING)),
        "f[1]": m.StepRunObservation("r-f-1", sr_status("f-1", P.FAILED, finished=3),
                                     attempt=work(W.FAILED, live_pods=1)),
        "f[2]": m.StepRunObservation("r-f-2", sr_status("f-2", P.SUCCEEDED, finished=2),
                                     attempt=work(W.SUCCEEDED)),
        "f[3]": m.StepRunObservation("r-f-3", sr_status("f-3", P.CANCELED, finished=2)),
    }
    ctx = StepContext(mode=Mode.BATCH, now=at(9), halting=False, deadline=None)
    track = expand(step("f", for_each=m.ForEach(2)), None, 6, None, runs, ctx)
    assert [i.name for i in track.items or ()] == ["f[0]", "f[1]"]
    assert track.rest is not None
    assert track.rest.waiting == (4, 5)
    assert track.rest.ended == ((P.SUCCEEDED, 1), (P.CANCELED, 1))


def _ended(index: int, phase: P, finished: float, *, live: bool = False
           ) -> tuple[str, m.StepRunObservation]:
    """Item `index` ended; its pod still holds a pod (`live`: it stays a track) or none."""
    status = sr_status(f"f-{index}", phase, finished=finished, reason=phase.value,
                       message=f"m{index}")
    pod = work(W.FAILED, live_pods=1 if live else 0)
    return f"f[{index}]", m.StepRunObservation(f"r-f-{index}", status, attempt=pod)


@pytest.mark.parametrize(("runs", "message"), [
    # The first canceled item by index names the verdict, counted or a track.
    ([_ended(0, P.SUCCEEDED, 1), _ended(1, P.CANCELED, 4), _ended(2, P.CANCELED, 2, live=True),
      _ended(3, P.CANCELED, 1)], "3 of 4 items canceled: m1"),
    ([_ended(0, P.CANCELED, 4, live=True), _ended(1, P.CANCELED, 1)],
     "2 of 2 items canceled: m0"),
    # Failures at the same time are in index order, counted or a track.
    ([_ended(0, P.FAILED, 3), _ended(1, P.FAILED, 3, live=True)],
     "item 0 of 2 ended Failed: m0; 2 of 2 items failed"),
])
def test_the_verdict_names_the_same_item_counted_or_a_track(
        runs: list[tuple[str, m.StepRunObservation]], message: str) -> None:
    total = len(runs)
    entry = m.StepState(P.RUNNING, items=m.ItemCounts(total, ((P.RUNNING, total),)),
                        started_at=at(0))
    o = observed(spec(step("f", for_each=m.ForEach(2))),
                 run_status(RunPhase.RUNNING, {"f": entry}), dict(runs),
                 gates=(("f", m.Gate(True, items=total)),))
    d = decide(o, at(9))
    state = m.step_state(d.status, "f")
    assert state is not None
    assert state.message == message
    assert d == _eagerly(o, 9)
