"""Trading costs in real Backtrader runs: what each fill costs, to the cent.

Every test feeds a few generated daily bars, sends one known order on a known bar (orders
sent on bar N fill at bar N+1's open) and reads the fills from ``notify_order``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import backtrader as bt
import pandas as pd
import pytest

from kerastrader.brokers.costs import (
    SCHEMES,
    CostBroker,
    IBKRTieredCommInfo,
    configure_broker,
    round_trip_cost,
)
from kerastrader.errors import ConfigError

EXACT = 1e-9


def broker_config(**overrides: Any) -> dict[str, Any]:
    """A [broker] section with no costs at all, changed by ``overrides``."""
    cfg = {
        "cash": 100_000.0,
        "commission_scheme": "percent",
        "commission": 0.0,
        "per_share": 0.005,
        "min_commission": 1.0,
        "max_commission": 0.01,
        "slippage_bps": 0.0,
        "slippage_range": 0.0,
        "volume_cap": 0.0,
    }
    cfg.update(overrides)
    return cfg


def bars(
    n: int = 5,
    *,
    open_: float = 50.0,
    high: float | None = None,
    low: float | None = None,
    volume: float = 1_000_000,
    start: str = "2024-01-02",
    changes: dict[int, tuple[float, float, float, float]] | None = None,
) -> pd.DataFrame:
    """``n`` flat business-day bars; ``changes`` maps a 1-based bar to (open, high, low, close)."""
    high = open_ + 1 if high is None else high
    low = open_ - 1 if low is None else low
    rows = [(open_, high, low, open_, volume)] * n
    for bar, (o, h, lo, c) in (changes or {}).items():
        rows[bar - 1] = (o, h, lo, c, volume)
    index = pd.bdate_range(start, periods=n, name="datetime")
    return pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"])


@dataclass
class Fill:
    date: dt.date
    size: float
    price: float
    comm: float


class Script(bt.Strategy):
    """Sends ``orders[bar]`` (1-based bar number -> [(method, kwargs)]) and records every fill."""

    params = (("orders", None),)

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.done: list[bt.Order] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Partial, order.Completed):
            for bit in order.executed.iterpending():
                self.fills.append(Fill(bt.num2date(bit.dt).date(), bit.size, bit.price, bit.comm))
        if not order.alive():
            self.done.append(order)

    def next(self) -> None:
        for method, kwargs in (self.p.orders or {}).get(len(self), ()):
            getattr(self, method)(**kwargs)


def run(df: pd.DataFrame, cfg: dict[str, Any], orders: dict) -> tuple[Script, CostBroker]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df))
    configure_broker(cerebro, cfg)
    cerebro.addstrategy(Script, orders=orders)
    (strategy,) = cerebro.run()
    return strategy, cerebro.broker


def buy(size: float, bar: int = 1, **kwargs: Any) -> dict:
    return {bar: [("buy", {"size": size, **kwargs})]}


def sell(size: float, bar: int = 1, **kwargs: Any) -> dict:
    return {bar: [("sell", {"size": size, **kwargs})]}


def only_fill(strategy: Script) -> Fill:
    assert len(strategy.fills) == 1, strategy.fills
    return strategy.fills[0]


# --- setup -----------------------------------------------------------------------------------


def test_configure_broker_installs_a_cost_broker_with_the_configured_cash() -> None:
    cerebro = bt.Cerebro()
    configure_broker(cerebro, broker_config(cash=25_000.0))
    assert isinstance(cerebro.broker, CostBroker)
    assert cerebro.broker.getcash() == 25_000.0


# --- percent ---------------------------------------------------------------------------------


def test_percent_charges_the_fraction_of_traded_value() -> None:
    strategy, broker = run(bars(), broker_config(commission=0.001), buy(100))
    fill = only_fill(strategy)
    assert (fill.size, fill.price) == (100, 50.0)
    assert fill.comm == pytest.approx(5.00, abs=EXACT)
    assert broker.getcash() == pytest.approx(100_000 - 5_000 - 5.00, abs=EXACT)
    assert broker.getvalue() == pytest.approx(100_000 - 5.00, abs=EXACT)


# --- per_share -------------------------------------------------------------------------------


def test_per_share_small_order_pays_the_minimum() -> None:
    # 100 shares * 0.005 = 0.50, below the 1.00 minimum.
    strategy, _ = run(bars(), broker_config(commission_scheme="per_share"), buy(100))
    assert only_fill(strategy).comm == pytest.approx(1.00, abs=EXACT)


def test_per_share_large_order_pays_per_share() -> None:
    cfg = broker_config(commission_scheme="per_share", cash=1_000_000.0)
    strategy, _ = run(bars(), cfg, buy(10_000))
    assert only_fill(strategy).comm == pytest.approx(50.00, abs=EXACT)


def test_per_share_penny_stock_is_capped_at_max_commission_of_value() -> None:
    # 10,000 shares * 0.005 = 50.00, but 1% of the 2,000.00 traded is 20.00.
    df = bars(open_=0.20, high=0.21, low=0.19)
    strategy, _ = run(df, broker_config(commission_scheme="per_share"), buy(10_000))
    assert only_fill(strategy).comm == pytest.approx(20.00, abs=EXACT)


def test_per_share_without_cap_when_max_commission_is_zero() -> None:
    df = bars(open_=0.20, high=0.21, low=0.19)
    cfg = broker_config(commission_scheme="per_share", max_commission=0.0)
    strategy, _ = run(df, cfg, buy(10_000))
    assert only_fill(strategy).comm == pytest.approx(50.00, abs=EXACT)


# --- ibkr_fixed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "price", "commission"),
    [
        (100, 25.0, 1.00),  # IB's example: the USD 1.00 minimum
        (1_000, 25.0, 5.00),  # IB's example: 0.005 a share
        (1_000, 0.25, 2.50),  # IB's example: 1% of the 250.00 traded
        (1, 50.0, 0.50),  # the 1% cap beats the minimum
    ],
)
def test_ibkr_fixed_matches_ib_published_examples(
    shares: int, price: float, commission: float
) -> None:
    df = bars(open_=price, high=price * 1.01, low=price * 0.99)
    strategy, _ = run(df, broker_config(commission_scheme="ibkr_fixed"), buy(shares))
    assert only_fill(strategy).comm == pytest.approx(commission, abs=EXACT)


# --- ibkr_tiered -----------------------------------------------------------------------------


def tiered_run(start: str, orders: dict) -> Script:
    df = bars(8, open_=10.0, start=start)
    cfg = broker_config(commission_scheme="ibkr_tiered", cash=5_000_000.0)
    strategy, _ = run(df, cfg, orders)
    return strategy


def test_ibkr_tiered_rate_drops_after_300000_shares_in_the_month() -> None:
    # 2024-01-02..: both fills in January. 300,000 * 0.0035 = 1,050.00; then 1,000 * 0.0020.
    strategy = tiered_run("2024-01-02", {**buy(300_000, bar=1), **buy(1_000, bar=2)})
    assert [f.comm for f in strategy.fills] == pytest.approx([1_050.00, 2.00], abs=EXACT)


def test_ibkr_tiered_volume_resets_in_a_new_month() -> None:
    # Bars from Thu 2024-01-25: bar 1 fills Fri 26 Jan, bar 5 (Wed 31 Jan) fills Thu 1 Feb.
    strategy = tiered_run("2024-01-25", {**buy(300_000, bar=1), **buy(1_000, bar=5)})
    assert [f.date for f in strategy.fills] == [dt.date(2024, 1, 26), dt.date(2024, 2, 1)]
    assert [f.comm for f in strategy.fills] == pytest.approx([1_050.00, 3.50], abs=EXACT)


def test_ibkr_tiered_order_crossing_a_tier_pays_the_tier_reached_before_it() -> None:
    # 299,999 shares leave the month in the first tier; the next 1,000 all pay 0.0035.
    strategy = tiered_run("2024-01-02", {**buy(299_999, bar=1), **buy(1_000, bar=2)})
    assert strategy.fills[1].comm == pytest.approx(3.50, abs=EXACT)


def test_ibkr_tiered_small_order_pays_the_035_minimum() -> None:
    # 50 shares * 0.0035 = 0.175.
    strategy = tiered_run("2024-01-02", buy(50))
    assert only_fill(strategy).comm == pytest.approx(0.35, abs=EXACT)


def test_ibkr_tiered_what_if_calculations_do_not_count_volume() -> None:
    # getcommission (pseudoexec=True) is also Backtrader's cash check at submission: no state.
    comm = IBKRTieredCommInfo()
    comm.note_datetime(dt.datetime(2024, 1, 2))
    for _ in range(3):
        assert comm.getcommission(400_000, 10.0) == pytest.approx(1_400.00, abs=EXACT)
    assert comm.volume_this_month() == 0
    comm.confirmexec(400_000, 10.0)  # what BackBroker calls once per real execution
    assert comm.volume_this_month() == 400_000
    assert comm.getcommission(1_000, 10.0) == pytest.approx(2.00, abs=EXACT)


# --- slippage --------------------------------------------------------------------------------


@pytest.mark.parametrize(("order", "price"), [(buy, 100.05), (sell, 99.95)])
def test_slippage_bps_moves_a_market_fill_at_the_open_against_the_trader(
    order: Any, price: float
) -> None:
    strategy, _ = run(bars(open_=100.0), broker_config(slippage_bps=5.0), order(100))
    assert only_fill(strategy).price == pytest.approx(price, abs=EXACT)


@pytest.mark.parametrize(("order", "price"), [(buy, 100.4), (sell, 99.6)])
def test_slippage_range_moves_a_fill_by_a_fraction_of_the_bar_range(
    order: Any, price: float
) -> None:
    # Fill bar: open 100, high 102, low 98; a tenth of the 4.00 range is 0.40.
    df = bars(open_=100.0, changes={2: (100.0, 102.0, 98.0, 100.0)})
    strategy, _ = run(df, broker_config(slippage_range=0.1), order(100))
    assert only_fill(strategy).price == pytest.approx(price, abs=EXACT)


@pytest.mark.parametrize(
    ("order", "bar", "price"),
    [
        (buy, (101.0, 102.0, 98.0, 100.0), 102.0),  # 101 + 0.9 * 4 = 104.6: the high
        (sell, (99.0, 102.0, 98.0, 100.0), 98.0),  # 99 - 0.9 * 4 = 95.4: the low
    ],
)
def test_slippage_range_never_leaves_the_bar(order: Any, bar: tuple, price: float) -> None:
    df = bars(open_=100.0, changes={2: bar})
    strategy, _ = run(df, broker_config(slippage_range=0.9), order(100))
    assert only_fill(strategy).price == pytest.approx(price, abs=EXACT)


def test_slippage_bps_and_range_add_up() -> None:
    # 100 * 5 bps = 0.05, plus 0.1 * (102 - 98) = 0.40.
    df = bars(open_=100.0, changes={2: (100.0, 102.0, 98.0, 100.0)})
    strategy, _ = run(df, broker_config(slippage_bps=5.0, slippage_range=0.1), buy(100))
    assert only_fill(strategy).price == pytest.approx(100.45, abs=EXACT)


def test_limit_order_filled_at_its_limit_does_not_slip() -> None:
    # BackBroker's rule, kept: a limit touched inside the bar fills at the limit itself.
    df = bars(open_=100.0, changes={2: (100.0, 101.0, 97.0, 100.0)})
    cfg = broker_config(slippage_bps=5.0, slippage_range=0.1)
    strategy, _ = run(df, cfg, buy(100, exectype=bt.Order.Limit, price=98.0))
    assert only_fill(strategy).price == 98.0


# --- stops -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "stop", "bar", "price"),
    [
        (buy, 105.0, (110.0, 112.0, 109.0, 111.0), 110.0 * 1.0005),
        (sell, 95.0, (90.0, 91.0, 88.0, 89.0), 90.0 * 0.9995),
    ],
)
def test_stop_gapped_through_at_the_open_fills_at_the_open_with_slippage(
    order: Any, stop: float, bar: tuple, price: float
) -> None:
    df = bars(open_=100.0, changes={2: bar})
    strategy, _ = run(
        df, broker_config(slippage_bps=5.0), order(100, exectype=bt.Order.Stop, price=stop)
    )
    assert only_fill(strategy).price == pytest.approx(price, abs=EXACT)


def test_stop_touched_inside_the_bar_fills_at_the_stop_with_slippage() -> None:
    df = bars(open_=100.0, changes={2: (100.0, 107.0, 99.0, 106.0)})
    strategy, _ = run(
        df, broker_config(slippage_bps=5.0), buy(100, exectype=bt.Order.Stop, price=105.0)
    )
    assert only_fill(strategy).price == pytest.approx(105.0 * 1.0005, abs=EXACT)


# --- volume cap ------------------------------------------------------------------------------


def test_volume_cap_spreads_a_large_order_over_later_bars() -> None:
    # 25% of 2,000 shares a bar is 500: 10,000 shares take 20 bars, then the order completes.
    df = bars(25, volume=2_000)
    cfg = broker_config(volume_cap=0.25, commission=0.001, cash=1_000_000.0)
    strategy, broker = run(df, cfg, buy(10_000))
    fills = strategy.fills
    assert [f.size for f in fills] == [500] * 20
    assert [f.date for f in fills] == list(df.index[1:21].date)  # one fill a bar from bar 2
    assert sum(f.comm for f in fills) == pytest.approx(10_000 * 50.0 * 0.001, abs=EXACT)
    (order,) = strategy.done
    assert order.status == bt.Order.Completed
    assert order.executed.size == 10_000
    assert broker.getposition(strategy.data).size == 10_000


def test_minimum_commission_is_charged_per_fill_not_per_order() -> None:
    # 1,000 shares at IB Fixed cost 5.00 in one fill; capped at 100 shares a bar they take
    # ten fills of 100 shares, each paying the 1.00 minimum.
    df = bars(15, volume=400)
    cfg = broker_config(commission_scheme="ibkr_fixed", volume_cap=0.25)
    strategy, _ = run(df, cfg, buy(1_000))
    assert [f.size for f in strategy.fills] == [100] * 10
    assert strategy.done[0].executed.comm == pytest.approx(10.00, abs=EXACT)


def test_reversing_order_pays_the_minimum_on_each_half() -> None:
    # Selling 200 from long 100 closes 100 and opens a 100 short: Backtrader charges the
    # closed and the opened part separately, so the 1.00 minimum is paid twice.
    strategy, _ = run(
        bars(),
        broker_config(commission_scheme="per_share"),
        {**buy(100, bar=1), **sell(200, bar=2)},
    )
    assert [f.comm for f in strategy.fills] == pytest.approx([1.00, 2.00], abs=EXACT)


# --- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("commission_scheme", "flat"),
        ("cash", 0.0),
        ("cash", -1.0),
        ("commission", -0.001),
        ("commission", 1.5),
        ("commission", "0.1%"),
        ("per_share", -0.005),
        ("min_commission", -1.0),
        ("max_commission", -0.01),
        ("slippage_bps", -5.0),
        ("slippage_bps", math.nan),
        ("slippage_range", -0.1),
        ("volume_cap", -0.25),
        ("volume_cap", 25.0),
        ("volume_cap", True),
    ],
)
def test_bad_broker_value_raises_config_error_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"broker\.{key}\b"):
        configure_broker(bt.Cerebro(), broker_config(**{key: value}))


def test_missing_broker_key_raises_config_error_naming_the_key() -> None:
    cfg = broker_config()
    del cfg["volume_cap"]
    with pytest.raises(ConfigError, match=r"broker\.volume_cap is missing"):
        configure_broker(bt.Cerebro(), cfg)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_is_accepted(scheme: str) -> None:
    configure_broker(bt.Cerebro(), broker_config(commission_scheme=scheme))


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_cost_percent_is_twice_commission_plus_slippage() -> None:
    cfg = broker_config(commission=0.001, slippage_bps=5.0)
    assert round_trip_cost(cfg, 50.0, 100) == pytest.approx(2 * (0.001 + 0.0005), abs=EXACT)


def test_round_trip_cost_ibkr_fixed_includes_the_minimum() -> None:
    # Two 1.00 minimums on 5,000.00 traded.
    cfg = broker_config(commission_scheme="ibkr_fixed")
    assert round_trip_cost(cfg, 50.0, 100) == pytest.approx(2 * 1.00 / 5_000, abs=EXACT)
