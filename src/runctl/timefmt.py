"""RFC 3339 times as the Kubernetes API writes them (UTC, whole seconds, trailing Z)."""

from __future__ import annotations

import datetime as dt

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""The one spelling of a time on the wire: `strftime` of a UTC time gives it."""


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def fmt_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime(TIME_FORMAT)
