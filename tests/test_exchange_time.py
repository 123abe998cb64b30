"""Exchange time: sessions, the date of a daily bar and what a "day" is follow data.timezone.

Bars stay in naive UTC inside. Every file here is generated with local exchange times written
as the exchange would stamp them; the expected values come from the generating loop (local
wall times, session numbers), never from the code under test.

Conventions: a session filter keeps bars whose local stamp lies in [start, end], both ends
included (09:30..16:00 on a 30-minute grid is 14 bars a day). A session that crosses midnight
(17:00..16:00 America/Chicago) belongs to the date it ends on.
"""

from __future__ import annotations

import copy
import datetime as dt
import math

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.brokers.costs import configure_broker
from kerastrader.config import default_config
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.models.features import FeatureSet
from kerastrader.models.training import split_dataset
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.strategies.model_strategy import ModelStrategy
from tests.conftest import tiny_config

NY, TOKYO, CHICAGO = "America/New_York", "Asia/Tokyo", "America/Chicago"


def _ohlcv(n: int, seed: int) -> list[tuple[float, float, float, float, float]]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.0005, n))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    volume = rng.integers(100, 1000, n).astype(float)
    return list(zip(open_, high, low, close, volume, strict=True))


def write_intraday(path, stamps: list[dt.datetime], seed: int = 0):
    """A Date,Time CSV of local wall-clock ``stamps``."""
    lines = ["Date,Time,Open,High,Low,Close,Volume"]
    for when, (o, h, lo, c, v) in zip(stamps, _ohlcv(len(stamps), seed), strict=True):
        lines.append(f"{when:%Y-%m-%d},{when:%H:%M:%S},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v:.0f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def weekdays(first: str, last: str) -> list[dt.date]:
    return [d.date() for d in pd.bdate_range(first, last)]


def grid(day: dt.date, start: str, end: str, minutes: int) -> list[dt.datetime]:
    """Local stamps from ``start`` to ``end`` (inclusive) every ``minutes`` on ``day``."""
    t = dt.datetime.combine(day, dt.time.fromisoformat(start))
    stop = dt.datetime.combine(day, dt.time.fromisoformat(end))
    out = []
    while t <= stop:
        out.append(t)
        t += dt.timedelta(minutes=minutes)
    return out


def local(index: pd.DatetimeIndex, zone: str) -> list[dt.datetime]:
    return list(index.tz_localize("UTC").tz_convert(zone).tz_localize(None).to_pydatetime())


def chicago_sessions(first: str, last: str) -> tuple[list[dt.datetime], list[dt.date]]:
    """Hourly local stamps of CME-like sessions: trading date D runs from 17:00 of the day
    before (Sunday for Monday) to 16:00 on D. Returns the stamps and each stamp's session."""
    stamps, sessions = [], []
    for day in weekdays(first, last):
        evening = grid(day - dt.timedelta(days=1), "17:00", "23:00", 60)
        day_part = grid(day, "00:00", "16:00", 60)
        stamps += evening + day_part
        sessions += [day] * (len(evening) + len(day_part))
    return stamps, sessions


def strategy_settings(**sections) -> dict:
    cfg = default_config()
    for section, values in sections.items():
        cfg[section].update(values)
    return {k: copy.deepcopy(cfg[k]) for k in ("strategy", "sizing", "risk", "portfolio")}


class Always(ModelStrategy):
    """ModelStrategy with a constant prediction (no model) that records its decisions."""

    params = (("p_up", 0.9),)

    def __init__(self):
        super().__init__()
        self.rebalanced: list[dt.date] = []
        self.created: list[tuple[dt.datetime, float]] = []  # (bar time, signed size)

    def prediction_of(self, i):
        return self.p.p_up

    def notify_order(self, order):
        if order.status == order.Submitted:
            self.created.append((bt.num2date(order.created.dt), order.created.size))
        super().notify_order(order)

    def next(self):
        before = self.last_rebalance
        super().next()
        if self.last_rebalance != before:
            self.rebalanced.append(self.last_rebalance)


def run_always(bars: pd.DataFrame, clock: ExchangeClock, **sections):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "X"), name="X")
    broker = default_config()["broker"]
    broker.update(commission=0.0, slippage_bps=0.0)
    configure_broker(cerebro, broker)
    cerebro.addstrategy(Always, model=None, settings=strategy_settings(**sections), clock=clock)
    return cerebro.run()[0]


# -- sessions --------------------------------------------------------------------------------


def test_a_new_york_session_keeps_exactly_0930_to_1600_local_across_dst(tmp_path):
    from kerastrader.backtest import load_universe

    days = weekdays("2024-03-06", "2024-03-13")  # US clocks moved on Sunday 10 March
    stamps = [t for d in days for t in grid(d, "04:00", "20:00", 30)]  # with extended hours
    path = write_intraday(tmp_path / "spy-30min.csv", stamps)
    cfg = tiny_config(
        data={"path": str(path), "symbol": "SPY", "timezone": NY,
              "session_start": "09:30", "session_end": "16:00"}
    )  # fmt: skip
    universe, _ = load_universe(cfg)
    bars = universe["SPY"]
    expected = [t for t in stamps if "09:30" <= f"{t:%H:%M}" <= "16:00"]
    assert local(bars.index, NY) == expected
    per_day = pd.Series(1, index=[t.date() for t in expected]).groupby(level=0).sum()
    assert (per_day == 14).all() and len(per_day) == len(days)
    # the open in UTC: 14:30 in winter (EST, UTC-5), 13:30 after the change (EDT, UTC-4)
    assert pd.Timestamp("2024-03-08 14:30") in bars.index
    assert pd.Timestamp("2024-03-11 13:30") in bars.index


# -- the date of a daily bar -----------------------------------------------------------------


def tokyo_daily(tmp_path) -> tuple[pd.DataFrame, list[dt.date]]:
    # Monday 8 January 2024 is a Tokyo holiday (Coming of Age Day): that week starts Tuesday.
    dates = [d for d in weekdays("2024-01-01", "2024-02-02") if d != dt.date(2024, 1, 8)]
    lines = ["Date,Open,High,Low,Close,Volume"]
    for d, (o, h, lo, c, v) in zip(dates, _ohlcv(len(dates), 4), strict=True):
        lines.append(f"{d.isoformat()},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v:.0f}")
    path = tmp_path / "7203-daily.csv"
    path.write_text("\n".join(lines) + "\n")
    return load_csv(path, timezone=TOKYO), dates


def test_a_tokyo_daily_file_keeps_mondays_bar_on_monday(tmp_path):
    bars, dates = tokyo_daily(tmp_path)
    assert list(bars.index.date) == dates
    assert bars.index[0] == pd.Timestamp("2024-01-01") and bars.index[0].weekday() == 0
    assert (bars.index == bars.index.normalize()).all()  # still daily bars, not 15:00 UTC
    assert bars.attrs["timezone"] == TOKYO


def test_weekly_rebalancing_falls_on_the_first_tokyo_bar_of_each_week(tmp_path):
    bars, dates = tokyo_daily(tmp_path)
    strat = run_always(bars, ExchangeClock(TOKYO), portfolio={"rebalance": "weekly"})
    firsts, seen = [], set()
    for d in dates:  # a plain loop: the first bar of each ISO week
        if d.isocalendar()[:2] not in seen:
            seen.add(d.isocalendar()[:2])
            firsts.append(d)
    assert strat.rebalanced == firsts
    assert dt.date(2024, 1, 9) in firsts  # the holiday week starts on Tuesday


# -- what a day of intraday bars is ----------------------------------------------------------


class BuyOnce(bt.Strategy):
    def next(self):
        if len(self) == 1:
            self.buy(size=100)


def test_a_chicago_17_to_16_session_is_one_day_in_the_returns(tmp_path):
    stamps, sessions = chicago_sessions("2024-03-06", "2024-03-15")  # across US DST
    bars = load_csv(write_intraday(tmp_path / "cl-hourly.csv", stamps, seed=7), timezone=CHICAGO)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "CL"), name="CL")
    cerebro.broker.setcash(100_000.0)
    cerebro.addstrategy(BuyOnce)
    cerebro.addanalyzer(
        PortfolioAnalyzer, _name="pf", clock=ExchangeClock(CHICAGO, "17:00", "16:00")
    )
    returns = cerebro.run()[0].analyzers.pf.get_analysis()["returns"]

    # By hand: 100 shares bought at bar 1's open; each session's value at its last bar.
    cost = 100 * bars["open"].iloc[1]
    last_bar = {s: i for i, s in enumerate(sessions)}  # session -> its last row
    days = sorted(last_bar)
    values = [100_000.0] + [100_000.0 - cost + 100 * bars["close"].iloc[last_bar[d]] for d in days]
    expected = [values[k + 1] / values[k] - 1 for k in range(len(days))]

    assert len(returns) == len(days) == 8
    assert list(returns.index) == [pd.Timestamp(d, tz="UTC") for d in days]
    np.testing.assert_allclose(returns.to_numpy(), expected, rtol=0, atol=1e-12)


def test_the_daily_loss_limit_day_is_the_exchange_trading_day(tmp_path):
    stamps, _ = chicago_sessions("2024-03-11", "2024-03-15")
    bars = load_csv(write_intraday(tmp_path / "cl-hourly.csv", stamps, seed=9), timezone=CHICAGO)
    # A 20% gap down at Tuesday 12 March 17:00 CDT (22:00 UTC, still Tuesday in UTC and in
    # Chicago): the first bar of Wednesday's session.
    shock = bars.index.get_loc(pd.Timestamp("2024-03-12 22:00"))
    bars.iloc[shock:, :4] *= 0.8
    clock = ExchangeClock(CHICAGO, "17:00", "16:00")
    strat = run_always(bars, clock, risk={"daily_loss_limit": 0.1})

    assert strat.halted_on == dt.date(2024, 3, 13)  # the trading date, not UTC's 12 March
    sells = [when for when, size in strat.created if size < 0]
    assert sells == [dt.datetime(2024, 3, 12, 22, 0)]  # flattened at the shock bar's close
    buys = [when for when, size in strat.created if size > 0 and when > sells[0]]
    # No entry for the rest of Wednesday's session; the next comes with Thursday's session,
    # Wednesday 13 March 17:00 CDT = 22:00 UTC.
    assert buys[0] == dt.datetime(2024, 3, 13, 22, 0)
    assert not math.isnan(strat._day_start_value)


# -- a date-only split boundary includes the whole trading day --------------------------------


def _split(train_end: str, validation_end: str) -> dict:
    return {"train_end": train_end, "validation_end": validation_end, "train_fraction": 0.6,
            "validation_fraction": 0.2, "embargo": 0}  # fmt: skip


def test_an_inclusive_train_end_keeps_every_intraday_bar_of_that_day(tmp_path):
    days = weekdays("2024-01-02", "2024-01-31")
    stamps = [t for d in days for t in grid(d, "09:30", "16:00", 30)]
    bars = load_csv(write_intraday(tmp_path / "ny-30min.csv", stamps, seed=3), timezone=NY)
    ds = split_dataset(bars, FeatureSet(["logret_1"]), 4, _split("2024-01-10", "2024-01-19"),
                       clock=ExchangeClock(NY))  # fmt: skip
    last_train = ds.ends["train"][-1] + 1  # the purge (horizon 1) keeps the last bar out
    # 16:00 EST on 10 January is 21:00 UTC; validation starts 09:30 EST = 14:30 UTC on the 11th
    assert ds.dates[last_train] == pd.Timestamp("2024-01-10 21:00")
    assert ds.dates[ds.ends["validation"][0]] == pd.Timestamp("2024-01-11 14:30")
    assert ds.dates[ds.ends["validation"][-1] + 1] == pd.Timestamp("2024-01-19 21:00")


def test_an_inclusive_train_end_follows_a_session_that_crosses_midnight(tmp_path):
    stamps, _ = chicago_sessions("2024-03-04", "2024-03-22")
    bars = load_csv(write_intraday(tmp_path / "cl-hourly.csv", stamps, seed=5), timezone=CHICAGO)
    clock = ExchangeClock(CHICAGO, "17:00", "16:00")
    ds = split_dataset(bars, FeatureSet(["logret_1"]), 4, _split("2024-03-12", "2024-03-18"),
                       clock=clock)  # fmt: skip
    # 12 March's session ends 16:00 CDT = 21:00 UTC; the 17:00 CDT bar (22:00 UTC, still the
    # 12th in UTC) opens the 13th's session and is validation.
    assert ds.dates[ds.ends["train"][-1] + 1] == pd.Timestamp("2024-03-12 21:00")
    assert ds.dates[ds.ends["validation"][0]] == pd.Timestamp("2024-03-12 22:00")


@pytest.mark.parametrize(
    ("when", "day"),
    [
        ("2024-03-08 22:00", dt.date(2024, 3, 8)),  # Friday 16:00 CST: Friday's close
        ("2024-03-10 22:00", dt.date(2024, 3, 11)),  # Sunday 17:00 CDT opens Monday
        ("2024-03-11 05:00", dt.date(2024, 3, 11)),  # Monday 00:00 CDT
        ("2024-03-11 22:00", dt.date(2024, 3, 12)),  # Monday 17:00 CDT opens Tuesday
    ],
)
def test_the_scalar_and_vectorised_trading_day_agree(when, day):
    clock = ExchangeClock(CHICAGO, "17:00", "16:00")
    stamp = pd.Timestamp(when)
    assert clock.trading_day(stamp.to_pydatetime()) == day
    index = pd.DatetimeIndex([stamp, stamp + pd.Timedelta("1min")])
    assert clock.trading_days(index)[0] == pd.Timestamp(day)
