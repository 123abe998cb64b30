"""A user's model builder, imported by path in tests (``tests.plugins.user_models:tiny_gru``)."""

from __future__ import annotations

import keras


def tiny_gru(input_shape, head="direction"):
    """A compiled GRU with the head the config asks for."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.GRU(4)(inputs)
    if head == "regression":
        out = keras.layers.Dense(1)(x)
        loss = "mse"
    else:
        out = keras.layers.Dense(1, activation="sigmoid")(x)
        loss = "binary_crossentropy"
    model = keras.Model(inputs, out, name="user_gru")
    model.compile(optimizer="adam", loss=loss)
    return model


def wrong_output(input_shape):
    inputs = keras.Input(shape=input_shape)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    model.compile(optimizer="adam", loss="mse")
    return model
