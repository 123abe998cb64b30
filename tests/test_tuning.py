"""Hyperparameter search: the declared space is checked first, trials are scored on validation.

Tiny data (600 training / 200 validation windows of 10 bars x 3 features, the label says whether
feature 0 averaged above zero) and a tiny Dense model keep every search at a few seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import keras
import numpy as np
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.tuning import ALGORITHMS, TuningResult, parse_space, search

SPACE = {
    "learning_rate": {"min": 1e-3, "max": 3e-2, "log": True},
    "dropout": {"min": 0.0, "max": 0.4, "step": 0.1},
    "units": {"choices": [[8], [16, 8]]},
    "activation": {"choices": ["relu", "tanh"]},
}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(800, 10, 3)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("float32")
    return x[:600], y[:600], x[600:], y[600:]


X_TRAIN, Y_TRAIN, X_VAL, Y_VAL = _data()


def build(values):
    """Flatten -> Dense(units...) -> Dense(1, sigmoid); keys missing from the space get defaults."""
    layers = [keras.Input((10, 3)), keras.layers.Flatten()]
    for units in values.get("units", [8]):
        layers.append(keras.layers.Dense(units, activation=values.get("activation", "relu")))
        layers.append(keras.layers.Dropout(values.get("dropout", 0.0)))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(values.get("learning_rate", 1e-2)), "binary_crossentropy")
    return model


def run(space, directory, **kwargs):
    kwargs = {"max_trials": 2, "epochs": 1, **kwargs}
    return search(build, space, X_TRAIN, Y_TRAIN, X_VAL, Y_VAL, directory=directory, **kwargs)


@pytest.fixture(scope="module")
def random_result(tmp_path_factory):
    """One random search over SPACE, and whatever it printed to stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = run(SPACE, tmp_path_factory.mktemp("tuning"), seed=7)
    return result, out.getvalue()


# --- the declared space ----------------------------------------------------------------------


def test_parse_space_accepts_ranges_and_choices_of_scalars_or_lists():
    parsed = parse_space(
        {
            "learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
            "dropout": {"min": 0.0, "max": 0.4, "step": 0.1},
            "window": {"min": 10, "max": 60, "step": 10},
            "units": {"choices": [[16], [32, 16]]},
            "kind": {"choices": ["lstm", "gru"]},
        }
    )
    assert parsed["learning_rate"] == dict(type="float", min=1e-4, max=1e-2, step=None, log=True)
    assert parsed["dropout"]["type"] == "float"
    assert parsed["window"] == {"type": "int", "min": 10, "max": 60, "step": 10, "log": False}
    assert parsed["units"] == {"type": "choice", "values": [[16], [32, 16]]}
    assert parsed["kind"] == {"type": "choice", "values": ["lstm", "gru"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"min": 0.4, "max": 0.0}, "tuning.space.dropout: min must be below max"),
        ({"min": 0.1, "max": 0.1}, "tuning.space.dropout: min must be below max"),
        ({"choices": []}, "tuning.space.dropout: choices must be a non-empty list"),
        ({"choices": 0.1}, "tuning.space.dropout: choices must be a non-empty list"),
        ({"choices": [0.1, 0.1]}, "tuning.space.dropout: choice 0.1 is listed twice"),
        ({"choices": [0.1, {"a": 1}]}, r"tuning.space.dropout: choice \{'a': 1\} is not"),
        ({"choices": [0.1], "min": 0.0}, "tuning.space.dropout: choices cannot be combined"),
        ({"min": 0.0, "max": 0.4, "stepp": 0.1}, r"tuning.space.dropout: unknown field\(s\) stepp"),
        ({"min": 0.0}, "tuning.space.dropout: needs both min and max"),
        ({"min": "0", "max": 0.4}, "tuning.space.dropout: min must be a finite number"),
        ({"min": 0.0, "max": 0.4, "step": -0.1}, "tuning.space.dropout: step must be positive"),
        ({"min": 0.0, "max": 0.4, "log": True}, r"tuning.space.dropout: log = true needs min > 0"),
        ({"min": 0.1, "max": 0.4, "log": "yes"}, "tuning.space.dropout: log must be true or false"),
        ({"min": 0.1, "max": 0.4, "log": True, "step": 0.5}, "step is a factor"),
        (0.1, "tuning.space.dropout: expected a table"),
    ],
)
def test_parse_space_rejects_a_bad_spec_naming_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"dropout": spec})


def test_parse_space_rejects_a_key_the_builder_does_not_know():
    with pytest.raises(ConfigError, match=r"tuning.space.dropuot: not a tunable setting"):
        parse_space({"dropuot": {"min": 0.0, "max": 0.4}}, allowed=["dropout", "units"])


def test_parse_space_rejects_an_empty_space():
    with pytest.raises(ConfigError, match="tuning.space: declares no hyperparameters"):
        parse_space({})


# --- a search ----------------------------------------------------------------------------------


def test_best_holds_exactly_the_space_keys_with_real_values(random_result):
    result, _ = random_result
    best = result.best
    assert set(best) == set(SPACE)
    assert best["units"] in ([8], [16, 8])  # the list itself, not the index keras-tuner searched
    assert best["activation"] in ("relu", "tanh")
    assert 1e-3 <= best["learning_rate"] <= 3e-2
    assert math.isclose(best["dropout"] * 10, round(best["dropout"] * 10), abs_tol=1e-9)


def test_every_trial_is_recorded_and_the_best_score_is_their_minimum(random_result):
    result, _ = random_result
    assert len(result.trials) == 2
    scores = [t["score"] for t in result.trials]
    assert result.score == min(scores)
    assert result.best == result.trials[scores.index(min(scores))]["hyperparameters"]
    assert result.objective == "val_loss" and result.direction == "min"


def test_keras_tuner_prints_nothing_to_stdout(random_result):
    _, printed = random_result
    assert printed == ""


def test_to_dict_round_trips_through_json(random_result):
    result, _ = random_result
    data = json.loads(json.dumps(result.to_dict()))
    assert data == result.to_dict()
    assert TuningResult(**data) == result


def test_the_same_seed_gives_the_same_best(random_result, tmp_path):
    first, _ = random_result
    again = run(SPACE, tmp_path, seed=7)
    assert again.best == first.best
    assert again.trials == first.trials  # the same values, trained to the same scores


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_runs_on_the_tiny_problem(algorithm, tmp_path):
    space = {"learning_rate": {"min": 1e-3, "max": 3e-2, "log": True}, "units": SPACE["units"]}
    result = run(space, tmp_path, algorithm=algorithm, progress=True)
    assert result.algorithm == algorithm
    assert set(result.best) == set(space)
    assert result.best["units"] in ([8], [16, 8])
    assert result.trials and all(t["score"] is not None for t in result.trials)
    json.dumps(result.to_dict())  # plain Python values, whichever oracle proposed them


def test_an_absurd_learning_rate_loses_to_a_sensible_one(tmp_path):
    space = {"learning_rate": {"choices": [1e-12, 1e-2]}}
    result = run(space, tmp_path, epochs=5, batch_size=32)
    assert sorted(t["hyperparameters"]["learning_rate"] for t in result.trials) == [1e-12, 1e-2]
    assert result.best == {"learning_rate": 1e-2}


def test_a_trial_with_a_nan_objective_gets_no_score_and_the_search_goes_on(tmp_path):
    def build_poisoned(values):
        model = build(values)
        if values["poison"]:
            model.compile("adam", lambda y, p: keras.ops.mean(p) * float("nan"))
        return model

    result = search(
        build_poisoned,
        {"poison": {"choices": [True, False]}},
        X_TRAIN,
        Y_TRAIN,
        X_VAL,
        Y_VAL,
        max_trials=2,
        epochs=1,
        directory=tmp_path,
    )
    by_poison = {t["hyperparameters"]["poison"]: t["score"] for t in result.trials}
    assert by_poison[True] is None and by_poison[False] is not None
    assert result.best == {"poison": False}


# --- mistakes are refused, errors surface ------------------------------------------------------


def test_an_unknown_algorithm_is_refused_listing_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="'grid': unknown .*random, hyperband, bayesian"):
        run(SPACE, tmp_path, algorithm="grid")


def test_max_trials_below_one_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="tuning.max_trials = 0"):
        run(SPACE, tmp_path, max_trials=0)


def test_an_objective_on_the_training_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="must be a validation metric"):
        run(SPACE, tmp_path, objective="loss")


def test_a_builder_error_ends_the_search_with_that_error(tmp_path):
    def broken(values):
        raise KeyError("no such layer")

    with pytest.raises(KeyError, match="no such layer") as caught:
        search(broken, SPACE, X_TRAIN, Y_TRAIN, X_VAL, Y_VAL, directory=tmp_path)
    assert any("hyperparameters" in note for note in caught.value.__notes__)


def test_sample_weight_reaches_fit(tmp_path):
    # A weight vector of the wrong length can only fail inside fit: proof it is passed on.
    with pytest.raises(ValueError):
        run(SPACE, tmp_path, sample_weight=np.ones(len(X_TRAIN) - 1, dtype="float32"))
    run({"units": SPACE["units"]}, tmp_path, max_trials=1, sample_weight=np.ones(len(X_TRAIN)))
