"""A book whose instruments began trading at different dates (AGG in 2003, SPY in 1993): a
split or a walk-forward fold that ends before an instrument's first bar trains the shared
model on the others, and the instrument is predicted once it trades."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.features import FeatureSet
from kerastrader.models.training import train
from kerastrader.models.walkforward import walk_forward
from tests.conftest import random_walk_bars, tiny_config
from tests.test_shared_indicator_parity import run as run_shared

N = 1500  # 2000-01-03 .. 2005-09: train to 2003, validate 2004, test 2005


def late_book() -> dict[str, pd.DataFrame]:
    """EARLY trades from 2000; LATE only from 2004-03-01 (inside the validation year)."""
    early = random_walk_bars(N, seed=11)
    late = random_walk_bars(N, seed=12)
    return {"EARLY": early, "LATE": late[late.index >= "2004-03-01"]}


def windows_by_hand(bars: pd.DataFrame, cfg, first: str, last: str, horizon: int = 1) -> int:
    """Labelled windows ending in [first, last] with their label inside ``last`` (the purge),
    counted with a plain loop over the frame."""
    fs = FeatureSet(cfg["features"]["names"], memory=cfg["features"]["memory"])
    feats = fs.compute_frame(bars).to_numpy()
    w = int(cfg["model"]["window"])
    dates = bars.index
    cutoff = dates[dates <= pd.Timestamp(last)]
    last_row = len(cutoff) - 1
    n = 0
    for t in range(w - 1, len(bars) - horizon):
        full = np.isfinite(feats[t - w + 1 : t + 1]).all()
        if full and dates[t] >= pd.Timestamp(first) and t + horizon <= last_row:
            n += 1
    return n


def test_an_instrument_that_began_after_the_training_period_adds_no_training_window():
    book = late_book()
    cfg = tiny_config(training={"epochs": 1})
    meta = train(book, cfg, {}).artifact.metadata
    samples = meta["training"]["samples"]
    assert samples["train"] == windows_by_hand(book["EARLY"], cfg, "2000-01-01", "2003-12-31")
    late_val = windows_by_hand(book["LATE"], cfg, "2004-01-01", "2004-12-31")
    early_val = windows_by_hand(book["EARLY"], cfg, "2004-01-01", "2004-12-31")
    assert late_val > 50  # 10 months of bars after the warm-up
    # EARLY's validation windows start right after its last training label
    assert samples["validation"] == early_val + late_val
    assert meta["periods"]["train"][1].startswith("2003-12")


def test_a_book_with_no_training_window_anywhere_is_one_clear_error():
    book = {sym: b[b.index >= "2004-03-01"] for sym, b in late_book().items()}
    with pytest.raises(ConfigError, match=r"the train period has no labelled windows in any of"):
        train(book, tiny_config(training={"epochs": 1}), {})


def test_walk_forward_over_the_book_trains_every_fold_and_predicts_the_late_instrument(tmp_path):
    book = late_book()
    cfg = tiny_config(
        walkforward={"enabled": True, "train_bars": 500, "validation_bars": 150, "step": 250},
        training={"epochs": 1},
    )
    model = walk_forward(book, cfg, {}, tmp_path / "model")
    first_fold_train_end = model.folds[0].artifact.metadata["periods"]["train"][1]
    assert first_fold_train_end < "2004-03-01"  # LATE had not traded yet
    assert len(model.folds) >= 3
    frames = list(book.values())
    shared = run_shared(frames, model, runonce=True)
    late = shared.scores[1].array(len(book["LATE"]))
    starts = [f.start for f in model.folds]
    predicted = pd.DatetimeIndex(book["LATE"].index)[np.isfinite(late)]
    assert predicted.min() >= starts[0]  # nothing before the first fold
    assert np.isfinite(late[book["LATE"].index >= starts[-1]]).all()  # its last fold, whole
