"""The delay before each retry: backoffSeconds * backoffFactor^(n-2), capped, for any n."""

from __future__ import annotations

import datetime as dt

import pytest

from runctl.machine.backoff import MAX_BACKOFF_SECONDS, delay_seconds, next_start
from tests.unit.builders import T0, retry


@pytest.mark.parametrize(("factor", "cap", "attempt", "seconds"), [
    pytest.param(1, None, 2, 5, id="factor-1-n2"),
    pytest.param(1, None, 3, 5, id="factor-1-n3"),
    pytest.param(1, None, 4, 5, id="factor-1-n4"),
    pytest.param(2, None, 2, 5, id="factor-2-n2"),
    pytest.param(2, None, 3, 10, id="factor-2-n3"),
    pytest.param(2, None, 4, 20, id="factor-2-n4"),
    pytest.param(1, 5, 4, 5, id="factor-1-cap-at-the-first-delay"),
    pytest.param(2, 12, 2, 5, id="factor-2-cap-n2-under-it"),
    pytest.param(2, 12, 3, 10, id="factor-2-cap-n3-under-it"),
    pytest.param(2, 12, 4, 12, id="factor-2-cap-n4-capped"),
    pytest.param(10, 30, 3, 30, id="factor-10-capped-at-once"),
    pytest.param(2, None, 11, 5 * 2 ** 9, id="factor-2-the-last-retry-the-api-allows"),
])
def test_the_delay_before_attempt_n(factor: int, cap: int | None, attempt: int,
                                    seconds: int) -> None:
    policy = retry(3, 5, factor=factor, max_backoff_seconds=cap)
    assert delay_seconds(policy, attempt) == seconds


@pytest.mark.parametrize("attempt", [100, 10**6, 10**18, 10**100])
@pytest.mark.parametrize(("factor", "cap", "seconds"), [
    pytest.param(1, None, 5, id="factor-1"),
    pytest.param(2, None, MAX_BACKOFF_SECONDS, id="factor-2-no-cap"),
    pytest.param(10, 60, 60, id="factor-10-cap"),
    pytest.param(2, 10**9, MAX_BACKOFF_SECONDS, id="a-cap-over-the-ceiling"),
])
def test_a_huge_attempt_number_neither_overflows_nor_passes_the_cap(
        attempt: int, factor: int, cap: int | None, seconds: int) -> None:
    policy = retry(3, 5, factor=factor, max_backoff_seconds=cap)
    assert delay_seconds(policy, attempt) == seconds
    assert next_start(policy, attempt, T0) == T0 + dt.timedelta(seconds=seconds)


def test_no_delay_stays_no_delay() -> None:
    assert delay_seconds(retry(3, 0, factor=10), 10**9) == 0


def test_the_first_attempt_has_no_exponent_below_zero() -> None:
    assert delay_seconds(retry(3, 5, factor=2), 1) == 5


@pytest.mark.parametrize(("seen", "starts"), [
    pytest.param(T0, T0 + dt.timedelta(seconds=10), id="on-a-whole-second"),
    pytest.param(T0 + dt.timedelta(microseconds=1), T0 + dt.timedelta(seconds=11),
                 id="just-after-one"),
    pytest.param(T0 + dt.timedelta(microseconds=999_999), T0 + dt.timedelta(seconds=11),
                 id="just-before-the-next"),
])
def test_the_next_attempt_starts_on_a_whole_second_never_sooner(seen: dt.datetime,
                                                                starts: dt.datetime) -> None:
    """Stored in whole seconds, the time read back is the time decided."""
    policy = retry(3, 5, factor=2)
    assert next_start(policy, 3, seen) == starts
    assert starts >= seen + dt.timedelta(seconds=delay_seconds(policy, 3))
