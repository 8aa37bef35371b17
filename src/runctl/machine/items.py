"""Fan-out: a step run once per item, each item a step of its own within the decision.

An item is a `Track` keyed `<step>[<index>]` (`naming.item_key`), with the step's spec less
what only the step as a whole has (its needs, condition and references were met before any
item was made). The run-level rules act on items one by one (`plan`), exactly as on steps;
the step's own state is what its items add up to (`aggregate`): counts by phase, the first
failures, one verdict. Only that reaches the run's record, so it keeps one size however many
items there are, while each item's detail lives in its StepRun.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace

from runctl.machine.failures import MAX_MESSAGE
from runctl.machine.model import (
    FailedItem,
    Gate,
    ItemCounts,
    StepRunObservation,
    StepSpec,
    StepState,
    WorkloadState,
)
from runctl.machine.naming import item_key, parse_key
from runctl.machine.phases import STEP_FAILURES, STEP_TERMINAL, Reason, StepPhase
from runctl.machine.steps import (
    StepContext,
    Track,
    end,
    keep_final_state,
    observe_step,
    state_of,
    vanished,
)

MAX_FAILED_ITEMS = 10
"""How many failed items a fan-out step's record names (the first to fail)."""

_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)

_MOVED = frozenset({StepPhase.RUNNING, *STEP_TERMINAL} - {StepPhase.SKIPPED})

Rule = Callable[[Track], tuple[StepPhase, str, str] | None]


def item_spec(spec: StepSpec, index: int) -> StepSpec:
    """What of the step one item runs under (made anew for every item at every decision:
    built whole, which costs a fraction of `replace`)."""
    return StepSpec(item_key(spec.name, index), (), spec.timeout_seconds, spec.retry,
                    spec.heartbeat_timeout_seconds, spec.outputs)


def settled(spec: StepSpec, obs: StepRunObservation) -> Track | None:
    """An item whose StepRun records its end, with nothing observed that could be a late
    report of success on it: what `observe_step` makes of it, without going through each of
    its rules (most items of a wide fan-out are such, at every decision)."""
    status, attempt = obs.status, obs.attempt
    if status is None or status.phase not in STEP_TERMINAL or obs.gone:
        return None
    if attempt is not None and attempt.state is WorkloadState.SUCCEEDED and not (
            status.phase is StepPhase.SUCCEEDED and attempt.output_problem is None):
        return None
    return Track(spec, None, vanished(obs, status), state_of(status, obs.name), status,
                 standing=status)


def index_of(item: Track) -> int:
    return parse_key(item.name)[1] or 0


def _recorded_item(obs: StepRunObservation, final: StepState) -> StepState:
    """An item as the step's final record has it: its StepRun's own end, or for one whose end
    was never written, ended with the step (the record counts it so)."""
    if obs.status is not None and obs.status.phase in STEP_TERMINAL:
        return state_of(obs.status, obs.name)
    return StepState(StepPhase.CANCELED, Reason.CANCELED, "stopped: its step had ended",
                     step_run=obs.name, finished_at=final.finished_at)


def _item(spec: StepSpec, index: int, final: StepState | None, skipped: str | None,
          obs: StepRunObservation | None, ctx: StepContext) -> Track:
    """One item: observed like a step when it has a StepRun; else not started (Pending),
    skipped by its condition, or, once its step is recorded final, never to start."""
    s = item_spec(spec, index)
    if obs is not None:
        ended = settled(s, obs) if final is None else None
        if ended is not None:
            return ended
        return observe_step(s, None if final is None else _recorded_item(obs, final), obs, ctx)
    if skipped is not None:
        state = StepState(StepPhase.SKIPPED, Reason.CONDITION_FALSE, skipped,
                          finished_at=ctx.now)
    elif final is not None:
        state = StepState(StepPhase.CANCELED, Reason.STOPPED_BEFORE_START,
                          "not started: its step had ended", finished_at=final.finished_at)
    else:
        state = StepState(StepPhase.PENDING)
    return Track(s, state if final is not None else None, None, state, None)


def expand(spec: StepSpec, recorded: StepState | None, total: int, gate: Gate | None,
           step_runs: Mapping[str, StepRunObservation], ctx: StepContext) -> Track:
    """The step with its `total` items, each as observed (`gate`: its skipped items)."""
    final = recorded if recorded is not None and recorded.phase in STEP_TERMINAL else None
    skipped = gate.skipped if gate is not None else frozenset()
    why = (gate.message if gate is not None else None) or "its condition is false"
    items = tuple(_item(spec, i, final, why if i in skipped else None,
                        step_runs.get(item_key(spec.name, i)), ctx) for i in range(total))
    return with_items(Track(spec, recorded, None, recorded or StepState(StepPhase.PENDING),
                            None), items, ctx.now)


def observe_fan_out(spec: StepSpec, recorded: StepState | None, gate: Gate | None,
                    step_runs: Mapping[str, StepRunObservation], ctx: StepContext) -> Track:
    """A fan-out step as observed. Its items are known once its record counts them, or once
    one of them has a StepRun (its count then comes from its gate); until then it is one step,
    waiting (`plan` expands it when it may start)."""
    total = recorded.items.total if recorded is not None and recorded.items else None
    if total is None and gate is not None and gate.reason is None and any(
            parse_key(key)[0] == spec.name for key in step_runs if key != spec.name):
        total = gate.items
    if total is None:
        return Track(spec, recorded, None, recorded or StepState(StepPhase.PENDING), None)
    return expand(spec, recorded, total, gate, step_runs, ctx)


def with_items(track: Track, items: tuple[Track, ...], now: dt.datetime) -> Track:
    return replace(track, items=items, state=aggregate(track.recorded, items, now))


def end_items(track: Track, items: tuple[Track, ...], rule: Rule, now: dt.datetime) -> Track:
    """The step with each of its going items ended as `rule` says (None: left going)."""
    out = []
    for item in items:
        verdict = None if item.terminal else rule(item)
        out.append(item if verdict is None else end(item, *verdict, now))
    return with_items(track, tuple(out), now)


def failed_at(track: Track) -> dt.datetime | None:
    """When the step failed: a fan-out when its first item did (the first its record names);
    None if it did not."""
    if track.state.failed_items:
        return track.state.failed_items[0].finished_at or _EPOCH
    if track.state.phase in STEP_FAILURES:
        return track.state.finished_at or _EPOCH
    return min((i.state.finished_at or _EPOCH for i in track.items or ()
                if i.state.phase in STEP_FAILURES), default=None)


def began(track: Track) -> bool:
    """Was anything of the step started (a StepRun made for it or one of its items)?"""
    return track.state.step_run is not None or any(
        i.state.step_run is not None for i in track.items or ())


def aggregate(recorded: StepState | None, items: tuple[Track, ...],
              now: dt.datetime) -> StepState:
    """What a fan-out step's items add up to, kept whole once recorded final. Going while any
    item goes; then the first failure's phase and reason, naming that item; else Canceled if
    any item was; Skipped if all were; else Succeeded (NoItems for none)."""
    counts = Counter(i.state.phase for i in items)
    total = len(items)
    failed = sorted((i for i in items if i.state.phase in STEP_FAILURES),
                    key=lambda i: (i.state.finished_at or _EPOCH, index_of(i)))
    started = any(i.state.step_run is not None for i in items)
    # Running once an item runs or ended (a skip by its condition is no progress).
    moving = any(p in _MOVED for p in counts)
    going = total - sum(n for phase, n in counts.items() if phase in STEP_TERMINAL)
    if going:
        phase, reason, message = (StepPhase.RUNNING if moving else StepPhase.PENDING), None, ""
    else:
        phase, reason, message = _verdict(items, counts, failed, total)
    state = StepState(
        phase, reason, message[:MAX_MESSAGE] or None,
        started_at=(recorded.started_at if recorded else None) or (now if started else None),
        finished_at=None if going else now,
        items=ItemCounts(total, tuple((p, counts[p]) for p in StepPhase if counts[p])),
        failed_items=tuple(FailedItem(index_of(i), i.state.reason, i.state.message,
                                      i.state.finished_at)
                           for i in failed[:MAX_FAILED_ITEMS]))
    return keep_final_state(recorded, state)


def _verdict(items: tuple[Track, ...], counts: Counter[StepPhase], failed: list[Track],
             total: int) -> tuple[StepPhase, str, str]:
    if failed:
        first = failed[0].state
        return (first.phase, first.reason or first.phase,
                f"item {index_of(failed[0])} of {total} ended {first.phase}: {first.message}; "
                f"{len(failed)} of {total} items failed")
    canceled = counts[StepPhase.CANCELED]
    if canceled:
        first = next(i.state for i in items if i.state.phase is StepPhase.CANCELED)
        return (StepPhase.CANCELED, first.reason or StepPhase.CANCELED,
                f"{canceled} of {total} items canceled: {first.message}")
    skipped = counts[StepPhase.SKIPPED]
    if total and skipped == total:
        return StepPhase.SKIPPED, Reason.CONDITION_FALSE, f"all {total} items were skipped"
    if not total:
        return StepPhase.SUCCEEDED, Reason.NO_ITEMS, "no items: its list is empty"
    return (StepPhase.SUCCEEDED, Reason.COMPLETED,
            f"{total - skipped} of {total} items succeeded" + (
                f", {skipped} skipped" if skipped else ""))
