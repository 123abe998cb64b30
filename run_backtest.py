#!/usr/bin/env python
"""Run a whole experiment: ``python run_backtest.py [CONFIG.toml] [--data F] [--out D]
[--model D] [--set key=value ...]``. With no arguments: the default LSTM on embedded ORCL bars."""

import sys

from kerastrader.cli import run_backtest_main

if __name__ == "__main__":
    sys.exit(run_backtest_main())
