"""Orders of the simulated gateway: placing, modifying, cancelling, and what IB says about them.

``MKT``, ``LMT``, ``STP``, ``STP LMT`` and ``TRAIL`` (``trailingPercent`` or a trailing
amount in ``auxPrice``; ``trailStopPrice`` as the initial stop) are supported; other types
are rejected with error 387 (:mod:`~kerastrader.brokers.ib.simulator.checks`). ``tif`` and
``outsideRth`` are recorded but every order is good till cancelled (a daily-bar replay would
otherwise expire every DAY order at once), and there is no margin or buying-power check.
Orders sent with ``transmit=False`` are held without any message (ib_async keeps them at
PendingSubmit) until an order of the same parent group arrives with ``transmit=True``;
bracket children stay PreSubmitted until the parent fills, become eligible from the next step
(as Backtrader activates them) and are one-cancels-all, as are orders sharing an
``ocaGroup``. Each accepted order gets an ``openOrder`` (ib_async needs it: it links the
permId, without which it never emits ``commissionReportEvent``) and an ``orderStatus``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kerastrader.brokers.ib.simulator import timing
from kerastrader.brokers.ib.simulator.checks import TRAILING, ib_refusal, refusal
from kerastrader.brokers.ib.simulator.clock import ib_time
from kerastrader.brokers.ib.simulator.layouts import (
    CONTRACT_FIELDS,
    completed_order_fields,
    open_order_fields,
    opt_float,
    parse_place_order,
    to_int,
)
from kerastrader.brokers.ib.simulator.market import EXCHANGE
from kerastrader.brokers.ib.simulator.scenarios import (
    CANCEL_REFUSED_TEXT,
    MODIFY_REFUSED_TEXT,
    NO_DEFINITION_TEXT,
    REJECT_TEXT,
)
from kerastrader.brokers.ib.wire import SERVER_VERSION, In, Out, ProtocolError

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway

log = logging.getLogger(__name__)

PERMID_BASE = 900_000_000
DONE = frozenset({"Filled", "Cancelled", "Inactive", "ApiCancelled"})


@dataclass
class Order:
    """One order as the gateway tracks it."""

    seq: int  # placement sequence: orders are matched in this order, as Backtrader does
    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    contract: dict[str, Any]  # the canonical contract (echoed in openOrder, execDetails)
    raw: dict[str, Any]  # parse_place_order's raw order fields
    action: str
    quantity: float
    order_type: str
    lmt: float | None
    aux: float | None
    trailing_percent: float | None
    parent_id: int
    transmit: bool
    oca_group: str
    status: str = "PendingSubmit"
    transmitted: bool = False
    active: bool = False  # False while a bracket child waits for its parent's fill
    eligible_step: int = 0  # first replay step this order may fill on
    stop: float | None = None  # current trigger of STP, STP LMT and TRAIL
    triggered: bool = False  # STP LMT: the stop was hit, now a limit order
    filled: float = 0.0
    avg_price: float = 0.0
    last_price: float = 0.0
    completed_time: str = ""
    initial_stop: float | None = None  # TRAIL, TRAIL LIMIT: trailStopPrice as sent
    lmt_offset: float | None = None  # TRAIL LIMIT: the limit's distance from the stop
    held_for_open: bool = False  # IB-like: reached the exchange outside regular hours
    why_held: str = ""  # IB-like: "locate" while a short sale waits for shares
    locate_left: int | None = None  # 5-second bars until the shares are found

    @property
    def buy(self) -> bool:
        return self.action == "BUY"

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)

    @property
    def done(self) -> bool:
        return self.status in DONE and not self.why_held

    def trail_amount(self, price: float) -> float:
        if self.trailing_percent is not None:
            return price * self.trailing_percent / 100
        return self.aux or 0.0


def order_record(order_id: int, client_id: int, symbol: str, raw: dict[str, Any]) -> dict:
    """What ``gateway.orders`` keeps of a placeOrder: the fields a test asserts on."""
    return {
        "orderId": order_id,
        "clientId": client_id,
        "orderRef": raw["orderRef"],
        "symbol": symbol,
        "action": raw["action"],
        "totalQuantity": float(raw["totalQuantity"] or 0),
        "orderType": raw["orderType"],
        "lmtPrice": opt_float(raw["lmtPrice"]),
        "auxPrice": opt_float(raw["auxPrice"]),
        "trailingPercent": opt_float(raw["trailingPercent"]),
        "trailStopPrice": opt_float(raw.get("trailStopPrice", "")),
        "lmtPriceOffset": opt_float(raw.get("lmtPriceOffset", "")),
        "tif": raw["tif"],
        "parentId": to_int(raw["parentId"]),
        "transmit": raw["transmit"] not in ("", "0"),
        "ocaGroup": raw["ocaGroup"],
    }


class OrderBook:
    """Every order the gateway accepted, keyed by (clientId, orderId).

    ``records``: every placeOrder received (modifications too; what-if orders not), as
    :func:`order_record` dicts, in order.
    """

    def __init__(self, gateway: SimulatedGateway, next_order_id: int) -> None:
        self.gw = gateway
        self.records: list[dict] = []
        self.orders: dict[tuple[int, int], Order] = {}
        self.seq = 0
        self.new_orders = 0
        self.next_id = int(next_order_id)
        self.next_perm = PERMID_BASE

    def by_seq(self) -> list[Order]:
        return sorted(self.orders.values(), key=lambda o: o.seq)

    # ------------------------------------------------------------------ placing

    def on_place_order(self, conn: Connection, fields: list[str]) -> None:
        gw = self.gw
        try:
            parsed = parse_place_order(fields, SERVER_VERSION)
        except ProtocolError as exc:  # answer against the orderId so the client's trade hears it
            log.error("%r: unreadable placeOrder: %s", conn, exc)
            order_id = to_int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else -1
            gw.error(conn, order_id, 321, f"Error validating request: {exc}")
            return
        raw, order_id = parsed["order"], to_int(parsed["orderId"])
        client_id = conn.client_id or 0
        if raw.get("whatIf") not in ("", "0", None):
            gw.ledger.what_if(conn, order_id, parsed)
            return
        symbol = gw.market.lookup([parsed["contract"][k] for k in CONTRACT_FIELDS])
        record = order_record(
            order_id, client_id, symbol if symbol is not None else parsed["contract"]["symbol"], raw
        )
        with gw.lock:
            self.records.append(record)
        self.next_id = max(self.next_id, order_id + 1)
        existing = self.orders.get((client_id, order_id))
        if existing is not None:
            self.modify(conn, existing, record, raw)
            return
        self.new_orders += 1
        self.seq += 1
        self.next_perm += 1
        exchange = parsed["contract"]["exchange"] or EXCHANGE
        order = Order(
            seq=self.seq,
            order_id=order_id,
            client_id=client_id,
            perm_id=self.next_perm,
            symbol=record["symbol"],
            contract=gw.market.contract(symbol, exchange)
            if symbol is not None
            else dict(parsed["contract"]),
            raw=raw,
            action=record["action"],
            quantity=record["totalQuantity"],
            order_type=record["orderType"],
            lmt=record["lmtPrice"],
            aux=record["auxPrice"],
            trailing_percent=record["trailingPercent"],
            parent_id=record["parentId"],
            transmit=record["transmit"],
            oca_group=record["ocaGroup"],
            initial_stop=opt_float(raw.get("trailStopPrice", "")),
            lmt_offset=opt_float(raw.get("lmtPriceOffset", "")),
        )
        with gw.lock:
            self.orders[(client_id, order_id)] = order
        refused = refusal(order) if symbol is not None else (200, NO_DEFINITION_TEXT)
        if self.new_orders in gw.faults.reject_orders and symbol is not None:
            refused = 201, REJECT_TEXT
        if refused is None and gw.ib is not None:
            refused = self.ib_refusal(order)
        if refused is not None:
            self.reject(conn, order, *refused)
        elif order.transmit:
            self.transmit_group(order)
        else:
            log.info("order %s held until its group is transmitted", order.order_id)

    def ib_refusal(self, order: Order) -> tuple[int, str] | None:
        price = order.lmt or order.aux if order.order_type not in TRAILING else None
        price = price or self.gw.market.last_close(order.symbol)
        market = self.gw.market
        known = order.symbol in market.conids
        tick = market.min_tick(order.symbol) if known else None
        mult = market.multiplier(order.symbol) if known else 1.0
        return ib_refusal(order, self.gw.ib, price, self.gw.currency, tick, mult)

    def reject(self, conn: Connection, order: Order, code: int, text: str) -> None:
        log.info("order %s rejected: %s %s", order.order_id, code, text)
        self.gw.error(conn, order.order_id, code, text)
        self.set_status(order, "Cancelled")

    def modify(self, conn: Connection, order: Order, record: dict, raw: dict) -> None:
        if order.done:
            text = f"Can't modify a {order.status.lower()} order"
            self.gw.error(conn, order.order_id, 104, text)
            return
        if order.seq in self.gw.faults.refuse_modify:
            self.gw.error(conn, order.order_id, 105, MODIFY_REFUSED_TEXT)
            return
        if record["totalQuantity"] < order.filled:
            self.gw.error(conn, order.order_id, 201, "Order rejected - reason: quantity < filled")
            return
        changed = dataclasses.replace(
            order, quantity=record["totalQuantity"], lmt=record["lmtPrice"],
            aux=record["auxPrice"], trailing_percent=record["trailingPercent"],
            initial_stop=opt_float(raw.get("trailStopPrice", "")),
            lmt_offset=opt_float(raw.get("lmtPriceOffset", "")),
        )  # fmt: skip
        refused = self.ib_refusal(changed) if self.gw.ib is not None else None
        if refused is not None:  # the modification is refused; the order works on unchanged
            log.info("order %s: modification refused: %s %s", order.order_id, *refused)
            self.gw.error(conn, order.order_id, *refused)
            return
        moved = changed.initial_stop is not None and changed.initial_stop != order.initial_stop
        order.raw = raw
        order.initial_stop, order.lmt_offset = changed.initial_stop, changed.lmt_offset
        order.quantity = record["totalQuantity"]
        order.lmt, order.aux = record["lmtPrice"], record["auxPrice"]
        if order.order_type in ("STP", "STP LMT") and order.aux is not None:
            order.stop = order.aux
        order.trailing_percent = record["trailingPercent"]
        order.oca_group = record["ocaGroup"]
        if order.order_type in TRAILING and moved:
            order.stop = order.initial_stop  # a new trailStopPrice moves the working stop
        log.info("order %s modified", order.order_id)
        if not order.transmitted:
            order.transmit = record["transmit"]
            if order.transmit:
                self.transmit_group(order)
            return
        self.send_open_order(order)
        self.send_status(order)

    def transmit_group(self, trigger: Order) -> None:
        """Send an order and the held orders of its parent group to the "exchange"."""
        root = trigger.parent_id or trigger.order_id
        key = trigger.client_id
        group = [
            o
            for o in self.by_seq()
            if o.client_id == key
            and not o.transmitted
            and not o.done
            and (o.order_id == root or o.parent_id == root or o is trigger)
        ]
        for order in group:
            order.transmitted = True
            order.eligible_step = self.gw.market.step + 1
            parent = self.orders.get((key, order.parent_id)) if order.parent_id else None
            if parent is not None and parent.status == "Cancelled":
                self.set_status(order, "Cancelled")
                continue
            order.active = parent is None or parent.status == "Filled"
            if self.gw.ib is not None:
                timing.on_transmit(self, order)
            if order.order_type in ("STP", "STP LMT"):
                order.stop = order.aux
            elif order.order_type in TRAILING and order.active:
                order.stop = self.initial_trail(order)  # a child starts trailing when active
            self.send_open_order(order, self.placed_status(order))
            self.set_status(order, self.placed_status(order))

    def placed_status(self, order: Order) -> str:
        """Submitted for orders working at the "exchange"; PreSubmitted for held ones."""
        if not order.active or order.order_type in ("STP", "STP LMT", *TRAILING):
            status = "PreSubmitted"
        else:
            status = "Submitted"
        return status if self.gw.ib is None else timing.status_for(order, status)

    def initial_trail(self, order: Order) -> float | None:
        if order.initial_stop is not None:
            return order.initial_stop
        close = self.gw.market.last_close(order.symbol)
        if close is None:
            return None  # no price yet: set from the first bar's close
        return close + order.trail_amount(close) * (1 if order.buy else -1)

    def after_fill(self, order: Order) -> None:
        """Bracket and OCA consequences of a complete fill."""
        for other in self.by_seq():
            if other is order or other.done or other.client_id != order.client_id:
                continue
            if other.parent_id == order.order_id and other.transmitted:
                other.active = True  # a bracket child works from the next bar on
                other.eligible_step = self.gw.market.step + 1
                if other.order_type in TRAILING and other.stop is None:
                    other.stop = self.initial_trail(other)
                self.set_status(other, self.placed_status(other))
            elif order.parent_id and other.parent_id == order.parent_id:
                self.set_status(other, "Cancelled")  # the bracket's other leg
            elif order.oca_group and other.oca_group == order.oca_group:
                self.set_status(other, "Cancelled")

    # ------------------------------------------------------------------ cancelling

    def on_cancel_order(self, conn: Connection, fields: list[str]) -> None:
        order_id = to_int(fields[2])
        order = self.orders.get((conn.client_id or 0, order_id))
        if order is None:
            self.gw.error(conn, order_id, 135, f"Can't find order with id = {order_id}")
            return
        if order.done:
            self.gw.error(
                conn,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
            return
        if order.seq in self.gw.faults.refuse_cancel:
            self.gw.error(conn, order_id, 161, f"{CANCEL_REFUSED_TEXT} {order.perm_id}")
            return
        self.cancel(order)

    def on_global_cancel(self, conn: Connection, fields: list[str]) -> None:
        for order in self.by_seq():
            if not order.done:
                self.cancel(order)

    def cancel(self, order: Order) -> None:
        """Cancel an order and, for a bracket parent, its children."""
        self.set_status(order, "Cancelled")
        for child in self.orders.values():
            if (
                child.client_id == order.client_id
                and child.parent_id == order.order_id
                and not child.done
            ):
                self.set_status(child, "Cancelled")

    # ------------------------------------------------------------------ reporting

    def set_status(self, order: Order, status: str, send: bool = True) -> None:
        """Change the order's status and report it (``send=False``: the caller reports it,
        e.g. later, from :meth:`status_fields` taken now)."""
        if order.status == status:
            return
        with self.gw.lock:
            order.status = status
            if status in DONE:
                order.completed_time = ib_time(self.gw.market.now()) + " UTC"
        log.debug("order %s -> %s", order.order_id, status)
        if send:
            self.send_status(order)

    def status_fields(self, order: Order) -> list[Any]:
        """The orderStatus message for the order as it stands now."""
        return [
            Out.ORDER_STATUS, order.order_id, order.status, order.filled, order.remaining,
            order.avg_price, order.perm_id, order.parent_id, order.last_price, order.client_id,
            order.why_held, 0,
        ]  # fmt: skip

    def send_status(self, order: Order, fields: list[Any] | None = None) -> None:
        conn = self.gw.conn_of(order.client_id)
        if conn is None:
            return
        self.gw.send(conn, *(fields or self.status_fields(order)))

    def order_raw(self, order: Order) -> dict[str, Any]:
        raw = dict(order.raw)
        raw.update(clientId=order.client_id, permId=order.perm_id)
        if order.order_type in TRAILING and order.stop is not None:
            raw["trailStopPrice"] = order.stop
        return raw

    def send_open_order(
        self, order: Order, status: str | None = None, conn: Connection | None = None
    ) -> None:
        conn = conn or self.gw.conn_of(order.client_id)
        if conn is None:
            return
        state = {"status": status or order.status}
        fields = open_order_fields(order.order_id, order.contract, self.order_raw(order), state)
        self.gw.send(conn, *fields)

    def on_req_open_orders(self, conn: Connection, fields: list[str]) -> None:
        everyone = to_int(fields[0]) in (In.REQ_ALL_OPEN_ORDERS, In.REQ_AUTO_OPEN_ORDERS)
        for order in self.by_seq():
            if order.transmitted and not order.done:
                if everyone or order.client_id == conn.client_id:
                    self.send_open_order(order, conn=conn)
                    if order.client_id == conn.client_id:
                        self.send_status(order)
        self.gw.send(conn, Out.OPEN_ORDER_END, 1)

    def on_req_completed_orders(self, conn: Connection, fields: list[str]) -> None:
        for order in self.by_seq():
            if order.done:
                raw = self.order_raw(order)
                raw["filledQuantity"] = order.filled
                parent = self.orders.get((order.client_id, order.parent_id))
                raw["parentPermId"] = parent.perm_id if parent else ""
                state = {
                    "status": order.status,
                    "completedTime": order.completed_time,
                    "completedStatus": order.status,
                }
                self.gw.send(conn, *completed_order_fields(order.contract, raw, state))
        self.gw.send(conn, Out.COMPLETED_ORDERS_END)

    # ------------------------------------------------------------------ IB-like timing

    def session_opened(self) -> None:
        timing.session_opened(self)

    def session_closed(self) -> None:
        timing.session_closed(self)

    def step_done(self) -> None:
        timing.step_done(self)

    def states(self) -> list[dict]:
        """Status of every order the gateway accepted, in placement order."""
        return [
            {
                "orderId": o.order_id,
                "clientId": o.client_id,
                "permId": o.perm_id,
                "symbol": o.symbol,
                "status": o.status,
                "filled": o.filled,
                "remaining": o.remaining,
                "avgFillPrice": o.avg_price,
                "lmtPrice": o.lmt,
                "auxPrice": o.aux,
                "whyHeld": o.why_held,
            }
            for o in self.by_seq()
        ]
