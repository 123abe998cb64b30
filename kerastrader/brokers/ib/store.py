"""The connection to IB Gateway / TWS, for Backtrader's synchronous world.

Backtrader's live loop is synchronous; ib_async is asyncio. The store runs ``ib_async.IB`` on
its own event loop in a background thread. Its event handlers only put plain objects on
``queue.Queue``\\ s (bars per subscription, order events for the broker); the Backtrader thread
reads those queues and hands work back with :meth:`IBStore.post` (non-blocking, for orders) or
:meth:`IBStore.run` (blocking, only at start-up and for backfills). Nothing in the Backtrader
thread ever calls a blocking ib_async method.

On a lost connection (errors 1100/1101/1102 or a closed socket) it reconnects with back-off,
re-subscribes the real-time bars, and tells the broker and the feeds so they can backfill and
reconcile. Paper safety (ports, ``DU`` accounts) is checked before and right after connecting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kerastrader.brokers.ib.contracts import symbol_of
from kerastrader.brokers.ib.messages import Meaning, classify, is_rejection, market_data_line
from kerastrader.brokers.ib.pacing import HistoricalPacer
from kerastrader.brokers.ib.payloads import (
    Bar,
    choose_account,
    commission_of,
    describe,
    exec_payload,
    to_bar,
    to_float,
    why_text,
)
from kerastrader.brokers.safety import check_account, check_port
from kerastrader.errors import KerastraderError

log = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
REALTIME_RETRY_SECONDS = 30.0
PACING_RETRIES = 4
SMALL_BARS = ("1 secs", "5 secs", "10 secs", "15 secs", "30 secs")  # the bars IB paces
HISTORY_TIMEOUT = 60.0  # seconds ib_async waits for one history answer (then: empty list)
PACING_WAIT_LIMIT = 120.0  # seconds of pacing waits before a history request gives up
REPORT_WAIT = 10.0  # seconds a session's end waits for a fill's commission report
BAR_REPORT_WAIT = 2.0  # seconds a completed bar waits for its fills' commission reports
DATA_ERRORS = frozenset(
    {Meaning.PACING, Meaning.NO_PERMISSIONS, Meaning.NO_DATA, Meaning.HISTORY_CANCELLED,
     Meaning.HISTORY_ERROR, Meaning.MARKET_DATA, Meaning.UNKNOWN_CONTRACT}
)  # fmt: skip


def _ib_module():
    """ib_async (maintained), else ib_insync (same API) when only it is installed."""
    try:
        import ib_async as ib
    except ImportError:  # pragma: no cover - exercised only without ib_async
        import ib_insync as ib
    return ib


class ConnectionFailed(KerastraderError):
    pass


class HistoryRefused(KerastraderError):
    """IB gave no historical bars: permissions, no data, pacing beyond the bound, a timeout."""


class IBStore:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4002,
        client_id: int = 1,
        *,
        live: bool = False,
        timeout: float = 10.0,
        lockstep: bool = False,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        max_reconnects: int = 20,
        history_timeout: float = HISTORY_TIMEOUT,
        pacing_wait_limit: float = PACING_WAIT_LIMIT,
        realtime_errors: str = "stop",
        realtime_retry_seconds: float = REALTIME_RETRY_SECONDS,
        account: str = "",
    ) -> None:
        if realtime_errors not in ("stop", "retry"):
            raise ValueError(f"realtime_errors = {realtime_errors!r}: expected 'stop' or 'retry'")
        check_port(port, live)
        self.host, self.port, self.client_id = host, port, client_id
        self.live = live
        self.timeout = timeout
        self.lockstep = lockstep  # the simulated gateway: one bar per reqCurrentTime
        self.reconnect_delays = reconnect_delays
        self.max_reconnects = max_reconnects
        self.history_timeout = history_timeout  # seconds, one request
        self.pacing_wait_limit = pacing_wait_limit  # seconds, all pacing waits of a request
        self.details: dict[int, Any] = {}  # conId -> ib_async ContractDetails
        self.changing: dict[int, str] = {}  # orderId -> "cancel" / "modify" sent, not yet done
        self.realtime_errors = realtime_errors  # "stop": end the session; "retry": subscribe again
        self.realtime_retry_seconds = realtime_retry_seconds
        self.trading_paused = False  # between 1100 and 1101/1102: orders wait
        self.fatal: str | None = None  # why the session must end (the feeds end on it)
        self.events: queue.Queue = queue.Queue()  # for the broker: (kind, payload)
        self.pacer = HistoricalPacer()
        self.unreported: dict[str, float] = {}  # execId -> arrival (monotonic), until its report
        self.wanted_account = account  # --account: one of several the login manages
        self.account = ""
        self.accounts: list[str] = []
        self.names: dict[int, str] = {}  # conId -> the feed's (journal's) name for it
        self._rt_options: dict[str, tuple[str, bool]] = {}  # symbol -> (whatToShow, useRTH)
        self.reconnects = 0
        self.connected = threading.Event()
        self.closing = False
        self._subscriptions: dict[str, tuple[Any, queue.Queue, int]] = {}
        self._live_bars: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.ib = None
        self.mod = _ib_module()

    # -- thread plumbing -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self.ib = self.mod.IB()
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="ib-store", daemon=True)
        self._thread.start()
        ready.wait()
        self.run(self._connect(first=True), timeout=self.timeout + 5)

    def run(self, coro: Coroutine, timeout: float | None = None) -> Any:
        """Run a coroutine on the IB loop and wait for its result (start-up and backfill)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def post(self, fn: Callable, *args: Any) -> None:
        """Call ``fn(*args)`` on the IB loop without waiting (orders, cancels, barriers)."""
        self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        self.closing = True
        if self._loop is None:
            return

        def shutdown() -> None:
            if self.ib is not None and self.ib.isConnected():
                self.ib.disconnect()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- connection ------------------------------------------------------------------------
    async def _connect(self, first: bool) -> None:
        ib = self.ib
        try:
            await ib.connectAsync(self.host, self.port, clientId=self.client_id,
                                  timeout=self.timeout)  # fmt: skip
        except (OSError, TimeoutError) as exc:
            if first:
                raise ConnectionFailed(
                    f"cannot connect to IB at {self.host}:{self.port} (client id "
                    f"{self.client_id}): {exc or type(exc).__name__}; is IB Gateway/TWS running "
                    "with the API enabled?"
                ) from None
            raise
        self.accounts = accounts = list(ib.managedAccounts())
        try:
            self.account = choose_account(accounts, self.wanted_account)
            check_account(self.account, self.live)
        except Exception:
            ib.disconnect()
            raise
        if first:
            ib.errorEvent += self._on_error
            ib.disconnectedEvent += self._on_disconnected
            ib.orderStatusEvent += self._on_status
            ib.execDetailsEvent += self._on_exec
            ib.commissionReportEvent += self._on_commission
        self.connected.set()
        log.info("connected to %s:%d as client %d, account %s", self.host, self.port,
                 self.client_id, self.account)  # fmt: skip

    def _on_disconnected(self) -> None:
        self.connected.clear()
        if self.closing:
            return
        log.warning("IB connection lost; reconnecting")
        self.events.put(("disconnected", None))
        asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        for attempt in range(self.max_reconnects):
            delay = self.reconnect_delays[min(attempt, len(self.reconnect_delays) - 1)]
            await asyncio.sleep(delay)
            if self.closing:
                return
            try:
                await self._connect(first=False)
            except Exception as exc:  # noqa: BLE001 - any failure means: try again later
                log.warning("reconnect attempt %d failed: %s", attempt + 1, exc)
                continue
            self.reconnects += 1
            for symbol, (contract, q, bar_size) in list(self._subscriptions.items()):
                self._subscribe(symbol, contract, q, bar_size)
            self.events.put(("reconnected", None))
            log.info("reconnected after %d attempt(s)", attempt + 1)
            return
        waited = sum(self.reconnect_delays[min(a, len(self.reconnect_delays) - 1)]
                     for a in range(self.max_reconnects))  # fmt: skip
        self.end_session(
            f"the connection to IB at {self.host}:{self.port} was lost and not restored after "
            f"{self.max_reconnects} attempts over {waited:.0f} s; is IB Gateway running and "
            "logged in (its nightly restart, or the weekly login)?"
        )
        self.events.put(("gave_up", None))

    def end_session(self, why: str) -> None:
        """The session cannot go on: the feeds end (the session writes its report) and the
        session reports ``why`` as its error."""
        if self.fatal is None:
            log.error("ending the session: %s", why)
            self.fatal = why

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        meaning = classify(code, message)
        if meaning is Meaning.CONNECTIVITY_LOST:  # the socket stays open: Gateway lost IB
            log.warning("IB error %d: %s; orders wait until it is restored", code, message)
            self.trading_paused = True
            self.events.put(("paused", message))
        elif meaning in (Meaning.RESTORED_DATA_LOST, Meaning.RESTORED_DATA_KEPT):
            lost = meaning is Meaning.RESTORED_DATA_LOST
            log.warning("IB error %d: %s%s", code, message,
                        "; subscribing to real-time bars again" if lost else "")  # fmt: skip
            self.trading_paused = False
            if lost:
                for symbol, (contract_, q, bar_size) in list(self._subscriptions.items()):
                    self._resubscribe(symbol, contract_, q, bar_size)
            self.events.put(("resumed", {"data_lost": lost}))
            if self.lockstep:  # the simulated gateway in lockstep: the lost bars count as seen
                self._barrier()
        elif meaning in DATA_ERRORS and self._realtime_symbol(req_id) is not None:
            self._on_realtime_error(self._realtime_symbol(req_id), code, message)
        self.events.put(("error", (req_id, code, message)))

    def _realtime_symbol(self, req_id: int) -> str | None:
        return next((s for s, b in self._live_bars.items() if b.reqId == req_id), None)

    def _on_realtime_error(self, symbol: str, code: int, message: str) -> None:
        """IB refused real-time bars: end the session, or (``retry``) ask again later."""
        contract, q, bar_size = self._subscriptions[symbol]
        line = market_data_line(describe(contract), code, message)
        self._live_bars.pop(symbol, None)
        if self.realtime_errors == "stop":
            self.end_session(f"no real-time bars: {line}")
            return
        log.error("no real-time bars (subscribing again in %.0f s): %s",
                  self.realtime_retry_seconds, line)  # fmt: skip
        loop = asyncio.get_event_loop()
        loop.call_later(self.realtime_retry_seconds, self._subscribe, symbol, contract, q,
                        bar_size)  # fmt: skip

    def _resubscribe(self, symbol: str, contract: Any, q: queue.Queue, bar_size: int) -> None:
        old = self._live_bars.pop(symbol, None)
        if old is not None:
            self.ib.cancelRealTimeBars(old)
        self._subscribe(symbol, contract, q, bar_size)

    # -- orders (IB thread -> broker queue) ------------------------------------------------
    def _on_status(self, trade: Any) -> None:
        s = trade.orderStatus
        status = s.status
        last = trade.log[-1] if trade.log else None
        code = last.errorCode if last is not None else 0
        order_id = trade.order.orderId
        change = self.changing.get(order_id)
        why = ""
        if code and status in ("Cancelled", "ValidationError") and change is not None:
            # ib_async marks a trade Cancelled on any error for its id, also when IB refused
            # a cancel or a modification (161, 10148, 105, ...): the order works on (or was
            # filled) at IB, so the strategy must not see it end.
            del self.changing[order_id]
            self.events.put(("change_failed", {"ref": trade.order.orderRef, "order_id": order_id,
                                               "kind": change, "why": why_text(last)}))  # fmt: skip
            return
        if status == "ValidationError":  # a warning (399, 404, ...): the order works on
            self.events.put(("warning", {"ref": trade.order.orderRef, "why": why_text(last)}))
            return
        if status == "Cancelled" and code and is_rejection(code, last.message):
            # ib_async turns an order error (201, 383 and the like) into a Cancelled status
            # before the error event: the error code in the trade's log tells the two apart.
            status, why = "Rejected", why_text(last)
        if status in ("Submitted", "PreSubmitted", "Filled", "Cancelled", "ApiCancelled"):
            self.changing.pop(order_id, None)  # the change went through
        payload = {
            "ref": trade.order.orderRef,
            "order_id": trade.order.orderId,
            "status": status,
            "filled": s.filled,
            "remaining": s.remaining,
            "avg_price": s.avgFillPrice,
            "why": why,
            "why_held": s.whyHeld,
        }
        self.events.put(("status", payload))

    def _on_exec(self, trade: Any, fill: Any) -> None:
        e = fill.execution
        payload = exec_payload(trade.order.orderRef or e.orderRef, fill, self.names)
        self.unreported[e.execId] = time.monotonic()
        self.events.put(("exec", payload))

    def _awaiting(self) -> bool:
        now = time.monotonic()
        return any(now - t < REPORT_WAIT for t in list(self.unreported.values()))

    def await_reports(self, limit: float = BAR_REPORT_WAIT) -> None:
        """Before a completed bar goes to the strategy: wait (at most ``limit`` s) for the
        commission reports of executions that arrived before it. IB sends a commission report
        a little after its execution and the broker applies a fill with its commission, so
        without this the strategy could decide on a bar before that bar's fill is applied
        (a backtest never does). Costs nothing when no report is due."""
        deadline = time.monotonic() + limit
        while self._awaiting() and time.monotonic() < deadline:
            time.sleep(0.002)

    def reports_due(self) -> bool:
        """Whether reports of this session's orders are still to be applied: a commission
        report IB has yet to send (a little after its execution; at most ``REPORT_WAIT`` s is
        waited) or events the broker has not taken yet. A session ending with the replay
        applies its last fills before it writes its report."""
        return self._awaiting() or not self.events.empty()

    def _on_commission(self, trade: Any, fill: Any, report: Any) -> None:
        self.unreported.pop(report.execId, None)
        self.events.put(("commission", {"exec_id": report.execId,
                                        "commission": report.commission,
                                        "realized_pnl": report.realizedPNL}))  # fmt: skip

    def place(self, contract: Any, order: Any) -> None:
        self.post(self._place, contract, order)

    def _place(self, contract: Any, order: Any) -> None:
        if not self.ib.isConnected() or self.trading_paused:
            self.events.put(("unsent", {"ref": order.orderRef}))
            return
        if order.orderId and any(t.order.orderId == order.orderId for t in self.ib.trades()):
            self.changing[order.orderId] = "modify"
        self.ib.placeOrder(contract, order)

    def cancel(self, order: Any) -> None:
        self.post(self._cancel, order)

    def _cancel(self, order: Any) -> None:
        if self.ib.isConnected():
            self.changing[order.orderId] = "cancel"
            self.ib.cancelOrder(order)

    # -- data ------------------------------------------------------------------------------
    def qualify(self, contract: Any) -> Any:
        """The contract as IB knows it (conId filled in); its details are kept in ``details``."""
        result = self.run(self.ib.qualifyContractsAsync(contract), timeout=self.timeout)
        if not result or result[0] is None:
            raise KerastraderError(f"IB does not know the contract {describe(contract)}")
        qualified = result[0]
        found = self.run(self._details(qualified), timeout=self.timeout)
        if found:
            self.details[qualified.conId] = found[0]
        return qualified

    async def _details(self, contract: Any) -> list[Any]:
        return await self.ib.reqContractDetailsAsync(contract)

    def min_tick(self, contract: Any) -> float:
        """The contract's minimum price increment (contract details), 0 when unknown."""
        details = self.details.get(getattr(contract, "conId", 0))
        return float(getattr(details, "minTick", 0.0) or 0.0)

    def history(
        self,
        contract: Any,
        duration: str,
        bar_size: str,
        end: str = "",
        *,
        what: str = "TRADES",
        use_rth: bool = False,
    ) -> list[Bar]:
        """Historical bars, oldest first; :class:`HistoryRefused` when IB gives none.

        ``what``: IB's whatToShow (MIDPOINT for forex); ``use_rth``: regular hours only, as
        the training data was (IB's daily bars then cover the regular session)."""
        bound = (PACING_RETRIES + 1) * (self.history_timeout + 5) + self.pacing_wait_limit
        coro = self._history(contract, duration, bar_size, end, what, use_rth)
        return self.run(coro, timeout=bound)

    def current_time(self) -> float:
        """IB's clock (reqCurrentTime), epoch seconds: whether a history bar's period is over
        is IB's time, not this machine's (they differ by the clock's drift, and a simulated
        gateway runs its own)."""

        async def ask() -> Any:
            return await self.ib.reqCurrentTimeAsync()

        return self.run(ask(), timeout=self.timeout).timestamp()

    async def _history(
        self, contract: Any, duration: str, bar_size: str, end: str, what: str, use_rth: bool
    ) -> list[Bar]:
        key = (contract.conId or contract.symbol, end, duration, bar_size, what, use_rth)
        waited = 0.0
        for attempt in range(PACING_RETRIES + 1):
            await self.pacer.acquire(key, small=bar_size in SMALL_BARS)
            errors: list[tuple[int, str]] = []

            def on_error(req_id, code, message, contract=None, _errors=errors):
                if req_id != -1 and classify(code, message) in DATA_ERRORS:
                    _errors.append((code, message))

            self.ib.errorEvent += on_error
            try:
                bars = await self.ib.reqHistoricalDataAsync(
                    contract, end, duration, bar_size, what, useRTH=use_rth, formatDate=2,
                    timeout=self.history_timeout,
                )  # fmt: skip
            finally:
                self.ib.errorEvent -= on_error
                self.pacer.done()
            if bars:
                return [to_bar(b) for b in bars]
            refusal = next((e for e in errors if classify(*e) is not Meaning.PACING), None)
            if refusal is not None:  # permissions, no data, unknown contract: asking again
                raise HistoryRefused(market_data_line(describe(contract), *refusal))
            if not errors:  # ib_async's own timeout, or an answer without bars
                raise HistoryRefused(
                    f"IB sent no historical bars for {describe(contract)} ({duration} of "
                    f"{bar_size} bars) within {self.history_timeout:.0f} s"
                )
            wait = self.pacer.identical_seconds * (attempt + 1)
            if waited + wait > self.pacing_wait_limit or attempt == PACING_RETRIES:
                break
            log.warning("IB pacing violation on a history request; retrying in %.0f s", wait)
            await asyncio.sleep(wait)
            waited += wait
        raise HistoryRefused(
            f"IB kept refusing historical data for {describe(contract)} with pacing violations "
            f"(error 162) after {waited:.0f} s of waiting; make fewer history requests (IB "
            "allows 60 in ten minutes, no identical one within 15 s) and start again"
        )

    def subscribe(
        self,
        symbol: str,
        contract: Any,
        bar_size: int = 5,
        *,
        what: str = "TRADES",
        use_rth: bool = False,
    ) -> queue.Queue:
        """Real-time bars of ``symbol`` (IB: 5-second bars of ``what``, regular hours only
        with ``use_rth``) on a queue, kept across reconnects and 1101."""
        q: queue.Queue = queue.Queue()
        self._rt_options[symbol] = (what, use_rth)
        self._subscriptions[symbol] = (contract, q, bar_size)
        self.post(self._subscribe, symbol, contract, q, bar_size)
        return q

    def _subscribe(self, symbol: str, contract: Any, q: queue.Queue, bar_size: int) -> None:
        what, use_rth = self._rt_options.get(symbol, ("TRADES", False))
        bars = self.ib.reqRealTimeBars(contract, bar_size, what, use_rth)

        def on_update(items: Any, has_new: bool) -> None:
            if has_new:
                bar = to_bar(items[-1])
                bar.arrived = time.perf_counter()
                q.put(bar)

        bars.updateEvent += on_update
        self._live_bars[symbol] = bars

    def barrier(self) -> None:
        """Done with the current bar: the simulated gateway (lockstep) may send the next."""
        if self.lockstep:
            self.post(self._barrier)

    def _barrier(self) -> None:
        if self.ib.isConnected():
            self.ib.client.reqCurrentTime()

    # -- account ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Positions, cash, open orders and executions as IB reports them now."""
        return self.run(self._snapshot(), timeout=self.timeout + 10)

    async def _snapshot(self) -> dict[str, Any]:
        """Only this session's account: a login with several accounts reports all of them."""
        ib, acct = self.ib, self.account
        fills = await ib.reqExecutionsAsync(self.mod.ExecutionFilter(acctCode=acct))
        values = {
            v.tag: v.value
            for v in ib.accountValues(acct)
            if v.currency in ("USD", "BASE") and (not acct or v.account == acct)
        }
        positions: dict[str, dict[str, float]] = {}
        for p in ib.positions(acct):
            name = self.names.get(p.contract.conId) or symbol_of(p.contract)
            positions[name] = {"size": float(p.position), "avg_cost": float(p.avgCost)}
        return {
            "account": acct,
            "positions": {k: v["size"] for k, v in positions.items()},
            "avg_costs": {k: v["avg_cost"] for k, v in positions.items()},
            "cash": to_float(values.get("TotalCashValue")),
            "net_liquidation": to_float(values.get("NetLiquidation")),
            "open_orders": [
                {
                    "ref": t.order.orderRef,
                    "order_id": t.order.orderId,
                    "status": t.orderStatus.status,
                    "symbol": self.names.get(t.contract.conId) or symbol_of(t.contract),
                    "filled": float(t.orderStatus.filled),
                    "order": t.order,
                    "contract": t.contract,
                }
                for t in ib.openTrades()
                if not acct or not t.order.account or t.order.account == acct
            ],  # fmt: skip
            "fills": [
                exec_payload(f.execution.orderRef, f, self.names) | {"commission": commission_of(f)}
                for f in fills
                if not acct or f.execution.acctNumber == acct
            ],  # fmt: skip
        }
