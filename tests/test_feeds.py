"""Loading Yahoo-layout CSVs: real data loads; every kind of bad input is named by file and row."""

from __future__ import annotations

import hashlib
import logging

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.config import embedded_data_path
from kerastrader.errors import ConfigError, DataError
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv, load_csv_symbols
from kerastrader.feeds.validate import validate_bars
from tests.conftest import random_walk_bars, shared_file

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
GOOD = [
    "2014-01-02,10.0,10.5,9.8,10.2,9.9,1000",
    "2014-01-03,10.2,10.9,10.1,10.8,10.5,1200",
    "2014-01-06,10.8,11.0,10.4,10.5,10.2,900",
    "2014-01-07,10.5,10.7,10.3,10.6,10.3,1100",
]


def write(tmp_path, rows, header=HEADER, name="bars.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def bad(tmp_path, row_index: int, replacement: str, header=HEADER) -> tuple[str, str]:
    """The GOOD file with data row ``row_index`` replaced; returns (file, error message)."""
    rows = list(GOOD)
    rows[row_index] = replacement
    path = write(tmp_path, rows, header)
    with pytest.raises(DataError) as info:
        load_csv(path)
    return str(path), str(info.value)


# -- good input --------------------------------------------------------------------------------


def test_embedded_orcl_file_loads_whole():
    bars = load_csv(embedded_data_path())
    assert len(bars) == 5036
    assert bars.index[0] == pd.Timestamp("1995-01-03")
    assert bars.index[-1] == pd.Timestamp("2014-12-31")
    assert list(bars.columns) == ["open", "high", "low", "close", "volume", "adj_close"]
    digest = hashlib.sha256(embedded_data_path().read_bytes()).hexdigest()
    assert bars.attrs["sha256"] == digest


def test_day_first_dates_parse_to_the_same_days_when_configured(tmp_path):
    iso = load_csv(write(tmp_path, GOOD, name="iso.csv"))
    dayfirst_rows = [f"{r[8:10]}-{r[5:7]}-{r[0:4]}{r[10:]}" for r in GOOD]
    dayfirst = load_csv(write(tmp_path, dayfirst_rows, name="df.csv"), date_format="dayfirst")
    pd.testing.assert_index_equal(dayfirst.index, iso.index)


def test_day_first_dates_read_as_iso_are_an_error_not_a_guess(tmp_path):
    rows = ["13-01-2014,10.0,10.5,9.8,10.2,9.9,1000"]
    path = write(tmp_path, rows)
    with pytest.raises(DataError, match=r"row 2: unparsable date '13-01-2014'"):
        load_csv(path)


def test_explicit_strftime_pattern(tmp_path):
    path = write(tmp_path, ["02.01.2014,10.0,10.5,9.8,10.2,9.9,1000"])
    assert load_csv(path, date_format="%d.%m.%Y").index[0] == pd.Timestamp("2014-01-02")


def test_unknown_date_format_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.date_format"):
        load_csv(write(tmp_path, GOOD), date_format="american")


def test_adjust_scales_prices_by_the_adj_close_ratio(tmp_path):
    raw = load_csv(write(tmp_path, GOOD))
    adj = load_csv(write(tmp_path, GOOD), adjust=True)
    ratio = raw["adj_close"] / raw["close"]
    np.testing.assert_allclose(adj["close"], raw["adj_close"])
    for col in ("open", "high", "low"):
        np.testing.assert_allclose(adj[col], raw[col] * ratio)
    np.testing.assert_array_equal(adj["volume"], raw["volume"])


def test_lower_case_layout_in_another_order_loads():
    bars = load_csv(shared_file("nifty50-2007-2024.csv"))
    assert len(bars) == 4238 and "adj_close" not in bars.columns


def test_interpolate_fills_an_interior_gap_linearly_and_logs_the_count(tmp_path, caplog):
    rows = list(GOOD)
    rows[1] = "2014-01-03,10.2,10.9,10.1,,10.5,1200"
    with caplog.at_level(logging.WARNING):
        bars = load_csv(write(tmp_path, rows), missing="interpolate")
    assert bars["close"].iloc[1] == pytest.approx((10.2 + 10.5) / 2)
    assert "filled 1 empty or NaN cell(s)" in caplog.text


def test_drop_removes_the_row_and_logs_the_count(tmp_path, caplog):
    rows = list(GOOD)
    rows[2] = "2014-01-06,10.8,NaN,10.4,10.5,10.2,900"
    with caplog.at_level(logging.WARNING):
        bars = load_csv(write(tmp_path, rows), missing="drop")
    assert len(bars) == 3 and pd.Timestamp("2014-01-06") not in bars.index
    assert "dropped 1 row(s)" in caplog.text


def test_interpolate_cannot_fill_the_first_row(tmp_path):
    rows = list(GOOD)
    rows[0] = "2014-01-02,,10.5,9.8,10.2,9.9,1000"
    with pytest.raises(DataError, match=r"row 2: open is empty or NaN at the start or end"):
        load_csv(write(tmp_path, rows), missing="interpolate")


# -- one test per bad-input kind: file, row and problem in one line ------------------------------


def test_missing_column(tmp_path):
    path = write(tmp_path, [r.rsplit(",", 1)[0] for r in GOOD], header=HEADER.rsplit(",", 1)[0])
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert str(info.value).startswith(f"{path}, row 1: missing column 'Volume'")


def test_misspelt_column_suggests_the_near_miss(tmp_path):
    path = write(tmp_path, GOOD, header=HEADER.replace("Close,", "Clsoe,", 1))
    with pytest.raises(DataError, match=r"row 1: missing column 'Close'.*found 'Clsoe'"):
        load_csv(path)


def test_unparsable_date(tmp_path):
    path, msg = bad(tmp_path, 2, "2014-01-32,10.8,11.0,10.4,10.5,10.2,900")
    assert msg == f"{path}, row 4: unparsable date '2014-01-32' (data.date_format = 'iso')"


def test_duplicate_timestamp(tmp_path):
    path, msg = bad(tmp_path, 2, "2014-01-03,10.8,11.0,10.4,10.5,10.2,900")
    assert msg.startswith(f"{path}, row 4: duplicate timestamp")


def test_out_of_order_timestamp(tmp_path):
    path, msg = bad(tmp_path, 2, "2014-01-01,10.8,11.0,10.4,10.5,10.2,900")
    assert msg.startswith(f"{path}, row 4: timestamp out of order")


def test_empty_cell(tmp_path):
    path, msg = bad(tmp_path, 1, "2014-01-03,10.2,10.9,10.1,,10.5,1200")
    assert msg.startswith(f"{path}, row 3: close is empty or NaN")


def test_nan_cell(tmp_path):
    path, msg = bad(tmp_path, 3, "2014-01-07,10.5,10.7,10.3,10.6,10.3,NaN")
    assert msg.startswith(f"{path}, row 5: volume is empty or NaN")


def test_non_numeric_cell(tmp_path):
    path, msg = bad(tmp_path, 0, "2014-01-02,10.0,abc,9.8,10.2,9.9,1000")
    assert msg == f"{path}, row 2: high is not a number: 'abc'"


def test_zero_price(tmp_path):
    path, msg = bad(tmp_path, 1, "2014-01-03,0,10.9,0,10.8,10.5,1200")
    assert msg == f"{path}, row 3: open must be positive, got 0"


def test_negative_price(tmp_path):
    path, msg = bad(tmp_path, 1, "2014-01-03,10.2,10.9,10.1,-10.8,10.5,1200")
    assert msg == f"{path}, row 3: close must be positive, got -10.8"


def test_high_below_low(tmp_path):
    path, msg = bad(tmp_path, 2, "2014-01-06,10.8,10.4,11.0,10.5,10.2,900")
    assert msg == f"{path}, row 4: High (10.4) is below Low (11)"


def test_open_above_high(tmp_path):
    path, msg = bad(tmp_path, 3, "2014-01-07,10.9,10.7,10.3,10.6,10.3,1100")
    assert msg == f"{path}, row 5: Open (10.9) is outside [Low, High] = [10.3, 10.7]"


def test_close_below_low(tmp_path):
    path, msg = bad(tmp_path, 3, "2014-01-07,10.5,10.7,10.3,10.2,10.3,1100")
    assert msg == f"{path}, row 5: Close (10.2) is outside [Low, High] = [10.3, 10.7]"


def test_row_with_more_fields_than_the_header(tmp_path):
    path, msg = bad(tmp_path, 1, "2014-01-03,09:30,10.2,10.9,10.1,10.8,10.5,1200")
    assert msg.startswith(f"{path}, row 3: row has 8 fields but the header names 7")


def test_real_malformed_intraday_file_names_the_extra_time_column():
    path = shared_file("2006-01-02-volume-min-001.csv")
    with pytest.raises(DataError, match=r"row 2: row has 8 fields but the header names 7"):
        load_csv(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty.csv: empty file"):
        load_csv(path)


def test_header_only_file(tmp_path):
    path = write(tmp_path, [])
    with pytest.raises(DataError, match=r"bars.csv, row 2: no bars"):
        load_csv(path)


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        load_csv(tmp_path / "nope.csv")


def test_binary_file(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"garbage.csv: not a text CSV file"):
        load_csv(path)


def test_a_user_error_never_changes_the_file(tmp_path):
    path, _ = bad(tmp_path, 2, "2014-01-06,10.8,10.4,11.0,10.5,10.2,900")
    before = open(path).read()
    with pytest.raises(DataError):
        load_csv(path)
    assert open(path).read() == before


# -- frames and feeds ------------------------------------------------------------------------


def test_generated_valid_bars_pass_validation_unchanged():
    bars = random_walk_bars(500, seed=7)
    assert validate_bars(bars, "generated") is bars


def test_frame_validation_reports_the_position_without_line_numbers():
    bars = random_walk_bars(50, seed=7)
    bars.iloc[17, bars.columns.get_loc("low")] = bars["high"].iloc[17] * 1.1
    with pytest.raises(DataError, match=r"^generated, row 17: High"):
        validate_bars(bars, "generated")


def test_feed_carries_the_name_and_the_bars_into_backtrader(tmp_path):
    bars = load_csv(write(tmp_path, GOOD))
    seen = []

    class Record(bt.Strategy):
        def next(self):
            seen.append((self.data._name, self.data.datetime.date(0), self.data.close[0]))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "ORCL"))
    cerebro.addstrategy(Record)
    cerebro.run()
    assert [s[0] for s in seen] == ["ORCL"] * 4
    assert [s[1] for s in seen] == [d.date() for d in bars.index]
    assert [s[2] for s in seen] == list(bars["close"])


def test_a_separate_time_column_is_joined_to_the_date(tmp_path):
    rows = ["2006-01-02,09:05:00,10,11,9,10.5,0", "2006-01-02,09:10:00,10.5,11,10,10.8,0"]
    bars = load_csv(write(tmp_path, rows, header="Date,Time,Open,High,Low,Close,Volume"))
    assert list(bars.index) == [pd.Timestamp("2006-01-02 09:05"), pd.Timestamp("2006-01-02 09:10")]


def test_repeated_dates_without_a_time_column_say_what_is_missing(tmp_path):
    rows = ["2006-01-02 ,10,11,9,10.5,0", "2006-01-02,10.5,11,10,10.8,0"]
    path = write(tmp_path, rows, header="Date,Open,High,Low,Close,Volume")
    with pytest.raises(DataError, match=r"row 3: duplicate timestamp.*needs its time column"):
        load_csv(path)


def test_the_real_five_minute_file_loads_with_its_time_column():
    bars = load_csv(shared_file("2006-min-005.csv"))
    assert bars.index[0] == pd.Timestamp("2006-01-02 09:05")
    assert len(bars) == 2142


def test_the_malformed_minute_file_loads_when_its_columns_are_named():
    path = shared_file("2006-01-02-volume-min-001.csv")
    names = ["Date", "Time", "Open", "High", "Low", "Close", "Volume", "OpenInterest"]
    bars = load_csv(path, names=names)
    assert bars.index[0] == pd.Timestamp("2006-01-02 09:01")
    assert bars["close"].iloc[0] == 3599.0 and bars["volume"].iloc[0] == 5699


def test_a_generic_layout_loads_through_a_column_mapping(tmp_path):
    path = write(
        tmp_path,
        ["02/01/2014;x,10.0,10.5,9.8,10.2,1000", "03/01/2014;x,10.2,10.9,10.1,10.8,1200"],
        header="when,o,h,l,last,qty",
    )
    mapping = {
        "date": "when",
        "open": "o",
        "high": "h",
        "low": "l",
        "close": "last",
        "volume": "qty",
    }
    with pytest.raises(DataError, match="row 2: unparsable date"):
        load_csv(path, columns=mapping, date_format="%d/%m/%Y")
    path.write_text(path.read_text().replace(";x", ""))
    bars = load_csv(path, columns=mapping, date_format="%d/%m/%Y")
    assert bars.index[1] == pd.Timestamp("2014-01-03") and bars["close"].iloc[1] == 10.8


def test_a_mapping_to_a_column_the_file_lacks_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data.columns.close = 'Last', but the header is"):
        load_csv(write(tmp_path, GOOD), columns={"close": "Last"})


def test_exchange_timezone_timestamps_are_kept_in_utc(tmp_path):
    rows = ["2014-01-02,09:30:00,10,11,9,10.5,5", "2014-07-01,09:30:00,10.5,11,10,10.8,5"]
    path = write(tmp_path, rows, header="Date,Time,Open,High,Low,Close,Volume")
    bars = load_csv(path, timezone="America/New_York")
    assert list(bars.index) == [pd.Timestamp("2014-01-02 14:30"), pd.Timestamp("2014-07-01 13:30")]


def test_long_format_file_becomes_one_validated_frame_per_symbol(tmp_path):
    rows = [
        "AAA,2014-01-02,10,11,9,10.5,5",
        "BBB,2014-01-02,20,21,19,20.5,5",
        "AAA,2014-01-03,10.5,11,10,10.8,5",
        "BBB,2014-01-03,20.5,21,20,20.8,5",
    ]
    path = write(tmp_path, rows, header="Symbol,Date,Open,High,Low,Close,Volume")
    frames = load_csv_symbols(path)
    assert sorted(frames) == ["AAA", "BBB"]
    assert list(frames["BBB"]["close"]) == [20.5, 20.8]
    assert load_csv(path, symbol="AAA")["close"].iloc[-1] == 10.8
    with pytest.raises(DataError, match="holds 2 symbols.*choose one"):
        load_csv(path)


def test_a_bad_row_in_a_long_file_names_the_symbol_and_line(tmp_path):
    rows = ["AAA,2014-01-02,10,11,9,10.5,5", "BBB,2014-01-02,20,19,21,20.5,5"]
    path = write(tmp_path, rows, header="Symbol,Date,Open,High,Low,Close,Volume")
    with pytest.raises(DataError, match=r"\[BBB\], row 3: High \(19\) is below Low"):
        load_csv_symbols(path)
