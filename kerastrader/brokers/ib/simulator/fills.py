"""Fills of the simulated gateway: matching working orders against bars, and executions.

Matching follows Backtrader's BackBroker (``_try_exec_*``) with the project's commission and
slippage (:mod:`kerastrader.brokers.costs`), so a replay fills as a backtest of the same
bars does. Per execution the happy path sends ``execDetails`` (reqId -1),
``commissionReport`` and then ``orderStatus`` with filled/remaining/avgFillPrice, so a Filled
status arrives after its fills and commissions. The IB-like mode reports as IB does
(``IBLike.report_order``): usually ``orderStatus``, ``execDetails``, then the commission report
a little later; or the execution and its commission report first and the status a little
later. IB never sends a commission report before its execution (ib_async pairs a report with
an execution it has seen and drops it otherwise), so neither does the gateway. A part-filled
order is reported as Submitted with ``filled > 0``, as TWS does: IB has no "PartiallyFilled"
status, and ib_async's ``Trade.isActive()`` would be false for one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kerastrader.brokers.ib.simulator.checks import TRAILING
from kerastrader.brokers.ib.simulator.clock import parse_exec_time
from kerastrader.brokers.ib.simulator.layouts import CONTRACT_FIELDS, UNSET_FLOAT, to_int
from kerastrader.brokers.ib.wire import UNSET_DOUBLE, Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway
    from kerastrader.brokers.ib.simulator.orders import Order

log = logging.getLogger(__name__)

# USD per contract: IB's published Fixed rate for US futures (exchange and regulatory fees,
# which IB passes through on top, are left out); the project's cost model prices stocks.
FUTURES_COMMISSION = 0.85


class FillEngine:
    """Matches orders against each step's bars, books the fills and reports the executions.

    ``fills``: every execution in order, as plain dicts (what ``gateway.fills`` returns).
    """

    def __init__(self, gateway: SimulatedGateway, broker: dict[str, Any]) -> None:
        from kerastrader.brokers.costs import make_commission

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
        self,
        symbol: str,
        po: float,
        ph: float,
        pl: float,
        pc: float,
        volume: float,
        stamp: int,
        cap: tuple[float, float] | None = None,
    ) -> set[str]:
        """Try every working order on ``symbol`` against one bar; the symbols that traded.

        ``cap``: (high, low) that slippage may not pass and whose range ``slippage_range``
        scales, when it is not the bar's own (the IB-like mode's 5-second bars slip as their
        file bar does, so a fill matches the backtest's).
        """
        step = self.gw.market.step
        ch, cl = cap if cap is not None else (ph, pl)
        traded: set[str] = set()
        for order in self.gw.book.by_seq():
            if (
                order.symbol != symbol
                or order.done
                or not order.transmitted
                or not order.active
                or order.eligible_step > step
                or order.why_held
            ):
                continue
            if order.order_type in TRAILING and order.stop is None:
                order.stop = pc + order.trail_amount(pc) * (1 if order.buy else -1)
                continue
            price = self.try_exec(order, po, ph, pl, pc, ch, cl)
            if price is not None:
                size = order.remaining
                if self.volume_perc:
                    size = min(size, (volume * self.volume_perc) // 100)
                if size > 0:
                    self.execute(order, price, size, stamp)
                    traded.add(symbol)
            if not order.done and order.order_type in TRAILING and not order.triggered:
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

    def try_exec(
        self, order: Order, po: float, ph: float, pl: float, pc: float, ch: float, cl: float
    ) -> float | None:
        """Backtrader BackBroker's matching (``_try_exec_*``) with CostBroker's slippage.

        As configured by ``kerastrader.brokers.costs.configure_broker``: fills at the open
        slip (``slip_open``), slipped prices are capped at the high/low ``ch``/``cl`` or the
        limit (``slip_match``), a limit touched inside the bar fills at the limit without
        slippage. A TRAIL LIMIT is a trailing STP LMT whose limit is its stop -/+ the offset.
        """
        rng = ch - cl if ch - cl > 0 else 0.0
        kind = order.order_type
        if kind == "MKT":
            return self.slip_up(ch, po, rng) if order.buy else self.slip_down(cl, po, rng)
        if kind == "LMT" or (kind in ("STP LMT", "TRAIL LIMIT") and order.triggered):
            return self.exec_limit(order.buy, po, ph, pl, order.lmt, rng, ch, cl)
        stop = order.stop
        if stop is None:
            return None
        if kind in ("STP", "TRAIL"):
            if order.buy:
                if po >= stop:
                    return self.slip_up(ch, po, rng)
                if ph >= stop:
                    return self.slip_up(ch, stop, rng)
            else:
                if po <= stop:
                    return self.slip_down(cl, po, rng)
                if pl <= stop:
                    return self.slip_down(cl, stop, rng)
            return None
        if kind == "TRAIL LIMIT":
            offset = order.lmt_offset or 0.0
            order.lmt = stop + offset if order.buy else stop - offset
        return self.exec_stop_limit(order, po, ph, pl, pc, stop, rng, ch, cl)

    def exec_stop_limit(
        self,
        order: Order,
        po: float,
        ph: float,
        pl: float,
        pc: float,
        stop: float,
        rng: float,
        ch: float,
        cl: float,
    ) -> float | None:
        """STP LMT, not triggered yet: Backtrader's ``_try_exec_stoplimit``."""
        limit = order.lmt
        assert limit is not None
        if order.buy:
            if po >= stop:
                order.triggered = True
                return self.exec_limit(True, po, ph, pl, limit, rng, ch, cl)
            if ph >= stop:
                order.triggered = True
                if po > pc:
                    if limit >= stop:
                        return self.slip_up(ch, stop, rng)
                    if limit >= pc:
                        return limit
                elif limit >= stop:
                    return self.slip_up(ch, stop, rng)
        else:
            if po <= stop:
                order.triggered = True
                return self.exec_limit(False, po, ph, pl, limit, rng, ch, cl)
            if pl <= stop:
                order.triggered = True
                if po <= pc:
                    if limit <= stop:
                        return self.slip_down(cl, stop, rng)
                    if limit <= pc:
                        return limit
                elif limit <= stop:
                    return self.slip_down(cl, stop, rng)
        return None

    def exec_limit(
        self,
        buy: bool,
        po: float,
        ph: float,
        pl: float,
        limit: float | None,
        rng: float,
        ch: float,
        cl: float,
    ) -> float | None:
        if limit is None:
            return None
        if buy:
            if limit >= po:  # opened at or below the limit: buy at the (slipped) open
                return self.slip_up(min(ch, limit), po, rng)
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
        future = order.contract.get("secType") == "FUT"
        for piece in self.pieces(size):
            if future:  # IB charges futures per contract, not on value
                commission = piece * FUTURES_COMMISSION
            else:
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
            if gw.ib is None:
                if conn is not None:
                    gw.send(conn, *self.exec_fields(-1, fill, order))
                    gw.send(conn, *self.commission_fields(fill))
                self.report_status(order)
            elif gw.ib.report_order == "commission_first":  # the status comes a bit later
                if conn is not None:
                    gw.send(conn, *self.exec_fields(-1, fill, order))
                    gw.send(conn, *self.commission_fields(fill))
                fields = self.report_status(order, send=False)  # as it is now, sent later
                self.later(lambda order=order, fields=fields: gw.book.send_status(order, fields))
            else:  # as IB usually reports a fill: status, execution, commission a bit later
                self.report_status(order)
                if conn is not None:
                    gw.send(conn, *self.exec_fields(-1, fill, order))
                self.report_commission(order.client_id, fill)
        if order.status == "Filled":
            gw.book.after_fill(order)

    def report_status(self, order: Order, send: bool = True) -> list[Any]:
        """The order's status after an execution (its orderStatus message, sent unless
        ``send`` is false).

        IB has no "PartiallyFilled" status: a part-filled order stays Submitted (with
        filled/remaining), which keeps ib_async's Trade.isActive() true."""
        book = self.gw.book
        if order.remaining <= 1e-9:
            book.set_status(order, "Filled", send=False)
        elif order.status != "Submitted":
            book.set_status(order, "Submitted", send=False)
        fields = book.status_fields(order)
        if send:
            book.send_status(order, fields)
        return fields

    def report_commission(self, client_id: int, fill: dict) -> None:
        """IB-like: the commission report ``IBLike.commission_delay`` seconds later."""
        gw = self.gw

        def send() -> None:
            conn = gw.conn_of(client_id)
            if conn is not None:
                gw.send(conn, *self.commission_fields(fill))

        self.later(send)

    def later(self, send: Callable[[], None]) -> None:
        """Run ``send`` ``IBLike.commission_delay`` seconds (real time) from now."""
        gw = self.gw
        delay = gw.ib.commission_delay if gw.ib is not None else 0.0
        if delay > 0 and gw.loop is not None:
            gw.loop.call_later(delay, send)
        else:
            send()

    def exec_time(self, fill: dict) -> str:
        """An execution's time as IB writes it: UTC, or the exchange's zone when IB-like."""
        calendar = getattr(self.gw.market, "calendar", None)
        if calendar is None:
            return fill["time"].strftime("%Y%m%d %H:%M:%S") + " UTC"
        stamp = calendar.local(fill["time"].timestamp())
        return stamp.strftime("%Y%m%d %H:%M:%S ") + calendar.time_zone

    def exec_fields(self, req_id: int, fill: dict, order: Order | None = None) -> list[Any]:
        contract = self.gw.market.contract(fill["symbol"])
        stamp = self.exec_time(fill)
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
        if self.gw.ib is not None and self.gw.ib.executions_today_only:
            today = dt.datetime.fromtimestamp(
                self.gw.market.calendar.midnight(self.gw.market.now()), dt.UTC
            )
            start = today if start is None else max(start, today)
        for fill in self.gw.fills:
            if (
                (to_int(client_id) and fill["clientId"] != to_int(client_id))
                or (acct and acct != self.gw.account)
                or (symbol and fill["symbol"] != symbol)
                or (sec_type and sec_type != self.gw.market.contract(fill["symbol"])["secType"])
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
