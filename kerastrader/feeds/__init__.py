"""Bars in: loading, validation and cleaning, Backtrader feed construction."""
