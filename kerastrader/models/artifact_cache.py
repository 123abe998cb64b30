"""Loaded models kept per process, so that a model's fixed costs are paid once.

Loading ``model.keras`` (tens of milliseconds), tracing a ``tf.function`` (a few hundred) and
opening an ONNX Runtime session are the same work for every backtest that uses the same model
directory: a second backtest in a notebook, every job of a sweep in one worker, every fold of
a walk-forward schedule read again. :func:`~kerastrader.models.artifact.load_artifact` keeps
the expensive objects here, keyed by the directory's resolved path and a SHA-256 of its files'
contents, so that a model retrained at the same path is loaded afresh, never served stale.

Each load still returns a new :class:`~kerastrader.models.artifact.Artifact` (its own
metadata dict, its own attributes) around the shared objects: a caller that patches its
artifact does not change what the next caller gets. The shared objects are the Keras model,
the checked ONNX bytes and the compiled predictors (:class:`Compiled`); they are used from one
thread at a time, as Backtrader does.

The cache is a small LRU (16 entries by default: a walk-forward schedule of ten folds fits;
``KERASTRADER_MODEL_CACHE=0`` turns it off, another number resizes it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SIZE = 16


@dataclass
class Compiled:
    """The compiled predictors of one model, shared by every Artifact loaded from it.

    ``batch``: the vectorised pass's :class:`~kerastrader.models.inference.BatchPredictor`;
    ``steps``: backend ("onnx" or "tf") -> the bar-by-bar pass's ``StepPredictor``.
    """

    batch: Any = None
    steps: dict[str, Any] = field(default_factory=dict)


@dataclass
class CachedModel:
    """What a load would otherwise redo: the Keras model, the ONNX bytes that matched the
    metadata (None when absent or stale), and the compiled predictors."""

    model: Any
    onnx_bytes: bytes | None
    compiled: Compiled = field(default_factory=Compiled)


def content_key(path: Path, contents: Iterable[bytes | None]) -> tuple[str, str]:
    """(resolved directory, SHA-256 over its files' bytes in order; None for an absent file)."""
    digest = hashlib.sha256()
    for data in contents:
        if data is None:
            digest.update(b"absent\0")
        else:
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return str(Path(path).resolve()), digest.hexdigest()


class ArtifactCache:
    """A thread-safe LRU of :class:`CachedModel` by :func:`content_key`, at most ``maxsize``
    entries (0: nothing is kept). A new content at a path replaces the path's old entry."""

    def __init__(self, maxsize: int = DEFAULT_SIZE) -> None:
        self.maxsize = max(0, int(maxsize))
        self._entries: OrderedDict[tuple[str, str], CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> CachedModel | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple[str, str], entry: CachedModel) -> None:
        if self.maxsize == 0:
            return
        with self._lock:
            for old in [k for k in self._entries if k[0] == key[0] and k != key]:
                log.debug("model cache: %s changed on disk, dropping the old load", old[0])
                del self._entries[old]
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


def _size_from_env() -> int:
    text = os.environ.get("KERASTRADER_MODEL_CACHE", "").strip()
    if not text:
        return DEFAULT_SIZE
    try:
        return max(0, int(text))
    except ValueError:
        log.warning("KERASTRADER_MODEL_CACHE=%r is not a number; using %d", text, DEFAULT_SIZE)
        return DEFAULT_SIZE


MODELS = ArtifactCache(_size_from_env())
