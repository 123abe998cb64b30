"""A generated news corpus with a known relation to generated prices, and a control without one.

No public news corpus ships with our packages, so the text feed is tested (and shown in
``examples/text_news.toml``) on data whose truth is known. A hidden driver, the sign
``s[d]`` of each day's news (+1 or -1, drawn independently every day), sets the tone of that
day's headlines and the drift of the NEXT day's return: ``r[d+1] = drift * s[d] + vol * e``.
Past prices therefore say nothing about tomorrow (the driver is new every day); today's
headlines do, when the feed puts them on the right bar. Some headlines come after the close
(16:00-19:59 New York): the alignment moves them to the next session, where they describe a
return that is already known, so a feed that dated items by calendar day would look ahead.
The control corpus has the same items, times and prices, with tones drawn independently of
the driver: a model must find nothing in it.

It lives in the package (not in tests/) because the example's data script, the tests and a
user's own try-out of ``[text]`` all call the same generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COMPANY = "ACME"
POSITIVE = (
    "{c} shares rally as {n} looks strong",
    "analysts upbeat on {c} after great {n}",
    "{c} wins praise for excellent {n}",
    "{c} beats expectations, {n} impressive",
    "investors cheer {c} as {n} improves",
    "good news for {c}: {n} better than hoped",
)
NEGATIVE = (
    "{c} slumps as {n} disappoints",
    "weak {n} hurts {c}, analysts worried",
    "{c} misses badly, {n} terrible",
    "investors fear {c} losses after poor {n}",
    "{c} faces lawsuit over bad {n}",
    "{c} warns of sad {n}, shares fall",
)
NOUNS = ("cloud demand", "quarterly revenue", "guidance", "product launch", "margin outlook",
         "sales in asia", "licensing deal", "hardware unit", "customer growth")  # fmt: skip


def generate(
    days: int = 800,
    *,
    seed: int = 0,
    related: bool = True,
    drift: float = 0.006,
    vol: float = 0.01,
    per_day: float = 3.0,
    faithful: float = 0.85,
    after_close: float = 0.2,
    start: str = "2018-01-02",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(daily bars, items): bars on business days (naive midnight, New York dates); items with
    ``timestamp`` (New York wall clock, offset included), ``symbol`` and ``text``.

    ``faithful`` is the share of a related day's headlines whose tone is the driver's sign
    (the rest are drawn at random); ``after_close`` the share published after 16:00.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days)
    sign = rng.choice([-1.0, 1.0], size=days)
    r = np.empty(days)
    r[0] = 0.0
    r[1:] = drift * sign[:-1] + vol * rng.standard_normal(days - 1)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.empty(days)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(0.002 * rng.standard_normal(days - 1))
    high = np.maximum(open_, close) * np.exp(np.abs(0.003 * rng.standard_normal(days)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.003 * rng.standard_normal(days)))
    bars = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close,
         "volume": rng.lognormal(13.0, 0.3, days).round()},
        index=pd.DatetimeIndex(dates, name="datetime"),
    )  # fmt: skip
    tone_rng = np.random.default_rng([seed, 1])  # the control's tones: no relation to sign
    rows = []
    for d, day in enumerate(dates):
        for _ in range(rng.poisson(per_day)):
            late = rng.random() < after_close
            minute = rng.integers(16 * 60, 20 * 60) if late else rng.integers(9 * 60 + 30, 16 * 60)
            when = day + pd.Timedelta(minutes=int(minute))
            true_tone = sign[d] if rng.random() < faithful else rng.choice([-1.0, 1.0])
            random_tone = tone_rng.choice([-1.0, 1.0])
            tone = true_tone if related else random_tone
            template = rng.choice(POSITIVE if tone > 0 else NEGATIVE)
            noun = rng.choice(NOUNS)
            stamp = when.tz_localize("America/New_York").isoformat()
            rows.append((stamp, COMPANY, str(template).format(c=COMPANY, n=noun)))
    items = pd.DataFrame(rows, columns=["timestamp", "symbol", "text"])
    return bars, items


def write_corpus(folder: str | Path, days: int = 800, seed: int = 0, **options) -> dict[str, Path]:
    """Write ``bars.csv``, ``news_related.csv`` and ``news_control.csv`` into ``folder``
    (``options``: :func:`generate`'s)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bars, related = generate(days, seed=seed, related=True, **options)
    _, control = generate(days, seed=seed, related=False, **options)
    out = {"bars": folder / "bars.csv", "related": folder / "news_related.csv",
           "control": folder / "news_control.csv"}  # fmt: skip
    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.index.name = "Date"
    frame.to_csv(out["bars"], float_format="%.4f")
    related.to_csv(out["related"], index=False)
    control.to_csv(out["control"], index=False)
    return out
