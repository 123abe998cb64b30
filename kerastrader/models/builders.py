"""Model builders: each returns a compiled Keras model for a (window, n_features) input.

A body (the family) ends in the configured head (:mod:`kerastrader.models.heads`), so the
indicator, the ONNX export and the report treat every family alike. An optional frozen
autoencoder front end (:mod:`kerastrader.models.autoencoder`) replaces or extends the feature
rows inside the same graph, so it is saved, exported and run bar by bar with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from kerastrader.errors import ConfigError
from kerastrader.models.heads import Head

KINDS = ("lstm", "gru", "dense", "cnn", "transformer", "cnn2d")


def _recurrent(
    x, kind: str, units: Sequence[int], dropout: float, activation: str, bidirectional: bool
):
    layer = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
    for i, u in enumerate(units):
        last = i == len(units) - 1
        rnn = layer(u, activation=activation, return_sequences=not last, name=f"{kind}_{i}")
        x = keras.layers.Bidirectional(rnn, name=f"bi_{kind}_{i}")(x) if bidirectional else rnn(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return x


def _dense(x, units: Sequence[int], dropout: float, activation: str):
    x = keras.layers.Flatten(name="flatten")(x)
    for i, u in enumerate(units):
        x = keras.layers.Dense(u, activation=activation, name=f"dense_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return x


def _cnn(x, units: Sequence[int], dropout: float, activation: str, kernel_size: int):
    # Causal padding: an output step never sees later steps of the window.
    for i, u in enumerate(units):
        x = keras.layers.Conv1D(
            u, kernel_size, padding="causal", activation=activation, name=f"conv_{i}"
        )(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.layers.GlobalAveragePooling1D(name="pool")(x)


def _transformer(x, units: Sequence[int], dropout: float, heads: int):
    """Encoder blocks over the window (self-attention + feed-forward, residual, layer norm)."""
    width = x.shape[-1]
    for i, u in enumerate(units):
        attn = keras.layers.MultiHeadAttention(
            num_heads=heads, key_dim=u, dropout=dropout, name=f"attention_{i}"
        )(x, x)
        x = keras.layers.LayerNormalization(name=f"norm_a{i}")(x + attn)
        ff = keras.layers.Dense(u, activation="relu", name=f"ff_{i}")(x)
        ff = keras.layers.Dense(width, name=f"ff_out_{i}")(ff)
        x = keras.layers.LayerNormalization(name=f"norm_f{i}")(x + ff)
    return keras.layers.GlobalAveragePooling1D(name="pool")(x)


def build_model(
    kind: str,
    window: int,
    n_features: int,
    units: Sequence[int] = (32,),
    dropout: float = 0.2,
    activation: str = "tanh",
    learning_rate: float = 1e-3,
    *,
    bidirectional: bool = False,
    kernel_size: int = 3,
    heads: int = 2,
    head: Head | None = None,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    front: Callable | None = None,
    pool: int = 2,
    pooling: str = "max",
) -> keras.Model:
    """A compiled model of the given family with the given head (default: direction).

    ``front`` maps the input tensor to the rows the body reads (the autoencoder's codes or
    anomaly score; for ``cnn2d``, :class:`~kerastrader.models.cnn2d.ImageFront` reshapes the
    flattened image); ``target_mean``/``target_std`` scale a regression head's output;
    ``pool``/``pooling`` size and kind the pooling after each ``cnn2d`` block.
    """
    head = head or Head()
    if kind not in KINDS:
        raise ConfigError(f"model.kind = {kind!r}: expected one of {', '.join(KINDS)}")
    if bidirectional and kind not in ("lstm", "gru"):
        raise ConfigError("model.bidirectional applies to lstm and gru only")
    inputs = keras.Input(shape=(window, n_features), name="window")
    x = front(inputs) if front is not None else inputs
    if kind in ("lstm", "gru"):
        x = _recurrent(x, kind, units, dropout, activation, bidirectional)
    elif kind == "dense":
        x = _dense(x, units, dropout, "relu" if activation == "tanh" else activation)
    elif kind == "cnn2d":
        from kerastrader.models.cnn2d import cnn2d_body

        act = "relu" if activation == "tanh" else activation
        x = cnn2d_body(x, units, dropout, act, kernel_size, pool, pooling)
    elif kind == "cnn":
        x = _cnn(x, units, dropout, "relu" if activation == "tanh" else activation, kernel_size)
    else:
        x = _transformer(x, units, dropout, heads)
    outputs = head.output_layers(x, target_mean, target_std)
    model = keras.Model(inputs, outputs, name=f"{kind}_{head.kind}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), **head.compile_args()
    )
    return model
