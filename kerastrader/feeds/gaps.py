"""Gaps in the bars are reported, never filled.

With an exchange calendar (the ``exchange-calendars`` package, e.g. ``XNYS``) a missing
session is a hole in the data and a bar on a closed day is suspicious; without one, weekdays
without a bar are counted (holidays and holes alike).
"""

from __future__ import annotations

import logging

import pandas as pd

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)


def _dates(missing: pd.DatetimeIndex, shown: int = 5) -> str:
    text = ", ".join(d.date().isoformat() for d in missing[:shown])
    return text + (", ..." if len(missing) > shown else "")


def gap_report(bars: pd.DataFrame, calendar: str = "") -> list[str]:
    """Notes on days without bars between the first and last bar (empty when complete)."""
    days = pd.DatetimeIndex(bars.index.normalize().unique())
    if len(days) < 2:
        return []
    first, last = days[0], days[-1]
    notes = []
    if calendar:
        try:
            import exchange_calendars as xcals
        except ImportError:
            raise ConfigError(
                "data.calendar needs the exchange-calendars package: "
                "pip install 'kerastrader[calendars]'"
            ) from None
        try:
            cal = xcals.get_calendar(calendar)
        except Exception as exc:  # an unknown name raises its own error type
            raise ConfigError(f"data.calendar = {calendar!r}: {exc}") from None
        lo, hi = max(first, cal.first_session), min(last, cal.last_session)
        sessions = pd.DatetimeIndex(cal.sessions_in_range(lo, hi)).tz_localize(None)
        missing = sessions.difference(days)
        closed = days[(days >= lo) & (days <= hi)].difference(sessions)
        if len(missing):
            notes.append(f"{len(missing)} {calendar} session(s) without a bar: {_dates(missing)}")
        if len(closed):
            notes.append(f"{len(closed)} bar day(s) when {calendar} is closed: {_dates(closed)}")
    else:
        missing = pd.bdate_range(first, last).difference(days)
        if len(missing):
            notes.append(
                f"{len(missing)} weekday(s) without a bar (holidays or holes; set data.calendar "
                f"to tell them apart): {_dates(missing)}"
            )
    # Without a calendar most of these are holidays: worth a line in the report, not a warning.
    level = logging.WARNING if calendar else logging.INFO
    for note in notes:
        log.log(level, "%s: %s", bars.attrs.get("source", "bars"), note)
    return notes
