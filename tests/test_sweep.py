"""kerastrader sweep: grid expansion, job keys, the process pool's semantics (shipping data
once, retrying a dead worker once, the memory bound) and a real sweep with its resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import ConfigError
from kerastrader.sweeps.executors import LocalExecutor, SerialExecutor
from kerastrader.sweeps.spec import (
    as_override,
    check_grid,
    expand,
    job_key,
    parse_grid_arg,
    split_top_level,
)
from tests import sweep_tasks
from tests.conftest import ROOT, TINY_ARGS, tiny_config

# ---------------------------------------------------------------------------------------------
# Grid and keys


def test_grid_values_are_toml_and_commas_inside_brackets_do_not_split():
    assert split_top_level('[4],[8,4],"a,b"') == ["[4]", "[8,4]", '"a,b"']
    assert parse_grid_arg("model.units=[4],[8,4]") == ("model.units", [[4], [8, 4]])
    assert parse_grid_arg("strategy.enter=0.5, 0.55") == ("strategy.enter", [0.5, 0.55])
    assert parse_grid_arg("model.kind=lstm,gru") == ("model.kind", ["lstm", "gru"])
    assert parse_grid_arg('split.train_end="2003-12-31"') == ("split.train_end", ["2003-12-31"])
    with pytest.raises(ConfigError, match="section.key"):
        parse_grid_arg("enter=0.5")
    with pytest.raises(ConfigError, match="twice"):
        check_grid({"strategy.enter": [0.5, 0.5]})
    assert as_override("model.units", [8, 4]) == "model.units=[8, 4]"
    assert as_override("model.kind", "gru") == 'model.kind="gru"'
    assert as_override("data.columns", {"date": "when"}) == 'data.columns={ date = "when" }'


def test_expand_is_the_product_and_random_draws_distinct_combinations_by_seed():
    grid = {"a.x": [1, 2, 3], "b.y": ["p", "q"]}
    full = expand(grid)
    assert full == [{"a.x": a, "b.y": b} for a in (1, 2, 3) for b in ("p", "q")]
    drawn = expand(grid, n_random=4, seed=7)
    assert len(drawn) == 4 and all(d in full for d in drawn)
    assert len({json.dumps(d) for d in drawn}) == 4
    assert drawn == expand(grid, n_random=4, seed=7)
    assert expand(grid, n_random=10) == full  # more than the grid holds: all of it


def test_job_key_follows_config_and_data_but_not_how_the_job_runs():
    cfg = tiny_config()
    key = job_key(cfg, "abc")
    assert job_key(tiny_config(), "abc") == key
    assert job_key(cfg, "abd") != key  # another data file
    assert job_key(tiny_config(strategy={"enter": 0.6}), "abc") != key
    assert job_key(tiny_config(sweep={"executor": "ray", "max_parallel": 8}), "abc") == key
    assert job_key(tiny_config(walkforward={"workers": 2}), "abc") == key


# ---------------------------------------------------------------------------------------------
# The process pool


def test_local_pool_ships_shared_data_once_per_worker_and_returns_in_any_order():
    frame = pd.DataFrame({"v": np.arange(10.0)})
    with LocalExecutor(workers=2, cpus_per_task=1) as pool:
        shared = pool.share("bars", frame)
        ids = {pool.submit(sweep_tasks.shared_sum, shared, float(i)): i for i in range(6)}
        ids[pool.submit(sweep_tasks.double, 21)] = "double"
        results = {ids[r.task_id]: r for r in pool.as_completed()}
    assert results["double"].value == 42
    assert {results[i].value[0] for i in range(6)} == {45.0 + i for i in range(6)}
    assert len({results[i].value[1] for i in range(6)}) <= 2  # two workers did the work
    assert all(r.ok and r.attempts == 1 for r in results.values())


def test_a_dead_worker_costs_one_retry_and_dying_twice_fails_the_task(tmp_path):
    with LocalExecutor(workers=2, retries=1) as pool:
        once = pool.submit(sweep_tasks.die_once, str(tmp_path / "marker"), 7)
        twice = pool.submit(sweep_tasks.always_die)
        raised = pool.submit(sweep_tasks.raise_value_error)
        fine = pool.submit(sweep_tasks.double, 2)
        results = {r.task_id: r for r in pool.as_completed()}
    assert results[once].ok and results[once].value == 7 and results[once].attempts == 2
    assert results[twice].crashed and "2 attempts" in results[twice].crashed
    assert results[twice].attempts == 2
    # An exception is the task's answer: not retried (the same config fails the same way).
    assert isinstance(results[raised].error, ValueError) and results[raised].attempts == 1
    assert results[fine].value == 4


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_a_task_past_the_memory_bound_is_ended_retried_and_failed():
    with LocalExecutor(workers=1, memory_mb=300, retries=1) as pool:
        tid = pool.submit(sweep_tasks.hog, 600)
        small = pool.submit(sweep_tasks.hog, 10)
        results = {r.task_id: r for r in pool.as_completed()}
    assert results[tid].crashed and "memory bound" in results[tid].crashed
    assert results[small].ok


def test_serial_executor_is_the_same_interface():
    ex = SerialExecutor()
    shared = ex.share("k", np.ones(3))
    a = ex.submit(sweep_tasks.shared_sum, shared, 1.0)
    b = ex.submit(sweep_tasks.raise_value_error)
    results = {r.task_id: r for r in ex.as_completed()}
    assert results[a].value[0] == 4.0
    assert isinstance(results[b].error, ValueError)


# ---------------------------------------------------------------------------------------------
# A real sweep on the process pool


def test_sweep_runs_every_job_records_failures_and_a_rerun_skips_finished_ones(
    orcl_slice_csv, tmp_path
):
    """Four jobs on two workers: two LSTM thresholds, and the same two with a custom model
    that cannot be imported (a job failing at run time). Every job gets its run folder; the
    table has the failures' one-line error; the re-run runs only the failed two."""
    from kerastrader.cli import main

    out = tmp_path / "sweep"
    args = [
        "sweep",
        *TINY_ARGS,
        "--data",
        str(orcl_slice_csv),
        "--set",
        'model.custom="no_such_module_xyz:build"',
        "--grid",
        "model.kind=lstm,custom",
        "--grid",
        "strategy.enter=0.5,0.55",
        "--executor",
        "local",
        "--max-parallel",
        "2",
        "--out",
        str(out),
        "-q",
    ]
    assert main(args) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4 and set(table["key"].str.len()) == {16}
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] == "failed"]
    assert sorted(ok["model.kind"]) == ["lstm", "lstm"]
    assert sorted(failed["model.kind"]) == ["custom", "custom"]
    assert all("no_such_module_xyz" in e and "\n" not in e for e in failed["error"])
    assert pd.read_parquet(out / "sweep.parquet")["key"].tolist() == table["key"].tolist()
    for key in ok["key"]:
        folder = out / "jobs" / key
        for name in ("report.html", "metrics.json", "returns.csv", "config.toml", "job.json"):
            assert (folder / name).is_file(), (key, name)
        metrics = json.loads((folder / "metrics.json").read_text())
        row = ok[ok["key"] == key].iloc[0]
        assert row["sharpe_ratio"] == pytest.approx(metrics["strategy"]["sharpe_ratio"])
        job = json.loads((folder / "job.json").read_text())
        assert job["status"] == "ok" and job["attempts"] == 1
    # The two thresholds trade differently on the same model (same training config and seed).
    assert ok["sharpe_ratio"].nunique() == 2
    assert ok["model_accuracy"].nunique() == 1
    page = (out / "sweep.html").read_text()
    assert "Deflated Sharpe ratio" in page and "no_such_module_xyz" in page
    stats = json.loads((out / "sweep.json").read_text())["statistics"]
    assert stats["trials"] == 2 and stats["best"] in set(ok["key"])
    assert (out / "compare.html").is_file()

    stamps = {k: (out / "jobs" / k / "metrics.json").stat().st_mtime_ns for k in ok["key"]}
    from kerastrader.sweeps.runner import SweepOptions, run_sweep

    # The re-run in this process: how jobs run is not part of their key, so the finished
    # ones are found all the same.
    again = run_sweep(
        None,
        out,
        [
            *TINY_ARGS[1::2],
            f"data.path={json.dumps(str(orcl_slice_csv))}",
            'model.custom="no_such_module_xyz:build"',
        ],
        SweepOptions(
            grid={"model.kind": ["lstm", "custom"], "strategy.enter": [0.5, 0.55]},
            executor="serial",
            progress=False,
        ),
    )
    assert (again.skipped, again.ran, again.failed) == (2, 2, 2)
    assert {k: (out / "jobs" / k / "metrics.json").stat().st_mtime_ns for k in ok["key"]} == stamps
    assert again.table["key"].tolist() == table["key"].tolist()


def test_an_invalid_combination_is_a_failed_job_not_a_failed_sweep(tmp_path):
    """strategy.exit above strategy.enter is refused by the config's checks: that job fails
    with the config's one line; nothing is trained for it."""
    from kerastrader.sweeps.runner import plan_jobs

    jobs = plan_jobs(None, list(TINY_ARGS[1::2]), {"strategy.exit": [0.45, 0.9]})
    assert jobs[0].cfg is not None and not jobs[0].error
    assert jobs[1].cfg is None and "must not exceed strategy.enter" in jobs[1].error


def test_the_sweep_example_is_valid_and_expands_to_eight_jobs():
    from kerastrader.config import load_config
    from kerastrader.sweeps.runner import SweepOptions, plan_jobs

    path = ROOT / "examples" / "sweep.toml"
    opts = SweepOptions.from_config(load_config(path)["sweep"])
    jobs = plan_jobs(path, [], opts.grid)
    assert len(jobs) == 8 and all(j.cfg is not None for j in jobs)
    assert {tuple(j.cfg["model"]["units"]) for j in jobs} == {(16,), (32, 16)}
