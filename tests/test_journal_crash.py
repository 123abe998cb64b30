"""A session that dies mid-stream (``os._exit`` in its own process, right after its bracket
went to IB) loses only what IB also knows, and the restart recovers the orders by orderRef.

Against the IB-like gateway of ``tests/test_ib_restart.py`` (in this process; the dying
session is a subprocess connected over loopback): session 1 sends a bracket on its third live
bar and exits without closing anything on its fourth, with the entry's fill, the legs'
statuses and the fourth bar still in the journal's buffer. The journal must hold the three
order intents with their orderRefs (committed before ``placeOrder``); session 2, with the same
journal and client id, takes the entry's execution from IB, adopts both working legs by
orderRef and applies the take-profit's fill on day 2.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kerastrader.brokers.ib.broker import IBBroker
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.journal import Journal
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_run

ROOT = Path(__file__).resolve().parents[1]
CASH = 100_000.0

DYING_SESSION = """
import os
import backtrader as bt
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_run

class BracketThenDie(bt.Strategy):
    def __init__(self):
        self.live = 0

    def next(self):
        if self.data.datetime.date(0) < make_bars().index[HISTORY].date():
            return
        self.live += 1
        if self.live == 3:
            price = self.data.close[0]
            self.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=price - 5,
                             limitprice=106.3)
        if self.live == 4:
            os._exit(0)  # no close, no flush, no atexit: as a crash leaves it

live_run(({host!r}, {port}), {path!r}, BracketThenDie, broker_kwargs={{"cash": {cash}}})
raise SystemExit("the session should have died on its fourth live bar")
"""


def restarted_session(gateway: SimulatedGateway, path: Path) -> tuple[IBBroker, Journal]:
    """Session 2: same journal and client id, no strategy orders, to the gateway's end."""
    live = live_run(gateway, path, broker_kwargs={"cash": CASH})
    return live.broker, live.journal


def test_a_session_dying_after_its_bracket_is_recovered_by_order_ref(tmp_path) -> None:
    path = tmp_path / "journal.sqlite"
    gateway = SimulatedGateway({"AAA": make_bars(HISTORY + 2)}, history=HISTORY,
                               ib=IBLike(lockstep_seconds=1800))  # fmt: skip
    host, port = gateway.start()
    try:
        script = DYING_SESSION.format(host=host, port=port, path=str(path), cash=CASH)
        died = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                              capture_output=True, timeout=300)  # fmt: skip
        assert died.returncode == 0, died.stderr.decode()[-2000:]

        with Journal(path) as after_crash:  # what the dead session left on disk
            run_id = after_crash.run_id
            intents = after_crash.orders()
        assert [o["ref"] for o in intents] == [f"{run_id}:{n}" for n in (1, 2, 3)]
        assert [o["order_type"] for o in intents] == ["MKT", "STP", "LMT"]

        second, journal = restarted_session(gateway, path)
    finally:
        gateway.stop()
    assert journal.run_id == run_id
    # The legs IB still worked are adopted by orderRef; the entry's fill came from IB.
    assert set(second.adopted) == {f"{run_id}:2", f"{run_id}:3"}
    fills = journal.fills()
    assert [(f["ref"], f["shares"]) for f in fills] == [(f"{run_id}:1", 10.0),
                                                        (f"{run_id}:3", -10.0)]  # fmt: skip
    assert fills[1]["price"] == pytest.approx(106.3)
    assert second.positions[second.p.datas[0]].size == 0
    assert journal.positions() == {}
    assert second.cash == pytest.approx(journal.cash(CASH))
    journal.close()
