"""Plain values from ib_async's objects: what crosses from the IB thread to Backtrader's.

Why apart from :mod:`.store`: these are pure functions of ib_async's objects (no socket, no
loop), tested on their own; the store only moves their results onto queues. No ib_async
object crosses threads, only these dicts and :class:`Bar`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kerastrader.brokers.ib.contracts import symbol_of
from kerastrader.errors import KerastraderError

__all__ = [
    "Bar",
    "choose_account",
    "commission_of",
    "describe",
    "exec_payload",
    "to_bar",
    "to_float",
    "why_text",
]


def describe(contract: Any) -> str:
    """A contract in one short phrase for an error line: ``ORCL (STK, SMART, USD)``."""
    name = getattr(contract, "localSymbol", "") or getattr(contract, "symbol", "?")
    kind = getattr(contract, "secType", "")
    exchange = getattr(contract, "exchange", "")
    currency = getattr(contract, "currency", "")
    return f"{name} ({', '.join(x for x in (kind, exchange, currency) if x)})"


@dataclass
class Bar:
    """A real-time or historical bar as plain values (no ib_async objects cross threads)."""

    time: float  # epoch seconds, UTC, the bar's start
    open: float
    high: float
    low: float
    close: float
    volume: float
    arrived: float = 0.0  # time.perf_counter() when it reached us (latency measurements)


def why_text(entry: Any) -> str:
    """``"<code> <IB's text>"`` from a trade-log entry (ib_async prefixes its own words)."""
    message = entry.message
    head, sep, text = message.partition(": ")
    if sep and head.startswith(("Error ", "Warning ")):
        message = text
    return f"{entry.errorCode} {message}".strip()


def to_float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def to_bar(b: Any) -> Bar:
    when = b.time if hasattr(b, "time") else b.date
    if hasattr(when, "timestamp"):
        seconds = when.timestamp()
    else:  # a date (daily bars with formatDate=1)
        seconds = dt.datetime(when.year, when.month, when.day, tzinfo=dt.UTC).timestamp()
    return Bar(float(seconds), float(getattr(b, "open_", getattr(b, "open", 0.0))),
               float(b.high), float(b.low), float(b.close), float(b.volume))  # fmt: skip


FA_MASTER_PREFIXES = ("DF", "F")  # a financial advisor's master account: paper DF, live F


def is_fa_master(account: str, accounts: list[str]) -> bool:
    """Whether ``account`` is the financial-advisor master of a login managing several."""
    return len(accounts) > 1 and account.startswith(FA_MASTER_PREFIXES)


def choose_account(accounts: list[str], wanted: str = "") -> str:
    """The account a session trades: ``wanted`` (``--account``), else the only one it can.

    A login that manages several accounts must be told which: guessing would mix several
    accounts' values and positions. A financial-advisor login (paper: a ``DF`` master and
    its ``DU`` accounts) is a paper login like any other, but orders to its master need an
    allocation (a group or profile) the session does not make, so the master is never the
    session's account: the one ``DU`` account under it is taken, several need ``--account``."""
    tradable = [a for a in accounts if not is_fa_master(a, accounts)]
    if wanted:
        if wanted not in accounts:
            raise KerastraderError(
                f"account {wanted} is not among the accounts this IB login manages "
                f"({', '.join(accounts) or 'none'})"
            )
        if is_fa_master(wanted, accounts):
            raise KerastraderError(
                f"account {wanted} is the financial-advisor master of this login: orders to it "
                "need an allocation the session does not make; choose one of its accounts "
                f"({', '.join(tradable)}) with --account"
            )
        return wanted
    if len(tradable) > 1:
        raise KerastraderError(
            f"this IB login manages several accounts ({', '.join(tradable)}): choose one with "
            "--account"
        )
    return tradable[0] if tradable else ""


def commission_of(fill: Any) -> float | None:
    """The fill's commission, or None while IB has not reported it: ib_async gives a fill
    recovered through reqExecutions an empty CommissionReport (truthy, commission 0.0), so
    only one carrying its execId counts as reported."""
    report = getattr(fill, "commissionReport", None)
    if report is None or not getattr(report, "execId", ""):
        return None
    return float(report.commission)


def exec_payload(ref: str, fill: Any, names: dict[int, str] | None = None) -> dict[str, Any]:
    e = fill.execution
    sign = 1.0 if e.side.upper() in ("BOT", "BUY") else -1.0
    return {
        "exec_id": e.execId,
        "ref": ref,
        "order_id": e.orderId,
        "symbol": (names or {}).get(fill.contract.conId) or symbol_of(fill.contract),
        "account": e.acctNumber,
        "shares": sign * float(e.shares),
        "price": float(e.price),
        # The execution's own time (ib_async's Fill.time is when the message arrived).
        "time": e.time.timestamp() if hasattr(e.time, "timestamp") else None,
        "cum_qty": float(e.cumQty),
    }
