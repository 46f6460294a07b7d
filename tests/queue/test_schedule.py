"""next_delay and friends: pure, table-tested."""

import pytest
from hypothesis import given, settings, strategies as st

from mailnet.queue.schedule import delay_warning_due, next_attempt, next_delay


@pytest.mark.parametrize("attempt, expected", [
    (0, 300), (1, 300), (2, 600), (3, 1200), (4, 2400), (5, 4000), (6, 4000), (50, 4000), (10_000, 4000),
])
def test_postfix_defaults_without_jitter(attempt, expected):
    # From 5 minutes doubling to about 67 minutes (Postfix).
    assert next_delay(attempt) == expected


@pytest.mark.parametrize("draw, expected", [(0.0, 270), (0.25, 285), (0.5, 300), (0.75, 315), (0.999999, 330)])
def test_jitter_spreads_ten_percent(draw, expected):
    assert next_delay(1, draw=draw) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("initial, maximum, attempt, expected", [
    (1, 2, 1, 1), (1, 2, 2, 2), (1, 2, 3, 2), (60, 3600, 7, 3600), (60, 3600, 6, 1920),
])
def test_configured_values(initial, maximum, attempt, expected):
    assert next_delay(attempt, initial, maximum, jitter=0) == expected


def test_never_below_one_second():
    assert next_delay(1, initial=1, maximum=1, jitter=0.5, draw=0.0) == 1.0


@settings(max_examples=200)
@given(st.integers(min_value=-5, max_value=10**6), st.floats(min_value=0, max_value=0.999999),
       st.integers(min_value=1, max_value=10**5), st.integers(min_value=1, max_value=10**6))
def test_bounds(attempt, draw, initial, maximum):
    d = next_delay(attempt, initial, maximum, draw=draw)
    assert 1 <= d <= max(1, maximum * 1.1)
    assert d >= min(initial, maximum) * 0.9 - 1e-9 or d == 1


@pytest.mark.parametrize("now, attempt, expected", [
    (1000, 1, 1300),              # regular retry
    (1000, 5, 5000),              # capped at retry_max
    (431_000, 5, 432_000),        # the last retry sits at the end of the lifetime
    (432_000, 5, None),           # lifetime over: bounce
    (500_000, 1, None),
])
def test_next_attempt_and_lifetime(now, attempt, expected):
    arrival, lifetime = 0, 5 * 86400
    assert next_attempt(now, arrival, attempt, lifetime) == expected


@pytest.mark.parametrize("now, warned, setting, expected", [
    (4 * 3600 - 1, False, 4 * 3600, False),
    (4 * 3600, False, 4 * 3600, True),
    (5 * 3600, True, 4 * 3600, False),
    (10 * 3600, False, 0, False),
])
def test_delay_warning_due(now, warned, setting, expected):
    assert delay_warning_due(now, 0, setting, warned) is expected
