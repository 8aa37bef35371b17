"""Views as text: the run tree, the list of runs, one line per transition. Pure, no I/O.

Each function returns rich `Text` lines whose plain text is what a person reads and whose styles
colour the glyph and the phase; the console that prints them drops the colour when its output is
not a terminal or `NO_COLOR` is set, so tests compare `.plain` and scripts read the same words.
Columns are padded by hand: every glyph and tree character is one cell wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from runctl.cli.fanout import FAILED, Items
from runctl.cli.view import RunView, StepLine
from runctl.machine.phases import STEP_TERMINAL, StepPhase

GLYPHS = {
    "Pending": ("◷", "dim"),
    "Running": ("●", "cyan"),
    "Stopping": ("◍", "yellow"),
    "Succeeded": ("✔", "green"),
    "Failed": ("✖", "red"),
    "TimedOut": ("⧖", "red"),
    "Lost": ("?", "red"),
    "Canceled": ("⊘", "yellow"),
    "Skipped": ("○", "yellow"),
}
"""Each phase's glyph and colour: green done, red failed, yellow stopped or skipped."""

GAP = "  "


def glyph(phase: str) -> tuple[str, str]:
    return GLYPHS.get(phase, ("·", ""))


def _table(header: Sequence[str], rows: Sequence[Sequence[Text]]) -> list[Text]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max([len(h), *(len(r[i].plain) for r in rows)]) for i, h in enumerate(header)]
    out = [Text(GAP.join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
                style="bold")]
    for row in rows:
        line = Text()
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            if i:
                line.append(GAP)
            line.append_text(cell)
            if i < len(row) - 1:
                line.append(" " * (width - len(cell.plain)))
        line.rstrip()
        out.append(line)
    return out


def _phase(phase: str) -> Text:
    return Text(phase, style=glyph(phase)[1])


def _step_cell(step: StepLine) -> Text:
    mark, style = glyph(step.phase)
    return Text.assemble(step.branch, (mark, style), " ", step.name)


def counts(items: Items) -> Text:
    """`412/1000 ✔380 ✖2 ●30`: items done of all, then succeeded, failed (timed out and lost
    too), running, and skipped and canceled when there are any, each in its phase's glyph."""
    text = Text(f"{items.done}/{items.total}")
    for phases, always in (((StepPhase.SUCCEEDED,), True), (FAILED, True),
                           ((StepPhase.RUNNING,), True), ((StepPhase.SKIPPED,), False),
                           ((StepPhase.CANCELED,), False)):
        n = items.count(*phases)
        if always or n:
            mark, style = glyph(phases[0])
            text.append(" ").append(f"{mark}{n}", style=style)
    return text


def _failed_items(run: str, step: StepLine) -> list[Text]:
    """The first failed items the run records, under the step, and how to list the rest."""
    if step.items is None:
        return []
    mark, style = glyph(StepPhase.FAILED)
    width = max((len(str(f.index)) for f in step.items.failed_items), default=0)
    lines = [Text.assemble(step.under, (mark, style), f" item {f.index:<{width}}  ",
                           ": ".join(part for part in (f.reason, f.message) if part))
             for f in step.items.failed_items]
    more = step.items.failed - len(step.items.failed_items)
    if more > 0:
        lines.append(Text(f"{step.under}… {more} more failed: runctl get {run} --items "
                          f"{step.name}"))
    return lines


def header(view: RunView) -> list[Text]:
    """The run's own lines: name, phase and reason, start, duration, stop record."""
    phase = _phase(view.phase)
    if view.reason and view.reason != view.phase:
        phase.append(f" ({view.reason})")
    if view.progress:
        phase.append(f"  {view.progress} steps")
    rows: list[tuple[str, Text | str]] = [
        ("Run", f"{view.namespace}/{view.name} ({view.mode})" if view.namespace
         else f"{view.name} ({view.mode})"),
        ("Phase", phase),
        ("Re-run", view.rerun),
        ("Message", view.message),
        ("Started", view.started),
        ("Duration", view.duration),
        ("Stop", view.stop),
    ]
    return [Text.assemble((f"{label}:".ljust(10), "bold"), value)
            for label, value in rows if (value.plain if isinstance(value, Text) else value)]


def run_tree(view: RunView, wide: bool = False) -> list[Text]:
    """The header, a blank line, then the steps as a tree with their phase and attempts; a
    fan-out step's item counts in a column of their own, its first failed items under it."""
    fan_out = any(step.fan_out for step in view.steps)
    columns = ["STEP", "PHASE", *(["ITEMS"] if fan_out else []), "ATTEMPTS", "DURATION"]
    if wide:
        columns += ["STEPRUN", "STARTED", "FINISHED", "WORKLOAD"]
    columns.append("REASON")
    rows = []
    for step in view.steps:
        cells = [_step_cell(step), _phase(step.phase)]
        if fan_out:
            cells.append(counts(step.items) if step.items is not None else Text())
        cells += [Text(step.attempts), Text(step.duration)]
        if wide:
            cells += [Text(step.step_run), Text(step.started), Text(step.finished),
                      Text(step.workload)]
        also = f"(also needs {', '.join(step.also_needs)})" if step.also_needs else ""
        cells.append(Text(" ".join(part for part in (step.note, also) if part)))
        rows.append(cells)
    table = _table(columns, rows)
    lines = [table[0]]
    for step, row in zip(view.steps, table[1:], strict=True):
        lines += [row, *_failed_items(view.name, step)]
    return [*header(view), Text(), *lines]


def items_page(view: RunView, step: StepLine, items: Sequence[StepLine], more: str
               ) -> list[Text]:
    """`runctl get RUN --items STEP`: the step's line, then a page of its items, one a line in
    index order, then the command that shows the next page (`more`, when there is one)."""
    title = Text.assemble(step.name, "  ", _phase(step.phase))
    if step.items is not None:
        title.append("  ").append_text(counts(step.items))
    lines = [Text.assemble(("Run:".ljust(10), "bold"), f"{view.namespace}/{view.name}"
                           if view.namespace else view.name),
             Text.assemble(("Step:".ljust(10), "bold"), title), Text()]
    rows = [[_step_cell(item), _phase(item.phase), Text(item.attempts), Text(item.duration),
             Text(item.started), Text(item.finished), Text(item.note)] for item in items]
    lines += _table(["ITEM", "PHASE", "ATTEMPTS", "DURATION", "STARTED", "FINISHED", "REASON"],
                    rows) if rows else [Text("No items on this page.")]
    return [*lines, *([Text(), Text(f"More: {more}")] if more else [])]


@dataclass(frozen=True)
class RunRow:
    """One run in `runctl list`."""

    namespace: str
    name: str
    phase: str
    progress: str
    reason: str
    age: str


def run_list(rows: Sequence[RunRow], all_namespaces: bool) -> list[Text]:
    columns = ["NAME", "PHASE", "PROGRESS", "REASON", "AGE"]
    if all_namespaces:
        columns.insert(0, "NAMESPACE")
    cells = []
    for row in rows:
        mark, style = glyph(row.phase)
        line = [Text.assemble((mark, style), " ", row.name), _phase(row.phase),
                Text(row.progress), Text(row.reason), Text(row.age)]
        if all_namespaces:
            line.insert(0, Text(row.namespace))
        cells.append(line)
    return _table(columns, cells)


def transitions(before: RunView | None, after: RunView, clock: str) -> list[Text]:
    """One line for each step whose phase or attempt changed, then one if the run's did.

    This is what `runctl watch` prints when its output is not a terminal (a CI log, a pipe):
    each change once, in the order a reader would want, never a redraw."""
    old = {s.name: s for s in before.steps} if before is not None else {}
    out = []
    for step in after.steps:
        was = old.get(step.name)
        if step.fan_out:
            out += _fan_out_transition(was, step, clock)
            continue
        if was is not None and (was.phase, was.attempts) == (step.phase, step.attempts):
            continue
        if step.phase == "Pending":  # created, not started: the start is the news
            continue
        mark, style = glyph(step.phase)
        line = Text.assemble(f"{clock} ", (mark, style), f" {step.name} ", _phase(step.phase))
        details = [f"attempt {step.attempts}" if step.phase == "Running" else
                   f"after {step.duration}" if step.duration else "", step.note]
        if any(details):
            line.append("  " + "  ".join(d for d in details if d))
        out.append(line)
    if before is None or (before.phase, before.reason) != (after.phase, after.reason):
        mark, style = glyph(after.phase)
        line = Text.assemble(f"{clock} ", (mark, style), f" run {after.name} ",
                             _phase(after.phase))
        details = [after.reason, f"{after.progress} steps" if after.progress else "",
                   f"after {after.duration}" if after.terminal and after.duration else "",
                   after.message]
        if any(details):
            line.append("  " + "  ".join(d for d in details if d))
        out.append(line)
    return out


def _fan_out_transition(was: StepLine | None, step: StepLine, clock: str) -> list[Text]:
    """One line for a fan-out step whose phase or counts changed: its counts and how many items
    ended in each phase since the last line (never a line an item), then a line for each newly
    recorded failed item (the run records at most a few)."""
    before = was.items if was is not None else None
    if (was is not None and (was.phase, before) == (step.phase, step.items)) or \
            step.phase == "Pending":
        return []
    mark, style = glyph(step.phase)
    line = Text.assemble(f"{clock} ", (mark, style), f" {step.name} ", _phase(step.phase))
    if step.items is None:  # its list is not evaluated yet
        return [line]
    line.append("  ").append_text(counts(step.items))
    ended = [f"+{n} {phase}" for phase in StepPhase if phase in STEP_TERMINAL and before
             and (n := step.items.count(phase) - before.count(phase)) > 0]
    details = [", ".join(ended), f"after {step.duration}" if step.phase in STEP_TERMINAL and
               step.duration else "", step.note if step.phase in STEP_TERMINAL else ""]
    if any(details):
        line.append("  " + "  ".join(d for d in details if d))
    seen = {f.index for f in before.failed_items} if before is not None else set()
    fail, red = glyph(StepPhase.FAILED)
    return [line, *(Text.assemble(f"{clock} ", (fail, red), f" {step.name}[{f.index}]  ",
                                  ": ".join(part for part in (f.reason, f.message) if part))
                    for f in step.items.failed_items if f.index not in seen)]
