"""The model artifact: a directory a backtest or a live session can trust.

``model.keras`` (the Keras model, loaded with safe mode on), ``model.onnx`` (the same network
exported for the bar-by-bar path) and ``metadata.json``: features, window, scaler parameters,
label definition, periods, the data file's SHA-256, test metrics and library versions. Loading
checks that the pieces fit together and fit what the caller configured; the Keras model and
its compiled predictors are kept per process (:mod:`kerastrader.models.artifact_cache`), so
loading the same directory again costs a read and a hash of its files, not a Keras load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from kerastrader.errors import ModelMismatchError
from kerastrader.models.artifact_cache import MODELS, CachedModel, Compiled, content_key
from kerastrader.models.features import FeatureSet
from kerastrader.models.heads import Head
from kerastrader.models.scaler import FittedScaler

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "kerastrader",
        "tensorflow",
        "keras",
        "backtrader",
        "numpy",
        "pandas",
        "scikit-learn",
        "ta-lib",
        "onnxruntime",
        "tf2onnx",
        "pyfolio-reloaded",
    ):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class Artifact:
    """A loaded (or freshly trained) model with everything needed to feed it."""

    HINT = (
        "; run with the config the model was trained with (a run saves it as config.toml "
        "next to model/) or change the config to match"
    )

    model: Any  # keras.Model
    metadata: dict[str, Any]
    path: Path | None = None
    onnx_bytes: bytes | None = field(default=None, repr=False)
    # The compiled predictors, shared by every Artifact loaded from the same files.
    compiled: Compiled = field(default_factory=Compiled, repr=False, compare=False)
    # The items a text model reads ([text]; kerastrader.feeds.text.TextSource): bound by the
    # runner before first use; None reads the items the model was trained with.
    text: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def feature_set(self) -> FeatureSet:
        from kerastrader.models.text_features import bound_feature_set

        f = self.metadata["features"]
        return bound_feature_set(FeatureSet(f["names"], memory=f["memory"]), f, self.text)

    def features_for(self, symbol: str) -> FeatureSet:
        """The feature set that reads the instrument ``symbol`` (a feed's name): the same for
        every feed, except a book's text model, whose instruments each read their own items
        (:func:`kerastrader.models.text_features.for_symbol`)."""
        from kerastrader.models.text_features import for_symbol

        return for_symbol(self.feature_set, symbol)

    @cached_property
    def scaler(self) -> FittedScaler:
        return FittedScaler.from_dict(self.metadata["scaler"])

    @property
    def window(self) -> int:
        return int(self.metadata["window"])

    @property
    def n_features(self) -> int:
        names = len(self.metadata["features"]["names"])
        return names + len(self.metadata["features"].get("text", {}).get("columns", []))

    @cached_property
    def image(self):
        """How windows become images (:class:`~kerastrader.models.images.ImageSpec`), or
        None for a model that reads the scaled feature window itself."""
        if "image" not in self.metadata:
            return None
        from kerastrader.models.images import ImageSpec

        return ImageSpec.from_dict(self.metadata["image"])

    @property
    def input_dims(self) -> tuple[int, int]:
        """The model's input per sample: (window, n_features), or an image model's
        (rows, columns x channels)."""
        return self.image.input_dims if self.image is not None else (self.window, self.n_features)

    @property
    def warmup(self) -> int:
        """Bars before the first prediction: feature look-back plus the window, minus one."""
        return self.feature_set.lookback + self.window - 1

    @cached_property
    def head(self) -> Head:
        return Head.from_metadata(self.metadata)

    @cached_property
    def batch_predictor(self):
        """The vectorised pass's predictor: ONNX Runtime over the artifact's ONNX model once
        there is one (training exports it after its own batched predictions), else the traced
        ``tf.function``. Built once per model and process (see :attr:`compiled`)."""
        from kerastrader.models.inference import BatchPredictor

        if self.compiled.batch is None:
            self.compiled.batch = BatchPredictor(
                self.model,
                *self.input_dims,
                score=self.head.score,
                onnx_bytes=lambda: self.onnx_bytes,
            )
        return self.compiled.batch

    def step_predictor(self, backend: str = "onnx"):
        """The bar-by-bar predictor for ``backend``, built (session opened or function traced)
        once per model and process and then shared: its calls are one at a time."""
        from kerastrader.models.inference import StepPredictor, export_onnx

        if backend not in self.compiled.steps:
            if backend == "onnx" and self.onnx_bytes is None:
                self.onnx_bytes = export_onnx(self.model, *self.input_dims)
            self.compiled.steps[backend] = StepPredictor(
                self.model,
                *self.input_dims,
                onnx_bytes=self.onnx_bytes,
                backend=backend,
                score=self.head.score,
            )
        return self.compiled.steps[backend]

    def check_compatible(
        self,
        feature_names: list[str] | None = None,
        window: int | None = None,
        memory: int | None = None,
    ) -> None:
        """Fail with a clear message when the model does not fit the configured inputs."""
        where = self.path or "the model"
        meta_names = self.metadata["features"]["names"]
        if feature_names is not None and list(feature_names) != list(meta_names):
            missing = [n for n in meta_names if n not in feature_names]
            extra = [n for n in feature_names if n not in meta_names]
            detail = []
            if missing:
                detail.append(f"the model needs {missing}")
            if extra:
                detail.append(f"the config adds {extra}")
            if not detail:
                detail.append("same features in a different order")
            raise ModelMismatchError(
                f"{where}: trained on features {meta_names}, config has {list(feature_names)} "
                f"({'; '.join(detail)}){self.HINT}"
            )
        if window is not None and int(window) != self.window:
            raise ModelMismatchError(
                f"{where}: trained with window {self.window}, config has model.window = {window}"
                f"{self.HINT}"
            )
        if memory is not None and int(memory) != int(self.metadata["features"]["memory"]):
            raise ModelMismatchError(
                f"{where}: trained with features.memory = {self.metadata['features']['memory']}, "
                f"config has {memory}{self.HINT}"
            )


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write the artifact directory atomically: a failure leaves any previous one intact."""
    from kerastrader.models.inference import export_onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        artifact.model.save(tmp / MODEL_FILE)
        if artifact.onnx_bytes is None:
            artifact.onnx_bytes = export_onnx(artifact.model, *artifact.input_dims)
        (tmp / ONNX_FILE).write_bytes(artifact.onnx_bytes)
        meta = dict(artifact.metadata)
        meta["format_version"] = FORMAT_VERSION
        meta["files"] = {
            MODEL_FILE: sha256_bytes((tmp / MODEL_FILE).read_bytes()),
            ONNX_FILE: sha256_bytes(artifact.onnx_bytes),
        }
        meta.setdefault("versions", library_versions())
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False))
        artifact.metadata = meta
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    artifact.path = path
    return path


def load_artifact(path: str | Path, *, cache: bool = True) -> Artifact:
    """Load and check an artifact directory. Keras safe mode stays on: no arbitrary code runs.

    With ``cache`` (the default) the Keras model, the ONNX bytes and the compiled predictors
    come from :data:`~kerastrader.models.artifact_cache.MODELS` when a load of the same
    directory with the same file contents is already there; every check below still runs,
    and the returned Artifact is a new one around them.
    """
    import keras

    path = Path(path)
    if not path.is_dir():
        raise ModelMismatchError(
            f"{path}: not a model directory (expected {MODEL_FILE} + {METADATA_FILE})"
        )
    meta_file, model_file = path / METADATA_FILE, path / MODEL_FILE
    for f in (meta_file, model_file):
        if not f.is_file():
            raise ModelMismatchError(f"{path}: missing {f.name}")
    meta_bytes = meta_file.read_bytes()
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelMismatchError(f"{meta_file}: not valid JSON ({exc})") from None
    for key in ("features", "window", "scaler", "label"):
        if key not in meta:
            raise ModelMismatchError(f"{meta_file}: no {key!r} entry")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelMismatchError(
            f"{meta_file}: format_version {meta.get('format_version')!r}, "
            f"this kerastrader reads {FORMAT_VERSION}"
        )
    model_bytes = model_file.read_bytes()
    recorded = meta.get("files", {})
    if recorded.get(MODEL_FILE) not in (None, sha256_bytes(model_bytes)):
        raise ModelMismatchError(f"{model_file}: SHA-256 differs from {METADATA_FILE}")
    onnx_file = path / ONNX_FILE
    onnx = onnx_file.read_bytes() if onnx_file.is_file() else None
    key = content_key(path, (meta_bytes, model_bytes, onnx))
    cached = MODELS.get(key) if cache else None
    if meta["features"].get("text"):
        import kerastrader.models.text_encoder  # noqa: F401  (registers the encoder's layers)
    if cached is not None:
        log.debug("%s: model from the process cache (same files)", path)
        model = cached.model
    else:
        try:
            model = keras.saving.load_model(model_file, safe_mode=True)
        except Exception as exc:  # Keras raises many kinds for a bad file
            raise ModelMismatchError(f"{model_file}: cannot be loaded by Keras ({exc})") from None
    artifact = Artifact(model=model, metadata=meta, path=path)
    expected = (None, *artifact.input_dims)
    got = tuple(model.input_shape)
    if got != expected:
        what = f"window {artifact.window} and {artifact.n_features} features"
        if artifact.image is not None:
            what = f"{artifact.image.kind} image {artifact.image.shape}"
        raise ModelMismatchError(
            f"{path}: model input shape {got} does not fit the metadata's {what} {expected}"
        )
    if len(artifact.scaler.mean) != artifact.n_features:
        raise ModelMismatchError(
            f"{meta_file}: scaler has {len(artifact.scaler.mean)} columns, "
            f"features {artifact.n_features}"
        )
    if cached is not None:
        artifact.onnx_bytes = cached.onnx_bytes
        artifact.compiled = cached.compiled
        return artifact
    if onnx is not None:
        if recorded.get(ONNX_FILE) == sha256_bytes(onnx):
            artifact.onnx_bytes = onnx
        else:
            log.warning(
                "%s does not match %s; re-exporting from %s", onnx_file, METADATA_FILE, MODEL_FILE
            )
    if cache:
        MODELS.put(key, CachedModel(model, artifact.onnx_bytes, artifact.compiled))
    return artifact
