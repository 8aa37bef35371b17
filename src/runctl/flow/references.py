"""`${{ params.NAME }}` and `${{ steps.STEP.outputs.NAME }}` (and, for finally steps, the run's
facts `${{ run.outcome|reason|failures }}` and `${{ steps.STEP.phase }}`; for a fan-out step's
items, `${{ item }}`, `${{ item.FIELD }}` and `${{ index }}`): found, checked and rendered.

A reference is the whole of `${{ ... }}`; anything else that opens with `${{` is malformed and
refused at apply, so a text that passed the check renders with no `${{` left in it (values
cannot bring one in: params and outputs holding it are refused). Rendering is a pure function of
the text and the values: the same inputs always give the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runctl.flow.params import MARKER

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
STEP = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_REF = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_PARAM = re.compile(rf"params\.({IDENT})")
_OUTPUT = re.compile(rf"steps\.({STEP})\.outputs\.({IDENT})")
RUN_FACTS = ("outcome", "reason", "failures")
"""What `run.` offers a finally step: its outcome's phase and reason, the failed main steps."""
_RUN = re.compile(rf"run\.({'|'.join(RUN_FACTS)})")
_PHASE = re.compile(rf"steps\.({STEP})\.phase")
_ITEM = re.compile(rf"item(?:\.({IDENT}))?|index")


@dataclass(frozen=True, slots=True)
class Ref:
    """A param (`step` None), an output of a step, a fact of the run (`fact`): `run.NAME`
    (`step` None) or `steps.STEP.phase` (`name` "phase"), or what a fan-out step's item offers
    (`item`: `name` "item", "item.FIELD" or "index")."""

    name: str
    step: str | None = None
    fact: bool = False
    item: bool = False

    @property
    def param(self) -> bool:
        return self.step is None and not self.fact and not self.item

    @property
    def field(self) -> str | None:
        """The field of the item an `item.FIELD` reference reads."""
        field = self.name.partition(".")[2] if self.item else ""
        return field or None

    @property
    def output(self) -> bool:
        return self.step is not None and not self.fact

    def __str__(self) -> str:
        if self.item:
            return self.name
        if self.fact:
            return f"run.{self.name}" if self.step is None else f"steps.{self.step}.phase"
        if self.step is None:
            return f"params.{self.name}"
        return f"steps.{self.step}.outputs.{self.name}"


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a fan-out step, as its references and its condition read it."""

    index: int
    value: Any

    def read(self, ref: Ref) -> Any:
        """The value an item reference reads. Raises Malformed for a field of an item that is
        not an object holding it."""
        if ref.name == "index":
            return self.index
        if ref.field is None:
            return self.value
        if not isinstance(self.value, dict) or ref.field not in self.value:
            raise Malformed(f"${{{{ {ref} }}}}: item {self.index} has no field {ref.field!r}")
        return self.value[ref.field]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the main steps ended as, as finally steps read it."""

    outcome: str
    reason: str
    failures: tuple[str, ...]
    """The failed main steps, in spec order."""
    phases: Mapping[str, str]
    """Every main step's phase."""

    def run(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "failures": list(self.failures)}

    def value(self, ref: Ref) -> Any:
        return self.run()[ref.name] if ref.step is None else self.phases[ref.step]


class Malformed(ValueError):
    """A `${{` that is not a whole reference."""


def _parse(inner: str) -> Ref:
    body = inner.strip()
    if m := _PARAM.fullmatch(body):
        return Ref(m.group(1))
    if m := _OUTPUT.fullmatch(body):
        return Ref(m.group(2), m.group(1))
    if m := _RUN.fullmatch(body):
        return Ref(m.group(1), fact=True)
    if m := _PHASE.fullmatch(body):
        return Ref("phase", m.group(1), fact=True)
    if _ITEM.fullmatch(body):
        return Ref(body, item=True)
    raise Malformed(f"malformed reference ${{{{{inner}}}}}: write ${{{{ params.NAME }}}} or "
                    "${{ steps.STEP.outputs.NAME }} (finally steps also ${{ run.outcome }}, "
                    "${{ run.reason }}, ${{ run.failures }}, ${{ steps.STEP.phase }}; fan-out "
                    "steps ${{ item }}, ${{ item.FIELD }}, ${{ index }})")


def _pieces(text: str) -> Iterator[str | Ref]:
    """The text cut into literal pieces and references, in order."""
    at = 0
    for m in _REF.finditer(text):
        literal = text[at:m.start()]
        if MARKER in literal:
            raise Malformed("malformed reference: a '${{' is not closed before the next one")
        yield literal
        yield _parse(m.group(1))
        at = m.end()
    rest = text[at:]
    if MARKER in rest:
        raise Malformed("malformed reference: '${{' is not closed by '}}'")
    yield rest


def find(text: str) -> tuple[Ref, ...]:
    """The references in a text, in order. Raises Malformed."""
    return tuple(p for p in _pieces(text) if isinstance(p, Ref))


def rendered_value(value: Any) -> str:
    """A string as it is; any other value as compact JSON text with sorted keys."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def render(text: str, params: Mapping[str, Any],
           outputs: Mapping[str, Mapping[str, str]], facts: Facts | None = None,
           item: Item | None = None) -> str:
    """The text with every reference replaced by its value. Raises KeyError for a value that
    is not there (the core starts a step only once all of them are; facts are there once the
    run's outcome is recorded; an item is there for an item of a fan-out step), and Malformed
    for a text that is not well formed, reads a field its item has not, or whose values, put
    together with it, spell `${{` (a literal `$` before a value opening with `{{`): such a text
    is never handed to a workload."""
    out = []
    for piece in _pieces(text):
        if isinstance(piece, str):
            out.append(piece)
        elif piece.item:
            if item is None:
                raise KeyError(str(piece))
            out.append(rendered_value(item.read(piece)))
        elif piece.fact:
            if facts is None:
                raise KeyError(str(piece))
            out.append(rendered_value(facts.value(piece)))
        elif piece.step is None:
            out.append(rendered_value(params[piece.name]))
        else:
            out.append(outputs[piece.step][piece.name])
    text = "".join(out)
    if MARKER in text:
        raise Malformed(f"rendered, the text would hold {MARKER!r}: {text[:200]}")
    return text


def fields(step: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path under the step, text) of every field of a step that may hold references."""
    for key in ("command", "args"):
        for i, text in enumerate(step.get(key) or ()):
            yield f"{key}[{i}]", text
    for i, env in enumerate(step.get("env") or ()):
        if env.get("value") is not None:
            yield f"env[{i}].value", env["value"]
    for key, text in ((step.get("pod") or {}).get("annotations") or {}).items():
        yield f"pod.annotations[{key}]", text


def render_step(step: Mapping[str, Any], params: Mapping[str, Any],
                outputs: Mapping[str, Mapping[str, str]], facts: Facts | None = None,
                item: Item | None = None) -> dict[str, Any]:
    """A copy of the step with every reference in its fields rendered (for a fan-out step's
    `item`: with that item's)."""
    out = dict(step)

    def r(text: str) -> str:
        return render(text, params, outputs, facts, item)

    for key in ("command", "args"):
        if step.get(key) is not None:
            out[key] = [r(t) for t in step[key]]
    if step.get("env") is not None:
        out["env"] = [{**e, "value": r(e["value"])} if e.get("value") is not None else dict(e)
                      for e in step["env"]]
    pod = step.get("pod")
    if pod is not None and pod.get("annotations") is not None:
        out["pod"] = {**pod, "annotations": {k: r(v) for k, v in pod["annotations"].items()}}
    return out
