"""Run a study: its data slice, each of its runs, the originals' accounting, then the page.

A study is a folder (``examples/studies/<name>/``) holding ``study.toml`` and the kerastrader
configs of its runs. ``study.toml``::

    [study]     name, title, source, summary
    [data]      source (a bars file relative to the folder; "" = the embedded ORCL bars),
                start / end (the study's dates: the file is cut to them, text unchanged),
                date_format ("iso" or "dayfirst", to read the dates for the cut),
                store = true (ingest the slice into the bar store and read the runs from it:
                KERASTRADER_STUDY_STORE names a server, else SQLite in the output folder),
                symbol
    [original]  settings = [["what", "the original's choice"], ...], numbers = {key = value}
                (the reported numbers, keyed as the page's rows), notes
    [[runs]]    name, role ("faithful", "honest", "mistake" or "variant"), label, what,
                config (relative to the folder), set = ["section.key=value", ...],
                model_from (reuse another run's trained model), group (the page's table),
                accounting = {side, threshold, log_returns, blocks} (the original's arithmetic)

Every run is an ordinary kerastrader run in ``<out>/<run name>/`` (report.html included);
the study adds ``study.json`` to it, with the original's arithmetic applied to that run's own
predictions. The page is then built from those files alone (:mod:`kerastrader.studies.page`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.config import load_config
from kerastrader.errors import ConfigError
from kerastrader.models.features import LOOK_AHEAD_KINDS, parse_feature
from kerastrader.studies.accounting import Accounting, score

log = logging.getLogger(__name__)

ROLES = ("faithful", "honest", "mistake", "variant")
STUDY_FILE = "study.toml"
STORE_ENV = "KERASTRADER_STUDY_STORE"


@dataclass
class RunSpec:
    name: str
    role: str
    config: Path
    label: str = ""
    what: str = ""
    overrides: list[str] = field(default_factory=list)
    model_from: str = ""
    group: str = ""
    accounting: Accounting = field(default_factory=Accounting)


@dataclass
class Study:
    folder: Path
    raw: dict[str, Any]
    runs: list[RunSpec]

    @property
    def name(self) -> str:
        return str(self.raw["study"].get("name", self.folder.name))


def studies_root() -> Path:
    """``examples/studies`` of this checkout (the package sits next to ``examples/``), or of
    the working directory."""
    here = Path(__file__).resolve().parents[2] / "examples" / "studies"
    return here if here.is_dir() else Path.cwd() / "examples" / "studies"


def find_study(name: str) -> Path:
    """A study folder from a path (folder or its study.toml) or a name (``a``, ``c_moving``,
    ``c_moving_averages``): the folder of ``examples/studies`` it starts."""
    path = Path(name)
    if path.is_file() and path.name == STUDY_FILE:
        return path.parent
    if (path / STUDY_FILE).is_file():
        return path
    root = studies_root()
    found = sorted(p.parent for p in root.glob(f"*/{STUDY_FILE}") if p.parent.name.startswith(name))
    if len(found) == 1:
        return found[0]
    known = ", ".join(sorted(p.parent.name for p in root.glob(f"*/{STUDY_FILE}")))
    what = "matches several studies" if found else "is not a study"
    raise ConfigError(f"study {name!r} {what} (known: {known or 'none'} in {root})")


def load_study(folder: Path) -> Study:
    """Read and check ``study.toml``; run configs are checked when each run is loaded."""
    path = folder / STUDY_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section in ("study", "original"):
        if section not in raw:
            raise ConfigError(f"{path}: missing [{section}]")
    runs: list[RunSpec] = []
    for i, r in enumerate(raw.get("runs", [])):
        where = f"{path}: runs[{i}]"
        if r.get("role") not in ROLES:
            raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}")
        if not r.get("name") or not r.get("config"):
            raise ConfigError(f"{where}: name and config are required")
        cfg_path = (folder / r["config"]).resolve()
        if not cfg_path.is_file():
            raise ConfigError(f"{where}: config file not found: {cfg_path}")
        runs.append(
            RunSpec(
                name=r["name"],
                role=r["role"],
                config=cfg_path,
                label=r.get("label", r["name"]),
                what=r.get("what", ""),
                overrides=list(r.get("set", [])),
                model_from=r.get("model_from", ""),
                group=r.get("group", ""),
                accounting=Accounting.from_spec(r.get("accounting", {}), where),
            )
        )
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two runs share a name")
    for r in runs:
        earlier = names[: names.index(r.name)]
        if r.model_from and r.model_from not in earlier:
            raise ConfigError(f"{path}: run {r.name}: model_from must name an earlier run")
    for role in ("faithful", "honest"):
        if role not in {r.role for r in runs}:
            raise ConfigError(f"{path}: needs a run with role = {role!r}")
    return Study(folder=folder, raw=raw, runs=runs)


def _runner() -> tuple[Any, Any]:
    """``(run_experiment, load_bars)``: from ``kerastrader.runs`` after the experiment
    runner's move there, from ``kerastrader.backtest`` before it."""
    try:
        from kerastrader.runs.backtest import run_experiment
        from kerastrader.runs.universe import load_bars
    except ImportError:
        from kerastrader.backtest import load_bars, run_experiment  # type: ignore[no-redef]
    return run_experiment, load_bars


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_data(study: Study, out: Path) -> tuple[list[str], dict[str, Any]]:
    """Cut the study's file to its dates (rows kept as text) and, for a store study, ingest
    the cut into the bar store; returns the overrides every run gets and the provenance."""
    d = study.raw.get("data", {})
    if not d.get("source"):
        from kerastrader.config import embedded_data_path

        source = embedded_data_path()
    else:
        source = (study.folder / d["source"]).resolve()
    if not source.is_file():
        raise ConfigError(
            f"study {study.name}: data file not found: {source} (the shared data folder, "
            "../shared/data from the project root)"
        )
    info: dict[str, Any] = {"source": str(source), "source_sha256": _sha256(source)}
    path = source
    if d.get("start") or d.get("end"):
        raw = pd.read_csv(source, dtype=str, keep_default_na=False)
        col = next((c for c in raw.columns if c.strip().lower() in ("date", "datetime")), None)
        if col is None:
            raise ConfigError(f"{source}: no Date column to cut the study's dates by")
        dates = pd.to_datetime(raw[col], dayfirst=d.get("date_format") == "dayfirst")
        keep = pd.Series(True, index=raw.index)
        if d.get("start"):
            keep &= dates >= pd.Timestamp(d["start"])
        if d.get("end"):
            keep &= dates <= pd.Timestamp(d["end"])
        (out / "data").mkdir(parents=True, exist_ok=True)
        path = out / "data" / f"{source.stem}-{d.get('start', '')}-{d.get('end', '')}.csv"
        raw[keep].to_csv(path, index=False)
        empty = int((raw[keep] == "").to_numpy().sum())
        info.update(start=d.get("start"), end=d.get("end"), rows=int(keep.sum()), empty_cells=empty)
    info.update(path=str(path), sha256=_sha256(path))
    overrides = [f"data.path={json.dumps(str(path))}"]
    if d.get("store"):
        from kerastrader.feeds.frames import load_any
        from kerastrader.feeds.store import BarStore

        url = os.environ.get(STORE_ENV) or f"sqlite:///{(out / 'bars.sqlite').resolve()}"
        symbol = str(d.get("symbol") or source.stem.split("-")[0].upper())
        bars = load_any(str(path), date_format=d.get("date_format", "iso"))
        store = BarStore(url)
        result = store.ingest(bars, symbol, "1d")
        info.update(
            store=store.name, symbol=symbol, inserted=result.inserted, unchanged=result.unchanged
        )
        log.info(
            "%s: %s: %d new, %d unchanged", store.name, symbol, result.inserted, result.unchanged
        )
        overrides = [
            'data.path=""',
            f"data.store={json.dumps(url)}",
            f"data.symbol={json.dumps(symbol)}",
        ]
    return overrides, info


def _honest_flags(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the run's config reproduces of the originals' choices, named."""
    kinds = [parse_feature(n, 1).kind for n in cfg["features"]["names"]]
    return {
        "label_inverted": bool(cfg["label"]["invert"]),
        "look_ahead_features": [
            n for n, k in zip(cfg["features"]["names"], kinds, strict=True) if k in LOOK_AHEAD_KINDS
        ],
        "missing": cfg["data"]["missing"],
        "early_stopping_on": cfg["training"]["monitor"],
        "tuning": cfg["tuning"]["algorithm"] or None,
        "tuning_scored_on": cfg["tuning"]["validation"] if cfg["tuning"]["algorithm"] else None,
        "commission": cfg["broker"]["commission"],
        "slippage_bps": cfg["broker"]["slippage_bps"],
    }


def score_run(run_dir: Path, cfg: dict[str, Any], acc: Accounting) -> dict[str, Any]:
    """The original's arithmetic on this run's predictions over its model-scored period
    (metrics.json's ``model.test_start`` .. ``test_end``), against the data's closes."""
    _, load_bars = _runner()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    pred = pd.read_csv(run_dir / "predictions.csv", parse_dates=["date"]).set_index("date")
    bars, _ = load_bars(cfg)
    model = metrics.get("model") or {}
    start, end = model.get("test_start"), model.get("test_end")
    p = pred["prediction"]
    if start and end:
        p = p[(p.index >= pd.Timestamp(start)) & (p.index <= pd.Timestamp(end))]
    close = bars["close"].reindex(bars.index)
    series = pd.Series(float("nan"), index=bars.index)
    series.loc[p.index.intersection(bars.index)] = p
    return score(series, close, acc)


def output_folder(study: Study, out: str | Path | None) -> Path:
    """The study's output folder, made: ``out``, else ``runs/<time>-study-<name>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("runs") / f"{stamp}-study-{study.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def select_runs(study: Study, only: list[str] | None) -> list[RunSpec]:
    """The runs ``only`` names (all when empty), with every run they reuse a model from, in the
    study's order; a name the study does not have is a ConfigError."""
    if not only:
        return list(study.runs)
    wanted = set(only)
    unknown = wanted - {r.name for r in study.runs}
    if unknown:
        raise ConfigError(f"study {study.name}: no run named {', '.join(sorted(unknown))}")
    for r in reversed(study.runs):
        if r.name in wanted and r.model_from:
            wanted.add(r.model_from)
    return [r for r in study.runs if r.name in wanted]


def run_record(study: Study, r: RunSpec) -> dict[str, Any]:
    """What every study's page reads of a run besides its results: name, role, label, what,
    group, its config (relative to the study's folder) and its own ``set``."""
    return {
        "name": r.name,
        "role": r.role,
        "label": r.label,
        "what": r.what,
        "group": r.group,
        "config": str(r.config.relative_to(study.folder)),
        "set": list(r.overrides),
    }


def record_run(out_dir: Path, result: dict[str, Any], index: dict[str, Any]) -> None:
    """Write the run's ``study.json`` and add it to the study's index, rewritten at once: a
    long study's page, rebuilt after every run, shows what has finished so far."""
    (out_dir / result["name"] / "study.json").write_text(json.dumps(result, indent=2) + "\n")
    index["runs"].append(result["name"])
    (out_dir / "study.json").write_text(json.dumps(index, indent=2) + "\n")


def run_study(
    name: str,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    only: list[str] | None = None,
) -> Path:
    """Run the study ``name`` into ``out`` and write its page; returns the page's path.

    ``overrides`` (``section.key=value``) apply to every run after its own settings (the test
    suite shrinks a study this way); ``only`` keeps those runs (and the runs they reuse a
    model from)."""
    from kerastrader.studies.page import write_page

    run_experiment, _ = _runner()

    study = load_study(find_study(name))
    if study.raw["study"].get("kind") == "forecast":  # study D: its runs are forecast configs
        from kerastrader.forecast.study import run_forecast_study

        return run_forecast_study(study, out, overrides, only)
    out_dir = output_folder(study, out)
    runs = select_runs(study, only)
    data_overrides, data_info = prepare_data(study, out_dir)
    shutil.copy(study.folder / STUDY_FILE, out_dir / STUDY_FILE)
    index = {"study": study.name, "data": data_info, "runs": [], "overrides": overrides or []}
    page = out_dir / "study.html"
    for r in runs:
        log.info("study %s: run %s (%s)", study.name, r.name, r.role)
        cfg = load_config(r.config, data_overrides + r.overrides + list(overrides or []))
        run_dir = out_dir / r.name
        model_dir = out_dir / r.model_from / "model" if r.model_from else None
        run_experiment(cfg, run_dir, model_dir=model_dir)
        result = run_record(study, r) | {
            "model_from": r.model_from,
            "reproduces": _honest_flags(cfg),
            "original_accounting": score_run(run_dir, cfg, r.accounting),
        }
        record_run(out_dir, result, index)
        page = write_page(out_dir)
    log.info("study page: %s", page)
    return page
