"""The leakage alarm passes the real pipeline and fires on a deliberately leaky feature."""

from __future__ import annotations

import numpy as np
import pytest

from kerastrader.cli import main
from kerastrader.models import features as feature_module
from kerastrader.models.leakage import random_walk_like

ARGS = [
    "--set", "model.window=10", "--set", "model.units=[4]", "--set", "model.dropout=0.0",
    "--set", "training.epochs=2", "--set", "training.patience=1",
    "--set", "training.batch_size=128", "--set", 'split.train_end=""',
    "--set", "split.train_fraction=0.4", "--set", "split.validation_fraction=0.1",
]  # fmt: skip


def _peek(b, n):
    """Leaks on purpose: the log return from this close to the NEXT one."""
    close = b["close"]
    out = np.zeros(len(close))
    out[:-1] = np.log(close[1:] / close[:-1])
    return out


def test_the_projects_own_pipeline_cannot_predict_a_random_walk(capsys):
    assert main(["check-leakage", "-q", *ARGS]) == 0
    line = capsys.readouterr().out.strip()
    assert "no leak detected" in line
    n = int(line.split("random-walk test bars: ")[1].split(";")[0])
    accuracy = float(line.split("accuracy ")[1].split(" ")[0])
    assert n >= 2000
    assert abs(accuracy - 0.5) <= 0.03


@pytest.fixture
def leaky_names(monkeypatch) -> str:
    """Registers the leaky ``peek`` feature for one test; the feature list that uses it."""
    monkeypatch.setitem(
        feature_module.KINDS,
        "peek",
        feature_module._Kind(_peek, ("close",), False, 1, lambda n: n, "LEAKS on purpose"),
    )
    return '["logret_1", "rsi_14", "peek_1"]'


def test_a_look_ahead_feature_is_caught(leaky_names, capsys):
    names = leaky_names
    assert main(["check-leakage", "-q", *ARGS, "--set", f"features.names={names}"]) == 3
    assert "LEAK:" in capsys.readouterr().out


def test_the_random_walk_keeps_the_shape_of_the_data(orcl):
    walk = random_walk_like(orcl, seed=1)
    assert walk.index.equals(orcl.index)
    vol = np.std(np.diff(np.log(walk["close"].to_numpy())))
    assert vol == pytest.approx(np.std(np.diff(np.log(orcl["close"].to_numpy()))), rel=0.1)
    assert (walk["high"] >= walk[["open", "close"]].max(axis=1)).all()


def test_a_regression_pipeline_is_judged_by_whether_its_predicted_return_calls_direction(capsys):
    args = [*ARGS, "--set", 'label.kind="regression"', "--set", "label.horizon=5"]
    assert main(["check-leakage", "-q", *args]) == 0
    assert "no leak detected" in capsys.readouterr().out


def test_a_leaky_feature_is_caught_in_a_three_class_pipeline(leaky_names, capsys):
    names = leaky_names
    args = [*ARGS, "--set", 'label.kind="three_class"', "--set", f"features.names={names}"]
    assert main(["check-leakage", "-q", *args]) == 3
    assert "LEAK:" in capsys.readouterr().out
