"""What a sweep runs: the grid, its expansion into jobs, and each job's key.

A grid maps ``section.key`` to the values to try; every combination is one job (``--random
N`` draws N combinations instead, without replacement, from a seeded generator, so the same
seed draws the same jobs). A job's key is a hash of its resolved config and the data's
SHA-256: a re-run with the same config and data finds the job's folder and skips it; a
changed value or a changed data file is a new job.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.config import Config
from kerastrader.errors import ConfigError

# Keys that say how to run, not what: they are left out of a job's key, so that running the
# same sweep on Ray instead of a process pool (or with more workers) skips the finished jobs.
NOT_IN_KEY = {
    "sweep": None,
    "walkforward": ("workers", "executor"),
    "tuning": ("workers", "executor"),
}


def split_top_level(text: str) -> list[str]:
    """Split ``text`` on the commas that are not inside brackets, braces or quotes, so that
    ``[4],[8,4]`` is two values and ``"a,b"`` is one."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_value(raw: str) -> Any:
    """A value as TOML (``0.55``, ``[32,16]``, ``"gru"``), else the text itself (``gru``)."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_grid_arg(text: str) -> tuple[str, list[Any]]:
    """``section.key=v1,v2,...`` as the key and its values."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected section.key=v1,v2,...")
    key, raw = text.split("=", 1)
    key = key.strip()
    if len(key.split(".")) != 2 or not all(key.split(".")):
        raise ConfigError(
            f"--grid {text!r}: expected section.key=v1,v2 (e.g. strategy.enter=0.5,0.55)"
        )
    values = [parse_value(v) for v in split_top_level(raw) if v != ""]
    if not values:
        raise ConfigError(f"--grid {text!r}: no values")
    return key, values


def check_grid(grid: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid from a ``[sweep]`` table or the command line, checked: keys are
    ``section.key``, values non-empty lists without repeats."""
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if len(str(key).split(".")) != 2:
            raise ConfigError(f"sweep.grid: {key!r} is not section.key")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.grid.{key}: expected a non-empty list of values")
        seen = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) < len(seen):
            raise ConfigError(f"sweep.grid.{key}: a value is listed twice")
        out[str(key)] = list(values)
    return out


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 0


def expand(grid: dict[str, list[Any]], n_random: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """Every combination of the grid (the last key varying fastest), or ``n_random`` of them
    drawn without replacement with ``seed`` (all of them when the grid has no more)."""
    if not grid:
        return []
    keys = list(grid)
    total = grid_size(grid)
    if n_random and n_random < total:
        picks = sorted(random.Random(seed).sample(range(total), n_random))
        return [_combination(grid, keys, i) for i in picks]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _combination(grid: dict[str, list[Any]], keys: list[str], index: int) -> dict[str, Any]:
    """The ``index``-th combination in itertools.product order (mixed radix, last key fastest)."""
    out = {}
    for key in reversed(keys):
        index, digit = divmod(index, len(grid[key]))
        out[key] = grid[key][digit]
    return {k: out[k] for k in keys}


def as_override(key: str, value: Any) -> str:
    """``section.key=value`` with the value written as TOML, as ``--set`` reads it."""
    if isinstance(value, dict):  # an inline table; JSON is TOML for the rest
        text = "{ " + ", ".join(as_override(k, v).replace("=", " = ", 1)
                                for k, v in value.items()) + " }"  # fmt: skip
    else:
        text = json.dumps(value)
    return f"{key}={text}"


def key_config(cfg: Config) -> Config:
    """The parts of a resolved config that decide a job's results."""
    out = copy.deepcopy(cfg)
    for section, keys in NOT_IN_KEY.items():
        if keys is None:
            out.pop(section, None)
        else:
            for k in keys:
                out.get(section, {}).pop(k, None)
    return out


def job_key(cfg: Config, data_sha256: str) -> str:
    """A hash of the resolved config (less how-to-run keys) and the data's SHA-256."""
    text = json.dumps(key_config(cfg), sort_keys=True, default=str) + "\n" + data_sha256
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_section_key(cfg: Config) -> str:
    """Jobs with the same ``[data]`` section read the same bars: they share one load."""
    return hashlib.sha256(
        json.dumps(cfg["data"], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def data_sha256(universe: dict[str, pd.DataFrame], info: dict[str, Any]) -> str:
    """The data file's SHA-256 when the bars come from one file; otherwise a SHA-256 of the
    loaded bars themselves (several files, a store, a query), symbol by symbol."""
    if info.get("sha256"):
        return str(info["sha256"])
    h = hashlib.sha256()
    for sym in sorted(universe):
        frame = universe[sym]
        h.update(sym.encode())
        h.update(",".join(map(str, frame.columns)).encode())
        h.update(np.ascontiguousarray(pd.util.hash_pandas_object(frame, index=True).to_numpy()))
    return h.hexdigest()


@dataclass
class JobSpec:
    """One job: its values, its resolved config (None when the values are invalid) and key."""

    index: int
    params: dict[str, Any]
    cfg: Config | None
    key: str = ""
    error: str = ""  # why the values do not make a valid config
    data_key: str = ""
