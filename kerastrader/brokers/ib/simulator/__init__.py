"""A simulated IB Gateway: the TWS API wire protocol on loopback, replaying bars from files.

Why: paper trading through Interactive Brokers needs a login, market hours and a running
Gateway, and its results cannot be compared bar for bar with a backtest. This server speaks
the same socket protocol as TWS / IB Gateway (server version 176, see
:mod:`kerastrader.brokers.ib.wire`), so the real, unmodified ``ib_async`` client (and
anything built on it, such as the project's Backtrader IB store) connects to it as to a paper
account. It serves history from OHLCV frames, replays the rest as real-time bars and fills
orders against those bars with Backtrader's BackBroker rules plus the project's commission
and slippage (:mod:`kerastrader.brokers.costs`), so a live session can be rehearsed
offline and checked against a backtest of the same bars.

Written from the protocol: every message layout mirrors what ``ib_async`` 2.1.0 sends
(``client.py``) or reads (``decoder.py``) at server version 176.

One module per job:

- :mod:`.gateway`: the server (sockets, handshake, dispatch of requests) and the snapshots
  tests read (:class:`SimulatedGateway`);
- :mod:`.market`: instruments, history and the replay clock (lockstep or free running);
- :mod:`.orders` and :mod:`.checks`: the order book, brackets and OCA groups, and what is
  refused before an order works;
- :mod:`.fills`: matching orders against bars, executions and commission reports;
- :mod:`.account`: cash, positions and the account messages;
- :mod:`.layouts`: the placeOrder / openOrder / completedOrder field layouts;
- :mod:`.scenarios`: the faults a test injects (:class:`Faults`), the IB-like mode's
  switches (:class:`IBLike`) and IB's texts;
- :mod:`.clock`: IB's time formats.

The IB-like mode (``SimulatedGateway(..., ib=IBLike())``) behaves as a real IB Gateway does
where that differs from the happy path, and is the mode for tests that claim IB behaviour:

- :mod:`.exchange`: 5-second real-time bars on an accelerated exchange clock, regular
  trading hours only, connectivity codes 1100/1101/1102 with the socket open;
- :mod:`.intraday`: the exchange's sessions and the 5-second bars inside a file's bars;
- :mod:`.hmds`: history ending with the bar still forming, IB's pacing rules, and 162 told
  apart by its text (pacing, permissions, no data);
- :mod:`.timing`: DAY orders expire at the close, orders outside regular hours wait for the
  open, short sales wait for a locate;
- order reports come as IB sends them (status, execution, commission a little later), off-
  tick prices get 110, order precautions 383, ``reqExecutions`` answers for today only.

Faults (:class:`Faults`) inject disconnects, rejections, split fills and pacing violations.
After a disconnect the state survives and a reconnecting client (same clientId) gets its
positions, open orders (openOrder), completed orders (completedOrder) and executions
(execDetails + commissionReport) again. When it resubscribes to real-time bars, a bar of the
current step that never left the gateway is sent; otherwise the step the dropped connection
could no longer acknowledge counts as acknowledged and the next one is released, so no bar
is sent twice or skipped. ``reqHistoricalData`` serves every bar released so far (history
plus replayed), cut at ``endDateTime`` and to ``durationStr`` in calendar time; daily bars are
dated ``yyyymmdd`` whatever ``formatDate`` (as IB does), intraday ones ``yyyymmdd hh:mm:ss``
(UTC) or epoch seconds with ``formatDate=2``.
"""

from kerastrader.brokers.ib.simulator.gateway import DEFAULT_BROKER, SimulatedGateway
from kerastrader.brokers.ib.simulator.layouts import (
    completed_order_fields,
    open_order_fields,
    parse_place_order,
)
from kerastrader.brokers.ib.simulator.scenarios import Faults, IBLike

__all__ = [
    "DEFAULT_BROKER",
    "Faults",
    "IBLike",
    "SimulatedGateway",
    "completed_order_fields",
    "open_order_fields",
    "parse_place_order",
]
