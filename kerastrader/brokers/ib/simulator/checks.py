"""What the simulated gateway refuses before an order works: one rule per check, pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerastrader.brokers.ib.simulator.scenarios import (
    MIN_TICK_TEXT,
    SIZE_LIMIT_TEXT,
    VALUE_LIMIT_TEXT,
    IBLike,
)

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.orders import Order

SUPPORTED_ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT")
TRAILING = ("TRAIL", "TRAIL LIMIT")


def refusal(order: Order) -> tuple[int, str] | None:
    """IB's (code, text) for an order the gateway cannot work, or None when it can."""
    if order.order_type not in SUPPORTED_ORDER_TYPES:
        text = f"Unsupported order type for this exchange and security type: {order.order_type}"
        return 387, text
    if order.action not in ("BUY", "SELL") or not order.quantity > 0:
        return 201, "Order rejected - reason: invalid action or quantity"
    if order.order_type in ("LMT", "STP LMT") and order.lmt is None:
        return 201, "Order rejected - reason: missing limit price"
    if order.order_type in ("STP", "STP LMT") and order.aux is None:
        return 201, "Order rejected - reason: missing stop price"
    if order.order_type in TRAILING and order.aux is None and order.trailing_percent is None:
        return 201, "Order rejected - reason: missing trailing amount"
    if order.order_type == "TRAIL LIMIT" and order.lmt_offset is None:
        return 201, "Order rejected - reason: missing limit price offset"
    return None


def prices(order: Order) -> list[float]:
    """The prices of ``order`` that must sit on the contract's price grid."""
    out = []
    if order.order_type in ("LMT", "STP LMT"):
        out.append(order.lmt)
    if order.order_type in ("STP", "STP LMT") or (
        order.order_type in TRAILING and order.trailing_percent is None
    ):
        out.append(order.aux)  # the stop, or the trailing amount
    if order.order_type in TRAILING:
        out += [order.initial_stop, order.lmt_offset]
    return [p for p in out if p is not None]


def off_tick(price: float, tick: float) -> bool:
    steps = price / tick
    return abs(steps - round(steps)) > 1e-6


def ib_refusal(
    order: Order,
    ib: IBLike,
    price: float | None,
    currency: str,
    tick: float | None = None,
    multiplier: float = 1.0,
) -> tuple[int, str] | None:
    """What a real Gateway adds: the minimum tick (110) and the order precautions (383).

    ``price`` values the order for the Total Value Limit (its limit or stop, else the last
    price), times the contract's ``multiplier``; ``tick``: the contract's grid (default
    ``ib.min_tick``)."""
    tick = ib.min_tick if tick is None else tick
    if tick > 0 and any(off_tick(p, tick) for p in prices(order)):
        return 110, MIN_TICK_TEXT
    if ib.bypass_precautions:
        return None
    if ib.size_limit is not None and order.quantity > ib.size_limit:
        return 383, SIZE_LIMIT_TEXT.format(order_id=order.order_id, limit=ib.size_limit)
    value = order.quantity * (price or 0.0) * multiplier
    if ib.value_limit is not None and value > ib.value_limit:
        text = VALUE_LIMIT_TEXT.format(
            order_id=order.order_id, value=value, limit=ib.value_limit, currency=currency
        )
        return 383, text
    return None
