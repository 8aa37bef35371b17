"""Fan-out: a step run once per item, each item a step of its own within the decision.

An item is a `Track` keyed `<step>[<index>]` (`naming.item_key`), with the step's spec less
what only the step as a whole has (its needs, condition and references were met before any
item was made). The run-level rules act on items one by one (`plan`), exactly as on steps;
the step's own state is what its items add up to (`aggregate`): counts by phase, the first
failures, one verdict. Only that reaches the run's record, so it keeps one size however many
items there are, while each item's detail lives in its StepRun.

Only the items a decision may change or act on are made tracks: those not started yet and
those that ended for good are counted (`Rest`), so a decision on a wide fan-out costs little
per item it leaves alone; `plan` makes waiting items tracks as it starts or ends them.
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
    StepRunStatus,
    StepSpec,
    StepState,
    WorkloadState,
)
from runctl.machine.naming import item_key, item_keys, parse_key
from runctl.machine.phases import STEP_FAILURES, STEP_TERMINAL, Mode, Reason, StepPhase
from runctl.machine.steps import (
    LIVE,
    Rest,
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

_PENDING = StepState(StepPhase.PENDING)
_NOTHING = Rest()

_MOVED = frozenset({StepPhase.RUNNING, *STEP_TERMINAL} - {StepPhase.SKIPPED})

# Members read for every item at every decision, bound once: on Python 3.11 reading a member
# off its Enum class goes through `EnumType.__getattr__`'s hook, several times a global's cost.
_SUCCEEDED, _CANCELED = StepPhase.SUCCEEDED, StepPhase.CANCELED
_WORKLOAD_SUCCEEDED, _WORKLOAD_FAILED = WorkloadState.SUCCEEDED, WorkloadState.FAILED
_REALTIME = Mode.REALTIME

Rule = Callable[[Track], tuple[StepPhase, str, str] | None]


def item_spec(spec: StepSpec, index: int) -> StepSpec:
    """What of the step one item runs under (made anew for every item at every decision:
    built whole, which costs a fraction of `replace`)."""
    return StepSpec(item_key(spec.name, index), (), spec.timeout_seconds, spec.retry,
                    spec.heartbeat_timeout_seconds, spec.outputs)


def ended_status(obs: StepRunObservation) -> StepRunStatus | None:
    """The status of an item whose StepRun records its end, with nothing observed that could
    be a late report of success on it; None for any other item."""
    status, attempt = obs.status, obs.attempt
    if status is None or status.phase not in STEP_TERMINAL or obs.gone:
        return None
    if attempt is not None and attempt.state is WorkloadState.SUCCEEDED and not (
            status.phase is StepPhase.SUCCEEDED and attempt.output_problem is None):
        return None
    return status


def settled(spec: StepSpec, obs: StepRunObservation) -> Track | None:
    """An item that ended (`ended_status`): what `observe_step` makes of it, without going
    through each of its rules (most items of a wide fan-out are such, at every decision)."""
    status = ended_status(obs)
    if status is None:
        return None
    return Track(spec, None, vanished(obs, status), state_of(status, obs.name), status,
                 standing=status)


def at_rest(obs: StepRunObservation, mode: Mode) -> StepRunStatus | None:
    """The status of an item nothing can change or act on while its step is not recorded
    final: it ended (`ended_status`), so no rule touches it and its StepRun has nothing to be
    written, and its workload holds no pod to stop (its StepRun's finalizer goes with its
    step's final record, its deletion with the run's). None for any other item.
    (`ended_status` and `holds_pods` written out: most items of a wide fan-out come here at
    every decision.)"""
    status = obs.status
    if status is None or obs.gone or status.phase not in STEP_TERMINAL:
        return None
    attempt = obs.attempt
    if attempt is None:
        return status
    state = attempt.state
    if state is _WORKLOAD_SUCCEEDED and not (
            status.phase is _SUCCEEDED and attempt.output_problem is None):
        return None
    if attempt.stopping:
        return status
    if state in LIVE or attempt.live_pods > 0 or (
            mode is _REALTIME and state is _WORKLOAD_FAILED):
        return None
    return status


def index_of(item: Track) -> int:
    return parse_key(item.name)[1] or 0


def _recorded_item(obs: StepRunObservation, final: StepState) -> StepState:
    """An item as the step's final record has it: its StepRun's own end, or for one whose end
    was never written, ended with the step (the record counts it so)."""
    if obs.status is not None and obs.status.phase in STEP_TERMINAL:
        return state_of(obs.status, obs.name)
    return StepState(StepPhase.CANCELED, Reason.CANCELED, "stopped: its step had ended",
                     step_run=obs.name, finished_at=final.finished_at)


def waiting_item(spec: StepSpec, index: int) -> Track:
    """An item not started: no StepRun, not skipped, its step not recorded final."""
    return Track(item_spec(spec, index), None, None, _PENDING, None)


def _item(spec: StepSpec, index: int, final: StepState | None, skipped: str | None,
          obs: StepRunObservation | None, ctx: StepContext) -> Track:
    """One item: observed like a step when it has a StepRun; else not started (Pending),
    skipped by its condition, or, once its step is recorded final, never to start."""
    if obs is not None:
        s = item_spec(spec, index)
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
        return waiting_item(spec, index)
    return Track(item_spec(spec, index), state if final is not None else None, None, state,
                 None)


def expand(spec: StepSpec, recorded: StepState | None, total: int, gate: Gate | None,
           step_runs: Mapping[str, StepRunObservation], ctx: StepContext, *,
           lazy: bool = True) -> Track:
    """The step with its `total` items, each as observed (`gate`: its skipped items). Items
    not started and items `at_rest` are counted in the step's `rest`, not made tracks, unless
    it is recorded final (few decisions see such a step) or not `lazy`."""
    final = recorded if recorded is not None and recorded.phase in STEP_TERMINAL else None
    skipped = gate.skipped if gate is not None else frozenset()
    why = (gate.message if gate is not None else None) or "its condition is false"
    counting = lazy and final is None
    held: list[Track] = []
    waiting: list[int] = []
    ended: list[StepPhase] = []
    failures: list[tuple[dt.datetime, int, StepState]] = []
    canceled: tuple[int, StepState] | None = None
    mode, get = ctx.mode, step_runs.get
    for i, key in enumerate(item_keys(spec.name, total)):
        obs = get(key)
        if obs is None:
            if counting and i not in skipped:
                waiting.append(i)
            else:
                held.append(_item(spec, i, final, why if i in skipped else None, None, ctx))
            continue
        status = at_rest(obs, mode) if counting else None
        if status is None:
            held.append(_item(spec, i, final, why if i in skipped else None, obs, ctx))
            continue
        phase = status.phase
        ended.append(phase)
        if phase in STEP_FAILURES:
            failures.append((status.finished_at or _EPOCH, i, state_of(status, obs.name)))
        elif phase is _CANCELED and canceled is None:
            canceled = (i, state_of(status, obs.name))
    counts = Counter(ended)
    rest = Rest(tuple(waiting), tuple((p, counts[p]) for p in StepPhase if counts[p]),
                tuple(failures), canceled)
    return with_items(Track(spec, recorded, None, recorded or _PENDING, None, rest=rest),
                      tuple(held), ctx.now)


def observe_fan_out(spec: StepSpec, recorded: StepState | None, gate: Gate | None,
                    step_runs: Mapping[str, StepRunObservation], ctx: StepContext, *,
                    lazy: bool = True) -> Track:
    """A fan-out step as observed. Its items are known once its record counts them, or once
    one of them has a StepRun (its count then comes from its gate); until then it is one step,
    waiting (`plan` expands it when it may start)."""
    total = recorded.items.total if recorded is not None and recorded.items else None
    if total is None and gate is not None and gate.reason is None and any(
            parse_key(key)[0] == spec.name for key in step_runs if key != spec.name):
        total = gate.items
    if total is None:
        return Track(spec, recorded, None, recorded or _PENDING, None)
    return expand(spec, recorded, total, gate, step_runs, ctx, lazy=lazy)


def with_items(track: Track, items: tuple[Track, ...], now: dt.datetime) -> Track:
    return replace(track, items=items, state=aggregate(track.recorded, items, track.rest, now))


def made_waiting(track: Track, count: int | None = None,
                 slotless: Callable[[int], bool] | None = None,
                 make: Callable[[StepSpec, int], Track] = waiting_item) -> Track:
    """The step with its first `count` waiting items (all by default) made tracks (by `make`,
    from the step's spec and the item's index), in index order among the others, and with
    every waiting item `slotless` names (items a re-run reuses, which run nothing and take no
    slot) besides."""
    rest = track.rest or _NOTHING
    if count is None:
        picked = list(rest.waiting)
    elif slotless is None:
        picked = list(rest.waiting[:count])
    else:
        picked = []
        for i in rest.waiting:
            if slotless(i):
                picked.append(i)
            elif count > 0:
                picked.append(i)
                count -= 1
    made = [make(track.spec, i) for i in picked]
    if not made:
        return track
    held = track.items or ()
    # Waiting items mostly come after every held one: then they need no sorting in.
    after = not held or index_of(held[-1]) < picked[0]
    items = (*held, *made) if after else tuple(sorted((*held, *made), key=index_of))
    left = (rest.waiting[len(picked):] if picked == list(rest.waiting[:len(picked)])
            else tuple(i for i in rest.waiting if i not in set(picked)))
    return replace(track, items=items, rest=replace(rest, waiting=left))


def end_items(track: Track, rule: Rule, now: dt.datetime) -> Track:
    """The step with each of its going items ended as `rule` says (None: left going)."""
    track = made_waiting(track)
    out = []
    for item in track.items or ():
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
    return min((at for at, _, _ in _failures(track.items or (), track.rest)), default=None)


def began(track: Track) -> bool:
    """Was anything of the step started (a StepRun made for it or one of its items)?"""
    return track.state.step_run is not None or bool(track.rest and track.rest.ended) or any(
        i.state.step_run is not None for i in track.items or ())


def _failures(items: tuple[Track, ...], rest: Rest | None
              ) -> list[tuple[dt.datetime, int, StepState]]:
    """The failed items, held or counted, in the order they failed (ties by index)."""
    held = [(i.state.finished_at or _EPOCH, index_of(i), i.state) for i in items
            if i.state.phase in STEP_FAILURES]
    return sorted([*held, *(rest.failures if rest is not None else ())],
                  key=lambda f: (f[0], f[1]))


def aggregate(recorded: StepState | None, items: tuple[Track, ...], rest: Rest | None,
              now: dt.datetime) -> StepState:
    """What a fan-out step's items (held in `items`, counted in `rest`) add up to, kept whole
    once recorded final. Going while any item goes; then the first failure's phase and reason,
    naming that item; else Canceled if any item was; Skipped if all were; else Succeeded
    (NoItems for none)."""
    rest = rest or _NOTHING
    counts = Counter(i.state.phase for i in items)
    counts.update(dict(rest.ended))
    if rest.waiting:
        counts[StepPhase.PENDING] += len(rest.waiting)
    total = sum(counts.values())
    failed = _failures(items, rest)
    started = bool(rest.ended) or any(i.state.step_run is not None for i in items)
    # Running once an item runs or ended (a skip by its condition is no progress).
    moving = any(p in _MOVED for p in counts)
    going = total - sum(n for phase, n in counts.items() if phase in STEP_TERMINAL)
    if going:
        phase, reason, message = (StepPhase.RUNNING if moving else StepPhase.PENDING), None, ""
    else:
        phase, reason, message = _verdict(items, rest, counts, failed, total)
    state = StepState(
        phase, reason, message[:MAX_MESSAGE] or None,
        started_at=(recorded.started_at if recorded else None) or (now if started else None),
        finished_at=None if going else now,
        items=ItemCounts(total, tuple((p, counts[p]) for p in StepPhase if counts[p])),
        failed_items=tuple(FailedItem(index, s.reason, s.message, s.finished_at)
                           for _, index, s in failed[:MAX_FAILED_ITEMS]))
    return keep_final_state(recorded, state)


def _verdict(items: tuple[Track, ...], rest: Rest, counts: Counter[StepPhase],
             failed: list[tuple[dt.datetime, int, StepState]], total: int
             ) -> tuple[StepPhase, str, str]:
    if failed:
        _, index, first = failed[0]
        return (first.phase, first.reason or first.phase,
                f"item {index} of {total} ended {first.phase}: {first.message}; "
                f"{len(failed)} of {total} items failed")
    canceled = counts[StepPhase.CANCELED]
    if canceled:
        held = next(((index_of(i), i.state) for i in items
                     if i.state.phase is StepPhase.CANCELED), None)
        first = min((c for c in (held, rest.canceled) if c is not None),
                    key=lambda c: c[0])[1]
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
