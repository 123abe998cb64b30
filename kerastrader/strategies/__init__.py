"""Backtrader strategies that turn predictions into orders."""
