"""Forecasts: the book's periodic returns against a plain loop over the CSVs, causal windows,
bootstrap percentiles, rolling-origin errors recomputed from the files, and the CLI's files
and page (tiny models: a couple of epochs, 4 units)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kerastrader.studies.page import fmt_value, lookup
from tests.conftest import shared_file
from tests.test_studies import Cells

SLICE = Path(__file__).parent / "data" / "forecast"  # the four shared files, 2022-01 .. 2023-06
WEIGHTS = {"SPY": 0.40, "AGG": 0.45, "XLE": 0.05, "XLF": 0.10}
TINY = [
    "training.epochs=2",
    "model.units=[4]",
    "forecast.paths=40",
    "rolling.paths=20",
]


def book_config(tmp_path: Path, folder: Path) -> Path:
    """A kerastrader config holding the 40/45/5/10 book on the four files in ``folder``."""
    path = tmp_path / "book.toml"
    path.write_text(
        f'[data]\npath = "{folder}/*-daily.csv"\nsymbols = ["SPY", "AGG", "XLE", "XLF"]\n'
        '[portfolio]\nallocation = "strategic"\nrebalance = "monthly"\n'
        "weights = { SPY = 0.40, AGG = 0.45, XLE = 0.05, XLF = 0.10 }\n"
    )
    return path


def plain_monthly_book(folder: Path) -> tuple[pd.Series, pd.DataFrame]:
    """The book's monthly returns by hand: read the CSVs with the csv module, hold units of
    the dividend-reinvested price (Adj Close; opens scaled by Adj Close / Close), buy the
    weights at the open after the first day, and again at the open after the first day of
    each month; value at every close; a month's return = value at its last close over the
    previous month's last close. The first month (entry) and an unfinished last are dropped
    (here the data ends on 2023-06-30, a complete month). Assets: Adj Close month over month."""
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for sym in WEIGHTS:
        with open(folder / f"{sym.lower()}-daily.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                factor = float(r["Adj Close"]) / float(r["Close"])
                rows.setdefault(r["Date"], {})[sym] = (
                    float(r["Open"]) * factor,
                    float(r["Adj Close"]),
                )
    dates = sorted(d for d in rows if len(rows[d]) == len(WEIGHTS))
    units = dict.fromkeys(WEIGHTS, 0.0)
    cash, due = 1.0, False
    last_month = None
    month_end_value: dict[str, float] = {}
    month_end_close: dict[str, dict[str, float]] = {}
    for d in dates:
        if due:
            value_open = cash + sum(units[s] * rows[d][s][0] for s in WEIGHTS)
            for s, w in WEIGHTS.items():
                target = value_open * w / rows[d][s][0]
                cash -= (target - units[s]) * rows[d][s][0]
                units[s] = target
            due = False
        if d[:7] != last_month:  # the first bar of a month: decide, fill at the next open
            last_month, due = d[:7], True
        month_end_value[d[:7]] = cash + sum(units[s] * rows[d][s][1] for s in WEIGHTS)
        month_end_close[d[:7]] = {s: rows[d][s][1] for s in WEIGHTS}
    months = sorted(month_end_value)
    port = {
        m: month_end_value[m] / month_end_value[p] - 1.0
        for p, m in zip(months, months[1:], strict=False)
    }
    assets = pd.DataFrame(
        {
            m: {s: month_end_close[m][s] / month_end_close[p][s] - 1.0 for s in WEIGHTS}
            for p, m in zip(months, months[1:], strict=False)
        }
    ).T
    return pd.Series(port), assets


def _monthly_returns_match(tmp_path: Path, folder: Path) -> int:
    from kerastrader.forecast.periodic import book_returns
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(None, [f'book.config="{book_config(tmp_path, folder)}"'])
    got = book_returns(cfg).frame
    port, assets = plain_monthly_book(folder)
    last = pd.Timestamp(got.index[-1])
    if pd.Timestamp(port.index[-1]).to_period("M") != last.to_period("M"):
        port, assets = port.iloc[:-1], assets.iloc[:-1]  # the data stops inside that month
    assert [d.strftime("%Y-%m") for d in got.index] == list(port.index)
    np.testing.assert_allclose(got["portfolio"].to_numpy(), port.to_numpy(), rtol=0, atol=1e-12)
    for sym in WEIGHTS:
        np.testing.assert_allclose(got[sym].to_numpy(), assets[sym].to_numpy(), atol=1e-12)
    return len(got)


def test_monthly_book_returns_equal_a_plain_loop_over_the_csvs(tmp_path):
    n = _monthly_returns_match(tmp_path, SLICE)
    assert n == 17  # 2022-02 .. 2023-06: January is the entry month


def test_monthly_book_returns_on_the_full_shared_files(tmp_path):
    folder = shared_file("agg-daily.csv").parent
    assert _monthly_returns_match(tmp_path, folder) == 255  # 2003-10 .. 2024-12


def test_yearly_returns_compound_the_months():
    """A year's return is its months' returns compounded (calendar years, last bar dated)."""
    from kerastrader.forecast.periodic import compound

    days = pd.bdate_range("2020-01-01", "2022-12-30")
    daily = pd.Series(np.random.default_rng(1).normal(0.0003, 0.01, len(days)), index=days)
    yearly = compound(daily, "yearly")
    by_hand = [np.prod(1 + daily[str(y)].to_numpy()) - 1 for y in (2021, 2022)]  # 2020: entry
    np.testing.assert_allclose(yearly.to_numpy(), by_hand, rtol=1e-12)
    assert [d.date().isoformat() for d in yearly.index] == ["2021-12-31", "2022-12-30"]


def test_forecast_at_an_origin_ignores_every_later_return():
    from kerastrader.forecast.origin import forecast_from
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(None, ["book.config=\"x\"", "model.window=3", *TINY,
                                      "training.validation_fraction=0.25"])  # fmt: skip
    rng = np.random.default_rng(5)
    a = rng.normal(0.005, 0.03, 60)
    b = a.copy()
    t = 40
    b[t + 1 :] = rng.normal(-0.05, 0.2, len(b) - t - 1)  # a different future
    fa = forecast_from(a, a, None, t, cfg, horizon=6, n_paths=30, seed=3)
    fb = forecast_from(b, b, None, t, cfg, horizon=6, n_paths=30, seed=3)
    np.testing.assert_array_equal(fa.point, fb.point)
    np.testing.assert_array_equal(fa.model, fb.model)
    np.testing.assert_array_equal(fa.iid, fb.iid)
    # the check has teeth: an origin after the change sees it
    later = forecast_from(b, b, None, t + 5, cfg, horizon=6, n_paths=30, seed=3)
    assert not np.array_equal(fa.iid, later.iid)


def test_bootstrap_percentiles_are_ordered_and_the_naive_median_is_the_geometric_mean():
    from kerastrader.forecast.paths import bands, cumulative, iid_paths

    rng = np.random.default_rng(11)
    history = rng.normal(0.006, 0.03, 240)
    horizon, n = 60, 20_000
    values = cumulative(iid_paths(history, horizon, n, np.random.default_rng(2))[..., 0])
    pct = bands(values, [5, 25, 50, 75, 95])
    assert (np.diff(pct, axis=0) >= 0).all()
    # by hand: the geometric mean of the history, compounded over the horizon
    product = 1.0
    for r in history:
        product *= 1.0 + r
    geometric = product ** (1.0 / len(history))
    logs = [math.log(1.0 + r) for r in history]
    sd = float(np.std(logs))
    # MC error of a sample median of a near-normal sum, plus its skew offset (sd * skew / 6)
    skew = float(np.mean(((np.array(logs) - np.mean(logs)) / sd) ** 3))
    tolerance = 4 * 1.2533 * math.sqrt(horizon) * sd / math.sqrt(n) + abs(sd * skew / 6)
    assert abs(math.log(pct[2, -1]) - horizon * math.log(geometric)) < tolerance


def test_model_bands_are_ordered_and_start_at_one(tmp_path):
    from kerastrader.forecast.origin import forecast_from
    from kerastrader.forecast.paths import bands
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(None, ['book.config="x"', "model.window=4", *TINY])
    series = np.random.default_rng(8).normal(0.004, 0.02, 50)
    out = forecast_from(series, series, None, len(series) - 1, cfg, 12, 200, seed=1)
    pct = bands(out.model, [5, 25, 50, 75, 95])
    assert (np.diff(pct, axis=0) >= 0).all()
    assert (out.model[:, 0] == 1.0).all() and out.point[0] == 1.0


def test_residuals_are_targets_minus_the_model_on_windows_scaled_once():
    from kerastrader.forecast.model import fit
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(None, ["book.config=\"x\"", "model.window=3", *TINY,
                                      "training.validation_fraction=0.25"])  # fmt: skip
    series = np.random.default_rng(4).normal(0.01, 0.04, 40)
    fc = fit(series[:, None], cfg)
    # by hand: 37 windows ending at rows 2..38, the last 9 validate; scaler on rows 0..30
    ends = list(range(2, 39))
    n_train = len(ends) - round(len(ends) * 0.25)
    rows = series[: ends[n_train - 1] + 2]
    z = (series - rows.mean()) / rows.std()
    x = np.array([[[z[t - 2]], [z[t - 1]], [z[t]]] for t in ends[n_train:]], dtype=np.float32)
    fc.predict(np.zeros((1, 3, 1)))  # loads this forecaster's weights into its model
    z_pred = np.asarray(fc.slots[0].model(x, training=False))[:, 0]
    pred = z_pred * rows.std() + rows.mean()  # the network answers in z-scores of the target
    expected = series[[t + 1 for t in ends[n_train:]]] - pred
    np.testing.assert_allclose(fc.residuals[:, 0], expected, rtol=1e-5, atol=1e-7)


def assumptions_config(tmp_path: Path) -> Path:
    """A forecast config on the study's simulated book: runs without the shared data."""
    path = tmp_path / "forecast.toml"
    path.write_text(
        '[book]\nsource = "assumptions"\n[assumptions]\nperiods = 30\nseed = 78\n'
        '[periods]\nfrequency = "yearly"\n[model]\nwindow = 5\nunits = [4]\n'
        "[training]\nepochs = 2\nvalidation_fraction = 0.2\n"
        "[forecast]\nhorizon = 12\npaths = 50\n"
        "[rolling]\nhorizon = 5\nfirst = 20\nstep = 5\npaths = 20\n"
    )
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    from kerastrader.cli import main

    tmp = tmp_path_factory.mktemp("forecast")
    out = tmp / "run"
    assert main(["forecast", str(assumptions_config(tmp)), "--out", str(out), "-q"]) == 0
    return out


def test_cli_writes_forecast_csv_paths_parquet_and_the_page(cli_run):
    table = pd.read_csv(cli_run / "forecast.csv")
    assert list(table["h"]) == list(range(13))
    assert table.loc[0, ["point", "model_p50", "iid_p50", "assumption"]].tolist() == [1, 1, 1, 1]
    paths = pd.read_parquet(cli_run / "paths.parquet")
    assert sorted(paths["method"].unique()) == ["iid", "model"]
    assert len(paths) == 2 * 50 * 12
    last = paths[(paths["method"] == "iid") & (paths["h"] == 12)]["value"]
    assert np.percentile(last, 50) == pytest.approx(table.loc[12, "iid_p50"])
    page = (cli_run / "forecast.html").read_text()
    assert 'id="fan"' in page and "<script src=" not in page
    assert page.count("<script>window.PlotlyConfig") == 1


def test_forecast_page_numbers_are_read_from_forecast_json(cli_run):
    parser = Cells()
    parser.feed((cli_run / "forecast.html").read_text())
    doc = json.loads((cli_run / "forecast.json").read_text())
    checked = 0
    for attrs, text in parser.cells:
        assert attrs.get("data-file") == "forecast.json", text
        assert text == fmt_value(lookup(doc, attrs["data-key"]), attrs["data-kind"])
        checked += 1
    assert checked > 60
    # forecast.json's horizon rows are forecast.csv's rows
    table = pd.read_csv(cli_run / "forecast.csv")
    end = doc["forecast"]["end"]
    assert end["model"]["p95"] == pytest.approx(table.loc[12, "model_p95"], rel=1e-9)
    assert end["point"] == pytest.approx(table.loc[12, "point"], rel=1e-9)


def test_rolling_origin_errors_recomputed_from_the_files(cli_run):
    returns = pd.read_csv(cli_run / "returns.csv", parse_dates=["date"]).set_index("date")
    rolling = pd.read_csv(cli_run / "rolling.csv", parse_dates=["origin", "target"])
    port = returns["portfolio"]
    h = 3
    rows = rolling[rolling["h"] == h]
    assert len(rows) == 2  # origins after 20 and 25 years (the data has 30)
    errors = []
    for _, row in rows.iterrows():
        at = list(port.index).index(row["origin"])
        value = 1.0
        for r in port.iloc[at + 1 : at + 1 + h]:
            value *= 1.0 + r
        assert row["actual"] == pytest.approx(value - 1.0, abs=1e-9)
        assert row["assumption"] == pytest.approx(1.038**h - 1.0, abs=1e-12)
        errors.append(abs(row["point"] - (value - 1.0)))
    mae = sum(errors) / len(errors)
    doc = json.loads((cli_run / "forecast.json").read_text())
    assert doc["rolling"]["horizons"][f"h{h}"]["point_mae"] == pytest.approx(mae, abs=1e-9)
    table = pd.read_csv(cli_run / "errors.csv").set_index("h")
    assert table.loc[h, "point_mae"] == pytest.approx(mae, abs=1e-9)


def test_simulated_book_is_the_weighted_sum_of_uniform_draws():
    from kerastrader.forecast.periodic import book_returns
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(None, ['book.source="assumptions"', 'periods.frequency="yearly"'])
    frame = book_returns(cfg).frame
    np.random.seed(78)  # the article's stream: one asset after the other
    draws = [np.random.uniform(lo, hi, 30) for lo, hi in
             [(0.03, 0.07), (0.01, 0.05), (0.00, 0.04), (0.02, 0.06)]]  # fmt: skip
    expected = 0.40 * draws[0] + 0.45 * draws[1] + 0.05 * draws[2] + 0.10 * draws[3]
    np.testing.assert_allclose(frame["portfolio"].to_numpy(), expected, rtol=1e-12)
    assert len(frame) == 30 and frame.index[-1] == pd.Timestamp("2024-12-31")


def test_cli_unknown_key_is_one_line(tmp_path, capsys):
    from kerastrader.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('[book]\nsource = "assumptions"\n[periods]\nfrequency = "yearly"\n'
                    "[model]\nwindows = 5\n")  # fmt: skip
    assert main(["forecast", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key model.windows" in err[0] and str(path) in err[0]
