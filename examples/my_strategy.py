"""Use a trained kerastrader model inside your own Backtrader strategy.

.venv/bin/python run_backtest.py --out runs/orcl          # trains and saves runs/orcl/model
.venv/bin/python examples/my_strategy.py runs/orcl/model
"""

from __future__ import annotations

import sys

import backtrader as bt

from kerastrader import KerasIndicator
from kerastrader.config import embedded_data_path
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv


class MyStrategy(bt.Strategy):
    params = (("model", None), ("enter", 0.5), ("exit", 0.48))

    def __init__(self):
        self.p_up = KerasIndicator(self.data, model=self.p.model)
        self.fills = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills += 1

    def next(self):
        if self.p_up[0] > self.p.enter and not self.position:
            self.order_target_percent(target=0.9)
        elif self.p_up[0] < self.p.exit and self.position:
            self.close()


def main(model_dir: str) -> None:
    bars = load_csv(embedded_data_path()).loc["2012-01-01":]
    cerebro = bt.Cerebro()
    cerebro.adddata(make_feed(bars, "ORCL"), name="ORCL")
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addstrategy(MyStrategy, model=model_dir)
    strategy = cerebro.run()[0]
    print(f"{strategy.fills} fills, final value {cerebro.broker.getvalue():,.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/orcl/model")
