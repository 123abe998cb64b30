"""Framing of the TWS API socket protocol, usable by a client and by a server.

The protocol Interactive Brokers' TWS and IB Gateway speak on their API port (7497/4002 for
paper accounts) is plain text in length-prefixed frames:

- the client opens with the raw bytes ``API\\0`` and then one frame holding its supported
  version range, e.g. ``v157..178`` (that frame's payload is *not* NUL-terminated);
- the server answers with one frame of two fields: its server version and the connection time;
- every later message, both ways, is a frame: a 4-byte big-endian payload length, then ASCII
  fields each ended by ``\\0``. The first field is the message id.

At server version 201 and above the protocol switches to binary ids and protobuf; this module
(and :mod:`kerastrader.brokers.ib.simulator`) stays at :data:`SERVER_VERSION` 176, which every
current client (ib_async 2.x asks for 157..178, ib_insync 0.9.86 for 157..176) accepts.

The message ids are named after Interactive Brokers' own ``ibapi/message.py``: :class:`In` is
what a client sends (``OUT`` in ibapi, which names them from the client's side), :class:`Out`
what a server sends.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterator
from decimal import Decimal

API_PREFIX = b"API\0"
SERVER_VERSION = 176
# How IB writes "no value" for a double in messages where an empty field is not used.
UNSET_DOUBLE = "1.7976931348623157E308"
MAX_FRAME = 16 * 1024 * 1024  # TWS itself rejects far smaller frames; this guards a bad length

_LENGTH = struct.Struct(">I")


class ProtocolError(ValueError):
    """The byte stream does not follow the TWS API framing (bad prefix or absurd length)."""


class In(enum.IntEnum):
    """Message ids a client sends (ibapi ``message.OUT``), the ones the simulator knows."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6  # reqAccountUpdates
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


class Out(enum.IntEnum):
    """Message ids a server sends (ibapi ``message.IN``), the ones the simulator emits."""

    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


def format_field(value: object) -> str:
    """One field as the protocol writes it.

    Booleans are ``1``/``0`` (the receiving side does ``bool(int(field))``), ``None`` and NaN
    are empty (IB's "no value"), enum members are their number and floats lose rounding noise
    and a trailing ``.0`` (``0.1 + 0.2`` is sent as ``0.3``, ``100.0`` as ``100``) so that int
    fields never receive ``"5.0"``, which the other side's ``int()`` would reject.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, enum.IntEnum):
        return str(int(value))
    if isinstance(value, float | Decimal):
        x = float(value)
        if math.isnan(x):
            return ""
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        text = repr(round(x, 8)) if abs(x) < 1e15 else repr(x)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def encode_fields(*fields: object) -> bytes:
    """One frame: the 4-byte big-endian length, then every field NUL-terminated."""
    payload = "".join(format_field(f) + "\0" for f in fields).encode()
    return _LENGTH.pack(len(payload)) + payload


def encode_raw(payload: bytes) -> bytes:
    """A frame around an arbitrary payload (the client's version range has no trailing NUL)."""
    return _LENGTH.pack(len(payload)) + payload


def encode_handshake(min_version: int = 157, max_version: int = 178, options: str = "") -> bytes:
    """What a client sends first: ``API\\0`` then the frame ``v<min>..<max>[ options]``."""
    text = f"v{min_version}..{max_version}" + (f" {options}" if options else "")
    return API_PREFIX + encode_raw(text.encode())


def parse_version_range(field: str) -> tuple[int, int]:
    """``"v157..178"`` (optionally followed by connect options) -> ``(157, 178)``."""
    text = field.split(" ", 1)[0]
    if not text.startswith("v"):
        raise ProtocolError(f"not a version range: {field!r}")
    low, sep, high = text[1:].partition("..")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise ProtocolError(f"not a version range: {field!r}") from None


class FrameReader:
    """Incremental decoder: feed it bytes as they arrive, get complete frames back.

    TCP delivers a stream, not messages: one ``recv`` may hold half a frame or several. A frame
    comes back as its list of str fields (the empty string after the last NUL is dropped; a
    payload without a final NUL, like the client's version range, is one field). With
    ``api_prefix=True`` (a server reading a client) the stream must start with ``API\\0``.
    """

    def __init__(self, api_prefix: bool = False) -> None:
        self._buffer = bytearray()
        self._want_prefix = api_prefix

    def feed(self, data: bytes) -> Iterator[list[str]]:
        """Add received bytes and yield every frame that is now complete."""
        self._buffer += data
        if self._want_prefix:
            if len(self._buffer) < len(API_PREFIX):
                if not API_PREFIX.startswith(bytes(self._buffer)):
                    raise ProtocolError(f"expected {API_PREFIX!r}, got {bytes(self._buffer)!r}")
                return
            if self._buffer[: len(API_PREFIX)] != API_PREFIX:
                head = bytes(self._buffer[: len(API_PREFIX)])
                raise ProtocolError(f"expected {API_PREFIX!r}, got {head!r}")
            del self._buffer[: len(API_PREFIX)]
            self._want_prefix = False
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes announced")
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            yield split_payload(payload)

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)


def split_payload(payload: bytes) -> list[str]:
    """A frame's payload -> its fields (``errors="backslashreplace"`` as ib_async decodes)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return fields
