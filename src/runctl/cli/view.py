"""What a person sees of a run, computed from the objects alone: no I/O, no clock.

`run_view(storyrun, stepruns, now)` turns the API's JSON of one StoryRun and its StepRuns into a
`RunView`: a header and one `StepLine` a step, in DAG order, each step under the step it needs.
A step that needs several is shown once, under the first it names, and its other needs are
named on its line, so a fan-in is never drawn twice. A fan-out step (`forEach`) is one line
whose items the run's record counts; `item_lines` makes a line of each item's StepRun for
`runctl get RUN --items STEP`. Every command that shows a run (`get`, `watch`, `stop --watch`)
renders this one value, so they cannot disagree; the time is passed in, so the same objects
always give the same text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from runctl.api.resources import (
    StepRun,
    StoryRun,
    executed_finally,
    executed_steps,
    parse_step_run,
    parse_story_run,
)
from runctl.api.spec import StepSpec
from runctl.api.status import RerunRecord, StepRunStatus, StepState, WorkloadRef
from runctl.cli.fanout import Items, fan_out_steps, item_index, items_of
from runctl.machine.durations import go_duration
from runctl.machine.naming import workload_ref
from runctl.machine.phases import RUN_TERMINAL, STEP_TERMINAL, Mode, Reason, StepPhase
from runctl.timefmt import fmt_time, parse_time

PENDING = StepPhase.PENDING.value


@dataclass(frozen=True)
class StepLine:
    """One step as a row: `branch` is the tree drawing before it ("├─ ", "│  └─ ")."""

    branch: str
    name: str
    phase: str
    attempts: str
    duration: str
    note: str
    also_needs: tuple[str, ...]
    step_run: str
    started: str
    finished: str
    workload: str
    fan_out: bool = False
    items: Items | None = None
    """A fan-out step's items as the run's record counts them (None until it does)."""
    under: str = ""
    """The tree drawing before a line shown under this step (its failed items)."""


@dataclass(frozen=True)
class RunView:
    name: str
    namespace: str
    mode: str
    phase: str
    reason: str
    message: str
    progress: str
    started: str
    duration: str
    stop: str
    steps: tuple[StepLine, ...]
    rerun: str = ""
    """A re-run: the run it runs again, and how many steps it reused."""

    @property
    def terminal(self) -> bool:
        return self.phase in RUN_TERMINAL


def _elapsed(start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime) -> str:
    """Whole seconds from `start` to `end` (or to `now` while it runs); "" before a start."""
    if start is None:
        return ""
    seconds = max(0, int(((end or now) - start).total_seconds()))
    return go_duration(dt.timedelta(seconds=seconds))


def _note(reason: str | None, message: str | None) -> str:
    """`Reason: message`, or whichever of them there is, on one line."""
    text = ": ".join(part for part in (reason, message) if part)
    return " ".join(text.split())


def _state(recorded: StepState | None, live: StepRunStatus | None
           ) -> StepState | StepRunStatus | None:
    """The state to show: the run's record once it is terminal (final, and kept after the
    StepRun is deleted), else the StepRun's own status, which the operator writes first."""
    if recorded is not None and recorded.phase in STEP_TERMINAL:
        return recorded
    return live if live is not None and live.phase is not None else recorded


def _line(spec: StepSpec, branch: str, also: list[str], recorded: StepState | None,
          step_run: StepRun | None, now: dt.datetime, reused_from: str = "") -> StepLine:
    live = step_run.status if step_run is not None else None
    state = _state(recorded, live)
    note = _note(state.reason, state.message) if state is not None else ""
    if reused_from and state is not None and state.reason == Reason.REUSED:
        note = f"Reused from run {reused_from}"  # the run that really executed it
    phase = str(state.phase) if state is not None and state.phase is not None else PENDING
    tries = state.attempts if state is not None else 0
    limit = (spec.retry.limit if spec.retry is not None else 0) + 1
    started = state.started_at if state is not None else None
    finished = state.finished_at if state is not None else None
    workload = live.workload if live is not None else _first_workload(step_run)
    return StepLine(
        branch=branch, name=spec.name, phase=phase,
        attempts=f"{tries}/{limit}" if tries else "",
        duration=_elapsed(started, finished, now),
        note=note, also_needs=tuple(also),
        step_run=(recorded.step_run if recorded is not None else None)
        or (step_run.metadata.get("name", "") if step_run is not None else ""),
        started=fmt_time(started) or "", finished=fmt_time(finished) or "",
        workload=f"{workload.kind}/{workload.name}" if workload is not None else "",
    )


def _first_workload(step_run: StepRun | None) -> WorkloadRef | None:
    """A StepRun with no status yet is at its first attempt, whose workload's name is fixed
    (docs/API.md, StepRun): shown before the operator's first write names it."""
    if step_run is None or step_run.status is not None:
        return None
    ref = workload_ref(Mode(step_run.spec.mode), step_run.metadata.get("name", ""), 1)
    return WorkloadRef(kind=ref.kind, name=ref.name)


def tree_order(steps: Iterable[StepSpec]) -> list[tuple[StepSpec, str, str, list[str]]]:
    """Each step with its tree drawing, the drawing of a line shown under it (not a step), and
    the needs it is not drawn under, depth first.

    A step hangs under the first step it needs; steps that need nothing are the roots; siblings
    keep spec order. Admission refuses cycles and unknown needs, so every step is reached."""
    steps = list(steps)
    names = {s.name for s in steps}
    children: dict[str | None, list[StepSpec]] = {}
    for s in steps:
        parent = next((n for n in s.needs if n in names), None)
        children.setdefault(parent, []).append(s)
    out: list[tuple[StepSpec, str, str, list[str]]] = []

    def walk(parent: str | None, indent: str) -> None:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            branch = "" if parent is None else indent + ("└─ " if last else "├─ ")
            below = "" if parent is None else indent + ("   " if last else "│  ")
            under = below + ("│  " if s.name in children else "   ")
            out.append((s, branch, under, list(s.needs[1:])))
            walk(s.name, below)

    walk(None, "")
    return out


_FINALLY = "finally: "
"""Drawn before each finally step that needs no other: they run once every step above ends."""


def _owned(step_run: StepRun, uid: str | None) -> bool:
    """Whether a StepRun belongs to this run, not to an earlier one of the same name."""
    refs = step_run.metadata.get("ownerReferences") or []
    return uid is None or any(ref.get("uid") == uid for ref in refs)


def _stop(run: StoryRun) -> str:
    stop = run.status.stop if run.status is not None else None
    if stop is None:
        return ""
    parts = [f"{label} {fmt_time(when)}" for label, when in (
        ("requested", stop.requested_at), ("observed", stop.observed_at),
        ("completed", stop.completed_at)) if when is not None]
    if stop.trigger is not None:
        parts.append(f"by {stop.trigger}")
    return ", ".join(parts)


def run_view(storyrun: Mapping[str, Any], stepruns: Iterable[Mapping[str, Any]],
             now: dt.datetime) -> RunView:
    """The view of one run from its StoryRun and StepRuns as the API returns them."""
    run = parse_story_run(storyrun)
    status = run.status
    uid = run.metadata.get("uid")
    by_step = {sr.spec.step: sr for sr in map(parse_step_run, stepruns) if _owned(sr, uid)}
    recorded = (status.step_states if status is not None else None) or {}
    finals = executed_finally(run)
    named = {s.name for s in finals}
    margin = " " * len(_FINALLY)
    drawn = [*tree_order(s for s in executed_steps(run) if s.name not in named),
             *((spec, _FINALLY + branch if not branch else margin + branch, margin + under, also)
               for spec, branch, under, also in tree_order(finals))]
    record = status.rerun if status is not None else None
    made_by = {step: r.story_run for step, r in ((record.steps or {}) if record else {}).items()}
    fan_outs = fan_out_steps(storyrun)
    states = (storyrun.get("status") or {}).get("stepStates") or {}
    lines = tuple(
        replace(_line(spec, branch, also, recorded.get(spec.name), None, now), under=under,
                fan_out=True, items=items_of(states.get(spec.name))) if spec.name in fan_outs
        else _line(spec, branch, also, recorded.get(spec.name), by_step.get(spec.name), now,
                   made_by.get(spec.name, ""))
        for spec, branch, under, also in drawn)
    started = status.started_at if status is not None else None
    phase = status.phase if status is not None else None
    terminal = phase in RUN_TERMINAL
    # Whole seconds from the recorded start to the recorded end (or to now while it runs), as
    # for each step; startedAt and finishedAt are stored in whole seconds.
    duration = _elapsed(started, status.finished_at if status is not None and terminal else None,
                        now)
    return RunView(
        name=run.metadata.get("name", ""), namespace=run.metadata.get("namespace", ""),
        mode=str(run.spec.mode), phase=str(phase) if phase is not None else PENDING,
        reason=(status.reason or "") if status is not None else "",
        message=" ".join(((status.message or "") if status is not None else "").split()),
        progress=(status.progress or "") if status is not None else "",
        started=fmt_time(started) or "", duration=duration, stop=_stop(run), steps=lines,
        rerun=_rerun(run, record),
    )


def item_lines(storyrun: Mapping[str, Any], stepruns: Iterable[Mapping[str, Any]],
               now: dt.datetime) -> list[StepLine]:
    """One line an item of the run, named by its index, in index order: each from the item's
    own StepRun as a step's line is (attempts of its retry policy, times, workload, reason)."""
    uid = (storyrun.get("metadata") or {}).get("uid")
    lines = []
    for body in stepruns:
        step_run = parse_step_run(body)
        if _owned(step_run, uid):
            lines.append((item_index(body), step_run))
    return [replace(_line(step_run.spec, "", [], None, step_run, now), name=str(index))
            for index, step_run in sorted(lines, key=lambda pair: pair[0])]


def _rerun(run: StoryRun, record: RerunRecord | None) -> str:
    """`of SOURCE, N steps reused` once the re-run recorded them (`of SOURCE` before)."""
    source = run.spec.rerun_of
    if source is None:
        return ""
    if record is None:
        return f"of {source.name}"
    return f"of {record.source.name}, {record.reused} step{'s' if record.reused != 1 else ''} " \
           "reused"


def age(created: str | None, now: dt.datetime) -> str:
    """How long ago an object was created, in kubectl's AGE units (`45s`, `7m`, `5h`, `3d`)."""
    when = parse_time(created)
    if when is None:
        return ""
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
