"""TCP byte streams rebuilt from captured segments, one per connection direction.

A :class:`Direction` holds the bytes of one direction of one connection,
placed by sequence number relative to the SYN's ISN (so a 32-bit wraparound
is invisible: offsets are taken modulo 2**32).  Segments may arrive in any
order, overlap, repeat or be cut by the snap length; the stream is complete
when a FIN was seen and every byte before it is there.  What TCP hid from the
application is counted per direction:

* ``retransmitted``: a segment that brought no byte not captured before (or
  only some new ones: a re-packetised retransmission), and is not a copy;
* ``duplicates``: a copy of a segment already captured (same offset,
  length and signature: IP ID, checksum, ACK, window), as netem or a link
  duplicating packets makes it; a sender's own retransmission differs;
* ``out_of_order``: a segment that arrived while bytes before it were
  missing (after a drop before the capture point, or a reordering).

Counts cover the segments up to the message's completion; a retransmission
seen after it (a FIN re-sent because its ACK was lost) changes nothing.

:class:`TcpReassembler` maps 4-tuples to directions: a SYN with a new ISN on
a 4-tuple starts a new connection (the old one is finished first), an RST
finishes both directions, a late retransmission of a finished direction is
recognised and dropped instead of starting a phantom stream.
"""

from __future__ import annotations

from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

M32 = 0xFFFFFFFF
WRAP = 1 << 32
HALF = 1 << 31
# Finished directions are remembered (to recognise late retransmissions) for
# this long in capture time: twice Linux's TCP_TIMEWAIT_LEN (60 s).
TOMBSTONE_NS = 120 * 1_000_000_000
TOMBSTONE_PURGE_AT = 50_000

# Why a stream ended (Direction.ended).
FIN_COMPLETE, RESET, NEW_SYN, CAPTURE_END = "fin", "rst", "syn", "end"


class Direction:
    """The bytes of one direction of one connection (see the module docstring)."""

    __slots__ = ("key", "base", "syn", "data", "pending", "fin_end", "t0", "frame0", "t_last",
                 "max_end", "sigs", "retransmitted", "duplicates", "out_of_order", "snap_cut",
                 "ended", "last_ns")

    def __init__(self, key, base: int, syn: bool):
        self.key = key
        self.base = base          # sequence number of byte 0
        self.syn = syn            # base known from a SYN (else: first byte seen)
        self.data = bytearray()   # bytes [0, len(data)) without a gap
        self.pending: dict[int, bytes] = {}   # offset -> bytes beyond a gap
        self.fin_end: int | None = None
        self.t0 = self.frame0 = None   # first arrival of byte 0
        self.t_last = None        # first arrival of the furthest byte
        self.max_end = 0
        self.sigs: set = set()
        self.retransmitted = self.duplicates = self.out_of_order = 0
        self.snap_cut: int | None = None   # first offset not captured (snap length)
        self.ended = ""
        self.last_ns = 0

    def offset(self, seq: int) -> int:
        """Signed offset of sequence number ``seq`` from byte 0."""
        off = (seq - self.base) & M32
        return off - WRAP if off >= HALF else off

    @property
    def complete(self) -> bool:
        return self.fin_end is not None and len(self.data) >= self.fin_end

    @property
    def nbytes(self) -> int:
        """Bytes of the stream (up to the FIN when one was seen)."""
        if self.fin_end is not None:
            return self.fin_end
        return max(self.max_end, len(self.data))

    def gap(self) -> int | None:
        """Offset of the first missing byte, or None when nothing is missing."""
        have = len(self.data)
        limit = self.max_end if self.fin_end is None else self.fin_end
        gap = have if self.pending or have < limit else None
        if self.snap_cut is not None and (gap is None or self.snap_cut < gap):
            gap = self.snap_cut
        return gap

    def payload(self) -> bytes:
        return bytes(self.data if self.fin_end is None else self.data[:self.fin_end])

    def add(self, seq: int, flags: int, payload: bytes, plen: int, sig: int, ts: int, frame: int) -> bool:
        """Place one segment; True when the stream just became complete."""
        self.last_ns = ts
        off = self.offset(seq + 1 if flags & SYN else seq)
        wire_end = off + plen
        if flags & FIN and self.fin_end is None:
            self.fin_end = wire_end
        if wire_end > self.max_end:
            self.max_end, self.t_last = wire_end, ts
        n = len(payload)
        if n < plen:
            # Cut by the snap length: the stream is unusable from the first
            # byte not captured, but the segment still counts where it lies
            # in sequence space (placeholder bytes), so that the counts of
            # what TCP hid do not turn into "everything out of order".
            if wire_end > 0:
                cut = max(off + n, 0)
                self.snap_cut = cut if self.snap_cut is None else min(self.snap_cut, cut)
            payload, n = payload + bytes(plen - n), plen
        if n == 0:
            return self.complete
        if off < 0:
            if not self.syn and off > -HALF // 2:
                self._rebase(-off)
                off = 0
            elif off + n <= 0:
                return False   # before byte 0: a keep-alive probe, nothing of the stream
            else:
                payload, n, off = payload[-off:], n + off, 0
        end = off + n
        data = self.data
        have = len(data)
        if self.t0 is None and off == 0:
            self.t0, self.frame0 = ts, frame
        sig = (off, n, sig)
        if off == have and not self.pending:
            data += payload              # the common case: in order
        elif end <= have or (off > have and self._covered(off, end)):
            if sig in self.sigs:
                self.duplicates += 1
            else:
                self.retransmitted += 1
        elif off <= have:
            if off < have:
                self.retransmitted += 1
            data += payload[have - off:]
            if self.pending:
                self._drain()
        else:
            self.out_of_order += 1
            old = self.pending.get(off)
            if old is None or len(old) < n:
                self.pending[off] = payload
        self.sigs.add(sig)
        return self.complete

    def _covered(self, off: int, end: int) -> bool:
        return any(po <= off and po + len(pb) >= end for po, pb in self.pending.items())

    def _drain(self) -> None:
        data, pending = self.data, self.pending
        while pending:
            k = min(pending)
            have = len(data)
            if k > have:
                break
            seg = pending.pop(k)
            if k + len(seg) > have:
                data += seg[have - k:]

    def _rebase(self, shift: int) -> None:
        """Bytes before the first one seen turned up (no SYN was captured)."""
        moved = {k + shift: v for k, v in self.pending.items()}
        if self.data:
            moved[shift] = bytes(self.data)
        self.pending, self.data = moved, bytearray()
        self.base = (self.base - shift) & M32
        self.max_end += shift
        if self.fin_end is not None:
            self.fin_end += shift
        if self.snap_cut is not None:
            self.snap_cut += shift
        self.t0 = self.frame0 = None
        self.sigs = {(o + shift, n, s) for o, n, s in self.sigs}


class TcpReassembler:
    """4-tuple -> :class:`Direction`; finished directions land in :attr:`done`.

    ``key`` is any hashable naming the direction (source, then destination);
    ``reverse(key)`` must give the other direction's key.  The caller takes
    the finished directions out of ``done`` (a list) as it likes.
    ``direction``: the class of the directions (a subclass that records more,
    e.g. :class:`wirelab.observe.msglines.LineDirection`).
    """

    def __init__(self, reverse, direction=Direction):
        self.reverse = reverse
        self.direction = direction
        self.open: dict = {}
        self.closed: dict = {}   # key -> (base, fin_end or None, last_ns, isn or None)
        self.done: list[Direction] = []
        self.connections = 0
        self.segments = 0
        self._purge_at = TOMBSTONE_PURGE_AT

    def _new(self, key, base: int, syn: bool, opener: bool = False) -> Direction:
        d = self.direction(key, base, syn)
        self.open[key] = d
        # A connection is counted at its SYN without ACK, or, when no SYN was
        # captured, at the first of its directions seen.
        if opener or (not syn and self.reverse(key) not in self.open):
            self.connections += 1
        return d

    def _finish(self, d: Direction, why: str) -> None:
        d.ended = why
        del self.open[d.key]
        self.closed[d.key] = (d.base, d.fin_end if d.fin_end is not None else d.nbytes, d.last_ns,
                              (d.base - 1) & M32 if d.syn else None)
        if d.nbytes or d.data or d.pending:
            self.done.append(d)

    def segment(self, key, seq: int, flags: int, payload: bytes, plen: int, sig: int, ts: int, frame: int):
        self.segments += 1
        d = self.open.get(key)
        if flags & SYN:
            if d is not None and not (d.syn and ((d.base - 1) & M32) == seq):
                self._finish(d, NEW_SYN)   # the 4-tuple reused by a new connection
                d = None
            if d is None:
                tomb = self.closed.get(key)
                if tomb is not None and tomb[3] == seq:
                    return   # a late copy of a finished connection's SYN
                self.closed.pop(key, None)
                d = self._new(key, (seq + 1) & M32, True, not flags & ACK)
        elif flags & RST:
            for k in (key, self.reverse(key)):
                other = self.open.get(k)
                if other is not None:
                    self._finish(other, RESET)
            return
        elif d is None:
            if plen == 0 and not flags & FIN:
                return
            tomb = self.closed.get(key)
            if tomb is not None:
                off = (seq - tomb[0]) & M32
                if off < HALF and off <= tomb[1]:
                    return   # a late retransmission into a finished stream
                if off >= HALF and ts - tomb[2] < TOMBSTONE_NS:
                    return   # older than that stream's start: a stray copy
            if plen == 0:
                return       # a lone FIN: no stream to speak of
            d = self._new(key, seq, False)
        if d.add(seq, flags, payload, plen, sig, ts, frame):
            self._finish(d, FIN_COMPLETE)

    def purge(self, now_ns: int) -> None:
        """Forget finished directions idle for TOMBSTONE_NS (bounded memory).

        A pass is due when the table has doubled since the last one, so that
        its cost stays proportional to the directions finished."""
        if len(self.closed) < self._purge_at:
            return
        cut = now_ns - TOMBSTONE_NS
        self.closed = {k: v for k, v in self.closed.items() if v[2] >= cut}
        self._purge_at = max(TOMBSTONE_PURGE_AT, 2 * len(self.closed))

    def finish_all(self) -> None:
        for d in list(self.open.values()):
            self._finish(d, CAPTURE_END)
