"""The paper session's journal: durable, idempotent, and the source of the session's report."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from kerastrader.brokers.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
T0 = "2024-01-02T15:30:00+00:00"


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "session.sqlite", run_id="run1")
    yield j
    j.close()


def test_the_journal_file_is_in_wal_mode(journal: Journal) -> None:
    with sqlite3.connect(journal.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_order_is_recorded_before_sending_as_pending_submit(journal: Journal) -> None:
    ref = journal.order_ref(journal.next_order_number())
    journal.record_order(ref, "AAPL", "BUY", 10, "LMT", limit=100.5)

    order = journal.order(ref)
    assert ref == "run1:1"
    assert order["status"] == "PendingSubmit"
    assert order["ib_order_id"] is None  # not sent yet: IB has not numbered it
    assert (order["symbol"], order["action"], order["quantity"]) == ("AAPL", "BUY", 10.0)
    assert order["limit_price"] == 100.5 and order["dry_run"] is False
    assert journal.open_orders() == [order]


def test_the_same_order_ref_cannot_be_recorded_twice(journal: Journal) -> None:
    journal.record_order("run1:1", "AAPL", "BUY", 10, "MKT")
    with pytest.raises(ValueError, match="already in the journal"):
        journal.record_order("run1:1", "AAPL", "BUY", 10, "MKT")


def test_ib_order_id_is_attached_once_assigned(journal: Journal) -> None:
    journal.record_order("run1:1", "AAPL", "BUY", 10, "MKT")
    journal.set_ib_order_id("run1:1", 42)
    assert journal.order("run1:1")["ib_order_id"] == 42


def test_statuses_update_the_order_and_keep_a_history(journal: Journal) -> None:
    journal.record_order("run1:1", "AAPL", "BUY", 10, "MKT")
    journal.record_status("run1:1", "Submitted", filled=0, remaining=10)
    journal.record_status("run1:1", "Submitted", filled=0, remaining=10)  # IB repeats itself
    journal.record_status("run1:1", "Filled", filled=10, remaining=0, avg_price=100.25)

    order = journal.order("run1:1")
    assert (order["status"], order["filled"], order["avg_price"]) == ("Filled", 10.0, 100.25)
    history = [h["status"] for h in journal.status_history("run1:1")]
    assert history == ["PendingSubmit", "Submitted", "Filled"]
    assert journal.open_orders() == []


def test_a_fill_recorded_twice_counts_once(journal: Journal) -> None:
    assert journal.record_fill("e1", "run1:1", "AAPL", T0, 10, 100.0) is True
    assert journal.record_fill("e1", "run1:1", "AAPL", T0, 10, 100.0) is False

    assert len(journal.fills()) == 1
    assert journal.positions() == {"AAPL": 10.0}
    assert journal.known_exec_ids() == {"e1"}


def test_a_commission_arriving_before_its_fill_is_still_attached(journal: Journal) -> None:
    journal.record_commission("e1", 1.25)
    journal.record_commission("e1", 1.25)  # re-sent after a reconnect
    journal.record_fill("e1", "run1:1", "AAPL", T0, 10, 100.0)

    (fill,) = journal.fills()
    assert fill["commission"] == 1.25
    assert journal.cash(10_000) == pytest.approx(10_000 - 1000 - 1.25)


def test_ib_unset_realized_pnl_is_stored_as_null(journal: Journal) -> None:
    journal.record_fill("e1", "run1:1", "AAPL", T0, 10, 100.0)
    journal.record_commission("e1", 1.0, realized_pnl=sys.float_info.max)
    assert journal.fills()[0]["realized_pnl"] is None


def test_positions_and_cash_follow_fills_and_commissions(journal: Journal) -> None:
    journal.record_fill("e1", "run1:1", "AAPL", T0, 10, 100.0)
    journal.record_fill("e2", "run1:2", "MSFT", T0, 5, 300.0)
    journal.record_fill("e3", "run1:3", "AAPL", "2024-01-02T16:00:00Z", -4, 110.0)
    journal.record_fill("e4", "run1:4", "MSFT", "2024-01-02T17:00:00Z", -5, 310.0)
    for exec_id in ("e1", "e2", "e3", "e4"):
        journal.record_commission(exec_id, 1.0)

    assert journal.positions() == {"AAPL": 6.0}  # MSFT netted to zero is not a position
    # 10000 - 1000 - 1500 + 440 + 1550 - 4 x 1.00 commission
    assert journal.cash(10_000) == pytest.approx(9_486.0)


def test_times_are_stored_as_utc_whatever_zone_they_come_in(journal: Journal) -> None:
    new_york = pd.Timestamp("2024-01-02 10:30", tz="America/New_York")
    journal.record_decision(new_york, "AAPL", prediction=0.61, target=10, note="enter")
    assert journal.decisions()[0]["time"] == "2024-01-02T15:30:00.000000+00:00"


def test_a_bar_recorded_again_keeps_one_row_with_the_latest_values(journal: Journal) -> None:
    journal.record_bar("AAPL", T0, 100, 101, 99, 100.5, 1_000)
    journal.record_bar("AAPL", T0, 100, 102, 99, 101.5, 1_500)  # the forming bar, revised

    bars = journal.bars("AAPL")
    assert len(bars) == 1
    assert bars["close"].iloc[0] == 101.5
    assert str(bars.index.tz) == "UTC"


def test_order_numbers_and_run_id_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "session.sqlite"
    first = Journal(path)
    run_id = first.run_id
    for _ in range(3):
        first.record_order(first.order_ref(first.next_order_number()), "AAPL", "BUY", 1, "MKT")
    first.close()

    again = Journal(path)
    assert again.run_id == run_id
    assert again.next_order_number() == 4
    assert again.order_ref(4) == f"{run_id}:4"
    again.close()


def test_an_order_number_ib_has_seen_is_not_used_again(tmp_path: Path) -> None:
    # Under normal durability a power loss can lose the last intents while IB has the orders:
    # a restart that sees IB's refs numbers its next order after them.
    with Journal(tmp_path / "session.sqlite", run_id="monday") as journal:
        journal.record_order(journal.order_ref(1), "AAPL", "BUY", 1, "MKT")
        journal.known_at_ib("monday:5")  # an open order or an execution IB reports
        journal.known_at_ib("tuesday:9")  # another run's order: not ours to count
        journal.known_at_ib("monday:3")
        assert journal.next_order_number() == 6


def test_a_new_run_id_on_reopening_numbers_its_orders_from_one(tmp_path: Path) -> None:
    path = tmp_path / "session.sqlite"
    with Journal(path, run_id="monday") as monday:
        monday.record_order(monday.order_ref(1), "AAPL", "BUY", 1, "MKT")
    with Journal(path, run_id="tuesday") as tuesday:
        assert tuesday.next_order_number() == 1
        assert len(tuesday.orders()) == 1  # Monday's order is still there
    with Journal(path) as reopened:
        assert reopened.run_id == "tuesday"


def test_sessions_are_recorded_with_their_details(journal: Journal) -> None:
    info = {"account": "DU123", "host": "127.0.0.1", "port": 7497, "mode": "paper"}
    journal.record_session(**info, config_hash="abc")
    (session,) = journal.sessions()
    assert session["info"] == {**info, "config_hash": "abc"}
    assert session["run_id"] == "run1"


def test_a_process_killed_with_sigkill_keeps_every_order_and_all_recorded_before_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "killed.sqlite"
    n = 50
    script = textwrap.dedent(
        f"""
        import os, signal
        from kerastrader.brokers.journal import Journal
        j = Journal({str(path)!r}, run_id="killed")
        for n in range(1, {n} + 1):
            ref = j.order_ref(n)
            j.record_order(ref, "AAPL", "BUY", 1, "MKT")
            j.record_status(ref, "Submitted", remaining=1)
            j.record_fill(f"exec-{{n}}", ref, "AAPL", "2024-01-02T15:00:00Z", 1, 100.0)
            j.record_commission(f"exec-{{n}}", 0.5)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()

    with Journal(path) as reopened:
        assert reopened.run_id == "killed"
        assert len(reopened.orders()) == n  # an order returns only once it is committed
        # Everything recorded before the last order went to disk with it; what came after
        # it (the last status, fill and commission) may have been in the buffer.
        fills = [f["exec_id"] for f in reopened.fills()]
        assert fills[: n - 1] == [f"exec-{i}" for i in range(1, n)]
        assert fills in ([f"exec-{i}" for i in range(1, n)], [f"exec-{i}" for i in range(1, n + 1)])
        held = len(fills)
        with sqlite3.connect(path) as raw:
            paid = raw.execute("SELECT COUNT(*) FROM commissions").fetchone()[0] * 0.5
        assert reopened.positions() == {"AAPL": float(held)}
        assert reopened.cash(10_000) == pytest.approx(10_000 - held * 100.0 - paid)
        assert reopened.next_order_number() == n + 1


def test_two_threads_writing_at_once_lose_nothing(journal: Journal) -> None:
    per_thread = 200
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                ref = f"{name}:{i}"
                journal.record_order(ref, name, "BUY", 1, "MKT")
                journal.record_status(ref, "Filled", filled=1, remaining=0, avg_price=10.0)
                journal.record_fill(f"{name}-{i}", ref, name, T0, 1, 10.0)
        except BaseException as exc:  # a failure in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("ib", "backtrader")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(journal.orders()) == 2 * per_thread
    assert len(journal.fills()) == 2 * per_thread
    assert journal.positions() == {"ib": per_thread, "backtrader": per_thread}


@pytest.fixture
def two_days(journal: Journal) -> Journal:
    """Buy 10 AAPL on day one, sell 5 on day two, $1 commission each, bars at both closes."""
    journal.record_bar("AAPL", "2024-01-02T15:00:00Z", 100, 100, 100, 100.0, 1_000)
    journal.record_fill("e1", "run1:1", "AAPL", "2024-01-02T15:30:00Z", 10, 100.5)
    journal.record_commission("e1", 1.0)
    journal.record_bar("AAPL", "2024-01-02T20:00:00Z", 101, 101, 101, 101.0, 1_000)
    journal.record_fill("e2", "run1:2", "AAPL", "2024-01-03T16:00:00Z", -5, 102.0)
    journal.record_commission("e2", 1.0)
    journal.record_bar("AAPL", "2024-01-03T20:00:00Z", 103, 103, 103, 103.0, 1_000)
    return journal


def test_report_positions_are_valued_at_each_days_last_close(two_days: Journal) -> None:
    _, positions, _ = two_days.report_frames(start_cash=10_000)

    days = pd.DatetimeIndex(["2024-01-02", "2024-01-03"], name="date").tz_localize("UTC")
    expected = pd.DataFrame(
        {
            "AAPL": [10 * 101.0, 5 * 103.0],
            "cash": [10_000.0 - 1005 - 1, 10_000.0 - 1005 - 1 + 510 - 1],  # 8994, 9503
        },
        index=days,
    )
    pd.testing.assert_frame_equal(positions, expected, check_index_type=False)
    assert str(positions.index.tz) == "UTC"


def test_report_returns_are_daily_changes_of_portfolio_value(two_days: Journal) -> None:
    returns, _, _ = two_days.report_frames(start_cash=10_000)

    # values: day one 1010 + 8994 = 10004, day two 515 + 9503 = 10018
    assert returns.tolist() == pytest.approx([10_004 / 10_000 - 1, 10_018 / 10_004 - 1])
    assert returns.name == "strategy"
    assert str(returns.index.tz) == "UTC"
    assert list(returns.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]


def test_report_transactions_are_one_row_per_fill_at_its_time(two_days: Journal) -> None:
    _, _, transactions = two_days.report_frames(start_cash=10_000)

    assert list(transactions.columns) == ["amount", "price", "symbol", "commission"]
    assert str(transactions.index.tz) == "UTC"
    assert list(transactions.index) == [
        pd.Timestamp("2024-01-02 15:30", tz="UTC"),
        pd.Timestamp("2024-01-03 16:00", tz="UTC"),
    ]
    assert transactions["amount"].tolist() == [10.0, -5.0]
    assert transactions["price"].tolist() == [100.5, 102.0]
    assert transactions["symbol"].tolist() == ["AAPL", "AAPL"]
    assert transactions["commission"].tolist() == [1.0, 1.0]


def test_an_empty_journal_gives_empty_frames_in_the_same_layout(journal: Journal) -> None:
    returns, positions, transactions = journal.report_frames(start_cash=10_000)

    assert returns.empty and positions.empty and transactions.empty
    assert list(positions.columns) == ["cash"]
    assert list(transactions.columns) == ["amount", "price", "symbol", "commission"]
    assert all(str(f.index.tz) == "UTC" for f in (returns, positions, transactions))
