"""Shared fixtures: real bars (the embedded ORCL file) and one tiny trained model per session."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# With CI=true (.ci/run) a skip fails the run: a test that needs a real part -- the PostgreSQL
# server, Chromium, a test extra (hypothesis, playwright, exchange-calendars), the installed
# console script -- skips with its reason outside CI and fails under CI. The one skip CI keeps
# is a file of ../shared that is absent, which a fresh clone never has: shared_file says so.
CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
SHARED_DATA_ABSENT = "(shared data is not part of a fresh clone)"


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or a skip saying why (kept as a skip under CI=true)."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent {SHARED_DATA_ABSENT}")
    return path


def _fail_skip_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI=true, turn a skip into a failure unless it is absent shared data."""
    if not (CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if SHARED_DATA_ABSENT in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: a missing real part fails the run instead of skipping: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_skip_under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _fail_skip_under_ci(report)
    return report


# TensorFlow, Keras, pandas and the rest leave about half a million objects that live as long as
# the process, and every full garbage collection walks all of them (0.35 s each with the imports
# alone, more as the session's heap grows). keras-tuner calls gc.collect() twice per trial and
# Keras' clear_session() once, besides Python's own full collections. Frozen (gc.freeze), the
# objects alive after collection, and those alive when each test module starts (after a
# collection: the session's fixtures, module-level state), are skipped by every later
# collection. Nothing a test checks depends on it. Reference counting still frees a frozen
# object; only one that later dies inside a reference cycle stays in memory until the end.
# Measured: tests/test_tuning.py alone 47.0 s -> 32.1 s.
@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _freeze_what_outlives_the_previous_module():
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(scope="session")
def orcl() -> pd.DataFrame:
    """The embedded ORCL 1995-2014 daily bars, read through the project's own loader."""
    from kerastrader.config import embedded_data_path
    from kerastrader.feeds.loader import load_csv

    return load_csv(embedded_data_path())


# The tiny experiment as command-line flags (tiny_config's twin for CLI tests).
TINY_ARGS = [
    "--set", "model.window=10",
    "--set", "model.units=[4]",
    "--set", "model.dropout=0.0",
    "--set", "training.epochs=2",
    "--set", "training.patience=1",
    "--set", "training.batch_size=128",
    "--set", 'split.train_end="2003-12-31"',
    "--set", 'split.validation_end="2004-12-31"',
    "--set", "report.figures=false",
]  # fmt: skip


def tiny_config(**sections) -> dict:
    """The default config shrunk for tests: a slice of ORCL, a 4-unit LSTM, two epochs."""
    from kerastrader.config import default_config, validate

    cfg = default_config()
    cfg["model"].update(window=10, units=[4], dropout=0.0)
    cfg["training"].update(epochs=2, batch_size=128, patience=1)
    cfg["split"].update(train_end="2003-12-31", validation_end="2004-12-31")
    cfg["report"].update(figures=False)
    for section, values in sections.items():
        cfg[section].update(values)
    validate(cfg)
    return cfg


@pytest.fixture(scope="session")
def orcl_slice(orcl: pd.DataFrame) -> pd.DataFrame:
    """ORCL 2000-2006: enough for train (2000-2003), validation (2004) and test (2005-2006)."""
    sliced = orcl.loc["2000-01-01":"2006-12-31"].copy()
    sliced.attrs.update(orcl.attrs)
    return sliced


@pytest.fixture(scope="session")
def trained(orcl_slice: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    """A tiny LSTM trained once per session, saved, and loaded back from disk."""
    from kerastrader.models.artifact import load_artifact, save_artifact
    from kerastrader.models.training import train

    result = train(orcl_slice, tiny_config(), {"sha256": orcl_slice.attrs.get("sha256")})
    path = save_artifact(result.artifact, tmp_path_factory.mktemp("artifact") / "model")
    result.loaded = load_artifact(path)
    return result


def random_walk_bars(n: int, seed: int = 0, start: str = "2000-01-03") -> pd.DataFrame:
    """Generated daily bars with valid OHLC invariants and positive volume."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
    volume = rng.integers(1_000_000, 5_000_000, n).astype(float)
    index = pd.bdate_range(start, periods=n, name="datetime")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


@pytest.fixture(scope="session")
def orcl_slice_csv(tmp_path_factory) -> Path:
    """ORCL 2000-2006 in the Yahoo layout, as a user's own file."""
    from kerastrader.config import embedded_data_path

    raw = pd.read_csv(embedded_data_path())
    path = tmp_path_factory.mktemp("data") / "orcl-2000-2006.csv"
    raw[(raw["Date"] >= "2000-01-01") & (raw["Date"] <= "2006-12-31")].to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def full_run(orcl_slice_csv, tmp_path_factory) -> Path:
    """One complete run with every report figure: a tiny LSTM on ORCL 2000-2006."""
    from kerastrader.backtest import run_experiment

    cfg = tiny_config(
        data={"path": str(orcl_slice_csv)},
        report={"figures": True},
        strategy={"enter": 0.5, "exit": 0.499},
    )
    out = tmp_path_factory.mktemp("run") / "full"
    run_experiment(cfg, out)
    return out


# Study runs shrunk for the tests: one epoch, 4 units, no figures, no selection or tuning.
STUDY_SHRINK = [
    "training.epochs=1",
    "model.units=[4]",
    "report.figures=false",
    'selection.method=""',
    'tuning.algorithm=""',
]


@pytest.fixture(scope="session")
def study_c(tmp_path_factory) -> tuple[Path, Path]:
    """Study C shrunk (its three tiny runs), run once for the session: (its folder, the page
    ``run_study`` returned). A test that changes its files works on a copy."""
    from kerastrader.studies.runner import run_study

    out = tmp_path_factory.mktemp("study_c")
    return out, run_study("c", out=out, overrides=STUDY_SHRINK)
