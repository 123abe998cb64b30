"""A simulated IB Gateway: the TWS API wire protocol on loopback, replaying bars from files.

Why: paper trading through Interactive Brokers needs a login, market hours and a running
Gateway, and its results cannot be compared bar for bar with a backtest. This server speaks
the same socket protocol as TWS / IB Gateway (server version 176, see
:mod:`kerastrader.brokers.ib.wire`), so the real, unmodified ``ib_async`` client (and
anything built on it, such as the project's Backtrader IB store) connects to it as to a paper
account. It serves history from OHLCV frames, replays the rest as real-time bars and fills
orders against those bars with Backtrader's BackBroker rules plus the project's commission
and slippage (:mod:`kerastrader.strategies.costs`), so a live session can be rehearsed
offline and checked against a backtest of the same bars.

Written from the protocol: every message layout below mirrors what ``ib_async`` 2.1.0 sends
(``client.py``) or reads (``decoder.py``) at server version 176.

Replay
------
``bars[symbol]`` rows before ``history`` are history (``reqHistoricalData``); later rows are
replayed, one file bar per ``realtimeBar`` message whatever the file's bar size, on a clock
that walks the union of all symbols' replay timestamps ("steps"). At each step the gateway
first matches open orders against the step's bars (fills for bar t+1 reach the client before
bar t+1 itself, as in a backtest where an order placed on bar t fills on bar t+1), then sends
the bars. With ``lockstep=True`` the next step is released only when the client sends
``reqCurrentTime`` (message 49), so a strategy that handles each step and then asks for the
time sees exactly a backtest's sequence; call it once per step, after all symbols' bars of
that timestamp. The first step is released by the first real-time-bar subscription. With
``lockstep=False`` steps go out every ``1 / speed`` seconds (``speed == 0``: as fast as the
socket allows). The clock does not move while no client is subscribed, and ``currentTime``
answers the simulated time (the latest released bar's time).

Orders
------
``MKT``, ``LMT``, ``STP``, ``STP LMT`` and ``TRAIL`` (``trailingPercent`` or a trailing
amount in ``auxPrice``; ``trailStopPrice`` as the initial stop) are supported; other types
are rejected with error 387. ``tif`` and ``outsideRth`` are recorded but every order is good
till cancelled (a daily-bar replay would otherwise expire every DAY order at once), and
there is no margin or buying-power check. Orders sent with ``transmit=False`` are held without
any message (ib_async keeps them at PendingSubmit) until an order of the same parent group
arrives with ``transmit=True``; bracket children stay PreSubmitted until the
parent fills, become eligible from the next step (as Backtrader activates them) and are
one-cancels-all, as are orders sharing an ``ocaGroup``. Each accepted order gets an
``openOrder`` (ib_async needs it: it links the permId, without which it never emits
``commissionReportEvent``) and an ``orderStatus``.

Per execution the gateway sends ``execDetails`` (reqId -1), ``commissionReport`` and then
``orderStatus`` with filled/remaining/avgFillPrice, so a Filled status arrives after its fills
and commissions. A part-filled order is reported as Submitted with ``filled > 0``, as TWS
does: IB has no "PartiallyFilled" status, and ib_async's ``Trade.isActive()`` would be false
for one. Positions and account values are pushed to clients that asked for them.

Faults (:class:`Faults`) inject disconnects, rejections, split fills and pacing violations.
After a disconnect the state survives and a reconnecting client (same clientId) gets its
positions, open orders (openOrder), completed orders (completedOrder) and executions
(execDetails + commissionReport) again. When it resubscribes to real-time bars, a bar of the
current step that never left the gateway is sent; otherwise the step the dropped connection
could no longer acknowledge counts as acknowledged and the next one is released, so no bar
is sent twice or skipped. ``reqHistoricalData`` serves every bar released so far (history
plus replayed), cut at ``endDateTime`` and to ``durationStr`` in calendar time; daily bars are
dated ``yyyymmdd`` whatever ``formatDate`` (as IB does), intraday ones ``yyyymmdd hh:mm:ss``
(UTC) or epoch seconds with ``formatDate=2``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.brokers.ib.wire import (
    SERVER_VERSION,
    UNSET_DOUBLE,
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

CONID_BASE = 700_000  # conIds are CONID_BASE + 1, + 2, ... in the order of ``bars``
PERMID_BASE = 900_000_000
SUPPORTED_ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "TRAIL")
ORDER_TYPES_TEXT = "LMT,MKT,STP,STP LMT,TRAIL"
EXCHANGE = "SMART"
CURRENCY = "USD"
UNSET_FLOAT = 1.7976931348623157e308
UNSET_INT = 2**31 - 1
DONE = frozenset({"Filled", "Cancelled", "Inactive", "ApiCancelled"})
REJECT_TEXT = "Order rejected - reason: simulated rejection (Faults.reject_orders)"
PACING_TEXT = (
    "Historical Market Data Service error message:API historical data query cancelled: "
    "pacing violation"
)
NO_DEFINITION_TEXT = "No security definition has been found for the request"
CONTRACT_FIELDS = (
    "conId",
    "symbol",
    "secType",
    "lastTradeDateOrContractMonth",
    "strike",
    "right",
    "multiplier",
    "exchange",
    "primaryExchange",
    "currency",
    "localSymbol",
    "tradingClass",
)
# Fields of each order condition type, condType included (ib_async's dataclasses in order.py).
CONDITION_SIZES = {1: 7, 3: 4, 4: 4, 5: 5, 6: 6, 7: 6}


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


# --------------------------------------------------------------------------- message layouts


def _n(text: str) -> tuple[str, ...]:
    """Field names written as one whitespace-separated string (the layouts are long)."""
    return tuple(text.split())


# placeOrder (3) as ib_async's Client.placeOrder writes it, block by block.
PO_ORDER_HEAD = _n("""
    action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin
    orderRef transmit parentId blockOrder sweepToFill displaySize triggerMethod outsideRth hidden
""")
PO_COMBO_LEG = _n("""
    conId ratio action exchange openClose shortSaleSlot designatedLocation exemptCode
""")
PO_FA = _n("discretionaryAmt goodAfterTime goodTillDate faGroup faMethod faPercentage")
PO_MIDDLE = _n("""
    modelCode shortSaleSlot designatedLocation exemptCode ocaType rule80A settlingFirm allOrNone
    minQty percentOffset eTradeOnly firmQuoteOnly nbboPriceCap auctionStrategy startingPrice
    stockRefPrice delta stockRangeLower stockRangeUpper overridePercentageConstraints volatility
    volatilityType deltaNeutralOrderType deltaNeutralAuxPrice
""")
PO_DELTA_NEUTRAL = _n("""
    deltaNeutralConId deltaNeutralSettlingFirm deltaNeutralClearingAccount
    deltaNeutralClearingIntent deltaNeutralOpenClose deltaNeutralShortSale
    deltaNeutralShortSaleSlot deltaNeutralDesignatedLocation
""")
PO_TRAIL_SCALE = _n("""
    continuousUpdate referencePriceType trailStopPrice trailingPercent scaleInitLevelSize
    scaleSubsLevelSize scalePriceIncrement
""")
SCALE_DETAILS = _n("""
    scalePriceAdjustValue scalePriceAdjustInterval scaleProfitOffset scaleAutoReset
    scaleInitPosition scaleInitFillQty scaleRandomPercent
""")
PO_ACTIVE = _n("scaleTable activeStartTime activeStopTime hedgeType")
PO_CLEARING = _n("optOutSmartRouting clearingAccount clearingIntent notHeld")
PO_MISC = _n("algoId whatIf orderMiscOptions solicited randomizeSize randomizePrice")
PEG_BENCH = _n("""
    referenceContractId isPeggedChangeAmountDecrease peggedChangeAmount referenceChangeAmount
    referenceExchangeId
""")
PO_ADJUSTED = _n("""
    adjustedOrderType triggerPrice lmtPriceOffset adjustedStopPrice adjustedStopLimitPrice
    adjustedTrailingAmount adjustableTrailingUnit extOperator softDollarTierName softDollarTierVal
    cashQty mifid2DecisionMaker mifid2DecisionAlgo mifid2ExecutionTrader mifid2ExecutionAlgo
    dontUseAutoPriceForHedge isOmsContainer discretionaryUpToLimitPrice usePriceMgmtAlgo
""")
PEG_OFFSETS = _n(
    "minTradeQty minCompeteSize competeAgainstBestOffset midOffsetAtWhole midOffsetAtHalf"
)

# openOrder (5) as ib_async's Decoder.openOrder reads it.
OO_ORDER_HEAD = _n("""
    action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin
    orderRef clientId permId outsideRth hidden discretionaryAmt goodAfterTime
""")
OO_MIDDLE = _n("""
    modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation
    exemptCode auctionStrategy startingPrice stockRefPrice delta stockRangeLower stockRangeUpper
    displaySize blockOrder sweepToFill allOrNone minQty ocaType eTradeOnly firmQuoteOnly
    nbboPriceCap parentId triggerMethod volatility volatilityType deltaNeutralOrderType
    deltaNeutralAuxPrice
""")
ORDER_STATE = _n("""
    status initMarginBefore maintMarginBefore equityWithLoanBefore initMarginChange
    maintMarginChange equityWithLoanChange initMarginAfter maintMarginAfter equityWithLoanAfter
    commission minCommission maxCommission commissionCurrency warningText
""")

# completedOrder (101) as ib_async's Decoder.completedOrder reads it.
CO_ORDER_HEAD = _n("""
    action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin
    orderRef permId outsideRth hidden discretionaryAmt goodAfterTime faGroup faMethod faPercentage
""")
CO_MIDDLE = _n("""
    modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation
    exemptCode startingPrice stockRefPrice delta stockRangeLower stockRangeUpper displaySize
    sweepToFill allOrNone minQty ocaType triggerMethod volatility volatilityType
    deltaNeutralOrderType deltaNeutralAuxPrice
""")
CO_DELTA_NEUTRAL = _n("""
    deltaNeutralConId deltaNeutralShortSale deltaNeutralShortSaleSlot
    deltaNeutralDesignatedLocation
""")


# --------------------------------------------------------------------------- placeOrder parser


class _Cursor:
    """Walks a message's fields in order; running out or leaving some is a ProtocolError."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        self.pos = 0

    def next(self) -> str:
        if self.pos >= len(self.fields):
            raise ProtocolError(f"message ended after {self.pos} fields")
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def named(self, names: tuple[str, ...]) -> dict[str, str]:
        return {name: self.next() for name in names}

    def count(self) -> int:
        text = self.next()
        try:
            return int(text or 0)
        except ValueError:
            raise ProtocolError(f"expected a count at field {self.pos - 1}, got {text!r}") from None

    def remaining(self) -> int:
        return len(self.fields) - self.pos


def _float_or_unset(text: str) -> float:
    try:
        return float(text) if text else UNSET_FLOAT
    except ValueError:
        return UNSET_FLOAT


def parse_place_order(fields: list[str], server_version: int = SERVER_VERSION) -> dict[str, Any]:
    """Decode a placeOrder (3) message into ``{"orderId", "contract", "order"}`` of raw strings.

    The message is positional with optional blocks, so this walks exactly the fields
    ``ib_async.client.Client.placeOrder`` writes, in its order and with its conditions on
    ``server_version``; any misalignment surfaces as fields left over or missing
    (:class:`ProtocolError`) instead of silently shifted values. Values stay raw strings (the
    client's own spelling: ``""`` for unset, ``"1"``/``"0"`` for booleans) so they can be
    echoed back verbatim in openOrder; lists (combo legs, algo params, conditions) are lists.
    """
    cur = _Cursor(fields)
    if cur.next() != str(int(In.PLACE_ORDER)):
        raise ProtocolError(f"not a placeOrder message: {fields[:1]}")
    order_id = cur.next()
    contract: dict[str, Any] = cur.named(CONTRACT_FIELDS)
    contract.update(cur.named(("secIdType", "secId")))
    order: dict[str, Any] = cur.named(PO_ORDER_HEAD)
    if contract["secType"] == "BAG":
        contract["comboLegs"] = [cur.named(PO_COMBO_LEG) for _ in range(cur.count())]
        order["orderComboLegs"] = [cur.next() for _ in range(cur.count())]
        order["smartComboRoutingParams"] = [(cur.next(), cur.next()) for _ in range(cur.count())]
    cur.next()  # deprecated sharesAllocation, always empty
    order.update(cur.named(PO_FA))
    if server_version < 177:
        order["faProfile"] = cur.next()
    order.update(cur.named(PO_MIDDLE))
    if order["deltaNeutralOrderType"]:
        order.update(cur.named(PO_DELTA_NEUTRAL))
    order.update(cur.named(PO_TRAIL_SCALE))
    if 0 < _float_or_unset(order["scalePriceIncrement"]) < UNSET_FLOAT:
        order.update(cur.named(SCALE_DETAILS))
    order.update(cur.named(PO_ACTIVE))
    if order["hedgeType"]:
        order["hedgeParam"] = cur.next()
    order.update(cur.named(PO_CLEARING))
    if cur.next() not in ("", "0"):
        contract["deltaNeutralContract"] = cur.named(("conId", "delta", "price"))
    order["algoStrategy"] = cur.next()
    if order["algoStrategy"]:
        order["algoParams"] = [(cur.next(), cur.next()) for _ in range(cur.count())]
    order.update(cur.named(PO_MISC))
    if order["orderType"] in ("PEG BENCH", "PEGBENCH"):
        order.update(cur.named(PEG_BENCH))
    conditions = []
    for _ in range(cur.count()):
        cond_type = cur.next()
        size = CONDITION_SIZES.get(_int(cond_type))
        if size is None:
            raise ProtocolError(f"unknown order condition type {cond_type!r}")
        conditions.append([cond_type] + [cur.next() for _ in range(size - 1)])
    order["conditions"] = conditions
    if conditions:
        order.update(cur.named(("conditionsIgnoreRth", "conditionsCancelOrder")))
    order.update(cur.named(PO_ADJUSTED))
    for version, name in (
        (158, "duration"),
        (160, "postToAts"),
        (162, "autoCancelParent"),
        (166, "advancedErrorOverride"),
        (169, "manualOrderTime"),
    ):
        if server_version >= version:
            order[name] = cur.next()
    if server_version >= 170:
        if contract["exchange"] == "IBKRATS":
            order["minTradeQty"] = cur.next()
        if order["orderType"] in ("PEG BEST", "PEGBEST"):
            order.update(cur.named(("minCompeteSize", "competeAgainstBestOffset")))
            if order["competeAgainstBestOffset"] in ("Infinite", "inf"):
                order.update(cur.named(("midOffsetAtWhole", "midOffsetAtHalf")))
        elif order["orderType"] in ("PEG MID", "PEGMID"):
            order.update(cur.named(("midOffsetAtWhole", "midOffsetAtHalf")))
    if cur.remaining():
        raise ProtocolError(f"placeOrder: {cur.remaining()} fields left after field {cur.pos}")
    return {"orderId": order_id, "contract": contract, "order": order}


# ----------------------------------------------------------------------- openOrder emitters


def _pick(values: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
    # ib_async writes an infinite double as "Infinite", which its own decoder cannot float().
    return [_INFINITY.get(v, v) if isinstance(v, str) else v for v in map(values.get, names)]


_INFINITY = {"Infinite": "Infinity"}


def _algo_block(order: dict[str, Any]) -> list[Any]:
    out: list[Any] = [order.get("algoStrategy", "")]
    if order.get("algoStrategy"):
        params = order.get("algoParams", [])
        out.append(len(params))
        for tag, value in params:
            out += [tag, value]
    return out


def _conditions_block(order: dict[str, Any]) -> list[Any]:
    conditions = order.get("conditions", [])
    out: list[Any] = [len(conditions)]
    for cond in conditions:
        out += cond
    if conditions:
        out += _pick(order, ("conditionsIgnoreRth", "conditionsCancelOrder"))
    return out


def _scale_block(order: dict[str, Any]) -> list[Any]:
    out = _pick(order, ("scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceIncrement"))
    if 0 < _float_or_unset(order.get("scalePriceIncrement", "")) < UNSET_FLOAT:
        out += _pick(order, SCALE_DETAILS)
    out.append(order.get("hedgeType", ""))
    if order.get("hedgeType"):
        out.append(order.get("hedgeParam", ""))
    return out


def _peg_bench_block(order: dict[str, Any]) -> list[Any]:
    return _pick(order, PEG_BENCH) if order.get("orderType") in ("PEG BENCH", "PEGBENCH") else []


def _contract_head(contract: dict[str, Any]) -> list[Any]:
    """conId .. tradingClass without primaryExchange, as openOrder/completedOrder carry it."""
    return _pick(contract, tuple(n for n in CONTRACT_FIELDS if n != "primaryExchange"))


def open_order_fields(
    order_id: int,
    contract: dict[str, Any],
    order: dict[str, Any],
    state: dict[str, Any],
    server_version: int = SERVER_VERSION,
) -> list[Any]:
    """The fields of an openOrder (5) message, in the order ``ib_async``'s decoder reads them.

    ``order`` holds the raw strings from :func:`parse_place_order` (overridden by the caller
    with clientId, permId and the current trailing stop), ``state`` the OrderState: status,
    the margin strings and commission. Mirrors ``Decoder.openOrder`` for ``server_version``.
    """
    o = order.get
    fields: list[Any] = [int(Out.OPEN_ORDER), order_id, *_contract_head(contract)]
    fields += _pick(order, OO_ORDER_HEAD)
    fields.append("")  # deprecated sharesAllocation
    fields += _pick(order, ("faGroup", "faMethod", "faPercentage"))
    if server_version < 177:
        fields.append(o("faProfile", ""))
    fields += _pick(order, OO_MIDDLE)
    if o("deltaNeutralOrderType"):
        fields += _pick(order, PO_DELTA_NEUTRAL)
    fields += _pick(order, ("continuousUpdate", "referencePriceType"))
    fields += _pick(order, ("trailStopPrice", "trailingPercent"))
    fields += ["", "", ""]  # basisPoints, basisPointsType, comboLegsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += _scale_block(order)
    fields += _pick(order, PO_CLEARING)
    fields.append(0)  # no delta-neutral contract
    fields += _algo_block(order)
    fields += _pick(order, ("solicited", "whatIf"))
    fields += _pick(state, ORDER_STATE)
    fields += _pick(order, ("randomizeSize", "randomizePrice"))
    fields += _peg_bench_block(order)
    fields += _conditions_block(order)
    fields += _pick(order, ("adjustedOrderType", "triggerPrice", "trailStopPrice"))
    fields += _pick(order, ("lmtPriceOffset", "adjustedStopPrice", "adjustedStopLimitPrice"))
    fields += _pick(order, ("adjustedTrailingAmount", "adjustableTrailingUnit"))
    fields += _pick(order, ("softDollarTierName", "softDollarTierVal"))
    fields.append("")  # softDollarTier displayName
    fields += _pick(order, ("cashQty", "dontUseAutoPriceForHedge", "isOmsContainer"))
    fields += _pick(order, ("discretionaryUpToLimitPrice", "usePriceMgmtAlgo"))
    for version, name in ((159, "duration"), (160, "postToAts"), (162, "autoCancelParent")):
        if server_version >= version:
            fields.append(o(name, ""))
    if server_version >= 170:
        fields += _pick(order, PEG_OFFSETS)
    return fields


def completed_order_fields(
    contract: dict[str, Any],
    order: dict[str, Any],
    state: dict[str, Any],
    server_version: int = SERVER_VERSION,
) -> list[Any]:
    """The fields of a completedOrder (101) message, as ``Decoder.completedOrder`` reads them.

    It carries no orderId or clientId (ib_async keys such trades by permId). ``state`` gives
    status, completedTime and completedStatus; ``order`` may carry filledQuantity and
    parentPermId.
    """
    o = order.get
    fields: list[Any] = [int(Out.COMPLETED_ORDER), *_contract_head(contract)]
    fields += _pick(order, CO_ORDER_HEAD)
    if server_version < 177:
        fields.append(o("faProfile", ""))
    fields += _pick(order, CO_MIDDLE)
    if o("deltaNeutralOrderType"):
        fields += _pick(order, CO_DELTA_NEUTRAL)
    fields += _pick(order, ("continuousUpdate", "referencePriceType"))
    fields += _pick(order, ("trailStopPrice", "trailingPercent"))
    fields.append("")  # comboLegsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += _scale_block(order)
    fields += _pick(order, ("clearingAccount", "clearingIntent", "notHeld"))
    fields.append(0)  # no delta-neutral contract
    fields += _algo_block(order)
    fields += [o("solicited", ""), state.get("status", "")]
    fields += _pick(order, ("randomizeSize", "randomizePrice"))
    fields += _peg_bench_block(order)
    fields += _conditions_block(order)
    fields += _pick(order, ("trailStopPrice", "lmtPriceOffset", "cashQty"))
    fields += _pick(order, ("dontUseAutoPriceForHedge", "isOmsContainer"))
    fields += ["", o("filledQuantity", ""), ""]  # autoCancelDate, filledQuantity, refFuturesConId
    fields += [o("autoCancelParent", ""), "", "", ""]  # shareholder, imbalanceOnly, routeToBbo
    fields.append(o("parentPermId", ""))
    fields += _pick(state, ("completedTime", "completedStatus"))
    if server_version >= 170:
        fields += _pick(order, PEG_OFFSETS)
    return fields


# ------------------------------------------------------------------------------ state


def _opt_float(text: str) -> float | None:
    """A raw price field -> float, or None for IB's unset (empty or 1.79e308)."""
    value = _float_or_unset(text)
    return None if value >= UNSET_FLOAT or math.isnan(value) else value


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return int(float(text))


@dataclass
class _Order:
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

    @property
    def buy(self) -> bool:
        return self.action == "BUY"

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)

    @property
    def done(self) -> bool:
        return self.status in DONE


class _Conn:
    """One client connection."""

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
    the starting cash is ``cash``. See the module docstring for the replay and order rules.
    """

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
    ) -> None:
        from kerastrader.strategies.costs import make_commission

        if not bars:
            raise ValueError("bars is empty: the gateway needs at least one symbol")
        if history < 0:
            raise ValueError(f"history must not be negative, not {history}")
        if speed < 0:
            raise ValueError(f"speed must not be negative, not {speed}")
        self.account = account
        self.host = host
        self.port = port
        self.faults = faults if faults is not None else Faults()
        self.lockstep = lockstep
        self.speed = speed
        self.broker = {**DEFAULT_BROKER, **(broker or {})}
        self._comminfo = make_commission(self.broker)
        self._slip_perc = float(self.broker["slippage_bps"]) / 1e4
        self._slip_range = float(self.broker["slippage_range"])
        cap = float(self.broker["volume_cap"])
        self._volume_perc = round(cap * 100, 10) if cap else 0.0  # as configure_broker does

        self._symbols = list(bars)
        self._conids = {sym: CONID_BASE + i + 1 for i, sym in enumerate(self._symbols)}
        self._data = {sym: self._arrays(sym, frame) for sym, frame in bars.items()}
        self._daily = {sym: d["daily"] for sym, d in self._data.items()}
        self._history = history
        start = {sym: min(history, len(d["time"])) for sym, d in self._data.items()}
        times = sorted({int(t) for sym, d in self._data.items() for t in d["time"][start[sym] :]})
        self._times: list[int] = times

        self._lock = threading.Lock()
        self._replay_index = dict(start)
        self._orders: list[dict] = []
        self._fills: list[dict] = []
        self._positions: dict[str, float] = {}
        self._avg_cost: dict[str, float] = {}
        self._realized: dict[str, float] = {}
        self._cash = float(cash)
        self.finished = threading.Event()
        if not times:
            self.finished.set()

        self._book: dict[tuple[int, int], _Order] = {}
        self._seq = 0
        self._new_orders = 0
        self._hist_requests = 0
        self._next_id = int(next_order_id)
        self._next_perm = PERMID_BASE
        self._exec_seq = 0
        self._sent = 0
        self._fired: set[int] = set()
        self._step = -1
        self._undelivered: set[str] = set()  # current step's bars no socket has received
        self._release_wanted = True
        self._awaiting_ack = False
        self._step_conns: set[_Conn] = set()
        self._conns: list[_Conn] = []
        self._conn_count = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self.address: tuple[str, int] | None = None

    # ------------------------------------------------------------------ data

    @staticmethod
    def _arrays(symbol: str, frame: pd.DataFrame) -> dict[str, Any]:
        missing = [c for c in ("open", "high", "low", "close", "volume") if c not in frame]
        if missing:
            raise ValueError(f"bars[{symbol!r}] lacks columns {missing}")
        index = pd.DatetimeIndex(frame.index)
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        if not index.is_monotonic_increasing or index.has_duplicates:
            raise ValueError(f"bars[{symbol!r}]: the index must increase strictly")
        epoch = (index - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
        return {
            "time": np.asarray(epoch, dtype=np.int64),
            "index": index,
            "daily": bool(len(index)) and bool((index == index.normalize()).all()),
            **{c: frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close")},
            "volume": frame["volume"].to_numpy(dtype=float),
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> tuple[str, int]:
        """Serve in a background thread with its own asyncio loop; return the bound address.

        A thread of its own lets synchronous code (tests, Backtrader) and the asyncio client
        run beside it; ``port=0`` picks a free port.
        """
        if self._thread is not None:
            raise RuntimeError("the gateway is already started")
        self._started.clear()
        self._start_error = None
        self.address = None
        self._thread = threading.Thread(target=self._run, name="ib-simulator", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._start_error is not None:
            raise self._start_error
        if self.address is None:
            raise RuntimeError("the gateway did not start within 10 s")
        return self.address

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> SimulatedGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() if it happens before binding
            self._start_error = exc
            log.exception("simulated gateway failed")
        finally:
            self._started.set()
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        log.info("simulated IB gateway listening on %s:%s", *self.address)
        self._started.set()
        pump = None
        if not self.lockstep:
            pump = asyncio.create_task(self._pump())
        try:
            await self._stopping.wait()
        finally:
            if pump is not None:
                pump.cancel()
            server.close()
            for conn in list(self._conns):
                self._close(conn, "gateway stopping")
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, *([pump] if pump else []), return_exceptions=True)
            await server.wait_closed()
            log.info("simulated IB gateway stopped")

    # -------------------------------------------------------------- snapshots

    @property
    def orders(self) -> list[dict]:
        """Every placeOrder received (modifications too; what-if orders not), in order."""
        with self._lock:
            return copy.deepcopy(self._orders)

    @property
    def fills(self) -> list[dict]:
        """Every execution, in order."""
        with self._lock:
            return copy.deepcopy(self._fills)

    def positions(self) -> dict[str, float]:
        """Non-zero positions, symbol -> signed shares."""
        with self._lock:
            return {s: q for s, q in self._positions.items() if q}

    def cash(self) -> float:
        """Cash after every fill and commission."""
        with self._lock:
            return self._cash

    @property
    def replay_index(self) -> dict[str, int]:
        """Per symbol, the row of the next bar to release."""
        with self._lock:
            return dict(self._replay_index)

    @property
    def messages_sent(self) -> int:
        """Frames sent so far to all clients (what ``Faults.disconnect_after`` counts)."""
        return self._sent

    def order_states(self) -> list[dict]:
        """Status of every order the gateway accepted, in placement order."""
        with self._lock:
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
                }
                for o in sorted(self._book.values(), key=lambda o: o.seq)
            ]

    # ------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._conn_count += 1
        conn = _Conn(writer, self._conn_count)
        self._conns.append(conn)
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
                    self._dispatch(conn, fields)
                if not conn.closed:
                    await writer.drain()
        except ProtocolError as exc:
            log.error("%r: protocol error: %s", conn, exc)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%r: connection lost: %s", conn, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._close(conn, "client disconnected")
            if task is not None:
                self._tasks.discard(task)

    def _close(self, conn: _Conn, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn in self._conns:
            self._conns.remove(conn)
        log.info("%r closed: %s", conn, reason)
        try:
            conn.writer.close()  # flushes what was written, then closes
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass

    def _send(self, conn: _Conn, *fields: Any) -> bool:
        """Write one message; True if it left the gateway (the connection was open)."""
        if conn.closed:
            return False
        conn.writer.write(encode_fields(*fields))
        self._sent += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r >>> %s", conn, ",".join(map(str, fields)))
        for limit in list(self.faults.disconnect_after):
            if limit not in self._fired and self._sent >= limit:
                self._fired.add(limit)
                self._close(conn, f"Faults.disconnect_after={limit}")
        return True

    def _error(self, conn: _Conn, req_id: int, code: int, text: str) -> None:
        self._send(conn, Out.ERR_MSG, 2, req_id, code, text, "")

    def _ready_conns(self) -> list[_Conn]:
        return [c for c in self._conns if c.ready and not c.closed]

    def _conn_of(self, client_id: int) -> _Conn | None:
        return next((c for c in self._ready_conns() if c.client_id == client_id), None)

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, conn: _Conn, fields: list[str]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r <<< %s", conn, ",".join(fields))
        if not conn.handshaken:
            self._handshake(conn, fields)
            return
        try:
            msg_id = int(fields[0])
        except (ValueError, IndexError):
            log.warning("%r: message without an id: %r", conn, fields[:3])
            return
        if not conn.ready and msg_id != In.START_API:
            log.warning("%r: message %s before startApi ignored", conn, msg_id)
            return
        handler = self._handlers().get(msg_id)
        if handler is None:
            log.debug("%r: request %s ignored (not simulated)", conn, msg_id)
            return
        try:
            handler(conn, fields)
        except (ProtocolError, ValueError, IndexError) as exc:
            log.error("%r: cannot handle message %s: %s (%r)", conn, msg_id, exc, fields[:12])
            self._error(conn, -1, 321, f"Error validating request: {exc}")
        except Exception:  # a bug here must not take the gateway down mid-session
            log.exception("%r: message %s failed: %r", conn, msg_id, fields[:12])

    def _handlers(self) -> dict[int, Callable[[_Conn, list[str]], None]]:
        return {
            In.START_API: self._on_start_api,
            In.REQ_IDS: self._on_req_ids,
            In.REQ_MANAGED_ACCTS: self._on_req_managed_accts,
            In.REQ_CURRENT_TIME: self._on_req_current_time,
            In.REQ_CONTRACT_DATA: self._on_req_contract_details,
            In.REQ_HISTORICAL_DATA: self._on_req_historical_data,
            In.REQ_REAL_TIME_BARS: self._on_req_real_time_bars,
            In.CANCEL_REAL_TIME_BARS: self._on_cancel_real_time_bars,
            In.PLACE_ORDER: self._on_place_order,
            In.CANCEL_ORDER: self._on_cancel_order,
            In.REQ_GLOBAL_CANCEL: self._on_global_cancel,
            In.REQ_OPEN_ORDERS: self._on_req_open_orders,
            In.REQ_ALL_OPEN_ORDERS: self._on_req_open_orders,
            In.REQ_AUTO_OPEN_ORDERS: self._on_req_open_orders,
            In.REQ_COMPLETED_ORDERS: self._on_req_completed_orders,
            In.REQ_POSITIONS: self._on_req_positions,
            In.CANCEL_POSITIONS: self._on_cancel_positions,
            In.REQ_ACCT_DATA: self._on_req_account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: self._on_req_account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: self._on_cancel_account_updates_multi,
            In.REQ_ACCOUNT_SUMMARY: self._on_req_account_summary,
            In.REQ_EXECUTIONS: self._on_req_executions,
        }

    def _handshake(self, conn: _Conn, fields: list[str]) -> None:
        low, high = parse_version_range(fields[0])
        if not low <= SERVER_VERSION <= high:
            log.error("%r: client versions %s..%s exclude %s", conn, low, high, SERVER_VERSION)
            self._close(conn, "unsupported client version range")
            return
        conn.handshaken = True
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S Greenwich Mean Time")
        self._send(conn, SERVER_VERSION, now)

    def _on_start_api(self, conn: _Conn, fields: list[str]) -> None:
        if conn.ready:
            return
        client_id = _int(fields[2])
        if self._conn_of(client_id) is not None:
            self._error(
                conn,
                -1,
                326,
                "Unable to connect as the client id is already in use. "
                "Retry with a unique client id.",
            )
            self._close(conn, f"clientId {client_id} already in use")
            return
        conn.client_id = client_id
        conn.ready = True
        log.info("%r: API started", conn)
        self._send(conn, Out.MANAGED_ACCTS, 1, self.account)
        self._send(conn, Out.NEXT_VALID_ID, 1, self._next_id)

    def _on_req_ids(self, conn: _Conn, fields: list[str]) -> None:
        self._send(conn, Out.NEXT_VALID_ID, 1, self._next_id)

    def _on_req_managed_accts(self, conn: _Conn, fields: list[str]) -> None:
        self._send(conn, Out.MANAGED_ACCTS, 1, self.account)

    # ----------------------------------------------------------------- contracts

    def _lookup(self, contract: list[str]) -> str | None:
        """The simulated symbol a request's 12 contract fields name, or None."""
        con_id, symbol, sec_type = _int(contract[0]), contract[1], contract[2]
        currency = contract[9]
        if con_id:
            return next((s for s, c in self._conids.items() if c == con_id), None)
        if symbol not in self._data or sec_type not in ("", "STK"):
            return None
        return symbol if currency in ("", CURRENCY) else None

    def _contract(self, symbol: str, exchange: str = EXCHANGE) -> dict[str, Any]:
        return {
            "conId": self._conids[symbol],
            "symbol": symbol,
            "secType": "STK",
            "lastTradeDateOrContractMonth": "",
            "strike": 0,
            "right": "",
            "multiplier": "",
            "exchange": exchange,
            "primaryExchange": "",
            "currency": CURRENCY,
            "localSymbol": symbol,
            "tradingClass": symbol,
        }

    def _on_req_contract_details(self, conn: _Conn, fields: list[str]) -> None:
        req_id = _int(fields[2])
        symbol = self._lookup(fields[3:15])
        if symbol is None:
            self._error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        self._send(
            conn,
            Out.CONTRACT_DATA,
            req_id,
            symbol,
            "STK",
            "",  # lastTradeDate
            0,  # strike
            "",  # right
            EXCHANGE,
            CURRENCY,
            symbol,  # localSymbol
            symbol,  # marketName
            symbol,  # tradingClass
            self._conids[symbol],
            0.01,  # minTick
            "",  # multiplier
            ORDER_TYPES_TEXT,
            EXCHANGE,  # validExchanges
            1,  # priceMagnifier
            0,  # underConId
            f"{symbol} (simulated)",  # longName
            "",  # primaryExchange
            "",  # contractMonth
            "",  # industry
            "",  # category
            "",  # subcategory
            "UTC",  # timeZoneId: the bars' index is naive UTC
            "",  # tradingHours
            "",  # liquidHours
            "",  # evRule
            "",  # evMultiplier
            0,  # secIdList
            1,  # aggGroup
            "",  # underSymbol
            "",  # underSecType
            "",  # marketRuleIds
            "",  # realExpirationDate
            "COMMON",  # stockType
            1,  # minSize
            1,  # sizeIncrement
            1,  # suggestedSizeIncrement
        )
        self._send(conn, Out.CONTRACT_DATA_END, 1, req_id)

    # --------------------------------------------------------------- market data

    def _now(self) -> int:
        """Simulated time: the latest released bar (epoch seconds)."""
        if self._step >= 0:
            return self._times[self._step]
        last = [
            int(d["time"][i - 1]) for s, d in self._data.items() if (i := self._replay_index[s])
        ]
        return max(last) if last else int(dt.datetime.now(dt.UTC).timestamp())

    def _last_close(self, symbol: str) -> float | None:
        i = self._replay_index[symbol]
        return float(self._data[symbol]["close"][i - 1]) if i else None

    def _on_req_current_time(self, conn: _Conn, fields: list[str]) -> None:
        self._send(conn, Out.CURRENT_TIME, 1, self._now())
        if self.lockstep and self._awaiting_ack:
            self._awaiting_ack = False
            self._release_wanted = True
            self._maybe_release()

    def _on_req_historical_data(self, conn: _Conn, fields: list[str]) -> None:
        req_id = _int(fields[1])
        self._hist_requests += 1
        if self._hist_requests in self.faults.pacing_violation_on:
            self._error(conn, req_id, 162, PACING_TEXT)
            return
        symbol = self._lookup(fields[2:14])
        if symbol is None:
            self._error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        end_text, duration, format_date = fields[15], fields[17], _int(fields[20], 1)
        keep_up = fields[-2] not in ("", "0") if len(fields) > 22 else False
        if keep_up:
            log.warning("reqHistoricalData keepUpToDate=True: updates are not streamed")
        data = self._data[symbol]
        released = self._replay_index[symbol]
        times = data["time"][:released]
        end = _parse_end(end_text) if end_text else (int(times[-1]) if len(times) else 0)
        start = end - _duration_seconds(duration) if duration else None
        rows = [i for i, t in enumerate(times) if t <= end and (start is None or t > start)]
        out: list[Any] = [Out.HISTORICAL_DATA, req_id]
        out += [_ib_time(start if start is not None else 0), _ib_time(end), len(rows)]
        for i in rows:
            o, h, lo, c = (float(data[k][i]) for k in ("open", "high", "low", "close"))
            out += [self._bar_date(symbol, i, format_date), o, h, lo, c, float(data["volume"][i])]
            out += [(h + lo + c) / 3, 1]  # wap, count
        self._send(conn, *out)

    def _bar_date(self, symbol: str, i: int, format_date: int) -> str:
        """A history bar's date as IB writes it: daily bars always as yyyymmdd."""
        stamp = self._data[symbol]["index"][i]
        if self._daily[symbol]:
            return stamp.strftime("%Y%m%d")
        if format_date == 2:
            return str(int(self._data[symbol]["time"][i]))
        return stamp.strftime("%Y%m%d %H:%M:%S")

    def _on_req_real_time_bars(self, conn: _Conn, fields: list[str]) -> None:
        req_id = _int(fields[2])
        symbol = self._lookup(fields[3:15])
        if symbol is None:
            self._error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        conn.bar_subs[req_id] = symbol
        log.info("%r subscribed to real-time bars of %s (reqId %s)", conn, symbol, req_id)
        if symbol in self._undelivered:  # this step's bar has not reached any client yet
            i = self._replay_index[symbol] - 1
            if self._send_bar(conn, req_id, symbol, i):
                self._undelivered.discard(symbol)
                self._step_conns.add(conn)
        elif self._awaiting_ack and not any(not c.closed for c in self._step_conns):
            # The connection that got the last step is gone: its acknowledgement never comes.
            self._awaiting_ack = False
            self._release_wanted = True
        if self.lockstep:
            self._maybe_release()
        elif self._wake is not None:
            self._wake.set()

    def _on_cancel_real_time_bars(self, conn: _Conn, fields: list[str]) -> None:
        conn.bar_subs.pop(_int(fields[2]), None)

    def _send_bar(self, conn: _Conn, req_id: int, symbol: str, i: int) -> bool:
        d = self._data[symbol]
        o, h, lo, c = (float(d[k][i]) for k in ("open", "high", "low", "close"))
        wap = (h + lo + c) / 3
        return self._send(
            conn, Out.REAL_TIME_BARS, 3, req_id, int(d["time"][i]), o, h, lo, c,
            float(d["volume"][i]), wap, 1,
        )  # fmt: skip

    def _subscribed(self) -> bool:
        return any(c.bar_subs for c in self._ready_conns())

    def _maybe_release(self) -> None:
        if self._release_wanted and self._subscribed() and self._step + 1 < len(self._times):
            self._release_wanted = False
            self._release_step()
            self._awaiting_ack = True

    async def _pump(self) -> None:
        """lockstep=False: release a step every 1/speed seconds while someone subscribes."""
        assert self._wake is not None
        interval = 1.0 / self.speed if self.speed > 0 else 0.0
        while self._step + 1 < len(self._times):
            if not self._subscribed():
                self._wake.clear()
                await self._wake.wait()
                continue
            self._release_step()
            for conn in self._ready_conns():
                try:
                    await conn.writer.drain()
                except ConnectionError:
                    self._close(conn, "connection lost")
            await asyncio.sleep(interval)

    def _release_step(self) -> None:
        """Advance the clock one timestamp: fill orders against its bars, then send the bars."""
        self._step += 1
        stamp = self._times[self._step]
        current = {}
        for sym, d in self._data.items():
            i = self._replay_index[sym]
            if i < len(d["time"]) and int(d["time"][i]) == stamp:
                current[sym] = i
        changed: set[str] = set()
        for sym, i in current.items():
            changed |= self._match(sym, i)
        with self._lock:
            for sym, i in current.items():
                self._replay_index[sym] = i + 1
        if changed:
            self._push_account(changed)
        self._undelivered = set()
        self._step_conns = set()
        for sym, i in current.items():
            delivered = False
            for conn in self._ready_conns():
                for req_id, sub_sym in list(conn.bar_subs.items()):
                    if sub_sym == sym and self._send_bar(conn, req_id, sym, i):
                        delivered = True
                        self._step_conns.add(conn)
            if not delivered:
                self._undelivered.add(sym)
        log.debug("step %s (%s): %s", self._step, _ib_time(stamp), sorted(current))
        if self._step == len(self._times) - 1:
            log.info("replay finished after %s steps", len(self._times))
            self.finished.set()

    # -------------------------------------------------------------------- orders

    def _on_place_order(self, conn: _Conn, fields: list[str]) -> None:
        try:
            parsed = parse_place_order(fields, SERVER_VERSION)
        except ProtocolError as exc:  # answer against the orderId so the client's trade hears it
            log.error("%r: unreadable placeOrder: %s", conn, exc)
            order_id = _int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else -1
            self._error(conn, order_id, 321, f"Error validating request: {exc}")
            return
        raw, order_id = parsed["order"], _int(parsed["orderId"])
        client_id = conn.client_id or 0
        if raw.get("whatIf") not in ("", "0", None):
            self._what_if(conn, order_id, parsed)
            return
        symbol = self._lookup([parsed["contract"][k] for k in CONTRACT_FIELDS])
        record = {
            "orderId": order_id,
            "clientId": client_id,
            "orderRef": raw["orderRef"],
            "symbol": symbol if symbol is not None else parsed["contract"]["symbol"],
            "action": raw["action"],
            "totalQuantity": float(raw["totalQuantity"] or 0),
            "orderType": raw["orderType"],
            "lmtPrice": _opt_float(raw["lmtPrice"]),
            "auxPrice": _opt_float(raw["auxPrice"]),
            "trailingPercent": _opt_float(raw["trailingPercent"]),
            "tif": raw["tif"],
            "parentId": _int(raw["parentId"]),
            "transmit": raw["transmit"] not in ("", "0"),
            "ocaGroup": raw["ocaGroup"],
        }
        with self._lock:
            self._orders.append(record)
        self._next_id = max(self._next_id, order_id + 1)
        existing = self._book.get((client_id, order_id))
        if existing is not None:
            self._modify(conn, existing, record, raw)
            return
        self._new_orders += 1
        self._seq += 1
        self._next_perm += 1
        order = _Order(
            seq=self._seq,
            order_id=order_id,
            client_id=client_id,
            perm_id=self._next_perm,
            symbol=record["symbol"],
            contract=self._contract(symbol, parsed["contract"]["exchange"] or EXCHANGE)
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
        )
        with self._lock:
            self._book[(client_id, order_id)] = order
        if symbol is None:
            self._reject(conn, order, 200, NO_DEFINITION_TEXT)
        elif self._new_orders in self.faults.reject_orders:
            self._reject(conn, order, 201, REJECT_TEXT)
        elif order.order_type not in SUPPORTED_ORDER_TYPES:
            text = f"Unsupported order type for this exchange and security type: {order.order_type}"
            self._reject(conn, order, 387, text)
        elif order.action not in ("BUY", "SELL") or not order.quantity > 0:
            self._reject(conn, order, 201, "Order rejected - reason: invalid action or quantity")
        elif order.order_type in ("LMT", "STP LMT") and order.lmt is None:
            self._reject(conn, order, 201, "Order rejected - reason: missing limit price")
        elif order.order_type in ("STP", "STP LMT") and order.aux is None:
            self._reject(conn, order, 201, "Order rejected - reason: missing stop price")
        elif order.order_type == "TRAIL" and order.aux is None and order.trailing_percent is None:
            self._reject(conn, order, 201, "Order rejected - reason: missing trailing amount")
        elif order.transmit:
            self._transmit_group(order)
        else:
            log.info("order %s held until its group is transmitted", order.order_id)

    def _reject(self, conn: _Conn, order: _Order, code: int, text: str) -> None:
        log.info("order %s rejected: %s %s", order.order_id, code, text)
        self._error(conn, order.order_id, code, text)
        self._set_status(order, "Cancelled")

    def _what_if(self, conn: _Conn, order_id: int, parsed: dict[str, Any]) -> None:
        """Answer a what-if order: commission and the order's value as its margin impact."""
        raw = dict(parsed["order"])
        symbol = self._lookup([parsed["contract"][k] for k in CONTRACT_FIELDS])
        if symbol is None:
            self._error(conn, order_id, 200, NO_DEFINITION_TEXT)
            return
        qty = float(raw["totalQuantity"] or 0)
        price = self._last_close(symbol) or 0.0
        value = qty * price
        equity = self._net_liquidation()
        state = {
            "status": "PreSubmitted",
            "initMarginBefore": "0",
            "maintMarginBefore": "0",
            "equityWithLoanBefore": f"{equity:.2f}",
            "initMarginChange": f"{value:.2f}",
            "maintMarginChange": f"{value:.2f}",
            "equityWithLoanChange": "0",
            "initMarginAfter": f"{value:.2f}",
            "maintMarginAfter": f"{value:.2f}",
            "equityWithLoanAfter": f"{equity:.2f}",
            "commission": self._comminfo.getcommission(qty, price) if qty and price else 0.0,
            "commissionCurrency": CURRENCY,
        }
        raw.update(clientId=conn.client_id or 0, permId=0)
        self._send(conn, *open_order_fields(order_id, self._contract(symbol), raw, state))

    def _modify(self, conn: _Conn, order: _Order, record: dict, raw: dict) -> None:
        if order.done:
            self._error(conn, order.order_id, 104, f"Can't modify a {order.status.lower()} order")
            return
        if record["totalQuantity"] < order.filled:
            self._error(conn, order.order_id, 201, "Order rejected - reason: quantity < filled")
            return
        order.raw = raw
        order.quantity = record["totalQuantity"]
        order.lmt, order.aux = record["lmtPrice"], record["auxPrice"]
        if order.order_type in ("STP", "STP LMT") and order.aux is not None:
            order.stop = order.aux
        order.trailing_percent = record["trailingPercent"]
        order.oca_group = record["ocaGroup"]
        log.info("order %s modified", order.order_id)
        if not order.transmitted:
            order.transmit = record["transmit"]
            if order.transmit:
                self._transmit_group(order)
            return
        self._send_open_order(order)
        self._send_status(order)

    def _transmit_group(self, trigger: _Order) -> None:
        """Send an order and the held orders of its parent group to the "exchange"."""
        root = trigger.parent_id or trigger.order_id
        key = trigger.client_id
        group = [
            o
            for o in sorted(self._book.values(), key=lambda o: o.seq)
            if o.client_id == key
            and not o.transmitted
            and not o.done
            and (o.order_id == root or o.parent_id == root or o is trigger)
        ]
        for order in group:
            order.transmitted = True
            order.eligible_step = self._step + 1
            parent = self._book.get((key, order.parent_id)) if order.parent_id else None
            if parent is not None and parent.status == "Cancelled":
                self._set_status(order, "Cancelled")
                continue
            order.active = parent is None or parent.status == "Filled"
            if order.order_type in ("STP", "STP LMT"):
                order.stop = order.aux
            elif order.order_type == "TRAIL" and order.active:
                order.stop = self._initial_trail(order)  # a child starts trailing when active
            self._send_open_order(order, self._placed_status(order))
            self._set_status(order, self._placed_status(order))

    def _placed_status(self, order: _Order) -> str:
        """Submitted for orders working at the "exchange"; PreSubmitted for held ones."""
        if not order.active or order.order_type in ("STP", "STP LMT", "TRAIL"):
            return "PreSubmitted"
        return "Submitted"

    def _initial_trail(self, order: _Order) -> float | None:
        initial = _opt_float(order.raw.get("trailStopPrice", ""))
        if initial is not None:
            return initial
        close = self._last_close(order.symbol)
        if close is None:
            return None  # no price yet: set from the first bar's close
        return close + self._trail_amount(order, close) * (1 if order.buy else -1)

    def _trail_amount(self, order: _Order, price: float) -> float:
        if order.trailing_percent is not None:
            return price * order.trailing_percent / 100
        return order.aux or 0.0

    def _on_cancel_order(self, conn: _Conn, fields: list[str]) -> None:
        order_id = _int(fields[2])
        order = self._book.get((conn.client_id or 0, order_id))
        if order is None:
            self._error(conn, order_id, 135, f"Can't find order with id = {order_id}")
            return
        if order.done:
            self._error(
                conn,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
            return
        self._cancel(order)

    def _on_global_cancel(self, conn: _Conn, fields: list[str]) -> None:
        for order in sorted(self._book.values(), key=lambda o: o.seq):
            if not order.done:
                self._cancel(order)

    def _cancel(self, order: _Order) -> None:
        """Cancel an order and, for a bracket parent, its children."""
        self._set_status(order, "Cancelled")
        for child in self._book.values():
            if (
                child.client_id == order.client_id
                and child.parent_id == order.order_id
                and not child.done
            ):
                self._set_status(child, "Cancelled")

    def _set_status(self, order: _Order, status: str) -> None:
        if order.status == status:
            return
        with self._lock:
            order.status = status
            if status in DONE:
                order.completed_time = _ib_time(self._now()) + " UTC"
        log.debug("order %s -> %s", order.order_id, status)
        self._send_status(order)

    def _send_status(self, order: _Order) -> None:
        conn = self._conn_of(order.client_id)
        if conn is None:
            return
        self._send(
            conn, Out.ORDER_STATUS, order.order_id, order.status, order.filled, order.remaining,
            order.avg_price, order.perm_id, order.parent_id, order.last_price, order.client_id,
            "", 0,
        )  # fmt: skip

    def _order_raw(self, order: _Order) -> dict[str, Any]:
        raw = dict(order.raw)
        raw.update(clientId=order.client_id, permId=order.perm_id)
        if order.order_type == "TRAIL" and order.stop is not None:
            raw["trailStopPrice"] = order.stop
        return raw

    def _send_open_order(self, order: _Order, status: str | None = None, conn=None) -> None:
        conn = conn or self._conn_of(order.client_id)
        if conn is None:
            return
        state = {"status": status or order.status}
        fields = open_order_fields(order.order_id, order.contract, self._order_raw(order), state)
        self._send(conn, *fields)

    def _on_req_open_orders(self, conn: _Conn, fields: list[str]) -> None:
        everyone = _int(fields[0]) in (In.REQ_ALL_OPEN_ORDERS, In.REQ_AUTO_OPEN_ORDERS)
        for order in sorted(self._book.values(), key=lambda o: o.seq):
            if order.transmitted and not order.done:
                if everyone or order.client_id == conn.client_id:
                    self._send_open_order(order, conn=conn)
                    if order.client_id == conn.client_id:
                        self._send_status(order)
        self._send(conn, Out.OPEN_ORDER_END, 1)

    def _on_req_completed_orders(self, conn: _Conn, fields: list[str]) -> None:
        for order in sorted(self._book.values(), key=lambda o: o.seq):
            if order.done:
                raw = self._order_raw(order)
                raw["filledQuantity"] = order.filled
                parent = self._book.get((order.client_id, order.parent_id))
                raw["parentPermId"] = parent.perm_id if parent else ""
                state = {
                    "status": order.status,
                    "completedTime": order.completed_time,
                    "completedStatus": order.status,
                }
                self._send(conn, *completed_order_fields(order.contract, raw, state))
        self._send(conn, Out.COMPLETED_ORDERS_END)

    # -------------------------------------------------------------- matching

    def _match(self, symbol: str, i: int) -> set[str]:
        """Try every working order on ``symbol`` against bar ``i``; the symbols that traded."""
        d = self._data[symbol]
        bar = tuple(float(d[k][i]) for k in ("open", "high", "low", "close"))
        volume = float(d["volume"][i])
        stamp = int(d["time"][i])
        traded: set[str] = set()
        for order in sorted(self._book.values(), key=lambda o: o.seq):
            if (
                order.symbol != symbol
                or order.done
                or not order.transmitted
                or not order.active
                or order.eligible_step > self._step
            ):
                continue
            if order.order_type == "TRAIL" and order.stop is None:
                order.stop = bar[3] + self._trail_amount(order, bar[3]) * (1 if order.buy else -1)
                continue
            price = self._try_exec(order, *bar)
            if price is not None:
                size = order.remaining
                if self._volume_perc:
                    size = min(size, (volume * self._volume_perc) // 100)
                if size > 0:
                    self._execute(order, price, size, stamp)
                    traded.add(symbol)
            if not order.done and order.order_type == "TRAIL":
                self._trail_adjust(order, bar[3])
        return traded

    def _slippage(self, price: float, bar_range: float) -> float:
        return price * self._slip_perc + self._slip_range * bar_range

    def _slip_up(self, pmax: float, price: float, bar_range: float) -> float:
        amount = self._slippage(price, bar_range)
        if not amount:
            return price
        return min(price + amount, pmax)

    def _slip_down(self, pmin: float, price: float, bar_range: float) -> float:
        amount = self._slippage(price, bar_range)
        if not amount:
            return price
        return max(price - amount, pmin)

    def _try_exec(self, order: _Order, po: float, ph: float, pl: float, pc: float) -> float | None:
        """Backtrader BackBroker's matching (``_try_exec_*``) with CostBroker's slippage.

        As configured by ``kerastrader.strategies.costs.configure_broker``: fills at the open
        slip (``slip_open``), slipped prices are capped at the bar's high/low or the limit
        (``slip_match``), a limit touched inside the bar fills at the limit without slippage.
        """
        rng = ph - pl if ph - pl > 0 else 0.0
        kind = order.order_type
        if kind == "MKT":
            return self._slip_up(ph, po, rng) if order.buy else self._slip_down(pl, po, rng)
        if kind == "LMT" or (kind == "STP LMT" and order.triggered):
            return self._exec_limit(order.buy, po, ph, pl, order.lmt, rng)
        stop = order.stop
        if stop is None:
            return None
        if kind in ("STP", "TRAIL"):
            if order.buy:
                if po >= stop:
                    return self._slip_up(ph, po, rng)
                if ph >= stop:
                    return self._slip_up(ph, stop, rng)
            else:
                if po <= stop:
                    return self._slip_down(pl, po, rng)
                if pl <= stop:
                    return self._slip_down(pl, stop, rng)
            return None
        # STP LMT, not triggered yet
        limit = order.lmt
        assert limit is not None
        if order.buy:
            if po >= stop:
                order.triggered = True
                return self._exec_limit(True, po, ph, pl, limit, rng)
            if ph >= stop:
                order.triggered = True
                if po > pc:
                    if limit >= stop:
                        return self._slip_up(ph, stop, rng)
                    if limit >= pc:
                        return limit
                elif limit >= stop:
                    return self._slip_up(ph, stop, rng)
        else:
            if po <= stop:
                order.triggered = True
                return self._exec_limit(False, po, ph, pl, limit, rng)
            if pl <= stop:
                order.triggered = True
                if po <= pc:
                    if limit <= stop:
                        return self._slip_down(pl, stop, rng)
                    if limit <= pc:
                        return limit
                elif limit <= stop:
                    return self._slip_down(pl, stop, rng)
        return None

    def _exec_limit(
        self, buy: bool, po: float, ph: float, pl: float, limit: float | None, rng: float
    ) -> float | None:
        if limit is None:
            return None
        if buy:
            if limit >= po:  # opened at or below the limit: buy at the (slipped) open
                return self._slip_up(min(ph, limit), po, rng)
            return limit if limit >= pl else None
        if limit <= po:  # Backtrader caps a sell's slipped open at the limit itself
            return self._slip_down(limit, po, rng)
        return limit if limit <= ph else None

    def _trail_adjust(self, order: _Order, close: float) -> None:
        """Backtrader's ``Order.trailadjust``: move the stop with the close, never back."""
        amount = self._trail_amount(order, close)
        if order.buy:
            price = close + amount
            if order.stop is None or price < order.stop:
                order.stop = price
        else:
            price = close - amount
            if order.stop is None or price > order.stop:
                order.stop = price

    def _pieces(self, size: float) -> list[float]:
        k = max(1, int(self.faults.partial_fills))
        if k == 1:
            return [size]
        if float(size).is_integer():
            base, extra = divmod(int(size), k)
            pieces = [float(base + (1 if j < extra else 0)) for j in range(k)]
            return [p for p in pieces if p > 0]
        return [size / k] * k

    def _execute(self, order: _Order, price: float, size: float, stamp: int) -> None:
        """Book the fill (in ``Faults.partial_fills`` executions) and tell the owner."""
        note = getattr(self._comminfo, "note_datetime", None)
        if note is not None:
            note(dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None))
        conn = self._conn_of(order.client_id)
        signed = 1.0 if order.buy else -1.0
        for piece in self._pieces(size):
            commission = float(self._comminfo.getcommission(piece, price))
            self._comminfo.confirmexec(piece, price)
            realized = self._book_position(order.symbol, signed * piece, price, commission)
            self._exec_seq += 1
            exec_id = f"{self._conids[order.symbol]:08x}.{self._exec_seq:08x}.01.01"
            with self._lock:
                cost = order.avg_price * order.filled + price * piece
                order.filled += piece
                order.avg_price = cost / order.filled
                order.last_price = price
                fill = {
                    "execId": exec_id,
                    "orderId": order.order_id,
                    "clientId": order.client_id,
                    "permId": order.perm_id,
                    "orderRef": order.raw.get("orderRef", ""),
                    "symbol": order.symbol,
                    "side": "BOT" if order.buy else "SLD",
                    "shares": piece,
                    "price": price,
                    "time": dt.datetime.fromtimestamp(stamp, dt.UTC),
                    "commission": commission,
                    "cumQty": order.filled,
                    "avgPrice": order.avg_price,
                    "realizedPNL": None if realized >= UNSET_FLOAT else realized,
                }
                self._fills.append(fill)
            log.info(
                "fill %s: order %s %s %g %s @ %.4f, commission %.4f",
                exec_id, order.order_id, fill["side"], piece, order.symbol, price, commission,
            )  # fmt: skip
            if conn is not None:
                self._send(conn, *self._exec_fields(-1, fill, order))
                self._send(conn, *self._commission_fields(fill))
            # IB has no "PartiallyFilled" status: a part-filled order stays Submitted (with
            # filled/remaining), which keeps ib_async's Trade.isActive() true.
            if order.remaining <= 1e-9:
                self._set_status(order, "Filled")
            elif order.status != "Submitted":
                self._set_status(order, "Submitted")
            else:
                self._send_status(order)
        if order.status == "Filled":
            self._after_fill(order)

    def _after_fill(self, order: _Order) -> None:
        """Bracket and OCA consequences of a complete fill."""
        for other in sorted(self._book.values(), key=lambda o: o.seq):
            if other is order or other.done or other.client_id != order.client_id:
                continue
            if other.parent_id == order.order_id and other.transmitted:
                other.active = True  # a bracket child works from the next bar on
                other.eligible_step = self._step + 1
                if other.order_type == "TRAIL" and other.stop is None:
                    other.stop = self._initial_trail(other)
                self._set_status(other, self._placed_status(other))
            elif order.parent_id and other.parent_id == order.parent_id:
                self._set_status(other, "Cancelled")  # the bracket's other leg
            elif order.oca_group and other.oca_group == order.oca_group:
                self._set_status(other, "Cancelled")

    def _book_position(self, symbol: str, qty: float, price: float, commission: float) -> float:
        """Update cash, position and average cost (commission included, as IB reports it).

        Returns the realized P&L of the part that closed a position (net of this execution's
        commission), or IB's unset double when nothing was closed.
        """
        with self._lock:
            self._cash -= qty * price + commission
            pos = self._positions.get(symbol, 0.0)
            avg = self._avg_cost.get(symbol, 0.0)
            realized = UNSET_FLOAT
            if pos == 0 or (pos > 0) == (qty > 0):  # opening or adding
                new = pos + qty
                avg = (avg * abs(pos) + abs(qty) * price + commission) / abs(new)
            else:
                closed = min(abs(qty), abs(pos))
                realized = closed * (price - avg) * (1 if pos > 0 else -1) - commission
                new = pos + qty
                if abs(new) < 1e-9:
                    new, avg = 0.0, 0.0
                elif (new > 0) != (pos > 0):  # flipped: the rest opens at this price
                    avg = price
                self._realized[symbol] = self._realized.get(symbol, 0.0) + realized
            self._positions[symbol] = new
            self._avg_cost[symbol] = avg
            return realized

    def _exec_fields(self, req_id: int, fill: dict, order: _Order | None = None) -> list[Any]:
        contract = self._contract(fill["symbol"])
        stamp = fill["time"].strftime("%Y%m%d %H:%M:%S") + " UTC"
        liquidity = 1 if order is not None and order.order_type == "LMT" else 2
        return [
            Out.EXECUTION_DATA, req_id, fill["orderId"],
            *[contract[k] for k in CONTRACT_FIELDS if k != "primaryExchange"],
            fill["execId"], stamp, self.account, "SIM", fill["side"], fill["shares"],
            fill["price"], fill["permId"], fill["clientId"], 0, fill["cumQty"],
            fill["avgPrice"], fill["orderRef"], "", "", "", liquidity,
        ]  # fmt: skip

    @staticmethod
    def _commission_fields(fill: dict) -> list[Any]:
        realized = fill["realizedPNL"]
        realized_text = UNSET_DOUBLE if realized is None else realized
        return [
            Out.COMMISSION_REPORT, 1, fill["execId"], fill["commission"], CURRENCY,
            realized_text, UNSET_DOUBLE, "",
        ]  # fmt: skip

    def _on_req_executions(self, conn: _Conn, fields: list[str]) -> None:
        req_id = _int(fields[2])
        client_id, acct, since, symbol, sec_type, _exchange, side = (fields + [""] * 10)[3:10]
        side_code = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        start = _parse_exec_time(since)
        for fill in self.fills:
            if (
                (_int(client_id) and fill["clientId"] != _int(client_id))
                or (acct and acct != self.account)
                or (symbol and fill["symbol"] != symbol)
                or (sec_type and sec_type != "STK")
                or (side_code and fill["side"] != side_code)
                or (start is not None and fill["time"] < start)
            ):
                continue
            self._send(conn, *self._exec_fields(req_id, fill))
            self._send(conn, *self._commission_fields(fill))
        self._send(conn, Out.EXECUTION_DATA_END, 1, req_id)

    # ------------------------------------------------------------ account

    def _net_liquidation(self) -> float:
        value = self._cash
        for sym, qty in self._positions.items():
            if qty:
                value += qty * (self._last_close(sym) or self._avg_cost.get(sym, 0.0))
        return value

    def _account_values(self) -> list[tuple[str, float]]:
        with self._lock:
            net = self._net_liquidation()
            gross = sum(abs(q) * (self._last_close(s) or 0.0) for s, q in self._positions.items())
            cash = self._cash
        return [
            ("NetLiquidation", net),
            ("TotalCashValue", cash),
            ("CashBalance", cash),
            ("AvailableFunds", net),
            ("BuyingPower", net),
            ("EquityWithLoanValue", net),
            ("GrossPositionValue", gross),
        ]

    def _position_fields(self, symbol: str) -> list[Any]:
        contract = self._contract(symbol)
        return [
            Out.POSITION_DATA, 3, self.account,
            *[contract[k] for k in CONTRACT_FIELDS if k != "primaryExchange"],
            self._positions.get(symbol, 0.0), self._avg_cost.get(symbol, 0.0),
        ]  # fmt: skip

    def _portfolio_fields(self, symbol: str) -> list[Any]:
        contract = self._contract(symbol)
        qty = self._positions.get(symbol, 0.0)
        avg = self._avg_cost.get(symbol, 0.0)
        price = self._last_close(symbol) or avg
        return [
            Out.PORTFOLIO_VALUE, 8,
            *[contract[k] for k in CONTRACT_FIELDS if k not in ("exchange",)],
            qty, price, qty * price, avg, qty * (price - avg), self._realized.get(symbol, 0.0),
            self.account,
        ]  # fmt: skip

    def _send_account(self, conn: _Conn, symbols: list[str]) -> None:
        for key, value in self._account_values():
            self._send(conn, Out.ACCT_VALUE, 2, key, round(value, 2), CURRENCY, self.account)
        for sym in symbols:
            self._send(conn, *self._portfolio_fields(sym))
        stamp = dt.datetime.fromtimestamp(self._now(), dt.UTC)
        self._send(conn, Out.ACCT_UPDATE_TIME, 1, stamp.strftime("%H:%M"))

    def _push_account(self, symbols: set[str]) -> None:
        """After fills: position and account updates to the clients that subscribed."""
        for conn in self._ready_conns():
            if conn.positions_sub:
                for sym in sorted(symbols):
                    self._send(conn, *self._position_fields(sym))
            if conn.account_sub:
                self._send_account(conn, sorted(symbols))
            for req_id, account in conn.account_multi.items():
                self._send_account_multi(conn, req_id, account, end=False)

    def _on_req_positions(self, conn: _Conn, fields: list[str]) -> None:
        conn.positions_sub = True
        for sym, qty in list(self._positions.items()):
            if qty:
                self._send(conn, *self._position_fields(sym))
        self._send(conn, Out.POSITION_END, 1)

    def _on_cancel_positions(self, conn: _Conn, fields: list[str]) -> None:
        conn.positions_sub = False

    def _on_req_account_updates(self, conn: _Conn, fields: list[str]) -> None:
        subscribe = fields[2] not in ("", "0")
        conn.account_sub = subscribe
        if not subscribe:
            return
        self._send_account(conn, [s for s, q in self._positions.items() if q])
        self._send(conn, Out.ACCT_DOWNLOAD_END, 1, self.account)

    def _send_account_multi(self, conn: _Conn, req_id: int, account: str, end: bool) -> None:
        for key, value in self._account_values():
            self._send(
                conn, Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", key, round(value, 2),
                CURRENCY,
            )  # fmt: skip
        if end:
            self._send(conn, Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_req_account_updates_multi(self, conn: _Conn, fields: list[str]) -> None:
        req_id, account = _int(fields[2]), fields[3] or self.account
        conn.account_multi[req_id] = account
        self._send_account_multi(conn, req_id, account, end=True)

    def _on_cancel_account_updates_multi(self, conn: _Conn, fields: list[str]) -> None:
        conn.account_multi.pop(_int(fields[2]), None)

    def _on_req_account_summary(self, conn: _Conn, fields: list[str]) -> None:
        req_id, tags = _int(fields[2]), fields[4]
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        for key, value in self._account_values():
            if not wanted or key in wanted or "All" in wanted:
                self._send(
                    conn, Out.ACCOUNT_SUMMARY, 1, req_id, self.account, key, round(value, 2),
                    CURRENCY,
                )  # fmt: skip
        self._send(conn, Out.ACCOUNT_SUMMARY_END, 1, req_id)


# ------------------------------------------------------------------------------ time helpers


def _ib_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y%m%d %H:%M:%S")


def _parse_end(text: str) -> int:
    """reqHistoricalData's endDateTime (``yyyymmdd hh:mm:ss [tz]`` or ``yyyymmdd-hh:mm:ss``).

    The simulator's clock is UTC; a time zone name other than UTC/GMT is ignored.
    """
    text = text.strip().replace("-", " ")
    parts = text.split()
    stamp = " ".join(parts[:2]) if len(parts) >= 2 else parts[0]
    fmt = "%Y%m%d %H:%M:%S" if " " in stamp else "%Y%m%d"
    when = dt.datetime.strptime(stamp, fmt).replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def _parse_exec_time(text: str) -> dt.datetime | None:
    """ExecutionFilter.time (``yyyymmdd-hh:mm:ss`` or ``yyyymmdd hh:mm:ss``), read as UTC."""
    if not text:
        return None
    try:
        return dt.datetime.fromtimestamp(_parse_end(text), dt.UTC)
    except ValueError:
        log.warning("reqExecutions: unreadable time filter %r ignored", text)
        return None


_DURATION_UNITS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 31 * 86_400, "Y": 366 * 86_400}


def _duration_seconds(text: str) -> int:
    """IB's durationStr (``"60 D"``, ``"1 Y"``) in calendar seconds, generously rounded up."""
    number, _, unit = text.strip().partition(" ")
    try:
        return int(number) * _DURATION_UNITS[unit.strip().upper()[:1]]
    except (ValueError, KeyError):
        log.warning("durationStr %r not understood: sending all history", text)
        return 10**12
