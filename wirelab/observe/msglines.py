"""JSON Lines over TCP: one message per ``\\n``-terminated line of a rebuilt stream.

Apps that keep one connection open and write one JSON value per line (the
GFS heartbeats over TCP, most log shippers) need the rebuilt byte stream of
a direction (:mod:`wirelab.observe.tcpstream`) cut at its newlines, each
line with its own times and what TCP hid while carrying it:

* ``t`` is the first arrival of the line's first byte, ``t_end`` the first
  arrival of its last byte (the newline): a per-byte map of first arrivals
  (:func:`first_arrivals`) built from every data segment's place in sequence
  space, in capture order, so a line re-sent or overtaken gets the time
  its bytes were first seen, as the connection framing does for a message;
* ``retransmitted``/``duplicate``/``out_of_order`` segments are counted for
  the line holding the segment's first byte (their sum over a direction's
  lines is the direction's count);
* a hole (bytes never captured): the line it falls in is one error record
  (``truncated stream: gap at byte N``) up to the first newline after the
  hole, where the framing is found again; the lines after it are whole.
  Bytes cut by the snap length make everything from the first cut byte one
  error record (later segments are cut too: nothing to resync on);
* the bytes after the last newline: a message at FIN if they parse (else a
  ``not JSON`` record); without a FIN they carry the reason the stream
  ended (``connection never closed``, ``connection reset (RST) before FIN``),
  as a whole-connection message does;
* without the SYN the first line may be the tail of one whose start was not
  captured: it says ``no SYN: start of stream not captured``;
* blank lines (only JSON whitespace) are skipped, as JSON Lines readers do.

:class:`LineDirection` is the :class:`~wirelab.observe.tcpstream.Direction`
that keeps the per-segment record this needs (the connection framing does
not pay for it); :func:`line_messages` is the pure part, also used by the
vectorised path for clean streams.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from wirelab.observe.msgrecord import TCP, RebuiltMessage, decode_json, endpoint
from wirelab.observe.pcap.tcpflags import SYN
from wirelab.observe.tcpstream import NEW_SYN, RESET, Direction

NEWLINE = b"\n"
BLANKS = b" \t\r"
RETRANSMITTED, DUPLICATE, OUT_OF_ORDER = 0, 1, 2


class LineDirection(Direction):
    """A stream direction that also records, per data segment, where it lay
    and when it came (``arrivals``), and which segments TCP hid (``hidden``)."""

    __slots__ = ("arrivals", "hidden")

    def __init__(self, key, base: int, syn: bool):
        super().__init__(key, base, syn)
        self.arrivals: list = []   # (offset, end, ts_ns, frame), capture order
        self.hidden: list = []     # (offset, kind)

    def add(self, seq: int, flags: int, payload: bytes, plen: int, sig: int, ts: int, frame: int) -> bool:
        before = (self.retransmitted, self.duplicates, self.out_of_order)
        done = Direction.add(self, seq, flags, payload, plen, sig, ts, frame)
        if plen:
            # After add: a segment from before the first one seen (no SYN)
            # has moved byte 0 (_rebase), and its offset is in the new frame.
            off = self.offset(seq + 1 if flags & SYN else seq)
            self.arrivals.append((off, off + plen, ts, frame))
            for kind, (was, now) in enumerate(zip(before, (self.retransmitted, self.duplicates,
                                                           self.out_of_order))):
                if now != was:
                    self.hidden.append((off, kind))
        return done

    def _rebase(self, shift: int) -> None:
        Direction._rebase(self, shift)
        self.arrivals = [(a + shift, b + shift, t, f) for a, b, t, f in self.arrivals]
        self.hidden = [(a + shift, k) for a, k in self.hidden]


def first_arrivals(arrivals) -> list:
    """Disjoint ``(start, end, ts_ns, frame)`` pieces, sorted: which segment
    first brought each byte, from ``(offset, end, ts_ns, frame)`` in capture order."""
    starts: list[int] = []   # the bytes covered so far, as merged intervals
    ends: list[int] = []
    pieces = []
    for off, end, ts, fr in arrivals:
        off = max(off, 0)
        if end <= off:
            continue
        lo = bisect_left(ends, off)      # first interval reaching off (touching counts)
        hi = bisect_right(starts, end)   # one past the last starting at or before end
        pos = off
        for k in range(lo, hi):
            if starts[k] > pos:
                pieces.append((pos, starts[k], ts, fr))
            pos = max(pos, ends[k])
        if pos < end:
            pieces.append((pos, end, ts, fr))
        if lo < hi:
            starts[lo:hi] = [min(off, starts[lo])]
            ends[lo:hi] = [max(end, ends[hi - 1])]
        else:
            starts.insert(lo, off)
            ends.insert(lo, end)
    pieces.sort()
    return pieces


def split_lines(runs, limit: int, cut: int | None = None) -> list:
    """``(start, end, bytes | None, gap)`` per line of a stream of ``limit`` bytes.

    ``runs``: ``(offset, bytes)`` of the captured parts, in offset order, not
    overlapping; anything between them (or after the last one, up to
    ``limit``) is a hole.  ``cut``: the first byte cut by the snap length.
    ``bytes`` is None for a line a hole runs through (``gap``: its first
    missing byte); the last record may lack its newline."""
    limit_data = limit if cut is None else min(cut, limit)
    out = []
    start, parts, gap, cursor = 0, [], None, 0
    for off, data in runs:
        if off >= limit_data:
            break
        if off + len(data) > limit_data:
            data = data[:limit_data - off]
        if off > cursor and gap is None:
            gap = cursor
        find = data.find
        pos = 0
        nl = find(NEWLINE)
        while nl >= 0:
            end = off + nl + 1
            if gap is None:
                if parts:
                    parts.append(data[pos:nl + 1])
                    out.append((start, end, b"".join(parts), None))
                    parts = []
                else:
                    out.append((start, end, bytes(data[pos:nl + 1]), None))
            else:
                out.append((start, end, None, gap))
                gap, parts = None, []
            start, pos = end, nl + 1
            nl = find(NEWLINE, pos)
        if pos < len(data) and gap is None:
            parts.append(bytes(data[pos:]))
        cursor = off + len(data)
    if cursor < limit and gap is None:
        gap = cursor
    if start < limit:
        out.append((start, limit, None if gap is not None else b"".join(parts), gap))
    return out


def _times(starts, pieces, start: int, end: int):
    """``(t0_ns, t1_ns, frame)``: first arrivals of the first and the last
    captured byte of ``[start, end)`` and the frame of the first; a record
    with no byte captured (a hole to the end) takes the last arrival before it."""
    i = bisect_right(starts, start) - 1
    if i < 0 or pieces[i][1] <= start:
        i += 1
    j = bisect_left(starts, end) - 1
    if i < len(pieces) and i <= j:
        return pieces[i][2], pieces[j][2], pieces[i][3]
    if j >= 0:
        return pieces[j][2], pieces[j][2], pieces[j][3]
    return 0, 0, 0


def line_messages(key, runs, limit: int, pieces, hidden=(), *, syn: bool = True, ending: str | None = None,
                  cut: int | None = None) -> list[RebuiltMessage]:
    """The messages of one direction's stream (see the module docstring).

    ``key``: ``(src_hi, src_lo, sport, dst_hi, dst_lo, dport)``; ``runs``,
    ``limit``, ``cut``: as :func:`split_lines`; ``pieces``: from
    :func:`first_arrivals`; ``hidden``: ``(offset, kind)`` of the segments
    TCP hid; ``ending``: None when a FIN closed the stream, else why it
    ended (said by an unterminated last line)."""
    shi, slo, sp, dhi, dlo, dp = key
    src, dst = endpoint(shi, slo, sp), endpoint(dhi, dlo, dp)
    starts = [p[0] for p in pieces]
    kept, bounds = [], []
    for i, (start, end, data, gap) in enumerate(split_lines(runs, limit, cut)):
        if data is not None and not data.strip(BLANKS + NEWLINE):
            continue
        reasons = []
        value = None
        if gap is not None:
            note = " (packets cut by the capture's snap length)" if cut is not None and gap == cut else ""
            reasons.append(f"truncated stream: gap at byte {gap}{note}")
        else:
            value, err = decode_json(data)
            terminated = data.endswith(NEWLINE)
            if not terminated and ending is not None:
                reasons.append(ending)
            if err is not None:
                reasons.append(err)
        if i == 0 and not syn:
            reasons.append("no SYN: start of stream not captured")
        t0, t1, frame = _times(starts, pieces, start, end)
        kept.append(RebuiltMessage(t0 / 1e9, t1 / 1e9, TCP, src, dst, value,
                                   "; ".join(reasons) if reasons else None, end - start, 0, 0, 0, frame))
        bounds.append(end)
    for off, kind in hidden:
        if not kept:
            break
        m = kept[min(bisect_right(bounds, max(off, 0)), len(kept) - 1)]
        if kind == RETRANSMITTED:
            m.retransmitted_segments += 1
        elif kind == DUPLICATE:
            m.duplicate_segments += 1
        else:
            m.out_of_order_segments += 1
    return kept


def stream_runs(d: Direction) -> list:
    """``(offset, bytes)`` of the captured parts of ``d``: the in-order bytes,
    then the islands beyond the first hole (overlaps taken once)."""
    runs = [(0, d.data)] if d.data else []
    cursor = len(d.data)
    for off in sorted(d.pending):
        seg = d.pending[off]
        if off + len(seg) <= cursor:
            continue
        if off < cursor:
            seg, off = seg[cursor - off:], cursor
        runs.append((off, seg))
        cursor = off + len(seg)
    return runs


def direction_messages(d: LineDirection) -> list[RebuiltMessage]:
    """The line messages of a finished direction."""
    limit = d.fin_end if d.fin_end is not None else max(d.max_end, len(d.data))
    if d.complete:
        ending = None
    elif d.ended == RESET:
        ending = "connection reset (RST) before FIN"
    else:
        ending = "connection never closed" + (" (its 4-tuple reused by a new SYN)" if d.ended == NEW_SYN else "")
    return line_messages(d.key, stream_runs(d), limit, first_arrivals(d.arrivals), d.hidden, syn=d.syn,
                         ending=ending, cut=d.snap_cut)
