"""Run files a session writes besides the report's (the run files are the interface): one
prediction per bar, and the targets decided at each rebalance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kerastrader.models.training import stamp


def write_predictions(path: Path, predictions: dict[str, pd.Series]) -> None:
    """One row per bar, the prediction empty during warm-up: ``date,prediction`` for one
    symbol, ``date,symbol,prediction`` for several."""
    frames = []
    for sym, series in predictions.items():
        frame = pd.DataFrame(
            {
                "date": [stamp(d) for d in series.index],
                "symbol": sym,
                "prediction": [None if math.isnan(p) else p for p in series],
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if len(predictions) == 1:
        out = out.drop(columns="symbol")
    else:
        out = out.sort_values(["date", "symbol"], kind="stable")
    out.to_csv(path, index=False, float_format="%.8f")


def write_targets(path: Path, symbols: list[str], decisions: list[tuple[str, np.ndarray]]) -> None:
    """``time,symbol,target``: the weights the strategy decided at each rebalance (after its
    limits), to set against what the positions became."""
    rows = [(when, sym, float(w)) for when, targets in decisions
            for sym, w in zip(symbols, targets, strict=True)]  # fmt: skip
    pd.DataFrame(rows, columns=["time", "symbol", "target"]).to_csv(
        path, index=False, float_format="%.8f"
    )
