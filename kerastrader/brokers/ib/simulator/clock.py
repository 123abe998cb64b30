"""Time as the TWS API writes it: request times in, bar and execution times out (UTC)."""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)

DURATION_UNITS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 31 * 86_400, "Y": 366 * 86_400}


def ib_time(epoch: int) -> str:
    """Epoch seconds as ``yyyymmdd hh:mm:ss`` in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y%m%d %H:%M:%S")


def parse_end(text: str) -> int:
    """reqHistoricalData's endDateTime (``yyyymmdd hh:mm:ss [tz]`` or ``yyyymmdd-hh:mm:ss``).

    The simulator's clock is UTC; a time zone name other than UTC/GMT is ignored.
    """
    text = text.strip().replace("-", " ")
    parts = text.split()
    stamp = " ".join(parts[:2]) if len(parts) >= 2 else parts[0]
    fmt = "%Y%m%d %H:%M:%S" if " " in stamp else "%Y%m%d"
    when = dt.datetime.strptime(stamp, fmt).replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def parse_exec_time(text: str) -> dt.datetime | None:
    """ExecutionFilter.time (``yyyymmdd-hh:mm:ss`` or ``yyyymmdd hh:mm:ss``), read as UTC."""
    if not text:
        return None
    try:
        return dt.datetime.fromtimestamp(parse_end(text), dt.UTC)
    except ValueError:
        log.warning("reqExecutions: unreadable time filter %r ignored", text)
        return None


def duration_seconds(text: str) -> int:
    """IB's durationStr (``"60 D"``, ``"1 Y"``) in calendar seconds, generously rounded up."""
    number, _, unit = text.strip().partition(" ")
    try:
        return int(number) * DURATION_UNITS[unit.strip().upper()[:1]]
    except (ValueError, KeyError):
        log.warning("durationStr %r not understood: sending all history", text)
        return 10**12
