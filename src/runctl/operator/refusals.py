"""What the API server refused of the operator's own writes, remembered so it is not repeated.

A status write the API server's rules refused cannot succeed when sent again unchanged (a terminal
status is immutable), so it is sent once. A forbidden create is tried again (someone may grant the
right or free the quota), but the Warning Event that says why is posted once per reason. The
creates refused as invalid are remembered elsewhere, in the cache (`ObjectCache.refuse`): they are
observed, and fail their step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runctl.operator.memo import Bounded


def _written(changes: Mapping[str, Any]) -> str:
    return json.dumps(changes, sort_keys=True)


class Refusals:
    def __init__(self) -> None:
        self._writes: Bounded[tuple[str, str, str], str] = Bounded()
        """(kind, uid, name) -> the status write the API server refused last."""
        self._forbidden: Bounded[tuple[str, str], str] = Bounded()
        """(kind, name) of a child -> why its create was forbidden, as last said."""

    @staticmethod
    def _key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        return kind, obj["metadata"].get("uid", ""), obj["metadata"]["name"]

    def refused_before(self, kind: str, obj: Mapping[str, Any],
                       changes: Mapping[str, Any]) -> bool:
        """Was this very status write of `obj` refused already?"""
        return self._writes.get(self._key(kind, obj)) == _written(changes)

    def refuse_write(self, kind: str, obj: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        self._writes[self._key(kind, obj)] = _written(changes)

    def forbid(self, kind: str, name: str, message: str) -> bool:
        """Remember why the create of a child was forbidden; True if that is news (not the
        reason last said for it)."""
        if self._forbidden.get((kind, name)) == message:
            return False
        self._forbidden[(kind, name)] = message
        return True
