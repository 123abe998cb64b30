"""A job's share of the machine: how many threads TensorFlow and ONNX Runtime may use, and a
memory bound.

Two training jobs on a two-core machine that each let TensorFlow start one thread per core
run four busy threads on two cores: each job gets slower than half the machine because the
threads preempt each other and thrash the caches. A job is therefore given a CPU budget
(``KERASTRADER_CPUS`` in its environment, set before TensorFlow is imported) and every
thread pool is sized to it. Ray already sets ``OMP_NUM_THREADS`` for its workers; TensorFlow
and ONNX Runtime do not read it, so they are set here explicitly.

Memory: neither a process pool nor Ray enforces a per-task memory limit (Ray's ``memory``
resource only reserves room when scheduling; its memory monitor acts on the whole node).
:class:`MemoryWatchdog` does: a thread in the job's process reads its resident set size every
half second and ends the process when it passes the bound, which the executor then treats
like any other dead worker (one retry, then the job is recorded as failed).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ENV_CPUS = "KERASTRADER_CPUS"
EXIT_MEMORY = 86  # exit code of a process the watchdog ended


def cpu_budget() -> int:
    """This process's CPU budget (0: no budget, the libraries' defaults)."""
    try:
        return max(0, int(os.environ.get(ENV_CPUS, "0")))
    except ValueError:
        return 0


def apply_cpu_budget(cpus: int) -> None:
    """Limit TensorFlow's, ONNX Runtime's and OpenMP's thread pools to ``cpus`` threads.

    Call it before TensorFlow runs its first op. TensorFlow reads ``TF_NUM_INTRAOP_THREADS``
    and ``TF_NUM_INTEROP_THREADS`` when it creates its context; if it is imported already the
    same numbers are set through ``tf.config.threading`` (refused, and logged, once the
    context exists: a reused worker keeps the budget of its first job).
    """
    if cpus < 1:
        return
    n = str(int(cpus))
    os.environ[ENV_CPUS] = n
    for var in (
        "OMP_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        os.environ[var] = n
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            if tf.config.threading.get_intra_op_parallelism_threads() != int(cpus):
                tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
                tf.config.threading.set_inter_op_parallelism_threads(int(cpus))
        except RuntimeError:
            log.debug("TensorFlow is initialised already; its thread pools keep their size")


def onnx_session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session options sized to the CPU budget (its default is every core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    n = cpu_budget() if threads is None else threads
    if n:
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
    return opts


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 where that is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryWatchdog:
    """Ends this process when its resident memory passes ``limit_mb`` (0: no bound).

    ``on_exceed(rss_mb)`` runs first (to tell the parent why); then ``os._exit(EXIT_MEMORY)``,
    because an exception in a side thread would not stop a TensorFlow fit in the main one.
    """

    def __init__(
        self,
        limit_mb: int,
        on_exceed: Callable[[float], None] | None = None,
        interval: float = 0.5,
    ) -> None:
        self.limit_mb = int(limit_mb)
        self.on_exceed = on_exceed
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MemoryWatchdog:
        if self.limit_mb > 0 and rss_bytes() > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="memory-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._stop.clear()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss_mb = rss_bytes() / 2**20
            if rss_mb > self.limit_mb:
                log.error("memory bound passed: %.0f MB resident > %d MB", rss_mb, self.limit_mb)
                if self.on_exceed is not None:
                    try:
                        self.on_exceed(rss_mb)
                    except Exception:  # noqa: BLE001 - the process ends either way
                        pass
                os._exit(EXIT_MEMORY)

    def __enter__(self) -> MemoryWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
