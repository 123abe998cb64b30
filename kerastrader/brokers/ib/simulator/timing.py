"""When IB works an order (IB-like mode): regular hours, DAY expiry, short-sale locates.

- An order that reaches the exchange outside regular hours waits for the next open: IB warns
  with 399 ("your order will not be placed at the exchange until ...") and reports it
  PreSubmitted; at the open it becomes Submitted.
- A DAY order (``tif`` DAY or empty) that worked during a session and is still open at the
  close is cancelled then.
- A short sale of a symbol in ``IBLike.hard_to_borrow`` is held while IB looks for shares:
  warning 404, orderStatus Inactive with ``whyHeld="locate"``; after ``locate_steps``
  5-second bars it is Submitted and works (never, with ``locate_steps=None``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kerastrader.brokers.ib.simulator.scenarios import LOCATE_TEXT, NOT_UNTIL_OPEN_TEXT

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.orders import Order, OrderBook

log = logging.getLogger(__name__)


def on_transmit(book: OrderBook, order: Order) -> None:
    """IB's holds on an order as it reaches the exchange (before its first status)."""
    gw = book.gw
    market = gw.market
    conn = gw.conn_of(order.client_id)
    ib = gw.ib
    if ib is None:
        return
    if order.buy is False and order.symbol in ib.hard_to_borrow:
        held = gw.ledger.positions.get(order.symbol, 0.0)
        if held - order.quantity < -1e-9:
            order.why_held = "locate"
            order.locate_left = ib.locate_steps
            if conn is not None:
                gw.error(conn, order.order_id, 404, LOCATE_TEXT)
            return
    if not market.in_session():
        order.held_for_open = True
        if conn is not None:
            opens = market.calendar.local(market.next_open())
            text = NOT_UNTIL_OPEN_TEXT.format(
                action=order.action, quantity=order.quantity, symbol=order.symbol,
                exchange=order.contract.get("exchange", ""),
                open=opens.strftime("%Y-%m-%d %H:%M:%S"), tz=ib.time_zone,
            )  # fmt: skip
            gw.error(conn, order.order_id, 399, text)


def status_for(order: Order, placed: str) -> str:
    """The status to report for a transmitted order, given the one it would have."""
    if order.why_held == "locate":
        return "Inactive"
    if order.held_for_open:
        return "PreSubmitted"
    return placed


def session_opened(book: OrderBook) -> None:
    """At the open: orders that waited for it are Submitted (stops stay PreSubmitted)."""
    for order in book.by_seq():
        if order.held_for_open and not order.done:
            order.held_for_open = False
            if not order.why_held:
                book.set_status(order, book.placed_status(order))


def session_closed(book: OrderBook) -> None:
    """At the close: DAY orders that worked during the session are cancelled."""
    step = book.gw.market.step  # the new session's first step
    for order in book.by_seq():
        day = order.raw.get("tif", "") in ("", "DAY")
        if day and not order.done and order.transmitted and order.eligible_step < step:
            log.info("DAY order %s expires at the close", order.order_id)
            order.why_held = ""
            book.set_status(order, "Cancelled")


def step_done(book: OrderBook) -> None:
    """After each 5-second step: locates that succeed release their orders."""
    for order in book.by_seq():
        if order.why_held != "locate" or order.locate_left is None:
            continue
        order.locate_left -= 1
        if order.locate_left <= 0:
            order.why_held = ""
            order.locate_left = None
            order.eligible_step = book.gw.market.step + 1
            book.set_status(order, book.placed_status(order))
