"""A bar store in a real database: validated bars keyed by (symbol, timeframe, timestamp).

SQLite (a file) by default; PostgreSQL or any SQLAlchemy URL for a team. Ingesting is
idempotent (the same bars twice change nothing), appends new bars, refuses to overwrite a bar
whose values differ unless ``replace=True``, and runs in one transaction: an ingest that fails
part-way leaves the store exactly as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from kerastrader.errors import DataError, KerastraderError
from kerastrader.feeds.validate import CANONICAL, validate_bars

log = logging.getLogger(__name__)

DEFAULT_STORE = "sqlite:///kerastrader-bars.sqlite"
TABLE = "bars"
_TOLERANCE = 1e-9  # relative: a float that went through text and back is the same bar
# What total return needs besides OHLCV (see feeds/actions.py), stored when the bars have it,
# NULL otherwise, so that a store-fed run gives the CSV run's numbers.
EXTRA = ("adj_close", "dividends", "splits")


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE,
        metadata,
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("timeframe", sa.String(16), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=False), primary_key=True),  # UTC
        sa.Column("open", sa.Float(53), nullable=False),
        sa.Column("high", sa.Float(53), nullable=False),
        sa.Column("low", sa.Float(53), nullable=False),
        sa.Column("close", sa.Float(53), nullable=False),
        sa.Column("volume", sa.Float(53), nullable=False),
        *(sa.Column(c, sa.Float(53), nullable=True) for c in EXTRA),
        # The database refuses what validation refuses, so no path around it stores bad bars.
        sa.CheckConstraint("low > 0 AND open > 0 AND close > 0", name="positive_prices"),
        sa.CheckConstraint("high >= low", name="high_not_below_low"),
    )


def _null(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class IngestResult:
    inserted: int
    unchanged: int
    replaced: int


class BarStore:
    """Bars in one table of the database at ``url``; the schema is created on first use."""

    def __init__(self, url: str = DEFAULT_STORE) -> None:
        try:
            self.engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
            raise KerastraderError(f"store {url!r}: {exc}") from None
        self.name = self.engine.url.render_as_string(hide_password=True)
        self.metadata = sa.MetaData()
        self.table = _table(self.metadata)
        try:
            self.metadata.create_all(self.engine)
            self._add_missing_columns()
        except sa.exc.OperationalError as exc:
            raise KerastraderError(f"store {self.name}: cannot open ({exc.orig})") from None

    def _add_missing_columns(self) -> None:
        """A store made before the corporate-action columns existed gets them (NULL)."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns(TABLE)}
        missing = [c for c in EXTRA if c not in have]
        if not missing:
            return
        with self.engine.begin() as conn:
            for col in missing:
                conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD COLUMN {col} DOUBLE PRECISION"))
        log.info("%s: added column(s) %s", self.name, ", ".join(missing))

    def ingest(
        self,
        bars: pd.DataFrame,
        symbol: str,
        timeframe: str = "1d",
        *,
        replace: bool = False,
        validate: bool = True,
    ) -> IngestResult:
        """Add validated bars; all or nothing.

        ``validate=False`` exists for tests of the transaction (the database's own checks
        still apply); users never need it.
        """
        source = bars.attrs.get("source", "bars")
        if validate:
            validate_bars(bars, source)
        frame = pd.DataFrame(
            {c: bars[c].to_numpy(dtype=np.float64) for c in CANONICAL},
            index=pd.DatetimeIndex(bars.index),
        )
        extra = {c: bars[c].to_numpy(dtype=np.float64) for c in EXTRA if c in bars}
        if frame.index.tz is not None:
            frame.index = frame.index.tz_convert("UTC").tz_localize(None)
        t = self.table
        with self.engine.begin() as conn:
            existing = self._existing(conn, symbol, timeframe, frame.index)
            new = frame[~frame.index.isin(existing.index)]
            known = frame[frame.index.isin(existing.index)]
            old = existing.loc[known.index]
            differs = ~np.isclose(known.to_numpy(), old.to_numpy(), rtol=_TOLERANCE, atol=0).all(
                axis=1
            )
            changed = known[differs]
            if len(changed) and not replace:
                when = changed.index[0]
                raise DataError(
                    source,
                    f"{symbol} {timeframe} bar at {when} is already stored with different values "
                    f"(stored close {old.loc[when, 'close']:g}, new {changed.loc[when, 'close']:g})"
                    f"; {len(changed)} bar(s) differ. Nothing was written; use --replace to "
                    "overwrite them",
                )
            if len(new):
                rows = self._records(new, symbol, timeframe)
                positions = frame.index.get_indexer(new.index)
                for c in EXTRA:
                    values = extra[c][positions].tolist() if c in extra else [None] * len(new)
                    for row, v in zip(rows, values, strict=True):
                        row[c] = None if v is None else _null(v)
                try:
                    conn.execute(t.insert(), rows)
                except sa.exc.IntegrityError as exc:
                    raise DataError(
                        source, f"the store refused the bars ({exc.orig}); nothing was written"
                    ) from None
            if len(changed):
                rows = self._records(changed, symbol, timeframe)
                self._update(conn, CANONICAL, rows)
            if extra and len(known):  # corporate actions for bars stored without them
                positions = frame.index.get_indexer(known.index)
                rows = [
                    {"symbol": symbol, "timeframe": timeframe, "ts": ts,
                     **{c: _null(extra[c][p]) for c in extra}}
                    for ts, p in zip(known.index.to_pydatetime(), positions, strict=True)
                ]  # fmt: skip
                self._update(conn, tuple(extra), rows)
        result = IngestResult(len(new), int((~differs).sum()), len(changed))
        log.info(
            "%s: %s %s: %d new, %d unchanged, %d replaced",
            self.name,
            symbol,
            timeframe,
            result.inserted,
            result.unchanged,
            result.replaced,
        )
        return result

    def _update(self, conn: sa.Connection, columns: tuple[str, ...], rows: list[dict]) -> None:
        """Set ``columns`` of the stored bars named by each row's symbol, timeframe and ts."""
        t = self.table
        conn.execute(
            t.update()
            .where(t.c.symbol == sa.bindparam("b_symbol"))
            .where(t.c.timeframe == sa.bindparam("b_timeframe"))
            .where(t.c.ts == sa.bindparam("b_ts"))
            .values({c: sa.bindparam(f"b_{c}") for c in columns}),
            [{f"b_{k}": r[k] for k in ("symbol", "timeframe", "ts", *columns)} for r in rows],
        )

    def _existing(
        self, conn: sa.Connection, symbol: str, timeframe: str, index: pd.DatetimeIndex
    ) -> pd.DataFrame:
        t = self.table
        if len(index) == 0:
            return pd.DataFrame(columns=list(CANONICAL), index=pd.DatetimeIndex([]))
        query = (
            sa.select(t.c.ts, *(t.c[c] for c in CANONICAL))
            .where(t.c.symbol == symbol, t.c.timeframe == timeframe)
            .where(t.c.ts >= index.min().to_pydatetime(), t.c.ts <= index.max().to_pydatetime())
        )
        rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["ts", *CANONICAL])
        return frame.set_index(pd.DatetimeIndex(frame["ts"])).drop(columns="ts").astype(float)

    @staticmethod
    def _records(frame: pd.DataFrame, symbol: str, timeframe: str) -> list[dict]:
        stamps = frame.index.to_pydatetime()
        cols = {c: frame[c].to_numpy().tolist() for c in CANONICAL}
        return [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "ts": stamps[i],
                **{c: cols[c][i] for c in CANONICAL},
            }
            for i in range(len(frame))
        ]

    def read(
        self,
        symbol: str,
        timeframe: str = "1d",
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Bars of one symbol and timeframe, oldest first, in the loaders' layout."""
        t = self.table
        columns = (*CANONICAL, *EXTRA)
        query = sa.select(t.c.ts, *(t.c[c] for c in columns)).where(
            t.c.symbol == symbol, t.c.timeframe == timeframe
        )
        if start:
            query = query.where(t.c.ts >= pd.Timestamp(start).to_pydatetime())
        if end:
            query = query.where(t.c.ts <= pd.Timestamp(end).to_pydatetime())
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.ts)).all()
        source = f"{self.name} {symbol} {timeframe}"
        if not rows:
            raise DataError(source, "no bars stored for this symbol, timeframe and period")
        frame = pd.DataFrame(rows, columns=["datetime", *columns])
        bars = (
            frame.set_index(pd.DatetimeIndex(frame["datetime"], name="datetime"))
            .drop(columns="datetime")
            .astype(float)
        )
        # A corporate-action column is part of the bars only when it was stored for them.
        bars = bars.drop(columns=[c for c in EXTRA if bars[c].isna().all()])
        for c in ("dividends", "splits"):
            if c in bars:
                bars[c] = bars[c].fillna(0.0)
        bars.attrs.update(source=source, notes=[])
        return bars

    def symbols(self) -> list[tuple[str, str, int]]:
        """(symbol, timeframe, bars) for everything stored."""
        t = self.table
        query = sa.select(t.c.symbol, t.c.timeframe, sa.func.count()).group_by(
            t.c.symbol, t.c.timeframe
        )
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query.order_by(t.c.symbol)).all()]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar())
