"""Market and clock of the simulated gateway: instruments, history and the real-time replay.

``bars[symbol]`` rows before ``history`` are history (``reqHistoricalData``); later rows are
replayed, one file bar per ``realtimeBar`` message whatever the file's bar size, on a clock
that walks the union of all symbols' replay timestamps ("steps"). At each step the gateway
first matches open orders against the step's bars (fills for bar t+1 reach the client before
bar t+1 itself, as in a backtest where an order placed on bar t fills on bar t+1), then sends
the bars. With ``lockstep=True`` the next step is released only when the client sends
``reqCurrentTime`` (message 49); with ``lockstep=False`` steps go out every ``1 / speed``
seconds (``speed == 0``: as fast as the socket allows). The clock does not move while no
client is subscribed, and ``currentTime`` answers the simulated time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kerastrader.brokers.ib.simulator.clock import duration_seconds, ib_time, parse_end
from kerastrader.brokers.ib.simulator.layouts import to_int
from kerastrader.brokers.ib.simulator.scenarios import NO_DEFINITION_TEXT, PACING_TEXT
from kerastrader.brokers.ib.wire import Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway

log = logging.getLogger(__name__)

CONID_BASE = 700_000  # conIds are CONID_BASE + 1, + 2, ... in the order of ``bars``
ORDER_TYPES_TEXT = "LMT,MKT,STP,STP LMT,TRAIL,TRAIL LIMIT"
EXCHANGE = "SMART"


def bar_arrays(symbol: str, frame: pd.DataFrame) -> dict[str, Any]:
    """A symbol's OHLCV frame as numpy arrays, epoch times and whether its bars are daily."""
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


class Market:
    """The instruments, their bars and the replay clock (see the module docstring)."""

    def __init__(self, gateway: SimulatedGateway, bars: dict[str, pd.DataFrame], history: int):
        self.gw = gateway
        self.symbols = list(bars)
        self.conids = {sym: CONID_BASE + i + 1 for i, sym in enumerate(self.symbols)}
        self.data = {sym: bar_arrays(sym, frame) for sym, frame in bars.items()}
        self.daily = {sym: d["daily"] for sym, d in self.data.items()}
        self.history = history
        start = {sym: min(history, len(d["time"])) for sym, d in self.data.items()}
        self.times: list[int] = sorted(
            {int(t) for sym, d in self.data.items() for t in d["time"][start[sym] :]}
        )
        self.replay_index = dict(start)  # per symbol, the row of the next bar to release
        self.step = -1
        self.undelivered: set[str] = set()  # current step's bars no socket has received
        self.release_wanted = True
        self.awaiting_ack = False
        self.step_conns: set[Connection] = set()
        self.hist_requests = 0
        self.primary = ""  # primaryExchange in contract details

    @property
    def done(self) -> bool:
        return self.step + 1 >= len(self.times)

    # ------------------------------------------------------------------ instruments

    def lookup(self, contract: list[str]) -> str | None:
        """The simulated symbol a request's 12 contract fields name, or None.

        A stock is named by its symbol; a future or a forex pair (``instruments``) by IB's
        symbol and secType (``Forex("EURUSD")`` asks for symbol ``EUR``, currency ``USD``)."""
        con_id, symbol, sec_type = to_int(contract[0]), contract[1], contract[2]
        currency = contract[9]
        if con_id:
            return next((s for s, c in self.conids.items() if c == con_id), None)
        for name in self.symbols:
            c = self.contract(name)
            if (
                c["symbol"] == symbol
                and sec_type in ("", c["secType"])
                and currency in ("", c["currency"])
            ):
                return name
        return None

    def contract(self, symbol: str, exchange: str = EXCHANGE) -> dict[str, Any]:
        """The contract as IB describes it: a stock, or what ``instruments[symbol]`` says (a
        future's multiplier and expiry, a forex pair's base symbol, currency and IDEALPRO)."""
        spec = self.gw.instruments.get(symbol, {})
        base = {
            "conId": self.conids[symbol],
            "symbol": symbol,
            "secType": "STK",
            "lastTradeDateOrContractMonth": "",
            "strike": 0,
            "right": "",
            "multiplier": "",
            "exchange": exchange,
            "primaryExchange": "",
            "currency": self.gw.currency,
            "localSymbol": symbol,
            "tradingClass": symbol,
        }
        base.update({k: v for k, v in spec.items() if k in base and k != "conId"})
        if "exchange" in spec and exchange == EXCHANGE:
            base["exchange"] = spec["exchange"]
        return base

    def min_tick(self, symbol: str) -> float:
        """The symbol's price grid: ``instruments[symbol]["minTick"]``, else the gateway's."""
        return float(self.gw.instruments.get(symbol, {}).get("minTick", self.gw.min_tick))

    def multiplier(self, symbol: str) -> float:
        """Cash per point per contract (a future's multiplier), 1 for stocks and forex."""
        text = self.gw.instruments.get(symbol, {}).get("multiplier", "")
        return float(text) if text not in ("", None) else 1.0

    def details_fields(self, req_id: int, symbol: str) -> list[Any]:
        """contractDetails (10): time zone and hours say how the bars' clock runs."""
        c = self.contract(symbol)
        return [
            Out.CONTRACT_DATA, req_id, c["symbol"], c["secType"],
            c["lastTradeDateOrContractMonth"], 0, "", c["exchange"], c["currency"],
            c["localSymbol"],  # localSymbol
            c["localSymbol"],  # marketName
            c["tradingClass"],  # tradingClass
            self.conids[symbol],
            self.min_tick(symbol),  # minTick
            c["multiplier"],  # multiplier
            ORDER_TYPES_TEXT,
            c["exchange"],  # validExchanges
            1,  # priceMagnifier
            0,  # underConId
            f"{symbol} (simulated)",  # longName
            self.primary, "", "", "", "",  # primaryExchange, contractMonth, industry, ...
            *self.hours_fields(symbol),  # timeZoneId, tradingHours, liquidHours
            "", "",  # evRule, evMultiplier
            0,  # secIdList
            1,  # aggGroup
            "", "", "", "",  # underSymbol, underSecType, marketRuleIds, realExpirationDate
            "COMMON",  # stockType
            1, 1, 1,  # minSize, sizeIncrement, suggestedSizeIncrement
        ]  # fmt: skip

    def hours_fields(self, symbol: str) -> list[str]:
        return ["UTC", "", ""]  # the bars' index is naive UTC; no session hours

    def on_req_contract_details(self, conn: Connection, fields: list[str]) -> None:
        req_id = to_int(fields[2])
        symbol = self.lookup(fields[3:15])
        if symbol is None:
            self.gw.error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        self.gw.send(conn, *self.details_fields(req_id, symbol))
        self.gw.send(conn, Out.CONTRACT_DATA_END, 1, req_id)

    # ------------------------------------------------------------------ clock

    def now(self) -> int:
        """Simulated time: the latest released bar (epoch seconds)."""
        if self.step >= 0:
            return self.times[self.step]
        last = [int(d["time"][i - 1]) for s, d in self.data.items() if (i := self.replay_index[s])]
        return max(last) if last else int(dt.datetime.now(dt.UTC).timestamp())

    def last_close(self, symbol: str) -> float | None:
        i = self.replay_index[symbol]
        return float(self.data[symbol]["close"][i - 1]) if i else None

    def on_req_current_time(self, conn: Connection, fields: list[str]) -> None:
        self.gw.send(conn, Out.CURRENT_TIME, 1, self.now())
        if self.gw.lockstep and self.awaiting_ack:
            self.awaiting_ack = False
            self.release_wanted = True
            self.maybe_release()

    # ------------------------------------------------------------------ history

    def on_req_historical_data(self, conn: Connection, fields: list[str]) -> None:
        req_id = to_int(fields[1])
        self.hist_requests += 1
        if self.hist_requests in self.gw.faults.pacing_violation_on:
            self.gw.error(conn, req_id, 162, PACING_TEXT)
            return
        symbol = self.lookup(fields[2:14])
        if symbol is None:
            self.gw.error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        end_text, duration, format_date = fields[15], fields[17], to_int(fields[20], 1)
        keep_up = fields[-2] not in ("", "0") if len(fields) > 22 else False
        if keep_up:
            log.warning("reqHistoricalData keepUpToDate=True: updates are not streamed")
        data = self.data[symbol]
        released = self.replay_index[symbol]
        times = data["time"][:released]
        end = parse_end(end_text) if end_text else (int(times[-1]) if len(times) else 0)
        start = end - duration_seconds(duration) if duration else None
        rows = [i for i, t in enumerate(times) if t <= end and (start is None or t > start)]
        out: list[Any] = [Out.HISTORICAL_DATA, req_id]
        out += [ib_time(start if start is not None else 0), ib_time(end), len(rows)]
        for i in rows:
            o, h, lo, c = (float(data[k][i]) for k in ("open", "high", "low", "close"))
            out += [self.bar_date(symbol, i, format_date), o, h, lo, c, float(data["volume"][i])]
            out += [(h + lo + c) / 3, 1]  # wap, count
        self.gw.send(conn, *out)

    def bar_date(self, symbol: str, i: int, format_date: int) -> str:
        """A history bar's date as IB writes it: daily bars always as yyyymmdd."""
        stamp = self.data[symbol]["index"][i]
        if self.daily[symbol]:
            return stamp.strftime("%Y%m%d")
        if format_date == 2:
            return str(int(self.data[symbol]["time"][i]))
        return stamp.strftime("%Y%m%d %H:%M:%S")

    # ------------------------------------------------------------------ real-time bars

    def on_req_real_time_bars(self, conn: Connection, fields: list[str]) -> None:
        req_id = to_int(fields[2])
        symbol = self.lookup(fields[3:15])
        if symbol is None:
            self.gw.error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        self.subscribe(conn, req_id, symbol)

    def subscribe(self, conn: Connection, req_id: int, symbol: str) -> None:
        conn.bar_subs[req_id] = symbol
        log.info("%r subscribed to real-time bars of %s (reqId %s)", conn, symbol, req_id)
        if symbol in self.undelivered:  # this step's bar has not reached any client yet
            if self.send_bar(conn, req_id, symbol):
                self.undelivered.discard(symbol)
                self.step_conns.add(conn)
        elif self.awaiting_ack and not any(not c.closed for c in self.step_conns):
            # The connection that got the last step is gone: its acknowledgement never comes.
            self.awaiting_ack = False
            self.release_wanted = True
        self.gw.clock_moved()

    def hold_out(self, conn: Connection, fields: tuple[Any, ...]) -> bool:
        """Whether a message waits for a connectivity restore (only in the IB-like mode)."""
        return False

    def hold_in(self, conn: Connection, fields: list[str]) -> bool:
        """Whether a request waits for a connectivity restore (only in the IB-like mode)."""
        return False

    def on_cancel_real_time_bars(self, conn: Connection, fields: list[str]) -> None:
        conn.bar_subs.pop(to_int(fields[2]), None)

    def bar(self, symbol: str) -> tuple[int, float, float, float, float, float]:
        """The current step's bar of ``symbol``: (time, open, high, low, close, volume)."""
        d, i = self.data[symbol], self.replay_index[symbol] - 1
        o, h, lo, c = (float(d[k][i]) for k in ("open", "high", "low", "close"))
        return int(d["time"][i]), o, h, lo, c, float(d["volume"][i])

    def send_bar(self, conn: Connection, req_id: int, symbol: str) -> bool:
        stamp, o, h, lo, c, volume = self.bar(symbol)
        wap = (h + lo + c) / 3
        return self.gw.send(conn, Out.REAL_TIME_BARS, 3, req_id, stamp, o, h, lo, c, volume, wap, 1)

    def subscribed(self) -> bool:
        return any(c.bar_subs for c in self.gw.ready_conns())

    def maybe_release(self) -> None:
        """lockstep=True: release the next step if it is wanted and someone subscribes."""
        if self.release_wanted and self.subscribed() and not self.done:
            self.release_wanted = False
            self.release_step()
            self.awaiting_ack = True

    async def pump(self, wake: asyncio.Event) -> None:
        """lockstep=False: release a step every 1/speed seconds while someone subscribes."""
        interval = 1.0 / self.gw.speed if self.gw.speed > 0 else 0.0
        while not self.done:
            if not self.subscribed():
                wake.clear()
                await wake.wait()
                continue
            self.release_step()
            for conn in self.gw.ready_conns():
                try:
                    await conn.writer.drain()
                except ConnectionError:
                    self.gw.close(conn, "connection lost")
            await asyncio.sleep(interval)

    def release_step(self) -> None:
        """Advance the clock one timestamp: fill orders against its bars, then send the bars."""
        self.step += 1
        stamp = self.times[self.step]
        current = {}
        for sym, d in self.data.items():
            i = self.replay_index[sym]
            if i < len(d["time"]) and int(d["time"][i]) == stamp:
                current[sym] = i
        changed: set[str] = set()
        for sym, i in current.items():
            d = self.data[sym]
            bar = tuple(float(d[k][i]) for k in ("open", "high", "low", "close", "volume"))
            changed |= self.gw.engine.match(sym, *bar, stamp)
        with self.gw.lock:
            for sym, i in current.items():
                self.replay_index[sym] = i + 1
        if changed:
            self.gw.ledger.push(changed)
        self.deliver(list(current))
        log.debug("step %s (%s): %s", self.step, ib_time(stamp), sorted(current))
        if self.done:
            log.info("replay finished after %s steps", len(self.times))
            self.gw.finished.set()

    def deliver(self, symbols: list[str]) -> None:
        """Send the current step's bar of each symbol to every subscription."""
        self.undelivered = set()
        self.step_conns = set()
        for sym in symbols:
            delivered = False
            for conn in self.gw.ready_conns():
                for req_id, sub_sym in list(conn.bar_subs.items()):
                    if sub_sym == sym and self.send_bar(conn, req_id, sym):
                        delivered = True
                        self.step_conns.add(conn)
            if not delivered:
                self.undelivered.add(sym)
