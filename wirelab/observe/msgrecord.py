"""The records of the message rebuilder: one message, the run's statistics, and
the small conversions they need (JSON decoding, address text).

:class:`RebuiltMessage` is what :func:`wirelab.observe.messages.rebuild`
returns; :func:`decode_json` turns a message's bytes into ``(value, None)`` or
``(None, one-line reason)``; :func:`endpoint` gives ``(address text, port)``
for an address held as two 64-bit halves (the decoder's columns).
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TCP, UDP = "tcp", "udp"


@dataclass(slots=True)
class RebuiltMessage:
    """One application message as the capture shows it.

    ``t``: capture time (s since the epoch) of the first packet carrying the
    message's first byte; ``t_end``: first arrival of its last byte (for UDP
    both are the datagram's time).  ``src``/``dst``: (address, port).
    ``message``: the decoded JSON value, None when there is none to trust;
    ``error``: None or one line saying why.  ``bytes``: payload length.  For
    TCP, the segments TCP hid from the app (:mod:`wirelab.observe.tcpstream`).
    ``frame``: packet number (1-based) of the message's first packet.
    """

    t: float
    t_end: float
    transport: str
    src: tuple
    dst: tuple
    message: Any
    error: str | None
    bytes: int
    retransmitted_segments: int | None = None
    duplicate_segments: int | None = None
    out_of_order_segments: int | None = None
    frame: int = 0

    def to_dict(self) -> dict:
        d = {"t": self.t, "t_end": self.t_end, "transport": self.transport, "src": list(self.src),
             "dst": list(self.dst), "message": self.message, "error": self.error, "bytes": self.bytes}
        if self.transport == TCP:
            d["retransmitted_segments"] = self.retransmitted_segments
            d["duplicate_segments"] = self.duplicate_segments
            d["out_of_order_segments"] = self.out_of_order_segments
        d["frame"] = self.frame
        return d

    @property
    def error_kind(self) -> str | None:
        """The error's first clause without its detail ("not JSON", "truncated stream")."""
        return None if self.error is None else error_kind(self.error)


@dataclass
class RebuildStats:
    """What the rebuild read and found (for summaries and the "no messages" line)."""

    packets: int = 0
    tcp_segments: int = 0       # segments with payload, SYN, FIN or RST (pure ACKs not counted)
    tcp_connections: int = 0
    udp_datagrams: int = 0
    ip_fragments: int = 0
    unattributed_fragments: int = 0
    messages: Counter = field(default_factory=Counter)   # transport -> count
    errors: Counter = field(default_factory=Counter)     # error kind -> count
    retransmitted_segments: int = 0
    duplicate_segments: int = 0
    out_of_order_segments: int = 0
    truncated: str | None = None
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"packets": self.packets, "tcp_segments": self.tcp_segments,
                "tcp_connections": self.tcp_connections, "udp_datagrams": self.udp_datagrams,
                "ip_fragments": self.ip_fragments, "unattributed_fragments": self.unattributed_fragments,
                "messages": dict(self.messages), "errors": dict(self.errors),
                "retransmitted_segments": self.retransmitted_segments,
                "duplicate_segments": self.duplicate_segments,
                "out_of_order_segments": self.out_of_order_segments,
                "truncated": self.truncated, "warnings": list(self.warnings)}


def error_kind(error: str) -> str:
    """The first reason of an error without its detail: "not JSON", "truncated stream"."""
    return error.split(";")[0].split(":")[0].split(" (")[0].strip()


def decode_json(payload: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(None, one-line reason)`` for one message's bytes."""
    if not payload:
        return None, "empty"
    try:
        # The common case, UTF-8 without surrounding blanks, costs a third of
        # json.loads(bytes) on a small message (no encoding sniffing, no regex).
        text = payload.decode()
        value, end = _raw_decode(text)
        if end == len(text) or not text[end:].strip(JSON_BLANKS):
            return value, None
    except (ValueError, RecursionError):
        pass
    try:   # leading blanks, UTF-16/32, a BOM; and the reason when it is not JSON
        return json.loads(payload), None
    except (ValueError, RecursionError) as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        text = str(exc).splitlines()
        return None, "not JSON: " + (text[0] if text else type(exc).__name__)


_raw_decode = json.JSONDecoder().raw_decode
JSON_BLANKS = " \t\n\r"   # RFC 8259 whitespace; str.isspace() would take more
_addr_cache: dict = {}


def address(hi: int, lo: int) -> str:
    """Text form of an address held as two 64-bit halves (IPv4 as ::ffff:a.b.c.d)."""
    key = (hi, lo)
    s = _addr_cache.get(key)
    if s is None:
        if hi == 0 and (lo >> 32) == 0xFFFF:
            s = str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
        else:
            s = str(ipaddress.IPv6Address((hi << 64) | lo))
        if len(_addr_cache) > 100_000:
            _addr_cache.clear()
        _addr_cache[key] = s
    return s


_endpoint_cache: dict = {}


def endpoint(hi: int, lo: int, port: int) -> tuple:
    """``(address text, port)``, the same tuple object for the same endpoint."""
    key = (hi, lo, port)
    ep = _endpoint_cache.get(key)
    if ep is None:
        if len(_endpoint_cache) > 100_000:
            _endpoint_cache.clear()
        ep = _endpoint_cache[key] = (address(hi, lo), port)
    return ep
