"""Sweeps on this machine: 16 small jobs one after another, on the process pool and on local
Ray; the per-task scheduling overhead of each executor; walk-forward folds serial against
parallel.

Run: ``.venv/bin/python benchmarks/bench_sweep.py`` (about ten minutes on 2 cores). Every
number is measured side by side in this run. Ray runs inside a private network namespace that
holds only loopback (the script re-runs itself under ``unshare -n``, which needs root), so it
sends nothing off the machine. Prints numbers; asserts nothing.

The jobs: the embedded ORCL bars 2000-2006, a 4- or 8-unit LSTM over 10 bars, 2 epochs, two
seeds and four entry thresholds (16 jobs, each a whole train + backtest + report, without the
pyfolio figures). Overhead per job is (wall x parallel - the sum of the jobs' own seconds) / jobs:
what the executor adds around each job (process start, TensorFlow import, shipping, waiting).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TINY = [
    "model.window=10",
    "model.units=[4]",
    "model.dropout=0.0",
    "training.epochs=2",
    "training.patience=1",
    "training.batch_size=128",
    'split.train_end="2003-12-31"',
    'split.validation_end="2004-12-31"',
    "report.figures=false",
    'backtest.end="2006-12-31"',
]
GRID = {
    "strategy.enter": [0.5, 0.52, 0.54, 0.56],
    "model.units": [[4], [8]],
    "training.seed": [1, 2],
}


def noop(x: int) -> int:
    return x


def overhead(kind: str, n: int = 64) -> float:
    """Milliseconds per no-op task once the workers are up (pure scheduling cost)."""
    from kerastrader.sweeps.executors import make_executor

    with make_executor(kind, max_parallel=2, cpus_per_task=1) as ex:
        ex.submit(noop, 0)
        ex.submit(noop, 0)
        list(ex.as_completed())  # start the workers
        t0 = time.perf_counter()
        for i in range(n):
            ex.submit(noop, i)
        list(ex.as_completed())
        return (time.perf_counter() - t0) / n * 1000


def sweep(kind: str, parallel: int) -> dict:
    from kerastrader.sweeps.runner import SweepOptions, run_sweep

    out = Path(tempfile.mkdtemp(prefix=f"bench-sweep-{kind}-"))
    try:
        t0 = time.perf_counter()
        result = run_sweep(
            None,
            out,
            TINY,
            SweepOptions(
                grid=copy.deepcopy(GRID), executor=kind, max_parallel=parallel, progress=False
            ),
        )
        wall = time.perf_counter() - t0
        table = result.table
        busy = float(table["seconds"].sum())
        return {
            "kind": kind,
            "parallel": parallel,
            "jobs": len(table),
            "wall": wall,
            "busy": busy,
            "failed": int((table["status"] != "ok").sum()),
            "sharpe": table["sharpe_ratio"].round(10).tolist(),
            "overhead_ms": (wall * parallel - busy) / len(table) * 1000,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def interleaved(kind: str, rounds: int = 4) -> dict:
    """Warm workers, and rounds of 4 jobs run one after another in this process and then on
    the executor, alternately: the other sessions' load on the shared machine changes from
    minute to minute, so each pair is measured under the same load, and the best and median
    rounds are compared."""
    from kerastrader.sweeps.executors import SerialExecutor, make_executor
    from kerastrader.sweeps.runner import SweepOptions, run_sweep

    enters = [0.5, 0.52, 0.54, 0.56, 0.58, 0.6][: rounds + 1]
    walls: dict[str, list[float]] = {"serial": [], kind: []}
    with make_executor(kind, max_parallel=2, cpus_per_task=1) as ex:
        for r, enter in enumerate(enters):  # round 0 warms both up and is not counted
            grid = {"strategy.enter": [enter], "model.units": [[4], [8]], "training.seed": [1, 2]}
            for name, executor in (("serial", SerialExecutor()), (kind, ex)):
                out = Path(tempfile.mkdtemp(prefix=f"bench-round-{name}-"))
                try:
                    t0 = time.perf_counter()
                    run_sweep(None, out, TINY, SweepOptions(grid=grid, progress=False), executor)
                    if r:
                        walls[name].append(time.perf_counter() - t0)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
    return walls


def _summary(walls: dict[str, list[float]], kind: str) -> str:
    import statistics

    best = {k: min(v) for k, v in walls.items()}
    median = {k: statistics.median(v) for k, v in walls.items()}
    return (
        f"  serial x1: best {best['serial']:5.1f} s, median {median['serial']:5.1f} s\n"
        f"  {kind} x2:{' ' * (6 - len(kind))}best {best[kind]:5.1f} s, median {median[kind]:5.1f} s"
        f"   speed-up {best['serial'] / best[kind]:.2f}x (best), "
        f"{median['serial'] / median[kind]:.2f}x (median)"
    )


def walkforward(workers: int, folds: int) -> float:
    from kerastrader.config import default_config, embedded_data_path
    from kerastrader.feeds.loader import load_csv
    from kerastrader.models.walkforward import walk_forward

    bars = load_csv(embedded_data_path())
    cfg = default_config()
    cfg["walkforward"].update(
        enabled=True, train_bars=1500, validation_bars=250, step=250, folds=folds, workers=workers
    )
    from kerastrader.sweeps.executors import captured_output

    with tempfile.TemporaryDirectory() as tmp, captured_output(None):  # no epoch bars
        t0 = time.perf_counter()
        walk_forward({"ORCL": bars}, cfg, {}, Path(tmp) / "wf")
        return time.perf_counter() - t0


def ray_part() -> dict:
    """Run inside the namespace: Ray's overhead and the Ray sweep."""
    tmp = Path(tempfile.mkdtemp(prefix="kt-bench-ray-", dir="/tmp"))
    os.environ.update(
        RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp / "token")
    )
    (tmp / "token").write_text(os.urandom(32).hex())
    try:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            return {
                "overhead_ms": overhead("ray"),
                "sweep": sweep("ray", 2),
                "interleaved": interleaved("ray"),
            }
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ray_in_namespace() -> dict | str:
    script = Path(__file__).resolve()
    cmd = f'ip link set lo up && exec "{sys.executable}" "{script}" --ray-only'
    proc = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RAY ")]
    if proc.returncode or not lines:
        return f"not measured: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
    return json.loads(lines[-1][4:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--ray-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-walkforward", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.ray_only:
        print("RAY " + json.dumps(ray_part()))
        return

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start\n")
    print("scheduling overhead per no-op task, workers already started:")
    print(f"  process pool (2 workers): {overhead('local'):6.2f} ms")
    ray = ray_in_namespace()
    if isinstance(ray, dict):
        print(f"  Ray local (2 CPUs):       {ray['overhead_ms']:6.2f} ms")
    else:
        print(f"  Ray: {ray}")

    print(f"\n16 jobs (train + backtest + report), grid {json.dumps(GRID)}:")
    rows = [sweep("serial", 1), sweep("local", 2)]
    if isinstance(ray, dict):
        rows.append(ray["sweep"])
    base = rows[0]["wall"]
    print(
        f"  {'executor':22s} {'wall s':>8s} {'speed-up':>9s} {'job s (sum)':>12s} "
        f"{'overhead/job':>13s} {'failed':>7s}"
    )
    for r in rows:
        name = f"{r['kind']} x{r['parallel']}"
        print(
            f"  {name:22s} {r['wall']:8.1f} {base / r['wall']:8.2f}x {r['busy']:12.1f} "
            f"{r['overhead_ms']:10.0f} ms {r['failed']:7d}"
        )
    same = all(r["sharpe"] == rows[0]["sharpe"] for r in rows)
    print(f"  same Sharpe ratios on every executor: {same}")

    print("\nwarm workers, 4 rounds of 4 jobs, serial and parallel alternately (round walls):")
    print(_summary(interleaved("local"), "local"))
    if isinstance(ray, dict):
        print(_summary(ray["interleaved"], "ray"))

    if not args.skip_walkforward:
        print(
            f"\nwalk-forward, {args.folds} folds (LSTM [32, 16], expanding from 1,500 bars, "
            "retrain every 250, up to 30 epochs with early stopping):"
        )
        serial = walkforward(1, args.folds)
        parallel = walkforward(2, args.folds)
        print(f"  serial:              {serial:7.1f} s")
        print(f"  2 workers (local):   {parallel:7.1f} s   speed-up {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
