"""The model strategy: predictions in, sized and risk-managed orders out, for one instrument
or a whole book.

Each bar, after the close: read every instrument's prediction, turn the predictions into
target weights (signal, sizing or a cross-sectional allocation, then position and gross
limits and a turnover limit), and send the orders that move the book there. Market orders
fill at the next bar's open (Backtrader's default; no cheat-on-close).

Within one rebalance the orders that free cash (sells, reductions, closes) go out before the
buys they fund, since the broker checks cash order by order in submission order; buys are
sized to leave ``strategy.cash_buffer`` of equity for commission, slippage and the overnight
gap to the fill. An order the broker still refuses (``Margin``, ``Rejected``) is counted in
:attr:`ModelStrategy.rejections` and sent again on the next bar toward the same target,
rather than waiting for the next rebalance. Entries carry
stop-loss / take-profit / trailing-stop children as a bracket when configured, so the exits
live at the broker between bars, as they would at Interactive Brokers.

The settings are the config's ``[strategy]``, ``[sizing]``, ``[risk]`` and ``[portfolio]``
sections (every key present); see the README's config reference.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import backtrader as bt
import numpy as np

from kerastrader.strategies import allocation as alloc
from kerastrader.strategies import sizing
from kerastrader.strategies.signals import FLAT, threshold_side
from kerastrader.ticks import on_tick

log = logging.getLogger(__name__)


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


class ModelStrategy(bt.Strategy):
    params = (
        ("model", None),  # an artifact (shared by all feeds) or {symbol: artifact}
        ("settings", None),  # {"strategy": {...}, "sizing": {...}, "risk": {...}, ...}
        ("trade_start", None),  # date or datetime: the first bar on which orders may be sent
        ("backend", "onnx"),
        ("round_trip", 0.0),  # round-trip cost as a fraction of value (the cost filter)
        ("clock", None),  # ExchangeClock: the trading day of intraday bars; None: the UTC date
    )

    def __init__(self) -> None:
        from kerastrader.models.indicator import KerasIndicator

        cfg = self.p.settings
        self.s, self.z, self.r, self.pf = (cfg["strategy"], cfg["sizing"], cfg["risk"],
                                           cfg["portfolio"])  # fmt: skip
        self.n = len(self.datas)
        self.regression = cfg.get("head", "direction") == "regression"
        self.horizon = int(cfg.get("horizon", 1))
        models = self.p.model
        self.shared, self.indicators = None, []
        if models is None:
            pass  # a subclass brings its own predictions (prediction_of)
        elif isinstance(models, dict):  # one model per instrument
            self.indicators = [
                KerasIndicator(d, model=models[d._name], backend=self.p.backend) for d in self.datas
            ]
            self.shared = None
        elif self.n > 1:
            from kerastrader.models.shared_indicator import SharedKerasIndicator

            self.shared = SharedKerasIndicator(*self.datas, model=models, backend=self.p.backend)
            self.indicators = []
        else:
            self.indicators = [KerasIndicator(self.data, model=models, backend=self.p.backend)]
            self.shared = None
        self.sides = [FLAT] * self.n
        self.targets = np.zeros(self.n)
        self.pending: list[list[bt.Order]] = [[] for _ in range(self.n)]
        self.children: list[list[bt.Order]] = [[] for _ in range(self.n)]
        self.entry_bar = [-1] * self.n
        self.last_rebalance: dt.date | None = None
        self._day: dt.date | None = None
        self._day_start_value = math.nan
        self._last_value = math.nan
        self.halted_on: dt.date | None = None
        self.events: list[tuple[str, str, str]] = []  # (time, symbol, what): risk decisions
        self.rejections: list[tuple[str, str, str]] = []  # (time, symbol, status) refused
        self.retry = [False] * self.n  # a refused order: try again on the next bar
        # The target weight each position was last sized to; NaN: not sized by this run (a
        # resumed live session's positions), taken as sized to the first target it meets.
        self.sized_to = np.full(self.n, math.nan)
        self.decisions: list[tuple[str, np.ndarray]] = []  # (time, target weights) per rebalance
        base = self.pf["weights"]
        self.base_weights = np.array([float(base.get(d._name, 0.0)) for d in self.datas])

    def start(self) -> None:
        # A resumed live session starts with the account's positions: the sides follow them.
        for i, d in enumerate(self.datas):
            self.sides[i] = _sign(self.getposition(d).size)

    # -- predictions -----------------------------------------------------------------------
    def prediction_of(self, i: int) -> float:
        line = self.shared.lines[i] if self.shared is not None else self.indicators[i].prediction
        return float(line[0])

    def predictions_by_bar(self, i: int, n: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Instrument i's predictions on its own first ``n`` bars, and raw outputs by bar."""
        if self.shared is None:
            ind = self.indicators[i]
            return np.asarray(ind.lines.prediction.array[:n], dtype=float), ind.outputs
        outputs = self.shared.outputs[i]
        out = np.full(n, math.nan)
        scores = self.shared.scores[i]
        for bar, value in scores.items():
            if bar < n:
                out[bar] = value
        return out, outputs

    # -- orders ----------------------------------------------------------------------------
    def _slot(self, data: bt.AbstractDataBase) -> int:
        # Identity, not ==: Backtrader overloads == on lines to build an operation.
        return next(i for i, d in enumerate(self.datas) if d is data)

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Submitted, order.Accepted, order.Partial):
            return
        i = self._slot(order.data)
        child = any(order is o for o in self.children[i])
        if order in self.pending[i]:
            self.pending[i].remove(order)
        if order in self.children[i]:
            self.children[i].remove(order)
            if order.status == order.Completed:
                self.events.append((self._now(), order.data._name, f"{_exit_name(order)} filled"))
                for other in list(self.children[i]):  # OCO: the sibling goes too
                    self.cancel(other)
        if order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired):
            if order.status != order.Canceled:
                log.warning("%s order %s: %s", order.data._name, order.ref, order.getstatusname())
            if order.status in (order.Margin, order.Rejected) and not child:
                self.rejections.append((self._now(), order.data._name, order.getstatusname()))
                self.retry[i] = True
        size = self.getposition(order.data).size
        if not self.pending[i]:
            self.sides[i] = _sign(size)
            if size == 0:
                self.entry_bar[i] = -1

    def _now(self) -> str:
        return self.data.datetime.datetime(0).isoformat(sep=" ")

    def _before_start(self, data) -> bool:
        when = self.p.trade_start
        if when is None:
            return False
        if isinstance(when, dt.datetime):
            return data.datetime.datetime(0) < when
        return data.datetime.date(0) < when

    def _today(self) -> dt.date:
        """The exchange's trading date of the current bar (daily bars: their own date)."""
        if self.p.clock is None or self.data._timeframe >= bt.TimeFrame.Days:
            return self.data.datetime.date(0)
        return self.p.clock.trading_day(self.data.datetime.datetime(0))

    # -- the daily loss limit --------------------------------------------------------------
    def _check_daily_loss(self, value: float) -> bool:
        """True while trading is halted for the day (the limit was hit today)."""
        today = self._today()
        if today != self._day:
            self._day = today
            self._day_start_value = value if math.isnan(self._last_value) else self._last_value
        self._last_value = value
        if self.halted_on == today:
            return True
        limit = self.r["daily_loss_limit"]
        if limit > 0 and value < self._day_start_value * (1.0 - limit):
            self.halted_on = today
            loss = 1.0 - value / self._day_start_value
            self.events.append((self._now(), "*", f"daily loss {loss:.2%}: flatten, halt"))
            log.warning("daily loss limit hit on %s (%.2f%%): flattening", today, 100 * loss)
            for i, d in enumerate(self.datas):
                for o in self.pending[i] + self.children[i]:
                    self.cancel(o)
                if self.getposition(d).size:
                    self.pending[i] = [self.close(data=d)]
                self.sides[i] = FLAT
                self.targets[i] = 0.0
            return True
        return False

    # -- targets ---------------------------------------------------------------------------
    def _size(self, i: int, pred: float, side: int | None = None) -> float:
        """The weight magnitude at full conviction for instrument i; a Kelly bet on the
        other side than ``side`` (when given) is no bet."""
        z = self.z
        budget = self.s["target_percent"] / self.n
        if z["method"] == "fixed":
            return budget
        if z["method"] == "volatility":
            closes = np.asarray(self.datas[i].close.get(size=int(z["vol_lookback"]) + 1))
            per_year = int(z["periods_per_year"]) or sizing.PERIODS_PER_YEAR  # runs resolve 0
            vol = sizing.realised_volatility(closes, per_year)
            return budget * sizing.volatility_scale(vol, z["target_volatility"], math.inf)
        # kelly
        if self.regression:  # a predicted return: mu / sigma^2
            closes = np.asarray(self.datas[i].close.get(size=int(z["vol_lookback"]) + 1))
            r = np.diff(np.log(closes)) if len(closes) > 2 else np.array([])
            var = float(np.var(r, ddof=1)) if len(r) > 1 else math.nan
            raw = sizing.kelly_fraction_continuous(pred / self.horizon, var)
        else:
            raw = sizing.kelly_fraction_binary(pred, z["kelly_payoff"])
        w = sizing.kelly_weight(raw, z["kelly_multiplier"], z["kelly_cap"], True)
        if not _sign(w) or (side is not None and _sign(w) != side):
            return 0.0
        return abs(w) / self.n

    def _expected_move(self, i: int, pred: float) -> float:
        """The prediction as a return over the horizon, the unit of the round-trip cost: a
        regression model's own number; a classifier's probability edge times the recent mean
        absolute h-bar move (:func:`sizing.expected_move`)."""
        if self.regression:
            return pred - self.s["center"]
        closes = np.asarray(
            self.datas[i].close.get(size=int(self.z["vol_lookback"]) + self.horizon)
        )
        return sizing.expected_move(pred, self.s["center"], closes, self.horizon)

    def _independent_targets(self, preds: np.ndarray) -> np.ndarray:
        s = self.s
        out = self.targets.copy()
        bar = len(self)
        for i, p in enumerate(preds):
            if self.pending[i] or self._before_start(self.datas[i]):
                continue
            side = self.sides[i]
            held = self.entry_bar[i] >= 0 and bar - self.entry_bar[i] < s["min_hold"]
            if s["signal"] == "threshold":
                new = threshold_side(p, side, s["enter"], s["exit"], s["allow_short"])
            else:
                new = _sign(sizing.proportional_weight(p, s["center"], s["scale"],
                                                       s["allow_short"], 1.0))  # fmt: skip
                if math.isnan(p):
                    new = side
            if held and new != side:
                continue  # minimum holding period: the exit waits (risk exits do not)
            if s["cost_filter"] and new != FLAT and new != side:
                if not sizing.covers_costs(self._expected_move(i, p), self.p.round_trip):
                    new = side
            if new == FLAT:
                out[i] = 0.0
                continue
            if s["signal"] == "threshold":
                out[i] = new * self._size(i, p, new)
            else:
                size = self._size(i, p)
                out[i] = sizing.proportional_weight(
                    p, s["center"], s["scale"], s["allow_short"], size
                )
        return out

    def _cross_sectional_targets(self, preds: np.ndarray) -> np.ndarray:
        pf, s = self.pf, self.s
        gross = s["target_percent"]
        if pf["allocation"] == "top_k":
            return alloc.top_k_weights(preds, int(pf["top_k"]), s["allow_short"], gross)
        if pf["allocation"] == "proportional":
            return alloc.proportional_weights(preds, s["center"], s["allow_short"], gross)
        return alloc.strategic_weights(self.base_weights, preds, s["center"], s["scale"],
                                       pf["tilt"])  # fmt: skip

    # -- the bar ---------------------------------------------------------------------------
    def next(self) -> None:
        value = self.broker.getvalue()
        if self._check_daily_loss(value):
            return
        if self._before_start(self.data):
            return
        today = self._today()
        rebalance = alloc.is_rebalance_bar(self.last_rebalance, today, self.pf["rebalance"])
        preds = np.array([self.prediction_of(i) for i in range(self.n)])
        independent = self.pf["allocation"] == "independent"
        if not rebalance or (not independent and np.isnan(preds).all()):
            self._retry_refused(value)
            return
        if independent:
            targets = self._independent_targets(preds)
        else:
            targets = self._cross_sectional_targets(preds)
        self.last_rebalance = today
        targets = sizing.apply_limits(targets, self.z["max_position"], self.z["max_gross"])
        current = np.array([self._weight(i, value) for i in range(self.n)])
        targets = sizing.limit_turnover(current, targets, self.pf["turnover_limit"])
        self.targets = targets
        self.decisions.append((self._now(), targets.copy()))
        journal = getattr(self.broker, "journal", None)
        if journal is not None:  # live: every decision is journaled before its orders
            when = self.data.datetime.datetime(0)
            for i, d in enumerate(self.datas):
                journal.record_decision(when, d._name, float(preds[i]), float(targets[i]))
        band = self.pf["resize_band"]
        plans = []
        for i, d in enumerate(self.datas):
            if self.pending[i] or self._before_start(d):
                continue
            refused, self.retry[i] = self.retry[i], False
            side_change = _sign(targets[i]) != _sign(self.getposition(d).size)
            # A held position is resized when its target is off by more than the band: off
            # its current weight for a cross-sectional book (rebalancing is the point), off
            # the weight it was sized to for independent signals (price drift alone is not a
            # reason to trade). Smaller differences are not worth a trade.
            if independent and math.isnan(self.sized_to[i]):
                self.sized_to[i] = targets[i]
            reference = self.sized_to[i] if independent else current[i]
            if side_change or refused or abs(targets[i] - reference) > band:
                plans.append((i, float(targets[i]), side_change))
        if not independent:
            plans += self._funding_sells(plans, targets, current, value)
        self._send(plans, value)

    def _funding_sells(self, plans, targets: np.ndarray, current: np.ndarray, value: float):
        """Trims of positions held above their targets but inside the resize band, when the
        rebalance's buys need more cash than there is: a rebalancer funds its buys from its
        overweights rather than leaving the underweights short."""
        planned = {i for i, _, _ in plans}
        need = sum(max(t - current[i], 0.0) for i, t, _ in plans)
        if need <= 0:
            return []
        have = self.broker.getcash() / value - self.s["cash_buffer"]
        have += sum(max(current[i] - t, 0.0) for i, t, _ in plans)
        out = []
        for i in np.argsort(-(current - targets)):  # the most overweight first
            if need <= have:
                break
            i = int(i)
            if i in planned or current[i] <= targets[i] or self.pending[i]:
                continue
            if _sign(targets[i]) != _sign(current[i]):
                continue
            out.append((i, float(targets[i]), False))
            have += current[i] - targets[i]
        return out

    def _retry_refused(self, value: float) -> None:
        """Send again, toward the same target, the orders the broker refused last bar."""
        plans = []
        for i, d in enumerate(self.datas):
            if self.retry[i] and not self.pending[i] and not self._before_start(d):
                self.retry[i] = False
                side_change = _sign(self.targets[i]) != _sign(self.getposition(d).size)
                plans.append((i, float(self.targets[i]), side_change))
        self._send(plans, value)

    def _send(self, plans: list[tuple[int, float, bool]], value: float) -> None:
        """Orders for (instrument, target weight, side change) plans, those that free cash
        first: the broker checks cash order by order in submission order, so a buy sent
        before the sell that pays for it is refused. Shares are sized on equity less the cash
        buffer, which pays commission, slippage and the gap to the next open."""
        equity = value * (1.0 - self.s["cash_buffer"])
        sized = []
        for i, target, side_change in plans:
            d = self.datas[i]
            shares = sizing.shares_for(target, equity, self._unit_value(d), self.z["fractional"])
            delta = shares - self.getposition(d).size
            if delta:
                sized.append((delta > 0, i, target, shares, side_change))
        # Buys beyond what the cash and this rebalance's sales pay for (at the decision
        # prices, keeping the buffer) are scaled down together, so none is refused for cash.
        held = {i: self.getposition(self.datas[i]).size for _, i, _, _, _ in sized}
        unit = {i: self._unit_value(self.datas[i]) for _, i, _, _, _ in sized}
        cost = sum((sh - held[i]) * unit[i] for buy, i, _, sh, _ in sized if buy)
        proceeds = sum((held[i] - sh) * unit[i] for buy, i, _, sh, _ in sized if not buy)
        available = self.broker.getcash() + proceeds - self.s["cash_buffer"] * value
        if cost > 0 and available < cost:
            scale = max(available, 0.0) / cost
            for k, (buy, i, target, shares, side_change) in enumerate(sized):
                if buy and held[i] >= 0:
                    more = sizing.shares_for(scale, shares - held[i], 1.0, self.z["fractional"])
                    sized[k] = (buy, i, target, held[i] + more, side_change)
        for _, i, target, shares, side_change in sorted(sized, key=lambda x: x[0]):
            self._trade(i, self.datas[i], target, shares, side_change)

    def _unit_value(self, data) -> float:
        """What one share or contract of ``data`` is worth at its close: the price times the
        contract's multiplier (an ES future: 50; stocks, forex and file feeds: 1), so a
        target weight buys the same exposure whatever the instrument."""
        mult = getattr(self.broker.getcommissioninfo(data).p, "mult", 1.0) or 1.0
        return data.close[0] * float(mult)

    def _weight(self, i: int, value: float) -> float:
        pos = self.getposition(self.datas[i])
        return pos.size * self._unit_value(self.datas[i]) / value if value > 0 else 0.0

    def _trade(self, i: int, data, target: float, shares: float, side_change: bool) -> None:
        price = data.close[0]
        held = self.getposition(data).size
        delta = shares - held
        if delta == 0:
            return
        brackets = self.r["stop_loss"] > 0 or self.r["take_profit"] > 0 or self.r["trailing_stop"]
        if brackets and not side_change:
            return  # children are sized to the entry: a held bracketed position is not resized
        if brackets:
            for o in self.children[i]:
                self.cancel(o)
            self.children[i] = []
            orders = []
            if held:
                orders.append(self.close(data=data))
            if shares:
                orders += self._bracket(data, shares, price)
            self.pending[i] = [o for o in orders if o is not None]
        else:
            if delta > 0:
                order = self.buy(data=data, size=delta)
            else:
                order = self.sell(data=data, size=-delta)
            self.pending[i] = [order]
        self.sides[i] = _sign(shares)
        self.sized_to[i] = target
        if side_change:
            self.entry_bar[i] = len(self) if shares else -1

    def _bracket(self, data, shares: float, price: float) -> list[bt.Order]:
        """A market entry with its protective children: stop (or trailing stop) and target."""
        r = self.r
        i = self._slot(data)
        long = shares > 0
        sl, tp, trail = r["stop_loss"], r["take_profit"], r["trailing_stop"]
        tick = float(r.get("tick", 0.0))  # the exchange's price grid, as IB requires it
        kwargs: dict[str, Any] = {"data": data, "size": abs(shares), "exectype": bt.Order.Market}
        if trail > 0:
            kwargs.update(stopexec=bt.Order.StopTrail, stopargs={"trailpercent": trail})
            # The trail's reference price: Backtrader puts the stop trail x it away itself
            # (a stop price already moved away would sit trail^2 from the entry).
            kwargs["stopprice"] = price
        elif sl > 0:
            kwargs["stopprice"] = on_tick(price * (1 - sl) if long else price * (1 + sl),
                                                 tick)  # fmt: skip
        else:
            kwargs["stopexec"] = None
        if tp > 0:
            kwargs["limitprice"] = on_tick(price * (1 + tp) if long else price * (1 - tp),
                                                  tick)  # fmt: skip
        else:
            kwargs["limitexec"] = None
        parent, stop, limit = (self.buy_bracket if long else self.sell_bracket)(**kwargs)
        self.children[i] = [o for o in (stop, limit) if o is not None]
        return [parent]


def _exit_name(order: bt.Order) -> str:
    if order.exectype == bt.Order.StopTrail:
        return "trailing stop"
    if order.exectype == bt.Order.Stop:
        return "stop-loss"
    return "take-profit"
