"""A leakage alarm: the configured pipeline on random-walk bars must not beat a coin.

On a random walk the next bar's direction is unpredictable by construction, so any
out-of-sample accuracy or AUC reliably away from 0.5 (more than three standard errors, either
way) means the pipeline sees the future: a look-ahead feature, a scaler fitted on the test
period, a misaligned label.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from kerastrader.config import Config

SIGMAS = 3.0  # how far above chance counts as "reliably"


def random_walk_like(bars: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Bars on the same timestamps with the same daily volatility, but no structure at all."""
    rng = np.random.default_rng(seed)
    n = len(bars)
    close0 = bars["close"].to_numpy()
    vol = float(np.nanstd(np.diff(np.log(close0)))) or 0.01
    close = close0[0] * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = close * np.exp(rng.normal(0.0, vol / 3, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 2, n)))
    volume = rng.lognormal(np.log(max(float(bars["volume"].median()), 1.0)), 0.5, n)
    out = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=bars.index,
    )
    out.attrs["source"] = f"random walk like {bars.attrs.get('source', 'the data')}"
    return out


@dataclass(frozen=True)
class LeakageResult:
    accuracy: float
    roc_auc: float | None
    n_test: int
    accuracy_z: float
    auc_z: float | None

    @property
    def leaks(self) -> bool:
        # Two-sided: being reliably *wrong* about a random walk needs the future just as much
        # (an under-trained model can learn a leaky feature with the sign flipped).
        return abs(self.accuracy_z) > SIGMAS or (
            self.auc_z is not None and abs(self.auc_z) > SIGMAS
        )

    def summary(self) -> str:
        auc = "n/a" if self.roc_auc is None else f"{self.roc_auc:.3f} ({self.auc_z:+.1f} sigma)"
        verdict = (
            "LEAK: the pipeline predicts a random walk; something sees the future"
            if self.leaks
            else "no leak detected: a random walk stays unpredictable"
        )
        return (
            f"random-walk test bars: {self.n_test}; accuracy {self.accuracy:.3f} "
            f"({self.accuracy_z:+.1f} sigma), ROC AUC {auc}. {verdict}"
        )


def check_leakage(cfg: Config, bars: pd.DataFrame, seed: int = 0) -> LeakageResult:
    """Train and test the configured pipeline on a random walk shaped like ``bars``."""
    from kerastrader.models.training import train

    walk = random_walk_like(bars, seed)
    result = train(walk, copy.deepcopy(cfg), {"source": walk.attrs["source"]})
    head = result.artifact.head
    # Every head is judged the same way: does its prediction tell whether the walk's close
    # rises over the horizon better than a coin? (P(up) above 0.5; the three-class score
    # P(up) + P(flat)/2 above 0.5; a predicted return above 0.)
    close = walk["close"].to_numpy()
    ends = result.test_ends
    y = (close[ends + head.horizon] > close[ends]).astype(int)
    threshold = 0.0 if head.kind == "regression" else 0.5
    accuracy = float(skm.accuracy_score(y, (result.p_test > threshold).astype(int)))
    n = len(y)
    n1 = int(y.sum())
    n0 = n - n1
    acc_z = (accuracy - 0.5) / math.sqrt(0.25 / n)
    auc, auc_z = None, None
    if n0 and n1:  # Hanley-McNeil standard error of AUC = 0.5
        auc = float(skm.roc_auc_score(y, result.p_test))
        auc_z = (auc - 0.5) / math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))
    return LeakageResult(accuracy, auc, n, acc_z, auc_z)
