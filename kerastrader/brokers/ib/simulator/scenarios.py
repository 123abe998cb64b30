"""What can go wrong, scripted: the faults a test injects and the texts IB answers them with."""

from __future__ import annotations

from dataclasses import dataclass, field

REJECT_TEXT = "Order rejected - reason: simulated rejection (Faults.reject_orders)"
PACING_TEXT = (
    "Historical Market Data Service error message:API historical data query cancelled: "
    "pacing violation"
)
NO_DEFINITION_TEXT = "No security definition has been found for the request"
CLIENT_ID_IN_USE_TEXT = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)


@dataclass
class Faults:
    """Failures to inject, for rehearsing a client's error handling.

    The lists and sets are read while the gateway runs, so a test may add an entry (e.g.
    ``faults.disconnect_after.append(gateway.messages_sent + 1)``) at the moment it wants
    the fault.
    """

    # Close the client socket after the server has sent this many messages in total (counting
    # every frame since start, the handshake reply included); each entry fires once.
    disconnect_after: list[int] = field(default_factory=list)
    # 1-based numbers of placed (new, non-what-if) orders to reject with error 201.
    reject_orders: set[int] = field(default_factory=set)
    # Split each fill into this many executions (execDetails + commissionReport each).
    partial_fills: int = 1
    # 1-based numbers of reqHistoricalData requests answered with error 162 (pacing).
    pacing_violation_on: set[int] = field(default_factory=set)
