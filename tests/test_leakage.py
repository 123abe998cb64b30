"""The leakage alarm runs the configured pipeline as a run does (the runner's loader, several
symbols, walk-forward) and fires on a deliberately leaky feature or label."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kerastrader.cli import main
from kerastrader.config import load_config
from kerastrader.models import features as feature_module
from kerastrader.models.heads import Head
from kerastrader.models.leakage import check_leakage, random_walk_like

ARGS = [
    "--set", "model.window=10", "--set", "model.units=[4]", "--set", "model.dropout=0.0",
    "--set", "training.epochs=2", "--set", "training.patience=1",
    "--set", "training.batch_size=128", "--set", 'split.train_end=""',
    "--set", "split.train_fraction=0.4", "--set", "split.validation_fraction=0.1",
]  # fmt: skip
LEAKY_NAMES = '["logret_1", "rsi_14", "peek_1"]'
WALK_FORWARD = [
    "walkforward.enabled=true", "walkforward.train_bars=400", "walkforward.validation_bars=150",
    "walkforward.step=250", "walkforward.folds=2", "training.epochs=1",
]  # fmt: skip


def _overrides(*extra: str) -> list[str]:
    """ARGS as load_config overrides, plus ``extra``."""
    return [*ARGS[1::2], *extra]


def _peek(b, n):
    """Leaks on purpose: the log return from this close to the NEXT one."""
    close = b["close"]
    out = np.zeros(len(close))
    out[:-1] = np.log(close[1:] / close[:-1])
    return out


@pytest.fixture
def leaky_names(monkeypatch) -> str:
    """Registers the leaky ``peek`` feature for one test; the feature list that uses it."""
    monkeypatch.setitem(
        feature_module.KINDS,
        "peek",
        feature_module._Kind(_peek, ("close",), False, 1, lambda n: n, "LEAKS on purpose"),
    )
    return LEAKY_NAMES


@pytest.fixture(scope="module")
def two_symbols(orcl_slice_csv, tmp_path_factory) -> str:
    """A glob over two files, AAA and BBB (ORCL 2000-2006 each: the walks differ anyway)."""
    folder = tmp_path_factory.mktemp("two-symbols")
    for name in ("aaa.csv", "bbb.csv"):
        shutil.copy(orcl_slice_csv, folder / name)
    return str(folder / "*.csv")


def test_the_projects_own_pipeline_cannot_predict_a_random_walk(capsys):
    assert main(["check-leakage", "-q", *ARGS]) == 0
    line = capsys.readouterr().out.strip()
    assert "no leak detected" in line
    n = int(line.split("random-walk test bars: ")[1].split(" ")[0])
    accuracy = float(line.split("accuracy ")[1].split(" ")[0])
    assert n >= 2000
    assert abs(accuracy - 0.5) <= 0.03


def test_a_look_ahead_feature_is_caught(leaky_names, capsys):
    assert main(["check-leakage", "-q", *ARGS, "--set", f"features.names={leaky_names}"]) == 3
    assert "LEAK:" in capsys.readouterr().out


def test_a_look_ahead_feature_is_caught_with_several_symbols(leaky_names, two_symbols):
    cfg = load_config(
        None,
        _overrides(
            f"data.path='{two_symbols}'", 'data.symbols=["*"]', f"features.names={leaky_names}"
        ),
    )
    result = check_leakage(cfg)
    assert result.symbols == ("AAA", "BBB")
    assert result.leaks


def test_a_look_ahead_feature_is_caught_through_walk_forward(leaky_names, orcl_slice_csv):
    cfg = load_config(
        None,
        _overrides(f"data.path='{orcl_slice_csv}'", f"features.names={leaky_names}", *WALK_FORWARD),
    )
    result = check_leakage(cfg)
    assert result.walk_forward
    assert result.leaks


def test_a_label_that_looks_back_is_caught(monkeypatch, orcl_slice_csv):
    def past_direction(self, close):  # Close[t] > Close[t-h]: known at t, so predictable
        close = np.asarray(close, dtype=float)
        out = np.full(len(close), np.nan)
        h = self.horizon
        out[h:-h] = (close[h:-h] > close[: -2 * h]).astype(float)
        return out

    monkeypatch.setattr(Head, "labels", past_direction)
    names = 'features.names=["logret_1", "rsi_14"]'  # few features: two epochs learn the label
    cfg = load_config(None, _overrides(f"data.path='{orcl_slice_csv}'", names))
    result = check_leakage(cfg)
    assert [s.name for s in result.scores][2:] == ["label accuracy", "label roc_auc"]
    assert result.leaks


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
    args = [*ARGS, "--set", 'label.kind="three_class"', "--set", f"features.names={leaky_names}"]
    assert main(["check-leakage", "-q", *args]) == 3
    assert "LEAK:" in capsys.readouterr().out
