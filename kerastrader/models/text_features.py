"""Text as ordinary feature columns: lexicon scores per bar, and the encoder's token columns.

Every item gets one VADER compound score (``vaderSentiment``'s lexicon and rules, in [-1, 1]);
the items of a bar are those :func:`kerastrader.feeds.text.assign_bars` puts on it. Per bar t:

- ``vader_mean_N``: the mean score of the items of bars t-N+1..t (0 when there are none);
- ``vader_count_N``: how many items those bars have;
- ``vader_decay_N``: the mean score with each item weighted 0.5^(age / N), age in bars, over
  the trailing ``memory x N`` bars (a fixed memory, like the recursive price features, so the
  full-history and bar-by-bar paths agree exactly).

:class:`TextFeatureSet` appends these (and, with the learned encoder, the token ids of each
bar's items: :mod:`kerastrader.models.text_encoder`) to the numeric :class:`FeatureSet`'s
columns, and is a feature set itself: training, the scaler, the windows, the artifact and
both indicator passes use it unchanged. The bars' stamps come from the frame's index
(training) or the feed's ``datetime`` line (the indicator reads every line a feature set
names in ``inputs``). The first bar of any span has no previous close, so its items cannot
be told from older ones: its text columns are NaN, and each text feature looks back one bar
more than its span.

A book's model (several instruments, one shared model) reads each instrument's own items plus
the market-wide ones: the artifact records the book (``source.symbols``), and
:func:`for_symbol` gives the feature set of one instrument (a feed's Backtrader name, a
training universe's key), the same definition over that instrument's items. A model of one
instrument (``source.symbol``) reads that symbol's items whatever the feed is called.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError
from kerastrader.feeds.text import TextSource, assign_bars, bar_closes, bar_stamps
from kerastrader.models.features import FeatureSet

log = logging.getLogger(__name__)

_NAME = re.compile(r"^vader_(?P<kind>mean|count|decay)_(?P<span>\d+)$")
_ANALYZER: Any = None


def vader_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score of each text (the package's own analyser, created once)."""
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return np.array([_ANALYZER.polarity_scores(str(t))["compound"] for t in texts], dtype=float)


@dataclass(frozen=True)
class LexiconFeature:
    name: str
    kind: str  # mean, count or decay
    span: int
    memory: int

    @property
    def length(self) -> int:
        """Bars of per-bar sums one value combines."""
        return self.span * self.memory if self.kind == "decay" else self.span

    def weights(self) -> np.ndarray:
        """Weights of bars t, t-1, ... (most recent first)."""
        if self.kind == "decay":
            return np.power(0.5, np.arange(self.length) / self.span)
        return np.ones(self.length)

    def compute(self, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """One value per bar from the per-bar item counts and score sums (NaN rows stay NaN)."""
        n, w = len(counts), self.weights()
        out = np.full(n, np.nan)
        if n < len(w):
            return out
        c = np.convolve(counts, w, mode="valid")
        if self.kind == "count":
            out[len(w) - 1 :] = c
            return out
        s = np.convolve(sums, w, mode="valid")
        with np.errstate(divide="ignore", invalid="ignore"):
            out[len(w) - 1 :] = np.where(c > 0, s / c, np.where(np.isnan(c), np.nan, 0.0))
        return out


def parse_lexicon(name: str, memory: int) -> LexiconFeature:
    match = _NAME.match(name)
    if not match or int(match["span"]) < 1:
        raise ConfigError(
            f"text.features: unknown feature {name!r}; known: vader_mean_N (mean score of the "
            "items of the last N bars), vader_count_N (their number), vader_decay_N (scores "
            "weighted 0.5^(age/N))"
        )
    return LexiconFeature(name, match["kind"], int(match["span"]), memory)


class TextFeatureSet:
    """The numeric feature set plus text columns: a feature set for every consumer.

    ``spec`` is what the artifact stores (``metadata["features"]["text"]``): the lexicon
    features, the bar clock (daily or intraday, zone, session close), where the items came
    from, and the encoder's vocabulary and sizes. ``source`` holds the items.
    """

    def __init__(
        self, base: FeatureSet, spec: dict[str, Any], source: TextSource, symbol: str | None = None
    ) -> None:
        self.base = base
        self.spec = spec
        self.source = source
        # a book's model: each instrument reads its own items (for_symbol); ``symbol`` is the
        # instrument of such a per-instrument set (None: the book's own, or one instrument's)
        self.book = list(spec.get("source", {}).get("symbols") or [])
        self.symbol = symbol
        self._by_symbol: dict[str, TextFeatureSet] = {}
        self._book_set: TextFeatureSet | None = None
        self.memory = base.memory
        self.lexicon = [parse_lexicon(n, int(spec["memory"])) for n in spec["features"]]
        self.encoder = None
        if spec.get("encoder"):
            from kerastrader.models.text_encoder import BarTokens

            self.encoder = BarTokens(spec["encoder"])
        spans = [f.length + 1 for f in self.lexicon] + ([2] if self.encoder else [])
        if not spans:
            raise ConfigError("[text] is set but neither text.features nor text.encoder is")
        self.text_lookback = max(spans)
        self.lookback = max(base.lookback, self.text_lookback)
        token_names = self.encoder.column_names() if self.encoder else []
        self.text_names = [f.name for f in self.lexicon] + token_names
        self.names = list(base.names) + self.text_names
        self.columns = base.columns
        self.inputs = tuple(dict.fromkeys((*base.inputs, "datetime")))

    def __len__(self) -> int:
        return len(self.base) + len(self.text_names)

    def for_symbol(self, symbol: str) -> TextFeatureSet:
        """The feature set that reads ``symbol``'s bars: for a book's model, the same columns
        over that instrument's items plus the market-wide ones (one object per symbol, so
        per-item scores and token ids are made once); a one-instrument model's is itself."""
        if not self.book:
            return self
        if self._book_set is not None:
            return self._book_set.for_symbol(symbol)
        if not symbol:
            raise ConfigError(
                "a text model of a book reads each instrument's own items: its data feeds need "
                "their symbols as names (cerebro.adddata(feed, name=SYMBOL))"
            )
        if symbol not in self._by_symbol:
            child = TextFeatureSet(self.base, self.spec, self.source.for_symbol(symbol), symbol)
            child._book_set = self
            self._by_symbol[symbol] = child
        return self._by_symbol[symbol]

    @property
    def text_key(self) -> tuple:
        """What the text columns depend on besides the bars: vocabulary and instrument (a
        cache of computed columns keys on it; walk-forward folds fit their own vocabulary)."""
        return (self.encoder._key if self.encoder else None, self.symbol)

    @property
    def token_columns(self) -> slice:
        """Where the encoder's token ids sit among the columns (empty without an encoder)."""
        start = len(self.base) + len(self.lexicon)
        return slice(start, len(self))

    def _closes(self, bars: Any) -> np.ndarray:
        s = self.spec
        return bar_closes(bar_stamps(bars), bool(s["daily"]), s["timezone"], s["session_end"])

    def text_columns(self, bars: Any) -> np.ndarray:
        """(n_bars, n_text_columns): the text columns of every bar, from the items that the
        alignment puts on it. Only items before the last bar's close are read."""
        if self.book and self.symbol is None:
            raise ValueError("a book's text features are per instrument: use for_symbol(symbol)")
        self.source.refresh()
        closes = self._closes(bars)
        n = len(closes)
        out = np.full((n, len(self.text_names)), np.nan)
        if n < 2:
            return out
        # Items on bars 1..n-1: at or after bar 0's close and before the last bar's close.
        span = self.source.between(int(closes[0]), int(closes[-1]))
        rows = assign_bars(self.source.times[span], closes)
        if self.lexicon:
            scores = self.source.cached("vader", vader_scores)[span]
            counts = np.bincount(rows, minlength=n).astype(float)
            sums = np.bincount(rows, weights=scores, minlength=n).astype(float)
            counts[0] = sums[0] = np.nan  # bar 0's items cannot be told from older ones
            for j, f in enumerate(self.lexicon):
                out[:, j] = f.compute(counts, sums)
        if self.encoder is not None:
            tokens = self.encoder.bar_columns(self.source, span, rows, n)
            tokens[0] = np.nan
            out[:, len(self.lexicon) :] = tokens
        return out

    def compute(self, bars: Any) -> np.ndarray:
        """Full-history path: numeric columns, then text columns; NaN during the look-back."""
        out = np.column_stack([self.base.compute(bars), self.text_columns(bars)])
        out[: self.lookback - 1] = np.nan
        return out

    def compute_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.compute(bars), index=bars.index, columns=self.names)

    def compute_last(self, bars: Any) -> np.ndarray:
        """Bar-by-bar path: the last bar's row, from the trailing look-back only."""
        m = self.text_lookback
        if isinstance(bars, pd.DataFrame):
            recent = bars.iloc[-m:]
        else:
            recent = {"datetime": np.asarray(bars["datetime"])[-m:]}
        numeric = self.base.compute_last(bars)
        if len(bar_stamps(recent)) < m:
            return np.concatenate([numeric, np.full(len(self.text_names), np.nan)])
        return np.concatenate([numeric, self.text_columns(recent)[-1]])

    def to_dict(self) -> dict:
        text = {**self.spec, "columns": self.text_names}
        return {**self.base.to_dict(), "lookback": self.lookback, "text": text}


def _daily(universe: dict[str, pd.DataFrame]) -> bool:
    return all(bool((b.index == b.index.normalize()).all()) for b in universe.values())


def for_symbol(feature_set: Any, symbol: str) -> Any:
    """``feature_set`` as it reads ``symbol``'s bars (:meth:`TextFeatureSet.for_symbol`);
    any other feature set reads every instrument alike and is returned as it is."""
    if isinstance(feature_set, TextFeatureSet):
        return feature_set.for_symbol(symbol)
    return feature_set


def _training_source(cfg: dict[str, Any], universe: dict[str, pd.DataFrame]):
    """(source, what the artifact records of it) for a model trained on ``universe``: a book
    (several instruments) records them and reads per instrument; a book's per-instrument
    model (one instrument of a configured book) reads that instrument's items only."""
    from kerastrader.feeds.text import book_symbols, source_from_config

    source = source_from_config(cfg)
    record = {"path": source.path, "timezone": source.timezone,
              "columns": dict(source.columns), "symbol": source.symbol}  # fmt: skip
    if book_symbols(cfg) is not None:
        if len(universe) > 1:
            record["symbols"] = list(universe)
            source.outside(list(universe))
        else:
            source = source.for_symbol(next(iter(universe)))
            record["symbol"] = source.symbol
    return source, record


def text_spec(cfg: dict[str, Any], universe: dict[str, pd.DataFrame]) -> dict[str, Any] | None:
    """What the artifact records about the configured text inputs (None: no text)."""
    t, d = cfg["text"], cfg["data"]
    if not t["path"]:
        return None
    _, record = _training_source(cfg, universe)
    spec = {
        "features": list(t["features"]),
        "memory": int(cfg["features"]["memory"]),
        "daily": _daily(universe),
        "timezone": d["timezone"] or "UTC",
        "session_end": d["session_end"],
        "source": record,
        "encoder": None,
    }
    for f in spec["features"]:
        parse_lexicon(f, spec["memory"])  # a clear error for a misspelt name
    if spec["daily"]:
        bar_closes(np.zeros(0, dtype=np.int64), True, spec["timezone"], spec["session_end"])
    return spec


def with_text(base: FeatureSet, cfg: dict[str, Any], universe: dict[str, pd.DataFrame],
              head: Any = None) -> FeatureSet | TextFeatureSet:  # fmt: skip
    """Training's feature set: ``base`` plus the configured text columns (``base`` itself
    without ``[text]``). With the encoder, its vocabulary is fitted here on the items of the
    training bars only: the bars up to each symbol's last training window, as the splits
    (:func:`kerastrader.models.training.split_dataset`) place it, each symbol's own items
    (and the market-wide ones) on its own bars."""
    spec = text_spec(cfg, universe)
    if spec is None:
        return base
    source, _ = _training_source(cfg, universe)
    if cfg["text"]["encoder"]:
        from kerastrader.feeds.sessions import ExchangeClock
        from kerastrader.models.text_encoder import fit_vocabulary
        from kerastrader.models.training import split_dataset

        plain = TextFeatureSet(base, spec, source) if spec["features"] else base
        clock = ExchangeClock.from_config(cfg["data"])
        window = int(cfg["model"]["window"])
        horizon = head.horizon if head is not None else int(cfg["label"]["horizon"])
        last = {}
        for sym, b in universe.items():
            ends = split_dataset(b, for_symbol(plain, sym), window, cfg["split"], horizon, head,
                                 clock=clock, require=len(universe) == 1).ends["train"]  # fmt: skip
            if len(ends):  # (an instrument that began trading later has no training bars)
                last[sym] = int(ends[-1])
        sources = {sym: source.for_symbol(sym) if spec["source"].get("symbols") else source
                   for sym in last}  # fmt: skip
        spec["encoder"] = fit_vocabulary(cfg["text"], sources, universe, last, spec)
    return TextFeatureSet(base, spec, source)


def bound_feature_set(base: FeatureSet, features: dict[str, Any], source: TextSource | None):
    """The artifact's feature set: ``base`` plus its recorded text columns, reading ``source``
    (the run's) or, when none is bound, the items the model was trained with."""
    spec = features.get("text")
    if not spec:
        return base
    if source is None:
        from kerastrader.feeds.text import cached_source

        s = spec["source"]
        source = cached_source(s["path"], s["timezone"], s["columns"], s["symbol"])
    return TextFeatureSet(base, spec, source)


def bind_text(models: Any, cfg: dict[str, Any], *, watch: bool = False) -> None:
    """Point a run's text models at the run's ``[text]`` items (``watch``: a live session's
    file or folder, re-read when it changes, so new items enter at the next bar). ``models``
    is an artifact, a walk-forward model or a mapping of either; models without text and
    configs without ``[text]`` are left as they are. In a book's config, a book's model reads
    every instrument's items (each its own); a per-instrument model reads the items of the
    instrument it was trained on."""
    if not cfg["text"]["path"]:
        return
    from kerastrader.feeds.text import book_symbols, source_from_config

    source = source_from_config(cfg, watch=watch)
    book = book_symbols(cfg) is not None
    items = models.values() if isinstance(models, dict) else [models]
    for model in items:
        arts = [a for _, a in model.schedule()] if hasattr(model, "schedule") else [model]
        for art in arts:
            spec = art.metadata.get("features", {}).get("text")
            if spec:
                recorded = spec["source"]
                one = book and not recorded.get("symbols") and recorded.get("symbol")
                art.text = source.for_symbol(recorded["symbol"]) if one else source
                art.__dict__.pop("feature_set", None)  # built again around the new source
