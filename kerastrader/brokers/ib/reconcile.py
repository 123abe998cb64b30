"""The broker's side of starting and resuming against the account: the capital a session
states once, the executions missed while down, positions checked against IB's, and the
orders IB still works adopted rather than sent again.

A module of its own because this is the part of :class:`~kerastrader.brokers.ib.broker.IBBroker`
that only runs at start and after a reconnect, with its own stated rules (capital never above
the net liquidation; a position difference at start stops the session unless
``adopt_positions``; a commission is taken once whatever order it arrives in), while the rest
of the broker runs on every bar. :class:`AccountReconciliation` is mixed into ``IBBroker``
and uses its journal, store, positions and fill handling.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kerastrader.brokers.ib.contracts import multiplier_of
from kerastrader.errors import KerastraderError

log = logging.getLogger("kerastrader.brokers.ib.broker")


class PositionMismatch(KerastraderError):
    """At start, the journal's position differs from IB's and ``adopt_positions`` is off."""


class AccountReconciliation:
    """Capital, reconciliation and adoption for :class:`IBBroker` (see the module docstring)."""

    def _capital(self, snap: dict[str, Any]) -> float:
        """The session's capital, stated once: sizing, PnL and the report start from it.

        ``capital=None`` keeps ``cash`` (tests, the simulated gateway's happy path); ``0`` is
        the account's net liquidation; a positive amount must not exceed it (a session
        sizing from money the account does not have would be refused by IB order by order).
        A restarted run keeps the capital its first session stated."""
        for session in self.journal.sessions():
            if "capital" in session["info"]:
                log.info("capital %.2f (stated when this run started)", session["info"]["capital"])
                return float(session["info"]["capital"])
        wanted, net = self.p.capital, snap.get("net_liquidation")
        if wanted is None:
            capital, source = float(self.p.cash), "the configured cash"
        elif net is None:
            raise KerastraderError(f"IB reported no net liquidation for {snap['account']}")
        elif not wanted:
            capital, source = float(net), f"net liquidation of {snap['account']}"
        elif wanted > net:
            raise KerastraderError(
                f"paper.capital = {wanted:,.2f} is more than the net liquidation of "
                f"{snap['account']} ({net:,.2f}); lower it or leave it 0 to use the account's"
            )
        else:
            capital, source = float(wanted), f"paper.capital (net liquidation {net:,.2f})"
        log.info("capital %.2f: %s", capital, source)
        self.journal.record_session(event="capital", capital=capital, source=source,
                                    net_liquidation=net)  # fmt: skip
        return capital

    def reconcile(self, first: bool = False, snap: dict[str, Any] | None = None) -> dict[str, Any]:
        """Bring the journal and the local book in line with the account.

        Executions IB reports that the journal does not have (they happened while this
        process was down or disconnected) are recorded; positions are taken from the
        executions in the journal and checked against IB's; cash follows from the journal.
        Orders of this run that IB still works are adopted, not sent again. Returns IB's
        snapshot, so a caller needs no second one.
        """
        snap = snap or self.store.snapshot()
        prefix = f"{self.journal.run_id}:"
        recovered = 0
        for f in snap["fills"]:
            if not str(f["ref"] or "").startswith(prefix):
                continue
            self.journal.known_at_ib(f["ref"])
            when = when_of(f.get("time"))
            new = self.journal.record_fill(
                f["exec_id"], f["ref"], f["symbol"], when, f["shares"], f["price"]
            )
            if not new:
                continue  # already journaled
            recovered += 1
            if first:  # the journal's positions and cash below include it
                if f.get("commission") is not None:
                    self.journal.record_commission(f["exec_id"], f["commission"])
                continue
            self.execs[f["exec_id"]] = f  # applied with its commission, whenever that comes
            if f.get("commission") is not None:
                self._on_commission({"exec_id": f["exec_id"], "commission": f["commission"]})
            else:
                self._try_apply(f["exec_id"])
        if first:
            held = self.journal.positions()
            for data in self._datas():
                size = held.get(data._name, 0.0)
                if size:
                    pos = self.positions[data]
                    pos.set(size, self._entry_price(data._name))
            self.cash = self.journal.cash(self.start_cash)
        ib_positions = snap["positions"]
        for data in self._datas():
            ours, theirs = self.positions[data].size, ib_positions.get(data._name, 0.0)
            if abs(ours - theirs) > 1e-9:
                self._position_differs(data, ours, theirs, snap, first)
        by_name = {d._name: d for d in self._datas()}
        for o in snap["open_orders"]:
            ref = str(o["ref"] or "")
            if not ref.startswith(prefix):
                continue
            self.journal.known_at_ib(ref)
            self.journal.record_status(ref, o["status"])
            if ref not in self.orders and ref not in self.adopted and o["symbol"] in by_name:
                # Working at IB from before this process (a restart): its fills count here.
                self.adopted[ref] = by_name[o["symbol"]]
                log.info("adopted %s (%s), which IB still works", ref, o["status"])
        self.journal.record_session(event="reconcile", recovered_fills=recovered,
                                    positions=ib_positions, cash=snap["cash"])  # fmt: skip
        if recovered:
            log.info("reconciled %d execution(s) missing from the journal", recovered)
        return snap

    def _position_differs(self, data, ours: float, theirs: float, snap: dict, first: bool) -> None:
        """The stated rule: at start, stop (PositionMismatch) unless ``adopt_positions``, which
        journals the difference as an adjustment at IB's average cost; after a reconnect only
        warn (a fill may be on its way)."""
        name = data._name
        if not first:
            log.warning("%s: journal position %g, IB reports %g", name, ours, theirs)
            return
        if not self.p.adopt_positions:
            raise PositionMismatch(
                f"{name}: the journal holds {ours:g}, IB's account {snap['account']} holds "
                f"{theirs:g}; the session stops rather than trade from either (check the "
                "account, or start with --adopt-positions to take IB's position)"
            )
        mult = multiplier_of(self._contract(data))
        price = float(snap.get("avg_costs", {}).get(name, 0.0)) / mult
        exec_id = f"adopt:{self.journal.run_id}:{name}:{len(self.journal.sessions())}"
        self.journal.record_fill(exec_id, f"{self.journal.run_id}:adopted", name,
                                 dt.datetime.now(dt.UTC), theirs - ours, price)  # fmt: skip
        self.journal.record_commission(exec_id, 0.0)
        self.positions[data].set(theirs, price)
        self.cash -= (theirs - ours) * price * mult
        log.warning("%s: journal position %g, IB reports %g: took IB's (--adopt-positions)",
                    name, ours, theirs)  # fmt: skip

    def _entry_price(self, symbol: str) -> float:
        size, cost = 0.0, 0.0
        for f in self.journal.fills():
            if f["symbol"] == symbol:
                size += f["shares"]
                cost = cost + f["shares"] * f["price"] if size else 0.0
        return cost / size if size else 0.0


def when_of(seconds: float | None) -> dt.datetime:
    """An execution's time (epoch seconds from IB) as a UTC datetime; now when unknown."""
    if seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
