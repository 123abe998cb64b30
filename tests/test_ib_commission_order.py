"""Commission reports are paired with their executions whatever order IB sends them in.

Against the IB-like gateway on daily bars (``tests/iblike.py``: a steady rise), a strategy
buys 10 shares at the close of the first live day and sells them at the close of the second;
both market orders fill at the next session's open. The gateway reports each fill either as
IB usually does (orderStatus, execDetails, the commission report a little later) or with the
execution and its commission report first and the status later. Either way the broker's cash
and the journal are the same, to the cent, as a hand computation from IB's fill prices.
"""

from __future__ import annotations

import queue
from typing import Any

import backtrader as bt
import pytest

from kerastrader.brokers.ib.broker import IBBroker
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.journal import Journal
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_session, settle

CASH = 100_000.0
# By hand, from tests/iblike.py's bars (close = 100 + 0.5 i, open = close - 0.2) and the
# default costs (5 bps slippage on market orders at the open, 0.1 % commission):
# the buy fills at row 11's open 105.3 slipped up, the sell at row 12's open 105.8 slipped down.
BUY_PRICE = 105.3 * 1.0005  # 105.35265
SELL_PRICE = 105.8 * 0.9995  # 105.7471
BUY_COMMISSION = 10 * 105.35265 * 0.001  # 1.0535265
SELL_COMMISSION = 10 * 105.7471 * 0.001  # 1.057471
# 100000 - 1053.5265 - 1.0535265 + 1057.471 - 1.057471
CASH_AFTER = 100_001.8335025


class RoundTrip(bt.Strategy):
    """Buys 10 at the first live close, sells them at the second."""

    params = (("first_live", None),)

    def __init__(self) -> None:
        self.live = 0

    def next(self) -> None:
        if self.data.datetime.date(0) < self.p.first_live:
            return
        self.live += 1
        if self.live == 1:
            self.buy(size=10)
        elif self.live == 2:
            self.sell(size=10)


class Arrivals(queue.Queue):
    """The store's event queue, noting what arrived in which order (status, exec, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        kind, payload = item
        if kind == "status" and payload["status"] == "Filled":
            self.seen.append(("filled", payload["ref"]))
        elif kind == "exec":
            self.seen.append(("exec", payload["exec_id"]))
        elif kind == "commission":
            self.seen.append(("commission", payload["exec_id"]))
        super().put(item, block, timeout)


def _all_reported(journal: Journal, arrivals: Arrivals) -> bool:
    """Both fills journaled, each with its commission, and both Filled statuses arrived."""
    fills = journal.fills()
    filled = sum(kind == "filled" for kind, _ in arrivals.seen)
    return len(fills) >= 2 and all(f["commission"] is not None for f in fills) and filled >= 2


def _session(tmp_path, report_order: str) -> tuple[IBBroker, Journal, list[tuple[str, str]]]:
    frame = make_bars(HISTORY + 3)
    ib = IBLike(lockstep_seconds=86_400, report_order=report_order, commission_delay=0.2)
    gateway = SimulatedGateway({"AAA": frame}, history=HISTORY, ib=ib)
    gateway.start()
    arrivals = Arrivals()
    try:
        with live_session(gateway, tmp_path / "journal.sqlite", RoundTrip, daily=True,
                          events=arrivals, broker_kwargs={"cash": CASH},
                          strategy_kwargs={"first_live": frame.index[HISTORY].date()},
                          ) as live:  # fmt: skip
            # the last report may still be on its way when the replay ends: take what comes
            settle(live, lambda: _all_reported(live.journal, arrivals))
    finally:
        gateway.stop()
    return live.broker, live.journal, arrivals.seen


@pytest.mark.parametrize("report_order", ["status_first", "commission_first"])
def test_cash_and_journal_match_the_hand_computation_in_either_report_order(
    tmp_path, report_order: str
) -> None:
    broker, journal, seen = _session(tmp_path, report_order)
    fills = journal.fills()
    assert [f["shares"] for f in fills] == [10.0, -10.0]
    assert [f["price"] for f in fills] == pytest.approx([BUY_PRICE, SELL_PRICE], abs=1e-9)
    assert [f["commission"] for f in fills] == pytest.approx(
        [BUY_COMMISSION, SELL_COMMISSION], abs=1e-9
    )
    assert round(broker.getcash(), 2) == round(CASH_AFTER, 2)
    assert round(journal.cash(CASH), 2) == round(CASH_AFTER, 2)
    assert broker.getposition(broker.p.datas[0]).size == 0
    # the gateway really sent them in the order claimed
    for f in fills:
        kinds = [k for k, key in seen if key in (f["exec_id"], f["ref"])]
        if report_order == "status_first":
            assert kinds == ["filled", "exec", "commission"]
        else:
            assert kinds == ["exec", "commission", "filled"]
