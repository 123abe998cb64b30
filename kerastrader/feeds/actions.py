"""Dividends and splits from the bars, and the causal total-return prices built from them.

Yahoo's ``Close`` is split-adjusted but not dividend-adjusted; ``Adj Close`` is both. A
backtest on ``Close`` alone earns price returns (AGG 2017-2025: -10.9% where the holder
earned +9.7%) and shows every ex-dividend day to the model as a down bar. This module turns
what a file carries into two per-bar columns:

- ``dividend``: cash per share paid to holders of record at the close before the bar (the
  ex-date is the bar); 0 elsewhere;
- ``split``: new shares per old share, effective at the bar's open; 1 elsewhere.

Sources, in order: a ``dividends`` column (cash per share on the ex-date, as yfinance's
``Dividends``); otherwise ``Adj Close`` against ``Close``: with ``f = Adj Close / Close``
(constant between ex-dates, stepping up at each), ``d_t = Close[t-1] * (1 - f[t-1] / f[t])``,
counted only when the step exceeds :data:`DIVIDEND_STEP` (``Adj Close`` is rounded). A
``splits`` column (new per old, 0 or 1 meaning none) is applied only where the prices show
it, i.e. the close falls by about the ratio; on split-adjusted prices (Yahoo's, yfinance's
``Stock Splits``) it is noted and ignored, since applying it would count the split twice.

:func:`total_return_prices` is the causal total-return series the features and labels use:
each dividend and split enters on its ex-date, never before, so nothing at bar t depends on
any later bar (Yahoo's ``Adj Close`` rescales the whole past at every new dividend).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

DIVIDEND_STEP = 1e-4  # relative step of Adj Close / Close counted as a dividend
SPLIT_MATCH = 0.25  # a split shows in the prices when the close moves within 25% of 1 / ratio
ACTION_COLUMNS = ("dividend", "split")
RETURNS = ("total", "price")


def implied_dividends(close: np.ndarray, adj_close: np.ndarray) -> np.ndarray:
    """Cash dividend per share on each ex-date, from Yahoo's Adj Close against Close."""
    close = np.asarray(close, dtype=float)
    factor = np.asarray(adj_close, dtype=float) / close
    out = np.zeros(len(close))
    if len(close) < 2:
        return out
    step = 1.0 - factor[:-1] / factor[1:]
    counted = np.isfinite(step) & (step > DIVIDEND_STEP)
    out[1:][counted] = close[:-1][counted] * step[counted]
    return out


def corporate_actions(bars: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per-bar ``dividend`` and ``split`` columns for ``bars``, and a note saying where they
    came from (for the run's log and ``data.notes``)."""
    n = len(bars)
    close = bars["close"].to_numpy(dtype=float)
    dividend = np.zeros(n)
    split = np.ones(n)
    notes = []
    if "dividends" in bars:
        dividend = np.nan_to_num(bars["dividends"].to_numpy(dtype=float), nan=0.0)
        notes.append(f"{int((dividend > 0).sum())} dividends from the dividends column")
    elif "adj_close" in bars:
        dividend = implied_dividends(close, bars["adj_close"].to_numpy(dtype=float))
        notes.append(f"{int((dividend > 0).sum())} dividends implied by Adj Close / Close")
    if "splits" in bars:
        ratio = np.nan_to_num(bars["splits"].to_numpy(dtype=float), nan=0.0)
        ratio = np.where(ratio > 0, ratio, 1.0)
        rows = np.flatnonzero(ratio != 1.0)
        rows = rows[rows > 0]
        moved = close[rows] / close[rows - 1] * ratio[rows]
        shown = rows[np.abs(moved - 1.0) < SPLIT_MATCH]
        split[shown] = ratio[shown]
        notes.append(f"{len(shown)} splits applied from the splits column")
        if len(rows) > len(shown):
            notes.append(
                f"{len(rows) - len(shown)} splits in the splits column ignored: the prices are "
                "already split-adjusted there"
            )
    if not notes:
        notes.append("no dividends or splits in the data (no Adj Close or dividends column)")
    frame = pd.DataFrame({"dividend": dividend, "split": split}, index=bars.index)
    return frame, "; ".join(notes)


def total_return_prices(bars: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OHLCV with every dividend reinvested and every split undone, relative to the first bar.

    ``A[0] = Close[0]``, ``A[t] = A[t-1] * Close[t] / (Close[t-1] / split[t] - dividend[t])``:
    the reinvestment convention of Yahoo's Adj Close, so ``A[t] / A[s]`` equals
    ``AdjClose[t] / AdjClose[s]`` for the dividends counted. Open, high and low are scaled by
    the same factor as the close; volume is divided by the splits so far. Causal: ``A[t]``
    uses bars up to t only, and ratios inside any window do not depend on where the series
    starts, so a trailing look-back gives the full history's feature values.
    """
    out = dict(bars)
    close = np.asarray(bars["close"], dtype=float)
    n = len(close)
    dividend = np.asarray(bars.get("dividend", np.zeros(n)), dtype=float)
    split = np.asarray(bars.get("split", np.ones(n)), dtype=float)
    if n == 0 or (not dividend.any() and (split == 1.0).all()):
        return out
    ratio = np.ones(n)
    ratio[1:] = close[1:] / (close[:-1] / split[1:] - dividend[1:])
    factor = np.cumprod(ratio) * close[0] / close
    for col in ("open", "high", "low", "close"):
        if col in bars:
            out[col] = np.asarray(bars[col], dtype=float) * factor
    if "volume" in bars:
        splits_so_far = np.cumprod(np.where(np.arange(n) > 0, split, 1.0))
        out["volume"] = np.asarray(bars["volume"], dtype=float) / splits_so_far
    return out


def total_return_close(bars: pd.DataFrame) -> np.ndarray:
    """The causal total-return close of a frame that carries ``dividend``/``split`` columns
    (its plain close otherwise): what labels are computed on."""
    arrays = {c: bars[c].to_numpy(dtype=float) for c in ("close", *ACTION_COLUMNS) if c in bars}
    return total_return_prices(arrays)["close"]


def with_actions(bars: pd.DataFrame, returns: str) -> tuple[pd.DataFrame, str]:
    """``bars`` plus ``dividend`` and ``split`` columns: derived for ``returns = "total"``,
    none (0 and 1) for ``"price"``; and the note to log."""
    if returns not in RETURNS:
        from kerastrader.errors import ConfigError

        raise ConfigError(f"data.returns = {returns!r}: expected one of {', '.join(RETURNS)}")
    out = bars.copy()
    out.attrs.update(bars.attrs)
    if returns == "price":
        out["dividend"], out["split"] = 0.0, 1.0
        return out, "price returns (data.returns = price): dividends and splits not applied"
    actions, note = corporate_actions(bars)
    out["dividend"], out["split"] = actions["dividend"], actions["split"]
    return out, note
