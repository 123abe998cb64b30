"""The live feeds of one book, handed to Backtrader as one bar per instrument at a time.

Why: Backtrader's live loop polls each feed once per round and moves on with the feeds that
had a bar. Four daily bars that close at 16:00 reach the client a few milliseconds apart (one
5-second bar per contract), so a feed whose bar is still on the wire would be left a bar
behind, and the strategy would decide on a book whose instruments stand at different
dates, then decide again when the late bar comes. A :class:`BarGroup` makes a feed whose
peers have already delivered a later bar wait for its own (up to ``wait`` seconds, then
the round goes on without it, and says so), so every decision sees aligned bars.

It also keeps the simulated gateway's lockstep to one acknowledgement per bar time: each
feed acknowledges the bar it delivered when Backtrader asks it for the next one (the round
is over), and only the first acknowledgement of a bar time is sent, so the gateway releases
the next bar once, after the strategy has decided on this one. In lockstep the feeds
subscribe to real-time bars only once all of them have started: the harness's
acknowledgement is a ``reqCurrentTime``, the same request a starting feed sends to read IB's
clock, so a feed starting after another one's subscription would release bars nobody has
decided on. (Against IB every feed subscribes as it starts, so no 5-second bar is missed.)
"""

from __future__ import annotations

import math
import threading
import time


class BarGroup:
    """Shared by the book's :class:`~kerastrader.brokers.ib.feed.IBData` feeds."""

    def __init__(self, wait: float = 5.0) -> None:
        self.wait = float(wait)
        self.latest = -math.inf  # the latest live bar time any feed delivered
        self._latest_at = 0.0  # when (monotonic) that bar was delivered
        self._acknowledged = -math.inf
        self._lock = threading.Lock()
        self._deferred: list = []  # feeds waiting to subscribe (lockstep only)

    def delivered(self, when: float) -> None:
        """A feed handed Backtrader a live bar of time ``when`` (epoch seconds)."""
        with self._lock:
            if when > self.latest:
                self.latest = when
                self._latest_at = time.monotonic()

    def should_wait(self, own: float) -> bool:
        """Whether a feed whose last bar is of time ``own`` should keep waiting for its next
        one: a peer delivered a later bar less than ``wait`` seconds ago."""
        with self._lock:
            return self.latest > own and time.monotonic() - self._latest_at < self.wait

    def acknowledge(self, when: float) -> bool:
        """Whether the acknowledgement of the bar of time ``when`` is the first (to send)."""
        with self._lock:
            if when <= self._acknowledged:
                return False
            self._acknowledged = when
            return True

    def defer(self, feed) -> None:
        """Subscribe ``feed`` (its ``subscribe_live()``) with the others, at the first bar."""
        self._deferred.append(feed)

    def subscribe_deferred(self) -> None:
        """Every feed has started (Backtrader starts them all before the first bar)."""
        feeds, self._deferred = self._deferred, []
        for feed in feeds:
            feed.subscribe_live()
