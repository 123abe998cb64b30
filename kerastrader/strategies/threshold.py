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

    Every data feed gets its own ``KerasIndicator`` (one shared model) and its own side; with N
    feeds each is sized at ``target_percent / N``. Orders are market orders sent at bar t's
    close and filled at bar t+1's open (Backtrader's default; cheat-on-close stays off).
    Before ``trade_start`` the strategy only warms up.
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
        self.predictions = [
            KerasIndicator(d, model=self.p.model, backend=self.p.backend) for d in self.datas
        ]
        self.prediction = self.predictions[0]
        self.sides = [FLAT] * len(self.datas)
        self.pending: list[bt.Order | None] = [None] * len(self.datas)
        self.weight = self.p.target_percent / len(self.datas)

    def _slot(self, data: bt.AbstractDataBase) -> int:
        # Identity, not ==: Backtrader overloads == on lines to build an operation.
        return next(i for i, d in enumerate(self.datas) if d is data)

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            i = self._slot(order.data)
            if order.status != order.Completed:
                log.warning("%s order %s: %s", order.data._name, order.ref, order.getstatusname())
                size = self.getposition(order.data).size
                self.sides[i] = (size > 0) - (size < 0)
            self.pending[i] = None

    def next(self) -> None:
        for i, data in enumerate(self.datas):
            if self.p.trade_start is not None and _before(data, self.p.trade_start):
                continue
            if self.pending[i] is not None:
                continue
            target = threshold_side(
                self.predictions[i][0],
                self.sides[i],
                self.p.enter,
                self.p.exit,
                self.p.allow_short,
            )
            if target != self.sides[i]:
                self.pending[i] = self.order_target_percent(data=data, target=target * self.weight)
                self.sides[i] = target


def _before(data: bt.DataBase, when: dt.date | dt.datetime) -> bool:
    if isinstance(when, dt.datetime):
        return data.datetime.datetime(0) < when
    return data.datetime.date(0) < when
