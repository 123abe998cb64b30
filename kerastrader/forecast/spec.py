"""The forecast config: one TOML file describes a whole forecast, every key has a default.

The book itself (instruments, weights, rebalancing, total or price returns) is not restated
here: ``book.config`` names an ordinary kerastrader config (``examples/four_asset.toml``),
whose ``[data]``, ``[portfolio]`` and ``[benchmark]`` sections already say it; the same
weights and schedule a backtest measures the book against. ``book.source = "assumptions"``
uses the ``[assumptions]`` table instead: returns drawn from stated ranges, as study D does.

Unknown sections and keys are errors (a misspelt key that silently does nothing is the worst
kind of config bug), and every error names the file.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from kerastrader.config import parse_override
from kerastrader.errors import ConfigError

ForecastConfig = dict[str, dict[str, Any]]

DEFAULTS: ForecastConfig = {
    "book": {
        "source": "config",  # "config": the bars and weights of book.config; "assumptions"
        "config": "",  # a kerastrader config (relative to the forecast config's folder)
        "set": [],  # section.key=value overrides for that config
        "start": "",  # first period kept ("" = the first complete one)
        "end": "",  # last period kept ("" = the last complete one)
    },
    "assumptions": {
        "names": ["stocks", "bonds", "commodities", "gold"],
        "weights": [0.40, 0.45, 0.05, 0.10],
        "low": [0.03, 0.01, 0.00, 0.02],  # yearly return ranges (fractions)
        "high": [0.07, 0.05, 0.04, 0.06],
        "volatility": [0.15, 0.10, 0.15, 0.15],  # the stated yearly volatilities
        "draw": "uniform",  # "uniform": low..high (the article); "normal": mid, volatility
        "periods": 30,  # years simulated
        "seed": 78,
        "end": "2024-12-31",  # the last simulated year's date
    },
    "periods": {
        "frequency": "monthly",  # "monthly" or "yearly" (assumptions are yearly)
        "series": "portfolio",  # "portfolio": the book's returns; "assets": each asset's
    },
    "model": {
        "kind": "lstm",
        "units": [16],
        "dropout": 0.0,
        "activation": "tanh",
        "learning_rate": 0.001,
        "window": 12,  # periods in a window; the window ending at t predicts t+1
        "scale": "standard",  # "standard": z-scores from the training rows; "none": raw
    },
    "training": {
        "epochs": 200,
        "batch_size": 16,
        "validation_fraction": 0.2,  # the last windows choose the epoch; 0 = none
        "patience": 20,
        "seed": 0,
    },
    "forecast": {
        "horizon": 360,  # periods ahead from the last period
        "paths": 1000,  # Monte Carlo paths per method
        "seed": 0,
        "residuals": "validation",  # the bootstrap's residuals: "validation" or "training"
        "percentiles": [5, 25, 50, 75, 95],
        "expected_return": 0.038,  # the assumptions' expected yearly return (a line)
    },
    "rolling": {
        "horizon": 60,  # periods ahead scored from each origin (0: no rolling evaluation)
        "first": 96,  # periods of history before the first origin
        "step": 12,  # periods between origins (the model is refitted at each)
        "paths": 200,  # Monte Carlo paths per origin
    },
    "report": {"title": ""},
}

CHOICES = {
    ("book", "source"): ("config", "assumptions"),
    ("assumptions", "draw"): ("uniform", "normal"),
    ("periods", "frequency"): ("monthly", "yearly"),
    ("periods", "series"): ("portfolio", "assets"),
    ("model", "kind"): ("lstm", "gru", "dense", "cnn"),
    ("model", "scale"): ("standard", "none"),
    ("forecast", "residuals"): ("validation", "training"),
}

PERIODS_PER_YEAR = {"monthly": 12, "yearly": 1}


def _set(cfg: ForecastConfig, section: str, key: str, value: Any, origin: str) -> None:
    if section not in cfg:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(cfg)})")
    known = cfg[section]
    if key not in known:
        raise ConfigError(
            f"{origin}: unknown key {section}.{key} (known: {', '.join(sorted(known))})"
        )
    default = known[key]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, bool) != isinstance(value, bool) or (
        type(default) is not type(value)
        and not (isinstance(default, int | float) and isinstance(value, int | float))
    ):
        raise ConfigError(
            f"{origin}: {section}.{key} must be {type(default).__name__}, "
            f"not {type(value).__name__} ({value!r})"
        )
    known[key] = value


def load_forecast_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ForecastConfig:
    """Defaults, then the file, then ``section.key=value`` overrides; validated."""
    cfg = copy.deepcopy(DEFAULTS)
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"forecast config not found: {path}")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for section, values in user.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for key, value in values.items():
                _set(cfg, section, key, value, str(path))
        book = user.get("book", {}).get("config")
        if book and not Path(book).is_absolute():
            cfg["book"]["config"] = str((path.parent / book).resolve())
    for text in overrides or []:
        section, key, value = parse_override(text)
        _set(cfg, section, key, value, f"--set {text}")
    validate(cfg, origin)
    return cfg


def validate(cfg: ForecastConfig, origin: str = "forecast config") -> None:
    """Checks the types alone do not catch; each error names the key and the file."""
    for (section, key), allowed in CHOICES.items():
        if cfg[section][key] not in allowed:
            raise ConfigError(
                f"{origin}: {section}.{key} = {cfg[section][key]!r}: expected one of "
                f"{', '.join(allowed)}"
            )
    b, a = cfg["book"], cfg["assumptions"]
    if b["source"] == "config" and not b["config"]:
        raise ConfigError(f"{origin}: book.config: name a kerastrader config holding the book")
    if b["source"] == "assumptions":
        n = len(a["names"])
        for key in ("weights", "low", "high", "volatility"):
            if len(a[key]) != n:
                raise ConfigError(f"{origin}: assumptions.{key} needs {n} values, one per name")
        if any(lo > hi for lo, hi in zip(a["low"], a["high"], strict=True)):
            raise ConfigError(f"{origin}: assumptions.low must not exceed assumptions.high")
        if cfg["periods"]["frequency"] != "yearly":
            raise ConfigError(f"{origin}: assumptions are yearly: set periods.frequency = yearly")
        if a["periods"] < 2:
            raise ConfigError(f"{origin}: assumptions.periods must be at least 2")
    positive = [
        ("model", "window"),
        ("training", "epochs"),
        ("training", "batch_size"),
        ("forecast", "horizon"),
        ("forecast", "paths"),
        ("rolling", "step"),
        ("rolling", "paths"),
    ]
    for section, key in positive:
        if cfg[section][key] < 1:
            raise ConfigError(f"{origin}: {section}.{key} must be at least 1")
    if not cfg["model"]["units"] or any(
        not isinstance(u, int) or u < 1 for u in cfg["model"]["units"]
    ):
        raise ConfigError(f"{origin}: model.units must be a non-empty list of positive integers")
    if not 0.0 <= cfg["training"]["validation_fraction"] < 0.9:
        raise ConfigError(f"{origin}: training.validation_fraction must be in [0, 0.9)")
    if cfg["rolling"]["horizon"] < 0:
        raise ConfigError(f"{origin}: rolling.horizon must not be negative")
    pct = cfg["forecast"]["percentiles"]
    if not pct or any(not 0 < p < 100 for p in pct) or sorted(pct) != list(pct):
        raise ConfigError(f"{origin}: forecast.percentiles: increasing numbers in (0, 100)")
    if 50 not in pct:
        raise ConfigError(f"{origin}: forecast.percentiles must include 50 (the median)")


def periods_per_year(cfg: ForecastConfig) -> int:
    return PERIODS_PER_YEAR[cfg["periods"]["frequency"]]
