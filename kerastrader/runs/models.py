"""The model a run trades: loaded from an artifact directory, or trained (walk-forward when
configured) and saved with the run. Shared by the backtest and the paper session."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.config import Config
from kerastrader.models.artifact import save_artifact
from kerastrader.models.walkforward import load_model, walk_forward

log = logging.getLogger(__name__)


def model_for(
    cfg: Config,
    universe: dict[str, pd.DataFrame],
    data_info: dict[str, Any],
    out_dir: Path,
    model_dir: str | Path | None,
    symbol: str | None,
) -> Any:
    """Load, or train and save, the model for ``universe`` (one symbol's own model when
    ``symbol`` is given: saved in ``model/<symbol>/``)."""
    from kerastrader.models.text_features import bind_text
    from kerastrader.models.training import train

    sub = Path(symbol) if symbol else Path()
    if model_dir is not None:
        artifact = load_model(Path(model_dir) / sub)
        bind_text(artifact, cfg)  # [text]: the config's items, not the training run's
        if not cfg["selection"]["method"]:  # a selected subset is the model's own business
            artifact.check_compatible(  # the config must describe the model it loads
                cfg["features"]["names"], cfg["model"]["window"], cfg["features"]["memory"]
            )
        return artifact
    target = out_dir / "model" / sub
    if cfg["walkforward"]["enabled"]:
        work = out_dir / sub
        artifact = walk_forward(universe, cfg, data_info, target, workdir=work)
        log.info("%d walk-forward folds saved to %s", len(artifact.folds), target)
        return artifact
    bars = universe if len(universe) > 1 else next(iter(universe.values()))
    info = {**data_info, "symbol": symbol} if symbol else data_info
    result = train(bars, cfg, info, out_dir / sub)
    save_artifact(result.artifact, target)
    log.info("model saved to %s", target)
    return result.artifact


def book_models(
    cfg: Config,
    universe: dict[str, pd.DataFrame],
    data_info: dict[str, Any],
    out_dir: Path,
    model_dir: str | Path | None,
) -> tuple[dict[str, Any], Any, bool]:
    """The models a book trades, by symbol: one shared model, or one per instrument
    (``portfolio.models = "per_instrument"``); with the first of them and whether they are per
    instrument. The backtest and the paper session both take their book's models from here,
    so a session trades exactly what its backtest traded."""
    from kerastrader.errors import ConfigError

    symbols = list(universe)
    unknown = sorted(set(cfg["portfolio"]["weights"]) - set(symbols))
    if unknown:
        raise ConfigError(f"portfolio.weights: {', '.join(unknown)} not among the symbols "
                          f"({', '.join(symbols)})")  # fmt: skip
    if cfg["portfolio"]["allocation"] == "strategic" and not cfg["portfolio"]["weights"]:
        raise ConfigError("portfolio.allocation = 'strategic' needs portfolio.weights")
    per_instrument = len(symbols) > 1 and cfg["portfolio"]["models"] == "per_instrument"
    if per_instrument:
        models = {sym: model_for(cfg, {sym: universe[sym]}, data_info, out_dir, model_dir, sym)
                  for sym in symbols}  # fmt: skip
        return models, models[symbols[0]], True
    artifact = model_for(cfg, universe, data_info, out_dir, model_dir, None)
    return {sym: artifact for sym in symbols}, artifact, False
