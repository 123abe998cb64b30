"""One sweep job: train, backtest and write the usual run folder, wherever it runs.

The job never raises: a failure (a bad combination of values, a data problem, a bug) is its
answer, with a one-line error, so one bad job never stops the others. The run folder appears
whole or not at all: the job writes into a temporary folder and renames it into place when
done (on the same machine), or sends it back as a tar archive that the sweep unpacks
(``ship=True``: Ray workers may be other machines without a shared file system).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.config import Config

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
LOG_FILE = "job.log"
TRACE_ENV = "KERASTRADER_SWEEP_TRACE"  # a file: each job start appends "key pid host" there

# metrics.json section -> keys copied into the results table (prefixed by the section name
# except for the strategy's own).
TABLE_METRICS = {
    "strategy": (
        "sharpe_ratio",
        "annual_return",
        "cumulative_returns",
        "annual_volatility",
        "max_drawdown",
        "sortino_ratio",
        "calmar_ratio",
        "stability",
    ),
    "benchmark": ("sharpe_ratio", "annual_return"),
    "model": ("accuracy", "roc_auc", "log_loss", "mse", "directional_accuracy"),
    "run": ("trades", "bars", "final_value", "in_sample"),
}


@dataclass
class JobOutcome:
    key: str
    status: str  # "ok" or "failed"
    error: str = ""
    seconds: float = 0.0
    host: str = ""
    pid: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    archive: bytes | None = None  # the run folder as a .tar (ship=True)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("archive")
        return d


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, as the CLI prints user errors."""
    from kerastrader.errors import KerastraderError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, KerastraderError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, keys in TABLE_METRICS.items():
        values = metrics.get(section) or {}
        for k in keys:
            if k in values:
                out[k if section == "strategy" else f"{section}_{k}"] = values[k]
    return out


def _trace(key: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{key} {os.getpid()} {socket.gethostname()}\n")


def run_job(
    cfg: Config,
    key: str,
    loaded: tuple[dict[str, pd.DataFrame], dict[str, Any]],
    dest: str,
    ship: bool = False,
) -> JobOutcome:
    """Run one job into ``dest`` (its run folder; ``ship``: into a local temporary folder,
    returned as ``archive``). ``loaded`` is the bars and data description, loaded once for the
    whole sweep. TensorFlow's output and the job's log go to ``job.log`` in the folder."""
    from kerastrader.backtest import run_experiment
    from kerastrader.sweeps.executors import captured_output

    _trace(key)
    t0 = time.perf_counter()
    dest_path = Path(dest)
    if ship:
        work = Path(tempfile.mkdtemp(prefix=f"kerastrader-{key}-"))
    else:
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=dest_path.parent))
    universe, info = loaded
    # Frames from Ray's object store are read-only views; a copy is cheap next to training.
    universe = {s: _own_copy(b) for s, b in universe.items()}
    outcome = JobOutcome(key=key, status="ok", host=socket.gethostname(), pid=os.getpid())
    try:
        with captured_output(work / LOG_FILE):
            try:
                result = run_experiment(cfg, work, loaded=(universe, info))
                outcome.metrics = flat_metrics(result.metrics)
            except Exception as exc:  # noqa: BLE001 - a failed job is an answer, not a crash
                log.exception("job %s failed", key)
                outcome.status, outcome.error = "failed", one_line(exc)
        outcome.seconds = time.perf_counter() - t0
        (work / JOB_FILE).write_text(json.dumps(outcome.to_dict(), indent=2, default=str))
        if ship:
            outcome.archive = pack(work)
        else:
            install(work, dest_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return outcome


def _own_copy(bars: pd.DataFrame) -> pd.DataFrame:
    out = bars.copy(deep=True)
    out.attrs = dict(bars.attrs)
    return out


def pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(folder)), recursive=False)
    return buf.getvalue()


def unpack(archive: bytes, dest: Path) -> None:
    """Unpack a job's archive into ``dest`` as a whole (a temporary folder, then a rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
            tar.extractall(work, filter="data")
        install(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install(work: Path, dest: Path) -> None:
    """Replace ``dest`` (a failed attempt's folder, say) by ``work``."""
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(work, dest)
