"""The simulated gateway's server: sockets, the handshake and the dispatch of requests.

One asyncio loop in a background thread owns everything: the listening socket, one
:class:`Connection` per client, and the components the requests are dispatched to (the
market and its clock, the order book, the fill engine, the account ledger). Snapshots for
tests (``orders``, ``fills``, ``positions()``, ...) are read from other threads under
``lock``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd

from kerastrader.brokers.ib.simulator.account import Ledger
from kerastrader.brokers.ib.simulator.exchange import ExchangeMarket
from kerastrader.brokers.ib.simulator.fills import FillEngine
from kerastrader.brokers.ib.simulator.layouts import to_int
from kerastrader.brokers.ib.simulator.market import Market
from kerastrader.brokers.ib.simulator.orders import OrderBook
from kerastrader.brokers.ib.simulator.scenarios import CLIENT_ID_IN_USE_TEXT, Faults, IBLike
from kerastrader.brokers.ib.wire import (
    SERVER_VERSION,
    FrameReader,
    In,
    Out,
    ProtocolError,
    encode_fields,
    parse_version_range,
)

log = logging.getLogger(__name__)

# The project's default [broker] section (kerastrader/data/default.toml): 0.1% of value, 5 bps.
DEFAULT_BROKER: dict[str, Any] = {
    "cash": 100_000.0,
    "commission_scheme": "percent",
    "commission": 0.001,
    "per_share": 0.005,
    "min_commission": 1.0,
    "max_commission": 0.01,
    "slippage_bps": 5.0,
    "slippage_range": 0.0,
    "volume_cap": 0.0,
}


class Connection:
    """One client connection and what it subscribed to."""

    def __init__(self, writer: asyncio.StreamWriter, number: int) -> None:
        self.writer = writer
        self.number = number
        self.client_id: int | None = None
        self.handshaken = False
        self.ready = False  # startApi received
        self.closed = False
        self.bar_subs: dict[int, str] = {}  # reqId -> symbol
        self.positions_sub = False
        self.account_sub = False
        self.account_multi: dict[int, str] = {}  # reqId -> account

    def __repr__(self) -> str:
        return f"<connection {self.number} clientId={self.client_id}>"


class SimulatedGateway:
    """A loopback TWS API server replaying ``bars`` for a paper-trading rehearsal.

    ``bars``: symbol -> OHLCV frame (DatetimeIndex, naive UTC, columns open/high/low/close/
    volume); rows before ``history`` are history, the rest is replayed. ``broker`` is the
    project's ``[broker]`` config section (missing keys take :data:`DEFAULT_BROKER`'s values);
    the starting cash is ``cash``. See the package docstring for the replay and order rules.
    With ``ib=IBLike()`` the gateway behaves as a real IB Gateway does where that differs
    from the happy path (:class:`~kerastrader.brokers.ib.simulator.scenarios.IBLike`).
    """

    currency = "USD"

    def __init__(
        self,
        bars: dict[str, pd.DataFrame],
        *,
        history: int,
        account: str = "DU123456",
        host: str = "127.0.0.1",
        port: int = 0,
        cash: float = 100_000.0,
        broker: dict | None = None,
        faults: Faults | None = None,
        lockstep: bool = True,
        speed: float = 0.0,
        next_order_id: int = 1,
        ib: IBLike | None = None,
        instruments: dict[str, dict[str, Any]] | None = None,
        other_accounts: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if not bars:
            raise ValueError("bars is empty: the gateway needs at least one symbol")
        if history < 0:
            raise ValueError(f"history must not be negative, not {history}")
        if speed < 0:
            raise ValueError(f"speed must not be negative, not {speed}")
        self.account = account
        # symbol -> contract fields other than a stock's (secType, symbol, currency, exchange,
        # multiplier, lastTradeDateOrContractMonth, localSymbol, minTick)
        self.instruments = {k: dict(v) for k, v in (instruments or {}).items()}
        # account -> {"cash": ..., "positions": {symbol: qty}}: more accounts the login
        # manages (a DF master's, another DU); reported, not traded
        self.other_accounts = {k: dict(v) for k, v in (other_accounts or {}).items()}
        self.host = host
        self.port = port
        self.faults = faults if faults is not None else Faults()
        self.lockstep = lockstep
        self.speed = speed
        self.broker = {**DEFAULT_BROKER, **(broker or {})}
        self.ib = ib
        # The happy path has no price grid (minTick 0): orders keep the strategy's exact prices,
        # as in the backtest it is compared with; the IB-like mode has IB's (error 110 off it).
        self.min_tick = ib.min_tick if ib is not None else 0.0
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.market = (
            Market(self, bars, history) if ib is None else ExchangeMarket(self, bars, history, ib)
        )
        self.book = OrderBook(self, next_order_id)
        self.engine = FillEngine(self, self.broker)
        self.ledger = Ledger(self, cash)
        if self.market.done:
            self.finished.set()

        self.sent = 0
        self.fired: set[int] = set()
        self.conns: list[Connection] = []
        self.conn_count = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.started = threading.Event()
        self.start_error: BaseException | None = None
        self.stopping: asyncio.Event | None = None
        self.wake: asyncio.Event | None = None
        self.tasks: set[asyncio.Task] = set()
        self.address: tuple[str, int] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> tuple[str, int]:
        """Serve in a background thread with its own asyncio loop; return the bound address.

        A thread of its own lets synchronous code (tests, Backtrader) and the asyncio client
        run beside it; ``port=0`` picks a free port.
        """
        if self.thread is not None:
            raise RuntimeError("the gateway is already started")
        self.started.clear()
        self.start_error = None
        self.address = None
        self.thread = threading.Thread(target=self.run, name="ib-simulator", daemon=True)
        self.thread.start()
        self.started.wait(10)
        if self.start_error is not None:
            raise self.start_error
        if self.address is None:
            raise RuntimeError("the gateway did not start within 10 s")
        return self.address

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return
        if self.stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.stopping.set)
        thread.join(10)
        self.thread = None

    def __enter__(self) -> SimulatedGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` on the gateway's loop (for scripted events from a test thread)."""
        if self.loop is None or self.loop.is_closed():
            raise RuntimeError("the gateway is not running")
        self.loop.call_soon_threadsafe(fn, *args)

    def connectivity(self, code: int) -> None:
        """IB-like mode: send 1100 (lost), 1101 or 1102 (restored) with the socket open."""
        if not isinstance(self.market, ExchangeMarket):
            raise RuntimeError("connectivity events need the IB-like mode (ib=IBLike())")
        self.call(self.market.connectivity, code)

    def run_clock(self, until: float, timeout: float = 60.0) -> None:
        """IB-like mode: walk the exchange clock up to ``until`` (epoch seconds) with nobody
        acknowledging, as IB's clock runs on while a session's process is down (overnight,
        say): the orders IB works fill meanwhile, unseen. Returns when the clock is there."""
        if not isinstance(self.market, ExchangeMarket):
            raise RuntimeError("run_clock needs the IB-like mode (ib=IBLike())")
        walked = threading.Event()

        def walk() -> None:
            market = self.market
            try:
                while not market.done and market.now() < until:
                    market.release_step()
                market.awaiting_ack = False  # the next subscriber releases the next step
                market.release_wanted = True
            finally:
                walked.set()

        self.call(walk)
        if not walked.wait(timeout):
            raise RuntimeError(f"the clock did not reach {until} within {timeout} s")

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self.main())
        except BaseException as exc:  # reported to start() if it happens before binding
            self.start_error = exc
            log.exception("simulated gateway failed")
        finally:
            self.started.set()
            loop.close()

    async def main(self) -> None:
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        server = await asyncio.start_server(self.serve, self.host, self.port)
        sock = server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        log.info("simulated IB gateway listening on %s:%s", *self.address)
        self.started.set()
        pump = None
        if not self.lockstep:
            pump = asyncio.create_task(self.market.pump(self.wake))
        try:
            await self.stopping.wait()
        finally:
            if pump is not None:
                pump.cancel()
            server.close()
            for conn in list(self.conns):
                self.close(conn, "gateway stopping")
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, *([pump] if pump else []), return_exceptions=True)
            await server.wait_closed()
            log.info("simulated IB gateway stopped")

    def clock_moved(self) -> None:
        """A subscription changed: lockstep may release a step, the free clock may run."""
        if self.lockstep:
            self.market.maybe_release()
        elif self.wake is not None:
            self.wake.set()

    # -------------------------------------------------------------- snapshots

    @property
    def orders(self) -> list[dict]:
        """Every placeOrder received (modifications too; what-if orders not), in order."""
        with self.lock:
            return copy.deepcopy(self.book.records)

    @property
    def fills(self) -> list[dict]:
        """Every execution, in order."""
        with self.lock:
            return copy.deepcopy(self.engine.fills)

    def positions(self) -> dict[str, float]:
        """Non-zero positions, symbol -> signed shares."""
        with self.lock:
            return {s: q for s, q in self.ledger.positions.items() if q}

    def cash(self) -> float:
        """Cash after every fill and commission."""
        with self.lock:
            return self.ledger.cash

    @property
    def replay_index(self) -> dict[str, int]:
        """Per symbol, the row of the next bar to release."""
        with self.lock:
            return dict(self.market.replay_index)

    @property
    def messages_sent(self) -> int:
        """Frames sent so far to all clients (what ``Faults.disconnect_after`` counts)."""
        return self.sent

    def order_states(self) -> list[dict]:
        """Status of every order the gateway accepted, in placement order."""
        with self.lock:
            return self.book.states()

    # ------------------------------------------------------------ connections

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.conn_count += 1
        conn = Connection(writer, self.conn_count)
        self.conns.append(conn)
        frames = FrameReader(api_prefix=True)
        log.info("client connected from %s (%r)", writer.get_extra_info("peername"), conn)
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for fields in frames.feed(data):
                    if conn.closed:
                        break
                    self.dispatch(conn, fields)
                if not conn.closed:
                    await writer.drain()
        except ProtocolError as exc:
            log.error("%r: protocol error: %s", conn, exc)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%r: connection lost: %s", conn, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self.close(conn, "client disconnected")
            if task is not None:
                self.tasks.discard(task)

    def close(self, conn: Connection, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn in self.conns:
            self.conns.remove(conn)
        log.info("%r closed: %s", conn, reason)
        try:
            conn.writer.close()  # flushes what was written, then closes
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass

    def send(self, conn: Connection, *fields: Any) -> bool:
        """Write one message; True if it left the gateway (the connection was open)."""
        if conn.closed:
            return False
        if self.market.hold_out(conn, fields):
            return True
        conn.writer.write(encode_fields(*fields))
        self.sent += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r >>> %s", conn, ",".join(map(str, fields)))
        for limit in list(self.faults.disconnect_after):
            if limit not in self.fired and self.sent >= limit:
                self.fired.add(limit)
                self.close(conn, f"Faults.disconnect_after={limit}")
        return True

    def error(self, conn: Connection, req_id: int, code: int, text: str) -> None:
        self.send(conn, Out.ERR_MSG, 2, req_id, code, text, "")

    def ready_conns(self) -> list[Connection]:
        return [c for c in self.conns if c.ready and not c.closed]

    def conn_of(self, client_id: int) -> Connection | None:
        return next((c for c in self.ready_conns() if c.client_id == client_id), None)

    # ---------------------------------------------------------------- dispatch

    def dispatch(self, conn: Connection, fields: list[str]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r <<< %s", conn, ",".join(fields))
        if not conn.handshaken:
            self.handshake(conn, fields)
            return
        try:
            msg_id = int(fields[0])
        except (ValueError, IndexError):
            log.warning("%r: message without an id: %r", conn, fields[:3])
            return
        if not conn.ready and msg_id != In.START_API:
            log.warning("%r: message %s before startApi ignored", conn, msg_id)
            return
        if self.market.hold_in(conn, fields):
            return
        handler = self.handlers().get(msg_id)
        if handler is None:
            log.debug("%r: request %s ignored (not simulated)", conn, msg_id)
            return
        try:
            handler(conn, fields)
        except (ProtocolError, ValueError, IndexError) as exc:
            log.error("%r: cannot handle message %s: %s (%r)", conn, msg_id, exc, fields[:12])
            self.error(conn, -1, 321, f"Error validating request: {exc}")
        except Exception:  # a bug here must not take the gateway down mid-session
            log.exception("%r: message %s failed: %r", conn, msg_id, fields[:12])

    def handlers(self) -> dict[int, Callable[[Connection, list[str]], None]]:
        market, book, ledger = self.market, self.book, self.ledger
        return {
            In.START_API: self.on_start_api,
            In.REQ_IDS: self.on_req_ids,
            In.REQ_MANAGED_ACCTS: self.on_req_managed_accts,
            In.REQ_CURRENT_TIME: market.on_req_current_time,
            In.REQ_CONTRACT_DATA: market.on_req_contract_details,
            In.REQ_HISTORICAL_DATA: market.on_req_historical_data,
            In.REQ_REAL_TIME_BARS: market.on_req_real_time_bars,
            In.CANCEL_REAL_TIME_BARS: market.on_cancel_real_time_bars,
            In.PLACE_ORDER: book.on_place_order,
            In.CANCEL_ORDER: book.on_cancel_order,
            In.REQ_GLOBAL_CANCEL: book.on_global_cancel,
            In.REQ_OPEN_ORDERS: book.on_req_open_orders,
            In.REQ_ALL_OPEN_ORDERS: book.on_req_open_orders,
            In.REQ_AUTO_OPEN_ORDERS: book.on_req_open_orders,
            In.REQ_COMPLETED_ORDERS: book.on_req_completed_orders,
            In.REQ_POSITIONS: ledger.on_req_positions,
            In.CANCEL_POSITIONS: ledger.on_cancel_positions,
            In.REQ_ACCT_DATA: ledger.on_req_account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: ledger.on_req_account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: ledger.on_cancel_account_updates_multi,
            In.REQ_ACCOUNT_SUMMARY: ledger.on_req_account_summary,
            In.REQ_EXECUTIONS: self.engine.on_req_executions,
        }

    def handshake(self, conn: Connection, fields: list[str]) -> None:
        low, high = parse_version_range(fields[0])
        if not low <= SERVER_VERSION <= high:
            log.error("%r: client versions %s..%s exclude %s", conn, low, high, SERVER_VERSION)
            self.close(conn, "unsupported client version range")
            return
        conn.handshaken = True
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S Greenwich Mean Time")
        self.send(conn, SERVER_VERSION, now)

    def on_start_api(self, conn: Connection, fields: list[str]) -> None:
        if conn.ready:
            return
        client_id = to_int(fields[2])
        if self.conn_of(client_id) is not None:
            self.error(conn, -1, 326, CLIENT_ID_IN_USE_TEXT)
            self.close(conn, f"clientId {client_id} already in use")
            return
        conn.client_id = client_id
        conn.ready = True
        log.info("%r: API started", conn)
        self.send(conn, Out.MANAGED_ACCTS, 1, self.managed_accounts())
        self.send(conn, Out.NEXT_VALID_ID, 1, self.book.next_id)

    def managed_accounts(self) -> str:
        """managedAccounts as IB sends it: comma-separated, a financial advisor's master
        (``DF...`` on paper, ``F...`` live) first."""
        accounts = [self.account, *self.other_accounts]
        masters = [a for a in accounts if a.startswith(("DF", "F"))]
        return ",".join(masters + [a for a in accounts if a not in masters])

    def on_req_ids(self, conn: Connection, fields: list[str]) -> None:
        self.send(conn, Out.NEXT_VALID_ID, 1, self.book.next_id)

    def on_req_managed_accts(self, conn: Connection, fields: list[str]) -> None:
        self.send(conn, Out.MANAGED_ACCTS, 1, self.managed_accounts())
