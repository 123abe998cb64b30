"""--mlflow: the sweep is the parent run; each job a nested run with its resolved config as
params, its metrics, and its report and model as artifacts (on a sweep folder made by hand)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kerastrader.config import dump_config
from tests.conftest import tiny_config

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed (kerastrader[mlflow])")


def _job(out, key, enter, status="ok"):
    folder = out / "jobs" / key
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"key": key, "status": status}))
    if status == "ok":
        (folder / "config.toml").write_text(dump_config(tiny_config(strategy={"enter": enter})))
        (folder / "report.html").write_text("<html></html>")
        (folder / "model").mkdir()
        (folder / "model" / "model.onnx").write_bytes(b"onnx")


def test_the_sweep_is_the_parent_run_and_each_job_a_nested_run(tmp_path):
    from kerastrader.sweeps.tracking import log_sweep

    out = tmp_path / "sweep"
    _job(out, "aaaa", 0.5)
    _job(out, "bbbb", 0.55)
    _job(out, "cccc", 0.6, status="failed")
    (out / "sweep.html").write_text("<html></html>")
    table = pd.DataFrame([
        {"job": 0, "key": "aaaa", "status": "ok", "error": "", "strategy.enter": 0.5,
         "sharpe_ratio": 0.4, "run_trades": 12},
        {"job": 1, "key": "bbbb", "status": "ok", "error": "", "strategy.enter": 0.55,
         "sharpe_ratio": 0.7, "run_trades": 8},
        {"job": 2, "key": "cccc", "status": "failed", "error": "ValueError: no",
         "strategy.enter": 0.6},
    ])  # fmt: skip
    stats = {"trials": 2, "best": "bbbb", "best_value": 0.7, "pbo": {"pbo": 0.5},
             "deflated_sharpe": {"dsr": 0.3, "sr0": 0.02, "n_trials": 2}}  # fmt: skip
    store = tmp_path / "mlruns"
    parent_id = log_sweep(str(store), out, table, stats, {"strategy.enter": [0.5, 0.55, 0.6]},
                          "sharpe_ratio")  # fmt: skip
    assert (store / "mlflow.db").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    parent = client.get_run(parent_id)
    assert parent.data.metrics["pbo"] == 0.5 and parent.data.metrics["dsr_dsr"] == 0.3
    assert parent.data.params["grid.strategy.enter"] == "[0.5, 0.55, 0.6]"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    by_key = {r.data.tags["kerastrader.key"]: r for r in children}
    assert set(by_key) == {"aaaa", "bbbb", "cccc"}
    best = by_key["bbbb"]
    assert best.data.params["strategy.enter"] == "0.55"
    assert best.data.params["model.units"] == "[4]"  # the whole resolved config
    assert best.data.metrics["sharpe_ratio"] == 0.7 and best.data.metrics["run_trades"] == 8
    names = {a.path for a in client.list_artifacts(best.info.run_id)}
    assert {"report.html", "config.toml", "job.json", "model"} <= names
    assert by_key["cccc"].info.status == "FAILED"
    assert by_key["cccc"].data.tags["kerastrader.error"] == "ValueError: no"
    assert parent.info.status == "FINISHED"
