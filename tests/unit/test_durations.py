"""status.duration is Go's time.Duration.String text."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runctl.machine.durations import go_duration


@pytest.mark.parametrize(("delta", "text"), [
    pytest.param(dt.timedelta(0), "0s", id="zero"),
    pytest.param(dt.timedelta(microseconds=5), "5µs", id="micros"),
    pytest.param(dt.timedelta(microseconds=1500), "1.5ms", id="millis-fraction"),
    pytest.param(dt.timedelta(milliseconds=850), "850ms", id="millis"),
    pytest.param(dt.timedelta(seconds=1.5), "1.5s", id="seconds-fraction"),
    pytest.param(dt.timedelta(seconds=42), "42s", id="seconds"),
    pytest.param(dt.timedelta(minutes=2, seconds=13), "2m13s", id="the-drain-incident"),
    pytest.param(dt.timedelta(minutes=2), "2m0s", id="whole-minutes"),
    pytest.param(dt.timedelta(hours=1, seconds=5), "1h0m5s", id="hours"),
    pytest.param(dt.timedelta(days=2, microseconds=1), "48h0m0.000001s", id="days"),
    pytest.param(-dt.timedelta(seconds=5), "-5s", id="negative"),
])
def test_go_text(delta: dt.timedelta, text: str) -> None:
    assert go_duration(delta) == text


_GO = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s$")


@given(st.integers(1, 10**7).map(lambda s: dt.timedelta(seconds=s)))
def test_whole_seconds_read_back(delta: dt.timedelta) -> None:
    match = _GO.match(go_duration(delta))
    assert match is not None
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    assert hours * 3600 + minutes * 60 + seconds == delta.total_seconds()
