"""Text as a feed: timestamped items (headlines, posts) and the one rule that puts them on bars.

A user brings a file or a folder of items (CSV, Parquet or JSON lines) with a ``timestamp``, an
optional ``symbol`` and the ``text``. Timestamps either carry their UTC offset
(``2024-03-08T16:05:00-05:00``, ``...Z``) or are wall-clock times in the declared zone
(``text.timezone``); a stamp without an offset and no declared zone is an error, because
guessing the zone of a headline is exactly where a look-ahead hides.

The alignment (:func:`assign_bars`) is used by training, the vectorised and bar-by-bar passes
and a live session alike: **an item belongs to the first bar that closes strictly after its
timestamp**. A daily bar (naive midnight of its exchange date, as daily files are dated)
closes at ``data.session_end`` on that date in ``data.timezone``: a headline at 16:05 New
York counts for the next session, one at 15:59 for today's, one at 16:00 (the close itself)
for the next. An intraday bar closes at its stamp (bars are labelled by their period's end,
as files and :mod:`kerastrader.feeds.resample` label them). The timestamp should be when the
item became available to you, not when its story happened.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError, DataError
from kerastrader.feeds.sessions import parse_time, zone

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)
_BT_EPOCH = 719163.0  # Backtrader's date number of 1970-01-01 (days since 0001-01-01, plus 1)
_NS_PER_DAY = 86_400 * 10**9


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not found:
            kinds = "/".join(SUFFIXES)
            raise ConfigError(f"text.path = {str(path)!r}: the folder holds no {kinds} file")
        return found
    if not path.is_file():
        raise ConfigError(f"text.path = {str(path)!r}: no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"text.path = {str(path)!r}: expected one of {', '.join(SUFFIXES)}")
    return [path]


def _read_frame(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as a frame of strings (or timestamps), and the offset that turns a row's
    position into the number a user finds it at (CSV: header is line 1; JSON lines: line 1)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path), 0
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(str(path), f"not a readable Parquet file ({exc})") from None
    if suffix == ".csv":
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False), 2
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(str(path), f"not a readable CSV file ({exc})") from None
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                rows.append(None)
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(str(path), f"not a JSON object ({exc.msg})", number) from None
            if not isinstance(rows[-1], dict):
                raise DataError(str(path), "not a JSON object", number)
    keep = [i for i, r in enumerate(rows) if r is not None]
    return pd.DataFrame([rows[i] for i in keep], index=keep), 1


def _utc_stamps(values: pd.Series, timezone: str, source: str, first_row: int) -> np.ndarray:
    """Naive-UTC datetime64[ns] of every value: offsets honoured, naive ones in ``timezone``."""
    rows = values.index.to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
        if stamps.tz is None:
            if not timezone:
                raise DataError(
                    source,
                    "timestamps without a time zone and text.timezone is "
                    "not set: declare the zone they are in",
                    int(rows[0]) + first_row,
                )
            stamps = stamps.tz_localize(zone(timezone))
        return stamps.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    text = values.astype(str).str.strip()
    out = np.empty(len(text), dtype="datetime64[ns]")
    aware = text.str.contains(_OFFSET).to_numpy()
    for mask, has_offset in ((aware, True), (~aware, False)):
        if not mask.any():
            continue
        part = text[mask]
        try:
            parsed = pd.to_datetime(part, format="ISO8601", utc=has_offset)
        except (ValueError, TypeError):
            for i, v in zip(rows[mask], part, strict=True):
                try:
                    pd.Timestamp(v)
                except ValueError:
                    raise DataError(
                        source, f"timestamp {v!r} is not a date and time", int(i) + first_row
                    ) from None
            raise DataError(source, "timestamps in more than one layout") from None
        stamps = pd.DatetimeIndex(parsed)
        if not has_offset:
            if not timezone:
                raise DataError(
                    source,
                    f"timestamp {part.iloc[0]!r} has no UTC offset and "
                    "text.timezone is not set: declare the zone it is in",
                    int(rows[mask][0]) + first_row,
                )
            try:
                stamps = stamps.tz_localize(zone(timezone), ambiguous="raise", nonexistent="raise")
            except (ValueError, Exception) as exc:  # pytz/zoneinfo raise their own kinds
                raise DataError(
                    source,
                    f"a timestamp does not exist or is ambiguous in "
                    f"{timezone} ({exc}); give it a UTC offset",
                ) from None
        out[mask] = stamps.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    return out


def read_items(
    path: str | Path, timezone: str = "", columns: dict[str, str] | None = None
) -> pd.DataFrame:
    """Every item of the file or folder at ``path``: columns ``time`` (naive UTC), ``symbol``
    (``""`` for items about the whole market) and ``text``, sorted by time (stable).

    ``columns`` maps our names to the file's (``{"timestamp": "published", "text":
    "headline"}``). Bad input stops at the first problem, naming the file and the row.
    """
    names = {"timestamp": "timestamp", "symbol": "symbol", "text": "text", **(columns or {})}
    unknown = sorted(set(names) - {"timestamp", "symbol", "text"})
    if unknown:
        raise ConfigError(f"text.columns: unknown {', '.join(unknown)} (timestamp, symbol, text)")
    parts = []
    for f in _files(Path(path)):
        frame, first_row = _read_frame(f)
        lowered = {str(c).lower(): c for c in frame.columns}
        missing = [names[k] for k in ("timestamp", "text") if names[k].lower() not in lowered]
        if missing:
            raise DataError(
                str(f),
                f"missing column {missing[0]!r}; the file has "
                f"{', '.join(map(str, frame.columns)) or 'no columns'}",
            )
        ts = frame[lowered[names["timestamp"].lower()]]
        body = frame[lowered[names["text"].lower()]]
        empty = ts.isna() | (ts.astype(str).str.strip() == "")
        if empty.any():
            row = int(ts.index[empty.to_numpy()][0]) + first_row
            raise DataError(str(f), "empty timestamp", row)
        blank = body.isna() | (body.astype(str).str.strip() == "")
        if blank.any():
            row = int(body.index[blank.to_numpy()][0]) + first_row
            raise DataError(str(f), "empty text", row)
        if names["symbol"].lower() in lowered:
            sym = frame[lowered[names["symbol"].lower()]].fillna("").astype(str).str.strip()
        else:
            sym = pd.Series("", index=frame.index)
        parts.append(pd.DataFrame({
            "time": _utc_stamps(ts, timezone, str(f), first_row),
            "symbol": sym.to_numpy(),
            "text": body.astype(str).to_numpy(),
        }))  # fmt: skip
    items = pd.concat(parts, ignore_index=True)
    return items.sort_values("time", kind="stable").reset_index(drop=True)


def bar_closes(
    stamps: np.ndarray, daily: bool, timezone: str = "UTC", session_end: str = ""
) -> np.ndarray:
    """The close of each bar, int64 ns UTC. ``stamps`` are the bars' naive-UTC stamps (int64 ns
    or datetime64). A daily bar closes at ``session_end`` of its date in ``timezone`` (the
    exchange clock's zone and session); an intraday bar at its own stamp."""
    ns = np.asarray(stamps).astype("datetime64[ns]").astype(np.int64)
    if not daily:
        return ns
    if not session_end:
        raise ConfigError(
            "text with daily bars needs data.session_end (the session's close, such as "
            '"16:00"): without it a headline cannot be placed before or after the close'
        )
    close = parse_time(session_end, "data.session_end")
    wall = pd.DatetimeIndex(ns.astype("datetime64[ns]")) + pd.Timedelta(
        hours=close.hour, minutes=close.minute, seconds=close.second
    )
    if timezone != "UTC":
        wall = wall.tz_localize(zone(timezone), ambiguous=True, nonexistent="shift_forward")
        wall = wall.tz_convert("UTC").tz_localize(None)
    return wall.as_unit("ns").asi8


def assign_bars(item_times: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """THE alignment: the row of the first bar whose close is strictly after each item's time
    (``len(closes)``: no bar has closed after it yet, the item waits for the next bar).

    Used by training, both backtest passes and live sessions; ``closes`` ascending int64 ns.
    """
    return np.searchsorted(np.asarray(closes), np.asarray(item_times), side="right")


def backtrader_ns(numbers: np.ndarray) -> np.ndarray:
    """Backtrader date numbers (float days) -> int64 ns, rounded to the second (the float
    carries about 10 us of noise; bars never start or end between seconds)."""
    seconds = np.rint((np.asarray(numbers, dtype=np.float64) - _BT_EPOCH) * 86_400.0)
    return seconds.astype(np.int64) * 10**9


def bar_stamps(bars: Any) -> np.ndarray:
    """The naive-UTC stamps (int64 ns) of bars: a frame's index, or the ``datetime`` line (date
    numbers) that an indicator reads from its feed."""
    if isinstance(bars, pd.DataFrame):
        index = pd.DatetimeIndex(bars.index)
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        return index.as_unit("ns").asi8.astype(np.int64)
    return backtrader_ns(bars["datetime"])


@dataclass
class TextSource:
    """The items a model reads, sorted by time: one symbol's plus the market-wide ones
    (``symbol = ""``: every item of the files).

    A book reads the files once: :meth:`for_symbol` gives each instrument's view (its own
    items plus the market-wide ones) over the same reading, and per-item arrays (scores,
    token ids) are made once per item for every view (:meth:`cached`).

    ``watch`` (a live session) re-reads the file or folder when a file changed, at most once
    per call of :meth:`refresh`; new items then enter at the next bar, as in a backtest.
    """

    path: str
    timezone: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    symbol: str = ""
    watch: bool = False
    root: TextSource | None = field(default=None, repr=False)  # a view's reading (for_symbol)
    times: np.ndarray = field(init=False, repr=False)
    texts: np.ndarray = field(init=False, repr=False)
    index: np.ndarray = field(init=False, repr=False)  # positions among the files' items
    _stamp: tuple = field(init=False, repr=False, default=())
    _cache: dict[str, Any] = field(init=False, repr=False, default_factory=dict)
    _items: dict[str, tuple] = field(init=False, repr=False, default_factory=dict)
    _views: dict[str, TextSource] = field(init=False, repr=False, default_factory=dict)
    _generation: int = field(init=False, repr=False, default=0)
    _noted: set = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        if self.root is None:
            self._load()
        else:
            self._select()

    def _file_stamp(self) -> tuple:
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size)
                     for f in _files(Path(self.path)))  # fmt: skip

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        items = read_items(self.path, self.timezone, self.columns)
        self._all_times = items["time"].to_numpy("datetime64[ns]").astype(np.int64)
        self._all_texts = items["text"].to_numpy(dtype=object)
        self._all_symbols = items["symbol"].to_numpy(dtype=object)
        self._items = {}
        self._noted = set()
        self._generation += 1
        self._select()
        log.info("text: %d items from %s", len(self.times), self.path)

    def _select(self) -> None:
        """This source's items among the reading's: the symbol's and the market's."""
        reading = self.root or self
        self._generation = reading._generation
        symbols = reading._all_symbols
        if self.symbol:
            self.index = np.flatnonzero((symbols == "") | (symbols == self.symbol))
        else:
            self.index = np.arange(len(symbols))
        self.times = reading._all_times[self.index]
        self.texts = reading._all_texts[self.index]
        self._cache = {}

    def refresh(self) -> bool:
        """Re-read the items when the files changed (watched sources only); True if they did."""
        if self.root is not None:
            self.root.refresh()
            if self.root._generation == self._generation:
                return False
            self._select()
            return True
        if not self.watch or self._file_stamp() == self._stamp:
            return False
        self._load()
        return True

    def for_symbol(self, symbol: str) -> TextSource:
        """The items about ``symbol`` plus the market-wide ones, over this source's reading
        (the same object for the same symbol; a watched reading's views follow its files)."""
        if symbol == self.symbol:
            return self
        reading = self.root or self
        if symbol not in reading._views:
            reading._views[symbol] = TextSource(
                self.path, self.timezone, dict(self.columns), symbol, self.watch, root=reading
            )
        return reading._views[symbol]

    def cached(self, key: str, make) -> Any:
        """A per-item array derived from the texts (scores, token ids), made once per load
        and item, whichever views read the item."""
        if key not in self._cache:
            self._cache[key] = (self.root or self)._per_item(key, make, self.index)
        return self._cache[key]

    def _per_item(self, key: str, make, positions: np.ndarray) -> np.ndarray:
        values, done = self._items.get(key, (None, np.zeros(len(self._all_texts), dtype=bool)))
        missing = positions[~done[positions]]
        if len(missing):
            made = np.asarray(make(self._all_texts[missing]))
            if values is None:
                values = np.zeros((len(done), *made.shape[1:]), dtype=made.dtype)
            values[missing] = made
            done[missing] = True
            self._items[key] = (values, done)
        if values is None:
            return make(self._all_texts[positions])
        return values[positions]

    def outside(self, book: list[str]) -> int:
        """How many items name a symbol that is not one of ``book`` (nor market-wide): a book
        leaves them out; logged once per reading and book."""
        reading = self.root or self
        symbols = reading._all_symbols
        count = int(np.count_nonzero((symbols != "") & ~np.isin(symbols, list(book))))
        key = tuple(book)
        if count and key not in reading._noted:
            reading._noted.add(key)
            log.info("text: %d of %d items name a symbol outside the book (%s): ignored",
                     count, len(symbols), ", ".join(book))  # fmt: skip
        return count

    def between(self, first_ns: int, last_ns: int) -> slice:
        """Positions of the items with ``first_ns <= time < last_ns``."""
        lo = int(np.searchsorted(self.times, first_ns, side="left"))
        hi = int(np.searchsorted(self.times, last_ns, side="left"))
        return slice(lo, hi)


_SOURCES: dict[tuple, TextSource] = {}


def cached_source(path: str, timezone: str = "", columns: dict[str, str] | None = None,
                  symbol: str = "") -> TextSource:  # fmt: skip
    """A (not watched) source for these files and settings, read once per process while the
    files stay unchanged (a sweep, the leakage check and a run's training and backtest)."""
    columns = dict(columns or {})
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in _files(Path(path)))
    key = (stamp, timezone, tuple(sorted(columns.items())), symbol)
    if key not in _SOURCES:
        _SOURCES[key] = TextSource(str(path), timezone, columns, symbol)
    return _SOURCES[key]


def book_symbols(cfg: dict[str, Any]) -> list[str] | None:
    """The configured book when ``data.symbols`` names several instruments (``["*"]``: all
    of the data's, known once loaded), else None (one instrument)."""
    symbols = list(cfg["data"]["symbols"])
    return symbols if len(symbols) > 1 or symbols == ["*"] else None


def source_from_config(cfg: dict[str, Any], *, watch: bool = False) -> TextSource | None:
    """The configured text source (``[text] path``), or None when there is none; ``watch``
    for a live session (re-read when the files change). One instrument: its items and the
    market-wide ones. A book (``data.symbols`` with several): every item, each instrument
    reading its own and the market-wide ones through :meth:`TextSource.for_symbol`."""
    t = cfg["text"]
    if not t["path"]:
        return None
    book = book_symbols(cfg)
    symbols = cfg["data"]["symbols"]
    symbol = "" if book else (symbols[0] if symbols else cfg["data"]["symbol"])
    if watch:
        source = TextSource(t["path"], t["timezone"], dict(t["columns"]), symbol, watch=True)
    else:
        source = cached_source(t["path"], t["timezone"], t["columns"], symbol)
    if book and book != ["*"]:
        source.outside(book)
    return source
