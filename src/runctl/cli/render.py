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

from runctl.cli.view import RunView, StepLine

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
    """The header, a blank line, then the steps as a tree with their phase and attempts."""
    columns = ["STEP", "PHASE", "ATTEMPTS", "DURATION"]
    if wide:
        columns += ["STEPRUN", "STARTED", "FINISHED", "WORKLOAD"]
    columns.append("REASON")
    rows = []
    for step in view.steps:
        cells = [_step_cell(step), _phase(step.phase), Text(step.attempts), Text(step.duration)]
        if wide:
            cells += [Text(step.step_run), Text(step.started), Text(step.finished),
                      Text(step.workload)]
        also = f"(also needs {', '.join(step.also_needs)})" if step.also_needs else ""
        cells.append(Text(" ".join(part for part in (step.note, also) if part)))
        rows.append(cells)
    return [*header(view), Text(), *_table(columns, rows)]


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
