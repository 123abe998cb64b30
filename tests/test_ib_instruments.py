"""Futures and forex through IB: the multiplier, MIDPOINT bars, the pair's name, IDEALPRO.

Against the IB-like gateway with an ES future (multiplier 50, tick 0.25, USD 0.85 a contract)
and the EURUSD pair (IB's symbol EUR, currency USD, IDEALPRO, tick 0.00005), each on daily
bars of a steady rise replayed as 5-second bars. Orders decided at a close fill at the next
session's open (5 bps slippage), so every expected number below is worked by hand from the
bars.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.ib.store import HistoryRefused, IBStore
from kerastrader.brokers.safety import Limits
from tests.iblike import HISTORY, rising_bars
from tests.ibsession import live_session, settle

ES = {"secType": "FUT", "exchange": "CME", "multiplier": "50", "minTick": 0.25,
      "lastTradeDateOrContractMonth": "20140321", "localSymbol": "ESH4",
      "tradingClass": "ES"}  # fmt: skip
EURUSD = {"secType": "CASH", "symbol": "EUR", "currency": "USD", "exchange": "IDEALPRO",
          "localSymbol": "EUR.USD", "tradingClass": "EUR.USD", "minTick": 0.00005}  # fmt: skip


def es_bars(n: int) -> pd.DataFrame:
    """close = 1800 + 2 i, open = close - 1, high = close + 3, low = close - 4 (on the grid)."""
    return rising_bars(n, 1800.0, 2.0, (-1.0, 3.0, -4.0), 100_000.0)


def fx_bars(n: int) -> pd.DataFrame:
    """close = 1.1 + 0.0005 i, open = close - 0.0002, high = close + 0.001, low = close - 0.0012."""
    return rising_bars(n, 1.1, 0.0005, (-0.0002, 0.001, -0.0012), 1e8)


class Plan(bt.Strategy):
    """On each live close, calls ``plan[k](strategy)`` (k: the live day); notes trades."""

    params = (("first_live", None), ("plan", None))

    def __init__(self) -> None:
        self.live = 0
        self.values: list[float] = []
        self.trades: list[bt.Trade] = []
        self.sized: list[float] = []

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.trades.append(trade)

    def next(self) -> None:
        if self.data.datetime.date(0) < self.p.first_live:
            return
        self.values.append(self.broker.getvalue())
        step = (self.p.plan or {}).get(self.live)
        self.live += 1
        if step is not None:
            step(self)


def _run(tmp_path, name, frame, instrument, contract, plan, cash, limits=None):
    gateway = SimulatedGateway({name: frame}, history=HISTORY, cash=cash,
                               instruments={name: instrument},
                               ib=IBLike(lockstep_seconds=86_400))  # fmt: skip
    gateway.start()
    try:
        with live_session(gateway, tmp_path / "journal.sqlite", Plan, contract=contract,
                          name=name, daily=True,
                          broker_kwargs={"cash": cash, "limits": limits or Limits()},
                          strategy_kwargs={"first_live": frame.index[HISTORY].date(),
                                           "plan": plan}) as live:  # fmt: skip
            # the last commission report may arrive after the replay's end: take it
            settle(live, lambda: all(f["commission"] is not None for f in live.journal.fills()))
            snap = live.store.snapshot()
    finally:
        gateway.stop()
    return live.strategy, live.broker, live.journal, gateway, snap


def future(mod):
    return mod.Future("ES", "20140321", "CME", currency="USD")


def size_by_value(strategy: Plan) -> None:
    """20 % of the account's value in contracts: value / (price x multiplier)."""
    mult = strategy.broker.getcommissioninfo(strategy.data).p.mult
    size = int(strategy.broker.getvalue() * 0.2 // (strategy.data.close[0] * mult))
    strategy.sized.append(size)
    strategy.buy(size=size)


def test_a_future_moves_cash_pnl_and_value_by_its_multiplier(tmp_path) -> None:
    plan = {0: size_by_value, 1: lambda s: s.sell(size=2)}
    strategy, broker, journal, gateway, _ = _run(
        tmp_path, "ES", es_bars(HISTORY + 3), ES, future, plan, cash=1_000_000.0
    )
    # By hand: day 1 closes at 1820; 20 % of 1,000,000 buys 200,000 // (1820 x 50 = 91,000)
    # = 2 contracts (without the multiplier it would be 109).
    assert strategy.sized == [2]
    buy, sell = 1821 * 1.0005, 1823 * 0.9995  # the next opens, slipped: 1821.9105, 1822.0885
    fills = journal.fills()
    assert [(f["symbol"], f["shares"]) for f in fills] == [("ES", 2.0), ("ES", -2.0)]
    assert [f["price"] for f in fills] == pytest.approx([buy, sell], abs=1e-9)
    assert [f["commission"] for f in fills] == pytest.approx([1.70, 1.70])  # 0.85 a contract
    # cash: 1,000,000 - 2 x 1821.9105 x 50 - 1.70 = 817,807.25; value at day 2's close (1822)
    # adds 2 x 1822 x 50 = 182,200; the sale brings 2 x 1822.0885 x 50 - 1.70 back
    assert strategy.values[1] == pytest.approx(1_000_007.25, abs=1e-6)
    assert broker.getcash() == pytest.approx(1_000_014.40, abs=1e-6)
    assert gateway.cash() == pytest.approx(1_000_014.40, abs=1e-6)  # IB's books agree
    [trade] = strategy.trades
    assert trade.pnl == pytest.approx(2 * (1822.0885 - 1821.9105) * 50, abs=1e-6)  # 17.80
    assert trade.pnlcomm == pytest.approx(14.40, abs=1e-6)


def test_value_limits_see_a_futures_whole_notional(tmp_path) -> None:
    """max_notional 150,000: 2 ES at 1820 are 182,000 (refused), 1 is 91,000 (sent)."""
    plan = {0: lambda s: [s.buy(size=2), s.buy(size=1)]}
    _, _, journal, _, _ = _run(tmp_path, "ES", es_bars(HISTORY + 2), ES, future, plan,
                               cash=1_000_000.0, limits=Limits(max_notional=150_000))  # fmt: skip
    first, second = journal.orders()
    assert first["status"] == "Rejected" and "182,000" in (first["why"] or "")
    assert [f["shares"] for f in journal.fills()] == [1.0]


def forex(mod):
    return mod.Forex("EURUSD")


def test_forex_asks_for_midpoint_names_the_pair_and_refuses_odd_lots(tmp_path) -> None:
    plan = {0: lambda s: [s.buy(size=20_000), s.buy(size=30_000)]}
    _, broker, journal, gateway, snap = _run(
        tmp_path, "EURUSD", fx_bars(HISTORY + 2), EURUSD, forex, plan, cash=100_000.0
    )
    requests = gateway.market.hmds.requests
    assert requests and {r["what"] for r in requests} == {"MIDPOINT"}  # TRADES is invalid
    odd, sent = journal.orders()
    assert odd["status"] == "Rejected" and "IDEALPRO" in (odd["why"] or "")
    [fill] = journal.fills()
    assert fill["symbol"] == "EURUSD"  # the pair, not ib_async's symbol "EUR"
    assert snap["positions"] == {"EURUSD": 30_000.0}
    # By hand: the next open 1.1053 slipped up 5 bps; 0.1 % commission on the value
    price = 1.1053 * 1.0005  # 1.10585265
    assert fill["price"] == pytest.approx(price, abs=1e-12)
    assert fill["commission"] == pytest.approx(33.1755795, abs=1e-9)
    assert broker.getcash() == pytest.approx(100_000 - 33_175.5795 - 33.1755795, abs=1e-6)


def test_trades_history_for_a_forex_pair_is_refused_as_ib_refuses_it(tmp_path) -> None:
    gateway = SimulatedGateway({"EURUSD": fx_bars(HISTORY + 1)}, history=HISTORY,
                               instruments={"EURUSD": EURUSD}, ib=IBLike())  # fmt: skip
    host, port = gateway.start()
    store = IBStore(host, port, client_id=1)
    try:
        store.start()
        contract = store.qualify(store.mod.Forex("EURUSD"))
        with pytest.raises(HistoryRefused, match="No historical market data for EUR/CASH"):
            store.history(contract, "10 D", "1 day", what="TRADES", use_rth=True)
    finally:
        store.stop()
        gateway.stop()
