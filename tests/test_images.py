"""Windows as images: the rasters equal hand-made ones, the image at t reads no later bar, and
the cnn2d models trade the same predictions in both Backtrader passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kerastrader.cli import run_backtest_main
from kerastrader.config import load_config
from kerastrader.errors import ConfigError
from kerastrader.models.artifact import load_artifact, save_artifact
from kerastrader.models.features import FeatureSet
from kerastrader.models.images import ImageSpec
from kerastrader.models.scaler import FittedScaler
from kerastrader.models.windows import make_windows, window_ends
from tests.conftest import ROOT, random_walk_bars, tiny_config
from tests.test_indicator import Counting, run
from tests.test_shared_indicator_parity import run as run_shared

KINDS = ("candles", "gaf", "recurrence")
FEATURES = ["logret_1", "rsi_14", "volume_z_20"]


def test_candle_raster_of_a_three_bar_window_equals_the_hand_drawn_array():
    # open, high, low, close: up, down, up. The window spans 8 (lowest low) .. 13 (highest
    # high) on 5 rows, so a price p is on row floor((13 - p) / 5 * 4 + 0.5):
    # 13 -> 0, 12 -> 1 (0.8), 11.5 -> 1 (1.2), 11 -> 2 (1.6), 10 -> 2 (2.4), 9 -> 3, 8 -> 4.
    bars = {
        "open": np.array([10.0, 11.0, 9.0]),
        "high": np.array([12.0, 11.5, 13.0]),
        "low": np.array([9.0, 8.0, 9.0]),
        "close": np.array([11.0, 9.0, 13.0]),
    }
    expected = np.array(
        [  # bar 1 (up)  bar 2 (down)   bar 3 (up)
            [0, 0, 0, 0, 0, 0, 1, 1, 1],
            [0, 1, 0, 0, -1, 0, 1, 1, 1],
            [1, 1, 1, -1, -1, -1, 1, 1, 1],
            [0, 1, 0, -1, -1, -1, 1, 1, 1],
            [0, 0, 0, 0, -1, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    spec = ImageSpec("candles", window=3, size=5)
    got = spec.model_inputs(np.zeros((1, 3, 1)), bars, np.array([2]))
    assert got.shape == (1, 5, 9)
    np.testing.assert_array_equal(got[0], expected)


def test_gaf_channels_equal_the_published_angular_sum_and_difference_formulas():
    rng = np.random.default_rng(7)
    window = rng.normal(size=(1, 12, 3))
    spec = ImageSpec("gaf", window=12, size=12, channels=("c", "a"), index=(2, 0), method="both")
    got = spec.render(window)
    assert got.shape == (1, 12, 12, 4)  # summation of c, a; then difference of c, a
    for k, column in enumerate((2, 0)):
        x = window[0, :, column]
        # Wang & Oates (2015): rescale to [-1, 1], phi = arccos(x~), GASF = cos(phi_i + phi_j),
        # GADF = sin(phi_i - phi_j).
        scaled = ((x - x.max()) + (x - x.min())) / (x.max() - x.min())
        phi = np.arccos(scaled)
        gasf = np.cos(phi[:, None] + phi[None, :])
        gadf = np.sin(phi[:, None] - phi[None, :])
        # pyts rescales with scikit-learn's MinMaxScaler and takes sin from sqrt(1 - x~^2):
        # the same numbers within 1e-7 (the model reads float32, whose step is about 6e-8).
        np.testing.assert_allclose(got[0, :, :, k], gasf, atol=1e-7)
        np.testing.assert_allclose(got[0, :, :, 2 + k], gadf, atol=1e-7)


def test_recurrence_plot_equals_the_distance_between_steps():
    window = np.array([[[0.0], [1.5], [-1.0], [2.0]]])
    spec = ImageSpec("recurrence", window=4, size=4, channels=("x",), index=(0,))
    x = [0.0, 1.5, -1.0, 2.0]
    expected = [[abs(a - b) for b in x] for a in x]
    np.testing.assert_allclose(spec.render(window)[0, :, :, 0], expected)
    binary = ImageSpec("recurrence", window=4, size=4, channels=("x",), index=(0,), threshold=1.0)
    np.testing.assert_array_equal(binary.render(window)[0, :, :, 0], np.array(expected) < 1.0)


N_BARS = 160
SPECS = {
    "candles": ImageSpec("candles", window=12, size=16),
    "gaf": ImageSpec(
        "gaf", window=12, size=6, channels=("logret_1", "volume_z_20"), index=(0, 2), method="both"
    ),
    "recurrence": ImageSpec("recurrence", window=12, size=12, channels=("rsi_14",), index=(1,)),
}


def _images(bars, spec: ImageSpec, scaler: FittedScaler) -> tuple[np.ndarray, np.ndarray]:
    """The image at every bar with a full window, as the vectorised pass draws them."""
    fs = FeatureSet(FEATURES, memory=4)
    feats = fs.compute(bars)
    ends = window_ends(~np.isnan(feats).any(axis=1), spec.window)
    windows = make_windows(scaler.transform(feats), ends, spec.window)
    return ends, spec.model_inputs(windows, bars, ends)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(
    t=st.integers(min_value=70, max_value=N_BARS - 2),
    seed=st.integers(min_value=0, max_value=10_000),
    data=st.data(),
)
def test_changing_bars_after_t_changes_no_image_at_or_before_t(kind, t, seed, data):
    bars = random_walk_bars(N_BARS, seed=seed)
    spec = SPECS[kind]
    fs = FeatureSet(FEATURES, memory=4)
    scaler = FittedScaler.fit(fs.compute(bars)[fs.lookback :])  # fixed beforehand, as trained
    ends, before = _images(bars, spec, scaler)

    future = N_BARS - t - 1
    shock = data.draw(arrays(np.float64, future, elements=st.floats(0.2, 5.0)))
    changed = bars.copy()
    for col in ("open", "high", "low", "close", "volume"):
        changed.iloc[t + 1 :, changed.columns.get_loc(col)] *= shock
    ends_after, after = _images(changed, spec, scaler)

    np.testing.assert_array_equal(ends_after, ends)
    upto = ends <= t
    assert upto.any()
    np.testing.assert_array_equal(after[upto], before[upto])


_MODELS: dict[str, object] = {}


def image_model(kind: str, orcl_slice, tmp_path_factory):
    """A tiny cnn2d model per image kind, trained once per session, saved and loaded back."""
    from kerastrader.models.training import train

    if kind not in _MODELS:
        image = {"kind": kind, "size": 12 if kind == "candles" else 0}
        if kind != "candles":
            image["features"] = ["logret_1", "rsi_14"]
        cfg = tiny_config(
            model={"kind": "cnn2d", "input": "image", "units": [4]},
            training={"epochs": 1},
            image=image,
        )
        result = train(orcl_slice, cfg, {"sha256": orcl_slice.attrs.get("sha256")})
        path = save_artifact(result.artifact, tmp_path_factory.mktemp(f"image_{kind}") / "model")
        result.loaded = load_artifact(path)
        _MODELS[kind] = result
    return _MODELS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_vectorised_and_bar_by_bar_onnx_passes_agree_in_a_backtrader_run(
    kind, orcl_slice, tmp_path_factory
):
    art = image_model(kind, orcl_slice, tmp_path_factory).loaded
    once, _ = run(orcl_slice, art, runonce=True)
    step, _ = run(orcl_slice, art, runonce=False)
    assert np.isfinite(once[art.warmup :]).all()
    assert np.isnan(once[: art.warmup - 1]).all()
    np.testing.assert_allclose(once, step, atol=1e-5, equal_nan=True)


class CountingSpec:
    """A real ImageSpec that counts its renders and the windows in each."""

    def __init__(self, inner: ImageSpec) -> None:
        self.inner, self.stacks = inner, []

    def model_inputs(self, windows, bars, ends, peers=None):
        self.stacks.append(len(windows))
        return self.inner.model_inputs(windows, bars, ends, peers)

    def last_input(self, window, recent, peers=None):
        return ImageSpec.last_input(self, window, recent, peers)  # through the counted one

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_vectorised_pass_renders_every_window_in_one_call_and_makes_one_model_call(
    orcl_slice, tmp_path_factory
):
    art = load_artifact(image_model("candles", orcl_slice, tmp_path_factory).loaded.path)
    spec = CountingSpec(art.image)
    art.__dict__["image"] = spec  # the cached property's slot
    counting = Counting(art.batch_predictor)
    art.__dict__["batch_predictor"] = counting
    out, _ = run(orcl_slice, art, runonce=True)
    assert spec.stacks == [int(np.isfinite(out).sum())]
    assert counting.calls == 1


def test_bar_by_bar_pass_renders_a_stack_of_one_per_predicted_bar(orcl_slice, tmp_path_factory):
    art = load_artifact(image_model("gaf", orcl_slice, tmp_path_factory).loaded.path)
    spec = CountingSpec(art.image)
    art.__dict__["image"] = spec
    out, _ = run(orcl_slice, art, runonce=False)
    assert set(spec.stacks) == {1}
    assert len(spec.stacks) == int(np.isfinite(out).sum())


def test_artifact_keeps_the_rendering_settings_and_predicts_the_same_after_loading(
    orcl_slice, tmp_path_factory
):
    result = image_model("gaf", orcl_slice, tmp_path_factory)
    meta = json.loads((result.loaded.path / "metadata.json").read_text())
    assert meta["image"]["kind"] == "gaf"
    assert meta["image"]["channels"] == ["logret_1", "rsi_14"]
    assert meta["image"]["method"] == "summation" and meta["image"]["size"] == 10
    assert result.loaded.image == result.artifact.image
    assert result.loaded.model.input_shape == (None, 10, 20)  # 10 x 10 images, 2 channels
    # The backtest's vectorised pass over the loaded model gives training's test predictions.
    once, _ = run(orcl_slice, result.loaded, runonce=True)
    np.testing.assert_allclose(once[result.test_ends], result.p_test, atol=1e-6)


def test_cnn2d_without_image_input_is_one_clear_config_error():
    with pytest.raises(ConfigError, match="set model.input = 'image'"):
        load_config(None, ["model.kind=cnn2d"])


def test_image_input_with_a_feature_the_model_lacks_is_a_clear_config_error(orcl_slice):
    from kerastrader.models.training import train

    cfg = tiny_config(
        model={"kind": "cnn2d", "input": "image"}, image={"kind": "gaf", "features": ["rsi_2"]}
    )
    with pytest.raises(ConfigError, match=r"image.features \['rsi_2'\] are not among"):
        train(orcl_slice, cfg, {})


def test_a_shared_image_model_draws_every_instruments_windows_alike_in_both_passes(
    orcl_slice, tmp_path_factory
):
    # One cnn2d model over two instruments: the shared indicator's vectorised pass (one call
    # for both) and its bar-by-bar pass give each instrument's own KerasIndicator numbers.
    art = image_model("candles", orcl_slice, tmp_path_factory).loaded
    walk = random_walk_bars(len(orcl_slice), seed=3)
    walk.index = orcl_slice.index
    book = [orcl_slice, walk]
    once = run_shared(book, art, runonce=True)
    step = run_shared(book, art, runonce=False)
    for i, bars in enumerate(book):
        alone, _ = run(bars, art, runonce=True)
        shared_once = np.asarray(once.lines[i].array[: len(bars)])
        shared_step = np.asarray(step.lines[i].array[: len(bars)])
        assert np.isfinite(shared_once[art.warmup :]).all()
        np.testing.assert_allclose(shared_once, alone, atol=1e-9, equal_nan=True)
        np.testing.assert_allclose(shared_step, alone, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", ["image_candles", "image_gaf"])
def test_image_example_runs_end_to_end_from_run_backtest(name, tmp_path):
    out = tmp_path / name
    argv = [str(ROOT / "examples" / f"{name}.toml"), "--out", str(out), "-q",
            "--set", "training.epochs=1", "--set", "model.units=[4]",
            "--set", "report.figures=false"]  # fmt: skip
    assert run_backtest_main(argv) == 0
    assert (out / "report.html").is_file()
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert meta["image"]["kind"] == name.removeprefix("image_")
    assert meta["onnx"]["max_abs_diff"] <= 1e-5
