"""The text feed: reading items, the one alignment rule, and the lexicon features per bar.

Expected bar rows and closes are worked out by hand (UTC offsets of New York and Tokyo typed
in), and the VADER features are recomputed with a plain loop over the items that calls
vaderSentiment's analyser itself.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from kerastrader.errors import DataError
from kerastrader.feeds.text import TextSource, assign_bars, bar_closes, read_items
from kerastrader.models.features import FeatureSet
from kerastrader.models.text_features import TextFeatureSet

# Daily bars (exchange dates, naive midnight): Thu 7, Fri 8, Mon 11, Tue 12 March 2024.
# US daylight saving starts Sunday 10 March: the close (16:00 New York) is 21:00 UTC on the
# 7th and 8th, 20:00 UTC from the 11th.
DATES = pd.DatetimeIndex(["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"])
CLOSES_UTC = ["2024-03-07 21:00", "2024-03-08 21:00", "2024-03-11 20:00", "2024-03-12 20:00"]


def _ns(stamps) -> np.ndarray:
    return pd.DatetimeIndex(stamps).as_unit("ns").asi8


def _rows(tmp_path, lines: list[str], timezone: str) -> np.ndarray:
    f = tmp_path / "items.csv"
    f.write_text("timestamp,text\n" + "\n".join(f"{ts},item {i}" for i, ts in enumerate(lines)))
    items = read_items(f, timezone)
    closes = bar_closes(_ns(DATES), True, "America/New_York", "16:00")
    return assign_bars(items["time"].to_numpy("datetime64[ns]").astype(np.int64), closes)


def test_daily_bars_close_at_the_session_end_in_the_exchange_zone_across_dst():
    closes = bar_closes(_ns(DATES), True, "America/New_York", "16:00")
    assert list(closes) == list(_ns(CLOSES_UTC))


def test_new_york_items_at_the_close_edges(tmp_path):
    rows = _rows(
        tmp_path,
        ["2024-03-07 15:59", "2024-03-07 16:00", "2024-03-07 16:05", "2024-03-08 16:05"],
        "America/New_York",
    )
    # 15:59 is today's; 16:00 is the close itself, not before it: the next session's; a
    # Friday 16:05 headline is Monday's.
    assert rows.tolist() == [0, 1, 1, 2]


def test_tokyo_items_on_a_new_york_exchange(tmp_path):
    # 05:59 Tokyo on the 8th = 20:59 UTC on the 7th = 15:59 New York: the 7th's bar;
    # 06:30 Tokyo = 16:30 New York: the 8th's.
    rows = _rows(tmp_path, ["2024-03-08 05:59", "2024-03-08 06:30"], "Asia/Tokyo")
    assert rows.tolist() == [0, 1]


def test_an_offset_in_the_stamp_wins_over_the_declared_zone(tmp_path):
    rows = _rows(tmp_path, ["2024-03-08T06:30:00+09:00", "2024-03-07T15:59:00-05:00"], "UTC")
    assert sorted(rows.tolist()) == [0, 1]


def test_utc_items_across_the_dst_change(tmp_path):
    # 20:30 UTC is before Friday's close (21:00 UTC, EST) but after Monday's (20:00 UTC, EDT).
    rows = _rows(tmp_path, ["2024-03-08 20:30", "2024-03-11 20:30"], "UTC")
    assert rows.tolist() == [1, 3]


def test_an_item_after_the_last_close_waits_for_the_next_bar(tmp_path):
    rows = _rows(tmp_path, ["2024-03-12 16:01"], "America/New_York")
    assert rows.tolist() == [len(DATES)]


def test_intraday_bars_close_at_their_stamp():
    stamps = _ns(["2024-03-07 14:35", "2024-03-07 14:40"])
    rows = assign_bars(_ns(["2024-03-07 14:34:59", "2024-03-07 14:35", "2024-03-07 14:36"]),
                       bar_closes(stamps, False))  # fmt: skip
    assert rows.tolist() == [0, 1, 1]


def test_a_stamp_without_offset_needs_a_declared_zone(tmp_path):
    f = tmp_path / "news.csv"
    f.write_text("timestamp,text\n2024-03-07T10:00:00Z,fine\n2024-03-07 10:00,no zone\n")
    with pytest.raises(DataError, match=r"news\.csv, row 3: .*no UTC offset.*text\.timezone"):
        read_items(f, "")


def test_bad_rows_name_the_file_and_line(tmp_path):
    f = tmp_path / "news.jsonl"
    f.write_text(
        '{"timestamp": "2024-03-07 10:00", "text": "ok"}\n{"timestamp": "x", "text": "a"}\n'
    )
    with pytest.raises(DataError, match=r"news\.jsonl, row 2: timestamp 'x' is not a date"):
        read_items(f, "UTC")
    g = tmp_path / "other.csv"
    g.write_text("when,text\n2024-03-07,a\n")
    with pytest.raises(DataError, match=r"other\.csv: missing column 'timestamp'"):
        read_items(g, "UTC")


def test_folder_of_parquet_and_json_lines_with_symbols(tmp_path):
    stamp = pd.to_datetime(["2024-03-07 15:00"]).tz_localize("UTC")
    frame = pd.DataFrame({"published": stamp, "ticker": ["AAA"], "headline": ["parquet item"]})
    frame.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text(
        '{"published": "2024-03-07T14:00:00Z", "ticker": "BBB", "headline": "json item"}\n'
        '{"published": "2024-03-07T13:00:00Z", "headline": "market item"}\n'
    )
    cols = {"timestamp": "published", "symbol": "ticker", "text": "headline"}
    items = read_items(tmp_path, "", cols)
    assert items["text"].tolist() == ["market item", "json item", "parquet item"]  # by time
    source = TextSource(str(tmp_path), "", cols, symbol="AAA")
    assert list(source.texts) == ["market item", "parquet item"]  # its own and the market's


# -- lexicon features ----------------------------------------------------------------------
HEADLINES = [
    ("2024-03-04 10:00", "ACME shares rally as demand looks strong"),
    ("2024-03-04 17:30", "ACME slumps as guidance disappoints"),
    ("2024-03-05 09:00", "weak sales hurt ACME, analysts worried"),
    ("2024-03-05 12:00", "analysts upbeat on ACME after great launch"),
    ("2024-03-05 15:59", "ACME wins praise for excellent margins"),
    ("2024-03-07 16:00", "ACME faces lawsuit over bad product"),
    ("2024-03-08 11:00", "good news for ACME"),
    ("2024-03-11 19:00", "ACME beats expectations, impressive quarter"),
    ("2024-03-12 08:00", "investors fear ACME losses"),
]
BARS = pd.bdate_range("2024-03-01", "2024-03-15")


def _bars(index=BARS) -> pd.DataFrame:
    close = 100 + np.arange(len(index), dtype=float)
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": 1e6}, index=index)  # fmt: skip


NAMES = ("vader_mean_1", "vader_count_2", "vader_decay_2")


ENCODER = {"vocabulary": ["", "[UNK]", "acme", "terrible", "wonderful", "shares"],
           "tokens": 4, "items": 2, "embedding": 4, "heads": 1}  # fmt: skip


def _feature_set(tmp_path, headlines=HEADLINES, names=NAMES, encoder=None) -> TextFeatureSet:
    tmp_path.mkdir(parents=True, exist_ok=True)
    f = tmp_path / "news.csv"
    pd.DataFrame(headlines, columns=["timestamp", "text"]).to_csv(f, index=False)
    spec = {"features": list(names), "memory": 3, "daily": True, "timezone": "America/New_York",
            "session_end": "16:00", "encoder": encoder}  # fmt: skip
    return TextFeatureSet(FeatureSet(["logret_1"]), spec, TextSource(str(f), "America/New_York"))


def _by_hand(bars: pd.DataFrame, headlines) -> np.ndarray:
    """A plain loop: each bar's items by comparing wall-clock times with its close, VADER's
    compound score from the analyser itself, then the three aggregates."""
    analyser = SentimentIntensityAnalyzer()
    ny = ZoneInfo("America/New_York")
    closes = [dt.datetime.combine(d.date(), dt.time(16, 0), tzinfo=ny) for d in bars.index]
    per_bar: list[list[float]] = [[] for _ in closes]
    for stamp, text in headlines:
        when = dt.datetime.fromisoformat(stamp).replace(tzinfo=ny)
        for i, close in enumerate(closes):
            if close > when and (i == 0 or closes[i - 1] <= when):
                per_bar[i].append(analyser.polarity_scores(text)["compound"])
    out = np.full((len(closes), 3), np.nan)
    for t in range(len(closes)):
        # bar 0's items cannot be told from older ones: no aggregate may include bar 0
        if t >= 1:
            out[t, 0] = np.mean(per_bar[t]) if per_bar[t] else 0.0
        if t >= 2:
            out[t, 1] = len(per_bar[t]) + len(per_bar[t - 1])
        if t >= 6:  # decay_2 with memory 3: bars t-5..t, weights 0.5^(age/2)
            num = den = 0.0
            for age in range(6):
                w = 0.5 ** (age / 2)
                num += w * sum(per_bar[t - age])
                den += w * len(per_bar[t - age])
            out[t, 2] = num / den if den else 0.0
    return out


def test_vader_features_equal_a_plain_loop(tmp_path):
    fs = _feature_set(tmp_path)
    got = fs.text_columns(_bars())
    want = _by_hand(_bars(), HEADLINES)
    # the full-history rows where every aggregate has its span (NaN before)
    for j, first in enumerate((1, 2, 6)):
        assert np.isnan(got[:first, j]).all()
        np.testing.assert_allclose(got[first:, j], want[first:, j], rtol=0, atol=1e-12)


def test_token_columns_hold_each_bars_latest_items_oldest_first(tmp_path):
    fs = _feature_set(tmp_path, names=(), encoder=ENCODER)
    tokens = fs.text_columns(_bars()).reshape(-1, 2, 4)
    i = list(BARS).index(pd.Timestamp("2024-03-05"))  # four items: the latest two are kept
    # "analysts upbeat on ACME after great launch": only "acme" is known (2), the rest [UNK]
    # (1); "ACME wins praise for excellent margins": acme, then [UNK]
    assert tokens[i].tolist() == [[1, 1, 1, 2], [2, 1, 1, 1]]
    assert (tokens[i + 1] == 0).all()  # 6 March: no items, all padding


def test_feature_rows_name_the_text_columns_after_the_numeric(tmp_path):
    fs = _feature_set(tmp_path)
    assert fs.names == ["logret_1", "vader_mean_1", "vader_count_2", "vader_decay_2"]
    assert fs.lookback == 7  # decay_2 x memory 3 = 6 bars of sums, plus the boundary bar
    assert len(fs) == 4 and "datetime" in fs.inputs


@pytest.mark.parametrize("encoder", [None, ENCODER], ids=["lexicon", "lexicon+tokens"])
def test_later_items_change_nothing_at_or_before_t(tmp_path, encoder):
    bars = _bars()
    base = _feature_set(tmp_path / "a", encoder=encoder).compute(bars)
    for t in range(len(bars) - 1):
        close_t = pd.Timestamp(bars.index[t].date()) + pd.Timedelta(hours=16)
        later = [
            ((close_t + pd.Timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M"), text)
            for m, text in ((0, "terrible awful disaster"), (90, "wonderful superb joy"))
        ]
        kept = [h for h in HEADLINES if pd.Timestamp(h[0]) < close_t]
        changed = _feature_set(tmp_path / f"b{t}", kept + later, encoder=encoder).compute(bars)
        np.testing.assert_array_equal(changed[: t + 1], base[: t + 1])


def test_bar_by_bar_rows_equal_the_full_history_rows(tmp_path):
    fs = _feature_set(tmp_path)
    bars = _bars()
    full = fs.compute(bars)
    for t in range(fs.lookback - 1, len(bars)):
        recent = bars.iloc[t - fs.lookback + 1 : t + 1]
        np.testing.assert_allclose(fs.compute_last(recent), full[t], rtol=0, atol=1e-12)


def test_a_watched_folder_brings_new_items_in_at_the_next_bar(tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "a.csv").write_text("timestamp,text\n2024-03-05 10:00,great strong rally\n")
    spec = {"features": ["vader_count_1"], "memory": 3, "daily": True,
            "timezone": "America/New_York", "session_end": "16:00", "encoder": None}  # fmt: skip
    source = TextSource(str(folder), "America/New_York", watch=True)
    fs = TextFeatureSet(FeatureSet(["logret_1"]), spec, source)
    bars = _bars()
    i = list(bars.index).index(pd.Timestamp("2024-03-06"))
    before = fs.compute(bars.iloc[: i + 1])[:, -1]
    # a headline arrives after the close of the 6th: the session has decided that bar, the
    # file now holds it, and it counts for the 7th, as the backtest would count it
    (folder / "b.csv").write_text("timestamp,text\n2024-03-06 16:30,terrible loss\n")
    after = fs.compute(bars.iloc[: i + 2])[:, -1]
    np.testing.assert_array_equal(after[: i + 1], before)
    assert after[i + 1] == 1.0
