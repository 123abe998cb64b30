"""Real-time bars aggregated into the strategy's bars: complete periods only, none lost."""

from __future__ import annotations

from kerastrader.brokers.ib.feed import Aggregator
from kerastrader.brokers.ib.store import Bar


def test_real_time_bars_aggregate_into_minute_bars_only_when_the_minute_is_complete():
    agg = Aggregator(bucket=60, bar_seconds=5)
    out = [agg.add(Bar(t, 10 + t, 11 + t, 9 + t, 10.5 + t, 1.0)) for t in range(0, 60, 5)]
    assert all(done == [] for done in out[:-1])
    (minute,) = out[-1]
    assert (minute.time, minute.open, minute.high, minute.low, minute.close, minute.volume) == (
        0.0, 10.0, 66.0, 9.0, 65.5, 12.0,
    )  # fmt: skip


def test_a_period_missing_its_last_bar_is_closed_by_the_next_period_and_nothing_is_dropped():
    agg = Aggregator(bucket=5, bar_seconds=5)
    assert agg.add(Bar(0.0, 1, 1, 1, 1, 1)) != []  # a 5-second bar is a whole 5-second period
    agg = Aggregator(bucket=60, bar_seconds=5)
    agg.add(Bar(0.0, 1, 2, 0.5, 1.5, 1))  # the minute's later bars never come
    done = agg.add(Bar(120.0, 3, 3, 3, 3, 1))  # a later minute opens...
    assert [b.time for b in done] == [0.0]
    agg = Aggregator(bucket=5, bar_seconds=5)
    agg.seed(Bar(0.0, 1, 1, 1, 1, 1))  # a period left open (a history bar still forming)
    done = agg.add(Bar(10.0, 2, 2, 2, 2, 1))  # closes it and completes its own period
    assert [b.time for b in done] == [0.0, 10.0]
