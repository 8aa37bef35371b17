"""A finished step's outputs checked against what it declares.

The termination message is the step's only channel: Kubernetes keeps at most 4,096 bytes of it,
so a larger one would arrive cut and is refused rather than half-read. A step that declares
outputs must say them as a JSON object; a step that declares none keeps today's leniency (a JSON
object still gives outputs, anything else gives none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runctl.flow.params import MARKER
from runctl.flow.references import rendered_value
from runctl.machine.phases import Reason

MAX_MESSAGE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Checked:
    outputs: tuple[tuple[str, str], ...] = ()
    defaulted: tuple[str, ...] = ()
    """Declared outputs the message left out, which took their defaults."""
    reason: str | None = None
    """OutputInvalid or OutputMissing when the outputs fail their declarations."""
    message: str | None = None


def _object(message: str) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(message)
    except ValueError as e:
        return None, f"the termination message is not JSON ({e})"
    if not isinstance(data, dict):
        return None, "the termination message is not a JSON object"
    return data, ""


def check(message: str | None, declared: Sequence[Mapping[str, Any]] | None) -> Checked:
    """The outputs of a step that ended successfully, or why they fail its declarations."""
    if not declared:
        data = _object(message)[0] if message else None
        return Checked(tuple(sorted((str(k), rendered_value(v))
                                    for k, v in (data or {}).items())))
    size = len((message or "").encode())
    if size > MAX_MESSAGE_BYTES:
        return Checked(reason=Reason.OUTPUT_INVALID,
                       message=f"the termination message has {size} bytes, more than "
                               f"{MAX_MESSAGE_BYTES}")
    data, why = _object(message or "{}")
    if data is None:
        return Checked(reason=Reason.OUTPUT_INVALID, message=why)
    outputs = {str(k): rendered_value(v) for k, v in data.items()}
    marked = sorted(k for k, v in outputs.items() if MARKER in v)
    if marked:
        return Checked(reason=Reason.OUTPUT_INVALID,
                       message=f"output {marked[0]} contains {MARKER!r}")
    missing = [d["name"] for d in declared if d["name"] not in outputs and "default" not in d]
    if missing:
        return Checked(reason=Reason.OUTPUT_MISSING,
                       message=f"required output {', '.join(missing)} missing from the "
                               "termination message")
    defaulted = tuple(d["name"] for d in declared if d["name"] not in outputs)
    outputs |= {d["name"]: d["default"] for d in declared if d["name"] in defaulted}
    return Checked(tuple(sorted(outputs.items())), defaulted)
