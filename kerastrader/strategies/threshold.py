"""The threshold strategy: a model's prediction in, target-percent orders out."""

from __future__ import annotations

import datetime as dt
import logging

import backtrader as bt

from kerastrader.models.indicator import KerasIndicator
from kerastrader.strategies.signals import FLAT, threshold_side

log = logging.getLogger(__name__)


class ThresholdStrategy(bt.Strategy):
    """Long above ``enter``, flat (or short) below ``exit``, sized as a percent of equity.

    Orders are market orders sent at bar t's close and filled at bar t+1's open (Backtrader's
    default; cheat-on-close stays off). Before ``trade_start`` the strategy only warms up.
    """

    params = (
        ("model", None),  # artifact directory or Artifact, for KerasIndicator
        ("enter", 0.55),
        ("exit", 0.45),
        ("allow_short", False),
        ("target_percent", 0.95),
        ("trade_start", None),  # date or datetime: the first bar on which orders may be sent
        ("backend", "onnx"),
    )

    def __init__(self) -> None:
        self.prediction = KerasIndicator(self.data, model=self.p.model, backend=self.p.backend)
        self.side = FLAT
        self.pending: bt.Order | None = None

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            if order.status != order.Completed:
                log.warning("%s order %s: %s", self.data._name, order.ref, order.getstatusname())
                size = self.position.size
                self.side = (size > 0) - (size < 0)
            self.pending = None

    def next(self) -> None:
        if self.p.trade_start is not None and _before(self.data, self.p.trade_start):
            return
        if self.pending is not None:
            return
        target = threshold_side(
            self.prediction[0], self.side, self.p.enter, self.p.exit, self.p.allow_short
        )
        if target != self.side:
            self.pending = self.order_target_percent(target=target * self.p.target_percent)
            self.side = target


def _before(data: bt.DataBase, when: dt.date | dt.datetime) -> bool:
    if isinstance(when, dt.datetime):
        return data.datetime.datetime(0) < when
    return data.datetime.date(0) < when


def trade_start_date(value: str | dt.date | None) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)
