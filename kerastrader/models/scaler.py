"""The feature scaler: fitted on training rows only, saved with the model.

scikit-learn's StandardScaler does the fitting; its parameters are kept as plain arrays so the
artifact's JSON carries them and the per-bar path applies them without sklearn's per-call
validation overhead (tens of microseconds a call). Both paths use :meth:`transform`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class FittedScaler:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> FittedScaler:
        """Fit on ``rows`` (the training period's feature rows, never later ones)."""
        sk = StandardScaler().fit(np.asarray(rows, dtype=np.float64))
        return cls(mean=sk.mean_.copy(), scale=sk.scale_.copy())

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def to_dict(self) -> dict:
        return {"kind": "standard", "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> FittedScaler:
        return cls(
            mean=np.asarray(d["mean"], dtype=float), scale=np.asarray(d["scale"], dtype=float)
        )
