"""Random-search trials on a 2-worker process pool: the same trials, scores and best
hyperparameters as the serial search with the same seed."""

from __future__ import annotations

import numpy as np

from kerastrader.models.tuning import search
from tests import sweep_tasks

SPACE = {
    "learning_rate": {"min": 1e-3, "max": 3e-2, "log": True},
    "units": {"choices": [[8], [16, 8]]},
    "activation": {"choices": ["relu", "tanh"]},
}


def test_parallel_random_trials_equal_the_serial_search(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 10, 3)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("float32")
    args = (sweep_tasks.tiny_builder, SPACE, x[:600], y[:600], x[600:], y[600:])
    common = {"algorithm": "random", "max_trials": 3, "epochs": 2, "seed": 3, "patience": 1}
    serial = search(*args, directory=tmp_path / "serial", **common)
    parallel = search(*args, directory=tmp_path / "parallel", workers=2, **common)
    assert [t["hyperparameters"] for t in parallel.trials] == [
        t["hyperparameters"] for t in serial.trials
    ]
    assert len({str(t["hyperparameters"]) for t in serial.trials}) == 3
    assert [t["score"] for t in parallel.trials] == [t["score"] for t in serial.trials]
    assert parallel.best == serial.best and parallel.score == serial.score
