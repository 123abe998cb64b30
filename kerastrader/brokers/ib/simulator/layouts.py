"""Message layouts of the simulated gateway: placeOrder in, openOrder and completedOrder out.

These messages are positional, long and full of optional blocks, so each is written once here
as the field names ``ib_async`` 2.1.0 sends (``client.py``) or reads (``decoder.py``) at server
version 176, walked in that order. Everything is pure: fields in, fields out.
"""

from __future__ import annotations

import math
from typing import Any

from kerastrader.brokers.ib.wire import SERVER_VERSION, In, Out, ProtocolError

UNSET_FLOAT = 1.7976931348623157e308
UNSET_INT = 2**31 - 1
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


class Cursor:
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


def float_or_unset(text: str) -> float:
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
    cur = Cursor(fields)
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
    if 0 < float_or_unset(order["scalePriceIncrement"]) < UNSET_FLOAT:
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
        size = CONDITION_SIZES.get(to_int(cond_type))
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
    if 0 < float_or_unset(order.get("scalePriceIncrement", "")) < UNSET_FLOAT:
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


# ------------------------------------------------------------------------------ values


def opt_float(text: str) -> float | None:
    """A raw price field -> float, or None for IB's unset (empty or 1.79e308)."""
    value = float_or_unset(text)
    return None if value >= UNSET_FLOAT or math.isnan(value) else value


def to_int(text: str, default: int = 0) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return int(float(text))
