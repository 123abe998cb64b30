"""IB's historical-data pacing rules, on a fake clock."""

from __future__ import annotations

import asyncio

from kerastrader.brokers.ib.pacing import HistoricalPacer


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_an_identical_request_waits_fifteen_seconds():
    clock = Clock()
    pacer = HistoricalPacer(clock)
    pacer.sent("AAPL-1D")
    pacer.done()
    clock.now = 10.0
    assert pacer.wait_time("AAPL-1D") == 5.0
    assert pacer.wait_time("MSFT-1D") == 0.0


def test_the_sixty_first_request_in_ten_minutes_waits_for_the_first_to_age_out():
    clock = Clock()
    pacer = HistoricalPacer(clock)
    for i in range(60):
        clock.now = float(i)
        pacer.sent(i)
        pacer.done()
    clock.now = 100.0
    assert pacer.wait_time("new") == 500.0  # the first was sent at t=0
    clock.now = 600.0
    assert pacer.wait_time("new") == 0.0


def test_no_more_than_fifty_requests_open():
    pacer = HistoricalPacer(Clock(), identical_seconds=0)
    for i in range(50):
        pacer.sent(i)
    assert not pacer.can_open()
    pacer.done()
    assert pacer.can_open()


def test_acquire_waits_until_allowed():
    pacer = HistoricalPacer(identical_seconds=0.2)

    async def twice():
        await pacer.acquire("k")
        pacer.done()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pacer.acquire("k")
        return loop.time() - t0

    assert asyncio.run(twice()) >= 0.15
