"""Sweeps: many train-plus-backtest jobs over a grid of config values, on a process pool or
Ray, with one results table and the multiple-testing statistics of the best result."""
