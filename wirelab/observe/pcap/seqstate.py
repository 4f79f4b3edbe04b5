"""Wireshark's TCP sequence analysis, one packet at a time (the reference).

This is a transcription of ``tcp_analyze_sequence_number()`` in Wireshark's
``epan/dissectors/packet-tcp.c`` (the 4.0 series, with the default
preferences: analyse sequence numbers, relative sequence numbers, fast
retransmission takes precedence over out-of-order).  It works on absolute
sequence numbers, exactly like Wireshark, including its quirk that a stored
value of 0 means "not known yet".

It is used directly for the packets that the vectorised path in
:mod:`wirelab.observe.pcap.flows` declines (handshakes, zero windows, keep-alives,
segments missing from the capture), and it is the oracle the vectorised path
is tested against.
"""

from __future__ import annotations

from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

# Analysis flags of one packet (bit values are ours, names are Wireshark's).
RETRANSMISSION = 0x0001        # tcp.analysis.retransmission (plain)
FAST_RETRANSMISSION = 0x0002   # tcp.analysis.fast_retransmission
SPURIOUS_RETRANSMISSION = 0x0004  # tcp.analysis.spurious_retransmission
OUT_OF_ORDER = 0x0008          # tcp.analysis.out_of_order
DUPLICATE_ACK = 0x0010         # tcp.analysis.duplicate_ack
ZERO_WINDOW = 0x0020           # tcp.analysis.zero_window
ZERO_WINDOW_PROBE = 0x0040     # tcp.analysis.zero_window_probe
KEEP_ALIVE = 0x0080            # tcp.analysis.keep_alive
LOST_SEGMENT = 0x0100          # tcp.analysis.lost_segment ("previous segment not captured")
ACKED_UNSEEN = 0x0200          # tcp.analysis.ack_lost_segment ("ACKed unseen segment")
WINDOW_UPDATE = 0x0400         # tcp.analysis.window_update
KEEP_ALIVE_ACK = 0x0800        # tcp.analysis.keep_alive_ack
ZERO_WINDOW_PROBE_ACK = 0x1000  # tcp.analysis.zero_window_probe_ack
# Ours, not Wireshark's:
DUPLICATE_SEGMENT = 0x2000     # same (seq, len) as an earlier segment, see flows.py

ANY_RETRANSMISSION = RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION

FLAG_NAMES = {
    RETRANSMISSION: "retransmission", FAST_RETRANSMISSION: "fast_retransmission",
    SPURIOUS_RETRANSMISSION: "spurious_retransmission", OUT_OF_ORDER: "out_of_order",
    DUPLICATE_ACK: "duplicate_ack", ZERO_WINDOW: "zero_window",
    ZERO_WINDOW_PROBE: "zero_window_probe", KEEP_ALIVE: "keep_alive",
    LOST_SEGMENT: "lost_segment", ACKED_UNSEEN: "acked_unseen_segment",
    WINDOW_UPDATE: "window_update", KEEP_ALIVE_ACK: "keep_alive_ack",
    ZERO_WINDOW_PROBE_ACK: "zero_window_probe_ack", DUPLICATE_SEGMENT: "duplicate_segment",
}

# Wireshark's thresholds (packet-tcp.c): a fast retransmission follows the
# last duplicate ACK within 20 ms; without a handshake RTT the out-of-order
# window is 3 ms.
FAST_RETRANS_WINDOW_NS = 20_000_000
DEFAULT_OOO_THRESHOLD_NS = 3_000_000
# TCP_MAX_UNACKED_SEGMENTS: SYN/FIN only count for nextseq while Wireshark
# tracks fewer unacked segments than this.  We do not track the list, so we
# approximate it by counting segments sent since the last ACK movement.
M32 = 0xFFFFFFFF
WINDOW_UNSEEN = M32


def _s32(x: int) -> int:
    x &= M32
    return x - 0x100000000 if x & 0x80000000 else x


class DirState:
    """Per-direction state (Wireshark's ``tcp_flow_t`` + ``tcp_analyze_seq_flow_info_t``)."""

    __slots__ = ("nextseq", "nextseqtime", "lastack", "lastacktime", "window",
                 "dupacknum", "lastacklen", "maxseqtobeacked", "lastsegmentflags",
                 "base_seq", "base_set")

    def __init__(self):
        self.nextseq = 0
        self.nextseqtime = 0
        self.lastack = 0
        self.lastacktime = 0
        # Wireshark's init_tcp_conversation_data() starts both windows at
        # G_MAXUINT32: a direction never seen (e.g. a one-sided capture) must
        # not make the other side's 1-byte segments zero-window probes.
        self.window = WINDOW_UNSEEN
        self.dupacknum = 0
        self.lastacklen = 0
        self.maxseqtobeacked = 0
        self.lastsegmentflags = 0
        self.base_seq = 0
        self.base_set = False

    def copy(self) -> "DirState":
        d = DirState()
        for k in self.__slots__:
            setattr(d, k, getattr(self, k))
        return d


class ConvState:
    """Per-conversation state shared by both directions."""

    __slots__ = ("dirs", "ts_mru_syn", "ts_first_rtt")

    def __init__(self):
        self.dirs = (DirState(), DirState())
        self.ts_mru_syn = 0
        self.ts_first_rtt = 0


def analyze_packet(cs: ConvState, d: int, t: int, seq: int, ack: int, seglen: int,
                   flags: int, window: int) -> int:
    """Update ``cs`` with one segment sent in direction ``d``; return its flags."""
    fwd = cs.dirs[d]
    rev = cs.dirs[1 - d]
    synfinrst = flags & (SYN | FIN | RST)
    synfin = 1 if flags & (SYN | FIN) else 0
    # Wireshark records base_seq on the first segment (only used to detect
    # port reuse, which the caller handles).
    if not fwd.base_set:
        fwd.base_seq = seq if flags & SYN else (seq - 1) & M32
        fwd.base_set = True
    ta = 0

    if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
        ta |= ZERO_WINDOW_PROBE
    else:
        if window == 0 and not synfinrst:
            ta |= ZERO_WINDOW
        if fwd.nextseq and _s32(seq - fwd.nextseq) > 0 and not flags & RST:
            ta |= LOST_SEGMENT
        if seglen <= 1 and seq == ((fwd.nextseq - 1) & M32) and not synfinrst:
            ta |= KEEP_ALIVE
        same = (seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and not synfinrst)
        if same and window and window != fwd.window:
            ta |= WINDOW_UPDATE
        if same and window and window == fwd.window and rev.lastsegmentflags & KEEP_ALIVE:
            ta |= KEEP_ALIVE_ACK
        elif same and window == 0 and fwd.window == 0 and rev.lastsegmentflags & ZERO_WINDOW_PROBE:
            ta |= ZERO_WINDOW_PROBE_ACK
        elif same and window and window == fwd.window:
            fwd.dupacknum = 1 if fwd.dupacknum == -1 else fwd.dupacknum + 1
            ta |= DUPLICATE_ACK

    # finished_fwd:
    if ack != fwd.lastack:
        fwd.dupacknum = 0

    if rev.maxseqtobeacked and _s32(ack - rev.maxseqtobeacked) > 0 and flags & ACK:
        if _s32(rev.maxseqtobeacked - rev.nextseq) < 0:
            rev.maxseqtobeacked = rev.nextseq
            ta |= ACKED_UNSEEN
        else:
            if rev.dupacknum == 0:
                ta |= ACKED_UNSEEN
            rev.dupacknum = -1

    if seglen > 0 or synfin:
        seq_not_advanced = bool(fwd.nextseq) and _s32(seq - fwd.nextseq) < 0
        if not ta & KEEP_ALIVE:
            if seglen > 1 and ((fwd.nextseq - 1) & M32) == seq:
                seq_not_advanced = False
            if seglen > 0 and rev.lastack and _s32(seq + seglen - rev.lastack) <= 0:
                ta |= SPURIOUS_RETRANSMISSION
            elif seq_not_advanced:
                dt = t - rev.lastacktime
                if 0 <= dt < FAST_RETRANS_WINDOW_NS and rev.dupacknum >= 2 and rev.lastack == seq:
                    ta |= FAST_RETRANSMISSION
                else:
                    dt = t - fwd.nextseqtime
                    thres = cs.ts_first_rtt or DEFAULT_OOO_THRESHOLD_NS
                    if 0 <= dt < thres and (fwd.nextseq != ((seq + seglen + synfin) & M32)
                                            or fwd.lastacklen == 0):
                        ta |= OUT_OF_ORDER
                    else:
                        ta |= RETRANSMISSION

    nextseq = (seq + seglen + synfin) & M32
    if not fwd.nextseq or _s32(nextseq - ((fwd.nextseq + synfin) & M32)) > 0:
        fwd.lastacklen = seglen
    if (_s32(nextseq - fwd.nextseq) > 0 or not fwd.nextseq) and not ta & ZERO_WINDOW_PROBE:
        fwd.nextseq = nextseq
        fwd.nextseqtime = t
    if (seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked) and not ta & ZERO_WINDOW_PROBE:
        fwd.maxseqtobeacked = fwd.nextseq

    fwd.window = window
    fwd.lastack = ack
    fwd.lastacktime = t
    fwd.lastsegmentflags = ta

    # Handshake RTT, used as the out-of-order threshold (dissect_tcp()).
    if flags & SYN and not flags & ACK:
        cs.ts_mru_syn = t
    if (flags & (SYN | ACK)) == ACK and cs.ts_mru_syn and not cs.ts_first_rtt:
        cs.ts_first_rtt = t - cs.ts_mru_syn
    return ta
