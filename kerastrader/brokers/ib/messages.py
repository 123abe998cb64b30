"""IB's error codes and texts, and what they mean for a session: a pure mapping, no I/O.

TWS / IB Gateway report everything through one ``error(reqId, code, text)`` callback: true
errors, warnings, and notices that nothing is wrong. Some codes mean different things by
their text (162 is a pacing violation, missing permissions or an empty result), some by what
the client was doing (110 refuses a new order but only warns about a modification). Read
from IB's message-code tables and the texts real sessions log (quoted in ib_insync/ib_async
issues); where IB documents no text the code alone decides.
"""

from __future__ import annotations

import enum


class Meaning(enum.Enum):
    PACING = "pacing"  # 162: wait and ask again
    NO_PERMISSIONS = "no permissions"  # 162: no market-data subscription for the exchange
    NO_DATA = "no data"  # 162: HMDS has nothing for that request
    HISTORY_CANCELLED = "history cancelled"  # 162: the query was cancelled (e.g. a timeout)
    HISTORY_ERROR = "history error"  # any other 162
    MARKET_DATA = "market data refused"  # real-time data: not subscribed, competing session
    UNKNOWN_CONTRACT = "unknown contract"  # 200
    CONNECTIVITY_LOST = "connectivity lost"  # 1100: Gateway lost IB's servers, socket open
    RESTORED_DATA_LOST = "restored, data lost"  # 1101: subscribe to market data again
    RESTORED_DATA_KEPT = "restored, data kept"  # 1102: carry on
    ORDER_REJECTED = "order rejected"  # the order never worked
    PRICE_INCREMENT = "price not on the tick grid"  # 110: rejects a new order, warns a modify
    CANCEL_FAILED = "cancel failed"  # the order may still work (or be filled)
    MODIFY_FAILED = "modify failed"  # the order works on, unchanged
    ORDER_WARNING = "order warning"  # the order works on (or waits: 399, 404)
    NOTICE = "notice"  # farm connections and the like: nothing is wrong
    OTHER = "other"


CONNECTIVITY = {
    1100: Meaning.CONNECTIVITY_LOST,
    1101: Meaning.RESTORED_DATA_LOST,
    1102: Meaning.RESTORED_DATA_KEPT,
    1300: Meaning.CONNECTIVITY_LOST,  # the API port changed: this connection is dropped
}
# Real-time market data refused: 354 not subscribed, 10089/10090 an API subscription needed,
# 10167/10168 delayed data only/not enabled, 10197 a competing live session, 420 an invalid
# real-time query (permissions).
MARKET_DATA_CODES = frozenset({354, 420, 10089, 10090, 10167, 10168, 10197})
# Orders IB refused outright: duplicate id, rejected, no security definition, incomplete,
# price outside the precautionary percentage, precautions (size, value), unsupported type,
# the order type cannot be placed, no trading permissions.
REJECTION_CODES = frozenset({103, 107, 109, 163, 200, 201, 203, 383, 387, 460, 10329})
# A cancel that could not be done: not cancellable (161), not found (10147), cannot be
# cancelled in its state (10148, e.g. Filled).
CANCEL_FAILED_CODES = frozenset({161, 10147, 10148})
# A modification that could not be done: filled order (104), does not match (105), cannot
# change the order type (329), modify failed (134), still being processed (2102).
MODIFY_FAILED_CODES = frozenset({104, 105, 134, 329, 2102})
# Warnings about a working order: 399 "will not be placed until ...", 404 "held while we
# locate the shares", 434 size zero, 202 is a cancel confirmation (not a failure).
ORDER_WARNING_CODES = frozenset({202, 399, 404, 434})
NOTICE_CODES = range(2100, 2200)  # 2104/2106/2158 farm OK, 2103/2105/2157 farm broken...

PERMISSIONS_HINT = (
    "subscribe to that exchange's market data in IB's Client Portal (Settings > Market Data "
    "Subscriptions) and, for a paper account, share the live account's market data with it "
    "(Settings > Account Settings > Paper Trading Account)"
)
COMPETING_HINT = (
    "the live account is logged in elsewhere (TWS, the mobile app, the web): log it out, or "
    "trade the paper account without live data"
)


def classify(code: int, text: str = "") -> Meaning:
    """What ``error(reqId, code, text)`` means (see :class:`Meaning`)."""
    low = text.lower()
    if code == 162:
        if "pacing violation" in low:
            return Meaning.PACING
        if "no market data permissions" in low or "requires additional subscription" in low:
            return Meaning.NO_PERMISSIONS
        if "returned no data" in low:
            return Meaning.NO_DATA
        if "query cancelled" in low:
            return Meaning.HISTORY_CANCELLED
        return Meaning.HISTORY_ERROR
    if code in CONNECTIVITY:
        return CONNECTIVITY[code]
    if code in MARKET_DATA_CODES:
        return Meaning.MARKET_DATA
    if code == 200:
        return Meaning.UNKNOWN_CONTRACT
    if code == 110:
        return Meaning.PRICE_INCREMENT
    if code in REJECTION_CODES:
        return Meaning.ORDER_REJECTED
    if code in CANCEL_FAILED_CODES:
        return Meaning.CANCEL_FAILED
    if code in MODIFY_FAILED_CODES:
        return Meaning.MODIFY_FAILED
    if code in ORDER_WARNING_CODES:
        return Meaning.ORDER_WARNING
    if code in NOTICE_CODES:
        return Meaning.NOTICE
    return Meaning.OTHER


def is_rejection(code: int, text: str = "", *, modifying: bool = False) -> bool:
    """Whether an error for an order means IB refused it (it never worked).

    While a modification or a cancel is pending, an error is about that request: the order
    itself works on (or was filled), so nothing is a rejection then."""
    if modifying:
        return False
    return classify(code, text) in (Meaning.ORDER_REJECTED, Meaning.PRICE_INCREMENT)


def market_data_line(contract: str, code: int, text: str) -> str:
    """One line for a refused data request: what IB said, about what, and the fix."""
    meaning = classify(code, text)
    said = f"IB error {code} for {contract}: {text}"
    if meaning is Meaning.NO_PERMISSIONS or (meaning is Meaning.MARKET_DATA and code != 10197):
        return f"{said}; {PERMISSIONS_HINT}"
    if code == 10197:
        return f"{said}; {COMPETING_HINT}"
    if meaning is Meaning.NO_DATA:
        return (
            f"{said}; check the contract (symbol, exchange, currency) and that the requested "
            "period has trading days"
        )
    if meaning is Meaning.UNKNOWN_CONTRACT:
        return f"{said}; check paper.sec_type, paper.exchange and paper.currency"
    return said
