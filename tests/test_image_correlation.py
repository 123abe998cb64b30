"""The correlation image: a universe's correlation heatmap of returns over the window, with the
predicted instrument marked. Its numbers equal pandas' own correlations of peers read as of
each bar, it reads no later bar of any instrument, and one shared cnn2d model trades it in
both Backtrader passes with the same predictions as the Keras model on hand-built images."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerastrader.config import load_config
from kerastrader.errors import ConfigError
from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.correlation_image import frame_peers, render_correlation
from kerastrader.models.images import ImageSpec
from kerastrader.models.indicator import KerasIndicator
from kerastrader.models.shared_indicator import SharedKerasIndicator
from tests.conftest import random_walk_bars, tiny_config

WINDOW = 12
N_BARS = 1500


def gapped_book(n: int = N_BARS, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Three generated instruments; the third misses four days the others traded, the second
    starts 40 days late (no close at all before then)."""
    book = {f"S{i}": random_walk_bars(n, seed=seed + i) for i in range(3)}
    book["S1"] = book["S1"].iloc[40:]
    book["S2"] = book["S2"].drop(book["S2"].index[[n // 15, n // 3, n // 3 + 1, 3 * n // 5]])
    return book


def pandas_image(book: dict[str, pd.DataFrame], member: str, bar: int, window: int) -> np.ndarray:
    """The member's image at its own bar ``bar`` built with pandas alone: every instrument's
    latest close at or before each of the window's times (merge_asof), log returns, and
    DataFrame.corr; pairs pandas cannot correlate (constant or missing) are 0, the diagonal 1."""
    symbols = list(book)
    times = pd.DataFrame({"t": book[member].index[bar - window + 1 : bar + 1]})
    closes = pd.DataFrame(index=times["t"])
    for sym in symbols:
        peer = pd.DataFrame({"t": book[sym].index, sym: book[sym]["close"].to_numpy()})
        closes[sym] = pd.merge_asof(times, peer, on="t", direction="backward")[sym].to_numpy()
    returns = np.log(closes).diff().iloc[1:]
    corr = returns.corr().to_numpy()
    for j, sym in enumerate(symbols):
        if returns[sym].isna().any():  # pandas would use the pairs it has: the image does not
            corr[j, :] = corr[:, j] = 0.0
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    marker = np.zeros_like(corr)
    i = symbols.index(member)
    marker[i, :] = marker[:, i] = 1.0
    return np.stack([corr, marker], axis=-1)


def test_the_heatmap_equals_pandas_correlations_of_log_returns_and_marks_the_member():
    rng = np.random.default_rng(7)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (5, WINDOW, 4)), axis=1))
    images = render_correlation(closes, member=2)
    assert images.shape == (5, 4, 4, 2) and images.dtype == np.float32
    for k in range(5):
        expected = pd.DataFrame(np.log(closes[k])).diff().iloc[1:].corr().to_numpy()
        np.testing.assert_allclose(images[k, ..., 0], expected, atol=1e-6)
    marker = np.zeros((4, 4))
    marker[2, :] = marker[:, 2] = 1
    np.testing.assert_array_equal(images[:, :, :, 1], np.broadcast_to(marker, (5, 4, 4)))


def test_a_constant_or_not_yet_trading_instrument_correlates_zero_with_every_other():
    rng = np.random.default_rng(8)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (1, 6, 4)), axis=1))
    closes[0, :, 1] = 50.0  # a halted instrument: every return 0
    closes[0, :2, 3] = np.nan  # an instrument that started trading inside the window
    corr = render_correlation(closes, member=0)[0, ..., 0]
    r = np.diff(np.log(closes[0, :, [0, 2]]), axis=1)  # (2, 5) returns of the two others
    d = r - r.mean(axis=1, keepdims=True)
    by_hand = (d[0] @ d[1]) / np.sqrt((d[0] @ d[0]) * (d[1] @ d[1]))
    expected = np.array(
        [[1, 0, by_hand, 0], [0, 1, 0, 0], [by_hand, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64
    )
    np.testing.assert_allclose(corr, expected, atol=1e-6)


def test_peers_are_read_as_of_each_bar_of_the_member_like_merge_asof():
    book = gapped_book(300)
    peers = frame_peers(book, list(book))
    for member in book:
        times = pd.DataFrame({"t": book[member].index})
        for j, sym in enumerate(book):
            peer = pd.DataFrame({"t": book[sym].index, "c": book[sym]["close"].to_numpy()})
            expected = pd.merge_asof(times, peer, on="t", direction="backward")["c"].to_numpy()
            np.testing.assert_array_equal(peers[member].closes[:, j], expected)
        assert peers[member].member == list(book).index(member)


def test_an_ex_dividend_day_is_a_total_return_not_a_price_drop():
    bars = random_walk_bars(20, seed=2)
    bars["dividend"], bars["split"] = 0.0, 1.0
    bars.iloc[10, bars.columns.get_loc("dividend")] = 1.5
    peers = frame_peers({"A": bars, "B": random_walk_bars(20, seed=3)}, ["A", "B"])
    c = bars["close"].to_numpy()
    got = np.log(peers["A"].closes[10, 0] / peers["A"].closes[9, 0])
    # Yahoo's reinvestment convention: the return of the ex-day is close / (prev close - div)
    assert got == pytest.approx(np.log(c[10] / (c[9] - 1.5)), rel=1e-12)


def spec_for(book: dict[str, pd.DataFrame]) -> ImageSpec:
    return ImageSpec(kind="correlation", window=WINDOW, size=len(book), universe=tuple(book))


def images_of(book: dict[str, pd.DataFrame], member: str) -> np.ndarray:
    """Every image of one member from its bar WINDOW-1 on, as training draws them."""
    spec = spec_for(book)
    ends = np.arange(WINDOW - 1, len(book[member]))
    windows = np.zeros((len(ends), WINDOW, 1), dtype=np.float32)  # the image reads no feature
    return spec.model_inputs(windows, book[member], ends, frame_peers(book, spec.universe)[member])


@settings(max_examples=20, deadline=None)
@given(
    t=st.integers(min_value=60, max_value=280),
    seed=st.integers(min_value=0, max_value=10_000),
    scale=st.floats(min_value=0.2, max_value=5.0),
)
def test_changing_any_instruments_bars_after_t_changes_no_image_at_or_before_t(t, seed, scale):
    book = gapped_book(300, seed=seed)
    cut = book["S0"].index[t]
    changed = {}
    for sym, bars in book.items():
        later = bars.index > cut
        bars = bars.copy()
        bars.loc[later, ["open", "high", "low", "close"]] *= (
            scale * np.linspace(1, 2, later.sum())[:, None]
        )
        changed[sym] = bars
    for member in book:
        before, after = images_of(book, member), images_of(changed, member)
        upto = book[member].index[WINDOW - 1 :] <= cut
        assert upto.any()
        np.testing.assert_array_equal(after[upto], before[upto])
        assert not np.array_equal(after[~upto], before[~upto])  # later images did change


@pytest.fixture(scope="module")
def corr_model():
    """A tiny shared cnn2d model over the gapped three-instrument book."""
    from kerastrader.models.training import train

    book = gapped_book()
    cfg = tiny_config(
        model={"kind": "cnn2d", "input": "image", "units": [4], "window": WINDOW},
        training={"epochs": 1},
        image={"kind": "correlation"},
    )
    return book, train(book, cfg, {}).artifact


class Shared(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)


def run_book(book, model, runonce: bool, names=None):
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for i, (sym, bars) in enumerate(book.items()):
        name = names[i] if names else sym
        cerebro.adddata(make_feed(bars, name), name=name)
    cerebro.addstrategy(Shared, model=model)
    return cerebro.run()[0].shared


def test_the_artifact_keeps_the_universe_and_the_image_is_one_cell_per_instrument(corr_model):
    _, art = corr_model
    assert art.metadata["image"]["universe"] == ["S0", "S1", "S2"]
    assert art.image.shape == (3, 3, 2)
    assert art.model.input_shape == (None, 3, 6)


def test_vectorised_and_bar_by_bar_passes_agree_on_every_instruments_bars(corr_model):
    book, art = corr_model
    once, step = run_book(book, art, runonce=True), run_book(book, art, runonce=False)
    assert once.batch_calls == 1
    for i, bars in enumerate(book.values()):
        a, b = once.scores[i].array(len(bars)), step.scores[i].array(len(bars))
        assert np.isfinite(a).sum() > 0.8 * len(bars)
        np.testing.assert_allclose(a, b, atol=1e-5, equal_nan=True)


def test_each_prediction_is_the_keras_model_on_the_pandas_built_image(corr_model):
    book, art = corr_model
    shared = run_book(book, art, runonce=True)
    for i, member in enumerate(book):
        predicted = sorted(shared.scores[i])
        picks = predicted[:: max(1, len(predicted) // 12)]
        x = np.stack([pandas_image(book, member, b, WINDOW) for b in picks]).astype(np.float32)
        expected = np.asarray(art.model(x.reshape(len(x), 3, 6), training=False))[:, 0]
        got = np.array([shared.scores[i][b] for b in picks])
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_one_feeds_indicator_cannot_draw_a_universe_and_says_so(corr_model):
    book, art = corr_model

    class Alone(bt.Strategy):
        def __init__(self):
            self.p_up = KerasIndicator(self.data, model=art)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(book["S0"], "S0"), name="S0")
    cerebro.addstrategy(Alone)
    with pytest.raises(ValueError, match="SharedKerasIndicator over their feeds"):
        cerebro.run()


def test_feeds_named_otherwise_than_the_models_universe_are_refused_by_name(corr_model):
    book, art = corr_model
    with pytest.raises(ValueError, match="no feed is named S1, S2"):
        run_book(book, art, runonce=True, names=["S0", "X", "Y"])


def test_a_correlation_image_needs_one_shared_model_for_the_book():
    with pytest.raises(ConfigError, match="portfolio.models = 'shared'"):
        load_config(None, ["model.kind=cnn2d", "model.input=image", "image.kind=correlation",
                           "portfolio.models=per_instrument"])  # fmt: skip


def test_a_correlation_image_has_no_size_of_its_own():
    with pytest.raises(ConfigError, match="leave image.size at 0"):
        load_config(None, ["model.kind=cnn2d", "model.input=image", "image.kind=correlation",
                           "image.size=8"])  # fmt: skip


def test_a_correlation_image_of_one_instrument_is_a_clear_error(orcl_slice):
    from kerastrader.models.training import train

    cfg = tiny_config(model={"kind": "cnn2d", "input": "image"}, image={"kind": "correlation"})
    with pytest.raises(ConfigError, match="at least two instruments"):
        train(orcl_slice, cfg, {})


@pytest.fixture(scope="module")
def paper_book(orcl_slice, tmp_path_factory):
    """ORCL and a generated instrument that misses a day of 2006, with a correlation model:
    its backtest (bar by bar) and its paper session through the simulated gateway."""
    from kerastrader.config import validate
    from tests.test_paper_portfolio import book_runs, two_instrument_book

    folder = tmp_path_factory.mktemp("corr-paper")
    cfg = two_instrument_book(orcl_slice, folder, "2006-06-01", "2006-09-14")
    cfg["model"].update(kind="cnn2d", input="image", window=WINDOW, units=[4])
    cfg["image"]["kind"] = "correlation"
    validate(cfg)
    return book_runs(cfg, folder)


def test_a_paper_session_predicts_every_instrument_as_its_backtest(paper_book):
    bt_out, paper_out = paper_book
    a = pd.read_csv(paper_out / "predictions.csv").dropna()
    b = pd.read_csv(bt_out / "predictions.csv").dropna()
    both = a.merge(b, on=["date", "symbol"], suffixes=("_paper", "_bt"))
    assert len(both) == len(a) and set(both["symbol"]) == {"ORCL", "GEN"}
    assert both.groupby("symbol").size().min() > 80
    np.testing.assert_allclose(both["prediction_paper"], both["prediction_bt"], atol=1e-5)
    fa = pd.read_csv(paper_out / "transactions.csv").sort_values(["date", "symbol"])
    fb = pd.read_csv(bt_out / "transactions.csv").sort_values(["date", "symbol"])
    assert len(fa) >= 2
    assert list(zip(fa["date"], fa["symbol"], fa["amount"], strict=True)) == list(
        zip(fb["date"], fb["symbol"], fb["amount"], strict=True)
    )


def test_the_correlation_example_runs_end_to_end_from_run_backtest(tmp_path):
    import json

    from kerastrader.cli import run_backtest_main
    from tests.conftest import ROOT, shared_file

    for sym in ("spy", "agg", "xle", "xlf"):
        shared_file(f"{sym}-daily.csv")
    out = tmp_path / "run"
    argv = [str(ROOT / "examples" / "image_correlation.toml"), "--out", str(out), "-q",
            "--set", "training.epochs=1", "--set", "model.units=[4]",
            "--set", "report.figures=false", "--set", 'backtest.start="2024-01-02"']  # fmt: skip
    assert run_backtest_main(argv) == 0
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert meta["image"]["kind"] == "correlation"
    assert meta["image"]["universe"] == ["SPY", "AGG", "XLE", "XLF"]
    assert meta["onnx"]["max_abs_diff"] <= 1e-5
    predictions = pd.read_csv(out / "predictions.csv").dropna()
    assert set(predictions["symbol"]) == {"SPY", "AGG", "XLE", "XLF"}
