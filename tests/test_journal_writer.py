"""The journal's writer: records batched into the order's commit, on disk in order, lost only
as its docstring says (a killed process: the records after the last order, at most)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kerastrader.brokers.journal import Journal, JournalError

ROOT = Path(__file__).resolve().parents[1]


def bar_times(n: int) -> list[str]:
    """``n`` distinct minute stamps in a shuffled order (so file order is not time order)."""
    stamps = [f"2024-01-02T{10 + i // 60:02d}:{i % 60:02d}:00+00:00" for i in range(n)]
    random.Random(7).shuffle(stamps)
    return stamps


def rows_in_file_order(path: Path, sql: str) -> list[tuple]:
    """Read the file with a connection of its own (not the journal's)."""
    with sqlite3.connect(path) as raw:
        return raw.execute(sql).fetchall()


def test_buffered_bars_are_all_on_disk_after_close_in_the_order_recorded(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    times = bar_times(600)
    journal = Journal(path)
    for i, when in enumerate(times):
        journal.record_bar("AAPL", when, 100 + i, 101 + i, 99 + i, 100.5 + i, 1_000 + i)
    journal.close()

    rows = rows_in_file_order(path, "SELECT time, close FROM bars ORDER BY rowid")
    expected = [(t.replace("+00:00", ".000000+00:00"), 100.5 + i) for i, t in enumerate(times)]
    assert rows == expected


def test_an_order_commits_the_records_made_before_it_in_one_go(tmp_path: Path) -> None:
    path = tmp_path / "order.sqlite"
    with Journal(path, run_id="r") as journal:
        journal.record_bar("AAPL", "2024-01-02T15:00:00Z", 100, 101, 99, 100.5, 1_000)
        journal.record_decision("2024-01-02T15:00:00Z", "AAPL", prediction=0.7, target=10)
        journal.record_order("r:1", "AAPL", "BUY", 10, "MKT")
        # Before any flush or close, another connection sees all three.
        assert rows_in_file_order(path, "SELECT close FROM bars") == [(100.5,)]
        assert rows_in_file_order(path, "SELECT target FROM decisions") == [(10.0,)]
        assert rows_in_file_order(path, "SELECT ref, status FROM orders") == [
            ("r:1", "PendingSubmit")
        ]


def test_a_record_no_order_follows_is_committed_by_the_flusher(tmp_path: Path) -> None:
    path = tmp_path / "flusher.sqlite"
    with Journal(path) as journal:
        journal.record_bar("AAPL", "2024-01-02T15:00:00Z", 100, 101, 99, 100.5, 1_000)
        deadline = time.monotonic() + 10.0  # the rule says ~0.1 s; generous on a loaded box
        while not rows_in_file_order(path, "SELECT close FROM bars"):
            assert time.monotonic() < deadline, "the buffered bar never reached the file"
            time.sleep(0.02)


def test_reads_see_records_still_in_the_buffer(tmp_path: Path) -> None:
    with Journal(tmp_path / "reads.sqlite", run_id="r") as journal:
        journal.record_fill("e1", "r:1", "AAPL", "2024-01-02T15:30:00Z", 10, 100.0)
        journal.record_commission("e1", 1.0)
        assert journal.positions() == {"AAPL": 10.0}
        assert journal.cash(10_000) == pytest.approx(10_000 - 1_000 - 1.0)
        assert journal.commission("e1") == 1.0 and journal.has_fill("e1")


def test_without_a_background_every_record_is_committed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "inline.sqlite"
    with Journal(path, background=False) as journal:
        journal.record_bar("AAPL", "2024-01-02T15:00:00Z", 100, 101, 99, 100.5, 1_000)
        assert rows_in_file_order(path, "SELECT close FROM bars") == [(100.5,)]


def test_a_record_that_could_not_be_written_stops_the_next_order(tmp_path: Path) -> None:
    path = tmp_path / "lost.sqlite"
    journal = Journal(path, run_id="r")
    with sqlite3.connect(path) as raw:  # the table goes away under the journal's feet
        raw.execute("DROP TABLE bars")
    journal.record_bar("AAPL", "2024-01-02T15:00:00Z", 100, 101, 99, 100.5, 1_000)
    with pytest.raises(JournalError, match="lost a record"):
        journal.record_order("r:1", "AAPL", "BUY", 10, "MKT")
    with pytest.raises(JournalError):
        journal.close()


def test_a_process_exiting_without_close_loses_at_most_what_came_after_its_last_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exited.sqlite"
    times = bar_times(200)
    orders_at = list(range(9, 190, 10))  # an order after every tenth bar, none after bar 189
    script = textwrap.dedent(
        f"""
        import os
        from kerastrader.brokers.journal import Journal
        j = Journal({str(path)!r}, run_id="exited")
        for i, when in enumerate({times!r}):
            j.record_bar("AAPL", when, 1, 1, 1, float(i), 1)
            if i in {orders_at!r}:
                ref = j.order_ref(j.next_order_number())
                j.record_order(ref, "AAPL", "BUY", 1, "MKT")
                j.record_status(ref, "Submitted", remaining=1)
        os._exit(0)  # no close, no atexit: as a crash leaves it
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()

    closes = [c for (c,) in rows_in_file_order(path, "SELECT close FROM bars ORDER BY rowid")]
    # What is on disk is what was recorded, in order, up to some point at or after the last
    # order's bar (everything before an order is committed with it).
    assert closes == [float(i) for i in range(len(closes))]
    assert len(closes) >= orders_at[-1] + 1
    with Journal(path) as reopened:
        refs = [o["ref"] for o in reopened.orders()]
        assert refs == [f"exited:{n}" for n in range(1, len(orders_at) + 1)]
        assert reopened.next_order_number() == len(orders_at) + 1
        # Every order's Submitted, except perhaps the last one's (it came after that order).
        statuses = [o["status"] for o in reopened.orders()]
        assert statuses[:-1] == ["Submitted"] * (len(orders_at) - 1)
        assert statuses[-1] in ("PendingSubmit", "Submitted")
