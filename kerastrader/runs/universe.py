"""The bars of a run: the configured universe, loaded, validated, sessions and corporate actions
applied, and the period a model is tested on. Shared by the backtest and the paper session."""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.config import Config, embedded_data_path
from kerastrader.errors import ConfigError
from kerastrader.feeds.actions import with_actions
from kerastrader.feeds.frames import load_any
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.models.artifact import Artifact

log = logging.getLogger(__name__)


def _csv_options(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "date_format": d["date_format"],
        "adjust": d["adjust"],
        "missing": d["missing"],
        "columns": d["columns"] or None,
        "names": d["names"] or None,
        "timezone": d["timezone"],
    }


def _read_universe(d: dict[str, Any]) -> tuple[dict[str, pd.DataFrame], str, str | None]:
    """symbol -> raw bars, a description of the source, and the file's SHA-256 (one file)."""
    from kerastrader.feeds.loader import load_csv_symbols

    wanted = list(d["symbols"])
    if d["query"]:
        from kerastrader.feeds.frames import load_sql

        if not d["store"]:
            raise ConfigError("data.query needs data.store: the database URL to run it against")
        found = load_sql(d["store"], d["query"])
        if "" in found:  # no symbol column: one instrument, named data.symbol
            found = {d["symbol"]: found[""]}
        if not wanted:
            wanted = [d["symbol"]] if d["symbol"] in found else list(found)[:1]
        if wanted != ["*"]:
            missing = [s for s in wanted if s not in found]
            if missing:
                raise ConfigError(f"data.symbols: {', '.join(missing)} not in the query result")
            found = {s: found[s] for s in wanted}
        return found, f"{d['store']} query", None
    if d["store"]:
        from kerastrader.feeds.store import BarStore

        store = BarStore(d["store"])
        symbols = wanted if wanted and wanted != ["*"] else [d["symbol"]]
        if wanted == ["*"]:
            symbols = sorted({s for s, tf, _ in store.symbols() if tf == d["timeframe"]})
        universe = {s: store.read(s, d["timeframe"]) for s in symbols}
        return universe, f"{store.name} ({', '.join(symbols)} {d['timeframe']})", None
    path_text = d["path"] or str(embedded_data_path())
    if not wanted:
        bars = load_any(path_text, symbol=d["symbol"], **_csv_options(d))
        return {d["symbol"]: bars}, path_text, bars.attrs.get("sha256")
    files = sorted(glob.glob(path_text)) if glob.has_magic(path_text) else [path_text]
    if not files:
        raise ConfigError(f"data.path = {path_text!r} matches no file")
    universe: dict[str, pd.DataFrame] = {}
    for f in files:
        if Path(f).suffix.lower() in (".parquet", ".pq"):
            from kerastrader.feeds.loader import default_symbol

            universe[default_symbol(f)] = load_any(f, **_csv_options(d))
        else:
            universe.update(load_csv_symbols(f, **_csv_options(d)))
    if wanted != ["*"]:
        missing = [s for s in wanted if s not in universe]
        if missing:
            raise ConfigError(
                f"data.symbols: {', '.join(missing)} not in {path_text} "
                f"(it holds {', '.join(sorted(universe))})"
            )
        universe = {s: universe[s] for s in wanted}
    digest = universe[next(iter(universe))].attrs.get("sha256") if len(files) == 1 else None
    return universe, path_text, digest


def load_universe(cfg: Config) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The configured bars per symbol (one symbol unless ``data.symbols`` lists several)."""
    d = cfg["data"]
    universe, path_text, digest = _read_universe(d)
    notes: list[str] = []
    look_ahead: list[str] = []  # data repairs that read later bars (data.missing = interpolate)
    for sym, bars in list(universe.items()):
        notes += [f"{sym}: {n}" if len(universe) > 1 else n for n in bars.attrs.get("notes", [])]
        if bars.attrs.get("look_ahead"):
            look_ahead.append(f"{sym}: {bars.attrs['look_ahead']}")
        if d["session_start"] or d["session_end"]:
            from kerastrader.feeds.resample import filter_session

            before = len(bars)
            bars = filter_session(
                bars, d["session_start"] or "00:00", d["session_end"] or "23:59:59", d["timezone"]
            )
            notes.append(f"{sym}: session filter kept {len(bars)} of {before} bars")
        if d["resample"]:
            from kerastrader.feeds.resample import resample_bars

            before = len(bars)
            bars = resample_bars(bars, d["resample"], ExchangeClock.from_config(d))
            notes.append(f"{sym}: resampled {before} bars to {len(bars)} {d['resample']} bars")
        if not intraday_bars(bars):
            from kerastrader.feeds.gaps import gap_report

            gaps = gap_report(bars, d["calendar"])
            notes += [f"{sym}: {n}" if len(universe) > 1 else n for n in gaps]
        bars, note = with_actions(bars, d["returns"])
        log.info("%s: %s", sym, note)
        notes.append(f"{sym}: {note}" if len(universe) > 1 else note)
        universe[sym] = bars
    info = {
        "path": path_text,
        "sha256": digest,
        "symbol": d["symbol"] if len(universe) == 1 else None,
        "symbols": list(universe),
        "rows": int(sum(len(b) for b in universe.values())),
        "first": min(b.index[0] for b in universe.values()).date().isoformat(),
        "last": max(b.index[-1] for b in universe.values()).date().isoformat(),
        "bar_seconds": _spacing(universe),
        "adjust": d["adjust"],
        "returns": d["returns"],
        "missing": d["missing"],
        "date_format": d["date_format"],
        "notes": notes,
        "look_ahead": "; ".join(look_ahead) or None,
    }
    return universe, info


def _spacing(universe: dict[str, pd.DataFrame]) -> int:
    """Seconds between bars (the median step; a day for daily bars): the model's timeframe,
    which a live session trades."""
    steps = [pd.Series(b.index).diff().median() for b in universe.values() if len(b) > 1]
    steps = [s for s in steps if pd.notna(s)]
    if not steps or min(steps) >= pd.Timedelta("1D"):
        return 86_400
    return int(min(steps).total_seconds())


def intraday_bars(bars: pd.DataFrame) -> bool:
    return bool((bars.index != bars.index.normalize()).any())


def load_bars(cfg: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The configured single instrument's bars."""
    universe, info = load_universe(cfg)
    if len(universe) != 1:
        raise ConfigError("load_bars reads one symbol; data.symbols lists several")
    return next(iter(universe.values())), info


def _date_index(bars: pd.DataFrame, text: str, key: str, side: str) -> int:
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"backtest.{key} = {text!r}: not a date (YYYY-MM-DD)") from None
    idx = int(bars.index.searchsorted(when, side=side))
    return idx if side == "left" else idx - 1


def backtest_period(
    bars: pd.DataFrame, cfg: Config, artifact: Artifact, symbol: str | None = None
) -> tuple[int, int, bool]:
    """Row numbers of the first and last traded bar (by default the model's test period), and
    whether the period overlaps the data the model was fitted on (same file or symbol)."""
    b = cfg["backtest"]
    start_text = b["start"] or artifact.metadata.get("periods", {}).get("test", [""])[0]
    first = _date_index(bars, start_text, "start", "left") if start_text else 0
    last = _date_index(bars, b["end"], "end", "right") if b["end"] else len(bars) - 1
    first = max(first, artifact.warmup - 1)
    span = f"{bars.index[0].date()} .. {bars.index[-1].date()}"
    if first > last or first >= len(bars):
        raise ConfigError(
            f"backtest period {start_text or 'start'} .. {b['end'] or 'end'} has no bars after the "
            f"{artifact.warmup}-bar warm-up in the data ({span})"
        )
    periods = artifact.metadata.get("periods", {})
    trained_on = artifact.metadata.get("data", {})
    symbol = symbol or cfg["data"]["symbol"]
    same_data = (
        trained_on.get("sha256") == bars.attrs.get("sha256")
        or trained_on.get("symbol") == symbol
        or symbol in (trained_on.get("symbols") or [])
    )
    in_sample = False
    if same_data and "validation" in periods:
        fit_end = pd.Timestamp(periods["validation"][1])
        if bars.index[first] <= fit_end:
            in_sample = True
            log.warning(
                "the backtest starts %s, inside the model's training/validation periods "
                "(until %s): results are in-sample",
                bars.index[first].date(),
                fit_end.date(),
            )
    return first, last, in_sample
