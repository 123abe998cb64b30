"""Where tasks run: in this process, on a pool of worker processes, or on Ray.

All three have the same semantics, so a sweep or a walk-forward run gives the same results
whichever runs it:

- ``share(key, value)`` ships a large value (the bars) once: Ray puts it in the object store
  once; the process pool sends it to each worker once and the worker keeps it.
- ``submit(fn, *args)`` queues ``fn(*args)``; an argument that is a :class:`Shared` handle
  arrives as the shared value. ``fn`` must be importable (a module-level function).
- ``as_completed()`` yields a :class:`TaskResult` per task as each ends: its value, or the
  exception it raised (never retried: the same config fails the same way again), or, when the
  worker process died on every attempt, ``crashed`` with the reason. A dead worker (killed,
  out of memory, past the memory bound, its node lost) costs one retry: a task whose worker
  dies twice is given up (``retries=1``).
- Each task runs with a CPU budget (:func:`kerastrader.runs.budget.apply_cpu_budget`) and,
  with ``memory_mb``, under :class:`~kerastrader.runs.budget.MemoryWatchdog`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from kerastrader.errors import ConfigError
from kerastrader.runs.budget import EXIT_MEMORY, MemoryWatchdog, apply_cpu_budget

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray", "serial")


@dataclass(frozen=True)
class Shared:
    """A handle to a value shipped once with :meth:`Executor.share`."""

    key: str


@dataclass
class TaskResult:
    task_id: int
    value: Any = None
    error: BaseException | None = None  # what the task raised
    crashed: str | None = None  # the worker died on every attempt: why
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.crashed is None


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def default_executor() -> str:
    """Ray when it is installed, else the process pool."""
    return "ray" if ray_available() else "local"


@contextlib.contextmanager
def captured_output(path: str | Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so TensorFlow's C++
    logging and progress bars too) to ``path`` (or /dev/null) for the duration, so that
    parallel jobs do not scribble over the sweep's own progress bar."""
    import sys

    target = os.devnull if path is None else str(path)
    if path is not None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(target, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        old_level = logging.getLogger("kerastrader").level
        logging.getLogger("kerastrader").setLevel(logging.INFO)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            root.removeHandler(handler)
            logging.getLogger("kerastrader").setLevel(old_level)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class Executor:
    """The interface (see the module docstring); :class:`SerialExecutor` is the reference."""

    name = "serial"
    ships_files = False  # True: tasks may run on another machine; results come back as bytes

    def share(self, key: str, value: Any) -> Shared:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        raise NotImplementedError

    def as_completed(self) -> Iterator[TaskResult]:
        raise NotImplementedError

    @property
    def running(self) -> int:
        """Tasks started and not finished (for Ray: handed to the cluster, not finished)."""
        return 0

    @property
    def parallel(self) -> int:
        """How many tasks run at once."""
        return 1

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """One task after another in this process (no budget, no retries: a crash is this
    process's). The reference the others are tested against."""

    def __init__(self) -> None:
        self._shared: dict[str, Any] = {}
        self._queue: deque[tuple[int, Callable[..., Any], tuple]] = deque()
        self._next = 0
        self._busy = 0

    def share(self, key: str, value: Any) -> Shared:
        self._shared[key] = value
        return Shared(key)

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        self._next += 1
        self._queue.append((self._next, fn, args))
        return self._next

    @property
    def running(self) -> int:
        return self._busy

    def as_completed(self) -> Iterator[TaskResult]:
        while self._queue:
            tid, fn, args = self._queue.popleft()
            args = tuple(self._shared[a.key] if isinstance(a, Shared) else a for a in args)
            t0 = time.perf_counter()
            self._busy = 1
            try:
                value = fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the caller as the result
                yield TaskResult(tid, error=exc, seconds=time.perf_counter() - t0)
            else:
                yield TaskResult(tid, value=value, seconds=time.perf_counter() - t0)
            finally:
                self._busy = 0


# ---------------------------------------------------------------------------------------------
# The process pool


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker_main(conn: Connection, cpus: int, memory_mb: int) -> None:
    """A pool worker: keep shared values, run tasks, answer with values or exceptions."""
    apply_cpu_budget(cpus)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # A pool of workers would each print TensorFlow's start-up notices over the sweep's
    # progress bar; tasks capture their own output (captured_output) into their logs.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    cache: dict[str, Any] = {}

    def tell_memory(rss_mb: float) -> None:
        conn.send(("memory", rss_mb))

    watchdog = MemoryWatchdog(memory_mb, tell_memory).start()
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg[0] == "stop":
                return
            if msg[0] == "data":
                cache[msg[1]] = msg[2]
                continue
            _, tid, fn, args = msg
            args = tuple(cache[a.key] if isinstance(a, Shared) else a for a in args)
            try:
                value = fn(*args)
            except Exception as exc:  # noqa: BLE001 - returned to the parent
                conn.send(("raised", tid, _picklable(exc)))
            else:
                conn.send(("done", tid, value))
    finally:
        watchdog.stop()


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: int | None = None
    started: float = 0.0
    data: set[str] = field(default_factory=set)
    memory_note: str = ""


class LocalExecutor(Executor):
    """A pool of ``workers`` long-lived processes on this machine (spawned, not forked: a
    forked TensorFlow is unsafe). Each task is sent to one idle worker, so the pool knows
    which task a dead worker was running: that task is retried once on a fresh worker."""

    name = "local"

    def __init__(
        self, workers: int = 0, cpus_per_task: int = 1, memory_mb: int = 0, retries: int = 1
    ) -> None:
        cpus = os.cpu_count() or 1
        self.cpus_per_task = max(1, int(cpus_per_task))
        self.workers = int(workers) if workers else max(1, cpus // self.cpus_per_task)
        self.memory_mb = int(memory_mb)
        self.retries = int(retries)
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._shared: dict[str, Any] = {}
        self._tasks: dict[int, tuple[Callable[..., Any], tuple, int]] = {}
        self._queue: deque[int] = deque()
        self._next = 0

    @property
    def parallel(self) -> int:
        return self.workers

    def share(self, key: str, value: Any) -> Shared:
        self._shared[key] = value
        return Shared(key)

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        self._next += 1
        self._tasks[self._next] = (fn, args, 0)
        self._queue.append(self._next)
        return self._next

    @property
    def running(self) -> int:
        return sum(1 for w in self._pool if w.task is not None)

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.cpus_per_task, self.memory_mb), daemon=True
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _dispatch(self) -> None:
        while len(self._pool) < self.workers and len(self._pool) < len(self._queue) + self.running:
            self._pool.append(self._spawn())
        for w in self._pool:
            if w.task is None and self._queue:
                tid = self._queue.popleft()
                fn, args, attempts = self._tasks[tid]
                self._tasks[tid] = (fn, args, attempts + 1)
                for a in args:
                    if isinstance(a, Shared) and a.key not in w.data:
                        w.conn.send(("data", a.key, self._shared[a.key]))
                        w.data.add(a.key)
                w.conn.send(("task", tid, fn, args))
                w.task, w.started = tid, time.perf_counter()

    def as_completed(self) -> Iterator[TaskResult]:
        while self._tasks:
            self._dispatch()
            busy = [w for w in self._pool if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for w in busy:
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None and msg[0] == "memory":
                        w.memory_note = (
                            f"past the memory bound ({msg[1]:.0f} MB > {self.memory_mb} MB)"
                        )
                        continue
                    if msg is not None:
                        kind, tid, payload = msg
                        _, _, attempts = self._tasks.pop(tid)
                        seconds = time.perf_counter() - w.started
                        w.task = None
                        if kind == "done":
                            yield TaskResult(tid, value=payload, attempts=attempts, seconds=seconds)
                        else:
                            yield TaskResult(tid, error=payload, attempts=attempts, seconds=seconds)
                        continue
                if not w.process.is_alive() or (w.conn in ready and w.task is not None):
                    result = self._lost(w)
                    if result is not None:
                        yield result

    def _lost(self, w: _Worker) -> TaskResult | None:
        """A worker died: replace it; retry its task, or give the task up."""
        w.process.join(timeout=5)
        code = w.process.exitcode
        why = w.memory_note or (
            "past the memory bound" if code == EXIT_MEMORY else f"exit code {code}"
        )
        self._pool.remove(w)
        with contextlib.suppress(OSError):
            w.conn.close()
        tid = w.task
        if tid is None:
            return None
        fn, args, attempts = self._tasks[tid]
        log.warning(
            "worker %d died running task %d (%s), attempt %d", w.process.pid, tid, why, attempts
        )
        if attempts > self.retries:
            del self._tasks[tid]
            return TaskResult(
                tid,
                crashed=f"the worker process died on {attempts} attempts (last: {why})",
                attempts=attempts,
            )
        self._queue.appendleft(tid)
        return None

    def close(self) -> None:
        for w in self._pool:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(("stop",))
        for w in self._pool:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        self._pool.clear()


# ---------------------------------------------------------------------------------------------
# Ray


def _ray_call(cpus: int, memory_mb: int, fn: Callable[..., Any], *args: Any) -> Any:
    """What a Ray task runs: the budget, the watchdog, then ``fn`` (Ray resolves the shared
    values' object references among ``args`` before this is called)."""
    apply_cpu_budget(cpus)
    with MemoryWatchdog(memory_mb):
        return fn(*args)


class RayExecutor(Executor):
    """Tasks as Ray tasks: in-process local Ray by default (``ray.init()``, no server to
    start), a running cluster with ``address`` ("host:port" or "auto").

    Each task asks Ray for ``cpus_per_task`` CPUs and, with ``memory_mb``, that much memory
    (Ray uses it to place tasks; the watchdog enforces it). ``max_retries`` covers dead
    workers and lost nodes; exceptions raised by the task are not retried.
    """

    name = "ray"
    ships_files = True

    def __init__(
        self,
        address: str = "",
        cpus_per_task: int = 1,
        memory_mb: int = 0,
        retries: int = 1,
        max_parallel: int = 0,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "the ray executor needs Ray: pip install 'kerastrader[ray]' (or --executor local)"
            ) from None
        self._ray = ray
        self.cpus_per_task = max(1, int(cpus_per_task))
        self.memory_mb = int(memory_mb)
        self.retries = int(retries)
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                want = max_parallel * self.cpus_per_task if max_parallel else None
                kwargs["num_cpus"] = want or os.cpu_count()
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(
                    f"ray: cannot connect to {address or 'a local Ray'}: {exc}"
                ) from None
            self._owns = True
        total = int(ray.cluster_resources().get("CPU", 1))
        fits = max(1, total // self.cpus_per_task)
        self.max_parallel = min(int(max_parallel), fits) if max_parallel else fits
        self._remote = ray.remote(_ray_call)
        self._refs: dict[str, Any] = {}
        self._queue: deque[tuple[int, Callable[..., Any], tuple]] = deque()
        self._flying: dict[Any, tuple[int, float]] = {}
        self._next = 0
        log.info(
            "ray: %d CPUs in the cluster, %d tasks at a time of %d CPU(s) each",
            total,
            self.max_parallel,
            self.cpus_per_task,
        )

    @property
    def parallel(self) -> int:
        return self.max_parallel

    def share(self, key: str, value: Any) -> Shared:
        if key not in self._refs:
            self._refs[key] = self._ray.put(value)
        return Shared(key)

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        self._next += 1
        self._queue.append((self._next, fn, args))
        return self._next

    @property
    def running(self) -> int:
        return len(self._flying)

    def _launch(self) -> None:
        while self._queue and len(self._flying) < self.max_parallel:
            tid, fn, args = self._queue.popleft()
            args = tuple(self._refs[a.key] if isinstance(a, Shared) else a for a in args)
            options: dict[str, Any] = {
                "num_cpus": self.cpus_per_task,
                "max_retries": self.retries,
                "retry_exceptions": False,
            }
            if self.memory_mb:
                options["memory"] = self.memory_mb * 2**20
            ref = self._remote.options(**options).remote(
                self.cpus_per_task, self.memory_mb, fn, *args
            )
            self._flying[ref] = (tid, time.perf_counter())

    def as_completed(self) -> Iterator[TaskResult]:
        ray = self._ray
        from ray import exceptions as rex

        while self._queue or self._flying:
            self._launch()
            done, _ = ray.wait(list(self._flying), num_returns=1, timeout=1.0)
            for ref in done:
                tid, t0 = self._flying.pop(ref)
                seconds = time.perf_counter() - t0
                try:
                    value = ray.get(ref)
                except rex.RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                    yield TaskResult(tid, error=cause, seconds=seconds)
                except (
                    rex.WorkerCrashedError,
                    rex.NodeDiedError,
                    rex.ObjectLostError,
                    rex.OutOfMemoryError,
                    rex.RaySystemError,
                ) as exc:
                    why = (
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    )
                    yield TaskResult(
                        tid,
                        crashed=f"the Ray worker died on {self.retries + 1} "
                        f"attempts (last: {type(exc).__name__}: {why})",
                        attempts=self.retries + 1,
                        seconds=seconds,
                    )
                else:
                    yield TaskResult(tid, value=value, seconds=seconds)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(
    kind: str,
    *,
    max_parallel: int = 0,
    cpus_per_task: int = 1,
    memory_mb: int = 0,
    retries: int = 1,
    address: str = "",
) -> Executor:
    """The executor named ``kind`` ("local", "ray", "serial"; "" picks Ray when installed)."""
    kind = kind or ("ray" if address else default_executor())
    if kind not in EXECUTORS:
        raise ConfigError(f"executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    if address and kind != "ray":
        raise ConfigError("--address is a Ray cluster's address: use it with --executor ray")
    if kind == "serial":
        return SerialExecutor()
    if kind == "local":
        return LocalExecutor(max_parallel, cpus_per_task, memory_mb, retries)
    return RayExecutor(address, cpus_per_task, memory_mb, retries, max_parallel)
