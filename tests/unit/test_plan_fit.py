"""Does the busiest forecast day fit the rate limit over the share window?"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.plan import Forecast, rate_fit, window_seconds
from tests.unit.test_rule import policy

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def test_window_length_handles_midnight() -> None:
    assert window_seconds(policy(window_start=time(9), window_end=time(20))) == 11 * 3600
    assert window_seconds(policy(window_start=time(22), window_end=time(2))) == 4 * 3600
    assert window_seconds(policy(window_start=time(9, 30), window_end=time(9))) == 23.5 * 3600


def test_busiest_day_against_capacity() -> None:
    result = Forecast(now=NOW, until=NOW + timedelta(days=2), hours=48)
    result.buckets[("+14155550100", NOW.replace(hour=9))] = 30_000
    result.buckets[("+14155550111", NOW.replace(hour=10))] = 20_000
    result.buckets[("+14155550100", NOW.replace(hour=9) + timedelta(days=1))] = 45_000
    pol = policy(window_start=time(9), window_end=time(10))  # one hour
    fit = rate_fit(result, pol, 10, ZoneInfo("UTC"))
    assert (fit.capacity, fit.busiest_day, fit.busiest_shares) == (36_000, NOW.date(), 50_000)
    assert not fit.fits
    assert rate_fit(result, pol, 20, ZoneInfo("UTC")).fits
    # Days are local: 02:00 UTC on the 3rd is still the 2nd in New York.
    late = Forecast(now=NOW, until=NOW + timedelta(days=1), hours=24)
    late.buckets[(None, datetime(2026, 3, 3, 2, 0, tzinfo=UTC))] = 5
    ny = rate_fit(late, pol, 1, ZoneInfo("America/New_York"))
    assert ny.busiest_day == NOW.date()
    empty = rate_fit(Forecast(now=NOW, until=NOW, hours=1), pol, 1, ZoneInfo("UTC"))
    assert (empty.busiest_day, empty.fits) == (None, True)
