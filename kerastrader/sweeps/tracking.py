"""MLflow tracking of a sweep: the sweep is the parent run, each job a nested run with its
resolved config as params, its metrics, and its report, files and model as artifacts.

The sweep's driver logs everything once the jobs are done, from the run folders: the workers
(other machines, perhaps) need neither MLflow nor access to the tracking server, and a job
skipped because it finished in an earlier sweep is logged from its folder like the others.

The default store is a folder, ``mlruns/``: a SQLite database (``mlruns/mlflow.db``) and the
artifacts beside it (``mlruns/artifacts/``). MLflow 3 refuses its old plain-file store unless
told otherwise, and recommends the database; ``mlflow ui --backend-store-uri
sqlite:///mlruns/mlflow.db`` shows it. Any tracking URI (``http://host:5000``,
``sqlite:///x.db``, ``databricks``) is used as given.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlruns"
EXPERIMENT = "kerastrader-sweeps"
_PARAMS_PER_CALL = 100  # MLflow's batch limit
_ARTIFACTS = ("report.html", "metrics.json", "returns.csv", "config.toml", "job.json")


def resolve_uri(uri: str) -> tuple[str, str | None]:
    """The tracking URI and, for a folder, where its artifacts go."""
    if "://" in uri or uri in ("databricks",) or uri.startswith("file:"):
        return uri, None
    folder = Path(uri or DEFAULT_STORE).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def flat_params(cfg: dict[str, Any]) -> dict[str, str]:
    """``section.key`` -> value as text (lists and tables as JSON), MLflow's params."""
    out = {}
    for section, values in cfg.items():
        for key, value in values.items():
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            out[f"{section}.{key}"] = text[:6000]
    return out


def _numbers(row: pd.Series, skip: set[str]) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k in skip or isinstance(v, bool):
            continue
        if isinstance(v, int | float) and math.isfinite(float(v)):
            out[str(k)] = float(v)
    return out


def log_sweep(
    uri: str,
    out: Path,
    table: pd.DataFrame,
    statistics: dict[str, Any],
    grid: dict[str, list[Any]],
    metric: str,
) -> str:
    """Log the sweep in ``out`` to MLflow; returns the parent run's id."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install 'kerastrader[mlflow]'") from None
    tracking, artifacts = resolve_uri(uri)
    mlflow.set_tracking_uri(tracking)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    grid_columns = set(grid)
    with mlflow.start_run(
        run_name=out.name, tags={"kerastrader.sweep": str(out.resolve())}
    ) as parent:
        mlflow.log_params(
            {f"grid.{k}": json.dumps(v) for k, v in grid.items()}
            | {"metric": metric, "jobs": len(table)}
        )
        summary = {"trials": statistics.get("trials", 0)}
        if "best_value" in statistics:
            summary[f"best_{metric}"] = statistics["best_value"]
        d = statistics.get("deflated_sharpe") or {}
        summary.update({f"dsr_{k}": v for k, v in d.items() if isinstance(v, int | float)})
        if "pbo" in (statistics.get("pbo") or {}):
            summary["pbo"] = statistics["pbo"]["pbo"]
        mlflow.log_metrics(
            {k: float(v) for k, v in summary.items() if v is not None and math.isfinite(float(v))}
        )
        for name in ("sweep.html", "sweep.csv", "sweep.json"):
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
        for _, row in table.iterrows():
            _log_job(mlflow, out / "jobs" / str(row["key"]), row, grid_columns)
        return parent.info.run_id


def _log_job(mlflow: Any, folder: Path, row: pd.Series, grid_columns: set[str]) -> None:
    tags = {"kerastrader.key": str(row["key"]), "kerastrader.status": str(row["status"])}
    if row.get("error"):
        tags["kerastrader.error"] = str(row["error"])[:5000]
    with mlflow.start_run(run_name=str(row["key"]), nested=True, tags=tags) as run:
        config = folder / "config.toml"
        params = (
            flat_params(tomllib.loads(config.read_text()))
            if config.is_file()
            else {k: str(row[k]) for k in grid_columns if k in row}
        )
        items = list(params.items())
        for i in range(0, len(items), _PARAMS_PER_CALL):
            mlflow.log_params(dict(items[i : i + _PARAMS_PER_CALL]))
        mlflow.log_metrics(_numbers(row, grid_columns | {"job"}))
        for name in _ARTIFACTS:
            if (folder / name).is_file():
                mlflow.log_artifact(str(folder / name))
        if (folder / "model").is_dir():
            mlflow.log_artifacts(str(folder / "model"), artifact_path="model")
    if row["status"] != "ok":  # after the block: ending it inside would end the parent
        mlflow.MlflowClient().set_terminated(run.info.run_id, status="FAILED")
