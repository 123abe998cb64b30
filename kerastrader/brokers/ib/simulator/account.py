"""The simulated account: cash, positions, average costs, and the messages that report them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from kerastrader.brokers.ib.simulator.layouts import (
    CONTRACT_FIELDS,
    UNSET_FLOAT,
    open_order_fields,
    to_int,
)
from kerastrader.brokers.ib.simulator.scenarios import NO_DEFINITION_TEXT
from kerastrader.brokers.ib.wire import Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway


class Ledger:
    """Cash and positions of the one account the gateway serves (``gateway.account``).

    ``positions``: symbol -> signed shares; ``avg_cost``: symbol -> average cost per share,
    commissions included, as IB reports it; ``realized``: symbol -> realized P&L so far.
    Written on the gateway's loop under ``gateway.lock``; read by snapshots from any thread.
    """

    def __init__(self, gateway: SimulatedGateway, cash: float) -> None:
        self.gw = gateway
        self.cash = float(cash)
        self.positions: dict[str, float] = {}
        self.avg_cost: dict[str, float] = {}
        self.realized: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping

    def book(self, symbol: str, qty: float, price: float, commission: float) -> float:
        """Update cash, position and average cost (commission included, as IB reports it).

        A future moves cash by price x multiplier per contract, and IB's average cost for it
        is per contract (price x multiplier). Returns the realized P&L of the part that closed
        a position (net of this execution's commission), or IB's unset double when nothing
        was closed.
        """
        mult = self.gw.market.multiplier(symbol)
        price = price * mult  # per contract from here on
        with self.gw.lock:
            self.cash -= qty * price + commission
            pos = self.positions.get(symbol, 0.0)
            avg = self.avg_cost.get(symbol, 0.0)
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
                self.realized[symbol] = self.realized.get(symbol, 0.0) + realized
            self.positions[symbol] = new
            self.avg_cost[symbol] = avg
            return realized

    def mark(self, symbol: str) -> float:
        """One contract's value now: the last price (x multiplier), else the average cost."""
        last = self.gw.market.last_close(symbol)
        if last is None:
            return self.avg_cost.get(symbol, 0.0)
        return last * self.gw.market.multiplier(symbol)

    def net_liquidation(self) -> float:
        return self.cash + sum(qty * self.mark(sym) for sym, qty in self.positions.items() if qty)

    def holdings(self, account: str) -> tuple[float, dict[str, float]]:
        """Cash and positions of one of the accounts the login manages."""
        if account == self.gw.account:
            return self.cash, self.positions
        other = self.gw.other_accounts.get(account, {})
        return float(other.get("cash", 0.0)), dict(other.get("positions", {}))

    def values(self, account: str | None = None) -> list[tuple[str, float]]:
        """The account values IB reports (key, amount in the account's currency)."""
        with self.gw.lock:
            cash, positions = self.holdings(account or self.gw.account)
            net = cash + sum(q * self.mark(s) for s, q in positions.items() if q)
            gross = sum(abs(q) * self.mark(s) for s, q in positions.items())
        return [
            ("NetLiquidation", net),
            ("TotalCashValue", cash),
            ("CashBalance", cash),
            ("AvailableFunds", net),
            ("BuyingPower", net),
            ("EquityWithLoanValue", net),
            ("GrossPositionValue", gross),
        ]

    # ------------------------------------------------------------------ messages

    def position_fields(self, symbol: str, account: str | None = None) -> list[Any]:
        contract = self.gw.market.contract(symbol)
        account = account or self.gw.account
        if account == self.gw.account:
            qty, avg = self.positions.get(symbol, 0.0), self.avg_cost.get(symbol, 0.0)
        else:  # another account's holding, at the last price
            qty, avg = self.holdings(account)[1].get(symbol, 0.0), self.mark(symbol)
        return [
            Out.POSITION_DATA, 3, account,
            *[contract[k] for k in CONTRACT_FIELDS if k != "primaryExchange"], qty, avg,
        ]  # fmt: skip

    def portfolio_fields(self, symbol: str) -> list[Any]:
        contract = self.gw.market.contract(symbol)
        qty = self.positions.get(symbol, 0.0)
        avg = self.avg_cost.get(symbol, 0.0)
        mult = self.gw.market.multiplier(symbol)
        price = self.gw.market.last_close(symbol) or avg / mult
        value = qty * price * mult
        return [
            Out.PORTFOLIO_VALUE, 8,
            *[contract[k] for k in CONTRACT_FIELDS if k not in ("exchange",)],
            qty, price, value, avg, value - qty * avg, self.realized.get(symbol, 0.0),
            self.gw.account,
        ]  # fmt: skip

    def send_account(self, conn: Connection, symbols: list[str]) -> None:
        gw = self.gw
        for key, value in self.values():
            gw.send(conn, Out.ACCT_VALUE, 2, key, round(value, 2), gw.currency, gw.account)
        for sym in symbols:
            gw.send(conn, *self.portfolio_fields(sym))
        stamp = dt.datetime.fromtimestamp(gw.market.now(), dt.UTC)
        gw.send(conn, Out.ACCT_UPDATE_TIME, 1, stamp.strftime("%H:%M"))

    def send_account_multi(self, conn: Connection, req_id: int, account: str, end: bool) -> None:
        gw = self.gw
        for key, value in self.values(account):
            gw.send(
                conn, Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", key, round(value, 2),
                gw.currency,
            )  # fmt: skip
        if end:
            gw.send(conn, Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def push(self, symbols: set[str]) -> None:
        """After fills: position and account updates to the clients that subscribed."""
        for conn in self.gw.ready_conns():
            if conn.positions_sub:
                for sym in sorted(symbols):
                    self.gw.send(conn, *self.position_fields(sym))
            if conn.account_sub:
                self.send_account(conn, sorted(symbols))
            for req_id, account in conn.account_multi.items():
                if account == self.gw.account:  # the others do not trade here
                    self.send_account_multi(conn, req_id, account, end=False)

    # ------------------------------------------------------------------ requests

    def what_if(self, conn: Connection, order_id: int, parsed: dict[str, Any]) -> None:
        """Answer a what-if order: commission and the order's value as its margin impact."""
        gw = self.gw
        raw = dict(parsed["order"])
        symbol = gw.market.lookup([parsed["contract"][k] for k in CONTRACT_FIELDS])
        if symbol is None:
            gw.error(conn, order_id, 200, NO_DEFINITION_TEXT)
            return
        qty = float(raw["totalQuantity"] or 0)
        price = gw.market.last_close(symbol) or 0.0
        value = qty * price
        equity = self.net_liquidation()
        comminfo = gw.engine.comminfo
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
            "commission": comminfo.getcommission(qty, price) if qty and price else 0.0,
            "commissionCurrency": gw.currency,
        }
        raw.update(clientId=conn.client_id or 0, permId=0)
        gw.send(conn, *open_order_fields(order_id, gw.market.contract(symbol), raw, state))

    def on_req_positions(self, conn: Connection, fields: list[str]) -> None:
        conn.positions_sub = True
        for sym, qty in list(self.positions.items()):
            if qty:
                self.gw.send(conn, *self.position_fields(sym))
        for account in self.gw.other_accounts:  # every account the login manages
            for sym, qty in self.holdings(account)[1].items():
                if qty:
                    self.gw.send(conn, *self.position_fields(sym, account))
        self.gw.send(conn, Out.POSITION_END, 1)

    def on_cancel_positions(self, conn: Connection, fields: list[str]) -> None:
        conn.positions_sub = False

    def on_req_account_updates(self, conn: Connection, fields: list[str]) -> None:
        subscribe = fields[2] not in ("", "0")
        conn.account_sub = subscribe
        if not subscribe:
            return
        self.send_account(conn, [s for s, q in self.positions.items() if q])
        self.gw.send(conn, Out.ACCT_DOWNLOAD_END, 1, self.gw.account)

    def on_req_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        req_id, account = to_int(fields[2]), fields[3] or self.gw.account
        conn.account_multi[req_id] = account
        self.send_account_multi(conn, req_id, account, end=True)

    def on_cancel_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        conn.account_multi.pop(to_int(fields[2]), None)

    def on_req_account_summary(self, conn: Connection, fields: list[str]) -> None:
        req_id, tags = to_int(fields[2]), fields[4]
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        for account in [self.gw.account, *self.gw.other_accounts]:
            for key, value in self.values(account):
                if not wanted or key in wanted or "All" in wanted:
                    self.gw.send(
                        conn, Out.ACCOUNT_SUMMARY, 1, req_id, account, key, round(value, 2),
                        self.gw.currency,
                    )  # fmt: skip
        self.gw.send(conn, Out.ACCOUNT_SUMMARY_END, 1, req_id)
