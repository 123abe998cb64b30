"""Windows as images: one rendering step shared by training and both backtest passes.

``model.input = "image"`` turns every window into a picture before the model sees it:

- ``candles``: an OHLC candlestick raster of the window's own bars (raw prices, as traded),
  ``size`` rows by 3 columns per bar, drawn with numpy (no plotting library): the price axis
  runs from the window's highest high (row 0) to its lowest low (last row); each bar's middle
  column holds its wick (low..high), all three columns its body (open..close); a pixel is +1
  on a bar that closed at or above its open, -1 on one that closed below, 0 elsewhere;
- ``gaf``: Gramian angular summation (``cos(phi_i + phi_j)``) and/or difference
  (``sin(phi_i - phi_j)``) fields of chosen scaled features, one channel each, from ``pyts``;
- ``recurrence``: recurrence plots ``|x_i - x_j|`` of chosen scaled features (``pyts``),
  optionally thresholded to 1 where the distance is below ``threshold``;
- ``correlation``: for a universe of N instruments, the N x N correlation heatmap of their
  returns over the window, with a channel marking the instrument predicted
  (:mod:`kerastrader.models.correlation_image`: its peers are read as of each bar).

Causality: the image at bar t is a function of the window ending at t and of nothing else.
pyts' ``GramianAngularField.fit`` learns nothing; ``transform`` rescales *each sample* (one
feature over one window) to [-1, 1] by that sample's own min and max, so no statistic crosses
from one window to another, let alone from later bars. ``RecurrencePlot`` is per sample too.

:meth:`ImageSpec.model_inputs` renders a stack of windows in one vectorised pass; the
vectorised backtest calls it with every window, the bar-by-bar pass with a stack of one.
The model's input is the image flattened to (rows, columns x channels), so the one inference
path (traced function, ONNX export with a rank-3 signature) serves windows and images alike;
the network's first layer reshapes it back (:mod:`kerastrader.models.cnn2d`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerastrader.errors import ConfigError
from kerastrader.models.correlation_image import CHANNELS, Peers, render_correlation

KINDS = ("candles", "gaf", "recurrence", "correlation")
METHODS = ("summation", "difference", "both")
OHLC = ("open", "high", "low", "close")
BAR_PIXELS = 3  # candles: columns per bar (body, wick + body, body)
CHUNK = 2048  # windows rendered at a time: bounds the temporary arrays, not the call count


def render_candles(ohlc: np.ndarray, height: int) -> np.ndarray:
    """Candlestick rasters of windows of bars: (n, W, 4) open/high/low/close -> (n, height,
    3 W) float32. Row 0 is the window's highest high, row height-1 its lowest low; a price
    p sits on row ``floor((high - p) / (high - low) * (height - 1) + 0.5)`` (a flat window:
    the middle row). Up bars (close >= open) are +1, down bars -1, background 0."""
    ohlc = np.asarray(ohlc, dtype=np.float64)
    n, w, _ = ohlc.shape
    o, h, lo, c = (ohlc[..., k] for k in range(4))
    top = h.max(axis=1, keepdims=True)
    bottom = lo.min(axis=1, keepdims=True)
    span = top - bottom
    flat = ~(span > 0)
    safe = np.where(flat, 1.0, span)

    def row(p: np.ndarray) -> np.ndarray:
        frac = np.where(flat, 0.5, (top - p) / safe)
        return np.floor(frac * (height - 1) + 0.5)

    r_high, r_low = row(h), row(lo)
    r_o, r_c = row(o), row(c)
    r_top, r_bot = np.minimum(r_o, r_c), np.maximum(r_o, r_c)
    sign = np.where(c >= o, 1.0, -1.0).astype(np.float32)  # (n, W)
    grid = np.arange(height, dtype=np.float64)[None, :, None]  # rows, against (n, 1, W)
    body = (grid >= r_top[:, None, :]) & (grid <= r_bot[:, None, :])  # (n, H, W)
    wick = (grid >= r_high[:, None, :]) & (grid <= r_low[:, None, :])
    out = np.zeros((n, height, w, BAR_PIXELS), dtype=np.float32)
    s = sign[:, None, :]
    out[..., 0] = body * s
    out[..., 1] = (body | wick) * s
    out[..., 2] = body * s
    return out.reshape(n, height, w * BAR_PIXELS)


def import_pyts():
    """``pyts.image`` and ``pyts.approximation``, imported with their numba kernels compiled
    lazily and cached on disk.

    pyts declares every kernel with a list of signatures, which makes numba compile each of
    them for every listed type when the module is imported: 55 s of CPU here before the first
    image (several minutes of wall time on a loaded machine), in every process. While pyts is
    imported, ``numba.njit`` drops the signature list (the kernel compiles on first call, for
    the types actually passed) and asks for numba's on-disk cache (later processes load the
    compiled kernel). Same code, same results; only when it is compiled changes. If pyts was
    imported before, this changes nothing.
    """
    import sys

    if "pyts.image" not in sys.modules:
        import numba

        njit = numba.njit

        def lazy(*args, **kwargs):
            if args and not callable(args[0]):  # @njit([signatures]): compile on first use
                args = ()
            kwargs.setdefault("cache", True)
            return njit(*args, **kwargs)

        numba.njit = lazy
        try:
            import pyts.approximation  # noqa: F401
            import pyts.image  # noqa: F401
        finally:
            numba.njit = njit
    import pyts.approximation
    import pyts.image

    return pyts.image, pyts.approximation


def _per_channel(windows: np.ndarray, transform) -> np.ndarray:
    """Apply a univariate pyts transform to every (window, channel) series in one call:
    (n, W, C) -> (n, S, S, C)."""
    n, w, ch = windows.shape
    series = np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float64).reshape(n * ch, w)
    images = transform(series)  # (n * C, S, S)
    s = images.shape[-1]
    return images.reshape(n, ch, s, s).transpose(0, 2, 3, 1)


def render_gaf(windows: np.ndarray, size: int, method: str) -> np.ndarray:
    """Gramian angular fields of every channel of (n, W, C) windows -> (n, size, size, C')
    with C' = C (``summation`` or ``difference``) or 2 C (``both``: summation channels
    first). Each series is rescaled to [-1, 1] by its own min and max (pyts)."""
    GramianAngularField = import_pyts()[0].GramianAngularField  # noqa: N806

    methods = ("summation", "difference") if method == "both" else (method,)
    parts = [
        _per_channel(
            windows, GramianAngularField(image_size=size, method=m).transform
        )  # fit learns nothing: transform is per sample
        for m in methods
    ]
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def render_recurrence(windows: np.ndarray, size: int, threshold: float) -> np.ndarray:
    """Recurrence plots of every channel of (n, W, C) windows -> (n, size, size, C): the
    distance |x_i - x_j| between the window's steps (after piecewise aggregation to ``size``
    steps when size < W), or 1 where that distance is below ``threshold`` (> 0)."""
    image, approximation = import_pyts()
    plot = image.RecurrencePlot(threshold=threshold if threshold > 0 else None)
    if size < windows.shape[1]:
        paa = approximation.PiecewiseAggregateApproximation(window_size=None, output_size=size)
        return _per_channel(windows, lambda x: plot.transform(paa.transform(x)))
    return _per_channel(windows, plot.transform)


@dataclass(frozen=True)
class ImageSpec:
    """How a window becomes an image; saved in the artifact (``metadata["image"]``) so that a
    loaded model renders exactly as it was trained.

    ``channels`` names the features a gaf/recurrence image draws (``index``: their columns in
    the feature window); candles draw the raw bars and have no feature channels; a correlation
    image draws the closes of ``universe`` (the instruments, in the trained order).
    """

    kind: str
    window: int
    size: int
    channels: tuple[str, ...] = ()
    index: tuple[int, ...] = ()
    method: str = "summation"
    threshold: float = 0.0
    universe: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(rows, columns, channels) of one image."""
        if self.kind == "candles":
            return (self.size, self.window * BAR_PIXELS, 1)
        if self.kind == "correlation":
            return (len(self.universe), len(self.universe), CHANNELS)
        per = 2 if (self.kind == "gaf" and self.method == "both") else 1
        return (self.size, self.size, per * len(self.channels))

    @property
    def input_dims(self) -> tuple[int, int]:
        """The model's input per sample: the image flattened to (rows, columns x channels)."""
        h, w, c = self.shape
        return (h, w * c)

    @property
    def columns(self) -> tuple[str, ...]:
        """Bar columns the rendering reads besides the feature window (candles: OHLC)."""
        return OHLC if self.kind == "candles" else ()

    @property
    def reads_universe(self) -> bool:
        """Whether the image needs the other instruments' bars (:class:`Peers`)."""
        return self.kind == "correlation"

    def render(
        self,
        windows: np.ndarray,
        ohlc: np.ndarray | None = None,
        closes: np.ndarray | None = None,
        member: int = 0,
    ) -> np.ndarray:
        """(n, rows, columns, channels) images of n windows: ``windows`` are scaled feature
        windows (n, W, F), ``ohlc`` the same windows' raw bars (n, W, 4) for candles,
        ``closes`` the universe's closes over them (n, W, N) for a correlation image of the
        instrument ``member``."""
        if self.kind == "correlation":
            if closes is None:
                raise ValueError("a correlation image is drawn from the universe's closes")
            return render_correlation(closes, member)
        if self.kind == "candles":
            if ohlc is None:
                raise ValueError("candles are drawn from the windows' OHLC bars")
            return render_candles(ohlc, self.size)[..., None]
        picked = np.asarray(windows)[..., list(self.index)]
        if self.kind == "gaf":
            return render_gaf(picked, self.size, self.method)
        return render_recurrence(picked, self.size, self.threshold)

    def model_inputs(
        self,
        windows: np.ndarray,
        bars: Mapping[str, Any],
        ends: np.ndarray,
        peers: Peers | None = None,
    ) -> np.ndarray:
        """The model's inputs (n, rows, columns x channels) float32 for the windows ending at
        rows ``ends`` of ``bars`` (a mapping of bar columns, the rows ``windows`` came from;
        ``peers``: the universe's closes at the same rows, for a correlation image): rendered
        in one vectorised pass (in chunks of :data:`CHUNK` windows for memory)."""
        windows = np.asarray(windows)
        ends = np.asarray(ends, dtype=np.intp)
        n = len(windows)
        out = np.empty((n, *self.input_dims), dtype=np.float32)
        ohlc_rows = None
        if self.kind == "candles":
            ohlc_rows = np.column_stack([np.asarray(bars[c], dtype=np.float64) for c in OHLC])
        if self.reads_universe and peers is None:
            raise ValueError(
                f"a correlation image reads every instrument of {', '.join(self.universe)}: "
                "predict it with SharedKerasIndicator over their feeds (a book with "
                "portfolio.models = 'shared'), not one feed's KerasIndicator"
            )
        steps = np.arange(self.window - 1, -1, -1)  # window rows, oldest first
        for i in range(0, n, CHUNK):
            part = slice(i, min(i + CHUNK, n))
            rows = ends[part, None] - steps[None, :]
            ohlc = None if ohlc_rows is None else ohlc_rows[rows]  # (k, W, 4)
            closes = None if peers is None else peers.closes[rows]  # (k, W, N)
            member = 0 if peers is None else peers.member
            img = self.render(windows[part], ohlc, closes, member)
            out[part] = img.reshape(len(img), *self.input_dims)
        return out

    def last_input(
        self, window: np.ndarray, recent: Mapping[str, Any], peers: Peers | None = None
    ) -> np.ndarray:
        """The bar-by-bar pass: one image from the current (W, F) window and the last W bars
        (and the universe's closes at them), through :meth:`model_inputs` with a stack of
        one."""
        return self.model_inputs(window[None], recent, np.array([self.window - 1]), peers)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "window": self.window,
            "size": self.size,
            "channels": list(self.channels),
            "index": list(self.index),
            "method": self.method,
            "threshold": self.threshold,
            "universe": list(self.universe),
            "shape": list(self.shape),
            "input_dims": list(self.input_dims),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageSpec:
        return cls(
            kind=str(d["kind"]),
            window=int(d["window"]),
            size=int(d["size"]),
            channels=tuple(d.get("channels", ())),
            index=tuple(int(i) for i in d.get("index", ())),
            method=str(d.get("method", "summation")),
            threshold=float(d.get("threshold", 0.0)),
            universe=tuple(d.get("universe", ())),
        )

    @classmethod
    def from_config(
        cls,
        image: Mapping[str, Any],
        feature_names: Sequence[str],
        window: int,
        symbols: Sequence[str] = (),
    ) -> ImageSpec:
        """The spec from the config's ``[image]`` table, the model's feature names and the
        instruments it is trained on (``symbols``, which a correlation image draws)."""
        check_image_config(image, window)
        kind, size = image["kind"], int(image["size"]) or int(window)
        channels: tuple[str, ...] = ()
        universe: tuple[str, ...] = ()
        if kind == "correlation":
            universe = tuple(symbols)
            if len(universe) < 2:
                raise ConfigError(
                    "image.kind = 'correlation' draws a universe's correlations: it needs at "
                    f"least two instruments in data.symbols (got {len(universe)})"
                )
            size = len(universe)
        elif kind != "candles":
            channels = tuple(image["features"]) or tuple(feature_names)
            unknown = [c for c in channels if c not in feature_names]
            if unknown:
                raise ConfigError(
                    f"image.features {unknown} are not among the model's features "
                    f"{list(feature_names)}"
                )
        return cls(
            kind=kind,
            window=int(window),
            size=size,
            channels=channels,
            index=tuple(list(feature_names).index(c) for c in channels),
            method=str(image["method"]),
            threshold=float(image["threshold"]),
            universe=universe,
        )


def check_image_config(image: Mapping[str, Any], window: int) -> None:
    """The ``[image]`` table's values, each problem as one line."""
    kind = image["kind"]
    if kind not in KINDS:
        raise ConfigError(f"image.kind = {kind!r}: expected one of {', '.join(KINDS)}")
    if image["method"] not in METHODS:
        raise ConfigError(
            f"image.method = {image['method']!r}: expected one of {', '.join(METHODS)}"
        )
    size = int(image["size"])
    if kind == "correlation" and size != 0:
        raise ConfigError(
            f"image.size = {size}: a correlation image is one row and column per instrument; "
            "leave image.size at 0"
        )
    if kind == "correlation" and window < 3:
        raise ConfigError(f"model.window = {window}: a correlation needs at least 3 closes")
    if size < 0 or (kind != "candles" and size > window):
        limit = "" if kind == "candles" else f" and at most model.window ({window})"
        raise ConfigError(f"image.size = {size}: must be 0 (the window) or positive{limit}")
    if kind == "candles" and 0 < size < 2:
        raise ConfigError("image.size: a candle chart needs at least 2 rows")
    if image["threshold"] < 0:
        raise ConfigError("image.threshold must not be negative (0: distances, no threshold)")


def check_config(cfg: Mapping[str, Mapping[str, Any]]) -> None:
    """Checks the config's image keys together with the model family (config.validate)."""
    m = cfg["model"]
    images, cnn2d = m.get("input", "window") == "image", m["kind"] == "cnn2d"
    if cnn2d and not images:
        raise ConfigError("model.kind = 'cnn2d' reads images: set model.input = 'image'")
    if images and not cnn2d:
        raise ConfigError(f"model.input = 'image' needs model.kind = 'cnn2d', not {m['kind']!r}")
    if not images:
        return
    if m["autoencoder"]:
        raise ConfigError("model.autoencoder works on feature rows, not with model.input = 'image'")
    if m.get("pool", 2) < 0:
        raise ConfigError("model.pool must not be negative (0 or 1: no pooling)")
    check_image_config(cfg["image"], int(m["window"]))
    if cfg["image"]["kind"] == "correlation" and cfg["portfolio"]["models"] != "shared":
        raise ConfigError(
            "image.kind = 'correlation' draws the whole universe for each instrument: it needs "
            "one shared model (portfolio.models = 'shared'), not one per instrument"
        )


def image_spec(
    cfg: Mapping[str, Mapping[str, Any]], feature_names: Sequence[str], symbols: Sequence[str] = ()
):
    """The run's :class:`ImageSpec` for a model trained on ``symbols``, or None when the
    model reads plain windows."""
    if cfg["model"].get("input", "window") != "image":
        return None
    window = int(cfg["model"]["window"])
    return ImageSpec.from_config(cfg["image"], feature_names, window, symbols)


def model_inputs(
    spec: ImageSpec | None,
    windows: np.ndarray,
    bars: Mapping[str, Any],
    ends: np.ndarray,
    peers: Peers | None = None,
) -> np.ndarray:
    """``windows`` as they are, or rendered by ``spec`` (training's one call)."""
    return windows if spec is None else spec.model_inputs(windows, bars, ends, peers)
