"""Model-driven portfolio paths: ``kerastrader forecast CONFIG``.

A book's periodic returns (:mod:`~kerastrader.forecast.periodic`), a sequence model on their
causal windows (:mod:`~kerastrader.forecast.model`), the recursive point path and Monte Carlo
bands from an origin (:mod:`~kerastrader.forecast.paths`, :mod:`~kerastrader.forecast.origin`),
the forecaster backtested from rolling origins (:mod:`~kerastrader.forecast.evaluate`), the
files and the page (:mod:`~kerastrader.forecast.runner`, :mod:`~kerastrader.forecast.page`),
and study D (:mod:`~kerastrader.forecast.study`). The config: :mod:`~kerastrader.forecast.spec`.
"""
