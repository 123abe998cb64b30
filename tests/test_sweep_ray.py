"""Ray, on loopback only: the Ray executor in-process (local Ray), and a real two-node cluster
whose worker node is killed mid-sweep. Both run in a private network namespace holding only
loopback (tests/ray_harness.py under ``unshare -n``, as root), where Ray uses 127.0.0.1 for
every node and listener and sends nothing off the machine. Outside CI, without root or
``unshare``, they skip with the reason; with CI=true a skip fails (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, TINY_ARGS

pytest.importorskip("ray", reason="Ray is not installed (pip install 'kerastrader[ray]')")


def _namespace_reason() -> str | None:
    """Why a loopback-only network namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) for a loopback-only namespace"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"cannot make a private network namespace (unshare -n needs root): {probe.stderr}"
    return None


@pytest.fixture
def loopback(tmp_path):
    reason = _namespace_reason()
    if reason:
        pytest.skip(reason)
    # Short: Ray's socket paths under RAY_TMPDIR must stay below the 107-byte limit.
    short = Path(tempfile.mkdtemp(prefix="kt-ray-", dir="/tmp"))

    def harness(*args: str, timeout: float = 420) -> dict:
        cmd = f'ip link set lo up && exec "{sys.executable}" "{ROOT / "tests" / "ray_harness.py"}"'
        proc = subprocess.run(
            ["unshare", "-n", "sh", "-c", cmd + " " + " ".join(f"'{a}'" for a in args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stderr[-4000:]
        return json.loads(lines[-1].removeprefix("RESULT "))

    yield harness, short
    shutil.rmtree(short, ignore_errors=True)


def test_ray_executor_ships_data_retries_a_dead_worker_once_and_fails_on_the_second(loopback):
    harness, tmp = loopback
    result = harness("executor", str(tmp))
    assert result["shared"]["value"][0] == 46.0
    assert result["die_once"]["value"] == 7 and result["die_once"]["crashed"] is None
    assert "2 attempts" in result["always_die"]["crashed"]
    assert result["raise"]["error"].startswith("ValueError: bad value")


def test_a_sweep_on_a_two_node_cluster_survives_losing_a_node(loopback, orcl_slice_csv, tmp_path):
    """Two jobs on a head and a worker node (one CPU each) through --address; the worker
    node is killed while it trains a job. Ray reruns that job on the head: every job ends
    once, ok, with the results the process pool gives."""
    harness, tmp = loopback
    sweep_args = [
        *TINY_ARGS,
        "--data",
        str(orcl_slice_csv),
        "--cpus-per-job",
        "1",
        "--grid",
        "strategy.enter=0.5,0.55",
    ]
    out = tmp / "cluster"
    result = harness("cluster", str(tmp), str(out), *sweep_args)
    assert result["exit"] == 0, result["stderr"]
    assert result["killed_job"], "the worker node never ran a job"
    starts = [ln.split()[0] for ln in result["starts"] if ln.strip()]
    assert starts.count(result["killed_job"]) == 2  # killed once, run again on the head
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 2 and table["key"].is_unique and (table["status"] == "ok").all()
    for key in table["key"]:
        assert (out / "jobs" / key / "report.html").is_file()

    from kerastrader.cli import main

    local = tmp_path / "local"
    assert (
        main(
            [
                "sweep",
                *sweep_args,
                "--executor",
                "local",
                "--max-parallel",
                "2",
                "--out",
                str(local),
                "-q",
            ]
        )
        == 0
    )
    pool = pd.read_csv(local / "sweep.csv")
    assert pool["key"].tolist() == table["key"].tolist()
    for column in ("sharpe_ratio", "annual_return", "run_trades", "model_accuracy"):
        assert pool[column].tolist() == pytest.approx(table[column].tolist(), rel=1e-12), column
