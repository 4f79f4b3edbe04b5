"""IP fragments put back together for the message rebuilder (IPv4 and IPv6).

A UDP datagram larger than the path MTU crosses the network as IP
fragments; only the first carries the UDP header.  :class:`FragmentReassembler`
collects fragments by (source, destination, protocol, identification), as the
receiving kernel does, and hands back the whole transport payload once every
byte from offset 0 to the last fragment's end is there.  A datagram still
incomplete at the end of the capture, or after Linux's reassembly timeout
(``net.ipv4.ipfrag_time``, 30 s), is handed back as incomplete with what is
wrong with its fragments (:func:`wirelab.observe.ipfrag.layout_problems`).
Parsing is per packet in Python: fragments are rare.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from wirelab.observe.ipfrag import layout_problems
from wirelab.observe.l4payload import IPV6_FRAGMENT, _ipv6_walk

# Linux's default net.ipv4.ipfrag_time (and net.ipv6.ip6frag_time): 30 s.
REASSEMBLY_TIMEOUT_NS = 30 * 1_000_000_000
V4_MAPPED = 0xFFFF00000000


@dataclass
class Datagram:
    """The transport payload (L4 header + data) of one fragmented IP datagram."""

    src_hi: int
    src_lo: int
    dst_hi: int
    dst_lo: int
    proto: int
    ts_first: int
    ts_last: int
    frame: int
    l4: bytes = b""           # whole when ``problem`` is None, else the first fragment's bytes
    problem: str | None = None
    snap_cut: bool = False
    pieces: dict = field(default_factory=dict)   # offset -> (bytes, wire length, more)


def _parse(buf: bytes, at: int, end: int):
    """(key, offset, more, bytes, wire length) of the fragment at ``at``, or None."""
    if buf[at] >> 4 == 4:
        ihl = (buf[at] & 0x0F) * 4
        total, ident, frag = struct.unpack_from("!HHH", buf, at + 2)
        proto = buf[at + 9]
        src = int.from_bytes(buf[at + 12:at + 16], "big")
        dst = int.from_bytes(buf[at + 16:at + 20], "big")
        key = (0, V4_MAPPED | src, 0, V4_MAPPED | dst, proto, ident)
        wire = total - ihl
        data = buf[at + ihl:min(at + total, end)]
        return key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), data, wire
    if end - at < 48:
        return None
    nh, p = _ipv6_walk(buf, at, end - at)
    if nh != IPV6_FRAGMENT or at + p + 8 > end:
        return None
    plen = struct.unpack_from("!H", buf, at + 4)[0]
    proto, offm, ident = buf[at + p], struct.unpack_from("!H", buf, at + p + 2)[0], \
        struct.unpack_from("!I", buf, at + p + 4)[0]
    hi = lambda o: int.from_bytes(buf[o:o + 8], "big")  # noqa: E731
    key = (hi(at + 8), hi(at + 16), hi(at + 24), hi(at + 32), proto, ident)
    wire = plen + 40 - p - 8
    data = buf[at + p + 8:min(at + 40 + plen, end)]
    return key, offm & 0xFFF8, bool(offm & 1), data, wire


class FragmentReassembler:
    """Fragments in, whole (or given-up) datagrams out through :attr:`done`."""

    def __init__(self):
        self.groups: dict[tuple, Datagram] = {}
        self.done: list[Datagram] = []
        self.fragments = 0
        self.unattributed = 0   # given up without their first fragment: no ports known

    def add(self, buf: bytes, at: int, end: int, frame: int, ts: int) -> None:
        parsed = _parse(buf, at, end)
        if parsed is None:
            return
        key, off, more, data, wire = parsed
        self.fragments += 1
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = Datagram(key[0], key[1], key[2], key[3], key[4], ts, ts, frame)
        g.ts_last = ts
        if off == 0:
            g.frame = frame
        if len(data) < wire:
            g.snap_cut = True
        if off not in g.pieces or len(g.pieces[off][0]) < len(data):
            g.pieces[off] = (data, wire, more)
        layout = sorted((o, w, m) for o, (_, w, m) in g.pieces.items())
        if not layout_problems(layout) and not g.snap_cut:
            g.l4 = b"".join(g.pieces[o][0] for o, _, _ in layout)
            del self.groups[key]
            self.done.append(g)

    def _give_up(self, key) -> None:
        g = self.groups.pop(key)
        layout = sorted((o, w, m) for o, (_, w, m) in g.pieces.items())
        problems = layout_problems(layout)
        if g.snap_cut:
            problems.append("fragments cut by the capture's snap length")
        g.problem = "IP fragments missing: " + "; ".join(problems[:3])
        if 0 in g.pieces:
            g.l4 = g.pieces[0][0]
            self.done.append(g)
        else:
            self.unattributed += 1

    def expire(self, now_ns: int) -> None:
        """Give up on datagrams older than the kernel's reassembly timeout."""
        if self.groups:
            for key in [k for k, g in self.groups.items() if now_ns - g.ts_first > REASSEMBLY_TIMEOUT_NS]:
                self._give_up(key)

    def finish_all(self) -> None:
        for key in list(self.groups):
            self._give_up(key)
