"""A simulated IB Gateway: the TWS API wire protocol on loopback, replaying bars from files.

Why: paper trading through Interactive Brokers needs a login, market hours and a running
Gateway, and its results cannot be compared bar for bar with a backtest. This server speaks
the same socket protocol as TWS / IB Gateway (server version 176, see
:mod:`kerastrader.brokers.ib.wire`), so the real, unmodified ``ib_async`` client (and
anything built on it, such as the project's Backtrader IB store) connects to it as to a paper
account. It serves history from OHLCV frames, replays the rest as real-time bars and fills
orders against those bars with Backtrader's BackBroker rules plus the project's commission
and slippage (:mod:`kerastrader.strategies.costs`), so a live session can be rehearsed
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
- :mod:`.scenarios`: the faults a test injects (:class:`Faults`) and IB's texts for them;
- :mod:`.clock`: IB's time formats.

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
from kerastrader.brokers.ib.simulator.scenarios import Faults

__all__ = [
    "DEFAULT_BROKER",
    "Faults",
    "SimulatedGateway",
    "completed_order_fields",
    "open_order_fields",
    "parse_place_order",
]
