"""Fills of the simulated gateway: matching working orders against bars, and executions.

Matching follows Backtrader's BackBroker (``_try_exec_*``) with the project's commission and
slippage (:mod:`kerastrader.strategies.costs`), so a replay fills as a backtest of the same
bars does. Per execution the gateway sends ``execDetails`` (reqId -1), ``commissionReport``
and then ``orderStatus`` with filled/remaining/avgFillPrice, so a Filled status arrives after
its fills and commissions. A part-filled order is reported as Submitted with ``filled > 0``,
as TWS does: IB has no "PartiallyFilled" status, and ib_async's ``Trade.isActive()`` would be
false for one.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from kerastrader.brokers.ib.simulator.clock import parse_exec_time
from kerastrader.brokers.ib.simulator.layouts import CONTRACT_FIELDS, UNSET_FLOAT, to_int
from kerastrader.brokers.ib.wire import UNSET_DOUBLE, Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway
    from kerastrader.brokers.ib.simulator.orders import Order

log = logging.getLogger(__name__)


class FillEngine:
    """Matches orders against each step's bars, books the fills and reports the executions.

    ``fills``: every execution in order, as plain dicts (what ``gateway.fills`` returns).
    """

    def __init__(self, gateway: SimulatedGateway, broker: dict[str, Any]) -> None:
        from kerastrader.strategies.costs import make_commission

        self.gw = gateway
        self.comminfo = make_commission(broker)
        self.slip_perc = float(broker["slippage_bps"]) / 1e4
        self.slip_range = float(broker["slippage_range"])
        cap = float(broker["volume_cap"])
        self.volume_perc = round(cap * 100, 10) if cap else 0.0  # as configure_broker does
        self.fills: list[dict] = []
        self.exec_seq = 0

    # ------------------------------------------------------------------ matching

    def match(
        self, symbol: str, po: float, ph: float, pl: float, pc: float, volume: float, stamp: int
    ) -> set[str]:
        """Try every working order on ``symbol`` against one bar; the symbols that traded."""
        step = self.gw.market.step
        traded: set[str] = set()
        for order in self.gw.book.by_seq():
            if (
                order.symbol != symbol
                or order.done
                or not order.transmitted
                or not order.active
                or order.eligible_step > step
            ):
                continue
            if order.order_type == "TRAIL" and order.stop is None:
                order.stop = pc + order.trail_amount(pc) * (1 if order.buy else -1)
                continue
            price = self.try_exec(order, po, ph, pl, pc)
            if price is not None:
                size = order.remaining
                if self.volume_perc:
                    size = min(size, (volume * self.volume_perc) // 100)
                if size > 0:
                    self.execute(order, price, size, stamp)
                    traded.add(symbol)
            if not order.done and order.order_type == "TRAIL":
                trail_adjust(order, pc)
        return traded

    def slippage(self, price: float, bar_range: float) -> float:
        return price * self.slip_perc + self.slip_range * bar_range

    def slip_up(self, pmax: float, price: float, bar_range: float) -> float:
        amount = self.slippage(price, bar_range)
        if not amount:
            return price
        return min(price + amount, pmax)

    def slip_down(self, pmin: float, price: float, bar_range: float) -> float:
        amount = self.slippage(price, bar_range)
        if not amount:
            return price
        return max(price - amount, pmin)

    def try_exec(self, order: Order, po: float, ph: float, pl: float, pc: float) -> float | None:
        """Backtrader BackBroker's matching (``_try_exec_*``) with CostBroker's slippage.

        As configured by ``kerastrader.strategies.costs.configure_broker``: fills at the open
        slip (``slip_open``), slipped prices are capped at the bar's high/low or the limit
        (``slip_match``), a limit touched inside the bar fills at the limit without slippage.
        """
        rng = ph - pl if ph - pl > 0 else 0.0
        kind = order.order_type
        if kind == "MKT":
            return self.slip_up(ph, po, rng) if order.buy else self.slip_down(pl, po, rng)
        if kind == "LMT" or (kind == "STP LMT" and order.triggered):
            return self.exec_limit(order.buy, po, ph, pl, order.lmt, rng)
        stop = order.stop
        if stop is None:
            return None
        if kind in ("STP", "TRAIL"):
            if order.buy:
                if po >= stop:
                    return self.slip_up(ph, po, rng)
                if ph >= stop:
                    return self.slip_up(ph, stop, rng)
            else:
                if po <= stop:
                    return self.slip_down(pl, po, rng)
                if pl <= stop:
                    return self.slip_down(pl, stop, rng)
            return None
        return self.exec_stop_limit(order, po, ph, pl, pc, stop, rng)

    def exec_stop_limit(
        self, order: Order, po: float, ph: float, pl: float, pc: float, stop: float, rng: float
    ) -> float | None:
        """STP LMT, not triggered yet: Backtrader's ``_try_exec_stoplimit``."""
        limit = order.lmt
        assert limit is not None
        if order.buy:
            if po >= stop:
                order.triggered = True
                return self.exec_limit(True, po, ph, pl, limit, rng)
            if ph >= stop:
                order.triggered = True
                if po > pc:
                    if limit >= stop:
                        return self.slip_up(ph, stop, rng)
                    if limit >= pc:
                        return limit
                elif limit >= stop:
                    return self.slip_up(ph, stop, rng)
        else:
            if po <= stop:
                order.triggered = True
                return self.exec_limit(False, po, ph, pl, limit, rng)
            if pl <= stop:
                order.triggered = True
                if po <= pc:
                    if limit <= stop:
                        return self.slip_down(pl, stop, rng)
                    if limit <= pc:
                        return limit
                elif limit <= stop:
                    return self.slip_down(pl, stop, rng)
        return None

    def exec_limit(
        self, buy: bool, po: float, ph: float, pl: float, limit: float | None, rng: float
    ) -> float | None:
        if limit is None:
            return None
        if buy:
            if limit >= po:  # opened at or below the limit: buy at the (slipped) open
                return self.slip_up(min(ph, limit), po, rng)
            return limit if limit >= pl else None
        if limit <= po:  # Backtrader caps a sell's slipped open at the limit itself
            return self.slip_down(limit, po, rng)
        return limit if limit <= ph else None

    # ------------------------------------------------------------------ executions

    def pieces(self, size: float) -> list[float]:
        k = max(1, int(self.gw.faults.partial_fills))
        if k == 1:
            return [size]
        if float(size).is_integer():
            base, extra = divmod(int(size), k)
            pieces = [float(base + (1 if j < extra else 0)) for j in range(k)]
            return [p for p in pieces if p > 0]
        return [size / k] * k

    def execute(self, order: Order, price: float, size: float, stamp: int) -> None:
        """Book the fill (in ``Faults.partial_fills`` executions) and tell the owner."""
        gw = self.gw
        note = getattr(self.comminfo, "note_datetime", None)
        if note is not None:
            note(dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None))
        conn = gw.conn_of(order.client_id)
        signed = 1.0 if order.buy else -1.0
        for piece in self.pieces(size):
            commission = float(self.comminfo.getcommission(piece, price))
            self.comminfo.confirmexec(piece, price)
            realized = gw.ledger.book(order.symbol, signed * piece, price, commission)
            self.exec_seq += 1
            exec_id = f"{gw.market.conids[order.symbol]:08x}.{self.exec_seq:08x}.01.01"
            with gw.lock:
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
                self.fills.append(fill)
            log.info(
                "fill %s: order %s %s %g %s @ %.4f, commission %.4f",
                exec_id, order.order_id, fill["side"], piece, order.symbol, price, commission,
            )  # fmt: skip
            if conn is not None:
                gw.send(conn, *self.exec_fields(-1, fill, order))
                gw.send(conn, *self.commission_fields(fill))
            # IB has no "PartiallyFilled" status: a part-filled order stays Submitted (with
            # filled/remaining), which keeps ib_async's Trade.isActive() true.
            if order.remaining <= 1e-9:
                gw.book.set_status(order, "Filled")
            elif order.status != "Submitted":
                gw.book.set_status(order, "Submitted")
            else:
                gw.book.send_status(order)
        if order.status == "Filled":
            gw.book.after_fill(order)

    def exec_fields(self, req_id: int, fill: dict, order: Order | None = None) -> list[Any]:
        contract = self.gw.market.contract(fill["symbol"])
        stamp = fill["time"].strftime("%Y%m%d %H:%M:%S") + " UTC"
        liquidity = 1 if order is not None and order.order_type == "LMT" else 2
        return [
            Out.EXECUTION_DATA, req_id, fill["orderId"],
            *[contract[k] for k in CONTRACT_FIELDS if k != "primaryExchange"],
            fill["execId"], stamp, self.gw.account, "SIM", fill["side"], fill["shares"],
            fill["price"], fill["permId"], fill["clientId"], 0, fill["cumQty"],
            fill["avgPrice"], fill["orderRef"], "", "", "", liquidity,
        ]  # fmt: skip

    def commission_fields(self, fill: dict) -> list[Any]:
        realized = fill["realizedPNL"]
        realized_text = UNSET_DOUBLE if realized is None else realized
        return [
            Out.COMMISSION_REPORT, 1, fill["execId"], fill["commission"], self.gw.currency,
            realized_text, UNSET_DOUBLE, "",
        ]  # fmt: skip

    def on_req_executions(self, conn: Connection, fields: list[str]) -> None:
        req_id = to_int(fields[2])
        client_id, acct, since, symbol, sec_type, _exchange, side = (fields + [""] * 10)[3:10]
        side_code = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        start = parse_exec_time(since)
        for fill in self.gw.fills:
            if (
                (to_int(client_id) and fill["clientId"] != to_int(client_id))
                or (acct and acct != self.gw.account)
                or (symbol and fill["symbol"] != symbol)
                or (sec_type and sec_type != "STK")
                or (side_code and fill["side"] != side_code)
                or (start is not None and fill["time"] < start)
            ):
                continue
            self.gw.send(conn, *self.exec_fields(req_id, fill))
            self.gw.send(conn, *self.commission_fields(fill))
        self.gw.send(conn, Out.EXECUTION_DATA_END, 1, req_id)


def trail_adjust(order: Order, close: float) -> None:
    """Backtrader's ``Order.trailadjust``: move the stop with the close, never back."""
    amount = order.trail_amount(close)
    if order.buy:
        price = close + amount
        if order.stop is None or price < order.stop:
            order.stop = price
    else:
        price = close - amount
        if order.stop is None or price > order.stop:
            order.stop = price
