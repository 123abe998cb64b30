"""A Backtrader broker that trades through IB, never blocks, and journals everything.

Orders from the strategy become ib_async orders (market, limit, stop, stop-limit, trailing,
and brackets through ``parentId``/``transmit``) carrying an ``orderRef`` made from the run and
the order's number. Each is written to the journal *before* it is sent. Fills come from
``execDetails`` paired with their ``commissionReport`` (IB does not promise an ``orderStatus``
for every change) and are applied to the Backtrader order as partial or complete executions,
with the commission IB charged. Statuses and rejections (error 201 and others) reach the
strategy as Backtrader notifications. The strategy's thread never waits for IB: everything
from IB arrives on the store's queue and is applied in :meth:`IBBroker.next`, which Backtrader
calls every cycle.

Cash and positions are kept locally from the fills (so the strategy sees the same arithmetic
as in a backtest) and checked against the account at start and after every reconnect.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import queue
import time
from typing import Any

import backtrader as bt

from kerastrader.brokers.ib.contracts import min_quantity, multiplier_of
from kerastrader.brokers.ib.reconcile import AccountReconciliation, PositionMismatch, when_of
from kerastrader.brokers.ib.store import IBStore
from kerastrader.brokers.journal import Journal
from kerastrader.brokers.safety import Limits
from kerastrader.ticks import on_tick

log = logging.getLogger(__name__)

__all__ = ["IBBroker", "PositionMismatch", "to_tick"]


TERMINAL = {"Filled", "Cancelled", "ApiCancelled", "Inactive"}
TRAILING = ("TRAIL", "TRAIL LIMIT")


def to_tick(price: float, tick: float) -> float:
    """``price`` on the contract's price grid (the nearest multiple of ``tick``); with no
    known tick, to 6 decimals. IB refuses an order price off the grid (error 110)."""
    if not tick or tick <= 0:
        return round(price, 6)
    return on_tick(price, tick)


class IBBroker(AccountReconciliation, bt.BrokerBase):
    params = (
        ("store", None),
        ("journal", None),
        ("contracts", None),  # data name -> ib_async Contract, for feeds that are not IBData
        ("limits", None),  # safety.Limits
        ("dry_run", False),  # journal orders, never send them
        ("cash", 100_000.0),  # the account's starting cash (the journal adds its fills)
        ("datas", None),  # the session's data feeds (for positions at start)
        ("capital", None),  # None: ``cash``; 0: the account's net liquidation; > 0: at most it
        ("adopt_positions", False),  # journal and IB disagree at start: take IB's (else stop)
    )

    def __init__(self) -> None:
        super().__init__()
        self.store: IBStore = self.p.store
        self.journal: Journal = self.p.journal
        self.limits: Limits = self.p.limits or Limits()
        self.notifs: collections.deque = collections.deque()
        self.positions: dict[Any, bt.Position] = collections.defaultdict(bt.Position)
        self.orders: dict[str, bt.Order] = {}  # orderRef -> Backtrader order
        self.ib_orders: dict[str, Any] = {}  # orderRef -> ib_async Order
        self.execs: dict[str, dict] = {}  # exec_id -> execution waiting for its commission
        self.comms: dict[str, dict] = {}  # exec_id -> commission waiting for its execution
        self.start_cash = float(self.p.cash)
        self.cash = self.start_cash
        self.unsent: list[str] = []
        self.latencies: list[float] = []  # seconds from bar arrival to placeOrder, per order
        self.errors: list[tuple[int, int, str]] = []
        self.before_change: dict[str, dict[str, Any]] = {}  # ref -> prices before a modify
        self.adopted: dict[str, Any] = {}  # orderRef -> data, for orders IB works from before

    # -- Backtrader's broker interface -----------------------------------------------------
    def start(self) -> None:
        super().start()
        snap = self.store.snapshot()
        self.start_cash = self.cash = self._capital(snap)
        self.startingcash = self.start_cash
        self.reconcile(first=True, snap=snap)

    def _contract(self, data) -> Any:
        """The feed's qualified contract (IBData qualifies it at start)."""
        contract = getattr(data, "contract", None)
        return contract if contract is not None else (self.p.contracts or {})[data._name]

    def _datas(self) -> list:
        return list(self.p.datas or [])

    def getcash(self) -> float:
        return self.cash

    def getcommissioninfo(self, data) -> bt.CommInfoBase:
        """The configured scheme with the contract's multiplier (ES: 50): Backtrader's PnL
        (``profitandloss``) and a sizer reading ``comminfo.p.mult`` see a future's points
        as cash."""
        ci, mult = super().getcommissioninfo(data), self._multiplier(data)
        if ci.p.mult != mult:
            ci = self.comminfo[data._name] = type(ci)(**{**ci.p._getkwargs(), "mult": mult})
        return ci

    def getvalue(self, datas=None) -> float:
        value = self.cash
        for data, pos in self.positions.items():
            if pos.size and (datas is None or data in datas) and len(data):
                value += pos.size * data.close[0] * self._multiplier(data)
        return value

    def getposition(self, data) -> bt.Position:
        return self.positions[data]

    def get_notification(self):
        return self.notifs.popleft() if self.notifs else None

    def buy(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None,
            tradeid=0, oco=None, trailamount=None, trailpercent=None, parent=None,
            transmit=True, **kwargs):  # fmt: skip
        order = bt.BuyOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit,
                            exectype=exectype, valid=valid, tradeid=tradeid,
                            trailamount=trailamount, trailpercent=trailpercent, parent=parent,
                            transmit=transmit)  # fmt: skip
        return self._submit(order)

    def sell(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None,
             tradeid=0, oco=None, trailamount=None, trailpercent=None, parent=None,
             transmit=True, **kwargs):  # fmt: skip
        order = bt.SellOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit,
                             exectype=exectype, valid=valid, tradeid=tradeid,
                             trailamount=trailamount, trailpercent=trailpercent, parent=parent,
                             transmit=transmit)  # fmt: skip
        return self._submit(order)

    def cancel(self, order: bt.Order) -> None:
        ref = order.info.get("ib_ref")
        if ref and ref in self.ib_orders and order.alive():
            self.journal.record_status(ref, "PendingCancel")
            if not self.p.dry_run:
                self.store.cancel(self.ib_orders[ref])
            else:
                self._set_status(order, "Cancelled")

    def modify(self, order: bt.Order, price: float | None = None, size: float | None = None,
               plimit: float | None = None) -> None:  # fmt: skip
        """Change a working order's price or size: IB modifies an order when the same order id
        is placed again. Backtrader has no modify call, so strategies call this directly.

        ``price`` is the limit of a limit order, the stop of a stop, stop-limit or trailing
        order (a trailing order's current stop, ``trailStopPrice``; its trail is unchanged),
        ``plimit`` the limit of a stop-limit. If IB refuses the change, the order works on as
        it was and the strategy's order keeps its old prices."""
        ref = order.info.get("ib_ref")
        ib_order = self.ib_orders.get(ref)
        if ib_order is None or not order.alive():
            raise ValueError(f"order {order.ref} is not a working IB order")
        tick = self._tick(order.data)
        self.before_change[ref] = {
            "created": (order.created.price, order.created.pricelimit, order.created.size),
            **{k: getattr(ib_order, k) for k in ("totalQuantity", "lmtPrice", "auxPrice",
                                                 "trailStopPrice")},
        }  # fmt: skip
        if size is not None:
            ib_order.totalQuantity = abs(size)
        if price is not None:
            if ib_order.orderType == "LMT":
                ib_order.lmtPrice = to_tick(price, tick)
            elif ib_order.orderType in TRAILING:
                ib_order.trailStopPrice = to_tick(price, tick)
            else:
                ib_order.auxPrice = to_tick(price, tick)
            order.created.price = price
        if plimit is not None:
            ib_order.lmtPrice = to_tick(plimit, tick)
            order.created.pricelimit = plimit
        self.journal.record_status(ref, "PendingModify", why=f"price={price} size={size}")
        if not self.p.dry_run:
            self.store.place(self._contract(order.data), ib_order)

    def _multiplier(self, data) -> float:
        """Cash per point per contract (ES: 50), from the qualified contract; 1 without one."""
        try:
            return multiplier_of(self._contract(data))
        except (KeyError, TypeError):
            return 1.0

    def _min_quantity(self, data) -> float:
        try:
            return min_quantity(self._contract(data))
        except (KeyError, TypeError):
            return 0.0

    def _tick(self, data) -> float:
        return self.store.min_tick(self._contract(data))

    # -- sending ---------------------------------------------------------------------------
    def _submit(self, order: bt.Order) -> bt.Order:
        order.addcomminfo(self.getcommissioninfo(order.data))
        number = self.journal.next_order_number()
        ref = self.journal.order_ref(number)
        order.addinfo(ib_ref=ref)
        self.orders[ref] = order
        data = order.data
        size = abs(order.created.size)
        price = order.created.price or data.close[0]
        signed = order.created.size if order.isbuy() else -abs(order.created.size)
        # Limits on value see a future's whole notional (price x multiplier per contract).
        reason = self.limits.check_order(data._name, signed, price * self._multiplier(data),
                                         self.positions[data].size)  # fmt: skip
        least = self._min_quantity(data)
        if reason is None and size < least:
            reason = f"{size:g} is below IDEALPRO's minimum of {least:,.0f} (an odd lot)"
        parent_ref = order.parent.info.get("ib_ref") if order.parent is not None else None
        if order.parent is not None and not order.parent.alive():
            # A child of a refused parent would go out with parentId 0: a naked stop or limit.
            reason = f"its parent order {parent_ref} was refused"
        ib_order = self._ib_order(order, ref)
        self.ib_orders[ref] = ib_order
        self.journal.record_order(
            ref, data._name, ib_order.action, size, ib_order.orderType,
            limit=getattr(ib_order, "lmtPrice", None) if ib_order.orderType in ("LMT", "STP LMT")
            else None,
            stop=getattr(ib_order, "auxPrice", None) if ib_order.orderType in ("STP", "STP LMT")
            else None,
            trail_percent=order.trailpercent, parent_ref=parent_ref, dry_run=self.p.dry_run,
        )  # fmt: skip
        order.submit(self)
        self.notifs.append(order.clone())
        if reason is not None:
            log.warning("order %s refused: %s", ref, reason)
            self.journal.record_status(ref, "Rejected", why=reason)
            order.reject(self)
            self.notifs.append(order.clone())
            return order
        if self.p.dry_run:
            order.accept(self)
            self.notifs.append(order.clone())
            return order
        contract = self._contract(data)
        parent_ib = self.ib_orders.get(parent_ref) if parent_ref else None
        arrived = getattr(data, "arrived", 0.0)
        self.store.post(self._place_on_loop, contract, ib_order, parent_ib, arrived)
        return order

    def _place_on_loop(
        self, contract: Any, ib_order: Any, parent_ib: Any, arrived: float = 0.0
    ) -> None:
        """On the IB thread: ids are assigned there, so a child reads its parent's id here."""
        ib = self.store.ib
        if not ib.isConnected() or self.store.trading_paused:
            self.store.events.put(("unsent", {"ref": ib_order.orderRef}))
            return
        if parent_ib is not None:
            ib_order.parentId = parent_ib.orderId
        ib.placeOrder(contract, ib_order)
        if arrived:
            self.latencies.append(time.perf_counter() - arrived)
        self.store.events.put(("sent", {"ref": ib_order.orderRef, "order_id": ib_order.orderId}))

    def _ib_order(self, order: bt.Order, ref: str) -> Any:
        ib = self.store.mod
        action = "BUY" if order.isbuy() else "SELL"
        qty = abs(order.created.size)
        et = order.exectype
        price, plimit = order.created.price, order.created.pricelimit
        tick = self._tick(order.data)
        if et in (None, bt.Order.Market, bt.Order.Close):
            o = ib.MarketOrder(action, qty)
        elif et == bt.Order.Limit:
            o = ib.LimitOrder(action, qty, to_tick(price, tick))
        elif et == bt.Order.Stop:
            o = ib.StopOrder(action, qty, to_tick(price, tick))
        elif et == bt.Order.StopLimit:
            o = ib.StopLimitOrder(action, qty, to_tick(plimit or price, tick), to_tick(price, tick))
        elif et in (bt.Order.StopTrail, bt.Order.StopTrailLimit):
            limit = et == bt.Order.StopTrailLimit
            o = ib.Order(action=action, totalQuantity=qty,
                         orderType="TRAIL LIMIT" if limit else "TRAIL")  # fmt: skip
            if order.trailpercent:
                o.trailingPercent = order.trailpercent * 100.0
            else:
                o.auxPrice = to_tick(order.trailamount, tick)
            if price:
                o.trailStopPrice = to_tick(price, tick)
            if limit:  # Backtrader keeps the limit at a fixed distance from the stop
                offset = (price - plimit) if action == "SELL" else (plimit - price)
                o.lmtPriceOffset = to_tick(offset, tick) if price and plimit else 0.0
        else:
            raise ValueError(f"unsupported order type {order.getordername()}")
        o.orderRef = ref
        o.transmit = bool(order.transmit)
        o.tif = "GTC" if et not in (None, bt.Order.Market, bt.Order.Close) else "DAY"
        o.account = self.store.account
        return o

    # -- what IB reported ------------------------------------------------------------------
    def next(self) -> None:
        while True:
            try:
                kind, payload = self.store.events.get_nowait()
            except queue.Empty:
                break
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(payload)
        self.notifs.append(None)  # Backtrader's end-of-cycle marker

    def _on_sent(self, p: dict) -> None:
        self.journal.set_ib_order_id(p["ref"], int(p["order_id"]))

    def _on_reconnected(self, p: Any) -> None:
        """After a reconnect: executions and statuses missed while away, then resend nothing
        IB already knows (orders carry the run's orderRef)."""
        snap = self.reconcile()
        working = {o["ref"] for o in snap["open_orders"]}
        filled = {f["ref"] for f in self.journal.fills()}
        for ref in list(self.unsent):  # sent while disconnected: IB never saw them
            self.unsent.remove(ref)
            order = self.orders.get(ref)
            if ref in working or ref in filled or order is None or not order.alive():
                continue
            log.info("resending %s, which IB never received", ref)
            self.store.post(self._place_on_loop, self._contract(order.data),
                            self.ib_orders[ref], None)  # fmt: skip
        for data in self._datas():
            if hasattr(data, "backfill_after_reconnect"):
                data.backfill_after_reconnect()

    def _on_paused(self, text: str) -> None:
        """1100: Gateway lost IB's servers (the socket is open); orders wait for the restore."""
        self.journal.record_session(event="paused", why=f"1100 {text}")

    def _on_resumed(self, p: dict) -> None:
        """1101/1102: restored; what happened meanwhile is reconciled, waiting orders go."""
        self.journal.record_session(event="resumed", data_lost=p["data_lost"])
        self._on_reconnected(p)

    def _on_unsent(self, p: dict) -> None:
        self.unsent.append(p["ref"])
        why = "IB connectivity lost (1100)" if self.store.trading_paused else "not connected"
        self.journal.record_status(p["ref"], "Unsent", why=why)

    def _on_status(self, p: dict) -> None:
        ref = p["ref"]
        order = self.orders.get(ref)
        if order is not None and order.status == bt.Order.Rejected and p["status"] == "Cancelled":
            return  # IB's Cancelled after a rejection: the order stays Rejected
        status, why = p["status"], p.get("why", "")
        if status == "Inactive" and p.get("why_held"):  # held by IB (a locate), still working
            status, why = "Held", f"Inactive, held: {p['why_held']}"
        self.journal.record_status(ref, status, filled=p["filled"], remaining=p["remaining"],
                                   avg_price=p["avg_price"], why=why)  # fmt: skip
        if order is not None:
            self._set_status(order, p["status"], p.get("why_held", ""))

    def _set_status(self, order: bt.Order, status: str, why_held: str = "") -> None:
        if not order.alive():
            return
        if status == "Inactive" and why_held:
            # Held, not refused: a short sale waiting for a borrow ("locate") works later.
            log.info("order %s held by IB (%s)", order.info.get("ib_ref"), why_held)
            status = "PreSubmitted"
        if status in ("PreSubmitted", "Submitted") and order.status < bt.Order.Accepted:
            order.accept(self)
            self.notifs.append(order.clone())
        elif status in ("Cancelled", "ApiCancelled"):
            order.cancel()
            self.notifs.append(order.clone())
        elif status in ("Inactive", "Rejected"):
            order.reject(self)
            self.notifs.append(order.clone())

    def _on_change_failed(self, p: dict) -> None:
        """IB refused a cancel or a modification: the order works on as it was (or filled)."""
        ref = p["ref"]
        log.warning("IB refused to %s order %s: %s; it works on", p["kind"], ref, p["why"])
        self.journal.record_status(ref, "Submitted", why=f"{p['kind']} refused: {p['why']}")
        before = self.before_change.pop(ref, None)
        order, ib_order = self.orders.get(ref), self.ib_orders.get(ref)
        if p["kind"] == "modify" and before is not None and order is not None:
            order.created.price, order.created.pricelimit, order.created.size = before["created"]
            for key in ("totalQuantity", "lmtPrice", "auxPrice", "trailStopPrice"):
                setattr(ib_order, key, before[key])

    def _on_warning(self, p: dict) -> None:
        log.info("IB about order %s: %s", p["ref"], p["why"])
        self.journal.record_status(p["ref"], "Warning", why=p["why"])

    def _on_error(self, p: tuple) -> None:
        # Order errors reach the orders as statuses (the store reads them from ib_async's
        # trade log: rejections, refused changes, warnings); here they are only kept.
        self.errors.append(p)

    def _on_exec(self, p: dict) -> None:
        # The journal knows every execution already applied (record_fill says so): after a
        # reconnect IB may report one again.
        if p["exec_id"] in self.execs or not self.journal.record_fill(
            p["exec_id"], p["ref"], p["symbol"], when_of(p.get("time")), p["shares"], p["price"]
        ):
            return
        self.execs[p["exec_id"]] = p
        self._try_apply(p["exec_id"])

    def _on_commission(self, p: dict) -> None:
        """A commission report, before or after its execution (IB promises no order). For
        an execution applied already (journaled at start without its commission) the money
        is taken from cash now, once: a report IB sends again changes nothing."""
        exec_id = p["exec_id"]
        before = self.journal.commission(exec_id)
        applied = exec_id not in self.execs and self.journal.has_fill(exec_id)
        self.journal.record_commission(exec_id, p["commission"], p.get("realized_pnl"))
        if applied:
            self.cash -= float(p["commission"]) - float(before or 0.0)
            return
        self.comms[exec_id] = p
        self._try_apply(exec_id)

    def _try_apply(self, exec_id: str) -> None:
        if exec_id not in self.execs or exec_id not in self.comms:
            return
        e, c = self.execs.pop(exec_id), self.comms.pop(exec_id)
        order = self.orders.get(e["ref"])
        if order is None and e["ref"] in self.adopted:  # no Backtrader order: book and cash
            data = self.adopted[e["ref"]]
            mult = self._multiplier(data)
            self.positions[data].update(e["shares"], e["price"])
            self.cash -= e["shares"] * e["price"] * mult + float(c["commission"])
            log.info("fill of adopted order %s: %+g @ %g", e["ref"], e["shares"], e["price"])
            return
        if order is None:
            log.warning("fill %s for an order this session does not know (%s)", exec_id, e["ref"])
            return
        self._apply_fill(order, e["shares"], e["price"], float(c["commission"]), e.get("time"))

    def _apply_fill(self, order: bt.Order, shares: float, price: float, comm: float,
                    at: float | None = None) -> None:  # fmt: skip
        """``at``: the execution's own time (epoch s), not when its last report arrived."""
        data = order.data
        pos = self.positions[data]
        old_price = pos.price
        psize, pprice, opened, closed = pos.update(shares, price)
        ci = self.getcommissioninfo(data)
        total = abs(shares) or 1.0
        closedcomm = comm * abs(closed) / total
        openedcomm = comm - closedcomm
        closedvalue = ci.getoperationcost(closed, old_price) if closed else 0.0
        openedvalue = ci.getoperationcost(opened, price) if opened else 0.0
        pnl = ci.profitandloss(-closed, old_price, price) if closed else 0.0
        self.cash -= shares * price * self._multiplier(data) + comm  # futures: x multiplier
        when = bt.date2num(when_of(at).replace(tzinfo=None)) if at is not None else (
            data.datetime[0] if len(data) else bt.date2num(dt.datetime.now(dt.UTC)))  # fmt: skip
        order.execute(when, shares, price, closed, closedvalue, closedcomm, opened, openedvalue,
                      openedcomm, 0.0, pnl, psize, pprice)  # fmt: skip
        if order.executed.remsize:
            order.partial()
        else:
            order.completed()
        self.notifs.append(order.clone())
