"""Days without bars are reported, with an exchange calendar telling holidays from holes."""

from __future__ import annotations

import pytest

from kerastrader.errors import ConfigError
from kerastrader.feeds.gaps import gap_report


@pytest.fixture
def orcl_2014(orcl):
    return orcl.loc["2014-01-01":"2014-12-31"].copy()


def test_real_2014_bars_miss_no_nyse_session(orcl_2014):
    pytest.importorskip("exchange_calendars")
    assert gap_report(orcl_2014, "XNYS") == []


def test_a_missing_session_is_named(orcl_2014):
    pytest.importorskip("exchange_calendars")
    holed = orcl_2014.drop(orcl_2014.loc["2014-03-12"].name)
    assert gap_report(holed, "XNYS") == ["1 XNYS session(s) without a bar: 2014-03-12"]


def test_without_a_calendar_holidays_count_as_weekdays_without_a_bar(orcl_2014):
    notes = gap_report(orcl_2014)
    assert len(notes) == 1 and notes[0].startswith("8 weekday(s) without a bar")
    assert "2014-01-20" in notes[0]  # Martin Luther King Day


def test_an_unknown_calendar_is_a_config_error(orcl_2014):
    pytest.importorskip("exchange_calendars")
    with pytest.raises(ConfigError, match="data.calendar = 'NOPE'"):
        gap_report(orcl_2014, "NOPE")
