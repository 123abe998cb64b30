"""A whole book in one paper session: the four-asset example (SPY/AGG/XLE/XLF at 40/45/5/10,
one shared model, monthly rebalances) through the simulated gateway, against its backtest.

The session runs one IB feed per instrument, each with its own contract, and its strategy
decides on aligned bars with one batched model call per bar. Over the same simulated days
it must send the orders its backtest sent: same days, instruments, quantities and prices,
and decide the same target weights at the same rebalances.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from kerastrader.backtest import run_experiment
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.market import Market
from kerastrader.config import load_config
from kerastrader.runs.paper import run_paper
from tests.conftest import ROOT, shared_file

BOOK = ["SPY", "AGG", "XLE", "XLF"]
# Half a year of simulated days; price returns, as IB's bars carry no dividends (the account
# is paid them in cash, which the simulated gateway does not do).
SETTINGS = [
    "training.epochs=1",
    "model.units=[4]",
    "report.figures=false",
    "benchmark.costs=false",
    'data.returns="price"',
    'backtest.start="2024-06-03"',
    "backtest.runonce=false",
]


def book_config():
    for sym in BOOK:
        shared_file(f"{sym.lower()}-daily.csv")
    return load_config(ROOT / "examples" / "four_asset.toml", SETTINGS)


@pytest.fixture(scope="module")
def backtest(tmp_path_factory):
    out = tmp_path_factory.mktemp("book-bt") / "run"
    run_experiment(book_config(), out)
    return out


@pytest.fixture(scope="module")
def session(backtest, tmp_path_factory):
    out = tmp_path_factory.mktemp("book-paper") / "run"
    seen: dict[str, object] = {"subscribed": []}
    real_stop, real_subscribe = SimulatedGateway.stop, Market.subscribe

    def keep(self):  # the session stops its gateway: keep what it was asked for
        seen["positions"] = self.positions()
        real_stop(self)

    def subscribe(self, conn, req_id, symbol):  # real-time bars asked for, by contract
        seen["subscribed"].append(symbol)
        real_subscribe(self, conn, req_id, symbol)

    SimulatedGateway.stop, Market.subscribe = keep, subscribe
    try:
        result = run_paper(book_config(), out, model_dir=backtest / "model", simulate=True)
    finally:
        SimulatedGateway.stop, Market.subscribe = real_stop, real_subscribe
    return out, result, seen


def fills(run_dir) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "transactions.csv")
    return frame.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)


def test_the_session_trades_every_instrument_of_the_book(session):
    out, _, seen = session
    traded = set(fills(out)["symbol"])
    assert traded == set(BOOK)
    assert sorted(seen["subscribed"]) == sorted(BOOK)  # one contract each, subscribed once


def test_the_session_sends_the_backtests_orders(session, backtest):
    out, _, _ = session
    a, b = fills(out), fills(backtest)
    assert len(a) >= 8
    assert list(zip(a["date"], a["symbol"], strict=True)) == list(
        zip(b["date"], b["symbol"], strict=True)
    )
    np.testing.assert_array_equal(a["amount"], b["amount"])
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-7)


def test_the_session_decides_the_backtests_targets_at_the_same_rebalances(session, backtest):
    out, _, _ = session
    a = pd.read_csv(out / "targets.csv")
    b = pd.read_csv(backtest / "targets.csv")
    b = b[b["time"] >= a["time"].min()].reset_index(drop=True)
    assert len(a) == len(b) >= 4 * len(BOOK)
    assert list(a["time"]) == list(b["time"]) and list(a["symbol"]) == list(b["symbol"])
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-9)


def test_every_instrument_is_predicted_on_every_bar_as_in_the_backtest(session, backtest):
    out, _, _ = session
    a = pd.read_csv(out / "predictions.csv").dropna()
    b = pd.read_csv(backtest / "predictions.csv").dropna()
    both = a.merge(b, on=["date", "symbol"], suffixes=("_paper", "_bt"))
    assert len(both) == len(a)
    assert set(both["symbol"]) == set(BOOK)
    assert both.groupby("symbol").size().min() > 100
    np.testing.assert_allclose(both["prediction_paper"], both["prediction_bt"], atol=1e-5)


def test_the_book_decides_once_per_rebalance_on_aligned_bars(session):
    out, _, _ = session
    with sqlite3.connect(out / "journal.sqlite") as db:
        rows = db.execute("SELECT time, symbol FROM decisions").fetchall()
    by_time = pd.DataFrame(rows, columns=["time", "symbol"]).groupby("time")["symbol"]
    # each decision names every instrument once: no decision on a book half a bar behind
    assert (by_time.count() == len(BOOK)).all()
    assert (by_time.nunique() == len(BOOK)).all()


def test_the_gateways_positions_are_the_sessions(session):
    out, _, seen = session
    positions = pd.read_csv(out / "transactions.csv").groupby("symbol")["amount"].sum()
    for sym in BOOK:
        assert seen["positions"].get(sym, 0.0) == pytest.approx(positions.get(sym, 0.0))
