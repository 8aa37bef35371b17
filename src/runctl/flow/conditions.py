"""`when:` conditions in CEL, checked at apply and evaluated on typed values.

CEL is the language Kubernetes users already write in CRD validation rules and
ValidatingAdmissionPolicy. The implementation is `common-expression-language` (bindings to the
Rust `cel` interpreter) rather than the pure-Python `cel-python`: on the expressions a user
writes (`params.dryRun == false`, `int(steps.count.outputs.rows) > 0`, `'x' in params.list`,
quotes inside string literals) both agree, except that `cel-python` refuses comparing an int
with a double (`params.n > 2.5`), which cel-go (and so Kubernetes) allows; and it compiles about
8 times and evaluates about 20 times faster. Neither ships a type checker, so checking at apply
is done here: references are read from the expression's text (outside string literals), unknown
variables come from the compiled program, and the result type is found by evaluating the
expression once on values of the declared types (a param's default, or its enum's first value,
or its type's zero; "0" for an output).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cel

from runctl.flow.params import Param
from runctl.flow.references import IDENT, RUN_FACTS, Facts, Item, Ref

_STRING = re.compile("|".join([
    r"[rRbB]*'''.*?'''",
    r'[rRbB]*""".*?"""',
    r"[rRbB]*'(?:\\.|[^'\\])*'",
    r'[rRbB]*"(?:\\.|[^"\\])*"',
]), re.S)
_KEY = r"""(?:\.\s*({ident})|\[\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\])"""
_OUTPUT = re.compile(r"(?<![\w.])steps\s*" + _KEY.format(ident=r"[A-Za-z_][\w]*")
                     + r"\s*\.\s*outputs\s*" + _KEY.format(ident=IDENT))
_PHASE = re.compile(r"(?<![\w.])steps\s*" + _KEY.format(ident=r"[A-Za-z_][\w]*")
                    + r"\s*\.\s*phase\b")
_RUN = re.compile(r"(?<![\w.])run\s*" + _KEY.format(ident=IDENT))
_PARAM = re.compile(r"(?<![\w.])params\s*" + _KEY.format(ident=IDENT))
_STEPS = re.compile(r"(?<![\w.])steps\b")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_ZERO: dict[str, Any] = {"string": "", "number": 0, "boolean": False, "array": [], "object": {}}


class Invalid(ValueError):
    """A condition that cannot be accepted, with why."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    holds: bool
    error: str | None = None
    """Why evaluating failed at run time (then `holds` is False)."""


def _code(expr: str) -> str:
    """The expression with string literals blanked out (their length kept), so names inside
    quotes are never taken for references."""
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1],
                       expr)


def _key(m: re.Match[str], first: int) -> str:
    return next(g for g in m.groups()[first:first + 3] if g is not None)


def _literals(expr: str) -> list[tuple[int, int]]:
    return [m.span() for m in _STRING.finditer(expr)]


def references(expr: str) -> tuple[Ref, ...]:
    """The params and step outputs an expression names, in order of appearance (names inside
    string literals are not references; `steps['a-b']` is)."""
    spans = _literals(expr)

    def code(m: re.Match[str]) -> bool:
        return not any(a <= m.start() < b for a, b in spans)

    refs = [(m.start(), Ref(_key(m, 3), _key(m, 0))) for m in _OUTPUT.finditer(expr) if code(m)]
    refs += [(m.start(), Ref(_key(m, 0))) for m in _PARAM.finditer(expr) if code(m)]
    refs += [(m.start(), Ref("phase", _key(m, 0), fact=True))
             for m in _PHASE.finditer(expr) if code(m)]
    refs += [(m.start(), Ref(_key(m, 0), fact=True)) for m in _RUN.finditer(expr)
             if code(m) and _key(m, 0) in RUN_FACTS]
    return tuple(ref for _, ref in sorted(refs, key=lambda r: r[0]))


@functools.lru_cache(maxsize=1024)
def _program(expr: str) -> Any:
    try:
        return cel.compile(expr)
    except ValueError as e:
        raise Invalid(f"not valid CEL: {str(e).splitlines()[0]}") from None


ITEM_VARIABLES = frozenset({"item", "index"})
"""The variables a fan-out step's condition has beside params and steps: its item, its index."""


def check(expr: str, params: Mapping[str, Param], outputs: Mapping[str, frozenset[str]],
          main: frozenset[str] | None = None, items: Sequence[Any] | None = None) -> None:
    """Refuse (Invalid) a condition that does not compile, names a variable other than `params`
    and `steps` (and `run`, for a finally step: `main` holds the main steps' names; `item` and
    `index`, for a fan-out step: `items` holds values its items may take), a param not
    declared, a step not in `outputs` or an output that step does not declare, a phase of a step
    that is not a main step, or whose result is not a boolean (for a fan-out step: for none of
    the values in `items`)."""
    program = _program(expr)
    bound = set(_BOUND.findall(_code(expr)))
    known = ({"params", "steps"} | ({"run"} if main is not None else set())
             | (ITEM_VARIABLES if items is not None else set()))
    unknown = sorted(set(program.variables()) - known - bound)
    if unknown:
        extra = {"run": " (run only in a finally step)",
                 "item": " (item and index only in a step with forEach)",
                 "index": " (item and index only in a step with forEach)"}.get(unknown[0], "")
        raise Invalid(f"unknown variable {unknown[0]} (use params.NAME or "
                      f"steps.STEP.outputs.NAME){extra}")
    refs = references(expr)
    code = _code(expr)
    if len(_STEPS.findall(code)) != sum(1 for r in refs if r.step is not None):
        raise Invalid("steps may only be used as steps.STEP.outputs.NAME"
                      + (" or steps.STEP.phase" if main is not None else ""))
    if len(_RUN_WORD.findall(code)) != sum(1 for r in refs if r.fact and r.step is None):
        raise Invalid(f"run may only be used as run.{', run.'.join(RUN_FACTS)}")
    for ref in refs:
        _check_ref(ref, params, outputs, main)
    probe = {p.name: p.default if p.has_default else (p.enum or (_ZERO[p.type],))[0]
             for p in params.values()}
    facts = None if main is None else Facts("Succeeded", "Completed", (),
                                            dict.fromkeys(main, "Succeeded"))
    zeros = {s: dict.fromkeys(names, "0") for s, names in outputs.items()}
    candidates = [None] if items is None else [Item(0, v) for v in items]
    errors = [e for item in candidates
              if (e := evaluate(expr, probe, zeros, facts, item).error) is not None
              and ("overload" in e or _NOT_BOOL in e)]
    if errors and len(errors) == len(candidates):
        raise Invalid(errors[0])


_RUN_WORD = re.compile(r"(?<![\w.])run\b")


def _check_ref(ref: Ref, params: Mapping[str, Param], outputs: Mapping[str, frozenset[str]],
               main: frozenset[str] | None) -> None:
    if ref.fact:
        if main is None:
            raise Invalid(f"{ref} is for finally steps only")
        if ref.step is not None and ref.step not in main:
            raise Invalid(f'{ref}: "{ref.step}" is not a step of spec.steps')
        return
    if ref.step is None and ref.name not in params:
        raise Invalid(f'unknown param "{ref.name}"')
    if ref.step is not None and ref.step not in outputs:
        raise Invalid(f'unknown step "{ref.step}"')
    if ref.step is not None and ref.name not in outputs[ref.step]:
        raise Invalid(f'step "{ref.step}" declares no output "{ref.name}"')


_NOT_BOOL = "not a boolean"


def evaluate(expr: str, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]],
             facts: Facts | None = None, item: Item | None = None) -> Evaluated:
    """The condition's value over these params, outputs, (for a finally step) the run's facts
    and (for an item of a fan-out step) its item and index; an error instead of raising."""
    steps: dict[str, dict[str, Any]] = {s: {"outputs": dict(o)} for s, o in outputs.items()}
    env: dict[str, Any] = {"params": dict(params), "steps": steps}
    if item is not None:
        env |= {"item": item.value, "index": item.index}
    if facts is not None:
        for step, phase in facts.phases.items():
            steps.setdefault(step, {"outputs": {}})["phase"] = phase
        env["run"] = facts.run()
    try:
        value = _program(expr).execute(env)
    except Exception as e:  # the interpreter raises builtin types for CEL errors
        return Evaluated(False, f"{type(e).__name__}: {e}")
    if not isinstance(value, bool):
        return Evaluated(False, f"the condition gives {type(value).__name__}, {_NOT_BOOL}")
    return Evaluated(value)
