"""The CSV loader's fast path gives the slow path's bars and errors: ISO dates through Arrow's
strict cast, the file parsed by pandas from its path (in parallel chunks when it is large)
while a second thread reads, checks, hashes and counts it."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest

import kerastrader.feeds.loader as loader
from kerastrader.errors import DataError
from kerastrader.feeds.loader import _iso_dates, file_sha256, load_csv

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
ROWS = 130_000  # about 7 MB: past the 5 MB from which pandas 3.1 parses a path in parallel


def column(values: list[str]) -> pd.Series:
    """A date column as pandas' C parser gives it (Arrow-backed strings)."""
    text = "Date,x\n" + "".join(f"{v},1\n" for v in values)
    return pd.read_csv(io.StringIO(text), dtype={"Date": "str"})["Date"]


@pytest.mark.parametrize(
    "values",
    [
        ["2014-01-13", "2014-01-14", "2016-02-29"],
        ["2014-01-13 09:30:00", "2014-01-13 09:31:00"],
        ["2014-01-13 09:30", "2014-01-13T09:31"],
        ["2014-01-13 09", "2014-01-13 10"],
        ["2014-01-13 09:30:00.5", "2014-01-13 09:30:00.123456"],
        ["1677-09-21", "2262-04-12", "1900-03-01"],
    ],
)
def test_arrow_iso_dates_equal_pandas_iso8601(values):
    got = _iso_dates(column(values))
    want = pd.DatetimeIndex(pd.to_datetime(pd.Series(values), format="ISO8601"))
    assert got is not None
    assert got.dtype == want.dtype  # the same unit as pandas' own parse
    assert (got == want).all()


@pytest.mark.parametrize(
    "value",
    [
        " 2014-01-13",  # spaces: the pandas path strips them
        "2014-01-13 ",
        "2014-1-13",
        "20140113",
        "2014-02-30",
        "2014-13-01",
        "2014-01-13 24:00:00",
        "2014-01-13 09:30:00Z",
        "2014-01-13 09:30:00+01:00",
        "2014-01-13 09:30:00.123456789",  # finer than microseconds
        "",
        "13-01-2014",
    ],
)
def test_anything_arrow_does_not_read_exactly_goes_to_the_pandas_path(value):
    assert _iso_dates(column(["2014-01-10", value])) is None


def stamp(i: int) -> str:
    """The timestamp of data row i in :func:`big_file`."""
    return (pd.Timestamp("2010-01-04 09:30") + pd.Timedelta(minutes=i)).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def big_file(tmp_path, change: dict[int, str] | None = None, name: str = "big.csv"):
    """ROWS one-minute bars; ``change`` replaces data rows by index (0 is the file's line 2)."""
    index = pd.date_range("2010-01-04 09:30", periods=ROWS, freq="min")
    rng = np.random.default_rng(0)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0005, ROWS))), 4)
    stamps = index.strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        f"{t},{c},{c + 0.01:.4f},{c - 0.01:.4f},{c},{c},100"
        for t, c in zip(stamps, close, strict=True)
    ]
    for i, row in (change or {}).items():
        rows[i] = row
    path = tmp_path / name
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def error(path, **options) -> str:
    with pytest.raises(DataError) as info:
        load_csv(path, **options)
    return str(info.value)


def test_a_large_file_loads_as_the_pandas_date_path_does(tmp_path):
    path = big_file(tmp_path)
    fast = load_csv(path)
    slow = load_csv(path, date_format="%Y-%m-%d %H:%M:%S")  # a pattern: pandas parses dates
    pd.testing.assert_frame_equal(fast, slow)
    assert len(fast) == ROWS and fast.attrs["sha256"] == file_sha256(path)


def test_errors_in_a_large_file_name_the_file_line(tmp_path):
    late = ROWS - 7  # a data row near the end: in the last of pandas' parallel chunks
    line = late + 2
    bad_field = big_file(tmp_path, {late: "2010-04-03 12:00:00,1,1,1,1,1,1,9"}, "fields.csv")
    assert error(bad_field).startswith(
        f"{bad_field}, row {line}: row has 8 fields but the header names 7"
    )
    bad_date = big_file(tmp_path, {late: "2010-02-30 12:00:00,1,1,1,1,1,1"}, "date.csv")
    assert error(bad_date) == (
        f"{bad_date}, row {line}: unparsable date '2010-02-30 12:00:00' (data.date_format = 'iso')"
    )
    empty = big_file(tmp_path, {late: f"{stamp(late)},1,1,1,,1,1"}, "empty.csv")
    assert error(empty).startswith(f"{empty}, row {line}: close is empty or NaN")


def test_a_blank_line_in_a_large_plain_file_shifts_the_named_line(tmp_path):
    late = ROWS - 7
    path = big_file(tmp_path, {100: "", late: "2010-02-30 12:00:00,1,1,1,1,1,1"})
    # Line 102 is blank and skipped; the bad date is on the file line it stands on.
    with pytest.raises(DataError, match=rf"row {late + 2}: unparsable date"):
        load_csv(path)


def test_a_file_that_changes_while_read_is_parsed_from_the_bytes_that_were_hashed(
    tmp_path, monkeypatch
):
    path = big_file(tmp_path)
    expected = load_csv(path)
    states = iter([(1, 1, 1), (2, 2, 2)])  # differs between the start and the end of the read
    monkeypatch.setattr(loader, "_file_state", lambda p: next(states))
    parsed = []
    real = pd.read_csv

    def spy(src, *args, **kwargs):
        parsed.append(type(src).__name__)
        return real(src, *args, **kwargs)

    monkeypatch.setattr(loader.pd, "read_csv", spy)
    got = load_csv(path)
    pd.testing.assert_frame_equal(got, expected)
    assert parsed[-1] == "BytesIO" and got.attrs["sha256"] == file_sha256(path)


def test_the_files_own_problems_are_named_before_the_headers(tmp_path):
    """As when the bytes were checked before parsing: not UTF-8 wins over a missing column."""
    path = tmp_path / "latin.csv"
    path.write_bytes(b"Date,Open,High\n2014-01-02,1,1\n2014-01-03,\xe9,1\n")
    assert error(path) == f"{path}, row 3: not UTF-8 text"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"Date,Open\n\x00\x01\x02,\xff\n")
    assert error(binary) == f"{binary}: not a text CSV file (binary content)"


def test_a_quote_past_the_head_sends_the_file_the_exact_way(tmp_path):
    """The head (64 KB) looked plain; a quoted cell near the end is still read as the csv
    module reads it, and an error after it names its own line."""
    late = ROWS - 7
    quoted = f'{stamp(late)},"1","1","1","1","1",1'
    path = big_file(tmp_path, {late: quoted}, "quoted.csv")
    bars = load_csv(path)
    assert len(bars) == ROWS and bars["close"].iloc[late] == 1.0
    broken = big_file(tmp_path, {late: quoted, late + 3: "x,1"}, "quoted-broken.csv")
    assert error(broken).startswith(f"{broken}, row {late + 5}: row has 2 fields")


def test_a_stray_carriage_return_past_the_head_is_found(tmp_path):
    late = ROWS - 7
    path = big_file(tmp_path, {late: f"{stamp(late)},1,1,1,1\r,1,1"}, "cr.csv")
    with pytest.raises(DataError, match=rf"row {late + 2}: "):
        load_csv(path)


def test_blank_lines_and_empty_cells_in_a_large_file_keep_rows_and_lines(tmp_path):
    """A blank line is no bar; a bar with an empty close is repaired by ffill; a later error
    names the file line across both."""
    late = ROWS - 7
    path = big_file(tmp_path, {50: "", 60: f"{stamp(60)},1,1,1,,1,1"}, "holes.csv")
    bars = load_csv(path, missing="ffill")
    assert len(bars) == ROWS - 1  # the blank line is gone, the empty cell repaired
    row60 = bars.index.get_loc(pd.Timestamp(stamp(60)))
    assert bars["close"].iloc[row60] == bars["close"].iloc[row60 - 1]
    assert bars["volume"].iloc[row60] == 0.0
    broken = big_file(
        tmp_path,
        {50: "", 60: f"{stamp(60)},1,1,1,,1,1", late: "2010-02-30 12:00:00,1,1,1,1,1,1"},
        "holes-broken.csv",
    )
    assert error(broken, missing="ffill").startswith(f"{broken}, row {late + 2}: unparsable date")


def test_text_that_is_not_utf8_past_the_first_block_names_its_line(tmp_path):
    late = ROWS - 7  # several MB into the file: well past the scan's first 1 MB block
    path = big_file(tmp_path, {late: f"{stamp(late)},1,1,1,1,1,1"}, "latin-late.csv")
    data = path.read_bytes().replace(
        f"{stamp(late)},1,1".encode(), f"{stamp(late)},\xe9,1".encode("latin-1")
    )
    path.write_bytes(data)
    assert error(path) == f"{path}, row {late + 2}: not UTF-8 text"


def test_a_large_file_with_a_byte_order_mark_loads_like_one_without(tmp_path):
    path = big_file(tmp_path)
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    got, want = load_csv(marked), load_csv(path)
    pd.testing.assert_frame_equal(got, want, check_like=False, check_flags=False)
    assert got.attrs["sha256"] == file_sha256(marked)


@pytest.mark.parametrize("rows", [ROWS, 5])
def test_a_line_of_spaces_is_blank_and_later_rows_keep_their_lines(tmp_path, rows, monkeypatch):
    """pandas skips a line of spaces as it skips an empty one; the rows after it are still
    named by their own file lines (small files and large ones)."""
    monkeypatch.setattr(sys.modules[__name__], "ROWS", rows)
    late = rows - 2
    path = big_file(tmp_path, {1: "   ", late: "2010-02-30 12:00:00,1,1,1,1,1,1"})
    assert error(path) == (
        f"{path}, row {late + 2}: unparsable date '2010-02-30 12:00:00' (data.date_format = 'iso')"
    )
    clean = big_file(tmp_path, {1: " \t "}, "clean.csv")
    assert len(load_csv(clean)) == rows - 1
