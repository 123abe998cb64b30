"""The bar store keeps its promises on SQLite and on a real PostgreSQL server.

PostgreSQL tests run when KERASTRADER_TEST_POSTGRES holds a URL (``.ci/run`` starts a server
on loopback and sets it); otherwise they skip and say so, and under CI=true they fail.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from kerastrader.cli import main
from kerastrader.errors import DataError
from kerastrader.feeds.store import BarStore
from tests.conftest import random_walk_bars, tiny_config

PG_ENV = "KERASTRADER_TEST_POSTGRES"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bars.sqlite'}"
    pg = os.environ.get(PG_ENV)
    if not pg:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server (.ci/postgres.sh starts one)")
    engine = sa.create_engine(pg)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bars"))
    engine.dispose()
    return pg


def test_ingested_bars_read_back_unchanged(url):
    bars = random_walk_bars(300, seed=1)
    store = BarStore(url)
    assert store.ingest(bars, "AAA").inserted == 300
    back = store.read("AAA")
    np.testing.assert_allclose(back.to_numpy(), bars.to_numpy(), rtol=1e-15)
    assert (back.index == bars.index).all()


def test_ingesting_the_same_bars_twice_changes_nothing(url):
    bars = random_walk_bars(200, seed=2)
    store = BarStore(url)
    store.ingest(bars, "AAA")
    again = store.ingest(bars, "AAA")
    assert (again.inserted, again.unchanged, again.replaced) == (0, 200, 0)
    assert store.count() == 200


def test_new_bars_are_appended(url):
    bars = random_walk_bars(200, seed=3)
    store = BarStore(url)
    store.ingest(bars.iloc[:120], "AAA")
    result = store.ingest(bars, "AAA")
    assert (result.inserted, result.unchanged) == (80, 120)
    assert len(store.read("AAA")) == 200


def test_a_bar_with_different_values_is_refused_and_nothing_is_written(url):
    bars = random_walk_bars(100, seed=4)
    store = BarStore(url)
    store.ingest(bars.iloc[:50], "AAA")
    changed = bars.copy()
    changed.iloc[10, changed.columns.get_loc("close")] *= 1.001
    changed.iloc[10, changed.columns.get_loc("high")] *= 1.01
    with pytest.raises(DataError, match=r"already stored with different values.*--replace"):
        store.ingest(changed, "AAA")
    assert store.count() == 50  # not even the 50 new bars
    np.testing.assert_allclose(store.read("AAA")["close"], bars["close"].iloc[:50])


def test_replace_overwrites_the_bars_that_differ(url):
    bars = random_walk_bars(100, seed=5)
    store = BarStore(url)
    store.ingest(bars, "AAA")
    changed = bars.copy()
    changed.iloc[10, changed.columns.get_loc("volume")] += 1
    result = store.ingest(changed, "AAA", replace=True)
    assert (result.inserted, result.unchanged, result.replaced) == (0, 99, 1)
    assert store.read("AAA")["volume"].iloc[10] == bars["volume"].iloc[10] + 1


def test_an_ingest_that_fails_on_row_90000_leaves_the_store_as_it_was(url):
    store = BarStore(url)
    first = random_walk_bars(1000, seed=6, start="1990-01-01")
    store.ingest(first, "AAA")
    big = random_walk_bars(100_000, seed=7, start="1995-01-02")
    big.iloc[90_000, big.columns.get_loc("low")] = big["high"].iloc[90_000] * 2
    # Past our own validation, the database's checks stop row 90,000 mid-transaction.
    with pytest.raises(DataError, match="refused"):
        store.ingest(big, "AAA", validate=False)
    assert store.count() == 1000
    np.testing.assert_allclose(store.read("AAA")["close"], first["close"])


def test_read_by_date_range(url):
    bars = random_walk_bars(100, seed=8)
    store = BarStore(url)
    store.ingest(bars, "AAA")
    part = store.read("AAA", start=bars.index[10], end=bars.index[19])
    assert list(part.index) == list(bars.index[10:20])


def test_symbols_and_timeframes_are_separate(url):
    store = BarStore(url)
    store.ingest(random_walk_bars(10, seed=1), "AAA")
    store.ingest(random_walk_bars(20, seed=2), "BBB")
    store.ingest(random_walk_bars(30, seed=3), "AAA", "1h")
    assert store.symbols() == [("AAA", "1d", 10), ("AAA", "1h", 30), ("BBB", "1d", 20)]


def test_reading_an_unknown_symbol_is_one_clear_error(url):
    with pytest.raises(DataError, match="no bars stored"):
        BarStore(url).read("NOPE")


def test_ingest_command_then_a_backtest_from_the_store(
    url, trained, orcl_slice, orcl_slice_csv, tmp_path, capsys
):
    from kerastrader.backtest import run_experiment

    assert main(["ingest", str(orcl_slice_csv), "--store", url, "--symbol", "ORCL", "-q"]) == 0
    assert f"ORCL 1d: {len(orcl_slice)} new, 0 unchanged, 0 replaced" in capsys.readouterr().out
    assert main(["ingest", str(orcl_slice_csv), "--store", url, "--symbol", "ORCL", "-q"]) == 0
    assert f"0 new, {len(orcl_slice)} unchanged" in capsys.readouterr().out
    out = tmp_path / "run"
    cfg = tiny_config(data={"store": url, "symbol": "ORCL"})
    run_experiment(cfg, out, model_dir=trained.loaded.path)
    returns = pd.read_csv(out / "returns.csv")
    assert returns["date"].iloc[0] == trained.loaded.metadata["periods"]["test"][0]


def test_a_bad_store_url_is_one_line(capsys, orcl_slice_csv):
    assert main(["ingest", str(orcl_slice_csv), "--store", "nosuchdb://x"]) == 2
    assert "kerastrader: error: store 'nosuchdb://x'" in capsys.readouterr().err


def test_bars_from_your_own_sql_table_and_query(url, orcl_slice, trained, tmp_path):
    from kerastrader.backtest import run_experiment
    from kerastrader.feeds.frames import load_sql

    engine = sa.create_engine(url)
    frame = orcl_slice.reset_index().rename(columns={"datetime": "date"})
    frame.to_sql("prices", engine, if_exists="replace", index=False)
    engine.dispose()
    bars = load_sql(url, "prices")[""]
    np.testing.assert_allclose(bars["close"].to_numpy(), orcl_slice["close"].to_numpy())
    part = load_sql(url, "SELECT * FROM prices WHERE date >= '2005-01-01'")[""]
    assert part.index[0].year == 2005
    out = tmp_path / "run"
    cfg = tiny_config(data={"store": url, "query": "prices", "symbol": "ORCL"})
    run_experiment(cfg, out, model_dir=trained.loaded.path)
    assert (out / "report.html").is_file()


def test_a_failing_query_is_one_clear_error(url):
    with pytest.raises(DataError, match="query: the query failed"):
        from kerastrader.feeds.frames import load_sql

        load_sql(url, "SELECT * FROM no_such_table")


def test_a_store_fed_run_gives_the_csv_runs_total_return_numbers(url, trained, tmp_path):
    """The store keeps Adj Close, so dividends survive the trip through the database."""
    import json
    from pathlib import Path

    from kerastrader.backtest import run_experiment

    agg = Path(__file__).parent / "data" / "agg-2023-2024.csv"
    assert main(["ingest", str(agg), "--store", url, "--symbol", "AGG", "-q"]) == 0
    runs = {}
    for source, data in (("csv", {"path": str(agg), "symbol": "AGG"}),
                         ("store", {"store": url, "symbol": "AGG"})):  # fmt: skip
        out = tmp_path / source
        always_long = {"enter": 0.0, "exit": 0.0}  # hold through the ex-dates
        run_experiment(tiny_config(data=data, strategy=always_long), out,
                       model_dir=trained.loaded.path)  # fmt: skip
        runs[source] = out
    a, b = (json.loads((runs[k] / "metrics.json").read_text())["run"] for k in ("csv", "store"))
    assert a["dividends"] > 0
    assert b["dividends"] == pytest.approx(a["dividends"], abs=1e-9)
    assert b["final_value"] == pytest.approx(a["final_value"], abs=1e-9)
    pd.testing.assert_frame_equal(
        pd.read_csv(runs["csv"] / "returns.csv"), pd.read_csv(runs["store"] / "returns.csv")
    )
