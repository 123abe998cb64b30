"""The journal's SQLite schema and the small helpers its modules share.

Why apart from :mod:`.journal`: the schema is the journal's file format (a restarted
session, the report and tests read it), and it changes on its own schedule.

Tables:

``meta(key, value)``
    ``run_id`` (the run whose order numbers this file hands out) and ``schema_version``.
``sessions(id, run_id, time, info)``
    One row per start or resume of a session; ``info`` is JSON (config hash, account,
    host/port, mode, ...).
``bars(symbol, time, open, high, low, close, volume)``
    Primary key ``(symbol, time)``: recording a bar again keeps its latest values.
``decisions(id, run_id, time, symbol, prediction, target, note)``
    What the model said and the target position the strategy derived from it.
``orders(ref, run_id, number, symbol, action, quantity, order_type, limit_price, stop_price,
trail_percent, parent_ref, ib_order_id, dry_run, status, filled, remaining, avg_price,
why, created, updated)``
    One row per order, keyed by its ``orderRef``; the latest status is kept here.
``order_status(id, ref, time, status, filled, remaining, avg_price, why)``
    Every distinct status an order went through (IB repeats statuses; repeats are skipped).
``fills(exec_id, ref, symbol, time, shares, price)``
    One row per execution, keyed by IB's ``execId``; ``shares`` signed (+buy, -sell).
``commissions(exec_id, commission, realized_pnl, time)``
    Separate from ``fills`` because IB's commission report may arrive before its execution.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1

# ib_async's OrderStatus.DoneStates: an order in one of these will never fill again.
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})

# IB's "unset" double (sys.float_info.max) in a commission report's realizedPNL.
UNSET_DOUBLE = 1e300

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    time TEXT NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL,
    time TEXT NOT NULL,
    open REAL, high REAL, low REAL, close REAL, volume REAL,
    PRIMARY KEY (symbol, time)
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    time TEXT NOT NULL,
    symbol TEXT NOT NULL,
    prediction REAL,
    target REAL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS orders (
    ref TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    number INTEGER,
    symbol TEXT NOT NULL,
    action TEXT NOT NULL,
    quantity REAL NOT NULL,
    order_type TEXT NOT NULL,
    limit_price REAL,
    stop_price REAL,
    trail_percent REAL,
    parent_ref TEXT,
    ib_order_id INTEGER,
    dry_run INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    filled REAL NOT NULL DEFAULT 0,
    remaining REAL,
    avg_price REAL,
    why TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_run_number ON orders (run_id, number);
CREATE TABLE IF NOT EXISTS order_status (
    id INTEGER PRIMARY KEY,
    ref TEXT NOT NULL,
    time TEXT NOT NULL,
    status TEXT NOT NULL,
    filled REAL NOT NULL,
    remaining REAL,
    avg_price REAL,
    why TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS order_status_ref ON order_status (ref);
CREATE TABLE IF NOT EXISTS fills (
    exec_id TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    symbol TEXT NOT NULL,
    time TEXT NOT NULL,
    shares REAL NOT NULL,
    price REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commissions (
    exec_id TEXT PRIMARY KEY,
    commission REAL NOT NULL,
    realized_pnl REAL,
    time TEXT NOT NULL
);
"""

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]


def utc_iso(time: Any) -> str:
    """``time`` (datetime, Timestamp, date or ISO string) as a fixed-width ISO UTC string.

    Fixed width (microseconds, ``+00:00``) so that SQLite's text order is time order. A naive
    time is taken as UTC: IB reports times in UTC and so does the session.
    """
    ts = pd.Timestamp(time)
    if pd.isna(ts):
        raise ValueError(f"not a time: {time!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime(warn=False).isoformat(timespec="microseconds")


def now_iso() -> str:
    return utc_iso(dt.datetime.now(dt.UTC))


def new_run_id() -> str:
    """A fresh run id: the UTC start time (readable, sortable) and a random suffix (unique)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def split_ref(ref: str) -> tuple[str | None, int | None]:
    """``"run:12"`` -> ``("run", 12)``; a ref not made by ``order_ref`` -> ``(None, None)``."""
    run, sep, number = ref.rpartition(":")
    if sep and run and number.isdigit():
        return run, int(number)
    return None, None


def real(value: float | None) -> float | None:
    return None if value is None else float(value)
