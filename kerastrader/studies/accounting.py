"""The originals' own arithmetic, applied to a run's predictions.

Tutorials score a model without a broker: ``position[t] = f(prediction[t])`` and
``return[t+1] = position[t] x (Close[t+1] / Close[t] - 1)`` (or the log return), summed or fed
to pyfolio, with no costs and a fill at the very close the prediction was made from. That is
not how kerastrader measures a strategy (next-open fills, costs, a benchmark), but a study
page must show the original's number computed the original's way, next to the honest one, so
that a reader sees which part of the difference is the accounting and which the model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError
from kerastrader.reports.stats import STAT_KEYS, json_number, perf_stats

log = logging.getLogger(__name__)

SIDES = ("long_short", "long_flat")


@dataclass(frozen=True)
class Accounting:
    """How the original turned predictions into returns.

    ``side``: ``long_short`` (``2 x signal - 1``, study C) or ``long_flat`` (study A).
    ``threshold``: the signal is ``prediction > threshold``. ``log_returns``: the per-bar
    return is ``log(Close[t+1] / Close[t])`` and is handed to pyfolio as if it were simple
    (study A's mistake); otherwise simple returns. ``blocks``: also score every run of this
    many consecutive bars (the original's test length) over the period, to show how much a
    single short test says.
    """

    side: str = "long_short"
    threshold: float = 0.5
    log_returns: bool = False
    blocks: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any], where: str) -> Accounting:
        unknown = set(spec) - {"side", "threshold", "log_returns", "blocks"}
        if unknown:
            raise ConfigError(f"{where}: unknown accounting keys {', '.join(sorted(unknown))}")
        acc = cls(
            side=str(spec.get("side", "long_short")),
            threshold=float(spec.get("threshold", 0.5)),
            log_returns=bool(spec.get("log_returns", False)),
            blocks=int(spec.get("blocks", 0)),
        )
        if acc.side not in SIDES:
            raise ConfigError(f"{where}: side = {acc.side!r}: expected one of {', '.join(SIDES)}")
        return acc

    def describe(self) -> str:
        side = "long or short (2 x signal - 1)" if self.side == "long_short" else "long or flat"
        kind = "log returns passed to pyfolio as simple" if self.log_returns else "simple returns"
        return (
            f"signal = prediction > {self.threshold:g}; {side}; position[t] x return to "
            f"Close[t+1] ({kind}); no costs, filled at the close it was predicted from"
        )


def original_returns(
    predictions: pd.Series, close: pd.Series, acc: Accounting
) -> tuple[pd.Series, pd.Series]:
    """(per-bar strategy returns dated t+1, positions dated t) on the predicted bars that
    have a next close. ``predictions`` and ``close`` share the bars' index."""
    close = close.astype(float)
    nxt = close.shift(-1)
    if acc.log_returns:
        step = np.log(nxt / close)
    else:
        step = nxt / close - 1.0
    known = predictions.notna() & step.notna()
    p = predictions[known]
    signal = (p > acc.threshold).astype(float)
    position = 2.0 * signal - 1.0 if acc.side == "long_short" else signal
    dates = close.index.to_series().shift(-1)[known]
    returns = pd.Series((position * step[known]).to_numpy(), index=pd.DatetimeIndex(dates))
    return returns, position


def score(predictions: pd.Series, close: pd.Series, acc: Accounting) -> dict[str, Any]:
    """The original's numbers: the plain sum of the returns (study C's "profit"), the
    compounded total, pyfolio's statistics on the series, hit rate, and the block spread."""
    returns, position = original_returns(predictions, close, acc)
    out: dict[str, Any] = {
        "accounting": acc.describe(),
        "bars": len(returns),
        "first": returns.index[0].date().isoformat() if len(returns) else None,
        "last": returns.index[-1].date().isoformat() if len(returns) else None,
        "sum_of_returns": json_number(returns.sum()),
        "compounded": json_number(
            math.expm1(returns.sum()) if acc.log_returns else (1 + returns).prod() - 1
        ),
        "long_share": json_number((position > 0).mean()) if len(position) else None,
        "hit_rate": json_number((returns > 0).mean()) if len(returns) else None,
    }
    if len(returns) >= 2:
        utc = returns.copy()
        utc.index = utc.index.tz_localize("UTC") if utc.index.tz is None else utc.index
        stats = perf_stats(utc)
        out["stats"] = {k: stats.get(k) for k in STAT_KEYS}
    else:
        out["stats"] = {k: None for k in STAT_KEYS}
    if acc.blocks > 0 and len(returns) >= acc.blocks:
        sums = returns.rolling(acc.blocks).sum().dropna().to_numpy()
        out["blocks"] = {
            "length": acc.blocks,
            "count": len(sums),
            "positive_share": json_number((sums > 0).mean()),
            "p05": json_number(np.percentile(sums, 5)),
            "median": json_number(np.median(sums)),
            "p95": json_number(np.percentile(sums, 95)),
        }
    return out
