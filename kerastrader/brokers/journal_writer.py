"""How the journal reaches the disk: one connection, records batched into the next commit.

Why: every journal event used to be its own transaction, so the path from a bar to its order
paid one commit (with ``synchronous=FULL`` one fsync, 3-7 ms on this machine) for the bar,
for each status, fill and commission IB had sent since the last bar, for IB's order id, and
for the order itself: about seven fsyncs per bar. Now a record that nothing waits for (a bar,
a decision, a status, a fill, a commission) is put in a buffer and the caller goes on; the
order intent, which must be on disk before ``placeOrder``, is committed together with
everything buffered before it, in one transaction and one fsync, in the caller's own thread
(no hand-over to another thread on the path: on a loaded machine each one costs
milliseconds of scheduling). A flusher thread commits what no order took along once it is
``flush_seconds`` old.

The rules (:mod:`.journal`'s docstring turns them into what a crash loses):

- Records reach the file in the order they were made, from any thread: every commit takes the
  whole buffer, oldest first, and one lock serialises the connection. Each record runs in its
  own savepoint, so one that fails is undone alone.
- ``write(..., durable=True)`` returns once its transaction is committed with the journal's
  ``synchronous`` level: ``FULL`` syncs the WAL, which puts every frame before it (the bar,
  statuses, fills) on disk too; ``NORMAL`` does not sync. Its own failure is raised.
- A buffered record is committed by the next durable write, by a read (reads flush first), or
  by the flusher within about ``2 * flush_seconds``, without an fsync: from then on it
  survives a killed process (the data is in the operating system's cache). Under ``FULL`` it
  is synced by the next durable commit, by the checkpoint the flusher runs once the journal
  has been idle ``idle_seconds``, or by the first commit after ``sync_seconds``.
- Only the flusher checkpoints the WAL (``wal_autocheckpoint=0``), when idle, so a checkpoint
  does not land inside an order's commit, or once the WAL passes ``max_wal_bytes``.
- A buffered record that fails (nobody waits for it) is logged and kept: the next durable
  write raises :class:`JournalError` after committing, so no order is sent after a record was
  lost.

``background=False`` is the old behaviour (each record its own transaction in the caller's
thread, with the journal's ``synchronous`` level): ``benchmarks/bench_paper.py`` measures
both side by side.
"""

from __future__ import annotations

import atexit
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerastrader.errors import KerastraderError

log = logging.getLogger(__name__)

Write = Callable[[sqlite3.Connection], Any]


class JournalError(KerastraderError):
    """The journal could not write a record: the session must not send more orders."""


class Writer:
    """The journal's connection, its buffer of records and its flusher thread."""

    def __init__(
        self,
        path: Path,
        synchronous: str = "FULL",
        background: bool = True,
        flush_seconds: float = 0.05,
        idle_seconds: float = 0.2,
        sync_seconds: float = 1.0,
        max_wal_bytes: int = 64 << 20,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.synchronous = synchronous.upper()
        self.background = background
        self.flush_seconds = flush_seconds
        self.idle_seconds = idle_seconds
        self.sync_seconds = sync_seconds
        self.max_wal_bytes = max_wal_bytes
        # isolation_level=None: no implicit transactions; each commit opens exactly one.
        self.conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self.conn.row_factory = sqlite3.Row
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a network filesystem without shared memory
            self.conn.close()
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        self._level = ""
        self._set_level(self.synchronous)
        self.lock = threading.RLock()  # the connection: one transaction or read at a time
        self._buffer: list[Write] = []
        self._buffered_at = 0.0  # when the oldest buffered record came
        self._failed: BaseException | None = None
        self._closed = False
        self._last_commit = 0.0
        self._unsynced_since: float | None = None  # first commit not yet on disk (FULL)
        self._uncheckpointed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if background:
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
            self._flusher = threading.Thread(target=self._flush_loop, name="journal-flusher",
                                             daemon=True)  # fmt: skip
            self._flusher.start()
        atexit.register(self.close)  # an interpreter that exits normally commits the buffer

    # -- the callers' side ------------------------------------------------------------------

    def write(self, record: Write, *, durable: bool = False) -> Any:
        """Buffer ``record(conn)``, or (``durable``, or without a background) commit it now
        with everything buffered before it and return its result."""
        if self._closed:
            raise JournalError(f"the journal {self.path} is closed")
        if self.background and not durable:
            with self.lock:
                if not self._buffer:
                    self._buffered_at = time.monotonic()
                self._buffer.append(record)
            return None
        with self.lock:
            self._raise_failure()
            outcome = self._commit([*self._take(), record], self.synchronous, caller=True)[-1]
            self._raise_failure()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def read(self, query: Callable[[sqlite3.Connection], Any]) -> Any:
        """``query(conn)`` after committing the buffer, so a read sees every record made."""
        with self.lock:
            if self._closed:
                raise JournalError(f"the journal {self.path} is closed")
            self.flush()
            return query(self.conn)

    def flush(self) -> None:
        """Commit the buffer now (no fsync: what a killed process would keep)."""
        with self.lock:
            records = self._take()
            if records:
                self._commit(records, "NORMAL")

    def close(self) -> None:
        """Commit the buffer, sync, checkpoint the WAL into the main file and close."""
        with self.lock:
            if self._closed:
                return
            atexit.unregister(self.close)
            self._stop.set()
            try:
                records = self._take()
                if records:
                    self._commit(records, self.synchronous)
                self._set_level(self.synchronous)
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._closed = True
                self.conn.close()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)
        self._raise_failure()

    # -- committing -------------------------------------------------------------------------

    def _take(self) -> list[Write]:
        records, self._buffer = self._buffer, []
        return records

    def _commit(self, records: list[Write], level: str, caller: bool = False) -> list[Any]:
        """One transaction, one savepoint per record; each record's result or exception.

        A failed record without a caller to tell (all of them but the last when ``caller``)
        is kept as the journal's failure."""
        now = time.monotonic()
        if self._unsynced_since is not None and now - self._unsynced_since > self.sync_seconds:
            level = self.synchronous  # buffered records must not stay off the disk for long
        self._set_level(level)
        outcomes: list[Any] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for record in records:
                self.conn.execute("SAVEPOINT one")
                try:
                    outcomes.append(record(self.conn))
                except Exception as exc:  # undo this record only; the rest go on
                    self.conn.execute("ROLLBACK TO one")
                    outcomes.append(exc)
                self.conn.execute("RELEASE one")
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:  # the commit itself failed (disk full, I/O error)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            outcomes = [exc] * len(records)
        except BaseException:  # Ctrl-C mid-commit: nothing written, the buffer kept, no order
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._buffer[:0] = records[:-1] if caller else records
            raise
        self._last_commit, self._uncheckpointed = now, True
        if level == "FULL" or self.synchronous == "NORMAL":
            self._unsynced_since = None
        elif self._unsynced_since is None:
            self._unsynced_since = now
        for outcome in outcomes[:-1] if caller else outcomes:
            if isinstance(outcome, BaseException) and self._failed is None:
                self._failed = outcome
                log.error("journal %s: a record could not be written: %s", self.path, outcome)
        return outcomes

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise JournalError(
                f"the journal {self.path} lost a record ({self._failed}); no more orders are sent"
            ) from self._failed

    # -- the flusher ------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        """Wake every ``flush_seconds`` (not on each record: a wake-up on the bar's path would
        take the interpreter lock from it), commit what waited that long, checkpoint when idle."""
        while not self._stop.wait(self.flush_seconds):
            try:
                with self.lock:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._buffer and now - self._buffered_at >= self.flush_seconds:
                        self.flush()
                    elif self._uncheckpointed and now - self._last_commit >= self.idle_seconds:
                        self._checkpoint()
                    elif self.wal.exists() and self.wal.stat().st_size > self.max_wal_bytes:
                        self._checkpoint()
            except Exception as exc:  # keep flushing; the failure is raised to the next order
                self._failed = self._failed or exc
                log.error("journal %s: flush failed: %s", self.path, exc)

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file (syncing both); the next commit rewrites the WAL
        from its start, which is a cheaper fsync than one that grows the file."""
        self._set_level(self.synchronous)
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._unsynced_since, self._uncheckpointed = None, False

    def _set_level(self, level: str) -> None:
        if level != self._level:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._level = level
