"""Ray in a private network namespace that holds only loopback (run by tests/test_sweep_ray.py
as ``unshare -n`` + ``ip link set lo up``, so Ray uses 127.0.0.1 for every node and sends
nothing off the machine). Prints one JSON line with what happened.

``executor``: the RayExecutor with in-process local Ray: shared data, a worker that dies once
(retried), one that always dies (failed after two attempts), an exception (not retried).

``cluster OUT LOCAL_OUT ARGS...``: a real two-node cluster (``ray start --head`` plus one
``ray start --address`` worker, one CPU each), ``kerastrader sweep ARGS --address``, the
worker node killed (SIGKILL to its processes) while it runs a job; reports the job starts
seen in the trace file and the sweep's exit code.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "tests":  # run as a script
    sys.path[0] = str(ROOT)


def executor_mode(tmp: Path) -> dict:
    import numpy as np

    from kerastrader.sweeps.executors import RayExecutor
    from tests import sweep_tasks

    out = {}
    with RayExecutor(cpus_per_task=1, retries=1, max_parallel=2) as ex:
        shared = ex.share("v", np.arange(10.0))
        ids = {
            ex.submit(sweep_tasks.shared_sum, shared, 1.0): "shared",
            ex.submit(sweep_tasks.die_once, str(tmp / "marker"), 7): "die_once",
            ex.submit(sweep_tasks.always_die): "always_die",
            ex.submit(sweep_tasks.raise_value_error): "raise",
        }
        for r in ex.as_completed():
            out[ids[r.task_id]] = {
                "value": r.value if not isinstance(r.value, tuple) else list(r.value),
                "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}",
                "crashed": r.crashed,
            }
    return out


def _ray(*args: str, env: dict, block: bool = False) -> subprocess.Popen:
    cmd = [str(BIN / "ray"), "start", *args, "--disable-usage-stats"]
    if block:
        cmd.append("--block")
    return subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def _wait_nodes(env: dict, port: int, n: int, timeout: float = 60) -> None:
    code = (
        "import ray, time, sys\n"
        f"ray.init(address='127.0.0.1:{port}', log_to_driver=False)\n"
        f"t = time.time()\n"
        f"while len([x for x in ray.nodes() if x['Alive']]) < {n}:\n"
        f"    time.sleep(0.2)\n"
        f"    if time.time() - t > {timeout}: sys.exit(1)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, timeout=timeout + 30, capture_output=True
    )


def _wait_port(port: int, timeout: float = 60) -> None:
    """Until the head's GCS accepts connections (a worker's ``ray start --address`` can then
    join): a socket poll, where a Ray driver process would take seconds to start."""
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End one node we started: its process group (the ray start process, raylet, GCS ...)
    and the Ray worker processes whose parent is in that group (they have their own)."""
    group = proc.pid
    workers = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and _group(_parent(int(p))) == group and _group(int(p)) != group
    ]
    try:
        os.killpg(group, signal.SIGTERM)
        proc.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


def cluster_mode(tmp: Path, out: str, args: list[str]) -> dict:
    port = 6000 + secrets.randbelow(2000)
    env = dict(os.environ)
    trace = tmp / "starts.txt"
    env["KERASTRADER_SWEEP_TRACE"] = str(trace)
    head = _ray(
        "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", env=env, block=True
    )
    worker = None
    report: dict = {"port": port}
    try:
        _wait_port(port)
        worker = _ray(f"--address=127.0.0.1:{port}", "--num-cpus=1", env=env, block=True)
        _wait_nodes(env, port, 2)
        sweep = subprocess.Popen(
            [
                str(BIN / "kerastrader"),
                "sweep",
                *args,
                "--executor",
                "ray",
                "--address",
                f"127.0.0.1:{port}",
                "--out",
                out,
                "-q",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = None
        deadline = time.time() + 240
        while killed is None and time.time() < deadline and sweep.poll() is None:
            time.sleep(0.3)
            lines = trace.read_text().split() if trace.exists() else []
            for key, pid in zip(lines[0::3], lines[1::3], strict=True):
                if _group(_parent(int(pid))) == worker.pid:  # a job running on the worker node
                    time.sleep(1.0)  # inside the job (it trains for several seconds)
                    _stop(worker, grace=0)
                    killed = key
                    break
        report["killed_job"] = killed
        stdout, stderr = sweep.communicate(timeout=300)
        report["exit"] = sweep.returncode
        report["stderr"] = stderr[-3000:]
        report["starts"] = trace.read_text().split("\n") if trace.exists() else []
    finally:
        if worker is not None and worker.poll() is None:
            _stop(worker, grace=0)
        _stop(head)
    return report


def main() -> None:
    mode, tmp = sys.argv[1], Path(sys.argv[2])
    os.environ["RAY_TMPDIR"] = str(tmp / "ray")
    os.environ["RAY_AUTH_MODE"] = "token"
    token = tmp / "token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ["PYTHONPATH"] = str(ROOT)
    if mode == "executor":
        result = executor_mode(tmp)
    else:
        result = cluster_mode(tmp, sys.argv[3], sys.argv[4:])
    print("RESULT " + json.dumps(result, default=str))


if __name__ == "__main__":
    main()
