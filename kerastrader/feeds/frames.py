"""Bars from a pandas DataFrame or a Parquet file, through the same validation as CSV.

Column names are matched case-insensitively to ``open, high, low, close, volume`` (and
``adj close``/``adj_close``); the timestamps come from a DatetimeIndex or a ``date``,
``datetime`` or ``timestamp`` column. Rows in errors are 0-based positions in the frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerastrader.errors import DataError
from kerastrader.feeds.loader import file_sha256
from kerastrader.feeds.validate import CANONICAL, validate_bars

_ALIASES = {"adj close": "adj_close", "adj_close": "adj_close", "adjclose": "adj_close"}
_TIME_COLUMNS = ("datetime", "date", "timestamp", "time")


def bars_from_frame(frame: pd.DataFrame, source: str = "DataFrame") -> pd.DataFrame:
    """A validated copy of ``frame`` in the canonical layout; the input is left untouched."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(source, f"expected a pandas DataFrame, got {type(frame).__name__}")
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    if isinstance(frame.index, pd.DatetimeIndex):
        index = frame.index
    else:
        found = next((lowered[c] for c in _TIME_COLUMNS if c in lowered), None)
        if found is None:
            raise DataError(
                source,
                "no timestamps: expected a DatetimeIndex or a date/datetime/timestamp column",
            )
        try:
            index = pd.DatetimeIndex(pd.to_datetime(frame[found], format="ISO8601"))
        except (ValueError, TypeError) as exc:
            raise DataError(source, f"column {found!r} is not all timestamps ({exc})") from None
        bad = np.flatnonzero(index.isna())
        if len(bad):
            raise DataError(source, f"empty timestamp in column {found!r}", int(bad[0]))
    columns = {}
    for name in CANONICAL:
        if name not in lowered:
            raise DataError(
                source,
                f"missing column {name!r}; the frame has {', '.join(map(str, frame.columns))}",
            )
        columns[name] = pd.to_numeric(frame[lowered[name]], errors="coerce").to_numpy(float)
    for alias, canonical in _ALIASES.items():
        if alias in lowered:
            columns[canonical] = pd.to_numeric(frame[lowered[alias]], errors="coerce").to_numpy(
                float
            )
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    bars = pd.DataFrame(columns, index=pd.DatetimeIndex(index, name="datetime"))
    validate_bars(bars, source)
    bars.attrs["source"] = source
    bars.attrs["notes"] = []
    return bars


def load_parquet(path: str | Path) -> pd.DataFrame:
    """Bars from a Parquet file (pyarrow), validated like every other source."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found" if not path.exists() else "not a file")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(str(path), f"not a readable Parquet file ({exc})") from None
    bars = bars_from_frame(frame, str(path))
    bars.attrs["sha256"] = file_sha256(path)
    return bars


def load_any(path: str | Path, *, adjust: bool = False, **csv_options) -> pd.DataFrame:
    """CSV or Parquet by the file's suffix; ``csv_options`` go to :func:`load_csv`."""
    from kerastrader.feeds.loader import adjust_prices, load_csv

    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        bars = load_parquet(path)
        if adjust:
            if "adj_close" not in bars:
                raise DataError(str(path), "adjust = true needs an Adj Close column")
            adjust_prices(bars)
        return bars
    return load_csv(path, adjust=adjust, **csv_options)


def load_sql(url: str, query: str) -> dict[str, pd.DataFrame]:
    """Bars from any SQLAlchemy database: a table name or a SELECT returning a timestamp
    column (date/datetime/timestamp) and OHLCV columns, plus ``symbol`` for several
    instruments. Each symbol is validated like a file; rows are named by result position."""
    import sqlalchemy as sa

    from kerastrader.errors import KerastraderError

    sql = query.strip()
    if not any(ch.isspace() for ch in sql):  # a bare table name
        sql = f"SELECT * FROM {sa.sql.quoted_name(sql, quote=None)}"
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        raise KerastraderError(f"data.store {url!r}: {exc}") from None
    name = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text(sql), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
        detail = getattr(cause, "orig", None) or cause
        raise DataError(f"{name} query", f"the query failed ({detail})") from None
    finally:
        engine.dispose()
    source = f"{name} query"
    lowered = {str(c).lower(): c for c in frame.columns}
    if "symbol" not in lowered:
        return {"": bars_from_frame(frame, source)}
    out = {}
    for sym, rows in frame.groupby(frame[lowered["symbol"]].astype(str), sort=True):
        out[str(sym)] = bars_from_frame(
            rows.drop(columns=lowered["symbol"]).reset_index(drop=True), f"{source} [{sym}]"
        )
    return out
