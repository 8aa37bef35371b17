"""Typed params: a Story's declarations checked, and a run's values checked against them.

Values are JSON values. `number` takes integers and decimals (never a boolean, which Python
counts as an int); a string holding `${{` is refused so that no reference syntax can reach a
workload through a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runctl.machine.dag import Problem

TYPES = ("string", "number", "boolean", "array", "object")
MAX_PARAMS_BYTES = 32768
"""The most a run's params may take as JSON: they are stored in the run's status record."""
MARKER = "${{"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str
    default: Any = None
    has_default: bool = False
    enum: tuple[Any, ...] | None = None


def declared(params: Sequence[Mapping[str, Any]] | None) -> dict[str, Param]:
    """The declarations of a Story's `spec.params`, by name (the first of a duplicated name)."""
    out: dict[str, Param] = {}
    for p in params or ():
        enum = p.get("enum")
        out.setdefault(p["name"], Param(p["name"], p.get("type", "string"), p.get("default"),
                                        "default" in p, tuple(enum) if enum is not None else None))
    return out


def type_of(value: Any) -> str:
    """The param type a JSON value has."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def marked(value: Any) -> bool:
    """Does any string inside this value hold the reference marker?"""
    if isinstance(value, str):
        return MARKER in value
    if isinstance(value, list):
        return any(marked(v) for v in value)
    if isinstance(value, dict):
        return any(marked(k) or marked(v) for k, v in value.items())
    return False


def _value_problems(param: Param, value: Any, field: str, what: str) -> list[Problem]:
    if type_of(value) != param.type:
        return [Problem(field, f"{what} must be of type {param.type}, not {type_of(value)}")]
    if marked(value):
        return [Problem(field, f"{what} cannot contain {MARKER!r}")]
    if param.enum is not None and value not in param.enum:
        allowed = ", ".join(json.dumps(v) for v in param.enum)
        return [Problem(field, f"{what} {json.dumps(value)} is not one of {allowed}")]
    return []


def check_declarations(params: Sequence[Mapping[str, Any]] | None,
                       field: str = "spec.params") -> list[Problem]:
    """A Story's declarations: names unique, types known, defaults and enums of their type."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(params or ()):
        here = f"{field}[{i}]"
        name = p["name"]
        if name in seen:
            problems.append(Problem(f"{here}.name",
                                    f'duplicate param "{name}" (also {field}[{seen[name]}])'))
            continue
        seen[name] = i
        kind = p.get("type", "string")
        if kind not in TYPES:
            problems.append(Problem(f"{here}.type", f"unknown type {kind!r}"))
            continue
        param = declared([p])[name]
        for j, v in enumerate(param.enum or ()):
            if type_of(v) != kind:
                problems.append(Problem(f"{here}.enum[{j}]",
                                        f"must be of type {kind}, not {type_of(v)}"))
        if param.has_default:
            problems += _value_problems(param, param.default, f"{here}.default", "the default")
    return problems


def resolve(decls: Mapping[str, Param], given: Mapping[str, Any] | None,
            field: str = "spec.params") -> tuple[dict[str, Any], list[Problem]]:
    """Every declared param's value (given, else its default), or why the given ones do not
    fit: unknown, missing without a default, of the wrong type, outside the enum, too large."""
    given = given or {}
    problems = [Problem(f"{field}.{name}", f'unknown param "{name}" (declared: '
                        f'{", ".join(decls) or "none"})')
                for name in given if name not in decls]
    values: dict[str, Any] = {}
    for name, param in decls.items():
        if name in given:
            problems += _value_problems(param, given[name], f"{field}.{name}", "the value")
            values[name] = given[name]
        elif param.has_default:
            values[name] = param.default
        else:
            problems.append(Problem(f"{field}.{name}", "required param missing (it has no "
                                    "default)"))
    size = len(json.dumps(given, separators=(",", ":")).encode())
    if size > MAX_PARAMS_BYTES:
        problems.append(Problem(field, f"{size} bytes as JSON, more than {MAX_PARAMS_BYTES}"))
    return values, problems


def check_run(definition: Mapping[str, Any], given: Mapping[str, Any] | None) -> list[Problem]:
    """What is wrong with a run's params against the definition (a Story's spec) it runs: the
    one check the admission webhook makes at apply and `runctl start` before it creates the
    run, so a person reads the same words whether or not the cluster serves the webhook."""
    return resolve(declared(definition.get("params")), given)[1]
