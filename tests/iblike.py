"""Shared by the tests of the simulated gateway's IB-like mode (``ib=IBLike(...)``).

The bars are daily and generated: a steady rise of 0.5 a day from 100 (open = close - 0.2,
high = close + 1, low = close - 1.2, volume 1,000,000 shares), dated from Thursday
2014-01-02 on business days; the first ``HISTORY`` are history, the rest are replayed as the
5-second bars of a 09:30-16:00 US/Eastern session each. Every test talks to the gateway with
the real ib_async client over loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from ib_async import IB, Stock

from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike

HISTORY = 10
DAYS = 14
SESSION_BARS = 6 * 720 + 360  # 09:30-16:00 in 5-second bars: 4,680
NEW_YORK = ZoneInfo("US/Eastern")
SLIP = 5 / 1e4


def rising_bars(
    n: int, start: float, step: float, offsets: tuple[float, float, float], volume: float
) -> pd.DataFrame:
    """``n`` business days from 2014-01-02 of a steady rise: close = start + step i, and the
    open, high and low at fixed ``offsets`` (added) from the close; a constant volume."""
    close = start + step * np.arange(n)
    open_, high, low = offsets
    return pd.DataFrame(
        {
            "open": close + open_,
            "high": close + high,
            "low": close + low,
            "close": close,
            "volume": np.full(n, volume),
        },
        index=pd.bdate_range("2014-01-02", periods=n),
    )


def make_bars(n: int = HISTORY + DAYS, start: float = 100.0) -> pd.DataFrame:
    """close = start + 0.5 i, open = close - 0.2, high = close + 1, low = close - 1.2."""
    return rising_bars(n, start, 0.5, (-0.2, 1.0, -1.2), 1_000_000.0)


def session_day(i: int) -> dt.date:
    """The date of replayed session ``i`` (0: the first after the history)."""
    return make_bars().index[HISTORY + i].date()


def at(day: dt.date, clock: str) -> dt.datetime:
    """``day`` at ``clock`` (``"09:30"``) in New York, as an aware datetime."""
    return dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=NEW_YORK)


def started_gateways(
    build: Callable[..., SimulatedGateway],
) -> Iterator[Callable[..., SimulatedGateway]]:
    """For a ``gateways`` fixture: yields ``start(...)``, which builds a gateway with
    ``build(...)`` and starts it on a free port; every gateway started stops after the test."""
    started: list[SimulatedGateway] = []

    def start(*args: Any, **kwargs: Any) -> SimulatedGateway:
        gateway = build(*args, **kwargs)
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def ib_like(bars: dict[str, pd.DataFrame] | None = None, **kwargs: Any) -> SimulatedGateway:
    """An IB-like gateway: ``ib=`` fields and gateway arguments as keywords (``history``
    defaults to ``HISTORY``, the bars to ``make_bars()`` as AAA)."""
    ib_fields = {k: kwargs.pop(k) for k in list(kwargs) if k in IBLike.__dataclass_fields__}
    kwargs.setdefault("history", HISTORY)
    return SimulatedGateway(bars or {"AAA": make_bars()}, ib=IBLike(**ib_fields), **kwargs)


@pytest.fixture
def gateways() -> Iterator[Callable[..., SimulatedGateway]]:
    """Start IB-like gateways (``ib_like``'s arguments) on free ports; stop them after."""
    yield from started_gateways(ib_like)


def session(gateway: SimulatedGateway, scenario: Callable[[IB], Awaitable[Any]]) -> Any:
    """Connect a fresh ib_async client with clientId 1, run the scenario, disconnect."""
    assert gateway.address is not None
    host, port = gateway.address

    async def main() -> Any:
        ib = IB()
        await ib.connectAsync(host, port, clientId=1, timeout=10)
        try:
            return await scenario(ib)
        finally:
            ib.disconnect()

    return asyncio.run(main())


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait (letting the client's event loop run) until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await asyncio.sleep(0.002)


async def qualify(ib: IB, symbol: str = "AAA") -> Any:
    [contract] = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    return contract


async def subscribe(ib: IB, per_ack: int, symbol: str = "AAA") -> tuple[Any, Any]:
    """Subscribe to real-time bars and wait for the first release (``per_ack`` bars)."""
    contract = await qualify(ib, symbol)
    bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
    await until(lambda: len(bars) >= per_ack)
    return contract, bars


async def ack(ib: IB, bars: Any, per_ack: int) -> None:
    """Acknowledge (reqCurrentTime) and wait for the next ``per_ack`` bars."""
    seen = len(bars)
    await ib.reqCurrentTimeAsync()
    await until(lambda: len(bars) >= seen + per_ack)


def aggregate(bars: list[Any]) -> tuple[float, float, float, float, float]:
    """Real-time bars as one: open, high, low, close, volume."""
    return (
        bars[0].open_,
        max(b.high for b in bars),
        min(b.low for b in bars),
        bars[-1].close,
        sum(b.volume for b in bars),
    )
