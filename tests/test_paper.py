"""Paper trading through the simulated gateway, with the real ib_async client on loopback.

The session is the backtest's strategy and model; only the feed and the broker talk to IB.
Over the same bars a simulated session must give the backtest's predictions and orders, the
journal must hold exactly what the gateway received and filled, and nothing may be sent twice,
through forced disconnects and a SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from kerastrader.backtest import run_experiment
from kerastrader.brokers.ib.simulator import Faults, SimulatedGateway
from kerastrader.brokers.journal import Journal
from kerastrader.brokers.safety import LiveTradingRefused
from kerastrader.feeds.loader import load_csv
from kerastrader.runs.paper import run_paper
from tests.conftest import ROOT, tiny_config

STRATEGY = {"enter": 0.5, "exit": 0.499}


def cfg_for(csv):
    return tiny_config(data={"path": str(csv)}, strategy=STRATEGY, backtest={"runonce": False})


@pytest.fixture(scope="module", autouse=True)
def _unpaced_client():
    """ib_async paces its requests to 45 a second for a real IB Gateway
    (``Client.MaxRequests``); the lockstep replay acknowledges every bar with a request, so a
    500-bar session spent 11 s in that pacing alone. The simulated gateway needs none: off for
    this module's sessions in this process (the Ctrl-C and SIGKILL tests' own processes keep
    it). Measured: the 11 in-process tests 82.7 s -> 36.0 s."""
    import ib_async.client

    patch = pytest.MonkeyPatch()
    patch.setattr(ib_async.client.Client, "MaxRequests", 0)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def backtest(orcl_slice_csv, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt") / "run"
    run_experiment(cfg_for(orcl_slice_csv), out, model_dir=trained.loaded.path)
    return out


@pytest.fixture(scope="module")
def session(orcl_slice_csv, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper") / "run"
    result = run_paper(cfg_for(orcl_slice_csv), out, model_dir=trained.loaded.path,
                       simulate=orcl_slice_csv)  # fmt: skip
    return out, result


def fills(run_dir):
    return pd.read_csv(run_dir / "transactions.csv")


def test_a_simulated_session_writes_the_backtests_files_and_a_journal(session):
    out, result = session
    names = ("report.html", "metrics.json", "returns.csv", "positions.csv", "transactions.csv",
             "predictions.csv", "config.toml", "journal.sqlite")  # fmt: skip
    for name in names:
        assert (out / name).is_file(), name
    assert result.metrics["run"]["bars"] > 400


def test_simulated_session_and_backtest_make_the_same_predictions(session, backtest):
    out, _ = session
    a = pd.read_csv(out / "predictions.csv").dropna()
    b = pd.read_csv(backtest / "predictions.csv").dropna()
    both = a.merge(b, on="date", suffixes=("_paper", "_bt"))
    assert len(both) == len(a) > 400
    np.testing.assert_allclose(both["prediction_paper"], both["prediction_bt"], atol=1e-5)


def test_simulated_session_and_backtest_make_the_same_orders_and_fills(session, backtest):
    out, _ = session
    a, b = fills(out), fills(backtest)
    assert len(a) >= 4
    assert list(a["date"]) == list(b["date"])
    np.testing.assert_array_equal(a["amount"], b["amount"])
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-7)
    np.testing.assert_allclose(a["commission"], b["commission"], rtol=1e-6)
    ra = pd.read_csv(out / "returns.csv")
    rb = pd.read_csv(backtest / "returns.csv")
    np.testing.assert_allclose(ra["strategy"], rb["strategy"], atol=1e-9)


def test_the_journal_is_what_the_gateway_received_and_filled(session):
    out, _ = session
    journal = Journal(out / "journal.sqlite")
    orders = journal.orders()
    assert all(o["status"] == "Filled" for o in orders)
    assert len(orders) == len(fills(out))
    # every bar's decision is journaled (prediction and target), not just the orders
    assert len(journal.decisions()) >= 400
    journal.close()


def _replay(orcl_slice_csv, trained, out, faults=None, dry_run=False):
    gateway_orders, gateway_fills = {}, {}
    real = SimulatedGateway.stop

    def keep(self):  # the session stops its gateway: keep what it recorded
        gateway_orders["all"], gateway_fills["all"] = self.orders, self.fills
        gateway_orders["positions"] = self.positions()
        real(self)

    SimulatedGateway.stop = keep
    try:
        result = run_paper(cfg_for(orcl_slice_csv), out, model_dir=trained.loaded.path,
                           simulate=orcl_slice_csv, faults=faults, dry_run=dry_run)  # fmt: skip
    finally:
        SimulatedGateway.stop = real
    return result, gateway_orders, gateway_fills


def test_three_forced_disconnects_lose_nothing_and_send_nothing_twice(
    orcl_slice_csv, trained, tmp_path, session
):
    faults = Faults(disconnect_after=[400, 900, 1400])
    result, orders, gfills = _replay(orcl_slice_csv, trained, tmp_path / "flaky", faults)
    assert result.reconnects == 3
    assert result.metrics["run"]["bars"] >= 500  # replayed bars, 2005-2006
    journal = Journal(tmp_path / "flaky" / "journal.sqlite")
    refs = [o["orderRef"] for o in orders["all"]]
    assert max(Counter(refs).values()) == 1  # no orderRef sent twice
    assert sorted(refs) == sorted(o["ref"] for o in journal.orders())
    assert sorted(f["execId"] for f in gfills["all"]) == sorted(journal.known_exec_ids())
    assert journal.positions().get("ORCL", 0.0) == orders["positions"].get("ORCL", 0.0)
    # and the trading is the undisturbed session's
    np.testing.assert_array_equal(fills(tmp_path / "flaky")["amount"], fills(session[0])["amount"])
    journal.close()


def test_dry_run_journals_orders_and_sends_none(orcl_slice_csv, trained, tmp_path):
    result, orders, gfills = _replay(orcl_slice_csv, trained, tmp_path / "dry", dry_run=True)
    journal = Journal(tmp_path / "dry" / "journal.sqlite")
    assert journal.orders() and all(o["dry_run"] for o in journal.orders())
    assert orders["all"] == [] and gfills["all"] == []
    journal.close()


def test_a_non_paper_account_is_refused(orcl_slice):
    from kerastrader.brokers.ib.store import IBStore

    gateway = SimulatedGateway({"ORCL": orcl_slice}, history=100, account="U7654321")
    host, port = gateway.start()
    try:
        store = IBStore(host, port, client_id=3)
        with pytest.raises(LiveTradingRefused, match="U7654321"):
            store.start()
        store.stop()
    finally:
        gateway.stop()


def standalone(orcl_slice_csv, trained, out):
    """A gateway in this process and the command that trades against it from another."""
    bars = load_csv(orcl_slice_csv)
    history = int(bars.index.searchsorted(pd.Timestamp("2005-01-01")))
    gateway = SimulatedGateway({"ORCL": bars}, history=history, lockstep=True)
    host, port = gateway.start()
    argv = [
        sys.executable, "-m", "kerastrader.cli", "paper", "--host", host, "--port", str(port),
        "--model", str(trained.loaded.path), "--out", str(out), "-q",
        "--set", 'data.symbol="ORCL"', "--set", "paper.bar_seconds=86400",
        "--set", "paper.lockstep=true", "--set", 'paper.trade_start="2005-01-03"',
        "--set", "strategy.enter=0.5", "--set", "strategy.exit=0.499",
        "--set", "report.figures=false", "--set", "paper.stop_after_idle=3.0",
        "--set", "model.window=10", "--set", "model.units=[4]",
    ]  # fmt: skip
    return gateway, history, argv


def test_ctrl_c_ends_the_session_cleanly_with_its_report(orcl_slice_csv, trained, tmp_path):
    gateway, history, argv = standalone(orcl_slice_csv, trained, tmp_path / "interrupted")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.time() + 300
        while gateway.replay_index["ORCL"] < history + 100 and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        assert "Report:" in stdout
        out = tmp_path / "interrupted"
        assert (out / "report.html").is_file() and (out / "journal.sqlite").is_file()
        assert gateway.replay_index["ORCL"] < len(load_csv(orcl_slice_csv))  # ended early
    finally:
        gateway.stop()


def test_sigkill_in_the_middle_then_restart_resumes_from_the_journal(
    orcl_slice_csv, trained, tmp_path, session
):
    gateway, history, argv = standalone(orcl_slice_csv, trained, tmp_path / "killed")
    out = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 300
        while gateway.replay_index["ORCL"] < history + 200 and time.time() < deadline:
            time.sleep(0.05)
        assert len(gateway.fills) >= 1, "the first process should have traded before the kill"
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = gateway.replay_index["ORCL"]
        second = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)  # fmt: skip
        assert second.returncode == 0, second.stderr[-2000:]
        assert gateway.replay_index["ORCL"] > killed_at
        journal = Journal(out / "journal.sqlite")
        refs = [o["orderRef"] for o in gateway.orders]
        assert max(Counter(refs).values()) == 1
        assert sorted(refs) == sorted(o["ref"] for o in journal.orders())
        assert sorted(f["execId"] for f in gateway.fills) == sorted(journal.known_exec_ids())
        assert journal.positions().get("ORCL", 0.0) == gateway.positions().get("ORCL", 0.0)
        assert len(journal.sessions()) >= 2
        journal.close()
        # the whole session's trades are the undisturbed session's
        np.testing.assert_array_equal(fills(out)["amount"], fills(session[0])["amount"])
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["run"]["fills"] == len(gateway.fills)
    finally:
        gateway.stop()


def test_bracket_exits_live_at_the_gateway_fill_like_the_backtest(
    orcl_slice_csv, trained, tmp_path
):
    risk = {"stop_loss": 0.02, "take_profit": 0.03}
    cfg = tiny_config(data={"path": str(orcl_slice_csv)}, strategy=STRATEGY, risk=risk,
                      backtest={"runonce": False})  # fmt: skip
    run_experiment(cfg, tmp_path / "bt", model_dir=trained.loaded.path)
    run_paper(cfg, tmp_path / "paper", model_dir=trained.loaded.path, simulate=orcl_slice_csv)
    a, b = fills(tmp_path / "paper"), fills(tmp_path / "bt")
    assert len(b) >= 6
    assert list(a["date"]) == list(b["date"])
    np.testing.assert_array_equal(a["amount"], b["amount"])
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-7)
    journal = Journal(tmp_path / "paper" / "journal.sqlite")
    kinds = Counter(o["order_type"] for o in journal.orders())
    assert kinds["STP"] >= 1 and kinds["LMT"] >= 1  # the children went to the gateway
    journal.close()


def test_ib_gone_for_good_ends_the_session_with_its_report_and_an_error(
    orcl_slice_csv, trained, tmp_path
):
    import threading

    from kerastrader.runs.paper import SessionEnded

    bars = load_csv(orcl_slice_csv)
    history = int(bars.index.searchsorted(pd.Timestamp("2005-01-01")))
    gateway = SimulatedGateway({"ORCL": bars}, history=history, lockstep=True)
    host, port = gateway.start()
    paper = {"bar_seconds": 86_400, "lockstep": True, "trade_start": "2005-01-03"}
    cfg = tiny_config(data={"path": str(orcl_slice_csv)}, strategy=STRATEGY, paper=paper)

    def gateway_goes_away() -> None:  # IB Gateway stops a hundred bars in and stays down
        while gateway.replay_index["ORCL"] < history + 100:
            time.sleep(0.02)
        gateway.stop()

    threading.Thread(target=gateway_goes_away, daemon=True).start()
    out = tmp_path / "gone"
    with pytest.raises(SessionEnded, match="was lost and not restored after 3 attempts"):
        run_paper(cfg, out, model_dir=trained.loaded.path, host=host, port=port,
                  store_options={"reconnect_delays": (0.05,), "max_reconnects": 3})  # fmt: skip
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["run"]["bars"] >= 100


def test_a_live_session_trades_the_timeframe_the_model_was_trained_on(trained):
    from kerastrader.config import default_config
    from kerastrader.runs.paper import model_bar_seconds

    paper = default_config()["paper"]
    assert trained.loaded.metadata["data"].get("bar_seconds", 86_400) == 86_400  # daily ORCL
    assert model_bar_seconds(paper, trained.loaded) == 86_400
    assert model_bar_seconds({**paper, "bar_size": "30min"}, trained.loaded) == 1800


def test_a_simulated_session_reports_the_capital_it_sized_from(session):
    out, result = session
    assert result.metrics["run"]["capital"] == 100_000.0
    page = (out / "report.html").read_text()
    assert "<td>Capital</td><td>100,000.00 (the configured cash)</td>" in page
