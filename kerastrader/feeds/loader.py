"""Bars from a CSV file: Yahoo layout, explicit date format, validated, optionally adjusted.

Row numbers in errors are 1-based line numbers of the file (the header is line 1), so a user
can open the file at the line named. Dates are parsed with an explicit format, never guessed:
``13-01-2014`` read as ISO is an error, not a silent month/day swap.

A file that looks plain (no quotes, no stray carriage returns in its first 64 KB) is parsed by
pandas from its path, in parallel chunks when it is large (pandas 3.1), while a second thread
streams the same bytes to hash and check them (that work releases the GIL, so a second core
hides most of it); any other file is read once into memory and laid out line by line first.
ISO dates (the default format) go through Arrow's strict ISO-8601 cast, about ten times faster
than ``pandas.to_datetime`` on a million stamps; a column Arrow refuses (spaces, other
layouts, a bad date) takes the pandas path, which names the offending row as before.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import io
import logging
import threading
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
MISSING_POLICIES = ("error", "ffill", "interpolate", "drop")
_NA_TEXT = {"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A", "#N/A", "-"}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_bytes(data: bytes, source: str) -> None:
    """Text, and UTF-8: the file's own problems, named before any parsing problem."""
    if b"\0" in data[:65536]:
        raise DataError(source, "not a text CSV file (binary content)")
    try:
        if not data.isascii():  # ASCII is UTF-8: the common case needs no decoding pass
            data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(source, "not UTF-8 text", line) from None


def _file_state(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


BOM = b"\xef\xbb\xbf"
HEAD = 65536  # bytes read up front to choose the path, and checked for binary content


class _Scan(threading.Thread):
    """What the loader needs from a file's bytes besides pandas' parse, streamed through one
    small buffer in a second thread while pandas parses the file: the SHA-256 of the file,
    whether it holds a quote or a carriage return that ends no line, and its UTF-8 check.

    Reading and hashing release the GIL, so on a second core this costs little wall time; a
    block at a time it stays in the cache and needs no copy of the whole file (half the work of
    reading the file into memory first). :meth:`checked` raises what the checks found.
    """

    BLOCK = 1 << 20

    def __init__(self, path: Path) -> None:
        super().__init__(name="kerastrader-csv-scan", daemon=True)
        self._path = path
        self.sha256 = ""
        self.quote = False
        self.lone_cr = False
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._scan()
        except BaseException as exc:  # handed to the loading thread by checked()
            self._error = exc

    def _scan(self) -> None:
        digest = hashlib.sha256()
        buf = bytearray(self.BLOCK)
        view = memoryview(buf)
        decoder = None  # a UTF-8 decoder from the first block that is not ASCII
        lone = 0  # carriage returns not followed by a line feed
        ends_cr = False
        first = True
        with open(self._path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                block = buf if n == self.BLOCK else bytes(view[:n])
                digest.update(block)
                if first and b"\0" in block[:HEAD]:
                    raise DataError(str(self._path), "not a text CSV file (binary content)")
                if decoder is None and not block.isascii():
                    decoder = codecs.getincrementaldecoder("utf-8-sig")()
                if decoder is not None:
                    decoder.decode(block)  # UnicodeDecodeError: named by _check_bytes below
                self.quote = self.quote or b'"' in block
                if b"\r" in block or ends_cr:
                    lone += block.count(b"\r") - block.count(b"\r\n")
                    if ends_cr and block.startswith(b"\n"):
                        lone -= 1  # the previous block's last CR ends this line
                    ends_cr = block.endswith(b"\r")
                first = False
            if decoder is not None:
                decoder.decode(b"", final=True)
        self.lone_cr = lone > 0
        self.sha256 = digest.hexdigest()

    def checked(self) -> _Scan:
        """Wait for the scan; raise what it found wrong with the file (for text that is not
        UTF-8, the whole file is read again to name the line)."""
        self.join()
        if isinstance(self._error, UnicodeDecodeError):
            _check_bytes(self._path.read_bytes(), str(self._path))
        if self._error is not None:
            raise self._error
        return self


def _lone_cr(data: bytes) -> bool:
    """A carriage return that does not end a line (without copying the file to find it)."""
    return b"\r" in data and data.count(b"\r") != data.count(b"\r\n")


def _line_layout(data: bytes, source: str, expected: int | None = None) -> tuple[np.ndarray, int]:
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
    if b'"' in data or _lone_cr(data):
        # Quoted fields (which may hold commas or newlines) or stray carriage returns: let the
        # csv module split records, and name each by the file line it ends on.
        fields, lines = _csv_layout(data, source)
    else:
        commas = np.flatnonzero(buf == ord(","))
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        # A line of spaces or tabs is blank to pandas too (it skips it): look at the lines
        # without a comma, in order, up to the first one that holds something.
        for i in np.flatnonzero((fields == 1) & ~blank):
            if data[starts[i] : ends[i]].strip(b" \t\r"):
                break
            blank[i] = True
        lines = np.flatnonzero(~blank) + 1
        fields = fields[~blank]
    if len(lines) == 0:
        raise DataError(source, "empty file (no header, no rows)")
    header_fields = int(fields[0]) if expected is None else expected
    wrong = np.flatnonzero(fields[1:] != header_fields)
    if len(wrong):
        i = wrong[0] + 1
        named = "the header names" if expected is None else "data.names lists"
        raise DataError(
            source,
            f"row has {fields[i]} fields but {named} {header_fields}"
            + (
                " (a column the header does not name, such as a separate time column? "
                "data.names can name the file's columns)"
                if fields[i] > header_fields
                else ""
            ),
            int(lines[i]),
        )
    return lines[1:], header_fields


def _is_plain(data: bytes, expected: int | None) -> bool:
    """No quotes or lone carriage returns, and the first row fits the header (blank lines are
    found after the read)."""
    if not data or b'"' in data or _lone_cr(data):
        return False
    return _plain_head(data[:HEAD], expected)


def _plain_head(head: bytes, expected: int | None) -> bool:
    """The file does not start with a blank line and its first row fits the header."""
    if not head or head.startswith((b"\n", b"\r")):
        return False
    first_lines = head.split(b"\n", 2)
    if len(first_lines) < 2:
        return False
    header_fields = expected or first_lines[0].count(b",") + 1
    return first_lines[1].count(b",") + 1 == header_fields


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


CANONICAL_KEYS = (
    "date", "time", "open", "high", "low", "close", "adj_close", "volume", "symbol",
    "dividends", "splits",
)  # fmt: skip
_AUTO = {
    "date": ("Date", "Datetime", "Timestamp"),
    "time": ("Time",),
    "open": ("Open",),
    "high": ("High",),
    "low": ("Low",),
    "close": ("Close",),
    "adj_close": ("Adj Close", "Adj_Close", "AdjClose"),
    "volume": ("Volume",),
    "symbol": ("Symbol", "Ticker"),
    # Corporate actions (yfinance's history(actions=True) layout): see feeds/actions.py.
    "dividends": ("Dividends", "Dividend"),
    "splits": ("Stock Splits", "Splits", "Split"),
}
_REQUIRED_KEYS = ("date", "open", "high", "low", "close", "volume")


def _map_columns(
    header: list[str], source: str, need_adj: bool, explicit: dict[str, str] | None = None
) -> dict[str, str]:
    """Canonical name -> the file's column: ``explicit`` first, then the usual names.

    The usual names (Yahoo's ``Date,Open,High,Low,Close,Adj Close,Volume``, plus ``Time`` and
    ``Symbol``) match exactly or in another case; a near miss is an error with a suggestion.
    """
    explicit = dict(explicit or {})
    unknown = [k for k in explicit if k not in CANONICAL_KEYS]
    if unknown:
        raise ConfigError(
            f"data.columns: unknown key(s) {', '.join(unknown)}; known: {', '.join(CANONICAL_KEYS)}"
        )
    mapping: dict[str, str] = {}
    for key, column in explicit.items():
        if column not in header:
            raise DataError(
                source,
                f"data.columns.{key} = {column!r}, but the header is {', '.join(header)}",
                1,
            )
        mapping[key] = column
    exact = set(header)
    lowered = {c.lower(): c for c in header}
    for key, names in _AUTO.items():
        if key in mapping:
            continue
        for name in names:
            if name in exact:
                mapping[key] = name
                break
            if name.lower() in lowered:
                mapping[key] = lowered[name.lower()]
                break
    required = list(_REQUIRED_KEYS) + (["adj_close"] if need_adj else [])
    for key in required:
        if key not in mapping:
            name = _AUTO[key][0]
            unused = [c for c in header if c not in mapping.values()]
            # Compared in lower case: 'hihg' in a lower-case layout is as near 'High' as 'Hihg'.
            folded = {c.lower(): c for c in unused}
            near = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
            near = [folded[c] for c in near]
            hint = f" (found {near[0]!r}: misspelt?)" if near else ""
            why = " (needed by adjust = true)" if key == "adj_close" else ""
            raise DataError(
                source,
                f"missing column {name!r}{why}{hint}; the header is {', '.join(header)} "
                "(data.columns can map other names)",
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
        timed = dates.isna() & stripped.str.contains(" ", regex=False)
        if fmt != "ISO8601" and timed.any():  # a pattern for the date, joined to a time
            dates[timed] = pd.to_datetime(
                stripped[timed], format=f"{fmt} %H:%M:%S", errors="coerce"
            )
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


def _iso_dates(column: pd.Series) -> pd.DatetimeIndex | None:
    """ISO dates through Arrow's cast to microsecond timestamps, or None for the pandas path.

    Arrow accepts only strict ISO-8601 (``2014-01-13``, ``2014-01-13 09:30[:00[.5]]``, ``T``
    or a space) and refuses the rest as a whole: spaces around a value, an offset, more than
    microsecond digits, a day that does not exist, an empty cell. On what it accepts it gives
    ``pandas.to_datetime(format="ISO8601")``'s values and unit (tested); on anything else
    the pandas path runs and names the row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(column.dtype, pd.StringDtype) or column.dtype.storage != "pyarrow":
        return None
    try:
        stamps = pc.cast(pa.array(column.array), pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if stamps.null_count:
        return None
    return pd.DatetimeIndex(stamps.to_numpy(zero_copy_only=False))


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


class _Reader:
    """One file's read: pandas' parse with the options the loader needs, and the checks."""

    def __init__(
        self,
        path: Path,
        *,
        date_format: str,
        need_adj: bool,
        columns: dict[str, str] | None,
        names: list[str] | None,
    ) -> None:
        self.path, self.source = path, str(path)
        self.date_format, self.need_adj = date_format, need_adj
        self.columns, self.names = columns, names
        self.expected = len(names) if names else None

    def parse(self, src, skip_blank_lines: bool) -> tuple[dict[str, str], pd.DataFrame]:
        names = self.names
        header = list(names) if names else [str(c) for c in pd.read_csv(src(), nrows=0).columns]
        mapping = _map_columns(header, self.source, need_adj=self.need_adj, explicit=self.columns)
        raw = pd.read_csv(
            src(),
            names=list(names) if names else None,
            header=0,
            dtype={mapping["symbol"]: str} if "symbol" in mapping else None,
            na_values=sorted(_NA_TEXT),
            keep_default_na=True,
            skip_blank_lines=skip_blank_lines,
        )
        return mapping, raw

    def iso_dates(self, mapping: dict[str, str], raw: pd.DataFrame) -> pd.DatetimeIndex | None:
        if self.date_format != "iso" or "time" in mapping:
            return None
        return _iso_dates(raw[mapping["date"]])  # raises nothing: None sends it to pandas

    def unreadable(self, failure: Exception, data: bytes, lines: np.ndarray | None):
        """Raise a parse failure as the loader names it."""
        if isinstance(
            failure, pd.errors.ParserError | pd.errors.EmptyDataError | UnicodeDecodeError
        ):
            if lines is None:
                _line_layout(data, self.source, self.expected)  # names the line, if it can
            raise DataError(self.source, f"not a readable CSV file ({failure})") from None
        raise failure

    def fast(self):
        """A plain-looking file: pandas parses it from its path (in parallel chunks, pandas
        3.1, when it is large) while :class:`_Scan` hashes and checks the bytes. Blank lines
        are kept as empty rows, so a clean file's row i is its line i + 2 without counting
        lines; rows with empty cells send it to the exact layout, which drops the blank ones.

        Returns (mapping, raw, lines, sha256, dates), or None when the file must be read the
        exact way after all (a quote or a stray carriage return past the head, a file that
        changed while it was read twice, rows that do not map to lines one to one).
        """
        state = _file_state(self.path)
        scan = _Scan(self.path)
        failure: Exception | None = None
        dates = None
        try:
            mapping, raw = self.parse(lambda: self.path, skip_blank_lines=False)
            dates = self.iso_dates(mapping, raw)  # while the scan may still be running
        except Exception as exc:  # named below, once the scan has had its say
            failure = exc
        scan.checked()  # the file's own problems first (binary, not UTF-8)
        if scan.quote or scan.lone_cr or _file_state(self.path) != state:
            return None
        if failure is not None:
            data = self.path.read_bytes().removeprefix(BOM)
            self.unreadable(failure, data, None)
        if not raw.isna().to_numpy().any():
            return mapping, raw, np.arange(2, len(raw) + 2), scan.sha256, dates
        stored = self.path.read_bytes()
        if hashlib.sha256(stored).hexdigest() != scan.sha256:
            return None
        lines = _line_layout(stored.removeprefix(BOM), self.source, self.expected)[0]
        keep = np.isin(np.arange(2, len(raw) + 2), lines)  # drop the blank lines' rows
        if int(keep.sum()) != len(lines):
            return None
        if not keep.all():
            raw = raw[keep].reset_index(drop=True)
            dates = self.iso_dates(mapping, raw)
        return mapping, raw, lines, scan.sha256, dates

    def exact(self):
        """Any file: its bytes read once, checked, laid out line by line when they are not
        plain, and parsed from memory (blank lines skipped, counted to keep row numbers)."""
        stored = self.path.read_bytes()
        _check_bytes(stored, self.source)
        data = stored.removeprefix(BOM)
        plain = _is_plain(data, self.expected)
        lines = None if plain else _line_layout(data, self.source, self.expected)[0]
        try:
            mapping, raw = self.parse(lambda: io.BytesIO(data), skip_blank_lines=True)
        except Exception as exc:
            self.unreadable(exc, data, lines)
        if lines is None:
            counted = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            if counted != len(raw) + 1 or raw.isna().to_numpy().any():
                lines = _line_layout(data, self.source, self.expected)[0]
            else:
                lines = np.arange(2, len(raw) + 2)
        digest = hashlib.sha256(stored).hexdigest()
        return mapping, raw, lines, digest, self.iso_dates(mapping, raw)


def _read_table(
    path: Path,
    *,
    date_format: str,
    need_adj: bool,
    columns: dict[str, str] | None,
    names: list[str] | None,
    timezone: str,
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The file's rows with canonical column names and a parsed UTC ``datetime`` column, their
    line numbers and the file's SHA-256.

    Problems are named in one order whichever way the file is read: the file's bytes (binary,
    not UTF-8), then the exact per-line layout (field counts, line numbers), then the header
    and pandas' own errors, then the rows' values.
    """
    source = str(path)
    if not path.exists():
        raise DataError(source, "file not found")
    if path.is_dir():
        raise DataError(source, "is a directory, not a CSV file")
    reader = _Reader(path, date_format=date_format, need_adj=need_adj, columns=columns, names=names)
    with open(path, "rb") as f:
        head = f.read(HEAD)
    text = head.removeprefix(BOM)
    got = None
    if b'"' not in text and not _lone_cr(text[:-1]) and _plain_head(text, reader.expected):
        got = reader.fast()
    mapping, raw, lines, digest, dates = got if got is not None else reader.exact()
    if len(raw) != len(lines):
        raise DataError(source, f"read {len(raw)} rows but the file has {len(lines)} data lines")
    if len(raw) == 0:
        raise DataError(source, "no bars: the file has a header but no rows", 2)
    # Unused columns are dropped only now: with usecols pandas would silently accept rows with
    # an extra field instead of raising.
    raw = raw[list(mapping.values())].rename(columns={v: k for k, v in mapping.items()})
    if dates is None:
        text = raw["date"].astype("string").str.strip()
        if "time" in raw:
            text = text + " " + raw["time"].astype("string").str.strip()
        dates = pd.DatetimeIndex(_parse_dates(text, date_format, source, lines))
    if dates.tz is None:  # dates.normalize() without building a second index
        stamps = dates.to_numpy()
        daily = bool((stamps == stamps.astype("datetime64[D]")).all())
    else:
        daily = bool((dates == dates.normalize()).all())
    if daily:
        # Daily bars: every stamp is a date, and that date is the exchange's. Converting its
        # midnight through the zone would date a Tokyo Monday on Sunday (UTC).
        from kerastrader.feeds.sessions import zone

        zone(timezone)  # still a clear error for an unknown zone
    elif timezone != "UTC":
        try:
            dates = dates.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # zoneinfo and pandas raise several kinds
            raise DataError(
                source, f"timestamps cannot be read in data.timezone {timezone!r} ({exc})"
            ) from None
        dates = dates.tz_convert("UTC").tz_localize(None)
    raw["datetime"] = dates
    return raw, lines, digest


def _bars(
    raw: pd.DataFrame,
    lines: np.ndarray,
    source: str,
    *,
    adjust: bool,
    missing: str,
    sha256: str,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """One instrument's rows -> validated bars."""
    index = pd.DatetimeIndex(raw["datetime"].to_numpy(), name="datetime")
    try:
        check_index(index, source, lines)
    except DataError as exc:
        if "time" not in raw and "duplicate" in exc.problem and "symbol" not in raw:
            raise DataError(
                source,
                f"{exc.problem}; several bars share a date: an intraday file needs its time "
                "column (named Time, or mapped with data.columns.time)",
                exc.row,
            ) from None
        raise
    numeric = [c for c in (*CANONICAL, "adj_close", "dividends", "splits") if c in raw.columns]
    values, gaps = _numbers(raw, numeric, source, lines)
    for col in ("dividends", "splits"):  # an empty cell is "none that day", not a hole
        if col in values:
            values[col] = np.nan_to_num(values[col], nan=0.0)
            gaps[col] = np.zeros(len(values[col]), dtype=bool)
    frame = pd.DataFrame(values, index=index)[numeric]
    any_gap = np.logical_or.reduce([gaps[c] for c in numeric])
    notes: list[str] = []
    look_ahead = ""
    if any_gap.any():
        frame, lines, note = _handle_missing(frame, gaps, any_gap, missing, source, lines)
        notes.append(note)
        if missing == "interpolate":  # a filled cell reads the next real bar: look-ahead
            cells = int(sum(gaps[c].sum() for c in numeric))
            look_ahead = (
                f"interpolated {cells} cell(s) from later bars (data.missing = interpolate)"
            )
    validate_bars(frame, source, lines)
    if adjust:
        adjust_prices(frame)
    frame.attrs["source"] = source
    frame.attrs["sha256"] = sha256
    frame.attrs["notes"] = notes
    frame.attrs["timezone"] = timezone
    if look_ahead:
        frame.attrs["look_ahead"] = look_ahead
    return frame


def adjust_prices(frame: pd.DataFrame) -> None:
    """Scale Open, High, Low by ``Adj Close / Close`` and make Close the Adj Close, in place."""
    ratio = frame["adj_close"] / frame["close"]
    for col in ("open", "high", "low"):
        frame[col] = frame[col] * ratio
    # Close is Adj Close itself: close * (adj / close) misses it by an ulp on ~1% of real
    # rows. The clips keep Low <= Close <= High when that ulp would cross a bar's edge.
    frame["close"] = frame["adj_close"]
    frame["high"] = np.maximum(frame["high"], frame["close"])
    frame["low"] = np.minimum(frame["low"], frame["close"])


def _check_missing_policy(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise ConfigError(
            f"data.missing = {missing!r}: expected one of {', '.join(MISSING_POLICIES)}"
        )


def load_csv_symbols(
    path: str | Path,
    *,
    date_format: str = "iso",
    adjust: bool = False,
    missing: str = "error",
    columns: dict[str, str] | None = None,
    names: list[str] | None = None,
    timezone: str = "UTC",
) -> dict[str, pd.DataFrame]:
    """A long-format file (one row per symbol and bar) -> validated bars per symbol.

    Rows are grouped by the symbol column (``Symbol``/``Ticker`` or ``data.columns.symbol``);
    each symbol is validated on its own, and errors name the file line. A file without a
    symbol column is one instrument, named after the file (``orcl-1995.csv`` -> ``ORCL``).
    """
    _check_missing_policy(missing)
    path = Path(path)
    raw, lines, digest = _read_table(
        path,
        date_format=date_format,
        need_adj=adjust,
        columns=columns,
        names=names,
        timezone=timezone,
    )
    opts = {"adjust": adjust, "missing": missing, "sha256": digest, "timezone": timezone}
    if "symbol" not in raw:
        return {default_symbol(path): _bars(raw, lines, str(path), **opts)}
    symbols = raw["symbol"].astype("string").str.strip()
    empty = np.flatnonzero(symbols.isna().to_numpy() | (symbols == "").to_numpy())
    if len(empty):
        raise DataError(str(path), "empty symbol", int(lines[empty[0]]))
    out = {}
    for sym, rows in raw.groupby(symbols.to_numpy(), sort=True):
        positions = raw.index.get_indexer(rows.index)
        out[str(sym)] = _bars(rows, lines[positions], f"{path} [{sym}]", **opts)
    return out


def load_csv(
    path: str | Path,
    *,
    date_format: str = "iso",
    adjust: bool = False,
    missing: str = "error",
    columns: dict[str, str] | None = None,
    names: list[str] | None = None,
    timezone: str = "UTC",
    symbol: str | None = None,
) -> pd.DataFrame:
    """Load, validate and (optionally) adjust one instrument's bars from a CSV file.

    Returns a frame indexed by a tz-naive UTC ``DatetimeIndex`` named ``datetime`` with float
    columns ``open, high, low, close, volume`` (and ``adj_close`` when the file has it);
    ``attrs`` carries the source path, its SHA-256 and validation notes.

    - ``date_format``: ``"iso"``, ``"dayfirst"`` or a strftime pattern; never guessed. A
      separate time column (``Time``) is joined to the date (``%H:%M:%S`` after the pattern).
    - ``columns``: canonical name -> the file's column, for layouts other than Yahoo's
      (keys: date, time, open, high, low, close, adj_close, volume, symbol).
    - ``names``: the file's columns in order, replacing its header line (for a header that
      does not match its rows).
    - ``timezone``: the exchange's zone. Intraday timestamps are local times there and are
      converted to naive UTC; a daily file's dates are exchange dates and stay as they are
      (naive midnight). ``attrs["timezone"]`` records it.
    - ``adjust`` multiplies Open, High, Low and Close by ``Adj Close / Close`` (volume is left
      as traded). ``missing``: ``"error"`` (default); ``"ffill"`` (causal: a bar with a
      missing price becomes a flat bar at the previous close, volume 0; a missing volume
      alone becomes 0); ``"interpolate"`` (linear between the neighbours, interior gaps
      only: it reads later bars, so ``attrs["look_ahead"]`` says so and a backtest is flagged);
      ``"drop"`` (the row). The count is logged.
    - ``symbol`` picks one instrument from a long-format file.
    """
    loaded = load_csv_symbols(
        path,
        date_format=date_format,
        adjust=adjust,
        missing=missing,
        columns=columns,
        names=names,
        timezone=timezone,
    )
    if symbol is not None and symbol in loaded:
        return loaded[symbol]
    if len(loaded) == 1:  # one instrument: a file-name symbol is only a default
        return next(iter(loaded.values()))
    raise DataError(
        str(path),
        f"the file holds {len(loaded)} symbols ({', '.join(list(loaded)[:10])}); "
        + ("choose one with data.symbol" if symbol is None else f"{symbol!r} is not one of them"),
    )


def default_symbol(path: str | Path) -> str:
    """``orcl-1995-2014.csv`` -> ``ORCL``: the first dash- or underscore-separated word."""
    return Path(path).stem.split("-")[0].split("_")[0].upper()


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
            f"{col} is empty or NaN (set data.missing to 'ffill', 'drop' or 'interpolate' "
            "to allow it)",
            int(lines[i]),
        )
    if policy == "drop":
        n = int(any_gap.sum())
        log.warning(
            "%s: dropped %d row(s) with empty or NaN cells (data.missing = drop)", source, n
        )
        keep = ~any_gap
        return frame[keep].copy(), lines[keep], f"dropped {n} row(s) with empty or NaN cells"
    if policy == "ffill":
        return _forward_fill(frame, gaps, source, lines)
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


def _forward_fill(
    frame: pd.DataFrame, gaps: dict[str, np.ndarray], source: str, lines: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The causal repair: a bar missing any price is a flat bar at the last close (open, high,
    low and close all that close, adj close carried, volume 0); a bar missing only its volume
    gets volume 0. Each repaired value depends only on earlier bars."""
    prices = [c for c in frame.columns if c in ("open", "high", "low", "close", "adj_close")]
    flat = np.logical_or.reduce([gaps[c] for c in prices])
    if flat[0]:
        col = next(c for c in prices if gaps[c][0])
        raise DataError(
            source,
            f"{col} is empty or NaN on the first bar, where there is no earlier close to carry",
            int(lines[0]),
        )
    out = frame.copy()
    last_close = out["close"].where(~flat).ffill()
    for col in ("open", "high", "low", "close"):
        out.loc[flat, col] = last_close[flat]
    if "adj_close" in out:
        out.loc[flat, "adj_close"] = out["adj_close"].where(~flat).ffill()[flat]
    zero_volume = flat | gaps.get("volume", np.zeros(len(out), dtype=bool))
    out.loc[zero_volume, "volume"] = 0.0
    n_flat, n_volume = int(flat.sum()), int((zero_volume & ~flat).sum())
    note = f"carried the last close into {n_flat} bar(s) with a missing price (volume 0)"
    if n_volume:
        note += f", set {n_volume} missing volume(s) to 0"
    log.warning("%s: %s (data.missing = ffill)", source, note)
    return out, lines, note
