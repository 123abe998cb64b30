"""ModelStrategy options, each checked on a concrete number in a real Backtrader run.

The predictions are scripted (a subclass replaces ``prediction_of``) so that every order size,
stop price and fill can be computed by hand; the model, broker and orders are the real ones.
"""

from __future__ import annotations

import copy
import math

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.brokers.costs import configure_broker
from kerastrader.config import default_config
from kerastrader.feeds.btfeed import make_feed
from kerastrader.strategies.model_strategy import ModelStrategy
from tests.conftest import random_walk_bars

START = 200  # first bar with a scripted prediction (after the tiny model's warm-up)


class Scripted(ModelStrategy):
    params = (("script", None),)

    def __init__(self):
        super().__init__()
        self.fills = []  # (bar, symbol, size, price, commission, exectype)
        self.created = []  # every order: (bar it was sent at, symbol, size, exectype, price)

    def prediction_of(self, i):
        bar = len(self.datas[i]) - 1
        return self.p.script(bar, i) if bar >= START else math.nan

    def notify_order(self, order):
        if order.status == order.Submitted:
            sent = bt.num2date(order.created.dt)
            bar = int(np.searchsorted(self.data.datetime.array, bt.date2num(sent)))
            self.created.append(
                (bar, order.data._name, order.created.size, order.getordername(),
                 order.created.price)
            )  # fmt: skip
        if order.status == order.Completed:
            self.fills.append(
                (len(order.data) - 1, order.data._name, order.executed.size,
                 order.executed.price, order.executed.comm, order.getordername())
            )  # fmt: skip
        super().notify_order(order)


def settings(**sections):
    cfg = default_config()
    # The sizing tests work their numbers on the whole equity; the cash buffer has its own.
    cfg["strategy"]["cash_buffer"] = 0.0
    for section, values in sections.items():
        cfg[section].update(values)
    out = {k: copy.deepcopy(cfg[k]) for k in ("strategy", "sizing", "risk", "portfolio")}
    return out, cfg["broker"]


def run(bars, script, model, broker=None, **sections):
    s, b = settings(**sections)
    b.update(commission=0.0, slippage_bps=0.0, **(broker or {}))
    cerebro = bt.Cerebro(stdstats=False)
    for i, frame in enumerate(bars):
        cerebro.adddata(make_feed(frame, f"S{i}"), name=f"S{i}")
    configure_broker(cerebro, b)
    cerebro.addstrategy(Scripted, model=model, settings=s, script=script)
    return cerebro.run()[0]


@pytest.fixture(scope="module")
def walk():
    return random_walk_bars(320, seed=3)


def always(p):
    return lambda bar, i: p


def first_entry(strat, symbol="S0"):
    return next(f for f in strat.fills if f[1] == symbol)


def test_fixed_sizing_buys_whole_shares_worth_target_percent(trained, walk):
    strat = run([walk], always(0.9), trained.loaded)
    bar, _, size, price, _, _ = first_entry(strat)
    assert bar == START + 1  # sent at START's close, filled at the next open
    assert price == pytest.approx(walk["open"].iloc[START + 1])
    assert size == math.trunc(0.95 * 100_000 / walk["close"].iloc[START])


def test_fractional_shares_hit_the_target_exactly(trained, walk):
    strat = run([walk], always(0.9), trained.loaded, sizing={"fractional": True})
    size = first_entry(strat)[2]
    assert size == pytest.approx(0.95 * 100_000 / walk["close"].iloc[START])


def test_volatility_targeting_scales_by_target_over_realised_volatility(trained, walk):
    vol = {"method": "volatility", "target_volatility": 0.10, "vol_lookback": 20}
    strat = run([walk], always(0.9), trained.loaded, sizing=vol)
    closes = walk["close"].iloc[START - 20 : START + 1].to_numpy()
    realised = np.std(np.diff(np.log(closes)), ddof=1) * np.sqrt(252)
    weight = min(0.95 * 0.10 / realised, 1.0)
    assert first_entry(strat)[2] == math.trunc(weight * 100_000 / walk["close"].iloc[START])


def test_half_kelly_on_p_up_0_6_bets_a_tenth_of_equity(trained, walk):
    strat = run([walk], always(0.6), trained.loaded, sizing={"method": "kelly"})
    # Kelly: 0.6 - 0.4 / 1 = 0.2; half Kelly 0.1
    assert first_entry(strat)[2] == math.trunc(0.1 * 100_000 / walk["close"].iloc[START])


def test_kelly_is_capped(trained, walk):
    strat = run([walk], always(0.99), trained.loaded,
                sizing={"method": "kelly", "kelly_cap": 0.25})  # fmt: skip
    assert first_entry(strat)[2] == math.trunc(0.25 * 100_000 / walk["close"].iloc[START])


def test_max_position_caps_the_weight(trained, walk):
    strat = run([walk], always(0.9), trained.loaded, sizing={"max_position": 0.3})
    assert first_entry(strat)[2] == math.trunc(0.3 * 100_000 / walk["close"].iloc[START])


def test_proportional_signal_sizes_by_conviction(trained, walk):
    strat = run([walk], always(0.55), trained.loaded,
                strategy={"signal": "proportional", "center": 0.5, "scale": 0.1})  # fmt: skip
    # (0.55 - 0.5) / 0.1 = 0.5 of the full 0.95
    assert first_entry(strat)[2] == math.trunc(0.475 * 100_000 / walk["close"].iloc[START])


def test_short_side_sells_when_allowed(trained, walk):
    strat = run([walk], always(0.1), trained.loaded, strategy={"allow_short": True})
    assert first_entry(strat)[2] == -math.trunc(0.95 * 100_000 / walk["close"].iloc[START])


def test_minimum_holding_period_delays_the_model_exit(trained, walk):
    def script(bar, i):
        return 0.9 if bar == START else 0.1

    quick = run([walk], script, trained.loaded)
    held = run([walk], script, trained.loaded, strategy={"min_hold": 5})
    assert [f[0] for f in quick.fills] == [START + 1, START + 2]
    assert [f[0] for f in held.fills] == [START + 1, START + 6]


def test_cost_filter_skips_predicted_returns_that_do_not_pay_for_the_round_trip(trained, walk):
    common = {"center": 0.0, "enter": 0.0005, "exit": 0.0, "cost_filter": True}
    s, b = settings(strategy=common)
    s["head"] = "regression"  # predictions are returns: compared with the cost as they are
    small = _run_with_round_trip([walk], always(0.002), trained.loaded, s, 0.003)
    large = _run_with_round_trip([walk], always(0.004), trained.loaded, s, 0.003)
    assert small.fills == []
    assert len(large.fills) == 1


def test_cost_filter_turns_a_probability_into_an_expected_move_before_comparing(trained, walk):
    # At START the typical one-bar move is the mean |r| of the last 20 returns; P(up) = p is
    # worth 2 (p - 0.5) of it. A round trip between the two bets' worth passes only the larger.
    close = walk["close"].to_numpy()
    recent = close[START - 20 : START + 1]
    typical = float(np.mean([abs(recent[k + 1] / recent[k] - 1) for k in range(20)]))
    weak, strong = 0.55, 0.95
    round_trip = 0.5 * (2 * (weak - 0.5) * typical + 2 * (strong - 0.5) * typical)
    s, _ = settings(strategy={"cost_filter": True})
    assert _run_with_round_trip([walk], always(weak), trained.loaded, s, round_trip).fills == []
    fills = _run_with_round_trip([walk], always(strong), trained.loaded, s, round_trip).fills
    assert fills and fills[0][0] == START + 1


def _run_with_round_trip(bars, script, model, s, round_trip):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars[0], "S0"), name="S0")
    cerebro.addstrategy(Scripted, model=model, settings=s, script=script, round_trip=round_trip)
    return cerebro.run()[0]


def gap_bars(n=320, gap_at=250, drop=0.2):
    """Flat bars at 100 that gap down by ``drop`` at ``gap_at`` and stay there."""
    idx = pd.bdate_range("2001-01-02", periods=n, name="datetime")
    close = np.where(np.arange(n) < gap_at, 100.0, 100.0 * (1 - drop))
    rng = np.random.default_rng(0)
    close = close * np.exp(rng.normal(0, 0.001, n))
    return pd.DataFrame({"open": close, "high": close * 1.002, "low": close * 0.998,
                         "close": close, "volume": 1e6}, index=idx)  # fmt: skip


def test_stop_loss_and_take_profit_are_bracket_children_at_the_entry_close(trained):
    bars = gap_bars()
    strat = run([bars], always(0.9), trained.loaded, risk={"stop_loss": 0.05, "take_profit": 0.1})
    entry_close = bars["close"].iloc[START]
    kinds = {}
    for c in strat.created:
        kinds.setdefault(c[3], c[4])
    # On the cent grid (risk.tick = 0.01), as an exchange takes them.
    assert kinds["Stop"] == pytest.approx(round(entry_close * 0.95, 2), abs=1e-9)
    assert kinds["Limit"] == pytest.approx(round(entry_close * 1.10, 2), abs=1e-9)


def test_without_a_tick_bracket_prices_are_exact(trained):
    bars = gap_bars()
    strat = run([bars], always(0.9), trained.loaded,
                risk={"stop_loss": 0.05, "take_profit": 0.1, "tick": 0.0})  # fmt: skip
    entry_close = bars["close"].iloc[START]
    kinds = {}
    for c in strat.created:
        kinds.setdefault(c[3], c[4])
    assert kinds["Stop"] == pytest.approx(entry_close * 0.95, rel=1e-12)
    assert kinds["Limit"] == pytest.approx(entry_close * 1.10, rel=1e-12)


def test_a_stop_gapped_through_fills_at_the_open_not_the_stop(trained):
    bars = gap_bars(gap_at=250, drop=0.2)
    strat = run([bars], always(0.9), trained.loaded, risk={"stop_loss": 0.05})
    stop_fill = next(f for f in strat.fills if f[5] == "Stop")
    assert stop_fill[0] == 250
    assert stop_fill[3] == pytest.approx(bars["open"].iloc[250])
    assert stop_fill[3] < bars["close"].iloc[START] * 0.95  # worse than the stop price
    # The model still says long: it re-enters at the new, lower price.
    assert strat.getposition(strat.data).size > first_entry(strat)[2]


def test_trailing_stop_follows_the_price(trained):
    # Flat at 100, a rise to 115 by bar 240, then a fall of 0.5% a bar; each bar opens at the
    # previous close. A fixed 3% stop sits at 97 and exits near bar 275; the trailed one exits
    # on the fall from the top.
    n, k = 320, np.arange(320)
    close = np.clip(100.0 + 0.5 * (k - 209), 100.0, None)
    close = np.where(k > 240, close[240] * 0.995 ** (k - 240), close)
    close = close * np.exp(np.random.default_rng(0).normal(0, 0.001, n))
    open_ = np.r_[close[0], close[:-1]]
    bars = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close, "volume": 1e6},
                        index=pd.bdate_range("2001-01-02", periods=n, name="datetime"))  # fmt: skip
    strat = run([bars], always(0.9), trained.loaded, risk={"trailing_stop": 0.03})

    def first_exit(level, trail):  # by hand: Backtrader moves a trailing stop with the close
        for j in range(START + 1, n):
            if bars["open"].iloc[j] <= level:
                return j, bars["open"].iloc[j]  # gapped through: the open
            if bars["low"].iloc[j] <= level:
                return j, level
            if trail:
                level = max(level, 0.97 * bars["close"].iloc[j])

    trailed = first_exit(0.97 * bars["close"].iloc[START], trail=True)
    fixed = first_exit(0.97 * bars["close"].iloc[START], trail=False)
    assert trailed[0] < fixed[0] and trailed[1] > fixed[1] + 10  # a fixed stop would not pass
    assert trailed[1] == pytest.approx(0.97 * bars["close"].iloc[START : trailed[0]].max())
    exit_fill = next(f for f in strat.fills if f[5] == "StopTrail")
    assert exit_fill[0] == trailed[0]
    assert exit_fill[3] == pytest.approx(trailed[1], rel=1e-12)
    assert exit_fill[2] == -first_entry(strat)[2]  # the whole position


def test_trailing_stop_starts_one_trail_below_the_entry_close(trained):
    # Flat at 100 until the entry, then one-way down 1% a bar, each bar at a single price:
    # the stop starts at 97 (3% below the decision close) and never moves up, so it exits
    # at the first open at or below 97: 100 x 0.99^4 = 96.06 on bar START + 5 (a stop at
    # 97% of 97 = 94.09 would wait until bar START + 8).
    n, k = 320, np.arange(320)
    level = np.where(k <= START + 1, 100.0, 100.0 * 0.99 ** (k - START - 1))
    bars = pd.DataFrame({"open": level, "high": level, "low": level, "close": level,
                         "volume": 1e6},
                        index=pd.bdate_range("2001-01-02", periods=n, name="datetime"))  # fmt: skip
    strat = run([bars], always(0.9), trained.loaded, risk={"trailing_stop": 0.03})
    exit_fill = next(f for f in strat.fills if f[5] == "StopTrail")
    assert exit_fill[0] == START + 5
    assert exit_fill[3] == pytest.approx(100.0 * 0.99**4)


def test_daily_loss_limit_flattens_and_stops_trading_for_the_day(trained):
    bars = gap_bars(gap_at=250, drop=0.2)
    strat = run([bars], always(0.9), trained.loaded, risk={"daily_loss_limit": 0.1})
    events = [e for e in strat.events if "daily loss" in e[2]]
    assert len(events) == 1
    assert events[0][0].startswith(str(bars.index[250].date()))
    exits = [f for f in strat.fills if f[2] < 0]
    assert exits[0][0] == 251  # flattened at the next open
    assert strat.halted_on == bars.index[250].date()
    # no new entry on the halted day: the next entry is sent a day later
    reentry = [c for c in strat.created if c[2] > 0 and c[0] > 250]
    assert reentry and reentry[0][0] >= 251


def three(seed=5):
    out = []
    for k in range(3):
        b = random_walk_bars(320, seed=seed + k)
        out.append(b)
    return out


def test_top_k_goes_long_the_best_prediction_only(trained):
    bars = three()
    strat = run(bars, lambda bar, i: [0.4, 0.7, 0.6][i], trained.loaded,
                portfolio={"allocation": "top_k", "top_k": 1, "models": "shared"})  # fmt: skip
    entries = {f[1]: f[2] for f in strat.fills if f[0] == START + 1}
    assert set(entries) == {"S1"}
    assert entries["S1"] == math.trunc(0.95 * 100_000 / bars[1]["close"].iloc[START])


def test_top_k_long_short_splits_gross_between_the_sides(trained):
    bars = three()
    strat = run(bars, lambda bar, i: [0.4, 0.7, 0.6][i], trained.loaded,
                strategy={"allow_short": True},
                portfolio={"allocation": "top_k", "top_k": 1})  # fmt: skip
    entries = {f[1]: f[2] for f in strat.fills if f[0] == START + 1}
    assert entries["S1"] == math.trunc(0.475 * 100_000 / bars[1]["close"].iloc[START])
    assert entries["S0"] == -math.trunc(0.475 * 100_000 / bars[0]["close"].iloc[START])


def test_strategic_weights_with_model_tilts(trained):
    bars = three()
    weights = {"S0": 0.5, "S1": 0.3, "S2": 0.2}
    strat = run(bars, lambda bar, i: [0.5, 0.6, 0.4][i], trained.loaded,
                portfolio={"allocation": "strategic", "weights": weights, "tilt": 0.5,
                           "rebalance": "monthly"})  # fmt: skip
    # signals 0, +1, -1 -> 0.5, 0.3 * 1.5, 0.2 * 0.5 = 0.5, 0.45, 0.1; rescaled to sum 1.0
    expected = np.array([0.5, 0.45, 0.1]) / 1.05
    entries = {f[1]: f[2] for f in strat.fills if f[0] == START + 1}
    for i, w in enumerate(expected):
        assert entries[f"S{i}"] == math.trunc(w * 100_000 / bars[i]["close"].iloc[START])


def test_monthly_rebalancing_trades_only_on_the_first_bar_of_a_month(trained):
    bars = three()
    rng = np.random.default_rng(1)
    preds = rng.uniform(0.3, 0.7, size=(400, 3))
    strat = run(bars, lambda bar, i: preds[bar, i], trained.loaded,
                portfolio={"allocation": "proportional", "rebalance": "monthly"})  # fmt: skip
    index = bars[0].index
    order_bars = sorted({c[0] for c in strat.created})
    assert order_bars[0] == START  # the first rebalance happens as soon as there are predictions
    assert len(order_bars) >= 3
    for bar in order_bars[1:]:  # every later one on the first bar of a month
        assert index[bar].month != index[bar - 1].month


def test_turnover_limit_moves_part_of_the_way(trained):
    bars = three()
    strat = run(bars, lambda bar, i: [0.7, 0.7, 0.7][i], trained.loaded,
                portfolio={"allocation": "proportional", "turnover_limit": 0.3})  # fmt: skip
    first = {f[1]: f[2] for f in strat.fills if f[0] == START + 1}
    # target 0.95 / 3 each (gross 0.95); turnover 0.3 allows 0.1 each on the first bar
    for i in range(3):
        assert first[f"S{i}"] == math.trunc(0.1 * 100_000 / bars[i]["close"].iloc[START])


def test_gross_exposure_limit_scales_all_weights_down(trained):
    bars = three()
    strat = run(bars, always(0.9), trained.loaded,
                strategy={"target_percent": 1.0}, sizing={"max_gross": 0.6})  # fmt: skip
    entries = {f[1]: f[2] for f in strat.fills if f[0] == START + 1}
    for i in range(3):
        assert entries[f"S{i}"] == math.trunc(0.2 * 100_000 / bars[i]["close"].iloc[START])


def test_ib_fixed_commission_is_charged_on_each_fill(trained, walk):
    strat = run([walk], always(0.9), trained.loaded,
                broker={"commission_scheme": "ibkr_fixed"})  # fmt: skip
    _, _, size, price, comm, _ = first_entry(strat)
    assert comm == pytest.approx(min(max(1.0, 0.005 * size), 0.01 * size * price))


def test_volume_cap_spreads_a_large_order_over_bars(trained, walk):
    thin = walk.copy()
    thin["volume"] = 500.0
    strat = run([thin], always(0.9), trained.loaded, broker={"volume_cap": 0.1})
    target = math.trunc(0.95 * 100_000 / thin["close"].iloc[START])
    done = first_entry(strat)
    assert done[2] == target
    assert done[0] - START >= math.ceil(target / 50)  # at most 50 shares a bar
