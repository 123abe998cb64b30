"""The session's capital: the account's net liquidation, or paper.capital no larger than it.

Against the IB-like gateway holding USD 1,000,000 (an IB paper account's start), on the daily
bars of ``tests/iblike.py`` (the first live close is 105). ``IBBroker(capital=0)`` takes the
account's net liquidation, a positive ``capital`` at most that; the capital is journaled
(the run files' ``run.capital`` in ``metrics.json`` is written from it) and sizing starts
from it: the project's ``shares_for`` at 50 % of the broker's value, checked by hand; and
through ``run_paper``'s live path, the model strategy's first order.
"""

from __future__ import annotations

import backtrader as bt
import pytest

from kerastrader.brokers.journal import Journal
from kerastrader.errors import KerastraderError
from kerastrader.strategies.sizing import shares_for
from tests import iblike
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_run

gateways = iblike.gateways  # the fixture
ACCOUNT_CASH = 1_000_000.0


class HalfIn(bt.Strategy):
    """At the first live close, buys 50 % of the broker's value (the project's sizing)."""

    params = (("first_live", None),)

    def __init__(self) -> None:
        self.sized: list[float] = []

    def next(self) -> None:
        if self.data.datetime.date(0) < self.p.first_live or self.sized:
            return
        size = shares_for(0.5, self.broker.getvalue(), self.data.close[0], False)
        self.sized.append(size)
        self.buy(size=size)


def _session(gateway, tmp_path, capital):
    live = live_run(gateway, tmp_path / "journal.sqlite", HalfIn, daily=True,
                    broker_kwargs={"capital": capital},
                    strategy_kwargs={"first_live": make_bars().index[HISTORY].date()})  # fmt: skip
    return live.strategy, live.broker, live.journal


def _stated(journal: Journal) -> dict:
    [event] = [s["info"] for s in journal.sessions() if s["info"].get("event") == "capital"]
    return event


def test_capital_zero_is_the_accounts_net_liquidation_and_sizes_from_it(gateways, tmp_path):
    gateway = gateways({"AAA": make_bars(HISTORY + 2)}, cash=ACCOUNT_CASH, lockstep_seconds=86_400)
    strategy, broker, journal = _session(gateway, tmp_path, capital=0.0)
    assert broker.start_cash == broker.startingcash == ACCOUNT_CASH  # not the config's 100,000
    stated = _stated(journal)
    assert stated["capital"] == ACCOUNT_CASH
    assert stated["source"] == "net liquidation of DU123456"
    # by hand: 50 % of 1,000,000 at the close of 105 is 4761.9 shares, 4761 whole
    assert strategy.sized == [4761]
    assert [o["quantity"] for o in journal.orders()] == [4761]


def test_a_smaller_capital_is_what_the_session_sizes_from(gateways, tmp_path):
    gateway = gateways({"AAA": make_bars(HISTORY + 2)}, cash=ACCOUNT_CASH, lockstep_seconds=86_400)
    strategy, broker, journal = _session(gateway, tmp_path, capital=250_000.0)
    assert broker.start_cash == 250_000.0
    assert _stated(journal)["source"] == "paper.capital (net liquidation 1,000,000.00)"
    # by hand: 50 % of 250,000 at 105 is 1190.48 shares, 1190 whole
    assert strategy.sized == [1190]
    assert [f["shares"] for f in journal.fills()] == [1190.0]


def test_a_capital_above_the_net_liquidation_is_refused_with_one_line(gateways, tmp_path):
    gateway = gateways({"AAA": make_bars(HISTORY + 2)}, cash=ACCOUNT_CASH, lockstep_seconds=86_400)
    with pytest.raises(KerastraderError) as refused:
        _session(gateway, tmp_path, capital=2_000_000.0)
    text = str(refused.value)
    assert "\n" not in text
    assert "paper.capital = 2,000,000.00" in text and "(1,000,000.00)" in text
    assert gateway.orders == []  # nothing was sent


def test_a_restarted_run_keeps_the_capital_its_first_session_stated(gateways, tmp_path):
    gateway = gateways({"AAA": make_bars(HISTORY + 2)}, cash=ACCOUNT_CASH, lockstep_seconds=86_400)
    _session(gateway, tmp_path, capital=250_000.0)
    _, again, journal = _session(gateway, tmp_path, capital=0.0)  # same journal, same run
    assert again.start_cash == 250_000.0  # returns keep one base across restarts


def test_a_live_session_states_the_net_liquidation_in_run_json_and_sizes_from_it(
    gateways, orcl_slice, orcl_slice_csv, trained, tmp_path
):
    """run_paper against a gateway it did not start (the live path): paper.capital = 0."""
    import json

    from kerastrader.runs.paper import run_paper
    from kerastrader.runs.universe import backtest_period
    from tests.conftest import tiny_config

    cfg = tiny_config(data={"path": str(orcl_slice_csv)}, strategy={"enter": 0.0, "exit": -1.0},
                      backtest={"runonce": False})  # fmt: skip  # enter on the first bar
    first, _, _ = backtest_period(orcl_slice, cfg, trained.loaded, "ORCL")
    frame = orcl_slice.iloc[: first + 4][["open", "high", "low", "close", "volume"]]
    gateway = gateways({"ORCL": frame}, history=first, cash=ACCOUNT_CASH, lockstep_seconds=86_400)
    host, port = gateway.address
    cfg["paper"].update(host=host, port=port, lockstep=True, stop_after_idle=3.0, capital=0.0,
                        trade_start=str(frame.index[first].date()))  # fmt: skip
    result = run_paper(cfg, tmp_path / "run", model_dir=trained.loaded.path)
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]
    assert run["capital"] == ACCOUNT_CASH == result.metrics["run"]["capital"]
    assert run["start_value"] == ACCOUNT_CASH  # the report's returns start from it
    # by hand: the first order buys target_percent (0.95) of 1,000,000 less the cash buffer
    # (0.5 %) at the close of the bar it was decided on (the first traded bar, 13.41), in
    # whole shares: 945,250 / 13.41 = 70488.4 (from the config's 100,000 it would be 7048)
    assert (cfg["strategy"]["target_percent"], cfg["strategy"]["cash_buffer"]) == (0.95, 0.005)
    journal = Journal(tmp_path / "run" / "journal.sqlite")
    order = journal.orders()[0]
    close = float(frame["close"].iloc[first])
    assert close == 13.41
    assert order["quantity"] == 70488
