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
    # 1-based numbers of placed orders whose cancel IB refuses (161) or whose modifications
    # it refuses (105); the order works on unchanged, as at IB.
    refuse_cancel: set[int] = field(default_factory=set)
    refuse_modify: set[int] = field(default_factory=set)


CANCEL_REFUSED_TEXT = "Cancel attempted when order is not in a cancellable state.  Order permId ="
MODIFY_REFUSED_TEXT = "Order being modified does not match original order."


# IB's own texts, as TWS / IB Gateway send them (IB's message-code tables and logs of real
# sessions quoted in ib_insync/ib_async issues).
HMDS = "Historical Market Data Service error message:"
HMDS_PACING_TEXT = HMDS + "Historical data request pacing violation"
HMDS_PERMISSIONS_TEXT = HMDS + "No market data permissions for {exchange} STK"
HMDS_NO_DATA_TEXT = HMDS + "HMDS query returned no data: {symbol}@{exchange} Trades"
# TRADES asked for a forex pair (IB disseminates no trades for CASH; logs quoted in issues)
HMDS_NO_FOREX_TRADES_TEXT = (
    HMDS + "No historical market data for {base}/CASH@FXSUBPIP Last {duration}"
)
NOT_SUBSCRIBED_TEXT = "Requested market data is not subscribed."
COMPETING_TEXT = "No market data during competing live session"
WHAT_TO_SHOW_TEXT = (
    "Error validating request.-'bY' : cause - What to show field is missing or incorrect."
)
BAR_SIZE_TEXT = (
    "Error validating request.-'bP' : cause - Historical data bar size setting is invalid."
)
MIN_TICK_TEXT = "The price does not conform to the minimum price variation for this contract."
SIZE_LIMIT_TEXT = (
    'The following order "ID:{order_id}" size exceeds the Size Limit of {limit:g}. '
    "Restriction is specified in Precautionary Settings of Global Configuration/Presets."
)
VALUE_LIMIT_TEXT = (
    'The following order "ID:{order_id}" value estimate of {value:,.2f} {currency} exceeds the '
    "Total Value Limit of {limit:,.0f} {currency}. Restriction is specified in Precautionary "
    "Settings of Global Configuration/Presets."
)
NOT_UNTIL_OPEN_TEXT = (
    "Order Message:\n{action} {quantity:g} {symbol} {exchange}\n"
    "Warning: your order will not be placed at the exchange until {open} {tz}"
)
LOCATE_TEXT = (
    "Shares for this order are not immediately available for short sale. The order will be "
    "held while we attempt to locate the shares."
)
CONNECTIVITY_TEXTS = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}


@dataclass(frozen=True)
class IBLike:
    """How a real IB Gateway behaves where the lockstep replay takes the happy path.

    Pass one as ``SimulatedGateway(..., ib=IBLike())``; every field has IB's behaviour as its
    default, and a test switches off (or on) the one it is not about. What each means:

    - the market runs on an exchange clock (``time_zone``, regular hours ``open`` to
      ``close``): every file bar is one session (daily files) or part of one (intraday
      files), replayed as IB's 5-second real-time bars; contract details report the time
      zone, trading and liquid hours and ``min_tick``;
    - ``reqHistoricalData`` with ``endDateTime=""`` ends with the bar still forming (partial
      volume and range); IB's pacing rules apply to bars of 30 seconds or less (``pacing``);
    - fills are reported as IB usually does (``report_order = "status_first"``):
      orderStatus, then execDetails, then the commission report ``commission_delay`` seconds
      (real time) later; with ``"commission_first"``, execDetails and the commission report
      come first and the orderStatus ``commission_delay`` seconds later (IB promises no order
      between a status and the reports);
    - ``reqExecutions`` returns the current (exchange) day's executions only;
    - prices off ``min_tick`` get error 110; orders above the precautionary ``size_limit``
      or ``value_limit`` get error 383 unless ``bypass_precautions`` (Gateway's "Bypass
      Order Precautions for API Orders", which the README asks for);
    - DAY orders expire at the close; an order placed outside regular hours waits for the
      open (warning 399); a short sale of a ``hard_to_borrow`` symbol is held Inactive with
      ``whyHeld="locate"`` (warning 404) for ``locate_steps`` 5-second bars;
    - symbols in ``no_permissions`` get 162 (history) and 354 (real-time bars), symbols in
      ``no_data`` get 162 "HMDS query returned no data", symbols in ``competing_session``
      get 10197 for real-time bars (the live account is logged in elsewhere);
    - connectivity events (1100, 1101, 1102) are sent with the socket open
      (``SimulatedGateway.connectivity``).

    ``lockstep_seconds`` is the test harness's, not IB's: with ``lockstep=True`` one
    ``reqCurrentTime`` releases the 5-second bars up to the next multiple of it after the
    open (and always up to the close), so a client acknowledging each bar of its own
    timeframe (300 for 5-minute bars, 86400 for daily ones: up to the close) sees IB's
    5-second bars and still gets every decision in before the next bar. (ib_async sends at
    most 45 requests a second, so acknowledging every 5-second bar is slow.)
    """

    time_zone: str = "US/Eastern"
    open: str = "09:30"
    close: str = "16:00"
    primary_exchange: str = "NYSE"
    min_tick: float = 0.01
    commission_delay: float = 0.05  # seconds of real time between execDetails and commission
    report_order: str = "status_first"  # or "commission_first": execution, commission, status
    executions_today_only: bool = True
    pacing: bool = True
    size_limit: float | None = 500.0
    value_limit: float | None = None
    bypass_precautions: bool = True
    hard_to_borrow: frozenset[str] = frozenset()
    locate_steps: int | None = 12  # 5-second bars until shares are located; None: never
    no_permissions: frozenset[str] = frozenset()
    no_data: frozenset[str] = frozenset()
    competing_session: frozenset[str] = frozenset()
    lockstep_seconds: int = 5

    def __post_init__(self) -> None:
        if self.report_order not in REPORT_ORDERS:
            raise ValueError(
                f"report_order = {self.report_order!r}: expected one of {', '.join(REPORT_ORDERS)}"
            )


REPORT_ORDERS = ("status_first", "commission_first")
