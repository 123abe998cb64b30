"""The learned text encoder: token ids of each bar's items, and the attention encoder over them.

Why this shape: the model keeps ONE packed input, the window of feature rows, so the artifact,
``KerasIndicator``'s two passes, the ONNX export and the parity checks stay those of every
other model. Each row carries, after its numeric and lexicon columns, the token ids of the
bar's latest ``items`` items (``tokens`` ids each, 0 = padding, 1 = a word outside the
vocabulary). Inside the graph the input is split in two: the numeric window, and the current
bar's token ids, which go through an embedding, one ``MultiHeadAttention`` block over all
tokens of the bar's items (padding masked) and a masked mean; that vector joins every row of
the numeric window, and the configured body and head read the result. Trained end to end on
the label. Tokenisation (Keras ``TextVectorization``) runs outside the graph, once per item,
with the vocabulary fitted on the items of the training bars only; the vocabulary is stored
in the artifact, so a word seen only later is out of vocabulary (id 1). String operations
are what the ONNX converter cannot take; the graph after them exports, so the bar-by-bar pass
runs ONNX like other models.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError
from kerastrader.feeds.text import TextSource, assign_bars, bar_closes, bar_stamps

log = logging.getLogger(__name__)


class _NoTableNotice(logging.Filter):
    """TextVectorization's lookup table lives outside the exported graph (tokenisation runs
    in Python); TensorFlow says so at every ONNX export with a warning that is harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "serializing table_initializer" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoTableNotice())

STANDARDIZE = "lower_and_strip_punctuation"


def vectorizer(tokens: int, vocabulary: list[str] | None = None, max_tokens: int | None = None):
    """Keras' TextVectorization with kerastrader's settings (whitespace split, lower case,
    punctuation stripped, ``tokens`` ids per item)."""
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens, standardize=STANDARDIZE, output_mode="int",
        output_sequence_length=tokens,
    )  # fmt: skip
    if vocabulary is not None:
        layer.set_vocabulary(vocabulary[2:])  # the first two are padding and [UNK]
    return layer


def fit_vocabulary(
    t: dict[str, Any],
    sources: dict[str, TextSource],
    universe: dict[str, pd.DataFrame],
    last_train: dict[str, int],
    spec: dict[str, Any],
) -> dict[str, Any]:
    """The encoder's settings, with the vocabulary fitted on the items that the alignment puts
    on training bars (bar 1 .. the last training window's bar of each symbol) only.

    ``sources`` are the items each symbol reads (a book: its own plus the market-wide ones).
    Each item counts once, in time order, however many instruments read it on their training
    bars: a market-wide headline is one document, not one per instrument of the book (the
    word counts would otherwise grow with the book's size for market-wide words only)."""
    found: dict[int, str] = {}
    for sym, source in sources.items():
        bars = universe[sym]
        closes = bar_closes(bar_stamps(bars), spec["daily"], spec["timezone"], spec["session_end"])
        span = source.between(int(closes[0]), int(closes[last_train[sym]]))
        rows = assign_bars(source.times[span], closes)
        keep = rows <= last_train[sym]
        found.update(zip(source.index[span][keep].tolist(), source.texts[span][keep], strict=True))
    texts = [found[i] for i in sorted(found)]
    if not texts:
        raise ConfigError("text.encoder: no items fall on the training bars to fit a vocabulary")
    layer = vectorizer(int(t["tokens"]), max_tokens=int(t["vocabulary"]))
    layer.adapt(np.array(texts, dtype=object))
    vocabulary = [str(w) for w in layer.get_vocabulary()]
    log.info("text encoder: vocabulary of %d from %d training items", len(vocabulary), len(texts))
    return {
        "vocabulary": vocabulary,
        "tokens": int(t["tokens"]),
        "items": int(t["items"]),
        "embedding": int(t["embedding"]),
        "heads": int(t["heads"]),
        "standardize": STANDARDIZE,
    }


class BarTokens:
    """Per-bar token columns: the ids of the bar's latest ``items`` items, oldest first."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.items, self.tokens = int(spec["items"]), int(spec["tokens"])
        digest = hashlib.sha256("\n".join(spec["vocabulary"]).encode()).hexdigest()[:16]
        self._key = f"tokens-{self.tokens}-{digest}"

    def column_names(self) -> list[str]:
        return [f"token_{i}_{j}" for i in range(self.items) for j in range(self.tokens)]

    def ids(self, texts: np.ndarray) -> np.ndarray:
        """Token ids (n_items, tokens) of ``texts`` with the stored vocabulary."""
        if len(texts) == 0:
            return np.zeros((0, self.tokens), dtype=np.int64)
        layer = vectorizer(self.tokens, self.spec["vocabulary"])
        return np.asarray(layer(np.array(texts, dtype=object)), dtype=np.int64)

    def bar_columns(self, source: TextSource, span: slice, rows: np.ndarray, n: int) -> np.ndarray:
        """(n, items x tokens) for ``n`` bars, given the items ``span`` of ``source`` and the
        bar ``rows`` the alignment gave them (ascending)."""
        out = np.zeros((n, self.items, self.tokens))
        if len(rows):
            ids = source.cached(self._key, self.ids)[span]
            last = np.searchsorted(rows, rows, side="right") - 1  # the bar's last item
            from_end = last - np.arange(len(rows))
            keep = from_end < self.items
            out[rows[keep], self.items - 1 - from_end[keep]] = ids[keep]
        return out.reshape(n, -1)


# -- the graph -------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="kerastrader")
class Columns(keras.layers.Layer):
    """Columns [start, stop) of every row of the window (``last``: of the last row only, as
    int32 token ids)."""

    def __init__(self, start: int, stop: int, last: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.stop, self.last = int(start), int(stop), bool(last)

    def call(self, x):
        if self.last:
            return keras.ops.cast(x[:, -1, self.start : self.stop], "int32")
        return x[:, :, self.start : self.stop]

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop, "last": self.last}


@keras.saving.register_keras_serializable(package="kerastrader")
class PairMask(keras.layers.Layer):
    """Attention mask (batch, T, T): true where both tokens are words, not padding."""

    def call(self, ids):
        m = keras.ops.cast(ids > 0, "float32")
        return keras.ops.expand_dims(m, 2) * keras.ops.expand_dims(m, 1) > 0.5


@keras.saving.register_keras_serializable(package="kerastrader")
class MaskedMean(keras.layers.Layer):
    """Mean of the token vectors that are words; zeros for a bar without items."""

    def call(self, inputs):
        h, ids = inputs
        m = keras.ops.expand_dims(keras.ops.cast(ids > 0, h.dtype), -1)
        total = keras.ops.sum(h * m, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(m, axis=1), 1.0)


@dataclass
class TextFront:
    """The model's front with the encoder: packed window -> numeric rows joined with the
    current bar's text vector. Picklable (a parallel tuning worker rebuilds models)."""

    window: int
    token_start: int
    token_stop: int
    spec: dict[str, Any]
    inner: Any = None  # another front (none supported yet)

    def __call__(self, packed):
        s = self.spec
        numeric = Columns(0, self.token_start, name="numeric_window")(packed)
        ids = Columns(self.token_start, self.token_stop, last=True, name="bar_tokens")(packed)
        width = int(s["embedding"])
        emb = keras.layers.Embedding(len(s["vocabulary"]), width, name="token_embedding")(ids)
        mask = PairMask(name="token_mask")(ids)
        att = keras.layers.MultiHeadAttention(
            num_heads=int(s["heads"]), key_dim=width, name="text_attention"
        )(emb, emb, attention_mask=mask)
        h = keras.layers.LayerNormalization(name="text_norm")(emb + att)
        vec = MaskedMean(name="text_pool")([h, ids])
        rows = keras.layers.RepeatVector(self.window, name="text_rows")(vec)
        return keras.layers.Concatenate(name="numeric_and_text")([numeric, rows])


def text_front(feature_set: Any, window: int, front: Any) -> Any:
    """The front that training builds the model with: ``front`` unchanged without an encoder."""
    encoder = getattr(feature_set, "encoder", None)
    if encoder is None:
        return front
    if front is not None:
        raise ConfigError("text.encoder cannot be combined with model.autoencoder")
    cols = feature_set.token_columns
    return TextFront(int(window), cols.start, cols.stop, encoder.spec)


def text_scaler(scaler: Any, feature_set: Any) -> Any:
    """The fitted scaler with the token id columns left as they are (mean 0, scale 1)."""
    if getattr(feature_set, "encoder", None) is None:
        return scaler
    mean, scale = scaler.mean.copy(), scaler.scale.copy()
    mean[feature_set.token_columns], scale[feature_set.token_columns] = 0.0, 1.0
    return type(scaler)(mean=mean, scale=scale)
