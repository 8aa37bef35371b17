"""A fan-out step's items (`forEach`): checked at apply, expanded at run time, and its items'
outputs put together for the steps that read them.

`forEach.items` is a literal list or one `${{ }}` reference (a param, or an upstream output)
whose value is a JSON array; `forEach.matrix` is the cartesian product of named lists, its
dimensions in name order (the API server keeps no map's key order) and the last varying
fastest, each item an object. What can be judged from the definition is refused at apply
naming the field; a list known only at run time that is not an array, or too long, fails the
step as a whole (`ItemsInvalid`, `TooManyItems`), never a part of its items.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runctl.flow import references
from runctl.flow.params import MARKER, Param, marked
from runctl.flow.references import Malformed, Ref
from runctl.machine.dag import Problem
from runctl.machine.phases import Reason

MAX_ITEMS = 10000
"""The most items one run may have, all its fan-outs together (the operator may lower it)."""

MAX_RENDERED_ARRAY = 262144
"""The most bytes a fan-out step's output, the JSON array of its items' values, may take when
a reference renders it (256 KiB): a larger one fails the reader, never a truncated value."""

DEFAULT_PARALLELISM = 100
"""Items of a fan-out step running at once when `forEach.parallelism` is not set."""

_DIMENSION = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DYNAMIC_PROBES: tuple[Any, ...] = ("", 0, False, {}, [])
"""Values an item known only at run time may take, for checking a condition at apply."""

Step = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Expansion:
    """A fan-out step's items at run time, or why it has none to run."""

    items: tuple[Any, ...] | None
    """None: the step fails with `reason`."""
    reason: str | None = None
    """NoItems (an empty list), ItemsInvalid or TooManyItems."""
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Aggregated:
    """A fan-out step's outputs as its readers see them."""

    outputs: Mapping[str, str]
    """Each declared output: the JSON array of its items' values, in item order."""
    too_large: Mapping[str, str]
    """Outputs whose array is over MAX_RENDERED_ARRAY, with why: a step reading one fails
    `OutputTooLarge` with that message (they are not in `outputs`)."""


def fans_out(step: Step) -> bool:
    return step.get("forEach") is not None


def matrix_items(matrix: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """The matrix's items: its dimensions in name order, the last varying fastest."""
    names = sorted(matrix)
    for values in itertools.product(*(matrix[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def _count(for_each: Mapping[str, Any]) -> int | None:
    """How many items a literal list or matrix has (None: known at run time)."""
    matrix = for_each.get("matrix")
    if isinstance(matrix, Mapping):
        return math.prod(len(v) if isinstance(v, list) else 0 for v in matrix.values())
    items = for_each.get("items")
    return len(items) if isinstance(items, list) else None


def _literal(for_each: Mapping[str, Any]) -> list[Any] | None:
    if for_each.get("matrix") is not None:
        return list(matrix_items(for_each["matrix"]))
    items = for_each.get("items")
    return items if isinstance(items, list) else None


def literal(step: Step) -> list[Any] | None:
    """A fan-out step's items when its definition holds them (a list, or a matrix of lists)
    and they are not too many to be run, else None."""
    for_each = step.get("forEach")
    if not isinstance(for_each, Mapping):
        return None
    matrix = for_each.get("matrix")
    if isinstance(matrix, Mapping) and not all(isinstance(v, list) for v in matrix.values()):
        return None
    count = _count(for_each)
    return _literal(for_each) if count is not None and count <= MAX_ITEMS else None


def source(for_each: Mapping[str, Any]) -> Ref | None:
    """The reference `forEach.items` names, if it is one reference and only that (None for a
    literal list or a matrix). Raises Malformed for any other text."""
    items = for_each.get("items") if isinstance(for_each, Mapping) else None
    if not isinstance(items, str):
        return None
    refs = references.find(items)
    if (len(refs) != 1 or not (refs[0].param or refs[0].output)
            or not re.fullmatch(r"\s*\$\{\{[^}]*\}\}\s*", items)):
        raise Malformed("must be a list, or one reference ${{ params.NAME }} or "
                        "${{ steps.STEP.outputs.NAME }} and nothing else")
    return refs[0]


def probes(step: Step) -> tuple[Any, ...] | None:
    """Values the step's item may take, to check its condition at apply: its first literal
    item, or a value of each JSON type for items known at run time (None: not a fan-out)."""
    if not fans_out(step):
        return None
    given = literal(step)
    return (given[0],) if given else _DYNAMIC_PROBES


def _item_fields(step: Step) -> tuple[tuple[str, Ref], ...]:
    """(field under the step, reference) of every `${{ item.FIELD }}` in the step's fields."""
    out: list[tuple[str, Ref]] = []
    for where, text in references.fields(step):
        try:
            out += [(where, r) for r in references.find(text) if r.field is not None]
        except Malformed:
            continue
    return tuple(out)


def _shape_problems(for_each: Any, here: str) -> list[Problem]:
    if not isinstance(for_each, Mapping):
        return [Problem(here, "must be an object with items or matrix")]
    if (for_each.get("items") is None) == (for_each.get("matrix") is None):
        return [Problem(here, "exactly one of items and matrix")]
    problems: list[Problem] = []
    parallelism = for_each.get("parallelism", DEFAULT_PARALLELISM)
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
        problems.append(Problem(f"{here}.parallelism", "must be a whole number of at least 1"))
    matrix = for_each.get("matrix")
    if matrix is not None and (not isinstance(matrix, Mapping) or not matrix):
        return [*problems, Problem(f"{here}.matrix", "must map at least one name to a list")]
    for name, values in sorted((matrix or {}).items()):
        if not _DIMENSION.fullmatch(name):
            problems.append(Problem(f"{here}.matrix.{name}", "a dimension's name is letters, "
                                    "digits and '_', starting with a letter"))
        if not isinstance(values, list) or not values:
            problems.append(Problem(f"{here}.matrix.{name}", "must be a list of at least one "
                                    "value"))
    items = for_each.get("items")
    if isinstance(items, list):
        problems += [Problem(f"{here}.items[{i}]", f"cannot contain {MARKER!r}")
                     for i, v in enumerate(items) if marked(v)]
    elif items is not None and not isinstance(items, str):
        problems.append(Problem(f"{here}.items", "must be a list, or one reference "
                                "${{ params.NAME }} or ${{ steps.STEP.outputs.NAME }}"))
    problems += [Problem(f"{here}.matrix.{name}[{i}]", f"cannot contain {MARKER!r}")
                 for name, values in sorted((matrix or {}).items()) if isinstance(values, list)
                 for i, v in enumerate(values) if marked(v)]
    return problems


def step_problems(step: Step, here: str, decls: Mapping[str, Param], *,
                  realtime: bool) -> list[Problem]:
    """What is wrong with a step's `forEach` that its own text shows (`here`: the step's path;
    `realtime`: the step runs as a realtime step). A reference in `items` is checked as the
    step's other references are (`runctl.flow.definition`); here only that it is one."""
    if not fans_out(step):
        return []
    where = f"{here}.forEach"
    if realtime:
        return [Problem(where, "a realtime step cannot fan out (its steps are long-lived "
                               "servers, not items of work)")]
    problems = _shape_problems(step["forEach"], where)
    if problems:
        return problems
    for_each = step["forEach"]
    what = "matrix" if for_each.get("matrix") is not None else "items"
    count = _count(for_each)
    if count is not None and count > MAX_ITEMS:
        return [Problem(f"{where}.{what}", f"{count} items, more than {MAX_ITEMS} (a run's "
                                           "fan-outs have at most that many together)")]
    try:
        ref = source(for_each)
    except Malformed as e:
        return [Problem(f"{where}.items", str(e))]
    if ref is not None and ref.param and ref.name in decls and \
            decls[ref.name].type not in ("array", "string"):
        problems.append(Problem(f"{where}.items", f"{ref} is a {decls[ref.name].type}; items "
                                "are an array (or a string holding one as JSON)"))
    given = literal(step) or ()
    for field, field_ref in _item_fields(step) if given else ():
        missing = _without(given, field_ref)
        if missing is not None:
            problems.append(Problem(f"{here}.{field}", f"{field_ref}: item {missing} is not an "
                                    f"object with field {field_ref.field!r}"))
    return problems


def _without(given: Sequence[Any], ref: Ref) -> int | None:
    """The index of the first item that is not an object holding the field `ref` reads."""
    return next((i for i, v in enumerate(given)
                 if not isinstance(v, dict) or ref.field not in v), None)


def run_problems(steps: Sequence[Step], finals: Sequence[Step], field: str) -> list[Problem]:
    """What is wrong with a run's fan-outs together: more literal items than a run may have,
    and a step named as an item of a fan-out step (`convert-3` beside `convert`), whose
    StepRun's name would be that item's."""
    problems: list[Problem] = []
    every = [*(("steps", i, s) for i, s in enumerate(steps)),
             *(("finally", i, s) for i, s in enumerate(finals))]
    fan_outs = {s["name"] for _, _, s in every if fans_out(s)}
    for key, i, step in every:
        m = re.fullmatch(r"(.+)-[0-9]+", step["name"])
        if m and m.group(1) in fan_outs:
            problems.append(Problem(f"{field}.{key}[{i}].name",
                                    f'"{step["name"]}" is the name of an item of fan-out step '
                                    f'"{m.group(1)}" (their StepRuns would share names)'))
    counts = [_count(s["forEach"]) for _, _, s in every
              if fans_out(s) and isinstance(s["forEach"], Mapping)]
    total = sum(c for c in counts if c is not None and c <= MAX_ITEMS)
    if total > MAX_ITEMS:
        problems.append(Problem(field, f"its fan-outs' literal items and matrices have {total} "
                                       f"items together, more than {MAX_ITEMS} a run may have"))
    return problems


def _array(value: Any) -> list[Any] | None:
    """A list, or a string holding one as JSON (an output always is a string)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def expand(step: Step, values: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]],
           limit: int = MAX_ITEMS) -> Expansion:
    """The items of a fan-out step whose inputs are there, in order (`limit`: the most it may
    have). Raises KeyError for a param or output its `items` reads that is not there (the core
    starts nothing before)."""
    for_each = step["forEach"]
    ref = source(for_each)
    if ref is None:
        count = _count(for_each) or 0
        if count > limit:
            return _too_many(count, limit)
        given = _literal(for_each) or []
    else:
        raw = values[ref.name] if ref.param else outputs[str(ref.step)][ref.name]
        array = _array(raw)
        if array is None:
            text = references.rendered_value(raw)
            return Expansion(None, Reason.ITEMS_INVALID,
                             f"forEach.items: {ref} is not a JSON array: {text[:200]}")
        if len(array) > limit:
            return _too_many(len(array), limit)
        for _, field_ref in _item_fields(step):
            bad = _without(array, field_ref)
            if bad is not None:
                return Expansion(None, Reason.ITEMS_INVALID,
                                 f"forEach.items: {ref}: item {bad} is not an object with "
                                 f"field {field_ref.field!r} ({field_ref} reads it)")
        given = array
    if not given:
        return Expansion((), Reason.NO_ITEMS, "forEach: no items, nothing to run")
    return Expansion(tuple(given))


def _too_many(count: int, limit: int) -> Expansion:
    return Expansion(None, Reason.TOO_MANY_ITEMS,
                     f"forEach: {count} items, more than {limit} a run may have")


def aggregate_outputs(declared: Sequence[Mapping[str, Any]] | None,
                      per_item: Sequence[Mapping[str, str] | None]) -> Aggregated:
    """A fan-out step's declared outputs as its readers see them, from its items' outputs in
    item order (None: the item was skipped, and contributes the output's default, else null)."""
    outputs: dict[str, str] = {}
    too_large: dict[str, str] = {}
    for decl in declared or ():
        name = decl["name"]
        array = [o.get(name) if o is not None else decl.get("default") for o in per_item]
        text = json.dumps(array, separators=(",", ":"), ensure_ascii=False)
        size = len(text.encode())
        if size > MAX_RENDERED_ARRAY:
            too_large[name] = (f"output {name}, the array of {len(per_item)} items' values, "
                               f"takes {size} bytes, more than {MAX_RENDERED_ARRAY} a reference "
                               "renders")
        else:
            outputs[name] = text
    return Aggregated(outputs, too_large)
