"""Model builders: each returns a compiled Keras model for a (window, n_features) input."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def build_lstm_classifier(
    window: int,
    n_features: int,
    units: Sequence[int] = (32,),
    dropout: float = 0.2,
    activation: str = "tanh",
    learning_rate: float = 1e-3,
) -> keras.Model:
    """Stacked LSTM with a sigmoid head: P(Close[t+1] > Close[t]) from the window ending at t."""
    inputs = keras.Input(shape=(window, n_features), name="window")
    x = inputs
    for i, u in enumerate(units):
        last = i == len(units) - 1
        x = keras.layers.LSTM(
            u, activation=activation, return_sequences=not last, name=f"lstm_{i}"
        )(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_up")(x)
    model = keras.Model(inputs, outputs, name="lstm_direction")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    return model
