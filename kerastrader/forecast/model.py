"""The sequence model of periodic returns: windows of W periods, each predicting the next.

Samples use the project's one window definition (:func:`kerastrader.models.windows.make_windows`):
the window ending at period t holds periods t-W+1..t and its target is period t+1, so nothing
a sample sees lies after t. Fitting on the rows up to an origin therefore uses nothing after
it (a test changes later returns and checks the forecast at the origin does not move).

One model per series (the portfolio alone, or each asset when ``periods.series = "assets"``),
each reading every series' window, built by :func:`kerastrader.models.builders.build_model`
with the regression head. With ``model.scale = "standard"`` inputs and targets are z-scores of
the training rows (the network learns in standard units; predictions are turned back into
returns); with ``"none"`` (the article) both stay raw, and the network is exactly the
article's. The last ``training.validation_fraction`` of the windows choose the epoch
(EarlyStopping on their loss, best weights restored); 0 trains every epoch on every window, as
the article does, in one pass over a dataset that reshuffles every epoch (the same batches as
``epochs`` separate epochs, without Keras' per-epoch overhead).

A rolling-origin evaluation refits the same architecture many times. Each architecture (and
seed) is built and traced once per process (:class:`_Slot`); a refit restores its initial
weights and optimizer state and reseeds, so it trains exactly as a freshly built model would,
and each :class:`Forecaster` keeps its own weights, loaded back before it predicts.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerastrader.errors import DataError
from kerastrader.forecast.spec import ForecastConfig
from kerastrader.models.windows import make_windows

log = logging.getLogger(__name__)


class _Slot:
    """One compiled model of an architecture and seed, reused by every fit of it."""

    def __init__(self, model: Any, window: int, k: int) -> None:
        import tensorflow as tf

        self.model = model
        model.optimizer.build(model.trainable_variables)
        self.initial = model.get_weights()
        self.optimizer_initial = [v.numpy() for v in model.optimizer.variables]
        spec = tf.TensorSpec((None, window, k), tf.float32, name="x")
        self.call = tf.function(lambda x: model(x, training=False), input_signature=(spec,))
        self.owner: int | None = None  # token of the Forecaster whose weights are loaded

    def reset(self) -> None:
        self.model.set_weights(self.initial)
        for var, value in zip(self.model.optimizer.variables, self.optimizer_initial, strict=True):
            var.assign(value)
        self.owner = None


_SLOTS: dict[tuple, _Slot] = {}  # insertion-ordered: the oldest is dropped past MAX_SLOTS
MAX_SLOTS = 8
_TOKENS = itertools.count()


def _slot(m: dict[str, Any], window: int, k: int, seed: int) -> _Slot:
    from kerastrader.models.builders import build_model
    from kerastrader.models.heads import Head
    from kerastrader.models.training import seed_everything

    key = (m["kind"], tuple(m["units"]), float(m["dropout"]), m["activation"],
           float(m["learning_rate"]), window, k, seed)  # fmt: skip
    if key not in _SLOTS:
        seed_everything(seed)
        model = build_model(
            m["kind"],
            window,
            k,
            units=m["units"],
            dropout=m["dropout"],
            activation=m["activation"],
            learning_rate=m["learning_rate"],
            head=Head("regression"),
        )
        _SLOTS[key] = _Slot(model, window, k)
        while len(_SLOTS) > MAX_SLOTS:
            _SLOTS.pop(next(iter(_SLOTS)))
    slot = _SLOTS[key]
    slot.reset()
    return slot


@dataclass
class Forecaster:
    """Fitted models (one per series), the scaling they read, and their residuals."""

    slots: list[_Slot]
    weights: list[list[np.ndarray]]  # each model's fitted weights
    mean: np.ndarray  # (k,) of the training rows (0 when unscaled)
    std: np.ndarray  # (k,) of the training rows (1 when unscaled)
    window: int
    residuals: np.ndarray  # (m, k): target - prediction, in returns
    info: dict[str, Any] = field(default_factory=dict)
    token: int = field(default_factory=lambda: next(_TOKENS))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Next-period returns (n, k) for windows (n, W, k) of returns: one batched call per
        model (a ``tf.function`` with a fixed input signature), never one per window."""
        x = ((np.asarray(windows, dtype=np.float64) - self.mean) / self.std).astype(np.float32)
        out = []
        for j, slot in enumerate(self.slots):
            if slot.owner != self.token:
                slot.model.set_weights(self.weights[j])
                slot.owner = self.token
            z = np.asarray(slot.call(x), dtype=np.float64)[:, 0]
            out.append(z * self.std[j] + self.mean[j])
        return np.column_stack(out)


def samples(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window ends t = W-1 .. n-2 and their targets' rows t+1."""
    n = len(series)
    ends = np.arange(window - 1, n - 1)
    return ends, ends + 1


def _train(slot: _Slot, x, y, n_train: int, n_val: int, t: dict[str, Any], seed: int) -> int:
    """Train ``slot``'s model by epochs of shuffled mini-batches (``train_on_batch`` on the
    compiled step: Keras' per-epoch machinery costs more than these tiny epochs); with
    validation windows, stop after ``patience`` epochs without a lower validation MSE and
    keep the best epoch's weights (EarlyStopping with restore_best_weights). Returns the
    epochs run."""
    from kerastrader.models.training import seed_everything

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    epochs, batch, patience = int(t["epochs"]), int(t["batch_size"]), int(t["patience"])
    model = slot.model
    best, best_weights, waited = np.inf, None, 0
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        for i in range(0, n_train, batch):
            rows = order[i : i + batch]
            model.train_on_batch(x[rows], y[rows])
        if not n_val:
            continue
        val = float(np.mean((np.asarray(slot.call(x[n_train:]))[:, 0] - y[n_train:]) ** 2))
        if val < best:
            best, best_weights, waited = val, model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:
                model.set_weights(best_weights)
                return epoch + 1
    if best_weights is not None:
        model.set_weights(best_weights)
    return epochs


def fit(series: np.ndarray, cfg: ForecastConfig, seed: int | None = None) -> Forecaster:
    """Fit on ``series`` (n periods, k series): every row given is history, none is future."""
    m, t = cfg["model"], cfg["training"]
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    window = int(m["window"])
    ends, targets = samples(series, window)
    if len(ends) < 2:
        raise DataError(
            "forecast", f"{len(series)} periods leave {len(ends)} windows of {window}: too few"
        )
    n_val = int(round(len(ends) * float(t["validation_fraction"])))
    n_val = min(n_val, len(ends) - 1)
    n_train = len(ends) - n_val
    last_train_row = int(targets[n_train - 1])
    k = series.shape[1]
    if m["scale"] == "standard":
        rows = series[: last_train_row + 1]
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        std = np.where(std > 0, std, 1.0)
    else:
        mean, std = np.zeros(k), np.ones(k)
    z = (series - mean) / std
    x = make_windows(z, ends, window)
    seed = int(t["seed"]) if seed is None else seed
    slots, weights, epochs = [], [], []
    for j in range(k):
        slot = _slot(m, window, k, seed + j)
        y = z[targets, j].astype(np.float32)
        epochs.append(_train(slot, x, y, n_train, n_val, t, seed + j))
        slots.append(slot)
        weights.append(slot.model.get_weights())
    fc = Forecaster(slots, weights, mean, std, window, np.zeros((0, k)))
    pred = fc.predict(make_windows(series, ends, window))  # predict() scales its input
    resid = series[targets] - pred
    use_val = cfg["forecast"]["residuals"] == "validation" and n_val > 0
    fc.residuals = resid[n_train:] if use_val else resid[:n_train]
    fc.info = {
        "kind": m["kind"],
        "units": list(m["units"]),
        "window": window,
        "scale": m["scale"],
        "series": k,
        "train_windows": n_train,
        "validation_windows": n_val,
        "epochs_run": epochs,
        "train_rmse": _rmse(resid[:n_train]),
        "validation_rmse": _rmse(resid[n_train:]) if n_val else None,
        "residuals_from": "validation" if use_val else "training",
        "residual_mean": float(np.mean(fc.residuals[:, 0])) if len(fc.residuals) else None,
        "residual_sd": float(np.std(fc.residuals[:, 0])) if len(fc.residuals) else None,
        "parameters": int(slots[0].model.count_params()),
    }
    return fc


def _rmse(resid: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(resid[:, 0]))))
