"""Bars from a CSV file: Yahoo layout, explicit date format, validated, optionally adjusted.

Row numbers in errors are 1-based line numbers of the file (the header is line 1), so a user
can open the file at the line named. Dates are parsed with an explicit format, never guessed:
``13-01-2014`` read as ISO is an error, not a silent month/day swap.

pandas' C parser reads the file while a second thread reads it too, to check, hash and count
its lines (that work releases the GIL, so a second core hides it). ISO dates
(the default format) go through Arrow's strict ISO-8601 cast, about ten times faster than
``pandas.to_datetime`` on a million stamps; a column Arrow refuses (spaces, other layouts, a
bad date) takes the pandas path, which names the offending row as before.
"""

from __future__ import annotations

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


class _Scan(threading.Thread):
    """Everything the loader needs from the file's bytes besides pandas' parse, done in a
    second thread while pandas parses the file: reading the bytes, the text and UTF-8 checks,
    the SHA-256, the line count (blank lines included) and :func:`_is_plain`.

    Reading, hashing and numpy's counting release the GIL, so on a second core this costs no
    wall time; in line it cost about as much as pandas' parse. :meth:`checked` hands over the
    bytes, or raises what the checks found, which the loader names before any parse error.
    """

    CHUNK = 1 << 23

    def __init__(self, path: Path, expected: int | None) -> None:
        super().__init__(name="kerastrader-csv-scan", daemon=True)
        self._path, self._expected = path, expected
        self.data = b""  # the text, without a byte-order mark
        self.plain = False
        self.sha256 = ""
        self.lines = 0
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            stored = self._path.read_bytes()
            _check_bytes(stored, str(self._path))
            self.data = stored.removeprefix(b"\xef\xbb\xbf")
            self.sha256 = hashlib.sha256(stored).hexdigest()
            buf = np.frombuffer(stored, dtype=np.uint8)
            newlines = sum(
                int(np.count_nonzero(buf[i : i + self.CHUNK] == 10))
                for i in range(0, len(buf), self.CHUNK)
            )
            self.lines = newlines + (0 if stored.endswith(b"\n") else 1)
            self.plain = _is_plain(self.data, self._expected)
        except BaseException as exc:  # handed to the loading thread by checked()
            self._error = exc

    def checked(self) -> _Scan:
        """Wait for the scan; raise what it found wrong with the file."""
        self.join()
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
    """No quotes or lone carriage returns, and the first row fits the header. Blank lines are
    found after the read, by the line count (:class:`_Scan`): searching for them costs more."""
    if not data or b'"' in data:
        return False
    if data.startswith((b"\n", b"\r")) or _lone_cr(data):
        return False
    first_lines = data[:65536].split(b"\n", 2)
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
    line numbers and the file's SHA-256."""
    source = str(path)
    if not path.exists():
        raise DataError(source, "file not found")
    if path.is_dir():
        raise DataError(source, "is a directory, not a CSV file")
    expected = len(names) if names else None
    state = _file_state(path)
    scan = _Scan(path, expected)

    def parse(src) -> tuple[dict[str, str], pd.DataFrame]:
        header = list(names) if names else [str(c) for c in pd.read_csv(src(), nrows=0).columns]
        mapping = _map_columns(header, source, need_adj=need_adj, explicit=columns)
        raw = pd.read_csv(
            src(),
            names=list(names) if names else None,
            header=0,
            dtype={mapping["symbol"]: str} if "symbol" in mapping else None,
            na_values=sorted(_NA_TEXT),
            keep_default_na=True,
            skip_blank_lines=True,
        )
        return mapping, raw

    # pandas parses the file while the scan reads and checks it. Problems are still named in
    # the order of a plain sequence: the file's bytes (binary, not UTF-8), then the exact
    # per-line layout (field counts, line numbers; it runs up front only for files that are
    # not plain: quotes, stray carriage returns, a first row that does not fit the header),
    # then the header and pandas' own errors. A plain file's layout runs after all whenever
    # pandas meets a row it cannot place, a cell comes out empty or a line is blank.
    failure: Exception | None = None
    try:
        mapping, raw = parse(lambda: path)
    except Exception as exc:  # named below, once the scan has had its say
        failure = exc
    data = scan.checked().data
    lines = None if scan.plain else _line_layout(data, source, expected)[0]
    if failure is None and _file_state(path) != state:
        # The file changed while it was read twice: parse the bytes that were hashed.
        try:
            mapping, raw = parse(lambda: io.BytesIO(data))
        except Exception as exc:
            failure = exc
    if isinstance(failure, pd.errors.ParserError | pd.errors.EmptyDataError | UnicodeDecodeError):
        if lines is None:
            _line_layout(data, source, expected)  # names the offending line, if it can
        raise DataError(source, f"not a readable CSV file ({failure})") from None
    if failure is not None:
        raise failure
    if lines is None:
        if scan.lines != len(raw) + 1 or raw.isna().to_numpy().any():
            lines = _line_layout(data, source, expected)[0]
        else:
            lines = np.arange(2, len(raw) + 2)
    if len(raw) != len(lines):
        raise DataError(source, f"read {len(raw)} rows but the file has {len(lines)} data lines")
    if len(raw) == 0:
        raise DataError(source, "no bars: the file has a header but no rows", 2)
    # Unused columns are dropped only now: with usecols pandas would silently accept rows with
    # an extra field instead of raising.
    raw = raw[list(mapping.values())].rename(columns={v: k for k, v in mapping.items()})
    dates = _iso_dates(raw["date"]) if date_format == "iso" and "time" not in raw else None
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
    return raw, lines, scan.sha256


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
