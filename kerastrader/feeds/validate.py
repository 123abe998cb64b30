"""One schema for bars, checked in one place, whatever the source.

Every check is vectorised (a numpy mask, the first offending row by ``argmax``) so that a
million bars validate in a fraction of the time pandas takes to read them, and stops at the
first problem with a :class:`DataError` naming the source, the row and what is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kerastrader.errors import DataError

PRICES = ("open", "high", "low", "close")
CANONICAL = (*PRICES, "volume")


def _row(line_numbers: np.ndarray | None, position: int) -> int:
    return int(line_numbers[position]) if line_numbers is not None else int(position)


def _first(mask: np.ndarray) -> int | None:
    return int(mask.argmax()) if mask.any() else None


def check_index(
    index: pd.DatetimeIndex, source: str, line_numbers: np.ndarray | None = None
) -> None:
    """Timestamps strictly increasing: no duplicates, nothing out of order."""
    values = index.asi8
    if len(values) < 2:
        return
    step = np.diff(values)
    bad = _first(step <= 0)
    if bad is not None:
        here, before = index[bad + 1], index[bad]
        what = "duplicate timestamp" if step[bad] == 0 else "timestamp out of order"
        raise DataError(
            source,
            f"{what}: {here} follows {before} (row {_row(line_numbers, bad)})",
            _row(line_numbers, bad + 1),
        )


def validate_bars(
    bars: pd.DataFrame, source: str, line_numbers: np.ndarray | None = None
) -> pd.DataFrame:
    """Check a frame with the canonical columns and a DatetimeIndex; return it unchanged.

    ``line_numbers[i]`` is the source line of row i (for a file: 1-based, header = line 1);
    without it, rows are reported by 0-based position.
    """
    missing = [c for c in CANONICAL if c not in bars.columns]
    if missing:
        raise DataError(source, f"missing column(s) {', '.join(missing)}")
    if len(bars) == 0:
        raise DataError(source, "no bars (the data has no rows)")
    check_index(pd.DatetimeIndex(bars.index), source, line_numbers)

    values = {c: bars[c].to_numpy(dtype=np.float64) for c in CANONICAL}
    for col in CANONICAL:
        bad = _first(~np.isfinite(values[col]))
        if bad is not None:
            raise DataError(
                source, f"{col} is empty or not a finite number", _row(line_numbers, bad)
            )
    for col in PRICES:
        bad = _first(values[col] <= 0)
        if bad is not None:
            raise DataError(
                source,
                f"{col} must be positive, got {values[col][bad]:g}",
                _row(line_numbers, bad),
            )
    bad = _first(values["volume"] < 0)
    if bad is not None:
        raise DataError(
            source, f"volume is negative ({values['volume'][bad]:g})", _row(line_numbers, bad)
        )
    high, low = values["high"], values["low"]
    bad = _first(high < low)
    if bad is not None:
        raise DataError(
            source,
            f"High ({high[bad]:g}) is below Low ({low[bad]:g})",
            _row(line_numbers, bad),
        )
    for col in ("open", "close"):
        v = values[col]
        bad = _first((v < low) | (v > high))
        if bad is not None:
            raise DataError(
                source,
                f"{col.capitalize()} ({v[bad]:g}) is outside [Low, High] = "
                f"[{low[bad]:g}, {high[bad]:g}]",
                _row(line_numbers, bad),
            )
    return bars
