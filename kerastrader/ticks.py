"""Prices on an exchange's price grid, one rule for the backtest's brackets and IB's orders."""

from __future__ import annotations

import math
from decimal import Decimal


def on_tick(price: float, tick: float) -> float:
    """``price`` on the exchange's price grid: the nearest multiple of ``tick`` (ties to
    even, as a decimal), unchanged when ``tick`` is 0. An exchange refuses an off-grid stop or
    limit (IB's error 110), so the backtest places its brackets where a broker can."""
    if not tick or tick <= 0 or not math.isfinite(price):
        return price
    step = Decimal(repr(float(tick)))
    return float((Decimal(repr(float(price))) / step).quantize(Decimal(1)) * step)
