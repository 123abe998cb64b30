"""The threshold strategy: the simplest use of :class:`ModelStrategy`, with flat parameters.

Long above ``enter``, flat (or short) below ``exit``, sized as a percent of equity; every data
feed gets its own prediction and position, each sized at ``target_percent / N``. Orders are
market orders sent at bar t's close and filled at bar t+1's open. Use it from Python when the
config's other sections (sizing, risk, portfolio) are not needed::

    cerebro.addstrategy(ThresholdStrategy, model="runs/orcl/model", enter=0.55, exit=0.45)
"""

from __future__ import annotations

import copy

from kerastrader.config import default_config
from kerastrader.strategies.model_strategy import ModelStrategy


class ThresholdStrategy(ModelStrategy):
    params = (
        ("enter", 0.55),
        ("exit", 0.45),
        ("allow_short", False),
        ("target_percent", 0.95),
    )

    def __init__(self) -> None:
        defaults = default_config()
        settings = {k: copy.deepcopy(defaults[k]) for k in ("strategy", "sizing", "risk",
                                                            "portfolio")}  # fmt: skip
        settings["strategy"].update(
            enter=self.p.enter,
            exit=self.p.exit,
            allow_short=self.p.allow_short,
            target_percent=self.p.target_percent,
        )
        self.p.settings = settings
        super().__init__()
        self.prediction = self.indicators[0] if self.indicators else self.shared
