"""Training: chronological splits, a scaler fitted on training rows, the LSTM, the artifact.

The one training path. Every sample is a window ending at bar t with the label of bar t
(Close[t+1] > Close[t]). Samples are assigned to train / validation / test by the date of t;
the last ``horizon`` samples of the training and validation periods are purged, because their
labels look into the next period. The scaler sees only feature rows up to the last training
sample. EarlyStopping watches the validation period, never the test period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.config import Config
from kerastrader.errors import ConfigError
from kerastrader.models.artifact import Artifact, library_versions
from kerastrader.models.evaluation import classification_metrics
from kerastrader.models.features import FeatureSet
from kerastrader.models.labels import DIRECTION_DEFINITION, direction_label
from kerastrader.models.scaler import FittedScaler
from kerastrader.models.windows import make_windows, window_ends

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class Dataset:
    """Features, labels and the window ends of each split, all on the bars' row numbers."""

    dates: pd.DatetimeIndex
    features: np.ndarray
    labels: np.ndarray
    ends: dict[str, np.ndarray]

    def period(self, split: str) -> tuple[str, str]:
        idx = self.ends[split]
        return (self.dates[idx[0]].date().isoformat(), self.dates[idx[-1]].date().isoformat())


def _boundary(dates: pd.DatetimeIndex, text: str, key: str) -> int:
    """Row number of the last bar on or before the date ``text``."""
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"split.{key} = {text!r}: not a date (YYYY-MM-DD)") from None
    return int(dates.searchsorted(when, side="right")) - 1


def split_dataset(
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    window: int,
    split: dict[str, Any],
    horizon: int = 1,
) -> Dataset:
    """Compute features and labels and assign every labelled window to one split."""
    dates = pd.DatetimeIndex(bars.index)
    features = feature_set.compute(bars)
    labels = direction_label(bars["close"].to_numpy())
    ends = window_ends(~np.isnan(features).any(axis=1), window)
    ends = ends[~np.isnan(labels[ends])]
    if len(ends) < 3:
        raise ConfigError(
            f"only {len(ends)} labelled windows: the data has {len(bars)} bars but the features "
            f"need {feature_set.lookback} and the window {window}"
        )
    if split["train_end"]:
        if not split["validation_end"]:
            raise ConfigError("split.validation_end is required when split.train_end is set")
        last_train = _boundary(dates, split["train_end"], "train_end")
        last_val = _boundary(dates, split["validation_end"], "validation_end")
        if pd.Timestamp(split["validation_end"]) <= pd.Timestamp(split["train_end"]):
            raise ConfigError("split: validation_end must come after train_end")
    else:
        n = len(ends)
        fractions = split["train_fraction"], split["validation_fraction"]
        if min(fractions) <= 0 or sum(fractions) >= 1:
            raise ConfigError(
                "split: train_fraction and validation_fraction must be positive "
                "and leave a test period (sum below 1)"
            )
        last_train = int(ends[int(n * fractions[0]) - 1])
        last_val = int(ends[int(n * sum(fractions)) - 1])
    out = {
        # Purge: a label at t uses Close[t + horizon], which must lie in the same period.
        "train": ends[ends + horizon <= last_train],
        "validation": ends[(ends > last_train) & (ends + horizon <= last_val)],
        "test": ends[ends > last_val],
    }
    span = f"{dates[0].date()} .. {dates[-1].date()}"
    for name, idx in out.items():
        if len(idx) == 0:
            raise ConfigError(
                f"split: the {name} period has no labelled windows (data {span}, "
                f"train_end {dates[max(last_train, 0)].date()}, "
                f"validation_end {dates[max(last_val, 0)].date()})"
            )
    return Dataset(dates=dates, features=features, labels=labels, ends=out)


ONNX_TOLERANCE = 1e-5


def verify_onnx(artifact: Artifact, windows: np.ndarray, expected: np.ndarray) -> dict:
    """Export the model to ONNX and check it on the test windows against Keras.

    The bar-by-bar pass runs the ONNX model, the vectorised pass the Keras one: they must
    agree, so a difference above the tolerance stops training with an error, not a warning.
    """
    import onnxruntime as ort

    from kerastrader.models.inference import export_onnx

    artifact.onnx_bytes = export_onnx(artifact.model, artifact.window, artifact.n_features)
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run(None, {name: np.asarray(windows, dtype=np.float32)})[0].reshape(-1)
    diff = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    if diff > ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from Keras by {diff:.2e} on the test windows")
    log.info(
        "ONNX export agrees with Keras on %d test windows (max |diff| %.1e)", len(expected), diff
    )
    return {
        "checked_windows": int(len(expected)),
        "max_abs_diff": diff,
        "tolerance": ONNX_TOLERANCE,
    }


def seed_everything(seed: int) -> None:
    """Same seed, same numbers: Python, NumPy and TensorFlow seeds plus deterministic ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _class_weights(y: np.ndarray) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


@dataclass
class TrainResult:
    artifact: Artifact
    test_ends: np.ndarray
    y_test: np.ndarray
    p_test: np.ndarray
    dataset: Dataset  # the first (or only) symbol's
    datasets: dict[str, Dataset]


def train(
    bars: pd.DataFrame | dict[str, pd.DataFrame], cfg: Config, data_info: dict[str, Any]
) -> TrainResult:
    """Train the configured LSTM and return an (unsaved) artifact.

    ``bars`` is one instrument or several (symbol -> bars): several train one shared model on
    all their windows, each split by the same dates, ordered by date, with one scaler fitted
    on every symbol's training rows.
    """
    import keras

    from kerastrader.models.builders import build_model
    from kerastrader.models.progress import EpochProgress

    feature_set = FeatureSet(cfg["features"]["names"], memory=cfg["features"]["memory"])
    m, t = cfg["model"], cfg["training"]
    window = int(m["window"])
    universe = bars if isinstance(bars, dict) else {str(data_info.get("symbol", "data")): bars}
    datasets = {
        sym: split_dataset(b, feature_set, window, cfg["split"], cfg["label"]["horizon"])
        for sym, b in universe.items()
    }
    ds = next(iter(datasets.values()))
    scaler = FittedScaler.fit(
        np.concatenate(
            [
                d.features[feature_set.lookback - 1 : d.ends["train"][-1] + 1]
                for d in datasets.values()
            ]
        )
    )
    scaled = {sym: scaler.transform(d.features) for sym, d in datasets.items()}

    def xy(split: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys, when = [], [], []
        for sym, d in datasets.items():
            idx = d.ends[split]
            xs.append(make_windows(scaled[sym], idx, window))
            ys.append(d.labels[idx].astype(np.float32))
            when.append(d.dates[idx].asi8)
        order = np.argsort(np.concatenate(when), kind="stable")  # by date across symbols
        return np.concatenate(xs)[order], np.concatenate(ys)[order]

    x_train, y_train = xy("train")
    x_val, y_val = xy("validation")
    x_test, y_test = xy("test")
    log.info("windows: train %d, validation %d, test %d", len(x_train), len(x_val), len(x_test))

    seed_everything(int(t["seed"]))
    model = build_model(
        m["kind"],
        window,
        len(feature_set),
        m["units"],
        m["dropout"],
        m["activation"],
        m["learning_rate"],
        bidirectional=m["bidirectional"],
        kernel_size=m["kernel_size"],
        heads=m["heads"],
    )
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=int(t["patience"]), restore_best_weights=True
        ),
        EpochProgress(int(t["epochs"])),
    ]
    weights = _class_weights(y_train.astype(int)) if t["class_weights"] else None
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=int(t["epochs"]),
        batch_size=int(t["batch_size"]),
        shuffle=False,  # no shuffling across time
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
    )
    losses = history.history["val_loss"]
    log.info(
        "trained %d of %d epochs; best validation loss %.4f at epoch %d (weights restored)",
        len(losses),
        int(t["epochs"]),
        float(np.min(losses)),
        int(np.argmin(losses)) + 1,
    )
    artifact = Artifact(model=model, metadata={})
    artifact.metadata = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": f"{m['kind']}_direction",
        "features": feature_set.to_dict(),
        "window": window,
        "n_features": len(feature_set),
        "warmup_bars": feature_set.lookback + window - 1,
        "scaler": scaler.to_dict(),
        "label": {"kind": "direction", "horizon": 1, "definition": DIRECTION_DEFINITION},
        "model": {
            k: m[k]
            for k in (
                "kind",
                "units",
                "dropout",
                "activation",
                "learning_rate",
                "bidirectional",
                "kernel_size",
                "heads",
            )
        },
        "training": {
            "epochs": int(t["epochs"]),
            "epochs_run": len(losses),
            "best_epoch": int(np.argmin(losses)) + 1,
            "best_val_loss": float(np.min(losses)),
            "batch_size": int(t["batch_size"]),
            "class_weights": weights,
            "seed": int(t["seed"]),
            "samples": {s: int(sum(len(d.ends[s]) for d in datasets.values())) for s in SPLITS},
        },
        "periods": {
            s: [
                min(d.period(s)[0] for d in datasets.values()),
                max(d.period(s)[1] for d in datasets.values()),
            ]
            for s in SPLITS
        },
        "symbols": list(datasets),
        "data": data_info,
        "versions": library_versions(),
    }
    predict = artifact.batch_predictor
    p_val, p_test = predict(x_val), predict(x_test)
    artifact.metadata["metrics"] = {
        "validation": classification_metrics(y_val, p_val),
        "test": classification_metrics(y_test, p_test),
    }
    artifact.metadata["onnx"] = verify_onnx(artifact, x_test, p_test)
    return TrainResult(artifact, ds.ends["test"], y_test.astype(int), p_test, ds, datasets)
