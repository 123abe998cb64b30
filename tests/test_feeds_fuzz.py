"""Malformed CSVs either load correctly or stop with our own error naming the file (and row)."""

from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastrader.errors import DataError, KerastraderError
from kerastrader.feeds.loader import load_csv
from kerastrader.feeds.validate import validate_bars

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
GOOD = [
    "2014-01-02,10.0,10.5,9.8,10.2,9.9,1000",
    "2014-01-03,10.2,10.9,10.1,10.8,10.5,1200",
    "2014-01-06,10.8,11.0,10.4,10.5,10.2,900",
    "2014-01-07,10.5,10.7,10.3,10.6,10.3,1100",
]

cells = st.one_of(
    st.sampled_from(
        [
            "",
            "NaN",
            "null",
            "1e308",
            "1e400",
            "-0",
            "0",
            "abc",
            '"',
            '""',
            "10.5",
            "13-01-2014",
            "2014/01/02",
            "2014-02-30",
            "\t",
            " 10.1 ",
            "1,5",
        ]
    ),
    st.text(alphabet=string.printable, max_size=8),
)


@st.composite
def mangled(draw) -> bytes:
    """The good file with a few realistic kinds of damage applied."""
    rows = [r.split(",") for r in GOOD]
    for _ in range(draw(st.integers(0, 4))):
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, 6))
        rows[r][c] = draw(cells)
    lines = [HEADER, *(",".join(r) for r in rows)]
    damage = draw(
        st.sampled_from(
            [
                "none",
                "truncate",
                "semicolons",
                "bom",
                "crlf",
                "drop_field",
                "extra_field",
                "binary",
                "empty",
                "quote",
            ]
        )
    )
    if damage == "truncate":
        text = "\n".join(lines)
        lines = [text[: draw(st.integers(0, len(text)))]]
    elif damage == "semicolons":
        lines = [line.replace(",", ";") for line in lines]
    elif damage == "drop_field":
        i = draw(st.integers(1, len(lines) - 1))
        lines[i] = lines[i].rsplit(",", 1)[0]
    elif damage == "extra_field":
        i = draw(st.integers(1, len(lines) - 1))
        lines[i] += ",42"
    elif damage == "quote":
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i].replace(",", ',"', 1)
    data = "\n".join(lines).encode()
    if damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif damage == "binary":
        data = draw(st.binary(min_size=1, max_size=200))
    elif damage == "empty":
        data = b""
    return data


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mangled())
def test_malformed_csv_loads_valid_bars_or_raises_our_error(tmp_path, data):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        bars = load_csv(path)
    except DataError as exc:
        assert str(exc).startswith(str(path))
        return
    except KerastraderError:
        return
    # Whatever loaded is valid bars.
    validate_bars(bars, "reloaded")
    assert np.isfinite(bars[["open", "high", "low", "close", "volume"]].to_numpy()).all()


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([HEADER, *GOOD]).encode())
    assert len(load_csv(path)) == 4


def test_windows_line_endings_load(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes("\r\n".join([HEADER, *GOOD]).encode() + b"\r\n")
    assert len(load_csv(path)) == 4


def test_semicolon_delimited_file_says_the_columns_are_missing(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("\n".join(line.replace(",", ";") for line in [HEADER, *GOOD]))
    with pytest.raises(DataError, match="row 1: missing column"):
        load_csv(path)
