"""The sending half of a TCP connection as a pure state machine (no sockets, no clock).

:mod:`wirelab.packets.handshake` feeds it ACKs and the time and puts on the wire
the :class:`Segment` values it returns; the unit tests feed it a fake network
that drops, duplicates and reorders. It keeps data *offsets* (0 = first payload
byte) and turns them into sequence numbers modulo 2**32 only at the edge, so
the wrap past 2**32 - 1 is one subtraction (:func:`seq_diff`).

What it does, and where the rule comes from:

* segments of ``seg_size`` bytes at fixed boundaries (a retransmission resends
  exactly the segment that was sent: same offset, same length);
* the peer's window (right edge = ACK + window, RFC 793) and a congestion
  window (RFC 5681: initial 10 segments (RFC 6928), slow start, halved on loss)
  are never exceeded, except by the zero-window probe, which carries no data
  and uses ``snd_una - 1`` (as Linux's ``tcp_xmit_probe_skb`` does);
* a retransmission timer (RFC 6298): SRTT/RTTVAR from RTT samples of segments
  sent once (Karn), RTO floor ``min_rto``, doubled on each expiry, which resends
  the oldest unacknowledged segment only;
* fast retransmit on the third duplicate ACK and NewReno's partial ACK
  (RFC 6582): the segment at the new ``snd_una`` is resent at once;
* the FIN after the last data byte; it occupies one sequence number.
"""

import dataclasses

from wirelab.errors import WirelabError

SEQ_MOD = 2**32
#: RFC 6298 2.1: the RTO before any RTT sample.
INITIAL_RTO_S = 1.0
#: Linux's TCP_RTO_MIN (include/net/tcp.h): 200 ms. RFC 6298 says 1 s; on an
#: emulated LAN with RTTs under a millisecond that would only slow the tests.
MIN_RTO_S = 0.2
#: RFC 6298 2.5: an upper bound of at least 60 s.
MAX_RTO_S = 60.0
#: RFC 6928: initial congestion window of 10 segments.
INITIAL_CWND_SEGMENTS = 10
#: RFC 5681 3.2: the third duplicate ACK means the segment is lost.
DUPACK_THRESHOLD = 3
#: Give up after this many transmissions of one segment (Linux: tcp_retries2 = 15).
MAX_TRANSMISSIONS = 12


def seq_add(seq, n):
    return (seq + n) % SEQ_MOD


def seq_diff(a, b):
    """``a - b`` in sequence space, as a signed number in [-2**31, 2**31)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= 2**31 else d


def seq_lt(a, b):
    return seq_diff(a, b) < 0


@dataclasses.dataclass(frozen=True)
class Segment:
    """One segment to put on the wire. ``offset``: of its first data byte (the
    FIN's offset is the data length); ``index``: 1-based data segment number."""

    seq: int
    offset: int
    length: int
    fin: bool = False
    reason: str = "new"   # new | rto | dup_acks | partial_ack | window_probe
    index: int = 0


@dataclasses.dataclass
class _Sent:
    length: int
    fin: bool
    index: int
    sent_at: float
    transmissions: int = 1


class GaveUp(WirelabError):
    """A segment was sent MAX_TRANSMISSIONS times without being acknowledged."""

    exit_code = 6


class Sender:
    """Send ``data_len`` bytes after ``isn`` (the SYN's sequence number).

    Call :meth:`on_ack` for every ACK from the peer and :meth:`poll` whenever
    an ACK arrived or :meth:`deadline` passed; send what :meth:`poll` returns.
    """

    def __init__(self, data_len, isn, seg_size, peer_window, now, min_rto=MIN_RTO_S,
                 initial_rto=INITIAL_RTO_S, max_rto=MAX_RTO_S,
                 initial_cwnd=INITIAL_CWND_SEGMENTS):
        if seg_size < 1:
            raise ValueError(f"seg_size={seg_size}: at least 1 byte")
        self.data_len = data_len
        self.base = seq_add(isn, 1)          # sequence number of offset 0
        self.seg_size = seg_size
        self.una = 0                          # oldest unacknowledged offset
        self.nxt = 0                          # next new offset to send
        self.right_edge = peer_window         # offset the peer's window ends at
        self.cwnd = initial_cwnd * seg_size
        self.ssthresh = 2**31
        self.min_rto, self.max_rto = min_rto, max_rto
        self.rto = max(initial_rto, min_rto)
        self.srtt = self.rttvar = None
        self.timer = None                     # when the RTO (or persist) timer fires
        self.dupacks = 0
        self.recover = None                   # NewReno: nxt when loss recovery began
        self.outstanding = {}                 # offset -> _Sent, in offset order
        self.rtt_samples = []                 # (time, seconds)
        self.retransmissions = []             # (time, Segment) with reason != new
        self._pending = []                    # retransmissions decided in on_ack

    # -- queries -------------------------------------------------------------
    @property
    def fin_offset(self):
        return self.data_len

    @property
    def finished(self):
        """Every data byte and the FIN acknowledged."""
        return self.una == self.data_len + 1

    @property
    def in_flight(self):
        return self.nxt - self.una

    def seq_of(self, offset):
        return seq_add(self.base, offset)

    def offset_of(self, seq):
        return seq_diff(seq, self.base)

    def deadline(self):
        return self.timer

    # -- input ---------------------------------------------------------------
    def on_ack(self, ack, window, now, carries_data=False):
        """Process an ACK number and the window it advertises (in bytes).

        Returns 'new' (it acknowledged data), 'dup' (a duplicate ACK, RFC 5681
        section 2), 'same' (no new data acknowledged, not a duplicate: a window
        update or nothing outstanding), 'old' (below ``snd_una``: reordered or
        duplicated; ignored) or 'invalid' (beyond what was sent)."""
        off = self.offset_of(ack)
        if off > self.nxt:
            return "invalid"
        if off < self.una:
            return "old"
        if off > self.una:
            self._advance(off, window, now)
            return "new"
        window_changed = off + window != self.right_edge
        self.right_edge = off + window
        if self.in_flight and not carries_data and not window_changed:
            return self._dupack(now)
        if not self.in_flight:
            self.timer = None   # a window update ends the persist timer; poll re-arms it
        return "same"

    def _dupack(self, now):
        self.dupacks += 1
        if self.dupacks == DUPACK_THRESHOLD and self.recover is None:
            self.ssthresh = max(self.in_flight // 2, 2 * self.seg_size)
            self.cwnd = self.ssthresh
            self.recover = self.nxt
            self._pending.append(self._resend_first("dup_acks", now))
            self.timer = now + self.rto
        return "dup"

    def _advance(self, off, window, now):
        acked, retransmitted = [], False
        for start in list(self.outstanding):
            sent = self.outstanding[start]
            end = start + sent.length + (1 if sent.fin else 0)
            if end > off:
                break
            del self.outstanding[start]
            acked.append(sent)
            retransmitted |= sent.transmissions > 1
        newly = off - self.una
        self.una = off
        self.right_edge = off + window
        self.dupacks = 0
        if acked and not retransmitted:   # Karn: no sample from a resent segment
            self.add_rtt_sample(now - acked[-1].sent_at, now)
        if self.recover is not None:
            if off >= self.recover:
                self.recover = None
            else:   # partial ACK: the segment now at una was lost too
                self._pending.append(self._resend_first("partial_ack", now))
        elif self.cwnd < self.ssthresh:
            self.cwnd += min(newly, self.seg_size)          # slow start
        else:
            self.cwnd += max(1, self.seg_size * self.seg_size // self.cwnd)
        self.timer = now + self.rto if self.una < self.nxt else None

    def add_rtt_sample(self, rtt, now):
        """An RTT measurement (seconds), e.g. the handshake's; sets SRTT, RTTVAR, RTO."""
        self.rtt_samples.append((now, rtt))
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:   # RFC 6298 2.3, alpha 1/8, beta 1/4
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(max(self.srtt + 4 * self.rttvar, self.min_rto), self.max_rto)

    # -- output --------------------------------------------------------------
    def poll(self, now):
        """The segments to send now: decided retransmissions, an expired timer's
        retransmission (or window probe), then new data the windows allow."""
        out, self._pending = self._pending, []
        if self.timer is not None and now >= self.timer:
            out.append(self._expire(now))
        window_end = min(self.right_edge, self.una + self.cwnd)
        while self.nxt < self.data_len:
            length = min(self.seg_size, self.data_len - self.nxt)
            if self.nxt + length > window_end:
                break
            out.append(self._send_new(self.nxt, length, False, now))
        if self.nxt == self.data_len:     # the FIN takes no window space
            out.append(self._send_new(self.nxt, 0, True, now))
        if self.timer is None and self.nxt < self.data_len and self.una == self.nxt:
            self.timer = now + self.rto   # zero window: persist timer
        return out

    def _send_new(self, off, length, fin, now):
        index = off // self.seg_size + 1 if length else 0
        self.outstanding[off] = _Sent(length, fin, index, now)
        self.nxt = off + length + (1 if fin else 0)
        if self.timer is None:
            self.timer = now + self.rto
        return Segment(self.seq_of(off), off, length, fin, "new", index)

    def _expire(self, now):
        self.rto = min(self.rto * 2, self.max_rto)        # RFC 6298 5.5
        self.timer = now + self.rto
        if self.una == self.nxt:   # nothing outstanding: the window is closed
            return Segment(seq_add(self.seq_of(self.una), -1), self.una, 0, False, "window_probe")
        self.ssthresh = max(self.in_flight // 2, 2 * self.seg_size)   # RFC 5681 (4)
        self.cwnd = self.seg_size
        # RFC 6582 section 3.2 step 4: after a timeout, partial ACKs up to
        # what was sent before it resend the next hole at once.
        self.recover = self.nxt
        self.dupacks = 0
        return self._resend_first("rto", now)

    def _resend_first(self, reason, now):
        """Resend the oldest unacknowledged segment whole (an ACK inside it
        leaves its boundaries; the receiver trims what it has)."""
        off = next(iter(self.outstanding))
        sent = self.outstanding[off]
        if sent.transmissions >= MAX_TRANSMISSIONS:
            raise GaveUp(f"segment at offset {off} sent {sent.transmissions} times, never acknowledged")
        sent.transmissions += 1
        sent.sent_at = now
        seg = Segment(self.seq_of(off), off, sent.length, sent.fin, reason, sent.index)
        self.retransmissions.append((now, seg))
        return seg
