"""A user's own model for kerastrader: any function taking the input shape (window, features)
and returning a compiled Keras model. Used by examples/custom_model.toml."""

from __future__ import annotations

import keras


def build(input_shape, head="direction"):
    """A residual 1-D convolution stack with a GRU on top."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv1D(16, 3, padding="causal", activation="relu")(inputs)
    y = keras.layers.Conv1D(16, 3, padding="causal", activation="relu")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GRU(16)(x)
    if head == "regression":
        out, loss = keras.layers.Dense(1)(x), "mse"
    else:
        out, loss = keras.layers.Dense(1, activation="sigmoid")(x), "binary_crossentropy"
    model = keras.Model(inputs, out, name="residual_cnn_gru")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return model
