"""Contracts from the ``[paper]`` section and what each kind of contract means for a session.

Why a module of its own: the session runner, the store, the feed and the broker each need one
answer per contract kind (which data IB serves for it, the name its fills are journaled
under, its multiplier, the smallest order its venue takes), and those answers differ between
stocks, futures and forex in ways IB's API does not smooth over:

- forex (``CASH``) has no TRADES data; real-time and historical bars must ask for MIDPOINT
  (or BID/ASK), IB's reqHistoricalData documentation lists TRADES as invalid for CASH;
- ib_async's ``Forex("EURUSD").symbol`` is the base currency ``EUR``: a fill journaled under
  ``contract.symbol`` would be a position in "EUR", so the pair is named from symbol +
  currency (``EURUSD``), as the training data names it;
- futures carry a ``multiplier`` (ES: 50): one contract moves cash by price x multiplier;
- IDEALPRO treats orders below its minimum size as odd lots (worse prices, routed away), so
  a session refuses them (the threshold is IB's published USD 25,000; it is a constant, not
  read from IB, which has no API for it).
"""

from __future__ import annotations

from typing import Any

from kerastrader.errors import ConfigError

# IB's published IDEALPRO threshold, in units of the pair's base currency (see the docstring).
IDEALPRO_MIN_QUANTITY = 25_000.0


CONTRACT_KEYS = ("sec_type", "exchange", "currency", "expiry")


def contract_for(paper: dict[str, Any], symbol: str, mod: Any) -> Any:
    """An ib_async contract from the ``[paper]`` section: stock/ETF, future or forex.

    ``paper.contracts`` may describe one instrument of a book differently (a future among
    ETFs: ``contracts = { ES = { sec_type = "FUT", expiry = "202703", exchange = "CME" } }``);
    the section's own keys describe the rest."""
    own = (paper.get("contracts") or {}).get(symbol, {})
    if not isinstance(own, dict):
        raise ConfigError(f"paper.contracts.{symbol} must be a table of {', '.join(CONTRACT_KEYS)}")
    unknown = sorted(set(own) - set(CONTRACT_KEYS))
    if unknown:
        raise ConfigError(f"paper.contracts.{symbol}: unknown key {', '.join(unknown)} "
                          f"(known: {', '.join(CONTRACT_KEYS)})")  # fmt: skip
    paper = {**paper, **own}
    kind = paper["sec_type"]
    if kind == "STK":
        return mod.Stock(symbol, paper["exchange"], paper["currency"])
    if kind == "FUT":
        if not paper["expiry"]:
            raise ConfigError("paper.sec_type = 'FUT' needs paper.expiry (YYYYMM or YYYYMMDD)")
        return mod.Future(symbol, paper["expiry"], paper["exchange"], currency=paper["currency"])
    if kind == "CASH":
        return mod.Forex(symbol)
    raise ConfigError(f"paper.sec_type = {kind!r}: expected STK, FUT or CASH")


def what_to_show(contract: Any) -> str:
    """The bars IB serves for the contract: MIDPOINT for forex (TRADES is invalid for CASH)."""
    return "MIDPOINT" if getattr(contract, "secType", "") == "CASH" else "TRADES"


def symbol_of(contract: Any) -> str:
    """The name a contract's fills and positions are journaled under.

    Forex: the pair (``EURUSD``), since ib_async reports ``symbol`` as the base currency;
    everything else: ``symbol``."""
    symbol = getattr(contract, "symbol", "") or ""
    if getattr(contract, "secType", "") == "CASH":
        return f"{symbol}{getattr(contract, 'currency', '') or ''}"
    return symbol


def multiplier_of(contract: Any) -> float:
    """Cash per unit of price per contract: the futures multiplier, 1 for stocks and forex."""
    text = getattr(contract, "multiplier", "") or ""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 1.0
    return value if value > 0 else 1.0


def min_quantity(contract: Any) -> float:
    """The smallest order the contract's venue takes as a normal order (0: no minimum)."""
    return IDEALPRO_MIN_QUANTITY if getattr(contract, "secType", "") == "CASH" else 0.0
