"""CSV loader behaviour not already pinned by test_feeds.py: dates never guessed, exact adjustment,
the missing-cell policies at their edges, and the remaining kinds of unreadable input.

Every error is asserted as the whole line a user sees: file, row (the file's line number) and
problem.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from kerastrader.config import embedded_data_path
from kerastrader.errors import ConfigError, DataError
from kerastrader.feeds.loader import file_sha256, load_csv
from kerastrader.feeds.validate import validate_bars
from tests.conftest import shared_file

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
GOOD = [
    "2014-01-02,10.0,10.5,9.8,10.2,9.9,1000",
    "2014-01-03,10.2,10.9,10.1,10.8,10.5,1200",
    "2014-01-06,10.8,11.0,10.4,10.5,10.2,900",
    "2014-01-07,10.5,10.7,10.3,10.6,10.3,1100",
    "2014-01-08,10.6,10.8,10.2,10.4,10.1,1000",
]


def write(tmp_path, rows, header=HEADER, name="bars.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def replaced(tmp_path, changes: dict[int, str], header=HEADER):
    """The GOOD file with data rows replaced by index (0 is the file's line 2)."""
    rows = list(GOOD)
    for i, row in changes.items():
        rows[i] = row
    return write(tmp_path, rows, header)


def error(path, **options) -> str:
    with pytest.raises(DataError) as info:
        load_csv(path, **options)
    return str(info.value)


# -- dates: explicit formats only ----------------------------------------------------------------


def test_an_iso_file_read_as_day_first_is_an_error_not_a_guess(tmp_path):
    path = write(tmp_path, GOOD)
    assert error(path, date_format="dayfirst") == (
        f"{path}, row 2: unparsable date '2014-01-02' (data.date_format = 'dayfirst')"
    )


def test_day_first_with_slashes_parses_to_the_iso_days(tmp_path):
    iso = load_csv(write(tmp_path, GOOD, name="iso.csv"))
    rows = [f"{r[8:10]}/{r[5:7]}/{r[0:4]}{r[10:]}" for r in GOOD]
    slashed = load_csv(write(tmp_path, rows, name="slashed.csv"), date_format="dayfirst")
    pd.testing.assert_index_equal(slashed.index, iso.index)
    np.testing.assert_array_equal(slashed.to_numpy(), iso.to_numpy())


def test_iso_dates_may_carry_a_time(tmp_path):
    rows = ["2014-01-02 15:30:00" + GOOD[0][10:], "2014-01-02 15:35:00" + GOOD[1][10:]]
    bars = load_csv(write(tmp_path, rows))
    assert list(bars.index) == [pd.Timestamp("2014-01-02 15:30"), pd.Timestamp("2014-01-02 15:35")]


def test_an_empty_date_is_an_error_whatever_the_missing_policy(tmp_path):
    path = replaced(tmp_path, {2: "," + GOOD[2].split(",", 1)[1]})
    for policy in ("error", "interpolate", "drop"):
        assert error(path, missing=policy) == f"{path}, row 4: empty date"


def test_unknown_missing_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.missing = 'zero'"):
        load_csv(write(tmp_path, GOOD), missing="zero")


# -- the returned frame ----------------------------------------------------------------------


def test_the_frame_has_the_canonical_shape_and_provenance(tmp_path):
    path = write(tmp_path, GOOD)
    bars = load_csv(path)
    assert isinstance(bars.index, pd.DatetimeIndex) and bars.index.tz is None
    assert bars.index.name == "datetime" and bars.index.is_monotonic_increasing
    assert list(bars.columns) == ["open", "high", "low", "close", "volume", "adj_close"]
    assert (bars.dtypes == np.float64).all()
    assert bars.attrs["source"] == str(path) and bars.attrs["sha256"] == file_sha256(path)


def test_a_file_without_adj_close_loads_without_it(tmp_path):
    header = "Date,Open,High,Low,Close,Volume"
    rows = [",".join(r.split(",")[:5] + r.split(",")[6:]) for r in GOOD]
    bars = load_csv(write(tmp_path, rows, header=header))
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]


def test_the_real_lower_case_file_keeps_its_values_whatever_the_column_order():
    path = shared_file("nifty50-2007-2024.csv")
    raw = pd.read_csv(path)
    bars = load_csv(path)
    assert bars.index[0] == pd.Timestamp("2007-09-17")
    assert bars.index[-1] == pd.Timestamp("2024-12-31")
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(bars[col].to_numpy(), raw[col].to_numpy(dtype=float))


# -- adjustment ------------------------------------------------------------------------------


def test_adjusted_close_is_exactly_adj_close_on_real_data():
    raw = load_csv(embedded_data_path())
    adj = load_csv(embedded_data_path(), adjust=True)
    np.testing.assert_array_equal(adj["close"].to_numpy(), raw["adj_close"].to_numpy())
    ratio = raw["adj_close"] / raw["close"]
    for col in ("open", "high", "low"):
        np.testing.assert_allclose(adj[col], raw[col] * ratio, rtol=1e-15)
    np.testing.assert_array_equal(adj["volume"].to_numpy(), raw["volume"].to_numpy())


@pytest.mark.parametrize("name", ["spy-daily.csv", "agg-daily.csv", "xlf-daily.csv"])
def test_adjusted_real_bars_still_satisfy_the_bar_invariants(name):
    # These files have bars where close * (adj / close) and Adj Close differ by an ulp at the
    # bar's High or Low; adjustment must not turn a valid bar into an invalid one.
    adj = load_csv(shared_file(name), adjust=True)
    assert validate_bars(adj, name) is adj


def test_adjust_without_an_adj_close_column_names_what_is_missing(tmp_path):
    header = "Date,Open,High,Low,Close,Volume"
    path = write(tmp_path, [",".join(r.split(",")[:5] + r.split(",")[6:]) for r in GOOD], header)
    assert error(path, adjust=True).startswith(
        f"{path}, row 1: missing column 'Adj Close' (needed by adjust = true)"
    )


# -- missing cells ---------------------------------------------------------------------------


def test_interpolate_fills_a_two_cell_gap_on_the_line_between_its_neighbours(tmp_path, caplog):
    path = replaced(
        tmp_path,
        {
            1: "2014-01-03,10.2,10.9,10.1,,10.5,1200",
            2: "2014-01-06,10.8,11.0,10.4,,10.2,900",
        },
    )
    with caplog.at_level(logging.INFO, logger="kerastrader.feeds"):
        bars = load_csv(path, missing="interpolate")
    # Neighbours 10.2 (line 2) and 10.6 (line 5): one third and two thirds of the way.
    expected = np.array([10.2, 10.2 + (10.6 - 10.2) / 3, 10.2 + 2 * (10.6 - 10.2) / 3, 10.6])
    np.testing.assert_allclose(bars["close"].to_numpy()[:4], expected, rtol=0, atol=1e-12)
    assert [r.name for r in caplog.records] == ["kerastrader.feeds.loader"]
    assert "filled 2 empty or NaN cell(s)" in caplog.records[0].getMessage()


def test_interpolate_cannot_fill_the_last_row(tmp_path):
    path = replaced(tmp_path, {4: "2014-01-08,10.6,10.8,10.2,10.4,10.1,"})
    assert error(path, missing="interpolate").startswith(
        f"{path}, row 6: volume is empty or NaN at the start or end of the file"
    )


def test_drop_counts_rows_not_cells(tmp_path, caplog):
    path = replaced(
        tmp_path,
        {1: "2014-01-03,,,10.1,10.8,10.5,1200", 3: "2014-01-07,10.5,10.7,10.3,null,10.3,1100"},
    )
    with caplog.at_level(logging.INFO, logger="kerastrader.feeds"):
        bars = load_csv(path, missing="drop")
    assert list(bars.index.day) == [2, 6, 8]
    assert "dropped 2 row(s)" in caplog.text
    assert bars.attrs["notes"] == ["dropped 2 row(s) with empty or NaN cells"]


def test_a_clean_file_logs_nothing_under_either_policy(tmp_path, caplog):
    path = write(tmp_path, GOOD)
    with caplog.at_level(logging.DEBUG, logger="kerastrader.feeds"):
        load_csv(path, missing="interpolate")
        load_csv(path, missing="drop")
    assert caplog.records == []


# -- remaining bad-input kinds ---------------------------------------------------------------


def test_null_cell(tmp_path):
    path = replaced(tmp_path, {1: "2014-01-03,10.2,null,10.1,10.8,10.5,1200"})
    assert error(path).startswith(f"{path}, row 3: high is empty or NaN")


def test_misspelt_column_with_a_trailing_space_is_named_not_accepted(tmp_path):
    path = write(tmp_path, GOOD, header=HEADER.replace("Close,Adj", "close ,Adj"))
    assert error(path).startswith(
        f"{path}, row 1: missing column 'Close' (found 'close ': misspelt?)"
    )


def test_misspelt_lower_case_column_is_named(tmp_path):
    path = write(tmp_path, GOOD, header=HEADER.lower().replace("high", "hihg"))
    assert error(path).startswith(f"{path}, row 1: missing column 'High' (found 'hihg': misspelt?)")


def test_row_with_fewer_fields_than_the_header(tmp_path):
    path = replaced(tmp_path, {3: GOOD[3].rsplit(",", 1)[0]})
    assert error(path) == f"{path}, row 5: row has 6 fields but the header names 7"


def test_wrong_field_count_is_named_by_file_line_after_a_blank_line(tmp_path):
    rows = [GOOD[0], "", GOOD[1], GOOD[2] + ",42"]
    path = write(tmp_path, rows)
    assert error(path).startswith(f"{path}, row 5: row has 8 fields but the header names 7")


def test_a_directory(tmp_path):
    assert error(tmp_path) == f"{tmp_path}: is a directory, not a CSV file"


def test_a_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    text = "\n".join([HEADER, GOOD[0], "2014-01-03,10.2,10.9,10.1,10.8,10.5,1200 \xe9"])
    path.write_bytes(text.encode("latin-1"))
    assert error(path) == f"{path}, row 3: not UTF-8 text"


def test_a_huge_number_is_named_rather_than_read_as_infinity(tmp_path):
    path = replaced(tmp_path, {2: "2014-01-06,10.8,1e400,10.4,10.5,10.2,900"})
    assert error(path) == f"{path}, row 4: high is infinite or too large for a float"
