"""The public entry points of a backtest, as users and tools import them.

The work is done in :mod:`kerastrader.runs`: :mod:`~kerastrader.runs.universe` loads the bars,
:mod:`~kerastrader.runs.models` trains or loads the model, :mod:`~kerastrader.runs.assembly`
builds Cerebro (shared with the paper session) and :mod:`~kerastrader.runs.backtest` runs it
and writes the run files.
"""

from kerastrader.runs.backtest import RunResult, run_experiment
from kerastrader.runs.universe import backtest_period, intraday_bars, load_bars, load_universe

__all__ = [
    "RunResult",
    "backtest_period",
    "intraday_bars",
    "load_bars",
    "load_universe",
    "run_experiment",
]
