"""The core imports nothing that could read a clock, log, or reach the outside world."""

from __future__ import annotations

import ast
from pathlib import Path

import runctl.machine
import runctl.timefmt

ALLOWED = {"__future__", "collections", "dataclasses", "datetime", "enum", "hashlib", "typing",
           "runctl"}
CORE = Path(runctl.machine.__file__).parent
SHARED = {"runctl.timefmt": Path(runctl.timefmt.__file__)}
"""Modules outside the core it may import: the API's time format, defined once for every
layer. Each is held to the core's rule."""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_the_core_imports_only_pure_modules() -> None:
    found = {name for path in CORE.glob("*.py") for name in _imports(path)}
    assert {n.split(".")[0] for n in found} <= ALLOWED
    assert {n for n in found if n.startswith("runctl")} <= {
        *(n for n in found if n.startswith("runctl.machine")), *SHARED}
    for path in SHARED.values():
        assert {n.split(".")[0] for n in _imports(path)} <= ALLOWED - {"runctl"}
