"""Bars from a CSV file: Yahoo layout, explicit date format, validated, optionally adjusted.

Row numbers in errors are 1-based line numbers of the file (the header is line 1), so a user
can open the file at the line named. Dates are parsed with an explicit format, never guessed:
``13-01-2014`` read as ISO is an error, not a silent month/day swap.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError, DataError
from kerastrader.feeds.validate import CANONICAL, check_index, validate_bars

log = logging.getLogger(__name__)

YAHOO = {
    "Date": "datetime",
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}
REQUIRED = ("Date", "Open", "High", "Low", "Close", "Volume")
DATE_FORMATS = {"iso": "ISO8601", "dayfirst": None}
MISSING_POLICIES = ("error", "interpolate", "drop")
_NA_TEXT = {"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A", "#N/A", "-"}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(str(path), "file not found")
    if path.is_dir():
        raise DataError(str(path), "is a directory, not a CSV file")
    data = path.read_bytes()
    if b"\0" in data[:65536]:
        raise DataError(str(path), "not a text CSV file (binary content)")
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(str(path), "not UTF-8 text", line) from None
    return data.removeprefix(b"\xef\xbb\xbf")


def _line_layout(data: bytes, source: str) -> tuple[np.ndarray, int]:
    """Line numbers of the data rows (blank lines skipped) and the header's field count.

    Counts delimiters per line with numpy, so that a row with a field more or less than the
    header is named with its line number instead of being silently shifted by pandas.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if len(buf) and buf[-1] != ord("\n"):
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, dtype=int)
    lengths = ends - starts
    has_cr = (lengths > 0) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    blank = (lengths - has_cr) <= 0
    if b'"' in data or b"\r" in data.replace(b"\r\n", b""):
        # Quoted fields (which may hold commas or newlines) or stray carriage returns: let the
        # csv module split records, and name each by the file line it ends on.
        fields, lines = _csv_layout(data, source)
    else:
        commas = np.flatnonzero(buf == ord(","))
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        lines = np.flatnonzero(~blank) + 1
        fields = fields[~blank]
    if len(lines) == 0:
        raise DataError(source, "empty file (no header, no rows)")
    header_fields = int(fields[0])
    wrong = np.flatnonzero(fields[1:] != header_fields)
    if len(wrong):
        i = wrong[0] + 1
        raise DataError(
            source,
            f"row has {fields[i]} fields but the header names {header_fields}"
            + (
                " (a column the header does not name, such as a separate time column?)"
                if fields[i] > header_fields
                else ""
            ),
            int(lines[i]),
        )
    return lines[1:], header_fields


def _csv_layout(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    import csv

    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    fields, lines = [], []
    try:
        for record in reader:
            if record and any(f.strip() for f in record):
                fields.append(len(record))
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(source, f"not a well-formed CSV row ({exc})", reader.line_num + 1) from None
    return np.array(fields, dtype=int), np.array(lines, dtype=int)


def _map_columns(columns: list[str], source: str, need_adj: bool) -> dict[str, str]:
    """Header name -> canonical name. Exact Yahoo names, or the same names in any case."""
    mapping: dict[str, str] = {}
    lowered = {c.strip().lower(): c for c in columns}
    for yahoo, canonical in YAHOO.items():
        if yahoo in columns:
            mapping[yahoo] = canonical
        elif yahoo.lower() in lowered and lowered[yahoo.lower()] == lowered[yahoo.lower()].strip():
            mapping[lowered[yahoo.lower()]] = canonical
    required = list(REQUIRED) + (["Adj Close"] if need_adj else [])
    for name in required:
        if YAHOO[name] not in mapping.values():
            unused = [c for c in columns if c not in mapping]
            near = difflib.get_close_matches(name, unused, n=1, cutoff=0.6)
            near += [c for c in unused if c.strip().lower() == name.lower() and c not in near]
            hint = f" (found {near[0]!r}: misspelt?)" if near else ""
            why = " (needed by adjust = true)" if name == "Adj Close" else ""
            raise DataError(
                source,
                f"missing column {name!r}{why}{hint}; the header is {', '.join(columns)}",
                1,
            )
    return mapping


def _parse_dates(text: pd.Series, date_format: str, source: str, lines: np.ndarray) -> pd.Series:
    if date_format in DATE_FORMATS:
        fmt = DATE_FORMATS[date_format]
    elif "%" in date_format:
        fmt = date_format
    else:
        raise ConfigError(
            f"data.date_format = {date_format!r}: use 'iso', 'dayfirst' or a strftime "
            "pattern such as '%d.%m.%Y'"
        )
    stripped = text.astype("string").str.strip()
    if fmt is None:  # day-first, with - / or . between the parts
        normalised = stripped.str.replace(r"[/.]", "-", regex=True)
        dates = pd.to_datetime(normalised, format="%d-%m-%Y", errors="coerce")
        timed = dates.isna() & normalised.str.contains(" ", regex=False)
        if timed.any():
            dates[timed] = pd.to_datetime(
                normalised[timed], format="%d-%m-%Y %H:%M:%S", errors="coerce"
            )
    else:
        dates = pd.to_datetime(stripped, format=fmt, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        i = bad[0]
        shown = "" if pd.isna(text.iloc[i]) else str(text.iloc[i])
        problem = (
            "empty date"
            if not shown.strip()
            else f"unparsable date {shown!r} (data.date_format = {date_format!r})"
        )
        raise DataError(source, problem, int(lines[i]))
    return dates


def _numbers(raw: pd.DataFrame, columns: list[str], source: str, lines: np.ndarray):
    """Numeric columns, and a mask of missing cells (empty, NaN, null...).

    pandas' C parser has already turned clean columns into floats; only a column holding
    something else (text such as ``abc``) is examined cell by cell to name the first bad one.
    """
    values = {}
    missing = {}
    for col in columns:
        series = raw[col]
        if pd.api.types.is_numeric_dtype(series.dtype):
            num = series.to_numpy(dtype=np.float64)
        else:
            text = series.astype("string").str.strip()
            coerced = pd.to_numeric(text, errors="coerce")
            is_na = (series.isna() | text.isin(_NA_TEXT)).to_numpy(dtype=bool)
            bad = np.flatnonzero(coerced.isna().to_numpy(dtype=bool) & ~is_na)
            if len(bad):
                i = bad[0]
                raise DataError(source, f"{col} is not a number: {series.iloc[i]!r}", int(lines[i]))
            num = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
        infinite = np.flatnonzero(np.isinf(num))
        if len(infinite):
            i = infinite[0]
            raise DataError(source, f"{col} is infinite or too large for a float", int(lines[i]))
        values[col] = num
        missing[col] = np.isnan(num)
    return values, missing


def load_csv(
    path: str | Path, *, date_format: str = "iso", adjust: bool = False, missing: str = "error"
) -> pd.DataFrame:
    """Load, validate and (optionally) adjust a Yahoo-layout daily bar CSV.

    Returns a frame indexed by a tz-naive ``DatetimeIndex`` named ``datetime`` with float
    columns ``open, high, low, close, volume`` (and ``adj_close`` when the file has it);
    ``attrs`` carries the source path and its SHA-256. ``adjust`` multiplies Open, High, Low
    and Close by ``Adj Close / Close`` (volume is left as traded). ``missing`` decides what an
    empty or NaN cell does: ``"error"`` (default), ``"interpolate"`` (linear, interior gaps
    only) or ``"drop"`` (the row); the count of cells or rows touched is logged.
    """
    if missing not in MISSING_POLICIES:
        raise ConfigError(
            f"data.missing = {missing!r}: expected one of {', '.join(MISSING_POLICIES)}"
        )
    path = Path(path)
    source = str(path)
    data = _read_bytes(path)
    lines, _ = _line_layout(data, source)
    try:
        columns = [str(c) for c in pd.read_csv(io.BytesIO(data), nrows=0).columns]
        mapping = _map_columns(columns, source, need_adj=adjust)
        raw = pd.read_csv(
            io.BytesIO(data),
            usecols=list(mapping),
            na_values=sorted(_NA_TEXT),
            keep_default_na=True,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(source, f"not a readable CSV file ({exc})") from None
    if len(raw) != len(lines):
        raise DataError(source, f"read {len(raw)} rows but the file has {len(lines)} data lines")
    if len(raw) == 0:
        raise DataError(source, "no bars: the file has a header but no rows", 2)
    raw = raw.rename(columns=mapping)

    dates = _parse_dates(raw["datetime"], date_format, source, lines)
    index = pd.DatetimeIndex(dates, name="datetime")
    try:
        check_index(index, source, lines)
    except DataError as exc:
        times = [c for c in columns if c.strip().lower() == "time"]
        if times and "duplicate" in exc.problem:
            raise DataError(
                source,
                f"{exc.problem}; the file has a separate {times[0]!r} column, which this "
                "daily loader does not combine with the date",
                exc.row,
            ) from None
        raise

    numeric = [c for c in (*CANONICAL, "adj_close") if c in raw.columns]
    values, gaps = _numbers(raw, numeric, source, lines)
    frame = pd.DataFrame(values, index=index)[numeric]
    any_gap = np.logical_or.reduce([gaps[c] for c in numeric])
    notes: list[str] = []
    if any_gap.any():
        frame, lines, note = _handle_missing(frame, gaps, any_gap, missing, source, lines)
        notes.append(note)

    validate_bars(frame, source, lines)
    if adjust:
        ratio = frame["adj_close"] / frame["close"]
        for col in ("open", "high", "low", "close"):
            frame[col] = frame[col] * ratio
    frame.attrs["source"] = source
    frame.attrs["sha256"] = file_sha256(path)
    frame.attrs["notes"] = notes
    return frame


def _handle_missing(
    frame: pd.DataFrame,
    gaps: dict[str, np.ndarray],
    any_gap: np.ndarray,
    policy: str,
    source: str,
    lines: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, str]:
    if policy == "error":
        i = int(any_gap.argmax())
        col = next(c for c in frame.columns if gaps[c][i])
        raise DataError(
            source,
            f"{col} is empty or NaN (set data.missing to 'interpolate' or 'drop' to allow it)",
            int(lines[i]),
        )
    if policy == "drop":
        n = int(any_gap.sum())
        log.warning(
            "%s: dropped %d row(s) with empty or NaN cells (data.missing = drop)", source, n
        )
        keep = ~any_gap
        return frame[keep].copy(), lines[keep], f"dropped {n} row(s) with empty or NaN cells"
    cells = int(sum(g.sum() for g in gaps.values()))
    for col in frame.columns:
        frame.loc[gaps[col], col] = np.nan
    filled = frame.interpolate(method="linear", limit_area="inside")
    left = filled.isna().to_numpy().any(axis=1)
    if left.any():
        i = int(left.argmax())
        col = next(c for c in filled.columns if np.isnan(filled[c].iloc[i]))
        raise DataError(
            source,
            f"{col} is empty or NaN at the start or end of the file, where it cannot be "
            "interpolated",
            int(lines[i]),
        )
    log.warning(
        "%s: filled %d empty or NaN cell(s) by linear interpolation (data.missing = interpolate)",
        source,
        cells,
    )
    return filled, lines, f"filled {cells} empty or NaN cell(s) by linear interpolation"
