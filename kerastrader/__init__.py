"""kerastrader: Keras models inside Backtrader, correct by construction and fast.

Heavy imports (TensorFlow, Backtrader) are deferred so that ``import kerastrader`` stays cheap;
``from kerastrader import KerasIndicator`` loads them on first use.
"""

from __future__ import annotations

import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["KerasIndicator", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "KerasIndicator":
        from kerastrader.models.indicator import KerasIndicator

        return KerasIndicator
    raise AttributeError(name)
