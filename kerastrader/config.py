"""One config file describes a whole experiment.

The embedded ``default.toml`` holds every key and its default; a user's TOML file and
``--set key=value`` overrides are merged over it. Unknown sections or keys are errors, not
silently ignored, because a misspelt key that does nothing is the worst kind of config bug.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from kerastrader.errors import ConfigError

Config = dict[str, dict[str, Any]]


def default_config() -> Config:
    """The embedded defaults, as a fresh dict the caller may change."""
    text = resources.files("kerastrader.data").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def embedded_data_path() -> Path:
    """The bundled ORCL 1995-2014 daily bars."""
    return Path(str(resources.files("kerastrader.data").joinpath("orcl-1995-2014.csv")))


def _merge(base: Config, override: dict[str, Any], origin: str) -> None:
    for section, values in override.items():
        if section not in base:
            raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(base)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            _set(base, section, key, value, origin)


def _set(cfg: Config, section: str, key: str, value: Any, origin: str) -> None:
    known = cfg[section]
    if key not in known:
        raise ConfigError(
            f"{origin}: unknown key {section}.{key} (known: {', '.join(sorted(known))})"
        )
    default = known[key]
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{origin}: {section}.{key} must be true or false, not {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(default) is not type(value) and not (
        isinstance(default, int | float) and isinstance(value, int | float)
    ):
        raise ConfigError(
            f"{origin}: {section}.{key} must be {type(default).__name__}, "
            f"not {type(value).__name__} ({value!r})"
        )
    known[key] = value


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is read as TOML, or as a plain string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.epochs=2")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts[0], parts[1], value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the file at ``path``, then ``--set`` overrides; validated."""
    cfg = default_config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        _merge(cfg, user, str(path))
        data_path = user.get("data", {}).get("path")
        if data_path and not Path(data_path).is_absolute():
            # A path in a config file is relative to that file, wherever the command runs.
            cfg["data"]["path"] = str((path.parent / data_path).resolve())
        text_path = user.get("text", {}).get("path")
        if text_path and not Path(text_path).is_absolute():  # like data.path: beside the file
            cfg["text"]["path"] = str((path.parent / text_path).resolve())
        custom = user.get("model", {}).get("custom", "")
        file_part, _, function = custom.partition(":")
        if file_part.endswith((".keras", ".py")) and not Path(file_part).is_absolute():
            resolved = str((path.parent / file_part).resolve())
            cfg["model"]["custom"] = f"{resolved}:{function}" if function else resolved
    for text in overrides or []:
        section, key, value = parse_override(text)
        if section not in cfg:
            raise ConfigError(f"--set {text}: unknown section [{section}]")
        _set(cfg, section, key, value, f"--set {text}")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks on values that types alone do not catch."""
    choices = {
        ("data", "missing"): ("error", "ffill", "interpolate", "drop"),
        ("label", "kind"): ("direction", "three_class", "regression"),
        ("model", "kind"): ("lstm", "gru", "dense", "cnn", "transformer", "custom", "cnn2d"),
        ("model", "input"): ("window", "image"),
        ("model", "pooling"): ("max", "average"),
        ("model", "autoencoder"): ("", "bottleneck", "error", "both"),
        ("selection", "method"): ("", "boruta", "permutation"),
        ("tuning", "algorithm"): ("", "random", "hyperband", "bayesian"),
        ("walkforward", "scheme"): ("expanding", "rolling"),
        ("walkforward", "executor"): ("local", "ray"),
        ("tuning", "executor"): ("local", "ray"),
        ("sweep", "executor"): ("", "local", "ray", "serial"),
        ("strategy", "signal"): ("threshold", "proportional"),
        ("sizing", "method"): ("fixed", "volatility", "kelly"),
        ("portfolio", "models"): ("shared", "per_instrument"),
        ("portfolio", "allocation"): ("independent", "top_k", "proportional", "strategic"),
        ("portfolio", "rebalance"): ("bar", "daily", "weekly", "monthly"),
        ("data", "returns"): ("total", "price"),
        ("training", "monitor"): ("val_loss", "loss"),
        ("training", "pipeline"): ("arrays", "tf.data"),
        ("tuning", "validation"): ("validation", "training"),
        ("broker", "commission_scheme"): ("percent", "per_share", "ibkr_fixed", "ibkr_tiered"),
        ("paper", "sec_type"): ("STK", "FUT", "CASH"),
        ("paper", "journal_sync"): ("full", "normal"),
        ("paper", "realtime_errors"): ("stop", "retry"),
    }
    for (section, key), allowed in choices.items():
        if cfg[section][key] not in allowed:
            raise ConfigError(
                f"{section}.{key} = {cfg[section][key]!r}: expected one of {', '.join(allowed)}"
            )
    positive = [
        ("model", "window"),
        ("training", "epochs"),
        ("training", "batch_size"),
        ("training", "steps_per_execution"),
        ("label", "horizon"),
        ("tuning", "max_trials"),
        ("tuning", "epochs"),
        ("walkforward", "train_bars"),
        ("walkforward", "validation_bars"),
        ("walkforward", "step"),
        ("walkforward", "workers"),
        ("tuning", "workers"),
        ("sweep", "cpus_per_job"),
        ("text", "vocabulary"),
        ("text", "tokens"),
        ("text", "items"),
        ("text", "embedding"),
        ("text", "heads"),
    ]
    for section, key in positive:
        if cfg[section][key] < 1:
            raise ConfigError(f"{section}.{key} must be at least 1, not {cfg[section][key]}")
    if cfg["model"]["kind"] == "custom" and not cfg["model"]["custom"]:
        raise ConfigError(
            "model.kind = 'custom' needs model.custom: a .keras file or 'package.module:function'"
        )
    for section, key in (("split", "embargo"), ("walkforward", "folds")):
        if cfg[section][key] < 0:
            raise ConfigError(f"{section}.{key} must not be negative, not {cfg[section][key]}")
    if cfg["label"]["dead_band"] < 0:
        raise ConfigError("label.dead_band must not be negative")
    if cfg["label"]["invert"] and cfg["label"]["kind"] != "direction":
        raise ConfigError("label.invert applies to label.kind = 'direction' only")
    if cfg["tuning"]["algorithm"] and not cfg["tuning"]["space"]:
        raise ConfigError("tuning.algorithm is set but tuning.space declares nothing to search")
    if not cfg["model"]["units"] or any(
        not isinstance(u, int) or u < 1 for u in cfg["model"]["units"]
    ):
        raise ConfigError("model.units must be a non-empty list of positive integers")
    if not 0.0 <= cfg["model"]["dropout"] < 1.0:
        raise ConfigError("model.dropout must be in [0, 1)")
    non_negative = [
        ("strategy", "min_hold"),
        ("risk", "stop_loss"),
        ("risk", "take_profit"),
        ("risk", "trailing_stop"),
        ("risk", "daily_loss_limit"),
        ("risk", "tick"),
        ("portfolio", "turnover_limit"),
        ("portfolio", "resize_band"),
        ("portfolio", "tilt"),
        ("broker", "commission"),
        ("broker", "per_share"),
        ("broker", "min_commission"),
        ("broker", "max_commission"),
        ("broker", "slippage_bps"),
        ("broker", "slippage_range"),
        ("broker", "volume_cap"),
        ("paper", "max_quantity"),
        ("paper", "max_notional"),
        ("paper", "max_position"),
        ("paper", "capital"),
    ]
    for section, key in non_negative:
        if cfg[section][key] < 0:
            raise ConfigError(f"{section}.{key} must not be negative, not {cfg[section][key]}")
    for section, key in (("sizing", "max_position"), ("sizing", "max_gross"),
                         ("sizing", "target_volatility"), ("sizing", "kelly_cap"),
                         ("sizing", "kelly_multiplier"), ("sizing", "kelly_payoff"),
                         ("strategy", "scale"), ("sizing", "vol_lookback"),
                         ("portfolio", "top_k")):  # fmt: skip
        if cfg[section][key] <= 0:
            raise ConfigError(f"{section}.{key} must be positive, not {cfg[section][key]}")
    if cfg["sizing"]["periods_per_year"] < 0:
        raise ConfigError("sizing.periods_per_year must not be negative (0: from the data)")
    if not 0.0 <= cfg["strategy"]["cash_buffer"] < 0.5:
        raise ConfigError("strategy.cash_buffer is a fraction of equity in [0, 0.5)")
    for key in ("stop_loss", "take_profit", "trailing_stop", "daily_loss_limit"):
        if cfg["risk"][key] >= 1:
            raise ConfigError(f"risk.{key} is a fraction (0.05 = 5%), not {cfg['risk'][key]}")
    for sym, w in cfg["portfolio"]["weights"].items():
        if not isinstance(w, int | float) or isinstance(w, bool) or w < 0:
            raise ConfigError(f"portfolio.weights.{sym} must be a non-negative number, not {w!r}")
    if sum(cfg["portfolio"]["weights"].values()) > cfg["sizing"]["max_gross"] + 1e-9:
        raise ConfigError("portfolio.weights add up to more than sizing.max_gross")
    strat = cfg["strategy"]
    if strat["exit"] > strat["enter"]:
        raise ConfigError(
            f"strategy.exit ({strat['exit']}) must not exceed strategy.enter ({strat['enter']})"
        )
    if not 0.0 < strat["target_percent"] <= 1.0:
        raise ConfigError("strategy.target_percent must be in (0, 1]")
    if cfg["broker"]["cash"] <= 0:
        raise ConfigError("broker.cash must be positive")
    if (cfg["text"]["features"] or cfg["text"]["encoder"]) and not cfg["text"]["path"]:
        raise ConfigError("text.features / text.encoder need text.path: the items to read")
    from kerastrader.models.images import check_config as check_images

    check_images(cfg)  # model.input = "image" with cnn2d, and the [image] table


def dump_config(cfg: Config) -> str:
    """The resolved config as TOML, written next to every run's results."""
    return tomli_w.dumps(copy.deepcopy(cfg))
