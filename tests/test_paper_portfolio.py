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
from kerastrader.brokers.ib.contracts import contract_for
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.market import Market
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.journal import Journal
from kerastrader.config import load_config
from kerastrader.errors import ConfigError
from kerastrader.runs.paper import run_paper
from tests.conftest import ROOT, random_walk_bars, shared_file, tiny_config

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


# -- always covered (no shared data): a generated two-instrument book with a missing bar --


def yahoo_csv(bars: pd.DataFrame, path) -> None:
    frame = bars.rename(columns=str.title).rename_axis("Date").reset_index()
    frame["Adj Close"] = frame["Close"]
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    frame[["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]].to_csv(path, index=False)


def two_instrument_book(orcl_slice, folder, start: str, drop: str | None = None) -> dict:
    """ORCL 2000-2006 and a generated instrument on the same days (without ``drop``, a day
    it did not trade), as two files; a tiny top-1 book over them tested from ``start``."""
    gen = random_walk_bars(len(orcl_slice), seed=5)
    gen.index = orcl_slice.index
    if drop:
        gen = gen.drop(pd.Timestamp(drop))
    yahoo_csv(orcl_slice[["open", "high", "low", "close", "volume"]], folder / "orcl.csv")
    yahoo_csv(gen, folder / "gen.csv")
    return tiny_config(
        data={"path": str(folder / "*.csv"), "symbols": ["ORCL", "GEN"]},
        portfolio={"allocation": "top_k", "top_k": 1},
        backtest={"runonce": False, "start": start},
        paper={"align_seconds": 0.5},
    )


def book_runs(cfg, folder, **paper) -> tuple:
    bt_out, paper_out = folder / "bt", folder / "paper"
    run_experiment(cfg, bt_out)
    run_paper(cfg, paper_out, model_dir=bt_out / "model", simulate=True, **paper)
    return bt_out, paper_out


@pytest.fixture(scope="module")
def gapped_book(orcl_slice, tmp_path_factory):
    """The book with one day missing from GEN's test period (a halt): it must wait for no
    bar that never comes and decide as its backtest does, with GEN's previous bar."""
    folder = tmp_path_factory.mktemp("gapped")
    return book_runs(two_instrument_book(orcl_slice, folder, "2006-01-03", "2006-03-15"), folder)


@pytest.fixture(scope="module")
def iblike_book(orcl_slice, tmp_path_factory):
    """The book against the IB-like gateway: each day is IB's 5-second bars through a
    09:30-16:00 New York session, which each feed builds into the day's bar at the close."""
    folder = tmp_path_factory.mktemp("iblike")
    cfg = two_instrument_book(orcl_slice, folder, "2006-12-01")
    return book_runs(cfg, folder, iblike=IBLike(lockstep_seconds=86_400))


def test_an_iblike_book_builds_each_days_bar_from_five_second_bars(iblike_book, orcl_slice):
    _, paper_out = iblike_book
    journal = Journal(paper_out / "journal.sqlite")
    orcl = journal.bars("ORCL")
    journal.close()
    days = orcl.index.tz_localize(None) if orcl.index.tz else orcl.index
    live = orcl[days >= pd.Timestamp("2006-12-01")]
    expected = orcl_slice.loc["2006-12-01":, ["open", "high", "low", "close", "volume"]]
    assert len(live) == len(expected) > 15
    np.testing.assert_allclose(live[["open", "high", "low", "close", "volume"]], expected,
                               rtol=1e-9)  # fmt: skip


def test_an_iblike_book_decides_once_a_day_and_trades_as_its_backtest(iblike_book):
    bt_out, paper_out = iblike_book
    a = pd.read_csv(paper_out / "targets.csv")
    b = pd.read_csv(bt_out / "targets.csv")
    assert a["time"].nunique() == b["time"].nunique() > 15  # once a session, both symbols
    assert list(a["time"]) == list(b["time"]) and list(a["symbol"]) == list(b["symbol"])
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-9)
    fa, fb = fills(paper_out), fills(bt_out)
    assert len(fa) >= 2
    assert set(fa["date"].str[11:]) == {"14:30:00+0000"}  # at the next session's 09:30 open
    assert list(zip(fa["date"].str[:10], fa["symbol"], strict=True)) == list(
        zip(fb["date"], fb["symbol"], strict=True)
    )
    np.testing.assert_array_equal(fa["amount"], fb["amount"])
    np.testing.assert_allclose(fa["price"], fb["price"], rtol=1e-7)


def test_a_book_with_a_missing_bar_trades_as_its_backtest(gapped_book):
    bt_out, paper_out = gapped_book
    a, b = fills(paper_out), fills(bt_out)
    assert len(a) >= 4 and set(a["symbol"]) == {"ORCL", "GEN"}
    assert list(zip(a["date"], a["symbol"], strict=True)) == list(
        zip(b["date"], b["symbol"], strict=True)
    )
    np.testing.assert_array_equal(a["amount"], b["amount"])
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-7)


def test_a_book_with_a_missing_bar_decides_once_on_each_bar(gapped_book):
    bt_out, paper_out = gapped_book
    a = pd.read_csv(paper_out / "targets.csv")
    b = pd.read_csv(bt_out / "targets.csv")
    assert a["time"].nunique() == b["time"].nunique() > 200  # every bar of 2006, once
    assert list(a["time"]) == list(b["time"])
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-9)
    assert "2006-03-15 00:00:00" in set(a["time"])  # ORCL's bar that day: a decision


def test_a_contract_override_describes_one_instrument_of_the_book():
    import ib_async

    es_future = {"sec_type": "FUT", "expiry": "202703", "exchange": "CME"}
    paper = {"sec_type": "STK", "exchange": "SMART", "currency": "USD", "expiry": "",
             "contracts": {"ES": es_future}}  # fmt: skip
    es, spy = contract_for(paper, "ES", ib_async), contract_for(paper, "SPY", ib_async)
    assert (es.secType, es.lastTradeDateOrContractMonth, es.exchange) == ("FUT", "202703", "CME")
    assert (spy.secType, spy.exchange, spy.currency) == ("STK", "SMART", "USD")
    with pytest.raises(ConfigError, match="paper.contracts.ES: unknown key strike"):
        contract_for({**paper, "contracts": {"ES": {"strike": 10}}}, "ES", ib_async)
