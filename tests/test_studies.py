"""Studies: the originals' arithmetic, the reproduced mistakes, and study pages whose every
number is read from the runs' files (the runs shrunk: 1 epoch, 4 units)."""

from __future__ import annotations

import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kerastrader.models.features import FeatureSet
from kerastrader.models.heads import Head
from kerastrader.studies.accounting import Accounting, score
from kerastrader.studies.page import fmt_value, lookup, write_page
from tests.conftest import STUDY_SHRINK, random_walk_bars

SHRINK = STUDY_SHRINK
#: Study D's forecasts shrunk (1 epoch, 4 units, few paths, one rolling origin).
SHRINK_D = ["training.epochs=1", "model.units=[4]", "forecast.paths=40", "rolling.paths=20",
            "rolling.step=100", "rolling.horizon=5"]  # fmt: skip


class Cells(HTMLParser):
    """Every <td> with its attributes and text (the forecast page's test reads cells too)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[dict[str, str], str]] = []
        self._open: dict[str, str] | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data):
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._open is not None:
            self.cells.append((self._open, self._text.strip()))
            self._open = None


def page_cells(root: Path) -> list[tuple[dict[str, str], str]]:
    parser = Cells()
    parser.feed((root / "study.html").read_text())
    return parser.cells


def assert_every_number_is_read_from_files(root: Path) -> int:
    """Each number on the page sits in a cell naming its file and key, and equals that value."""
    checked = 0
    for attrs, text in page_cells(root):
        if "data-file" not in attrs:
            assert not re.search(r"\d", text) or attrs.get("class") == "text" or "report" in text, (
                f"a number without a source: {text!r}"
            )
            continue
        file, key = attrs["data-file"], attrs["data-key"]
        if file == "study.toml":  # the reported numbers, keyed by the page's dotted row keys
            numbers = tomllib.loads((root / file).read_text())["original"].get("numbers", {})
            value = numbers.get(key.removeprefix("original.numbers."))
        else:
            value = lookup(json.loads((root / file).read_text()), key)
        assert text == fmt_value(value, attrs["data-kind"]), (file, key, text)
        checked += 1
    return checked


def test_original_accounting_is_the_plain_sum_of_signed_next_returns():
    idx = pd.date_range("2020-01-01", periods=5, freq="D")
    close = pd.Series([100.0, 101.0, 99.0, 99.0, 102.0], index=idx)
    pred = pd.Series([0.7, 0.2, np.nan, 0.9, 0.6], index=idx)  # the last bar has no next close
    out = score(pred, close, Accounting(side="long_short", threshold=0.5))
    expected = (101 / 100 - 1) - (99 / 101 - 1) + (102 / 99 - 1)
    assert out["bars"] == 3
    assert out["sum_of_returns"] == pytest.approx(expected)
    flat = score(pred, close, Accounting(side="long_flat", threshold=0.5, log_returns=True))
    assert flat["sum_of_returns"] == pytest.approx(np.log(101 / 100) + np.log(102 / 99))


def test_inverted_label_is_pct_change_minus_one_and_says_so():
    close = np.array([10.0, 11.0, 10.5, 10.5, 12.0])
    inverted = Head("direction", invert=True).labels(close)
    idiom = (pd.Series(close).pct_change(-1) > 0).astype(float).to_numpy()
    np.testing.assert_array_equal(inverted[:-1], idiom[:-1])
    assert np.isnan(inverted[-1])
    assert "INVERTED" in Head("direction", invert=True).definition


def test_centred_dpo_reads_the_future_and_the_causal_one_does_not():
    bars = random_walk_bars(120, seed=3)
    changed = bars.copy()
    changed.iloc[80:, changed.columns.get_loc("close")] *= 1.5
    causal = FeatureSet(["dpo_20", "pctret_1", "slope_1", "sma_20", "ema_20"], memory=4)
    np.testing.assert_array_equal(causal.compute(bars)[:80], causal.compute(changed)[:80])
    centred = FeatureSet(["dpo_centred_20"])
    before, after = centred.compute(bars)[:80, 0], centred.compute(changed)[:80, 0]
    moved = np.flatnonzero(~np.isclose(before, after, equal_nan=True))
    assert moved.min() == 80 - 11  # 11 bars ahead, as pandas-ta's DPO(20)


def test_study_c_page_numbers_come_from_its_run_files(study_c, tmp_path):
    import shutil

    folder, page = study_c  # the session's shrunk study C (tests/conftest.py)
    assert page == folder / "study.html"
    root = shutil.copytree(folder, tmp_path / "c")  # its files are changed below: a copy
    for run in ("faithful", "honest", "ratios"):
        assert (root / run / "report.html").is_file()
        assert f'href="{run}/report.html"' in (root / "study.html").read_text()
    assert assert_every_number_is_read_from_files(root) > 40
    faithful = json.loads((root / "faithful" / "metrics.json").read_text())
    assert faithful["model"]["n_test"] == 9  # the article's last 10 bars, 9 with a next close
    honest = json.loads((root / "honest" / "study.json").read_text())
    assert honest["original_accounting"]["blocks"]["length"] == 10

    # The page is rebuilt from the files: change one, and the page follows.
    path = root / "honest" / "metrics.json"
    doc = json.loads(path.read_text())
    doc["strategy"]["sharpe_ratio"] = 9.876
    path.write_text(json.dumps(doc))
    write_page(root)
    cells = {(a.get("data-file"), a.get("data-key")): t for a, t in page_cells(root)}
    assert cells[("honest/metrics.json", "strategy.sharpe_ratio")] == "9.876"


def test_study_a_faithful_and_each_mistake_alone_come_from_their_run_files(tmp_path):
    from kerastrader.studies.runner import run_study
    from tests.conftest import shared_file

    shared_file("nifty50-2007-2024.csv")
    page = run_study("a", out=tmp_path, overrides=SHRINK,
                     only=["faithful", "honest", "label", "threshold_03"])  # fmt: skip
    assert assert_every_number_is_read_from_files(tmp_path) > 40
    text = page.read_text()
    assert "Each mistake alone" in text and "Thresholds and costs" in text
    faithful = json.loads((tmp_path / "faithful" / "study.json").read_text())
    flags = faithful["reproduces"]
    assert flags["label_inverted"] and flags["look_ahead_features"] == ["dpo_centred_20"]
    assert flags["missing"] == "interpolate" and flags["early_stopping_on"] == "loss"
    assert "log returns" in faithful["original_accounting"]["accounting"]
    honest = json.loads((tmp_path / "honest" / "study.json").read_text())
    assert not honest["reproduces"]["label_inverted"]
    assert honest["reproduces"]["look_ahead_features"] == []
    metrics = json.loads((tmp_path / "faithful" / "metrics.json").read_text())
    assert metrics["run"]["look_ahead"] is None  # the file has no empty cells to interpolate
    data = json.loads((tmp_path / "study.json").read_text())["data"]
    assert data["start"] == "2014-01-13" and data["end"] == "2024-01-12"
    # the threshold run reused the honest model: same predictions, another rule
    same = [(tmp_path / r / "predictions.csv").read_text() for r in ("honest", "threshold_03")]
    assert same[0] == same[1]


def test_study_b_reads_its_bars_from_the_store_and_walks_forward(tmp_path, monkeypatch):
    from kerastrader.studies.runner import STORE_ENV, run_study
    from tests.conftest import shared_file

    shared_file("xlf-daily.csv")
    monkeypatch.delenv(STORE_ENV, raising=False)  # SQLite in the study's folder
    run_study("b", out=tmp_path, overrides=[*SHRINK, "walkforward.folds=2"])
    assert (tmp_path / "bars.sqlite").is_file()
    assert assert_every_number_is_read_from_files(tmp_path) > 20
    for run in ("faithful", "honest"):
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["data"]["path"].startswith("sqlite")
    honest = json.loads((tmp_path / "honest" / "metrics.json").read_text())
    assert len(honest["model"]["folds"]) == 2


def test_study_d_forecast_page_numbers_come_from_its_run_files(tmp_path):
    from kerastrader.forecast.study_page import write_page as write_forecast_study_page
    from kerastrader.studies.runner import run_study
    from tests.conftest import shared_file

    shared_file("agg-daily.csv")  # the honest run's book: SPY/AGG/XLE/XLF
    only = ["faithful", "honest", "stated_vol"]
    page = run_study("d", out=tmp_path, overrides=SHRINK_D, only=only)
    assert page == tmp_path / "study.html"
    text = page.read_text()
    for run in ("faithful", "honest", "stated_vol"):
        assert (tmp_path / run / "forecast.csv").is_file()
        assert (tmp_path / run / "paths.parquet").is_file()
        assert f'href="{run}/forecast.html"' in text
    assert assert_every_number_is_read_from_files(tmp_path) > 80
    faithful = json.loads((tmp_path / "faithful" / "forecast.json").read_text())
    assert faithful["book"]["source"] == "assumptions" and faithful["book"]["seed"] == 78
    assert faithful["model"]["validation_windows"] == 0  # the article never validated
    honest = json.loads((tmp_path / "honest" / "forecast.json").read_text())
    assert honest["book"]["weights"] == {"SPY": 0.40, "AGG": 0.45, "XLE": 0.05, "XLF": 0.10}
    assert honest["book"]["frequency"] == "monthly" and honest["book"]["returns"] == "total"

    # The page is rebuilt from the files: change one, and the page follows.
    path = tmp_path / "honest" / "forecast.json"
    honest["forecast"]["point_annual_return"] = 0.4321
    path.write_text(json.dumps(honest))
    write_forecast_study_page(tmp_path)
    cells = {(a.get("data-file"), a.get("data-key")): t for a, t in page_cells(tmp_path)}
    assert cells[("honest/forecast.json", "forecast.point_annual_return")] == "43.21%"


def tiny_study_d(factory: pytest.TempPathFactory) -> Path:
    """Study D's faithful run shrunk into a new folder, returned: the simulated book, so no
    shared data is needed (the browser test draws the same page)."""
    from kerastrader.studies.runner import run_study

    out = factory.mktemp("study_d")
    run_study("d", out=out, overrides=SHRINK_D, only=["faithful"])
    return out


@pytest.fixture(scope="module")
def forecast_study(tmp_path_factory) -> Path:
    return tiny_study_d(tmp_path_factory)


def test_write_page_on_a_forecast_study_builds_the_forecast_study_page(forecast_study, tmp_path):
    """kerastrader.studies.page.write_page picks the page of the study's kind (study D)."""
    import shutil

    root = shutil.copytree(forecast_study, tmp_path / "d")
    (root / "study.html").unlink()
    path = root / "faithful" / "forecast.json"
    doc = json.loads(path.read_text())
    doc["forecast"]["point_annual_return"] = 0.4321
    path.write_text(json.dumps(doc))
    assert write_page(root) == root / "study.html"
    assert 'href="faithful/forecast.html"' in (root / "study.html").read_text()
    cells = {(a.get("data-file"), a.get("data-key")): t for a, t in page_cells(root)}
    assert cells[("faithful/forecast.json", "forecast.point_annual_return")] == "43.21%"


def test_study_page_command_rebuilds_a_forecast_study(forecast_study, tmp_path, capsys):
    import shutil

    from kerastrader.cli import main

    root = shutil.copytree(forecast_study, tmp_path / "d")
    (root / "study.html").unlink()
    assert main(["study", "--page", str(root)]) == 0
    assert f"Study page: {root / 'study.html'}" in capsys.readouterr().out
    assert 'href="faithful/forecast.html"' in (root / "study.html").read_text()


def test_study_page_of_a_folder_that_is_not_a_study_is_one_line(tmp_path, capsys):
    from kerastrader.cli import main

    assert main(["study", "--page", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no study.json" in err[0] and str(tmp_path) in err[0]
