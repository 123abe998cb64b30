"""[text] for a book: each instrument reads its own items plus the market-wide ones.

Two generated instruments (``kerastrader.feeds.news_corpus``) with their own headlines, a
market-wide stream (empty symbol) and items about a symbol outside the book. Expected
columns come from a plain loop over the items file (the alignment rule written out: an item
belongs to the first bar whose 16:00 New York close is strictly after it) with VADER's own
analyser; expected predictions from the Keras model called directly on windows built here
from those columns and the artifact's scaler numbers.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from kerastrader.config import load_config
from kerastrader.errors import ConfigError
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.news_corpus import generate
from kerastrader.feeds.text import TextSource
from kerastrader.models.artifact import load_artifact, save_artifact
from kerastrader.models.features import FeatureSet
from kerastrader.models.heads import Head
from kerastrader.models.shared_indicator import SharedKerasIndicator
from kerastrader.models.text_features import TextFeatureSet, bound_feature_set, with_text
from kerastrader.models.training import train

NY = ZoneInfo("America/New_York")
BOOK = ["AAA", "BBB"]
NAMES = ("vader_mean_1", "vader_count_2", "vader_decay_2")


def book_data(days: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Bars of AAA and BBB on the same days, and one items frame: each one's headlines, a
    market-wide stream (symbol "") and headlines about ZZZ, which is not in the book."""
    universe, parts = {}, []
    for sym, seed in (("AAA", 1), ("BBB", 2)):
        bars, items = generate(days, seed=seed, drift=0.008)
        universe[sym] = bars
        parts.append(items.assign(symbol=sym, text=items["text"].str.replace("ACME", sym)))
    _, market = generate(days, seed=3)
    parts.append(market.iloc[::3].assign(symbol="", text=market["text"].str.replace("ACME", "")))
    _, other = generate(days, seed=4)
    parts.append(other.iloc[::4].assign(symbol="ZZZ"))
    return universe, pd.concat(parts, ignore_index=True)


def by_hand(bars: pd.DataFrame, items: pd.DataFrame, symbol: str, memory: int) -> np.ndarray:
    """vader_mean_1, vader_count_2, vader_decay_2 of ``symbol``: its items and the market's,
    each on the first bar closing strictly after it, bar 0's left out; a plain loop."""
    analyser = SentimentIntensityAnalyzer()
    closes = [dt.datetime.combine(d.date(), dt.time(16, 0), tzinfo=NY) for d in bars.index]
    per_bar: list[list[float]] = [[] for _ in closes]
    for stamp, sym, text in items[["timestamp", "symbol", "text"]].itertuples(index=False):
        if sym not in ("", symbol):
            continue
        when = dt.datetime.fromisoformat(stamp)
        for i, close in enumerate(closes):
            if close > when:
                per_bar[i].append(analyser.polarity_scores(text)["compound"])
                break
    out = np.full((len(closes), 3), np.nan)
    for t in range(1, len(closes)):
        out[t, 0] = np.mean(per_bar[t]) if per_bar[t] else 0.0
        if t >= 2:
            out[t, 1] = len(per_bar[t]) + len(per_bar[t - 1])
        if t >= 2 * memory:  # bars t - 2 memory + 1 .. t, weights 0.5 ** (age / 2)
            num = den = 0.0
            for age in range(2 * memory):
                w = 0.5 ** (age / 2)
                num += w * sum(per_bar[t - age])
                den += w * len(per_bar[t - age])
            out[t, 2] = num / den if den else 0.0
    return out


def book_features(path, memory: int = 3, encoder=None) -> TextFeatureSet:
    spec = {"features": list(NAMES), "memory": memory, "daily": True,
            "timezone": "America/New_York", "session_end": "16:00", "encoder": encoder,
            "source": {"path": str(path), "timezone": "", "columns": {}, "symbol": "",
                       "symbols": BOOK}}  # fmt: skip
    return TextFeatureSet(FeatureSet(["logret_1"]), spec, TextSource(str(path)))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    universe, items = book_data(40)
    path = tmp_path_factory.mktemp("small") / "news.csv"
    items.to_csv(path, index=False)
    return universe, items, path


def test_each_instrument_reads_its_own_and_the_market_wide_items(small, tmp_path):
    universe, items, path = small
    fs = book_features(path)
    got = {sym: fs.for_symbol(sym).text_columns(universe[sym]) for sym in BOOK}
    for sym in BOOK:
        want = by_hand(universe[sym], items, sym, memory=3)
        assert np.isfinite(want[:, 0]).sum() > 30 and (want[2:, 1] > 0).all()
        np.testing.assert_allclose(got[sym], want, rtol=0, atol=1e-12, equal_nan=True)
    # BBB's headlines rewritten and moved: nothing of AAA's columns changes
    changed = items.copy()
    bbb = changed["symbol"] == "BBB"
    changed.loc[bbb, "text"] = "terrible awful disaster, investors furious"
    changed.loc[bbb, "timestamp"] = changed.loc[bbb, "timestamp"].iloc[::-1].to_numpy()
    other = tmp_path / "news.csv"
    changed.to_csv(other, index=False)
    again = book_features(other).for_symbol("AAA").text_columns(universe["AAA"])
    np.testing.assert_array_equal(again, got["AAA"])
    assert not np.array_equal(
        book_features(other).for_symbol("BBB").text_columns(universe["BBB"]), got["BBB"]
    )


ENCODER = {"vocabulary": ["", "[UNK]", "aaa", "bbb", "rally", "slumps", "terrible"],
           "tokens": 4, "items": 2, "embedding": 4, "heads": 1}  # fmt: skip


@pytest.mark.parametrize("encoder", [None, ENCODER], ids=["lexicon", "lexicon+tokens"])
def test_items_after_a_close_change_nothing_at_or_before_it_for_every_instrument(
    small, tmp_path, encoder
):
    universe, items, path = small
    base = book_features(path, encoder=encoder)
    before = {sym: base.for_symbol(sym).compute(universe[sym]) for sym in BOOK}
    dates = universe["AAA"].index
    for t in range(0, len(dates) - 1, 3):
        close = pd.Timestamp(dates[t].date()).tz_localize(NY) + pd.Timedelta(hours=16)
        stamps = pd.to_datetime(items["timestamp"], utc=True)
        kept = items[(stamps < close).to_numpy()]
        later = pd.DataFrame(
            [((close + pd.Timedelta(minutes=m)).isoformat(), sym, text)
             for m, text in ((0, "terrible awful rally"), (95, "wonderful superb slumps"))
             for sym in ("AAA", "BBB", "", "ZZZ")],
            columns=items.columns,
        )  # fmt: skip
        news = tmp_path / f"news-{t}.csv"
        pd.concat([kept, later]).to_csv(news, index=False)
        after = book_features(news, encoder=encoder)
        for sym in BOOK:
            got = after.for_symbol(sym).compute(universe[sym])
            np.testing.assert_array_equal(got[: t + 1], before[sym][: t + 1])


def test_a_one_instrument_spec_reads_its_symbol_whatever_the_feed_is_called(small):
    """Metadata written before books (source.symbol, no source.symbols) loads as it did."""
    universe, items, path = small
    spec = {"features": list(NAMES), "memory": 3, "daily": True,
            "timezone": "America/New_York", "session_end": "16:00", "encoder": None,
            "source": {"path": str(path), "timezone": "", "columns": {}, "symbol": "AAA"},
            "columns": list(NAMES)}  # fmt: skip
    fs = bound_feature_set(FeatureSet(["logret_1"]), {"text": spec}, None)
    assert fs.for_symbol("S0") is fs and fs.for_symbol("BBB") is fs
    want = by_hand(universe["AAA"], items, "AAA", memory=3)
    np.testing.assert_allclose(fs.text_columns(universe["AAA"]), want, atol=1e-12, equal_nan=True)


def _sets(path, **extra) -> list[str]:
    sets = {
        "data.symbols": BOOK, "data.timezone": "America/New_York", "data.session_end": "16:00",
        "text.path": str(path), "text.features": list(NAMES), "features.names": ["logret_1"],
        "features.memory": 3, "model.kind": "dense", "model.window": 2, "model.units": [4],
        "model.dropout": 0.0, "split.train_end": "", "split.validation_end": "",
        "training.epochs": 2, "training.patience": 1, "text.vocabulary": 200,
        "text.tokens": 6, "text.items": 3, "text.embedding": 4, "text.heads": 1, **extra,
    }  # fmt: skip
    return [f"{k}={v!r}".replace("'", '"') if not isinstance(v, bool) else f"{k}={str(v).lower()}"
            for k, v in sets.items()]  # fmt: skip


def test_a_per_instrument_model_reads_its_instruments_items(small, caplog, tmp_path):
    universe, items, _ = small
    path = tmp_path / "news.csv"  # a file of its own: its reading logs what it ignores once
    items.to_csv(path, index=False)
    cfg = load_config(None, _sets(path, **{"portfolio.models": "per_instrument"}))
    with caplog.at_level(logging.INFO, logger="kerastrader.feeds.text"):
        fs = with_text(FeatureSet(["logret_1"]), cfg, {"BBB": universe["BBB"]}, Head())
    assert fs.spec["source"]["symbol"] == "BBB" and "symbols" not in fs.spec["source"]
    want = by_hand(universe["BBB"], items, "BBB", memory=3)
    np.testing.assert_allclose(fs.text_columns(universe["BBB"]), want, atol=1e-12, equal_nan=True)
    outside = int((items["symbol"] == "ZZZ").sum())
    notes = [r.getMessage() for r in caplog.records if "outside the book" in r.getMessage()]
    assert notes == [f"text: {outside} of {len(items)} items name a symbol outside the book "
                     "(AAA, BBB): ignored"]  # fmt: skip


def test_the_vocabulary_comes_from_every_instruments_training_items_only(small, tmp_path):
    universe, items, _ = small
    days = universe["AAA"].index  # 40 days: the first 60% of the windows train

    def at(day: int) -> str:
        return pd.Timestamp(days[day].date()).tz_localize(NY).replace(hour=11).isoformat()

    extra = pd.DataFrame(
        [(at(5), "BBB", "quaffle early word"),  # BBB, a training bar
         (at(6), "", "snorkack market word"),  # market-wide, a training bar
         (at(7), "ZZZ", "blibber outside word"),  # not in the book
         (at(len(days) - 1), "AAA", "zorblat late word")],  # AAA, the last (test) bar
        columns=items.columns,
    )  # fmt: skip
    news = tmp_path / "news.csv"
    pd.concat([items, extra]).to_csv(news, index=False)
    cfg = load_config(None, _sets(news, **{"text.encoder": True}))
    fs = with_text(FeatureSet(["logret_1"]), cfg, universe, Head())
    vocabulary = fs.encoder.spec["vocabulary"]
    assert "quaffle" in vocabulary and "snorkack" in vocabulary
    assert "zorblat" not in vocabulary and "blibber" not in vocabulary


class _Shared(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)


def _lines(universe, model, runonce: bool) -> dict[str, np.ndarray]:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for sym, bars in universe.items():
        cerebro.adddata(make_feed(bars, sym), name=sym)
    cerebro.addstrategy(_Shared, model=model)
    shared = cerebro.run()[0].shared
    return {sym: np.asarray(shared.lines[i].array[: len(b)], dtype=float)
            for i, (sym, b) in enumerate(universe.items())}  # fmt: skip


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    universe, items = book_data(260)
    folder = tmp_path_factory.mktemp("shared")
    items.to_csv(folder / "news.csv", index=False)
    cfg = load_config(None, _sets(folder / "news.csv"))
    result = train(universe, cfg, {"symbols": BOOK})
    loaded = load_artifact(save_artifact(result.artifact, folder / "model"), cache=False)
    lines = {runonce: _lines(universe, loaded, runonce) for runonce in (True, False)}
    return universe, items, loaded, lines


def expected_predictions(bars, items, sym, art) -> np.ndarray:
    """The Keras model on windows of [numeric, plain-loop lexicon] rows, scaled with the
    artifact's numbers."""
    meta = art.metadata
    numeric = FeatureSet(meta["features"]["names"], memory=meta["features"]["memory"])
    rows = np.column_stack([numeric.compute_frame(bars).to_numpy(),
                            by_hand(bars, items, sym, meta["features"]["memory"])])  # fmt: skip
    scaled = (rows - np.asarray(meta["scaler"]["mean"])) / np.asarray(meta["scaler"]["scale"])
    w = int(meta["window"])
    ends = [t for t in range(w - 1, len(bars)) if np.isfinite(rows[t - w + 1 : t + 1]).all()]
    x = np.stack([scaled[t - w + 1 : t + 1] for t in ends]).astype(np.float32)
    out = np.full(len(bars), np.nan)
    out[ends] = np.asarray(art.model(x, training=False))[:, 0]
    return out


def test_a_shared_text_model_predicts_each_instrument_from_its_own_items(shared_model):
    universe, items, loaded, lines = shared_model
    assert loaded.metadata["features"]["text"]["source"]["symbols"] == BOOK
    for sym, bars in universe.items():
        want = expected_predictions(bars, items, sym, loaded)
        assert np.isfinite(want).sum() > 200
        np.testing.assert_allclose(lines[True][sym], want, rtol=0, atol=1e-5, equal_nan=True)


def test_the_shared_text_models_two_passes_agree_on_every_instrument(shared_model):
    universe, _, _, lines = shared_model
    for sym in universe:
        assert np.isfinite(lines[False][sym]).sum() > 200
        np.testing.assert_allclose(lines[False][sym], lines[True][sym], rtol=0, atol=1e-5,
                                   equal_nan=True)  # fmt: skip


def test_a_book_model_needs_named_feeds(shared_model):
    universe, _, loaded, _ = shared_model
    with pytest.raises(ConfigError, match="symbols as names"):
        loaded.features_for("")


def _write_bars(bars: pd.DataFrame, path) -> None:
    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.index.name = "Date"
    frame.to_csv(path, float_format="%.4f")


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """A two-instrument book with lexicon scores and the encoder through the CLI: a run that
    trains, and a ``--model DIR`` rerun of its saved model."""
    from kerastrader.cli import run_backtest_main

    folder = tmp_path_factory.mktemp("cli")
    universe, items = book_data(260)
    (folder / "bars").mkdir()
    for sym, bars in universe.items():
        _write_bars(bars, folder / "bars" / f"{sym.lower()}.csv")
    items.to_csv(folder / "news.csv", index=False)
    sections: dict[str, dict] = {}
    for line in _sets(folder / "news.csv", **{"text.encoder": True}):
        key, value = line.split("=", 1)
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    sections["data"]["path"] = _toml(str(folder / "bars" / "*.csv"))
    sections["data"]["returns"] = _toml("price")
    sections["report"] = {"figures": "false"}
    sections["strategy"] = {"enter": "0.5", "exit": "0.499"}
    sections["benchmark"] = {"costs": "false"}
    config = folder / "book.toml"
    config.write_text("\n".join(f"[{s}]\n" + "\n".join(f"{k} = {v}" for k, v in kv.items())
                                for s, kv in sections.items()) + "\n")  # fmt: skip
    first, again = folder / "run", folder / "again"
    codes = (
        run_backtest_main([str(config), "--out", str(first), "-q"]),
        run_backtest_main([str(config), "--out", str(again), "--model", str(first / "model"),
                           "-q"]),
    )  # fmt: skip
    return config, codes, first, again


def test_a_book_with_text_runs_through_the_cli_and_reruns_from_its_model(cli_runs):
    _, codes, first, again = cli_runs
    assert codes == (0, 0)
    a = pd.read_csv(first / "predictions.csv").dropna()
    b = pd.read_csv(again / "predictions.csv").dropna()
    assert set(a["symbol"]) == set(BOOK)
    assert all((a["symbol"] == sym).sum() > 50 for sym in BOOK)
    both = a.merge(b, on=["date", "symbol"], suffixes=("_run", "_rerun"))
    assert len(both) == len(a)
    np.testing.assert_allclose(both["prediction_rerun"], both["prediction_run"], atol=1e-6)


def test_a_simulated_paper_session_predicts_the_book_as_its_backtest(cli_runs, tmp_path):
    from kerastrader.runs.paper import run_paper

    config, codes, first, _ = cli_runs
    assert codes[0] == 0
    cfg = load_config(config, ["paper.align_seconds=0.5"])
    run_paper(cfg, tmp_path / "paper", model_dir=first / "model", simulate=True)
    a = pd.read_csv(tmp_path / "paper" / "predictions.csv").dropna()
    b = pd.read_csv(first / "predictions.csv").dropna()
    both = a.merge(b, on=["date", "symbol"], suffixes=("_paper", "_bt"))
    assert set(both["symbol"]) == set(BOOK) and len(both) == len(a)
    assert all((both["symbol"] == sym).sum() > 40 for sym in BOOK)
    np.testing.assert_allclose(both["prediction_paper"], both["prediction_bt"], atol=1e-5)


def test_walk_forward_folds_vocabularies_in_both_passes_of_a_book(tmp_path):
    """Each fold fits its own vocabulary: the vectorised pass, which computes a feed's
    columns once per feature set, must not give a later fold the first fold's token ids."""
    from kerastrader.models.walkforward import walk_forward

    universe, items = book_data(200)
    days = universe["AAA"].index
    new_word = pd.DataFrame(  # frequent from day 110 on: in the second fold's vocabulary only
        [(pd.Timestamp(days[d].date()).tz_localize(NY).replace(hour=12).isoformat(), sym,
          f"grindylow grindylow news for {sym}") for d in range(110, 200, 2) for sym in BOOK],
        columns=items.columns,
    )  # fmt: skip
    pd.concat([items, new_word]).to_csv(tmp_path / "news.csv", index=False)
    sets = _sets(tmp_path / "news.csv", **{"text.encoder": True, "text.features": []})
    cfg = load_config(None, sets + ["walkforward.enabled=true", "walkforward.train_bars=80",
                                    "walkforward.validation_bars=20", "walkforward.step=50",
                                    "walkforward.folds=2"])  # fmt: skip
    model = walk_forward(universe, cfg, {"symbols": BOOK}, tmp_path / "model")
    vocabularies = [a.metadata["features"]["text"]["encoder"]["vocabulary"]
                    for _, a in model.schedule()]  # fmt: skip
    assert len(vocabularies) == 2 and "grindylow" in set(vocabularies[1]) - set(vocabularies[0])
    vectorised, stepped = _lines(universe, model, True), _lines(universe, model, False)
    for sym in BOOK:
        assert np.isfinite(vectorised[sym]).sum() > 90
        np.testing.assert_allclose(stepped[sym], vectorised[sym], rtol=0, atol=1e-5,
                                   equal_nan=True)  # fmt: skip


def test_a_loaded_per_instrument_model_is_bound_to_its_instruments_items(small):
    """``--model DIR`` or a paper session with a book's config: the run's items are bound
    to each per-instrument model as the items of the instrument it was trained on."""
    from kerastrader.models.artifact import Artifact
    from kerastrader.models.text_features import bind_text

    universe, items, path = small
    cfg = load_config(None, _sets(path, **{"portfolio.models": "per_instrument"}))
    models = {}
    for sym in BOOK:
        spec = with_text(FeatureSet(["logret_1"]), cfg, {sym: universe[sym]}, Head()).to_dict()
        models[sym] = Artifact(model=None, metadata={"features": spec})
    bind_text(models, cfg, watch=True)
    for sym, art in models.items():
        assert art.text.watch and art.text.symbol == sym
        want = by_hand(universe[sym], items, sym, memory=3)
        got = art.features_for("ignored").text_columns(universe[sym])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
