"""Trading costs for a Backtrader backtest: commission, slippage and a volume cap.

A model whose edge is a few basis points a day looks brilliant in a frictionless backtest and
loses money in a real account. This module installs the frictions a live account would see,
configured from the ``[broker]`` section of the TOML config:

- ``commission_scheme`` picks one of :data:`SCHEMES`:

  - ``percent``: ``commission`` is a fraction of traded value (0.001 = 0.1%).
  - ``per_share``: ``per_share`` USD a share, at least ``min_commission`` and at most
    ``max_commission`` of traded value (0 = no cap).
  - ``ibkr_fixed`` / ``ibkr_tiered``: Interactive Brokers' US-stock Fixed and Tiered prices
    (the same commission numbers an IB account charges; third-party fees are left out, see
    :class:`IBKRTieredCommInfo`).

- ``slippage_bps`` (basis points of price) and ``slippage_range`` (fraction of the bar's
  high-low range) move market and stop fills against the trader (a limit filled at its limit
  does not slip, as in Backtrader); both are added when both are set, and the slipped price
  never leaves the bar's high/low.
- ``volume_cap`` limits each fill to a fraction of the bar's volume; the rest of the order
  fills on later bars.

Backtrader charges commission per *execution*, not per order: an order split over several
bars by the volume cap pays the per-order minimum on every fill, and an order that closes a
position and opens the opposite one is charged as two pieces (the closed and the opened part),
each with its own minimum. A commission object never sees the order, only the size of each
piece, so the minimum stays per execution: with small volume-capped fills this overstates what
a broker billing one minimum per order would charge (tests/test_costs.py shows both cases).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import backtrader as bt

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = ("percent", "per_share", "ibkr_fixed", "ibkr_tiered")

# Every key of the [broker] section this module reads, in the order they are checked.
BROKER_KEYS = (
    "cash",
    "commission_scheme",
    "commission",
    "per_share",
    "min_commission",
    "max_commission",
    "slippage_bps",
    "slippage_range",
    "volume_cap",
)

# Interactive Brokers, US stocks and ETFs (IB's commission page, "Stocks, ETFs and Warrants").
IBKR_FIXED_PER_SHARE = 0.005
IBKR_FIXED_MIN = 1.00
IBKR_TIERED_MIN = 0.35
IBKR_MAX_FRACTION = 0.01  # both schemes: at most 1% of trade value
# (last share of the tier in monthly volume, USD per share)
IBKR_TIERS: tuple[tuple[float, float], ...] = (
    (300_000, 0.0035),
    (3_000_000, 0.0020),
    (20_000_000, 0.0015),
    (100_000_000, 0.0010),
    (math.inf, 0.0005),
)


class PercentCommInfo(bt.CommInfoBase):
    """Commission as a fraction of traded value: ``abs(size) * price * commission``.

    ``commission`` is the plain fraction (``percabs``): 0.001 is 0.1%, not 0.001%.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) * price * self.p.commission


class PerShareCommInfo(bt.CommInfoBase):
    """USD per share with a minimum and a cap: the shape of most US brokers' stock pricing.

    ``max(min_commission, shares * per_share)``, then at most ``max_commission`` of the traded
    value when ``max_commission > 0``. The cap wins over the minimum, as at IB: one share at
    USD 50 costs USD 0.50 (1% of 50), not the USD 1.00 minimum. The minimum applies to each
    Backtrader execution (each fill; see the module docstring), and nothing is charged for a
    zero-size piece.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_FIXED),
        ("per_share", IBKR_FIXED_PER_SHARE),
        ("min_commission", IBKR_FIXED_MIN),
        ("max_commission", IBKR_MAX_FRACTION),
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return _per_share_fee(
            abs(size), price, self.p.per_share, self.p.min_commission, self.p.max_commission
        )


class IBKRFixedCommInfo(PerShareCommInfo):
    """Interactive Brokers' US-stock Fixed pricing: USD 0.005 a share, min USD 1.00, max 1%.

    IB's examples: 100 shares at USD 25 cost USD 1.00, 1,000 shares at USD 25 cost USD 5.00,
    1,000 shares at USD 0.25 cost USD 2.50 (the 1% cap). Fixed pricing includes exchange and
    most regulatory fees; the SEC and FINRA transaction fees IB passes through on sales (a few
    hundredths of a basis point) are left out.
    """

    params = (
        ("per_share", IBKR_FIXED_PER_SHARE),
        ("min_commission", IBKR_FIXED_MIN),
        ("max_commission", IBKR_MAX_FRACTION),
    )


class IBKRTieredCommInfo(bt.CommInfoBase):
    """Interactive Brokers' US-stock Tiered pricing: the per-share rate falls with monthly volume.

    ======================== ==============
    shares this month        USD per share
    ======================== ==============
    <= 300,000               0.0035
    300,001 - 3,000,000      0.0020
    3,000,001 - 20,000,000   0.0015
    20,000,001 - 100,000,000 0.0010
    > 100,000,000            0.0005
    ======================== ==============

    Minimum USD 0.35 per execution, maximum 1% of trade value. Only IB's own commission is
    modelled: the exchange, clearing (NSCC/DTC), regulatory (SEC, FINRA) and pass-through fees
    that Tiered pricing adds on top, and the exchange rebates it passes back, are left out, so
    this is a slight underestimate for orders that take liquidity.

    The monthly volume lives in this object, so one instance shared by all data feeds counts
    all symbols together, as IB does. An execution is charged at the tier reached *before* it
    (an order that crosses a tier boundary pays the old rate for all its shares), then its
    shares are added. The count restarts when the calendar month of the executing bar changes;
    the bar's datetime comes from :class:`CostBroker`, which calls :meth:`note_datetime` before
    every execution (with another broker the count never restarts).

    Backtrader calls ``_getcommission`` with ``pseudoexec=True`` from ``getcommission`` (the
    cash check at submission *and* the commission actually charged) and with
    ``pseudoexec=False`` from ``confirmexec``, once per real execution, after the charge. So
    ``pseudoexec=False`` is the one call that counts shares; every other call leaves the state
    alone.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_FIXED),
        ("min_commission", IBKR_TIERED_MIN),
        ("max_commission", IBKR_MAX_FRACTION),
        ("tiers", IBKR_TIERS),
    )

    def __init__(self) -> None:
        super().__init__()
        self.month: tuple[int, int] | None = None  # (year, month) of month_volume
        self.month_volume = 0.0  # shares executed in self.month
        self._now: tuple[int, int] | None = None  # (year, month) of the bar being executed

    def note_datetime(self, when: dt.datetime | dt.date) -> None:
        """Tell the scheme the datetime of the bar whose orders are being executed."""
        self._now = (when.year, when.month)

    def volume_this_month(self) -> float:
        """Shares executed so far in the month of the current bar (0 in a new month)."""
        return self.month_volume if self._now == self.month else 0.0

    def rate(self) -> float:
        """USD per share for the next execution, from the volume executed so far this month."""
        volume = self.volume_this_month()
        return next(rate for last, rate in self.p.tiers if volume < last)

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        shares = abs(size)
        comm = _per_share_fee(
            shares, price, self.rate(), self.p.min_commission, self.p.max_commission
        )
        if not pseudoexec:  # confirmexec: a real execution, count its shares
            self.month_volume = self.volume_this_month() + shares
            self.month = self._now
        return comm


def _per_share_fee(
    shares: float, price: float, per_share: float, minimum: float, max_fraction: float
) -> float:
    if not shares:
        return 0.0
    comm = max(minimum, shares * per_share)
    if max_fraction > 0:
        comm = min(comm, max_fraction * shares * price)
    return comm


class CostBroker(bt.brokers.BackBroker):
    """Backtrader's BackBroker plus slippage proportional to the bar's high-low range.

    New param ``slip_range``: a fill slips by ``slip_range * (high - low)`` of the order's bar,
    against the trader, on top of Backtrader's own ``slip_perc`` (or ``slip_fixed``). A wide
    bar means a thin or volatile market, where a market order moves the price more than on a
    quiet day; a fixed percentage cannot express that. Everything else is BackBroker's: which
    orders slip (``slip_open`` for fills at the open, always for stops triggered inside the
    bar, never for limits filled at their limit), the cap at the bar's high/low (or the limit
    price) with ``slip_match``, and fills at the open when a stop is gapped through.

    It also tells a commission scheme that wants to know (one with ``note_datetime``, such as
    :class:`IBKRTieredCommInfo`) the datetime of the bar before each execution.
    """

    params = (("slip_range", 0.0),)

    def __init__(self) -> None:
        super().__init__()
        self._bar_range = 0.0  # high - low of the data of the order being tried
        self._actions_seen: dict[int, float] = {}  # id(data) -> datetime of the bar applied
        self.dividends: list[tuple[float, str, float, float]] = []  # (when, name, shares, cash)
        self.splits: list[tuple[float, str, float]] = []  # (when, name, ratio)

    def next(self) -> None:
        """Pay dividends and apply splits of the new bar before its orders fill.

        The holder of record is whoever held at the previous close, i.e. the position before
        this bar's fills: a long is credited ``shares x dividend`` on the ex-date, a short is
        debited it (the lender is owed the dividend). A split multiplies the shares and divides
        their cost price, leaving value and cash unchanged; a whole-share holding receives
        cash for a fractional remainder, as brokers pay it. Orders already working keep their
        prices (a real broker adjusts or cancels them; none of ours works across a split
        unless it is a bracket child).
        """
        for data, pos in self.positions.items():
            lines = data.lines.getlinealiases()
            if "dividend" not in lines or not len(data):
                continue
            when = data.datetime[0]
            if self._actions_seen.get(id(data)) == when:
                continue  # this feed has no new bar in this step (another feed's bar)
            self._actions_seen[id(data)] = when
            if not pos.size:
                continue
            ratio = float(data.split[0])
            if ratio > 0 and ratio != 1.0:
                self._split(data, pos, ratio)
            dividend = float(data.dividend[0])
            if dividend:
                cash = pos.size * dividend
                self.cash += cash
                self.dividends.append((when, data._name, pos.size, cash))
        super().next()

    def _split(self, data, pos, ratio: float) -> None:
        shares = pos.size * ratio
        whole = float(int(shares))
        if whole != shares and float(pos.size).is_integer():
            # A whole-share holding: cash in lieu of the fractional share, at the open.
            self.cash += (shares - whole) * float(data.open[0])
            shares = whole
        pos.price = pos.price * pos.size / shares if shares else 0.0
        pos.size = shares
        self.splits.append((data.datetime[0], data._name, ratio))

    def _try_exec(self, order: bt.Order) -> None:
        data = order.data
        high = getattr(data, "tick_high", None)
        low = getattr(data, "tick_low", None)
        high = data.high[0] if high is None else high
        low = data.low[0] if low is None else low
        spread = high - low
        self._bar_range = spread if spread > 0 else 0.0  # NaN and bad bars: no range slippage
        try:
            super()._try_exec(order)
        finally:
            self._bar_range = 0.0

    def _execute(
        self,
        order: bt.Order,
        ago: int | None = None,
        price: float | None = None,
        cash: float | None = None,
        position: Any = None,
        dtcoc: float | None = None,
    ) -> Any:
        if dtcoc is not None:
            when = bt.num2date(dtcoc)
        else:
            when = order.data.datetime.datetime(ago or 0)
        feeds = [order.data]
        if order.data._compensate is not None:
            feeds.append(order.data._compensate)
        for feed in feeds:
            note = getattr(self.getcommissioninfo(feed), "note_datetime", None)
            if note is not None:
                note(when)
        return super()._execute(
            order, ago=ago, price=price, cash=cash, position=position, dtcoc=dtcoc
        )

    def _slippage(self, price: float) -> float:
        if self.p.slip_perc:
            amount = price * self.p.slip_perc
        else:
            amount = self.p.slip_fixed
        return amount + self.p.slip_range * self._bar_range

    def _slip_up(
        self, pmax: float, price: float, doslip: bool = True, lim: bool = False
    ) -> float | None:
        if not doslip:
            return price
        amount = self._slippage(price)
        if not amount:
            return price
        return self._bounded(price + amount, pmax, lim, pslip_ok=price + amount <= pmax)

    def _slip_down(
        self, pmin: float, price: float, doslip: bool = True, lim: bool = False
    ) -> float | None:
        if not doslip:
            return price
        amount = self._slippage(price)
        if not amount:
            return price
        return self._bounded(price - amount, pmin, lim, pslip_ok=price - amount >= pmin)

    def _bounded(self, pslip: float, bound: float, lim: bool, pslip_ok: bool) -> float | None:
        # BackBroker's rule: a slipped price inside the bar stands; outside it is capped at the
        # bound with slip_match (or for limits with slip_limit), kept with slip_out, or no fill.
        if pslip_ok:
            return pslip
        if self.p.slip_match or (lim and self.p.slip_limit):
            return pslip if self.p.slip_out else bound
        return None


def _number(broker: dict[str, Any], key: str) -> float:
    value = broker[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"broker.{key} must be a finite number, not {value!r}")
    return float(value)


def validate_broker(broker: dict[str, Any]) -> None:
    """Raise ConfigError naming the first ``[broker]`` key whose value cannot be used.

    Checked here rather than left to Backtrader, which would happily credit cash for a negative
    commission or fill 300% of a bar's volume.
    """
    missing = [k for k in BROKER_KEYS if k not in broker]
    if missing:
        raise ConfigError(f"broker.{missing[0]} is missing")
    scheme = broker["commission_scheme"]
    if scheme not in SCHEMES:
        raise ConfigError(
            f"broker.commission_scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}"
        )
    if _number(broker, "cash") <= 0:
        raise ConfigError(f"broker.cash must be positive, not {broker['cash']}")
    for key in ("per_share", "min_commission", "slippage_bps"):
        if _number(broker, key) < 0:
            raise ConfigError(f"broker.{key} must not be negative, not {broker[key]}")
    # Fractions: 0.001 is 0.1%; a value of 1 or more is almost surely a percentage by mistake.
    for key, upper in (
        ("commission", 1.0),
        ("max_commission", 1.0),
        ("slippage_range", 1.0),
        ("volume_cap", 1.0),
    ):
        value = _number(broker, key)
        if not 0 <= value <= upper:
            raise ConfigError(f"broker.{key} must be a fraction in [0, {upper:g}], not {value}")
    if broker["slippage_bps"] >= 10_000:
        raise ConfigError(
            f"broker.slippage_bps must be below 10000 (100%), not {broker['slippage_bps']}"
        )


def make_commission(broker: dict[str, Any]) -> bt.CommInfoBase:
    """A fresh commission scheme object for the configured ``commission_scheme``."""
    validate_broker(broker)
    scheme = broker["commission_scheme"]
    if scheme == "percent":
        return PercentCommInfo(commission=float(broker["commission"]))
    if scheme == "per_share":
        return PerShareCommInfo(
            per_share=float(broker["per_share"]),
            min_commission=float(broker["min_commission"]),
            max_commission=float(broker["max_commission"]),
        )
    if scheme == "ibkr_fixed":
        return IBKRFixedCommInfo()
    return IBKRTieredCommInfo()


def configure_broker(cerebro: bt.Cerebro, broker: dict[str, Any]) -> None:
    """Install the broker (cash, commission scheme, slippage, volume cap) on cerebro.

    Replaces cerebro's broker with a :class:`CostBroker`, so call it before adding anything
    that talks to ``cerebro.broker`` (e.g. ``set_coc``). Slippage applies to fills at the open
    too (``slip_open``) and is capped at the bar's high/low (``slip_match``): a market order
    always fills, at worst at the bar's extreme.
    """
    comminfo = make_commission(broker)
    volume_cap = float(broker["volume_cap"])
    # FixedBarPerc takes percent; rounding keeps 0.29 from becoming 28.999999999999996.
    filler = (
        bt.broker.fillers.FixedBarPerc(perc=round(volume_cap * 100, 10)) if volume_cap else None
    )
    cost_broker = CostBroker(
        cash=float(broker["cash"]),
        slip_perc=float(broker["slippage_bps"]) / 1e4,
        slip_range=float(broker["slippage_range"]),
        slip_open=True,
        slip_match=True,
        filler=filler,
    )
    cost_broker.addcommissioninfo(comminfo)
    cerebro.broker = cost_broker
    log.info(
        "broker: cash %.2f, %s commission, slippage %g bps + %g of the bar range, volume cap %s",
        broker["cash"],
        broker["commission_scheme"],
        broker["slippage_bps"],
        broker["slippage_range"],
        f"{volume_cap:.1%} of bar volume" if volume_cap else "off",
    )


def round_trip_cost(broker: dict[str, Any], price: float, shares: float) -> float:
    """The fraction of traded value a buy then a sell of ``shares`` at ``price`` costs.

    Commission for both legs under the configured scheme plus ``slippage_bps`` on both legs,
    divided by ``price * shares`` (one leg's value): a strategy skips a trade whose predicted
    return is below it. ``slippage_range`` is not included (it depends on the bars to come),
    commission is taken at ``price`` rather than the slipped price, and ``ibkr_tiered`` is
    priced at the first tier (0.0035 a share), the dearest, so the estimate errs on the side
    of trading less.
    """
    if not (price > 0 and shares > 0):
        raise ValueError(f"price and shares must be positive, not {price!r} and {shares!r}")
    comminfo = make_commission(broker)
    value = price * shares
    commission = comminfo.getcommission(shares, price) + comminfo.getcommission(-shares, price)
    return commission / value + 2 * float(broker["slippage_bps"]) / 1e4
