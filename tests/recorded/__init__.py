"""API objects as a real API server stored them (recorded from the local control plane with the
operator running): the translation code is tested on what it will really read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load(name: str) -> dict[str, Any]:
    """The recorded object `name` (its file name without `.json`)."""
    data: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text())
    return data


def names(prefix: str) -> list[str]:
    """The recorded objects whose names start with `prefix`, sorted."""
    return sorted(p.stem for p in HERE.glob(f"{prefix}*.json"))
