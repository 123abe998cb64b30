"""Paper trading by default, and limits that stop a runaway strategy.

Real money takes two deliberate acts: ``--live`` on the command line and typing the account id
at the confirmation prompt. Without them a live port (TWS 7496, Gateway 4001) or a non-paper
account (IB paper accounts start with ``DU``) is refused before any order can be sent. The
order limits and the daily loss guard apply in paper mode too: a strategy that misbehaves on
paper would misbehave with money.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kerastrader.errors import KerastraderError

log = logging.getLogger(__name__)

PAPER_PORTS = (7497, 4002)  # TWS, IB Gateway: paper trading
LIVE_PORTS = (7496, 4001)  # TWS, IB Gateway: live trading
PAPER_ACCOUNT_PREFIX = "DU"


class LiveTradingRefused(KerastraderError):
    """A connection or account that would trade real money, without ``--live``."""


def check_port(port: int, live: bool) -> None:
    """Refuse IB's live-trading ports unless ``live``: the first, cheapest guard.

    A port that is neither paper nor live by IB's defaults (ports are configurable) passes
    with a warning; ``check_account`` decides once the account is known.
    """
    port = int(port)
    if port in LIVE_PORTS:
        if not live:
            raise LiveTradingRefused(
                f"port {port} is Interactive Brokers' live-trading port (TWS 7496, Gateway 4001);"
                f" paper trading uses {PAPER_PORTS[0]} (TWS) or {PAPER_PORTS[1]} (Gateway)."
                " To trade real money, pass --live"
            )
        log.warning("port %d is a LIVE trading port: orders will use real money", port)
    elif port not in PAPER_PORTS:
        log.warning(
            "port %d is not a default IB port; the account id will decide paper or live", port
        )


def check_account(account: str, live: bool) -> None:
    """Refuse an account that is not an IB paper account (``DU...``) unless ``live``.

    The port can lie (TWS lets users change it); the account id cannot, so this is the guard
    that holds. With ``live`` a real account is allowed, loudly.
    """
    account = (account or "").strip()
    if account.startswith(PAPER_ACCOUNT_PREFIX):
        return
    if not live:
        shown = account or "(none reported)"
        raise LiveTradingRefused(
            f"account {shown} is not an Interactive Brokers paper account (those start with"
            f" {PAPER_ACCOUNT_PREFIX!r}). To trade real money on it, pass --live"
        )
    log.warning("account %s is a LIVE account: orders will use real money", account)


def confirm_live(answer: str, account: str) -> bool:
    """The ``--live`` confirmation: True only if ``answer`` is the account id, exactly.

    Surrounding whitespace (a stray space or newline) is forgiven; case and every character
    are not. A "yes" is not enough: typing the id proves the user read which account it is.
    """
    account = (account or "").strip()
    return bool(account) and (answer or "").strip() == account


def _num(x: float) -> str:
    return f"{x:,.10g}" if abs(x) < 1e15 else f"{x:.6g}"


@dataclass
class Limits:
    """Per-order limits; 0 means no limit. Checked before an order is journalled or sent.

    ``daily_loss_limit`` is not checked per order: it configures a ``DailyLossGuard``.
    """

    max_quantity: float = 0.0  # per order, shares
    max_notional: float = 0.0  # per order, |quantity| x price
    max_position: float = 0.0  # resulting absolute position, shares
    daily_loss_limit: float = 0.0  # fraction of the day's starting equity (0 = off)

    def __post_init__(self) -> None:
        for name in ("max_quantity", "max_notional", "max_position", "daily_loss_limit"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0 (0 = no limit), got {value}")
            setattr(self, name, value)
        if self.daily_loss_limit >= 1:
            raise ValueError(
                f"daily_loss_limit is a fraction of equity below 1, got {self.daily_loss_limit}"
            )

    def check_order(
        self, symbol: str, quantity: float, price: float, position: float
    ) -> str | None:
        """None if the order may go, else why not (the limit and the numbers).

        ``quantity`` is signed (+ buy, - sell) and ``position`` is the current signed position,
        so the resulting position is their sum. An order that shrinks the absolute position is
        never stopped by ``max_position``: lowering the limit must not trap a position. An
        unknown price (NaN, <= 0) is refused when ``max_notional`` is set: unknown is not small.
        """
        quantity, price, position = float(quantity), float(price), float(position)
        size = abs(quantity)
        if self.max_quantity and size > self.max_quantity:
            return (
                f"{symbol}: order of {_num(size)} shares exceeds max_quantity"
                f" {_num(self.max_quantity)}"
            )
        if self.max_notional:
            if not (math.isfinite(price) and price > 0):
                return f"{symbol}: price {price} is unknown, so max_notional cannot be checked"
            notional = size * price
            if notional > self.max_notional:
                return (
                    f"{symbol}: notional {_num(notional)} ({_num(size)} shares x {_num(price)})"
                    f" exceeds max_notional {_num(self.max_notional)}"
                )
        if self.max_position:
            after = position + quantity
            if abs(after) > self.max_position and abs(after) > abs(position):
                return (
                    f"{symbol}: resulting position {_num(after)} (now {_num(position)},"
                    f" order {quantity:+,.10g}) exceeds max_position {_num(self.max_position)}"
                )
        return None


class DailyLossGuard:
    """Halts trading for the rest of a day once equity falls ``limit`` below the day's start.

    The first equity seen on a day is that day's start. ``update`` returns True exactly once
    per day, when the loss first crosses the limit (the moment to cancel orders and stop);
    ``halted`` stays True for the rest of that day. ``timezone`` sets where a day ends (UTC by
    default; ``"America/New_York"`` for the exchange's day). ``limit`` 0 never halts.

    The state lives in memory: a session restarted after a halt must feed the guard the day's
    starting equity again (``update`` with the day's first value) or it starts afresh.
    """

    def __init__(self, limit: float, timezone: str = "UTC") -> None:
        limit = float(limit)
        if not (0 <= limit < 1):
            raise ValueError(f"limit is a fraction of equity in [0, 1), got {limit}")
        self.limit = limit
        self.timezone = timezone
        self.day: dt.date | None = None
        self.start_equity: float | None = None
        self._halted_day: dt.date | None = None

    def _day(self, time: Any) -> dt.date:
        ts = pd.Timestamp(time)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
        return ts.tz_convert(self.timezone).date()

    def update(self, time: Any, equity: float) -> bool:
        """Record ``equity`` at ``time``; True when trading must halt now (once per day)."""
        day = self._day(time)
        equity = float(equity)
        if day != self.day:
            self.day, self.start_equity = day, equity
        if not self.limit or self._halted_day == day or self.start_equity is None:
            return False
        floor = self.start_equity * (1.0 - self.limit)
        if equity < floor:
            self._halted_day = day
            log.warning(
                "daily loss limit hit on %s: equity %s is below %s (start %s, limit %.2f%%);"
                " halting until the next day",
                day,
                _num(equity),
                _num(floor),
                _num(self.start_equity),
                100 * self.limit,
            )
            return True
        return False

    def halted(self, time: Any) -> bool:
        """Whether trading is halted on ``time``'s day."""
        return self._halted_day is not None and self._halted_day == self._day(time)


class RedactingFilter(logging.Filter):
    """Masks secrets (passwords, tokens, account ids if given) in every record it sees.

    Attach it to HANDLERS (``install``): a filter on a logger does not see records that
    propagate from its child loggers, so it would miss most of them. The record's message is
    formatted with its args first and masked whole, so a secret passed as an argument, or split
    across the format string and an argument, is masked too; so is exception text.
    """

    def __init__(self, secrets: Iterable[str] = (), mask: str = "***") -> None:
        super().__init__()
        self.mask = mask
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Mask ``secret`` from now on (e.g. the account id, once the connection reports it)."""
        if secret and str(secret) not in self._secrets:  # "" would mask between every char
            self._secrets.append(str(secret))
            self._secrets.sort(key=len, reverse=True)  # a longer secret before its substrings

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by the mask."""
        for secret in self._secrets:
            text = text.replace(secret, self.mask)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: mask everything it carries
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def install(self, logger: logging.Logger | None = None) -> RedactingFilter:
        """Add this filter to every handler of ``logger`` (the root logger by default)."""
        for handler in (logger or logging.getLogger()).handlers:
            if self not in handler.filters:
                handler.addFilter(self)
        return self
