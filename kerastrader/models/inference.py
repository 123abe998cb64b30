"""Compiled inference: never ``model.predict()`` per bar.

``model.predict`` costs 25-45 ms a call here, an eager ``model(x)`` about 27 ms. The two paths:

- :class:`BatchPredictor`, for the vectorised backtest pass and training diagnostics: all
  windows in a few large calls, through ONNX Runtime when the model has been exported (about
  10 us a window here, no tracing: the session opens in a few milliseconds), else through a
  ``tf.function`` with a fixed input signature (about 20 us a window, traced on first use).
- :class:`StepPredictor`, for the bar-by-bar pass and live trading: one window through an ONNX
  Runtime session exported from the same model (~0.02 ms a call, single-threaded so it does not
  fight Backtrader for the two cores), or the ``tf.function`` (~0.6 ms) when asked.

A test asserts both agree with each other and with Keras to 1e-5.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)


class _NoRetracingNotice(logging.Filter):
    """Each model gets its own traced function (one per walk-forward fold, per tuning trial);
    TensorFlow reports that as "excessive retracing", which here is expected and harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNotice())


def _signature(window: int, n_features: int) -> tuple[tf.TensorSpec]:
    return (tf.TensorSpec((None, window, n_features), tf.float32, name="x"),)


def inference_function(
    model: keras.Model, window: int, n_features: int
) -> tf.types.experimental.GenericFunction:
    """The model's forward pass (training=False) traced once for any batch size."""
    return tf.function(
        lambda x: model(x, training=False), input_signature=_signature(window, n_features)
    )


def export_onnx(model: keras.Model, window: int, n_features: int) -> bytes:
    """ONNX bytes of the model's inference function.

    ``tf2onnx.convert.from_keras`` fails on Keras 3 (KeyError on keras_tensor names); converting
    the traced ``tf.function`` works and agrees with Keras to about 1e-7.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf2onnx  # slow import with noisy logging: only when exporting

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    fn = inference_function(model, window, n_features)
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=_signature(window, n_features), opset=17
    )
    return proto.SerializeToString()


def first_output(outputs: np.ndarray) -> np.ndarray:
    return outputs[:, 0]


def onnx_session(onnx_bytes: bytes) -> Any:
    """A single-threaded ONNX Runtime session: Backtrader runs on one core, and a second
    intra-op thread was measured slower here (it fights the other core's work)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


class BatchPredictor:
    """All windows in a few large calls.

    ``outputs`` gives the model's raw outputs (n, k); calling it gives the head's one number
    per window (``score``: the first output unless the artifact's head says otherwise).

    ``onnx_bytes`` (the bytes, or a callable returning them or None) selects ONNX Runtime, in
    chunks of ``onnx_chunk`` windows (256 was the fastest size measured; larger chunks fall
    out of the cache). A callable is asked again until it has bytes: training predicts with
    TensorFlow before it exports, and the same artifact then runs a backtest. Without ONNX the
    traced ``tf.function`` runs in chunks of ``chunk``; it is traced on first use only.
    """

    def __init__(
        self,
        model: keras.Model,
        window: int,
        n_features: int,
        chunk: int = 8192,
        score: Callable[[np.ndarray], np.ndarray] = first_output,
        onnx_bytes: bytes | Callable[[], bytes | None] | None = None,
        onnx_chunk: int = 256,
    ) -> None:
        self._model = model
        self._shape = (window, n_features)
        self._fn: Any = None
        self._onnx = onnx_bytes
        self._session: Any = None
        self.chunk = chunk
        self.onnx_chunk = onnx_chunk
        self.score = score

    @property
    def engine(self) -> str:
        """``"onnx"`` or ``"tf"``: what the next call will run on."""
        return "onnx" if self._onnx_session() is not None else "tf"

    def _onnx_session(self) -> Any:
        if self._session is None and self._onnx is not None:
            data = self._onnx() if callable(self._onnx) else self._onnx
            if data is not None:
                self._session = onnx_session(data)
                self._input = self._session.get_inputs()[0].name
        return self._session

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if len(windows) == 0:
            return np.empty((0, 1), dtype=np.float64)
        session = self._onnx_session()
        if session is not None:
            step = self.onnx_chunk
            parts = [
                session.run(None, {self._input: windows[i : i + step]})[0]
                for i in range(0, len(windows), step)
            ]
        else:
            if self._fn is None:
                self._fn = inference_function(self._model, *self._shape)
            parts = [
                self._fn(tf.constant(windows[i : i + self.chunk])).numpy()
                for i in range(0, len(windows), self.chunk)
            ]
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out.reshape(len(windows), -1).astype(np.float64)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = self.outputs(windows)
        if len(out) == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self.score(out), dtype=np.float64)


class StepPredictor:
    """One window at a time with a sub-millisecond compiled call."""

    def __init__(
        self,
        model: keras.Model,
        window: int,
        n_features: int,
        onnx_bytes: bytes | None = None,
        backend: str = "onnx",
        score: Callable[[np.ndarray], np.ndarray] = first_output,
    ) -> None:
        self.backend = backend
        self.score = score
        self.last_outputs: np.ndarray | None = None  # the raw outputs of the latest call
        if backend == "onnx":
            if onnx_bytes is None:
                onnx_bytes = export_onnx(model, window, n_features)
            self._session = onnx_session(onnx_bytes)
            self._input = self._session.get_inputs()[0].name
        elif backend == "tf":
            self._fn = inference_function(model, window, n_features)
        else:
            raise ValueError(f"unknown inference backend {backend!r} (onnx or tf)")
        self._buf = np.empty((1, window, n_features), dtype=np.float32)
        self._binding: Any = self._bind() if backend == "onnx" else None

    def _bind(self) -> Any:
        """ONNX Runtime's I/O binding of the input buffer and one preallocated output, so a
        per-bar call skips ``session.run``'s per-call argument checks and allocations (about
        15 us of the ~50 us a call took here). None when the model does not fit that shape
        (several outputs, or not float32): then ``session.run`` is used."""
        import onnxruntime as ort

        outputs = self._session.get_outputs()
        if len(outputs) != 1 or outputs[0].type != "tensor(float)":
            return None
        self._buf[:] = 0.0
        probe = self._session.run(None, {self._input: self._buf})[0]
        self._out = np.empty(probe.shape, dtype=np.float32)
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(self._buf))
        binding.bind_ortvalue_output(outputs[0].name, ort.OrtValue.ortvalue_from_numpy(self._out))
        return binding

    def batch(self, windows: np.ndarray) -> np.ndarray:
        """Raw outputs (n, k) for several windows in one call: a portfolio's instruments at
        one bar share a single model call."""
        x = np.asarray(windows, dtype=np.float32)
        if self.backend == "onnx":
            out = self._session.run(None, {self._input: x})[0]
        else:
            out = self._fn(tf.constant(x)).numpy()
        return out.reshape(len(x), -1)

    def __call__(self, window: np.ndarray) -> float:
        self._buf[0] = window
        if self._binding is not None:  # the bound buffers: the input is read in place
            self._session.run_with_iobinding(self._binding)
            out = self._out.copy()
        elif self.backend == "onnx":
            out = self._session.run(None, {self._input: self._buf})[0]
        else:
            out = self._fn(tf.constant(self._buf)).numpy()
        self.last_outputs = out = out.reshape(1, -1)
        if self.score is first_output:
            return float(out[0, 0])
        return float(self.score(out)[0])
