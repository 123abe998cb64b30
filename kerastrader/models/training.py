"""Training: chronological splits, a scaler fitted on training rows, the LSTM, the artifact.

The one training path. Every sample is a window ending at bar t with the label of bar t
(Close[t+1] > Close[t]). Samples are assigned to train / validation / test by the date of t;
the last ``horizon`` samples of the training and validation periods are purged, because their
labels look into the next period. The scaler sees only feature rows up to the last training
sample. EarlyStopping watches the validation period, never the test period.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.config import Config
from kerastrader.errors import ConfigError
from kerastrader.feeds.actions import total_return_close
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.models.artifact import Artifact, library_versions
from kerastrader.models.correlation_image import frame_peers
from kerastrader.models.features import FeatureSet
from kerastrader.models.heads import Head
from kerastrader.models.images import image_spec, model_inputs
from kerastrader.models.scaler import FittedScaler
from kerastrader.models.text_encoder import text_front, text_scaler
from kerastrader.models.text_features import for_symbol, with_text
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


def _date_only(text: Any) -> bool:
    """``"2008-12-31"`` (or a ``datetime.date``), as opposed to a date with a time."""
    if isinstance(text, str):
        try:
            date.fromisoformat(text.strip())
        except ValueError:
            return False
        return True
    return isinstance(text, date) and not isinstance(text, datetime)


def _boundary(
    dates: pd.DatetimeIndex, text: Any, key: str, days: pd.DatetimeIndex | None = None
) -> int:
    """Row number of the last bar on or before ``text``. A date includes every bar of that
    trading day (``days``: each bar's exchange trading date, by default its UTC date), so an
    inclusive ``train_end`` keeps the day's intraday bars; a date and time is that instant."""
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"split.{key} = {text!r}: not a date (YYYY-MM-DD)") from None
    if _date_only(text):
        trading = days if days is not None else dates.normalize()
        return int(trading.searchsorted(when.normalize(), side="right")) - 1
    return int(dates.searchsorted(when, side="right")) - 1


def split_dataset(
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    window: int,
    split: dict[str, Any],
    horizon: int = 1,
    head: Head | None = None,
    clock: ExchangeClock | None = None,
    require: bool = True,
) -> Dataset:
    """Compute features and labels and assign every labelled window to one split.

    Besides the configured keys, ``split`` may carry ``train_start`` and ``test_end`` (dates;
    walk-forward folds use them) and ``embargo`` (extra bars dropped before each boundary).
    ``require=False`` (one instrument of a book) lets a split be empty: an instrument that
    started trading after the training period has no training windows; :func:`book_datasets`
    checks the book as a whole.
    """
    head = head or Head("direction", horizon)
    dates = pd.DatetimeIndex(bars.index)
    days = (clock or ExchangeClock()).trading_days(dates)  # what a boundary date includes
    features = feature_set.compute(bars)
    labels = head.labels(total_return_close(bars))  # an ex-dividend day is not a down bar
    ends = window_ends(~np.isnan(features).any(axis=1), window)
    ends = ends[~np.isnan(labels[ends])]
    if len(ends) < 3 and require:
        raise ConfigError(
            f"only {len(ends)} labelled windows: the data has {len(bars)} bars but the features "
            f"need {feature_set.lookback} and the window {window}"
        )
    if split["train_end"]:
        if not split["validation_end"]:
            raise ConfigError("split.validation_end is required when split.train_end is set")
        last_train = _boundary(dates, split["train_end"], "train_end", days)
        last_val = _boundary(dates, split["validation_end"], "validation_end", days)
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
        k_train, k_val = int(n * fractions[0]) - 1, int(n * sum(fractions)) - 1
        last_train = int(ends[k_train]) if k_train >= 0 else -1  # (too few: none, not ends[-1])
        last_val = int(ends[k_val]) if k_val >= 0 else -1
    first_train = 0
    if split.get("train_start"):
        first_train = int(dates.searchsorted(pd.Timestamp(split["train_start"]), side="left"))
    last_test = (
        _boundary(dates, split["test_end"], "test_end", days) if split.get("test_end") else None
    )
    gap = horizon + int(split.get("embargo", 0))
    test = ends[ends > last_val]
    if last_test is not None:
        test = test[test <= last_test]
    out = {
        # Purge: a label at t uses Close[t + horizon], which must lie in the same period;
        # the embargo drops a further number of bars before each boundary.
        "train": ends[(ends >= first_train) & (ends + gap <= last_train)],
        "validation": ends[(ends > last_train) & (ends + gap <= last_val)],
        "test": test,
    }
    span = f"{dates[0].date()} .. {dates[-1].date()}" if len(dates) else "no bars"
    for name, idx in out.items():
        if len(idx) == 0 and require:
            raise ConfigError(
                f"split: the {name} period has no labelled windows (data {span}, "
                f"train_end {dates[max(last_train, 0)].date()}, "
                f"validation_end {dates[max(last_val, 0)].date()})"
            )
    return Dataset(dates=dates, features=features, labels=labels, ends=out)


def book_datasets(
    universe: dict[str, pd.DataFrame],
    feature_set: FeatureSet,
    window: int,
    split: dict[str, Any],
    head: Head,
    clock: ExchangeClock | None = None,
) -> dict[str, Dataset]:
    """Every instrument's :func:`split_dataset`. One instrument must fill every split; in a
    book each split needs windows from at least one instrument: an instrument that began
    trading after the training period (a walk-forward fold's, or a static split's) has none
    there, and the shared model learns from the others and predicts it all the same. A book's
    text features read each instrument's own items (``for_symbol``)."""
    alone = len(universe) == 1  # then split_dataset itself requires every split
    datasets = {
        sym: split_dataset(b, for_symbol(feature_set, sym), window, split, head.horizon, head,
                           clock=clock, require=alone)
        for sym, b in universe.items()
    }  # fmt: skip
    if alone:
        return datasets
    for name in SPLITS:
        if not any(len(d.ends[name]) for d in datasets.values()):
            raise ConfigError(
                f"split: the {name} period has no labelled windows in any of "
                f"{', '.join(universe)} (train_end {split.get('train_end') or '-'}, "
                f"validation_end {split.get('validation_end') or '-'})"
            )
        absent = [sym for sym, d in datasets.items() if not len(d.ends[name])]
        if absent and name == "train":
            log.info("%s: no training windows in this period (trading began later): the "
                     "shared model learns from the others", ", ".join(absent))  # fmt: skip
    return datasets


ONNX_TOLERANCE = 1e-5


def verify_onnx(artifact: Artifact, windows: np.ndarray, expected: np.ndarray) -> dict:
    """Export the model to ONNX and check it on the test windows against Keras.

    The bar-by-bar pass runs the ONNX model, the vectorised pass the Keras one: they must
    agree, so a difference above the tolerance stops training with an error, not a warning.
    """
    import onnxruntime as ort

    from kerastrader.models.inference import export_onnx

    artifact.onnx_bytes = export_onnx(artifact.model, *artifact.input_dims)
    from kerastrader.runs.budget import onnx_session_options

    session = ort.InferenceSession(
        artifact.onnx_bytes, onnx_session_options(), providers=["CPUExecutionProvider"]
    )  # its threads within the job's CPU budget (default: every core)
    name = session.get_inputs()[0].name
    got = session.run(None, {name: np.asarray(windows, dtype=np.float32)})[0]
    got = got.reshape(len(expected), -1) if len(expected) else got
    expected = np.asarray(expected).reshape(len(expected), -1)
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


def recency_weights(age_bars: np.ndarray, halflife: float) -> np.ndarray:
    """Weight 1 for the newest training sample, halving every ``halflife`` bars back."""
    if halflife <= 0:
        return np.ones(len(age_bars))
    return np.power(0.5, np.asarray(age_bars, dtype=float) / float(halflife))


@dataclass
class TrainResult:
    artifact: Artifact
    test_ends: np.ndarray
    y_test: np.ndarray
    p_test: np.ndarray  # the head's one number per test window (what the indicator shows)
    dataset: Dataset  # the first (or only) symbol's
    datasets: dict[str, Dataset]
    outputs_test: np.ndarray | None = None  # the model's raw outputs on the test windows


@dataclass
class _Prepared:
    feature_set: FeatureSet
    datasets: dict[str, Dataset]
    scaler: FittedScaler
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    age: np.ndarray  # bars between each training sample and its symbol's last training sample
    image: Any = None  # model.input = "image": the ImageSpec that rendered x


def _prepare(
    universe: dict[str, pd.DataFrame], names: list[str], cfg: Config, head: Head
) -> _Prepared:
    # [text]: the numeric features plus each bar's text columns (models/text_features.py)
    feature_set = FeatureSet(names, memory=cfg["features"]["memory"])
    feature_set = with_text(feature_set, cfg, universe, head)
    window = int(cfg["model"]["window"])
    clock = ExchangeClock.from_config(cfg["data"])
    datasets = book_datasets(universe, feature_set, window, cfg["split"], head, clock)
    scaler = FittedScaler.fit(
        np.concatenate(
            [
                d.features[d.ends["train"][0] - window + 1 : d.ends["train"][-1] + 1]
                for d in datasets.values()
                if len(d.ends["train"])
            ]
        )
    )
    scaler = text_scaler(scaler, feature_set)  # token id columns stay ids
    scaled = {sym: scaler.transform(d.features) for sym, d in datasets.items()}
    image = image_spec(cfg, feature_set.names, list(universe))  # None: plain windows
    peers = frame_peers(universe, image.universe) if image and image.reads_universe else {}
    x, y = {}, {}
    age = np.empty(0)
    for split in SPLITS:
        xs, ys, when, ages = [], [], [], []
        for sym, d in datasets.items():
            idx = d.ends[split]
            w = make_windows(scaled[sym], idx, window)
            xs.append(model_inputs(image, w, universe[sym], idx, peers.get(sym)))  # images
            ys.append(d.labels[idx].astype(np.float32))
            when.append(d.dates[idx].asi8)
            ages.append((d.ends["train"][-1] if len(d.ends["train"]) else 0) - idx)
        order = np.argsort(np.concatenate(when), kind="stable")  # by date across symbols
        x[split], y[split] = np.concatenate(xs)[order], np.concatenate(ys)[order]
        if split == "train":
            age = np.concatenate(ages)[order]
    return _Prepared(feature_set, datasets, scaler, x, y, age, image)


def _select(
    universe: dict[str, pd.DataFrame], cfg: Config, head: Head
) -> tuple[list[str], dict[str, Any] | None]:
    """Feature selection on the training rows only (the feature row at each training window's
    last bar against its label); returns the chosen names and what was decided."""
    sel = cfg["selection"]
    names = list(cfg["features"]["names"])
    if not sel["method"]:
        return names, None
    from kerastrader.models.selection import select_features

    feature_set = FeatureSet(names, memory=cfg["features"]["memory"])
    window = int(cfg["model"]["window"])
    xs, ys, when = [], [], []
    clock = ExchangeClock.from_config(cfg["data"])
    for d in book_datasets(universe, feature_set, window, cfg["split"], head, clock).values():
        idx = d.ends["train"]
        xs.append(d.features[idx])
        ys.append(d.labels[idx])
        when.append(d.dates[idx].asi8)
    order = np.argsort(np.concatenate(when), kind="stable")
    y = np.concatenate(ys)[order]
    result = select_features(
        np.concatenate(xs)[order],
        y if head.task == "regression" else y.astype(int),
        names,
        sel["method"],
        task=head.task,
        seed=int(cfg["training"]["seed"]),
        min_features=int(sel["min_features"]),
        max_features=int(sel["max_features"]),
        horizon=head.horizon,
    )
    log.info("feature selection (%s) kept %s of %s", sel["method"], result.selected, names)
    return list(result.selected), {"candidates": names, **result.to_dict()}


def _builder(
    cfg: Config, window: int, n_features: int, head: Head, y_train: np.ndarray, front
) -> Callable[[dict[str, Any]], Any]:
    """A function from model hyperparameters to a compiled model (the tuner calls it too)."""
    mean = float(np.mean(y_train)) if head.kind == "regression" else 0.0
    std = float(np.std(y_train)) if head.kind == "regression" else 1.0
    std = std if std > 0 else 1.0
    return _ModelBuilder(window, n_features, head, mean, std, front)


@dataclass
class _ModelBuilder:
    """Picklable (a parallel tuning worker rebuilds models from it), unlike a closure."""

    window: int
    n_features: int
    head: Head
    mean: float
    std: float
    front: Any = None

    def __call__(self, m: dict[str, Any]) -> Any:
        from kerastrader.models.builders import build_model
        from kerastrader.models.custom import custom_model

        if m["kind"] == "custom":
            return custom_model(m["custom"], self.window, self.n_features, self.head)
        return build_model(
            m["kind"],
            self.window,
            self.n_features,
            m["units"],
            m["dropout"],
            m["activation"],
            m["learning_rate"],
            bidirectional=m["bidirectional"],
            kernel_size=m["kernel_size"],
            heads=m["heads"],
            head=self.head,
            target_mean=self.mean,
            target_std=self.std,
            front=self.front,
            pool=int(m.get("pool", 2)),
            pooling=str(m.get("pooling", "max")),
        )


@dataclass
class _WithValues:
    """``build({**model, **values})``: the tuner's trial values over the configured model."""

    build: _ModelBuilder
    model: dict[str, Any]

    def __call__(self, values: dict[str, Any]) -> Any:
        return self.build({**self.model, **values})


@contextmanager
def _speed_options(model: Any, t: dict[str, Any]) -> Iterator[None]:
    """training.jit_compile (XLA) and training.steps_per_execution on the compiled model,
    for the fit inside the block; jit_compile false leaves Keras' "auto" (no XLA on a machine
    without a GPU). bench_training.py measures each with the validation loss it reaches.

    Keras refuses XLA while TensorFlow's op determinism is on (not every op has a
    deterministic XLA kernel), so an XLA fit runs with it off and it is turned back on after;
    on this CPU two XLA fits with the same seed gave the same model (tested)."""
    model.steps_per_execution = int(t.get("steps_per_execution", 1))
    if not t.get("jit_compile", False):
        yield
        return
    from tensorflow.python.framework import config as tf_config  # Keras reads the flag here

    deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        model.jit_compile = True
        yield
    finally:
        if deterministic:
            tf_config.enable_op_determinism()


def _fit_inputs(t: dict[str, Any], x, y, weights, x_val, y_val) -> dict[str, Any]:
    """What ``model.fit`` reads: the arrays (Keras batches them itself), or with
    training.pipeline = "tf.data" batched and prefetched ``tf.data`` pipelines over the same
    arrays in the same order (no shuffling across time either way)."""
    batch = int(t["batch_size"])
    if t.get("pipeline", "arrays") != "tf.data":
        return {"x": x, "y": y, "batch_size": batch, "sample_weight": weights,
                "validation_data": (x_val, y_val)}  # fmt: skip
    import tensorflow as tf

    def pipeline(*parts):
        parts = tuple(tuple(p) if isinstance(p, list) else p for p in parts if p is not None)
        return tf.data.Dataset.from_tensor_slices(parts).batch(batch).prefetch(tf.data.AUTOTUNE)

    return {"x": pipeline(x, y, weights), "validation_data": pipeline(x_val, y_val)}


def _callbacks(t: dict[str, Any], workdir: Path | None) -> list:
    import keras

    from kerastrader.models.progress import EpochProgress

    # training.monitor = "loss" reproduces studies that stopped on the training loss (which
    # only falls): the validation period then no longer chooses the epoch.
    monitor = str(t.get("monitor", "val_loss"))
    out: list = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=int(t["patience"]), restore_best_weights=True
        )
    ]
    if t["reduce_lr_patience"] > 0:
        out.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=float(t["reduce_lr_factor"]),
                patience=int(t["reduce_lr_patience"]),
                min_lr=float(t["min_learning_rate"]),
            )
        )
    if t["checkpoint"] or t["tensorboard"]:
        if workdir is None:
            raise ConfigError("training.checkpoint / training.tensorboard need an output folder")
    if t["checkpoint"]:
        (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        out.append(
            keras.callbacks.ModelCheckpoint(
                workdir / "checkpoints" / "best.keras", monitor=monitor, save_best_only=True
            )
        )
    if t["tensorboard"]:
        logdir = Path(t["tensorboard"])
        out.append(keras.callbacks.TensorBoard(log_dir=str(logdir if logdir.is_absolute()
                                                           else workdir / logdir)))  # fmt: skip
    out.append(EpochProgress(int(t["epochs"])))
    return out


TUNABLE = (
    "kind",
    "units",
    "dropout",
    "activation",
    "learning_rate",
    "bidirectional",
    "kernel_size",
    "heads",
)


def train(
    bars: pd.DataFrame | dict[str, pd.DataFrame],
    cfg: Config,
    data_info: dict[str, Any],
    workdir: str | Path | None = None,
    callbacks: list | None = None,
) -> TrainResult:
    """Train the configured model and return an (unsaved) artifact.

    ``bars`` is one instrument or several (symbol -> bars): several train one shared model on
    all their windows, each split by the same dates, ordered by date, with one scaler fitted
    on every symbol's training rows. In order: feature selection (training rows), scaler
    (training rows), optional autoencoder (training rows), optional tuning (scored on the
    validation period), then the one fit, with EarlyStopping on the validation period.
    ``workdir`` holds checkpoints, TensorBoard logs and the tuner's trials; ``callbacks`` are
    extra Keras callbacks for the final fit (the configured ones are always there).
    """
    m, t = dict(cfg["model"]), cfg["training"]
    head = Head.from_config(cfg["label"])
    window = int(m["window"])
    workdir = Path(workdir) if workdir is not None else None
    universe = bars if isinstance(bars, dict) else {str(data_info.get("symbol", "data")): bars}
    names, selection = _select(universe, cfg, head)
    prep = _prepare(universe, names, cfg, head)
    feature_set, datasets = prep.feature_set, prep.datasets
    x_train, y_train = prep.x["train"], prep.y["train"]
    x_val, y_val = prep.x["validation"], prep.y["validation"]
    x_test, y_test = prep.x["test"], prep.y["test"]
    log.info("windows: train %d, validation %d, test %d", len(x_train), len(x_val), len(x_test))

    seed_everything(int(t["seed"]))
    front, autoencoder = None, None
    if m["autoencoder"]:
        from kerastrader.models.autoencoder import fit_autoencoder

        rows = [
            prep.scaler.transform(d.features)[feature_set.lookback - 1 : d.ends["train"][-1] + 1]
            for d in datasets.values()
            if len(d.ends["train"])
        ]
        val_rows = [
            prep.scaler.transform(d.features)[d.ends["validation"]] for d in datasets.values()
        ]
        autoencoder = fit_autoencoder(
            np.concatenate(rows),
            m["autoencoder"],
            int(m["bottleneck"]),
            m["autoencoder_units"],
            epochs=int(m["autoencoder_epochs"]),
            batch_size=int(t["batch_size"]),
            validation_rows=np.concatenate(val_rows),
        )
        front = autoencoder.front()
    front = text_front(feature_set, window, front)  # text.encoder: the attention encoder

    weights = None
    sample_weight = recency_weights(prep.age, float(t["recency_halflife"]))
    if t["class_weights"] and head.task == "classification":
        weights = _class_weights(y_train.astype(int))
        sample_weight = sample_weight * np.array([weights[int(c)] for c in y_train])
    if not t["class_weights"] and t["recency_halflife"] <= 0:
        sample_weight = None

    dims = (window, len(feature_set))
    if prep.image is not None:  # the flattened image in, reshaped by the model's front
        from kerastrader.models.cnn2d import ImageFront

        dims, front = prep.image.input_dims, ImageFront(prep.image.shape)
    build = _builder(cfg, *dims, head, y_train, front)
    tuning = None
    tn = cfg["tuning"]
    if tn["algorithm"]:
        from kerastrader.models.tuning import search

        # tuning.validation = "training" reproduces a search scored on its own training
        # windows (study A): it picks the trial that fits best, not the one that generalises.
        on_train = tn.get("validation", "validation") == "training"
        workers = int(tn.get("workers", 1))
        if workers > 1 and front is not None:
            log.info("tuning with an autoencoder front runs its trials serially")
            workers = 1
        tuned = search(
            _WithValues(build, dict(m)),
            tn["space"],
            x_train,
            y_train,
            x_train if on_train else x_val,
            y_train if on_train else y_val,
            algorithm=tn["algorithm"],
            max_trials=int(tn["max_trials"]),
            epochs=int(tn["epochs"]),
            batch_size=int(t["batch_size"]),
            seed=int(t["seed"]),
            directory=(workdir or Path(tempfile.mkdtemp(prefix="kerastrader-tuning-"))) / "tuning",
            sample_weight=sample_weight,
            patience=int(t["patience"]),
            allowed=TUNABLE,
            progress=True,
            workers=workers,
            executor=tn.get("executor", "local"),
        )
        m.update(tuned.best)
        tuning = tuned.to_dict()
        log.info("tuning (%s): best %s, val_loss %.4f", tn["algorithm"], tuned.best, tuned.score)
        seed_everything(int(t["seed"]))

    model = build(m)
    with _speed_options(model, t):
        history = model.fit(
            **_fit_inputs(t, x_train, y_train, sample_weight, x_val, y_val),
            epochs=int(t["epochs"]),
            shuffle=False,  # no shuffling across time
            callbacks=_callbacks(t, workdir) + list(callbacks or []),
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
        "kind": f"{m['kind']}_{head.kind}",
        "features": feature_set.to_dict(),
        "window": window,
        "n_features": len(feature_set),
        "warmup_bars": feature_set.lookback + window - 1,
        "scaler": prep.scaler.to_dict(),
        "label": head.to_dict(),
        "model": {k: m[k] for k in (*TUNABLE, "custom", "autoencoder")},
        "training": {
            "epochs": int(t["epochs"]),
            "epochs_run": len(losses),
            "best_epoch": int(np.argmin(losses)) + 1,
            "best_val_loss": float(np.min(losses)),
            "batch_size": int(t["batch_size"]),
            "jit_compile": bool(t.get("jit_compile", False)),
            "pipeline": str(t.get("pipeline", "arrays")),
            "steps_per_execution": int(t.get("steps_per_execution", 1)),
            "class_weights": weights,
            "recency_halflife": float(t["recency_halflife"]),
            "reduce_lr_patience": int(t["reduce_lr_patience"]),
            "final_learning_rate": float(model.optimizer.learning_rate.numpy()),
            "seed": int(t["seed"]),
            "samples": {s: int(sum(len(d.ends[s]) for d in datasets.values())) for s in SPLITS},
        },
        "periods": {
            s: [
                min(stamp(d.dates[d.ends[s][0]]) for d in datasets.values() if len(d.ends[s])),
                max(stamp(d.dates[d.ends[s][-1]]) for d in datasets.values() if len(d.ends[s])),
            ]
            for s in SPLITS
        },
        "symbols": list(datasets),
        "data": data_info,
        "versions": library_versions(),
    }
    if prep.image is not None:  # the rendering settings travel with the model
        artifact.metadata["image"] = prep.image.to_dict()
    if selection:
        artifact.metadata["selection"] = selection
    if autoencoder:
        artifact.metadata["autoencoder"] = autoencoder.to_dict()
    if tuning:
        artifact.metadata["tuning"] = tuning
    predict = artifact.batch_predictor
    out_val, out_test = predict.outputs(x_val), predict.outputs(x_test)
    artifact.metadata["metrics"] = {
        "validation": head.metrics(y_val, out_val),
        "test": head.metrics(y_test, out_test),
    }
    p_test = head.score(out_test)
    artifact.metadata["onnx"] = verify_onnx(artifact, x_test, out_test)
    ds = next(iter(datasets.values()))
    y_out = y_test if head.task == "regression" else y_test.astype(int)
    return TrainResult(artifact, ds.ends["test"], y_out, p_test, ds, datasets, out_test)


def stamp(when: pd.Timestamp) -> str:
    """A date for daily bars, a date and time for intraday ones."""
    if when == when.normalize():
        return when.date().isoformat()
    return when.isoformat(sep=" ")
