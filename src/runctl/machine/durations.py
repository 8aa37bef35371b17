"""Durations as Go's `time.Duration.String` writes them (`2m13s`, `1h0m5s`, `850ms`).

`status.duration` is read by people and by scripts that already parse Go durations (kubectl,
Helm and Argo print them the same way), so the text matches Go's to the microsecond.
"""

from __future__ import annotations

import datetime as dt

_MICRO = dt.timedelta(microseconds=1)


def _decimal(value: int, unit: int) -> str:
    """value/unit with the fraction's trailing zeros dropped: 1500, 1000 -> "1.5"."""
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_duration(delta: dt.timedelta) -> str:
    micros = delta // _MICRO
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    if micros == 0:
        return "0s"
    if micros < 1_000:
        return f"{sign}{micros}µs"
    if micros < 1_000_000:
        return f"{sign}{_decimal(micros, 1_000)}ms"
    seconds, frac = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = _decimal(secs * 1_000_000 + frac, 1_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text
