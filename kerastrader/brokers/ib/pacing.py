"""IB's historical-data pacing rules, enforced on our side so the gateway never has to.

IB answers a violation with error 162 ("pacing violation") and may disconnect a client that
keeps violating. The documented limits (IB's "Historical Data Limitations"):

- no more than 50 requests open at once, whatever the bar size;
- for bars of 30 seconds or less ("Pacing Violations for Small Bars"): no identical request
  (same contract, end, duration, bar size, what-to-show) within 15 s, and no more than 60
  requests in any 10-minute window.

:class:`HistoricalPacer` makes a request wait until all three hold. Times come from a clock
function so tests can run the rules without sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Hashable

IDENTICAL_SECONDS = 15.0
WINDOW_SECONDS = 600.0
WINDOW_REQUESTS = 60
MAX_OPEN = 50


class HistoricalPacer:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        identical_seconds: float = IDENTICAL_SECONDS,
        window_seconds: float = WINDOW_SECONDS,
        window_requests: int = WINDOW_REQUESTS,
        max_open: int = MAX_OPEN,
    ) -> None:
        self.clock = clock
        self.identical_seconds = identical_seconds
        self.window_seconds = window_seconds
        self.window_requests = window_requests
        self.max_open = max_open
        self._sent: collections.deque[float] = collections.deque()
        self._last: dict[Hashable, float] = {}
        self.open = 0

    def wait_time(self, key: Hashable) -> float:
        """Seconds to wait before a request with this key may be sent (0: now)."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.window_seconds:
            self._sent.popleft()
        waits = [0.0]
        if key in self._last:
            waits.append(self._last[key] + self.identical_seconds - now)
        if len(self._sent) >= self.window_requests:
            waits.append(self._sent[0] + self.window_seconds - now)
        return max(waits)

    def can_open(self) -> bool:
        return self.open < self.max_open

    def sent(self, key: Hashable) -> None:
        now = self.clock()
        self._sent.append(now)
        self._last[key] = now
        self.open += 1

    def done(self) -> None:
        self.open = max(0, self.open - 1)

    async def acquire(self, key: Hashable, small: bool = True) -> None:
        """Wait (asynchronously) until the request may go, then count it as sent.

        ``small``: bars of 30 seconds or less, the only ones IB paces; larger bars wait only
        for a free slot among the 50 open requests."""
        while True:
            wait = self.wait_time(key) if small else 0.0
            if wait <= 0 and self.can_open():
                self.sent(key)
                return
            await asyncio.sleep(max(wait, 0.05))
