"""Walk-forward folds trained at once on a process pool equal the serial run: same fold
models (weights), same stitched predictions, same per-fold and overall metrics."""

from __future__ import annotations

import json

import numpy as np

from kerastrader.models.walkforward import load_model, walk_forward
from tests.conftest import tiny_config
from tests.test_indicator import run

WF = {"enabled": True, "train_bars": 400, "validation_bars": 150, "step": 250, "folds": 2}


def test_parallel_folds_equal_the_serial_run(orcl_slice, tmp_path):
    serial_cfg = tiny_config(walkforward=WF, training={"epochs": 1})
    parallel_cfg = tiny_config(walkforward={**WF, "workers": 2}, training={"epochs": 1})
    info = {"symbol": "ORCL"}
    serial = walk_forward({"ORCL": orcl_slice}, serial_cfg, info, tmp_path / "serial")
    parallel = walk_forward(
        {"ORCL": orcl_slice}, parallel_cfg, info, tmp_path / "parallel", workdir=tmp_path / "work"
    )
    assert len(serial.folds) == len(parallel.folds) == 2
    for a, b in zip(serial.folds, parallel.folds, strict=True):
        assert a.start == b.start
        for wa, wb in zip(
            a.artifact.model.get_weights(), b.artifact.model.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(wa, wb)
    meta = [
        json.loads((tmp_path / p / "walkforward.json").read_text()) for p in ("serial", "parallel")
    ]
    assert meta[0]["folds"] == meta[1]["folds"]
    assert meta[0]["metrics"] == meta[1]["metrics"]
    assert (tmp_path / "work" / "fold_001" / "train.log").is_file()  # each fold's own log
    # The stitched predictions a backtest sees (each bar from the fold fitted before it).
    p_serial, _ = run(orcl_slice, load_model(tmp_path / "serial"), runonce=True)
    p_parallel, _ = run(orcl_slice, load_model(tmp_path / "parallel"), runonce=True)
    assert np.isfinite(p_serial).sum() > 400
    np.testing.assert_array_equal(p_serial, p_parallel)
