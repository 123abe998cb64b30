"""Study D: the portfolio path forecast, run as forecasts instead of backtests.

``examples/studies/d_portfolio_forecast/study.toml`` has ``kind = "forecast"`` in its
``[study]`` table, and its runs name forecast configs (:mod:`kerastrader.forecast.spec`), not
experiment configs. :func:`kerastrader.studies.runner.run_study` hands such a study here:
every run is an ordinary forecast in ``<out>/<run name>/`` (forecast.html included), plus
``study.json`` with its role and label; the page (:mod:`kerastrader.forecast.study_page`) is
then built from those files alone, and rewritten after every run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kerastrader.forecast.runner import run_forecast
from kerastrader.forecast.spec import load_forecast_config

log = logging.getLogger(__name__)

STUDY_FILE = "study.toml"


def run_forecast_study(
    study: Any,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    only: list[str] | None = None,
) -> Path:
    """Run a forecast study (a :class:`kerastrader.studies.runner.Study`) into ``out``;
    returns the page's path. ``overrides`` apply to every run after its own ``set``."""
    from kerastrader.forecast.study_page import write_page
    from kerastrader.studies.runner import output_folder, record_run, run_record, select_runs

    out_dir = output_folder(study, out)
    runs = select_runs(study, only)
    shutil.copy(study.folder / STUDY_FILE, out_dir / STUDY_FILE)
    index: dict[str, Any] = {
        "study": study.name,
        "kind": "forecast",
        "runs": [],
        "overrides": list(overrides or []),
    }
    page = out_dir / "study.html"
    for r in runs:
        log.info("study %s: run %s (%s)", study.name, r.name, r.role)
        cfg = load_forecast_config(r.config, list(r.overrides) + list(overrides or []))
        run_dir = out_dir / r.name
        run_forecast(cfg, run_dir)
        record_run(out_dir, run_record(study, r), index)
        page = write_page(out_dir)
    log.info("study page: %s", page)
    return page
