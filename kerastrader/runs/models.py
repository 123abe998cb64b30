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
    from kerastrader.models.training import train

    sub = Path(symbol) if symbol else Path()
    if model_dir is not None:
        artifact = load_model(Path(model_dir) / sub)
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
