"""How long a step waits before it tries again, and when its next attempt may start.

The delay before attempt n (n >= 2) is `backoff_seconds * backoff_factor ** (n - 2)`, at most
the policy's cap and never more than `MAX_BACKOFF_SECONDS`, so that no attempt number, however
large, can overflow a time. The factor is an integer: every delay is whole seconds.
"""

from __future__ import annotations

import datetime as dt

from runctl.machine.model import RetryPolicy

MAX_BACKOFF_SECONDS = 86_400
"""The longest any delay is, cap or no cap (a day): a retry further off than that helps no one,
and it bounds every time the core computes from a delay."""

_SECOND = 1_000_000


def delay_seconds(retry: RetryPolicy, attempt: int) -> int:
    """Seconds to wait before attempt `attempt` (2: the first retry).

    Integer arithmetic with the exponent bounded: past `cap.bit_length()` multiplications by a
    factor of 2 or more the delay is over the cap already, so stopping there gives the same
    answer for any attempt number."""
    cap = min(MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS if retry.max_backoff_seconds is None
              else retry.max_backoff_seconds)
    exponent = min(max(attempt - 2, 0), cap.bit_length())
    grown: int = retry.backoff_factor ** exponent  # a non-negative exponent: an int
    return min(retry.backoff_seconds * grown, cap)


def next_start(retry: RetryPolicy, attempt: int, failed_at: dt.datetime) -> dt.datetime:
    """When attempt `attempt` may start after the previous one was seen failing at `failed_at`:
    the delay later, rounded up to a whole second. Status times are stored in whole seconds; a
    time read back rounded down would let the attempt start before its delay is over."""
    due = failed_at + dt.timedelta(seconds=delay_seconds(retry, attempt))
    return due + dt.timedelta(microseconds=-due.microsecond % _SECOND)
