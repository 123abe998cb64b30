"""What the simulated gateway refuses before an order works: one rule per check, pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.orders import Order

SUPPORTED_ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "TRAIL")


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
    if order.order_type == "TRAIL" and order.aux is None and order.trailing_percent is None:
        return 201, "Order rejected - reason: missing trailing amount"
    return None
