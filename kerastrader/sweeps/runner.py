"""``kerastrader sweep``: expand the grid, skip what is done, run the rest, gather the table.

Layout of a sweep's folder::

    OUT/
      sweep.csv, sweep.parquet   one row per job: key, status, error, values, metrics
      sweep.json                 the sweep's settings and the multiple-testing statistics
      sweep.html                 the best configuration, its deflated Sharpe ratio and PBO,
                                 every job sorted by the chosen metric
      compare.html               the compare report of the best jobs (up to 12), by that metric
      jobs/<key>/                one run folder per job (report.html, metrics.json, ...) plus
                                 job.json (the outcome) and job.log

A job is done when ``jobs/<key>/job.json`` says ``ok``; a re-run skips it and reruns the
failed ones. The key hashes the resolved config and the data's SHA-256
(:func:`kerastrader.sweeps.spec.job_key`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.config import Config, load_config
from kerastrader.errors import ConfigError, KerastraderError
from kerastrader.sweeps.executors import Executor, make_executor
from kerastrader.sweeps.job import JOB_FILE, JobOutcome, one_line, run_job, unpack
from kerastrader.sweeps.spec import (
    JobSpec,
    as_override,
    check_grid,
    data_section_key,
    data_sha256,
    expand,
    job_key,
)

log = logging.getLogger(__name__)

COMPARE_TOP = 12


@dataclass
class SweepOptions:
    """How to run a sweep; the command-line flags over the config's ``[sweep]`` table."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: int = 0
    seed: int = 0
    executor: str = ""  # "local", "ray", "serial"; "": Ray when installed, else local
    address: str = ""
    max_parallel: int = 0  # 0: as many as the CPUs allow
    cpus_per_job: int = 1
    memory_per_job: int = 0  # MB; 0: no bound
    retries: int = 1
    metric: str = "sharpe_ratio"
    progress: bool = True
    mlflow: str | None = None  # a tracking URI or folder: log the sweep there (--mlflow)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> SweepOptions:
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        opts = cls(**known)
        opts.grid = check_grid(dict(section.get("grid") or {}))
        return opts


@dataclass
class SweepResult:
    out: Path
    table: pd.DataFrame
    ran: int
    skipped: int
    failed: int
    statistics: dict[str, Any]


def plan_jobs(
    config_path: str | Path | None,
    overrides: list[str],
    grid: dict[str, list[Any]],
    n_random: int = 0,
    seed: int = 0,
) -> list[JobSpec]:
    """One :class:`JobSpec` per combination, each config resolved as ``--set`` would; a
    combination that makes an invalid config is a job that has already failed."""
    combos = expand(grid, n_random, seed)
    if not combos:
        raise ConfigError("sweep: nothing to sweep (give --grid section.key=v1,v2 or [sweep] grid)")
    jobs = []
    for i, params in enumerate(combos):
        sets = [as_override(k, v) for k, v in params.items()]
        try:
            cfg = load_config(config_path, [*overrides, *sets])
        except ConfigError as exc:
            jobs.append(JobSpec(i, params, None, error=one_line(exc)))
            continue
        jobs.append(JobSpec(i, params, cfg, data_key=data_section_key(cfg)))
    return jobs


def _failed_key(params: dict[str, Any]) -> str:
    import hashlib

    text = json.dumps(params, sort_keys=True, default=str)
    return "invalid-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _read_done(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_sweep(
    config_path: str | Path | None,
    out: str | Path,
    overrides: list[str] | None = None,
    options: SweepOptions | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Run every job of the sweep not finished already; write the table and the reports."""
    overrides = list(overrides or [])
    base = load_config(config_path, overrides)
    opts = options or SweepOptions()
    from_config = SweepOptions.from_config(base.get("sweep", {})) if "sweep" in base else None
    grid = {**(from_config.grid if from_config else {}), **check_grid(opts.grid)}
    out = Path(out)
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    for stale in jobs_dir.glob(".*.partial-*"):  # a previous sweep killed mid-write
        shutil.rmtree(stale, ignore_errors=True)

    specs = plan_jobs(config_path, overrides, grid, opts.random, opts.seed)
    loaded: dict[str, tuple[dict[str, pd.DataFrame], dict[str, Any]] | str] = {}
    digests: dict[str, str] = {}
    for spec in specs:
        if spec.cfg is None:
            spec.key = _failed_key(spec.params)
            continue
        if spec.data_key not in loaded:
            from kerastrader.backtest import load_universe

            try:
                universe, info = load_universe(spec.cfg)
                loaded[spec.data_key] = (universe, info)
                digests[spec.data_key] = data_sha256(universe, info)
            except KerastraderError as exc:
                loaded[spec.data_key] = one_line(exc)
        if isinstance(loaded[spec.data_key], str):
            spec.error, spec.key = str(loaded[spec.data_key]), _failed_key(spec.params)
            continue
        spec.key = job_key(spec.cfg, digests[spec.data_key])

    outcomes: dict[str, dict[str, Any]] = {}
    todo: list[JobSpec] = []
    skipped = 0
    for spec in specs:
        if spec.error:
            outcomes[spec.key] = {"key": spec.key, "status": "failed", "error": spec.error}
            continue
        done = _read_done(jobs_dir / spec.key)
        if done is not None and done.get("status") == "ok" and done.get("key") == spec.key:
            outcomes[spec.key] = {**done, "skipped": True}
            skipped += 1
        elif spec.key not in {t.key for t in todo}:
            todo.append(spec)
    log.info("sweep: %d jobs, %d done already, %d to run", len(specs), skipped, len(todo))
    _write_table(out, specs, outcomes, opts.metric)

    if todo:
        own = executor is None
        executor = executor or make_executor(
            opts.executor,
            max_parallel=opts.max_parallel,
            cpus_per_task=opts.cpus_per_job,
            memory_mb=opts.memory_per_job,
            retries=opts.retries,
            address=opts.address,
        )
        try:
            _run(executor, todo, loaded, jobs_dir, outcomes, specs, out, opts)
        finally:
            if own:
                executor.close()
    table = _write_table(out, specs, outcomes, opts.metric)
    statistics = sweep_statistics(out, table, opts.metric)
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "config": str(config_path) if config_path else None,
                "overrides": overrides,
                "grid": grid,
                "random": opts.random,
                "seed": opts.seed,
                "metric": opts.metric,
                "jobs": len(specs),
                "statistics": statistics,
            },
            indent=2,
            default=str,
        )
    )
    from kerastrader.sweeps.report import write_sweep_report

    write_sweep_report(out, table, statistics, opts.metric, grid)
    if opts.mlflow is not None:
        from kerastrader.sweeps.tracking import log_sweep

        run_id = log_sweep(opts.mlflow, out, table, statistics, grid, opts.metric)
        summary = json.loads((out / "sweep.json").read_text())
        (out / "sweep.json").write_text(json.dumps({**summary, "mlflow_run": run_id}, indent=2))
        log.info("sweep logged to MLflow (%s): parent run %s", opts.mlflow, run_id)
    n_failed = int((table["status"] != "ok").sum()) if len(table) else 0
    return SweepResult(
        out, table, ran=len(todo), skipped=skipped, failed=n_failed, statistics=statistics
    )


def _run(
    executor: Executor,
    todo: list[JobSpec],
    loaded: dict[str, Any],
    jobs_dir: Path,
    outcomes: dict[str, dict[str, Any]],
    specs: list[JobSpec],
    out: Path,
    opts: SweepOptions,
) -> int:
    """Submit the jobs, follow them with a progress bar, record each outcome as it ends."""
    shared = {dk: executor.share(dk, loaded[dk]) for dk in {s.data_key for s in todo}}
    by_task: dict[int, JobSpec] = {}
    for spec in todo:
        cfg = _job_config(spec.cfg)
        dest = str((jobs_dir / spec.key).resolve())
        tid = executor.submit(
            run_job, cfg, spec.key, shared[spec.data_key], dest, executor.ships_files
        )
        by_task[tid] = spec
    done = failed = 0
    from kerastrader.models.progress import make_progress

    t0 = time.perf_counter()
    progress = make_progress() if opts.progress else None
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task(f"sweep ({executor.name})", total=len(todo), info="")
    try:
        for result in executor.as_completed():
            spec = by_task[result.task_id]
            if result.ok:
                outcome: JobOutcome = result.value
                if outcome.archive is not None:
                    unpack(outcome.archive, jobs_dir / spec.key)
                    outcome.archive = None
                record = outcome.to_dict()
            else:
                error = result.crashed or one_line(result.error)
                record = {
                    "key": spec.key,
                    "status": "failed",
                    "error": error,
                    "seconds": result.seconds,
                }
            record.update(attempts=result.attempts, params=spec.params)
            folder = jobs_dir / spec.key
            folder.mkdir(parents=True, exist_ok=True)
            (folder / JOB_FILE).write_text(json.dumps(record, indent=2, default=str))
            outcomes[spec.key] = record
            done += 1
            if record["status"] != "ok":
                failed += 1
                log.warning("job %s %s failed: %s", spec.key, spec.params, record["error"])
            _write_table(out, specs, outcomes, opts.metric)
            if progress is not None:
                progress.update(task, completed=done, info=_info(done, failed, executor.running))
    finally:
        if progress is not None:
            progress.stop()
    log.info(
        "sweep: %d jobs in %.1f s on %s (%d failed)",
        done,
        time.perf_counter() - t0,
        executor.name,
        failed,
    )
    return failed


def _info(done: int, failed: int, running: int) -> str:
    return f"done {done - failed}, failed {failed}, running {running}"


def _job_config(cfg: Config) -> Config:
    """A job's config as it runs: folds inside one job run serially, because the sweep
    already keeps every CPU busy (nested pools would oversubscribe them)."""
    import copy

    cfg = copy.deepcopy(cfg)
    if "workers" in cfg.get("walkforward", {}):
        cfg["walkforward"]["workers"] = 1
    return cfg


def _write_table(
    out: Path, specs: list[JobSpec], outcomes: dict[str, dict[str, Any]], metric: str
) -> pd.DataFrame:
    """sweep.csv and sweep.parquet, one row per job in grid order (rewritten after every
    job, so a sweep stopped half-way still has its table)."""
    rows = []
    for spec in specs:
        o = outcomes.get(spec.key)
        row: dict[str, Any] = {
            "job": spec.index,
            "key": spec.key,
            "status": (o or {}).get("status", "pending"),
            "error": (o or {}).get("error", ""),
        }
        row.update({k: _cell(v) for k, v in spec.params.items()})
        if o:
            row.update(
                seconds=o.get("seconds"), attempts=o.get("attempts", 1), host=o.get("host", "")
            )
            row.update(o.get("metrics") or {})
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "sweep.csv", index=False)
    try:
        table.astype({c: str for c in spec_columns(specs) if c in table}).to_parquet(
            out / "sweep.parquet", index=False
        )
    except (ImportError, ValueError) as exc:  # pyarrow is a dependency; a mixed column is not
        log.warning("sweep.parquet not written: %s", exc)
    return table


def spec_columns(specs: list[JobSpec]) -> list[str]:
    """Grid columns whose values are lists (units = [32, 16]) are kept as text in Parquet."""
    out = set()
    for s in specs:
        out |= {k for k, v in s.params.items() if isinstance(v, list | dict)}
    return sorted(out)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def trial_returns(out: Path, table: pd.DataFrame) -> pd.DataFrame:
    """The finished jobs' daily strategy returns, one column per job key, on common dates."""
    series = {}
    for key in table.loc[table["status"] == "ok", "key"]:
        path = out / "jobs" / key / "returns.csv"
        if path.is_file():
            frame = pd.read_csv(path, index_col=0, parse_dates=True)
            series[key] = frame["strategy"]
    if not series:
        return pd.DataFrame()
    return pd.DataFrame(series).dropna()


def sweep_statistics(out: Path, table: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The best job by ``metric``, its deflated Sharpe ratio among all finished jobs, and the
    probability of backtest overfitting over their daily returns."""
    from kerastrader.sweeps.stats import (
        choose_blocks,
        deflated_sharpe,
        probability_of_overfitting,
        sharpe,
    )

    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok) or metric not in ok:
        return {"trials": int(len(ok)), "note": "no finished job to rank"}
    ranked = ok.assign(_m=pd.to_numeric(ok[metric], errors="coerce")).dropna(subset=["_m"])
    if not len(ranked):
        return {"trials": int(len(ok)), "note": f"no finished job has a {metric}"}
    best = ranked.sort_values("_m", ascending=False).iloc[0]
    stats: dict[str, Any] = {
        "trials": int(len(ok)),
        "metric": metric,
        "best": best["key"],
        "best_value": float(best["_m"]),
    }
    returns = trial_returns(out, ok)
    if returns.shape[1] < 2 or len(returns) < 4:
        stats["note"] = "the deflated Sharpe ratio and PBO need at least two finished jobs"
        return stats
    srs = np.array([sharpe(returns[c].to_numpy()) for c in returns])
    dsr = deflated_sharpe(returns[best["key"]].to_numpy(), srs)
    stats["deflated_sharpe"] = dsr.to_dict()
    blocks = choose_blocks(len(returns))
    try:
        stats["pbo"] = probability_of_overfitting(returns.to_numpy(), blocks).to_dict()
    except ValueError as exc:
        stats["pbo"] = {"note": str(exc)}
    stats["periods_per_year"] = _periods_per_year(returns.index)
    return stats


def _periods_per_year(index: pd.DatetimeIndex) -> float:
    if len(index) < 2:
        return 252.0
    years = (index[-1] - index[0]).days / 365.25
    return float(len(index) / years) if years > 0 else 252.0
