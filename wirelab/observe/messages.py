"""Application JSON messages rebuilt from a capture, to compare with what apps logged.

The house's apps speak JSON two ways: over TCP, one JSON value per
connection direction, read to EOF (MapReduce manager and workers); over UDP,
one JSON value per datagram (GFS heartbeats).  :func:`rebuild` reads a
capture with the house reader (:mod:`wirelab.observe.pcap`, any pcap/pcapng,
gzip, any link type it knows, IPv4 and IPv6), streams it batch by batch and
gives one :class:`RebuiltMessage` per TCP connection direction that carried
bytes and per UDP datagram::

    capture --PcapReader--> batches --l4payload (numpy)--> TCP/UDP rows with payload
      TCP rows --tcpstream--> one byte stream per direction (by sequence number:
                              retransmissions, overlaps, reordering, copies,
                              wraparound, 4-tuple reuse) --FIN--> message
      UDP rows -------------> one message per datagram
      IP fragments --msgfrag--> whole datagrams (or the reason they are not)

``framing="lines"``: a TCP direction carries JSON Lines instead, one message
per ``\\n``-terminated line, each with its own times and errors (a hole
spoils only the line it falls in; see :mod:`wirelab.observe.msglines`).

A message that cannot be trusted says so in ``error`` (one line) rather than
showing garbage: ``truncated stream: gap at byte N`` (``message`` None),
``connection never closed`` (no FIN: what came is decoded), ``connection reset
(RST) before FIN``, ``no SYN: start of stream not captured``, ``not JSON: ...``,
``empty`` (a zero-length datagram), ``IP fragments missing: ...``.

:func:`match_logged` (in :mod:`wirelab.observe.msgmatch`) compares the rebuilt
messages with the apps' event logs (:func:`read_event_log`).
"""

from __future__ import annotations

import contextlib
import gc
import struct

import numpy as np

from wirelab.errors import ConfigError
from wirelab.observe.l4payload import PROTO_TCP, PROTO_UDP, locate_payloads
from wirelab.observe.msgfrag import FragmentReassembler
from wirelab.observe.msglines import LineDirection, direction_messages, line_messages
from wirelab.observe.msgmatch import EventLog, canonical, match_logged, read_event_log
from wirelab.observe.msgrecord import (TCP, UDP, RebuildStats, RebuiltMessage, _endpoint_cache, _raw_decode,
                                       decode_json, endpoint, error_kind)
from wirelab.observe.pcap.reader import PcapFormatError, PcapReader
from wirelab.observe.tcpfast import split_clean
from wirelab.observe.tcpstream import M32, NEW_SYN, RESET, Direction, TcpReassembler

__all__ = ["RebuiltMessage", "RebuildStats", "MessageStream", "rebuild", "match_logged",
           "read_event_log", "EventLog", "canonical", "decode_json", "FRAMINGS"]

# How a TCP direction's bytes make messages: the whole direction read to EOF
# (one JSON value), or one JSON value per newline-terminated line.
CONNECTION, LINES = "connection", "lines"
FRAMINGS = (CONNECTION, LINES)

# Below this many TCP rows in a batch the vectorised split costs more than it saves.
CLEAN_MIN_ROWS = 64


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while a batch is rebuilt.

    Decoded JSON values are acyclic, but every dict and list is tracked: a
    caller keeping 300k messages made each collection pass walk all of them,
    and the rebuild of 1M packets took 4.1 s instead of 2.2 s.  The
    collector runs again (and catches up) whenever control is back with the
    caller, between batches."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _reverse(key):
    shi, slo, sp, dhi, dlo, dp = key
    return (dhi, dlo, dp, shi, slo, sp)


class MessageStream:
    """Iterate over the messages of a capture as they complete; :attr:`stats` after.

    Opening checks the file (``PcapFormatError``/``NotACaptureError`` at once);
    iteration reads it once, holding one read block plus the bytes of the
    connections still open.  Messages come in completion order (a TCP message
    when its FIN completes it), which is capture order per connection;
    with ``framing="lines"`` a direction's lines come together when it ends,
    in stream order.  ``progress(packets)`` is called after every batch when given.
    """

    def __init__(self, path, *, ports=None, framing: str = CONNECTION, progress=None):
        if framing not in FRAMINGS:
            raise ConfigError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
        self.framing = framing
        self.lines = framing == LINES
        self.path = str(path)
        self.ports = None if ports is None else np.asarray(sorted({int(p) for p in ports}), dtype=np.int64)
        self.progress = progress
        self.stats = RebuildStats()
        self._reader = PcapReader(self.path)

    def __iter__(self):
        stats = self.stats
        tcp = TcpReassembler(_reverse, LineDirection if self.lines else Direction)
        frags = FragmentReassembler()
        out: list[RebuiltMessage] = []
        ports = None if self.ports is None else set(self.ports.tolist())
        reader = self._reader
        now = 0
        for batch in reader:
            with _collector_paused():
                now = self._batch(batch, tcp, frags, out, ports, now)
            if self.progress is not None:
                self.progress(reader.packets)
            if out:
                yield from out
                out.clear()
        with _collector_paused():
            frags.finish_all()
            self._datagrams(frags, tcp, out, ports)
            tcp.finish_all()
            self._collect(tcp, out)
        stats.packets = reader.packets
        stats.tcp_connections = tcp.connections
        stats.ip_fragments = frags.fragments
        stats.unattributed_fragments = frags.unattributed
        stats.truncated = reader.truncated
        stats.warnings = reader.warnings
        yield from out

    def _batch(self, batch, tcp: TcpReassembler, frags: FragmentReassembler, out: list, ports, now: int) -> int:
        """One read batch; returns the capture time reached (ns)."""
        lb = locate_payloads(batch, self.ports)
        if len(lb):
            now = self._rows(lb, batch.buf, tcp, out)
        if len(lb.frag_ip):
            buf = batch.buf
            for at, end, fr, ts in zip(lb.frag_ip.tolist(), lb.frag_end.tolist(),
                                       lb.frag_frame.tolist(), lb.frag_ts_ns.tolist()):
                frags.add(buf, at, end, fr, ts)
                now = max(now, ts)
        if frags.groups:
            frags.expire(now)
        if frags.done:
            self._datagrams(frags, tcp, out, ports)
        self._collect(tcp, out)
        tcp.purge(now)
        self.stats.packets = self._reader.packets
        return now

    def _rows(self, lb, buf: bytes, tcp: TcpReassembler, out: list) -> int:
        """Hand the TCP rows to the reassembler, turn the UDP rows into messages."""
        stats = self.stats
        is_tcp = lb.proto == PROTO_TCP
        t_rows = np.nonzero(is_tcp)[0]
        u_rows = np.nonzero(~is_tcp)[0]
        if len(t_rows):
            stats.tcp_segments += len(t_rows)
            if len(t_rows) >= CLEAN_MIN_ROWS:
                clean, t_rows = split_clean(lb, t_rows)
                if clean.keys:
                    refused = self._clean(clean, lb, buf, tcp, out)
                    if refused:
                        t_rows = np.sort(np.concatenate([t_rows] + refused))
            segment = tcp.segment
            for ts, fr, shi, slo, sp, dhi, dlo, dp, sq, fl, sg, po, pl, pc in zip(*(
                    a[t_rows].tolist() for a in (lb.ts_ns, lb.frame, lb.src_hi, lb.src_lo, lb.sport,
                                                  lb.dst_hi, lb.dst_lo, lb.dport, lb.seq, lb.flags,
                                                  lb.sig, lb.pay_off, lb.pay_len, lb.pay_cap))):
                segment((shi, slo, sp, dhi, dlo, dp), sq, fl, buf[po:po + pc] if pc else b"", pl, sg, ts, fr)
        if len(u_rows):
            stats.udp_datagrams += len(u_rows)
            stats.messages[UDP] += len(u_rows)
            append = out.append
            raw_decode = _raw_decode
            ep_get = _endpoint_cache.get
            # The loop is the hot spot of heartbeat traffic: the common case
            # (whole UTF-8 JSON) inline, anything else through _udp.
            for ts, t, fr, shi, slo, sp, dhi, dlo, dp, po, pl, pc in zip(*(
                    a[u_rows].tolist() for a in (lb.ts_ns, lb.ts_ns / 1e9, lb.frame, lb.src_hi, lb.src_lo, lb.sport,
                                                  lb.dst_hi, lb.dst_lo, lb.dport, lb.pay_off, lb.pay_len,
                                                  lb.pay_cap))):
                if pc == pl:
                    try:
                        text = buf[po:po + pc].decode()
                        value, end = raw_decode(text)
                        if end == len(text):
                            append(RebuiltMessage(t, t, UDP, ep_get((shi, slo, sp)) or endpoint(shi, slo, sp),
                                                  ep_get((dhi, dlo, dp)) or endpoint(dhi, dlo, dp),
                                                  value, None, pl, None, None, None, fr))
                            continue
                    except (ValueError, RecursionError):
                        pass
                stats.messages[UDP] -= 1   # _udp counts it
                append(self._udp(ts, ts, fr, shi, slo, sp, dhi, dlo, dp, buf[po:po + pc], pl))
        return int(lb.ts_ns[-1])

    def _clean(self, cg, lb, buf: bytes, tcp: TcpReassembler, out: list) -> list:
        """Messages of the clean directions (:mod:`wirelab.observe.tcpfast`); returns
        the rows of those the segment-by-segment path must take (state from before)."""
        if self.lines:
            return self._clean_lines(cg, lb, buf, tcp, out)
        rows = cg.rows
        po, pl = lb.pay_off[rows].tolist(), lb.pay_len[rows].tolist()
        ts, fr = lb.ts_ns[rows].tolist(), lb.frame[rows].tolist()
        opened, closed = tcp.open, tcp.closed
        refused = []
        append = out.append
        raw_decode = _raw_decode
        ep_get = _endpoint_cache.get
        stats = self.stats
        decoded = 0
        reset = cg.reset
        for key, isn, opener, a, b, start, stop, total, t_fin in zip(
                cg.keys, cg.isn, cg.opener, cg.first, cg.last, cg.start, cg.stop, cg.total, cg.t_fin):
            tomb = closed.get(key)
            if key in opened or (tomb is not None and tomb[3] == isn) or key in reset:
                refused.append(rows[start:stop])
                continue
            closed[key] = ((isn + 1) & M32, total, t_fin, isn)
            if opener:
                tcp.connections += 1
            if a == b:
                continue
            if b - a == 1:
                payload = buf[po[a]:po[a] + pl[a]]
            else:
                payload = b"".join([buf[po[i]:po[i] + pl[i]] for i in range(a, b)])
            try:   # decode_json's common case, inline: this loop runs once per message
                text = payload.decode()
                value, end = raw_decode(text)
                if end == len(text):
                    src, dst = key[:3], key[3:]
                    append(RebuiltMessage(ts[a] / 1e9, ts[b - 1] / 1e9, TCP, ep_get(src) or endpoint(*src),
                                          ep_get(dst) or endpoint(*dst), value, None, total, 0, 0, 0, fr[a]))
                    decoded += 1
                    continue
            except (ValueError, RecursionError):
                pass
            append(self._stream_message(key, payload, ts[a], ts[b - 1], fr[a], 0, 0, 0, None))
        stats.messages[TCP] += decoded   # the others were counted by _stream_message
        return refused

    def _clean_lines(self, cg, lb, buf: bytes, tcp: TcpReassembler, out: list) -> list:
        """:meth:`_clean` for JSON Lines: a clean stream's bytes are its segments
        in capture order, each byte first brought by the segment holding it."""
        rows = cg.rows
        po, pl = lb.pay_off[rows].tolist(), lb.pay_len[rows].tolist()
        ts, fr = lb.ts_ns[rows].tolist(), lb.frame[rows].tolist()
        opened, closed = tcp.open, tcp.closed
        refused = []
        for key, isn, opener, a, b, start, stop, total, t_fin in zip(
                cg.keys, cg.isn, cg.opener, cg.first, cg.last, cg.start, cg.stop, cg.total, cg.t_fin):
            tomb = closed.get(key)
            if key in opened or (tomb is not None and tomb[3] == isn) or key in cg.reset:
                refused.append(rows[start:stop])
                continue
            closed[key] = ((isn + 1) & M32, total, t_fin, isn)
            if opener:
                tcp.connections += 1
            if a == b:
                continue
            pieces, at = [], 0
            for i in range(a, b):
                pieces.append((at, at + pl[i], ts[i], fr[i]))
                at += pl[i]
            payload = b"".join([buf[po[i]:po[i] + pl[i]] for i in range(a, b)])
            self._count_lines(out, line_messages(key, [(0, payload)], total, pieces))
        return refused

    def _count_lines(self, out: list, msgs: list, d: Direction | None = None) -> None:
        stats = self.stats
        stats.messages[TCP] += len(msgs)
        for m in msgs:
            if m.error is not None:
                stats.errors[error_kind(m.error)] += 1
        if d is not None:
            stats.retransmitted_segments += d.retransmitted
            stats.duplicate_segments += d.duplicates
            stats.out_of_order_segments += d.out_of_order
        out.extend(msgs)

    def _stream_message(self, key, payload, t0, t1, frame, retransmitted, duplicates, out_of_order,
                        reasons) -> RebuiltMessage:
        """A TCP message from its bytes (None: a gap) and the reasons found so far."""
        stats = self.stats
        msg = None
        nbytes = len(payload) if isinstance(payload, (bytes, bytearray)) else payload
        if isinstance(payload, (bytes, bytearray)):
            msg, err = decode_json(payload)
            if err is not None:
                reasons = (reasons or []) + [err]
        err = "; ".join(reasons) if reasons else None
        shi, slo, sp, dhi, dlo, dp = key
        stats.messages[TCP] += 1
        if retransmitted or duplicates or out_of_order:
            stats.retransmitted_segments += retransmitted
            stats.duplicate_segments += duplicates
            stats.out_of_order_segments += out_of_order
        if err is not None:
            stats.errors[error_kind(err)] += 1
        return RebuiltMessage(t0 / 1e9, t1 / 1e9, TCP, endpoint(shi, slo, sp), endpoint(dhi, dlo, dp),
                              msg, err, nbytes, retransmitted, duplicates, out_of_order, frame)

    def _udp(self, ts, ts_end, frame, shi, slo, sp, dhi, dlo, dp, payload, wire_len, problem=None):
        stats = self.stats
        if problem is not None:
            msg, err = None, problem
        elif len(payload) < wire_len:
            msg, err = None, f"datagram cut by the capture's snap length ({len(payload)} of {wire_len} bytes)"
        else:
            msg, err = decode_json(payload)
        stats.messages[UDP] += 1
        if err is not None:
            stats.errors[error_kind(err)] += 1
        return RebuiltMessage(ts / 1e9, ts_end / 1e9, UDP, endpoint(shi, slo, sp), endpoint(dhi, dlo, dp),
                              msg, err, wire_len, frame=frame)

    def _datagrams(self, frags: FragmentReassembler, tcp: TcpReassembler, out: list, ports) -> None:
        """Whole (or given-up) fragmented datagrams: UDP to messages, TCP to the reassembler."""
        for g in frags.done:
            l4 = g.l4
            if len(l4) < 8 or g.proto not in (PROTO_TCP, PROTO_UDP):
                continue
            sp, dp = struct.unpack_from("!HH", l4)
            if ports is not None and sp not in ports and dp not in ports:
                continue
            if g.proto == PROTO_UDP:
                self.stats.udp_datagrams += 1
                ulen = struct.unpack_from("!H", l4, 4)[0]
                out.append(self._udp(g.ts_first, g.ts_last, g.frame, g.src_hi, g.src_lo, sp, g.dst_hi,
                                     g.dst_lo, dp, l4[8:ulen], max(ulen - 8, 0), g.problem))
            elif g.problem is None and len(l4) >= 20:
                seq, _ack, off_flags = struct.unpack_from("!IIH", l4, 4)
                hl = (off_flags >> 12) * 4
                self.stats.tcp_segments += 1
                tcp.segment((g.src_hi, g.src_lo, sp, g.dst_hi, g.dst_lo, dp), seq, off_flags & 0x0FFF,
                            l4[hl:], len(l4) - hl, 0, g.ts_first, g.frame)
        frags.done.clear()

    def _collect(self, tcp: TcpReassembler, out: list) -> None:
        if tcp.done:
            if self.lines:
                for d in tcp.done:
                    self._count_lines(out, direction_messages(d), d)
            else:
                out.extend(self._tcp_message(d) for d in tcp.done)
            tcp.done.clear()

    def _tcp_message(self, d: Direction) -> RebuiltMessage:
        reasons = []
        gap = d.gap()
        if gap is not None:
            cut = " (packets cut by the capture's snap length)" if d.snap_cut == gap else ""
            reasons.append(f"truncated stream: gap at byte {gap}{cut}")
        elif d.ended == RESET:
            reasons.append("connection reset (RST) before FIN")
        elif not d.complete:
            reasons.append("connection never closed" + (" (its 4-tuple reused by a new SYN)"
                                                          if d.ended == NEW_SYN else ""))
        if not d.syn:
            reasons.append("no SYN: start of stream not captured")
        t0 = d.t0 if d.t0 is not None else d.last_ns
        t1 = d.t_last if d.t_last is not None else t0
        # With a gap there is nothing to decode: the message is None, its size the stream's.
        return self._stream_message(d.key, d.nbytes if gap is not None else d.payload(), t0, t1,
                                    d.frame0 or 0, d.retransmitted, d.duplicates, d.out_of_order, reasons)


def rebuild(path, *, ports=None, framing: str = CONNECTION, allow_truncated: bool = False) -> list[RebuiltMessage]:
    """Every message of the capture at ``path``, sorted by ``t``.

    ``ports``: only flows with either port in this set.  ``framing``: what a
    TCP direction holds, ``"connection"`` (one JSON value, read to EOF) or
    ``"lines"`` (one JSON value per ``\\n``-terminated line).  A capture that ends
    inside a record (or holds a corrupt one) raises :class:`PcapFormatError`
    after reading, unless ``allow_truncated``: messages would be missing
    without anything in them saying so.  Use :class:`MessageStream` for the
    statistics or to stream."""
    stream = MessageStream(path, ports=ports, framing=framing)
    out = sorted(stream, key=lambda m: (m.t, m.frame))
    if stream.stats.truncated and not allow_truncated:
        raise PcapFormatError(f"{stream.path}: {stream.stats.truncated}")
    return out
