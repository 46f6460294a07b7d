"""
When to try again: pure functions, no clock, no I/O.

The defaults follow Postfix (``minimal_backoff_time`` 300 s,
``maximal_backoff_time`` 4000 s, ``maximal_queue_lifetime`` 5 days,
``delay_warning_time`` 4 hours): the wait doubles after each failed attempt,
from 5 minutes to about 67 minutes, and the message bounces once it is older
than the lifetime.  RFC 5321 s4.5.4.1 asks for at least 30 minutes between
retries to one destination and a give-up time of 4-5 days; the first,
shorter waits are what every MTA does in practice for greylisting.

Jitter (by default +-10%) keeps messages that failed together from all
coming back in the same second.  The random draw is a parameter, so the
functions stay pure and table-testable.
"""

from __future__ import annotations

JITTER = 0.10


def next_delay(attempt: int, initial: float = 300, maximum: float = 4000, jitter: float = JITTER, draw: float = 0.5) -> float:
    """
    Seconds to wait after failed attempt number ``attempt`` (1 = the first
    attempt failed).

    The wait before jitter is ``initial * 2 ** (attempt - 1)``, capped at
    ``maximum``.  Jitter scales it by a factor in ``[1 - jitter, 1 + jitter)``
    chosen by ``draw`` (uniform in ``[0, 1)``; 0.5 means no jitter).  The
    result is never below 1 second nor above ``maximum * (1 + jitter)``.
    """
    if attempt < 1:
        attempt = 1
    # 2 ** 64 is more than any cap; avoid computing huge powers.
    base = initial * (2 ** min(attempt - 1, 64))
    base = min(base, maximum)
    factor = 1 + jitter * (2 * draw - 1)
    return max(1.0, base * factor)


def next_attempt(now: float, arrival: float, attempt: int, lifetime: float, initial: float = 300,
                 maximum: float = 4000, jitter: float = JITTER, draw: float = 0.5) -> float | None:
    """
    When to try a recipient again after failed attempt ``attempt`` at ``now``.

    @return: an epoch time, or None when the message has outlived
        ``lifetime`` and must bounce now.  The last retry is placed exactly
        at the end of the lifetime (when the regular wait would pass it), so
        that a message always gets a final try before it bounces.
    """
    deadline = arrival + lifetime
    if now >= deadline:
        return None
    return min(now + next_delay(attempt, initial, maximum, jitter, draw), deadline)


def delay_warning_due(now: float, arrival: float, delay_warning: float, warned: bool) -> bool:
    """Whether the one delay DSN should go out now (``delay_warning`` 0 = never)."""
    return bool(delay_warning) and not warned and now - arrival >= delay_warning
