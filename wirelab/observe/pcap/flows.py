"""TCP connection tracking and per-segment analysis over decoded batches.

:class:`FlowAnalyzer` consumes :class:`~wirelab.observe.pcap.decode.TcpBatch` objects
in capture order and keeps only per-connection state, so memory depends on
the number of connections, never on the file size.

Wireshark's analysis flags (see :mod:`wirelab.observe.pcap.seqstate`) are computed two
ways that give identical results:

* a vectorised path (:func:`_fast_flags`) for the common case -- an
  established connection exchanging data and ACKs, with retransmissions,
  reordering and duplicate ACKs -- which derives Wireshark's per-direction
  state (highest sequence number seen and when, last ACK and window,
  duplicate-ACK counter) with cumulative numpy operations;
* the packet-by-packet transcription :func:`seqstate.analyze_packet` for the
  rest of a batch of a connection as soon as one of these shows up in it:
  SYN, a handshake RTT still to be measured, a zero window, a keep-alive, a
  segment missing from the capture, an ACK for data never seen.

Our own measurements (payload bytes, unique bytes, duplicate segments, RTT
samples, handshake and teardown times) are always vectorised.
"""

from __future__ import annotations

import numpy as np

from wirelab.observe.pcap import seqstate as S
from wirelab.observe.pcap.decode import TcpBatch
from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

M32 = 0xFFFFFFFF
# A duplicate segment is looked for among the data segments of the same
# direction at most this many capture frames back; it bounds memory.
DUPLICATE_WINDOW_FRAMES = 65536
_BIG = np.int64(1) << 40  # separates groups in segmented cumulative maxima

SEGMENT_DTYPE = np.dtype([
    ("frame", np.int64), ("ts_ns", np.int64), ("stream", np.int64), ("dir", np.int8),
    ("seq", np.int64), ("ack", np.int64), ("rel_seq", np.int64), ("rel_ack", np.int64),
    ("len", np.int64), ("flags", np.int64), ("win", np.int64), ("ipid", np.int64),
    ("tsval", np.int64), ("tsecr", np.int64), ("analysis", np.int64), ("rtt_ns", np.int64),
])


class DirStats:
    """Running counters for one direction of one connection."""

    __slots__ = ("packets", "data_segments", "payload_bytes", "min_seq_u", "max_end_u",
                 "flag_counts", "rtt_n", "rtt_sum", "rtt_sq", "rtt_min", "rtt_max",
                 "first_syn", "first_fin", "first_rst", "seq_u_last", "ack_u_last",
                 "max_ack_u", "isn", "pending", "recent", "retrans_total", "adv_max")

    def __init__(self):
        self.packets = 0
        self.data_segments = 0
        self.payload_bytes = 0
        self.min_seq_u = None
        self.max_end_u = None
        self.flag_counts = {}
        self.rtt_n = 0
        self.rtt_sum = 0
        self.rtt_sq = 0.0
        self.rtt_min = None
        self.rtt_max = None
        self.first_syn = None
        self.first_fin = None
        self.first_rst = None
        self.seq_u_last = None   # unwrapped seq of the last segment
        self.ack_u_last = None   # unwrapped ack of the last segment (peer's seq space)
        self.max_ack_u = None    # highest ACK sent by this direction (unwrapped)
        self.isn = None          # raw seq used to make relative sequence numbers
        self.pending = None      # (end_u, t, retrans_count) of unacked first transmissions
        self.recent = None       # (key, frame) of recent data segments, for duplicates
        self.retrans_total = 0   # running count of retransmissions (any kind)
        self.adv_max = None      # highest end of a first transmission


class Conversation:
    """One TCP connection (Wireshark's tcp.stream)."""

    __slots__ = ("stream", "ends", "client_side", "state", "stats", "first_ts", "last_ts",
                 "syn_ts", "synack_ts", "hs_ack_ts", "saw_syn")

    def __init__(self, stream: int, ends, client_side: int):
        self.stream = stream
        self.ends = ends            # ((hi, lo, port), (hi, lo, port)) canonical order
        self.client_side = client_side  # index into ends of the client
        self.state = S.ConvState()
        self.stats = (DirStats(), DirStats())
        self.first_ts = None
        self.last_ts = None
        self.syn_ts = None
        self.synack_ts = None
        self.hs_ack_ts = None
        self.saw_syn = False


def _s32(a: np.ndarray) -> np.ndarray:
    """Signed 32-bit difference of int64 arrays holding uint32 values."""
    return ((a + 0x80000000) & M32) - 0x80000000


def _seg_starts(gid: np.ndarray) -> np.ndarray:
    """Boolean: element starts a new group (gid is sorted)."""
    st = np.ones(len(gid), dtype=bool)
    st[1:] = gid[1:] != gid[:-1]
    return st


def _ffill_idx(mask: np.ndarray, start_pos: np.ndarray) -> np.ndarray:
    """Index of the last True at or before i within i's group, else -1."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    idx = np.maximum.accumulate(idx) if len(idx) else idx
    return np.where(idx >= start_pos, idx, -1)


class FlowAnalyzer:
    """Track TCP connections over successive batches."""

    def __init__(self, keep_segments: bool = False, exact: bool = False):
        self.keep_segments = keep_segments
        self.exact = exact  # force the packet-by-packet path (for testing)
        self.convs: list[Conversation] = []
        self._by_key: dict = {}
        self.tcp_packets = 0

    # -- connection table ------------------------------------------------------

    def _assign(self, tb: TcpBatch):
        """Return (stream index, direction) arrays for the batch."""
        n = len(tb)
        a = (tb.src_hi, tb.src_lo, tb.sport)
        b = (tb.dst_hi, tb.dst_lo, tb.dport)
        # Canonical order of the two endpoints: swap when src > dst.
        gt = (a[0] > b[0]) | ((a[0] == b[0]) & ((a[1] > b[1]) | ((a[1] == b[1]) & (a[2] > b[2]))))
        lo_hi = np.where(gt, b[0], a[0]); lo_lo = np.where(gt, b[1], a[1]); lo_p = np.where(gt, b[2], a[2])
        hi_hi = np.where(gt, a[0], b[0]); hi_lo = np.where(gt, a[1], b[1]); hi_p = np.where(gt, a[2], b[2])
        # Hash the key to 64 bits, group by hash, verify each group's members.
        h = (lo_lo * np.uint64(0x9E3779B97F4A7C15)) ^ (hi_lo * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= (lo_hi + hi_hi * np.uint64(31)) * np.uint64(0x165667B19E3779F9)
        h ^= (lo_p.astype(np.uint64) << np.uint64(16) | hi_p.astype(np.uint64)) * np.uint64(0x27D4EB2F165667C5)
        uh, first, inv = np.unique(h, return_index=True, return_inverse=True)
        keyidx = inv.copy()
        # Collision check: every member must equal its group's first member.
        f = first[inv]
        same = ((lo_hi == lo_hi[f]) & (lo_lo == lo_lo[f]) & (lo_p == lo_p[f])
                & (hi_hi == hi_hi[f]) & (hi_lo == hi_lo[f]) & (hi_p == hi_p[f]))
        extra_keys = []
        if not same.all():
            for i in np.nonzero(~same)[0].tolist():
                keyidx[i] = len(uh) + len(extra_keys)
                extra_keys.append(i)
        reps = first.tolist() + extra_keys
        stream = np.empty(n, dtype=np.int64)
        synmask = (tb.flags & (SYN | ACK)) == SYN
        for k, i in enumerate(reps):
            key = (int(lo_hi[i]), int(lo_lo[i]), int(lo_p[i]), int(hi_hi[i]), int(hi_lo[i]), int(hi_p[i]))
            members = keyidx == k
            conv = self._by_key.get(key)
            if conv is None or synmask[members].any():
                # Per-packet walk: new connections start at SYNs (port reuse).
                idxs = np.nonzero(members)[0]
                for j in idxs.tolist():
                    side = 1 if gt[j] else 0
                    f_ = int(tb.flags[j])
                    if conv is None:
                        conv = self._new_conv(key, side, f_)
                    elif (f_ & (SYN | ACK)) == SYN:
                        d = 0 if side == conv.client_side else 1
                        ds = conv.state.dirs[d]
                        sq = int(tb.seq[j])
                        if ds.base_set and sq != ds.base_seq:
                            conv = self._new_conv(key, side, f_)
                        elif ds.base_set:
                            # Wireshark restores nextseq on a repeated SYN (issue 17616).
                            ds.nextseq = ds.maxseqtobeacked
                    d = 0 if side == conv.client_side else 1
                    ds = conv.state.dirs[d]
                    if not ds.base_set:
                        ds.base_set = True
                        ds.base_seq = int(tb.seq[j]) if f_ & SYN else (int(tb.seq[j]) - 1) & M32
                    stream[j] = conv.stream
            else:
                stream[members] = conv.stream
        conv_side = np.array([c.client_side for c in self.convs], dtype=np.int64)
        dirn = (gt.astype(np.int64) != conv_side[stream]).astype(np.int64)
        return stream, dirn

    def _new_conv(self, key, side: int, flags: int) -> Conversation:
        # The client is the SYN sender; a SYN-ACK seen first comes from the server.
        client = side if (flags & (SYN | ACK)) != (SYN | ACK) else 1 - side
        conv = Conversation(len(self.convs), ((key[0], key[1], key[2]), (key[3], key[4], key[5])), client)
        self.convs.append(conv)
        self._by_key[key] = conv
        return conv

    # -- per batch -------------------------------------------------------------

    def feed(self, tb: TcpBatch):
        """Analyse one batch; return its segment records if ``keep_segments``."""
        n = len(tb)
        if n == 0:
            return np.empty(0, dtype=SEGMENT_DTYPE) if self.keep_segments else None
        self.tcp_packets += n
        stream, dirn = self._assign(tb)
        gid = stream * 2 + dirn
        order = np.argsort(gid, kind="stable")
        g = gid[order]
        starts = _seg_starts(g)
        start_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        t = tb.ts_ns[order]
        seq = tb.seq[order]
        ack = tb.ack[order]
        seglen = tb.seglen[order]
        flags = tb.flags[order]
        win = tb.win[order]
        frame = tb.frame[order]
        synfin = ((flags & (SYN | FIN)) != 0).astype(np.int64)
        gstarts = np.nonzero(starts)[0]
        gids = g[gstarts].tolist()
        gends = np.append(gstarts[1:], n)

        # Unwrapped sequence numbers, continuing from the previous batch.
        d = _s32(np.diff(seq, prepend=0))
        anchor = np.empty(len(gstarts), dtype=np.int64)
        for k, gi in enumerate(gids):
            st = self.convs[gi >> 1].stats[gi & 1]
            s0 = int(seq[gstarts[k]])
            if st.seq_u_last is None:
                anchor[k] = s0
                st.isn = s0
            else:
                anchor[k] = st.seq_u_last + int(_s32(np.int64(s0 - (st.seq_u_last & M32))))
        d[gstarts] = 0
        seq_u = np.cumsum(d)
        seq_u = seq_u - seq_u[start_pos] + np.repeat(anchor, gends - gstarts)
        end_u = seq_u + seglen + synfin

        # Wireshark flags.
        ana = np.zeros(n, dtype=np.int64)
        conv_of_group = np.array(gids, dtype=np.int64) >> 1
        ucon, cstart = np.unique(conv_of_group, return_index=True)
        cend = np.append(cstart[1:], len(gids))
        for ci, a0, a1 in zip(ucon.tolist(), cstart.tolist(), cend.tolist()):
            lo = int(gstarts[a0])
            hi = int(gends[a1 - 1])
            rows = lo + np.argsort(frame[lo:hi], kind="stable")
            if self.exact:
                _exact_rows(self.convs[ci], rows, g, t, seq, ack, seglen, flags, win, ana)
            else:
                _mixed_rows(self.convs[ci], rows, g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana)

        # Our own measurements.
        rtt = self._measure(gstarts, gends, gids, t, seq, ack, seglen, flags, frame, seq_u, end_u, ana)

        for k, gi in enumerate(gids):
            st = self.convs[gi >> 1].stats[gi & 1]
            st.seq_u_last = int(seq_u[gends[k] - 1])

        if not self.keep_segments:
            return None
        rec = np.empty(n, dtype=SEGMENT_DTYPE)
        inv = np.empty(n, dtype=np.int64)
        inv[order] = np.arange(n)
        rec["frame"] = tb.frame
        rec["ts_ns"] = tb.ts_ns
        rec["stream"] = stream
        rec["dir"] = dirn
        rec["seq"] = tb.seq
        rec["ack"] = tb.ack
        isn_of = np.empty(n, dtype=np.int64)
        peer_isn = np.empty(n, dtype=np.int64)
        for gi in set(gids):
            c = self.convs[gi >> 1]
            m = gid == gi
            isn_of[m] = c.stats[gi & 1].isn
            pi = c.stats[1 - (gi & 1)].isn
            peer_isn[m] = pi if pi is not None else 0
        rec["rel_seq"] = (tb.seq - isn_of) & M32
        rec["rel_ack"] = np.where((tb.flags & ACK) != 0, (tb.ack - peer_isn) & M32, 0)
        rec["len"] = tb.seglen
        rec["flags"] = tb.flags
        rec["win"] = tb.win
        rec["ipid"] = tb.ipid
        rec["tsval"] = tb.tsval
        rec["tsecr"] = tb.tsecr
        rec["analysis"] = ana[inv]
        rec["rtt_ns"] = rtt[inv]
        return rec

    def _measure(self, gstarts, gends, gids, t, seq, ack, seglen, flags, frame, seq_u, end_u, ana):
        """Counters, duplicates, handshake/teardown times and RTT samples."""
        n = len(t)
        rtt = np.full(n, -1, dtype=np.int64)
        data = seglen > 0
        retr = (ana & S.ANY_RETRANSMISSION) != 0
        # Duplicate segments: same (unwrapped seq, len) as an earlier data
        # segment of the same direction within DUPLICATE_WINDOW_FRAMES frames.
        for k, gi in enumerate(gids):
            lo, hi = int(gstarts[k]), int(gends[k])
            conv = self.convs[gi >> 1]
            st = conv.stats[gi & 1]
            sl = slice(lo, hi)
            dm = data[sl]
            fr = frame[sl]
            st.packets += hi - lo
            st.data_segments += int(dm.sum())
            st.payload_bytes += int(seglen[sl].sum())
            if conv.first_ts is None:
                conv.first_ts = int(t[lo])
            conv.first_ts = min(conv.first_ts, int(t[sl].min()))
            conv.last_ts = max(conv.last_ts or 0, int(t[sl].max()))
            if dm.any():
                smin = int(seq_u[sl][dm].min())
                emax = int((seq_u[sl] + seglen[sl])[dm].max())
                st.min_seq_u = smin if st.min_seq_u is None else min(st.min_seq_u, smin)
                st.max_end_u = emax if st.max_end_u is None else max(st.max_end_u, emax)
            fl = flags[sl]
            for bit, attr in ((SYN, "first_syn"), (FIN, "first_fin"), (RST, "first_rst")):
                if getattr(st, attr) is None:
                    w = np.nonzero(fl & bit)[0]
                    if len(w):
                        setattr(st, attr, int(t[lo + w[0]]))
            # duplicates
            if dm.any():
                di = np.nonzero(dm)[0] + lo
                keys = seq_u[di] * 65536 + seglen[di]  # seglen < 65536 for any IP packet
                frs = frame[di]
                if st.recent is not None:
                    pk, pf = st.recent
                    keep = pf >= int(frs[0]) - DUPLICATE_WINDOW_FRAMES
                    allk = np.concatenate([pk[keep], keys])
                    allf = np.concatenate([pf[keep], frs])
                    npre = int(keep.sum())
                else:
                    allk, allf, npre = keys, frs, 0
                o = np.lexsort((allf, allk))
                sk, sf = allk[o], allf[o]
                dup_sorted = np.zeros(len(o), dtype=bool)
                dup_sorted[1:] = (sk[1:] == sk[:-1]) & (sf[1:] - sf[:-1] <= DUPLICATE_WINDOW_FRAMES)
                isdup = np.empty(len(o), dtype=bool)
                isdup[o] = dup_sorted
                ana[di[isdup[npre:]]] |= S.DUPLICATE_SEGMENT
                lastf = int(frs[-1])
                km = allf >= lastf - DUPLICATE_WINDOW_FRAMES
                st.recent = (allk[km], allf[km])
            # flag counters
            a = ana[sl]
            nz = a[a != 0]
            if len(nz):
                for bit in S.FLAG_NAMES:
                    c = int(np.count_nonzero(nz & bit))
                    if c:
                        st.flag_counts[bit] = st.flag_counts.get(bit, 0) + c
            # handshake times (first SYN, SYN-ACK, then the first pure ACK after them)
            if not (conv.syn_ts is not None and conv.synack_ts is not None and conv.hs_ack_ts is not None):
                for j in np.nonzero((fl & (SYN | ACK)) != 0)[0][:64].tolist():
                    f_ = int(fl[j])
                    tj = int(t[lo + j])
                    if f_ & SYN and not f_ & ACK and conv.syn_ts is None:
                        conv.syn_ts = tj
                    elif f_ & SYN and f_ & ACK and conv.synack_ts is None:
                        conv.synack_ts = tj
        # Handshake ACK: first client-to-server pure ACK after the SYN-ACK.
        for k, gi in enumerate(gids):
            conv = self.convs[gi >> 1]
            if conv.synack_ts is not None and conv.hs_ack_ts is None and (gi & 1) == 0:
                lo, hi = int(gstarts[k]), int(gends[k])
                m = ((flags[lo:hi] & (SYN | ACK)) == ACK) & (t[lo:hi] >= conv.synack_ts)
                w = np.nonzero(m)[0]
                if len(w):
                    conv.hs_ack_ts = int(t[lo + w[0]])

        # RTT samples: an ACK that advances the highest ACK of its direction and
        # equals the end of a first transmission of the other direction gives
        # one sample, unless a retransmission happened in the other direction
        # between that segment and the ACK (Karn's rule, conservatively).
        grp = {gi: k for k, gi in enumerate(gids)}
        # Both directions of every connection in the batch: the ACKs may come
        # in a batch without data from the other side (data still pending).
        for gi in sorted({x for gi0 in gids for x in (gi0 & ~1, gi0 | 1)}):
            conv = self.convs[gi >> 1]
            sd = conv.stats[gi & 1]        # data direction
            sa = conv.stats[1 - (gi & 1)]  # ACK direction
            k = grp.get(gi)
            lo, hi = (int(gstarts[k]), int(gends[k])) if k is not None else (0, 0)
            e = end_u[lo:hi]
            r = retr[lo:hi]
            fr = frame[lo:hi]
            rcum = np.cumsum(r) + sd.retrans_total   # retransmissions up to and including i
            first_tx = ~r & ((seglen[lo:hi] > 0) | ((flags[lo:hi] & (SYN | FIN)) != 0))
            base = sd.adv_max if sd.adv_max is not None else -(1 << 62)
            prevmax = np.maximum.accumulate(np.concatenate([[base], e]))
            first_tx &= e > prevmax[:-1]
            sd.adv_max = int(prevmax[-1])
            pe, pt, pr, pf = e[first_tx], t[lo:hi][first_tx], (rcum - r)[first_tx], fr[first_tx]
            if sd.pending is not None:
                pe = np.concatenate([sd.pending[0], pe]); pt = np.concatenate([sd.pending[1], pt])
                pr = np.concatenate([sd.pending[2], pr]); pf = np.concatenate([sd.pending[3], pf])
            ka = grp.get(gi ^ 1)
            if ka is not None and len(pe):
                alo, ahi = int(gstarts[ka]), int(gends[ka])
                ai = np.nonzero((flags[alo:ahi] & ACK) != 0)[0] + alo
                if len(ai):
                    # Unwrap the ACKs into the data direction's sequence space.
                    ref = sa.ack_u_last if sa.ack_u_last is not None else int(pe[0])
                    ack_u = ref + np.cumsum(_s32(np.diff(ack[ai], prepend=np.int64(ref & M32))))
                    sa.ack_u_last = int(ack_u[-1])
                    pm = sa.max_ack_u if sa.max_ack_u is not None else -(1 << 62)
                    runmax = np.maximum.accumulate(np.concatenate([[pm], ack_u]))
                    cand = np.nonzero(ack_u > runmax[:-1])[0]
                    sa.max_ack_u = int(runmax[-1])
                    if len(cand):
                        au = ack_u[cand]
                        af = frame[ai[cand]]
                        pos = np.minimum(np.searchsorted(pe, au), len(pe) - 1)
                        hit = (pe[pos] == au) & (pf[pos] < af)
                        # retransmissions in the data direction before the ACK
                        rc = np.concatenate([[sd.retrans_total], rcum])
                        hit &= rc[np.searchsorted(fr, af)] == pr[pos]
                        h = np.nonzero(hit)[0]
                        if len(h):
                            ac = ai[cand[h]]
                            samples = t[ac] - pt[pos[h]]
                            rtt[ac] = samples
                            sa.rtt_n += len(samples)
                            sa.rtt_sum += int(samples.sum())
                            sa.rtt_sq += float((samples.astype(np.float64) ** 2).sum())
                            mn, mx = int(samples.min()), int(samples.max())
                            sa.rtt_min = mn if sa.rtt_min is None else min(sa.rtt_min, mn)
                            sa.rtt_max = mx if sa.rtt_max is None else max(sa.rtt_max, mx)
                    keep = pe > sa.max_ack_u
                    pe, pt, pr, pf = pe[keep], pt[keep], pr[keep], pf[keep]
            if len(pe) > 65536:  # one-sided captures: bound the list
                pe, pt, pr, pf = pe[-65536:], pt[-65536:], pr[-65536:], pf[-65536:]
            sd.pending = (pe, pt, pr, pf)
            if len(rcum):
                sd.retrans_total = int(rcum[-1])
        return rtt


def _exact_rows(conv, rows, g, t, seq, ack, seglen, flags, win, ana):
    """Packet-by-packet analysis of the given rows (in capture order)."""
    cs = conv.state
    analyze = S.analyze_packet
    ana[rows] = [analyze(cs, d, tt, sq, ak, sl, fl, w) for d, tt, sq, ak, sl, fl, w in zip(
        (g[rows] & 1).tolist(), t[rows].tolist(), seq[rows].tolist(), ack[rows].tolist(),
        seglen[rows].tolist(), flags[rows].tolist(), win[rows].tolist())]


def _state_is_simple(cs) -> bool:
    """Whether the vectorised path can start from this state."""
    if cs.ts_mru_syn and not cs.ts_first_rtt:
        return False
    for ds in cs.dirs:
        if (not ds.base_set or not ds.nextseq or not ds.maxseqtobeacked or ds.window == 0
                or ds.dupacknum < 0 or ds.lastsegmentflags & (S.KEEP_ALIVE | S.ZERO_WINDOW_PROBE)):
            return False
    return True


# The exact path runs over at least this many packets before the vectorised
# path is tried again; doubled (up to the maximum) each time the vectorised
# path gets less than that far, so alternating costs stay bounded.
EXACT_RUN_MIN, EXACT_RUN_MAX = 64, 8192


def _mixed_rows(conv, rows, g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana):
    """Vectorised where the state is simple, packet by packet elsewhere."""
    n = len(rows)
    pos = 0
    run = EXACT_RUN_MIN
    while pos < n:
        k = _fast_prefix(conv, rows[pos:], g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana) \
            if _state_is_simple(conv.state) else 0
        pos += k
        if pos >= n:
            break
        run = EXACT_RUN_MIN if k >= 4 * run else min(run * 2, EXACT_RUN_MAX)
        end = min(n, pos + run)
        _exact_rows(conv, rows[pos:end], g, t, seq, ack, seglen, flags, win, ana)
        pos = end


def _max_seq_to_be_acked(ds, sq, su, nsprev, nsafter, gap) -> np.ndarray:
    """Wireshark's ``maxseqtobeacked`` after each packet (unwrapped).

    It follows ``nextseq`` except while a hole is open: a gap freezes it at
    the hole's start until a segment starting exactly there arrives, which
    moves it up to ``nextseq``.  Holes are rare, so we walk them in Python.
    """
    m = nsafter.copy()
    n = len(su)
    h = int(su[0]) + int(_s32(np.int64(ds.maxseqtobeacked - int(sq[0]))))
    ns0 = int(nsprev[0])
    hole = h != ns0
    start = 0
    gaps = np.nonzero(gap)[0]
    gi = 0
    while start < n:
        if hole:
            hit = np.nonzero(su[start:] == h)[0]
            if not len(hit):
                m[start:] = h
                break
            j = start + int(hit[0])
            m[start:j] = h
            hole = False
            start = j + 1
            continue
        while gi < len(gaps) and gaps[gi] < start:
            gi += 1
        if gi >= len(gaps):
            break
        j = int(gaps[gi])
        h = int(nsprev[j])
        m[j] = h
        hole = True
        start = j + 1
    return m


def _fast_prefix(conv, rows, g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana) -> int:
    """Vectorised analysis of a connection's rows (capture order).

    Returns how many leading rows were analysed (flags written, state
    committed); the caller continues with the exact path from there.

    Valid while Wireshark's state evolves "simply" (checked by the caller for
    the initial state, and here for each packet): both directions already
    seen with a non-zero window, no SYN, no zero window, no keep-alive, no
    ACK for data never seen, no sequence or ACK number equal to 0
    (Wireshark's "unknown").  Then zero-window probes cannot occur, no packet
    changes the other direction's state, and the state of a direction after a
    packet is a cumulative function of that direction's packets (running
    maximum of segment ends, last ACK/window, duplicate-ACK run length, the
    hole tracking of :func:`_max_seq_to_be_acked`), computed below for all
    rows; the prefix before the first packet that breaks a condition is
    committed.
    """
    cs = conv.state
    n = len(rows)
    dirs = g[rows] & 1
    bad = n  # first row (capture order) where the conditions break
    f_all = flags[rows]
    b0 = np.nonzero(((f_all & SYN) != 0) | (win[rows] == 0) | (ack[rows] == 0)
                    | ((end_u[rows] & M32) == 0))[0]
    if len(b0):
        bad = int(b0[0])
    per = {}
    for d in (0, 1):
        sel = np.nonzero(dirs == d)[0]   # positions in capture order
        if not len(sel):
            continue
        r = rows[sel]
        ds = cs.dirs[d]
        sq, su, eu, sl, f, w, ak, tt = seq[r], seq_u[r], end_u[r], seglen[r], flags[r], win[r], ack[r], t[r]
        sf = ((f & (SYN | FIN)) != 0).astype(np.int64)
        sfr = (f & (SYN | FIN | RST)) != 0
        ns0 = int(su[0]) + int(_s32(np.int64(ds.nextseq - int(sq[0]))))
        nsprev = np.empty_like(eu)
        nsprev[0] = ns0
        nsprev[1:] = np.maximum.accumulate(eu)[:-1]
        np.maximum(nsprev, ns0, out=nsprev)
        # a keep-alive
        b1 = np.nonzero((sl <= 1) & (su == nsprev - 1) & ~sfr)[0]
        if len(b1):
            bad = min(bad, int(sel[b1[0]]))
        gap = (su > nsprev) & ((f & RST) == 0)
        nsafter = np.maximum(nsprev, eu)
        mstba = _max_seq_to_be_acked(ds, sq, su, nsprev, nsafter, gap)
        m = len(r)
        pos = np.arange(m)
        ri = np.maximum.accumulate(np.where(eu > nsprev, pos, -1))
        nst_prev = np.empty(m, dtype=np.int64)
        nst_prev[0] = ds.nextseqtime
        nst_prev[1:] = np.where(ri[:-1] >= 0, tt[np.maximum(ri[:-1], 0)], ds.nextseqtime)
        li = np.maximum.accumulate(np.where(eu > nsprev + sf, pos, -1))
        lal_prev = np.empty(m, dtype=np.int64)
        lal_prev[0] = ds.lastacklen
        lal_prev[1:] = np.where(li[:-1] >= 0, sl[np.maximum(li[:-1], 0)], ds.lastacklen)
        wprev = np.concatenate([[ds.window], w[:-1]])
        aprev = np.concatenate([[ds.lastack], ak[:-1]])
        same = (sl == 0) & (su == nsprev) & (ak == aprev) & ~sfr
        res = np.where(same & (w != wprev), S.WINDOW_UPDATE, 0)
        res[gap] |= S.LOST_SEGMENT
        dup = same & (w == wprev)
        res[dup] |= S.DUPLICATE_ACK
        cum = np.cumsum(dup)
        lc = np.maximum.accumulate(np.where(ak != aprev, pos, -1))
        dupn = np.where(lc >= 0, cum - cum[np.maximum(lc, 0)], cum + ds.dupacknum)
        per[d] = dict(sel=sel, r=r, sq=sq, su=su, eu=eu, sl=sl, f=f, ak=ak, tt=tt, sf=sf,
                      nsprev=nsprev, nsafter=nsafter, mstba=mstba, nst_prev=nst_prev,
                      lal_prev=lal_prev, dupn=dupn, res=res, ri=ri, li=li)

    # The other direction's state at each packet: after its last earlier packet.
    own = np.empty(n, dtype=np.int64)
    for d, p in per.items():
        own[p["sel"]] = np.arange(len(p["sel"]))
    thres = cs.ts_first_rtt or S.DEFAULT_OOO_THRESHOLD_NS
    for d, p in per.items():
        q = per.get(1 - d)
        rds = cs.dirs[1 - d]
        if q is not None:
            last = np.maximum.accumulate(np.where(dirs != d, own, -1))[p["sel"]]
            has = last >= 0
            lq = np.maximum(last, 0)
            r_ack = np.where(has, q["ak"][lq], rds.lastack)
            r_t = np.where(has, q["tt"][lq], rds.lastacktime)
            r_dupn = np.where(has, q["dupn"][lq], rds.dupacknum)
            r_ms = np.where(has, q["mstba"][lq] & M32, rds.maxseqtobeacked)
        else:
            r_ack, r_t, r_dupn, r_ms = rds.lastack, rds.lastacktime, rds.dupacknum, rds.maxseqtobeacked
        sq, sl, tt, f, ak, su, eu, nsprev = (p[k] for k in ("sq", "sl", "tt", "f", "ak", "su", "eu", "nsprev"))
        b2 = np.nonzero(((f & ACK) != 0) & (_s32(ak - r_ms) > 0))[0]  # ACK for unseen data
        if len(b2):
            bad = min(bad, int(p["sel"][b2[0]]))
        cand = (sl > 0) | (p["sf"] > 0)
        sna = cand & (su < nsprev) & ~((sl > 1) & (nsprev - 1 == su))
        spur = cand & (sl > 0) & (r_ack != 0) & (_s32(sq + sl - r_ack) <= 0)
        dt = tt - r_t
        fast = ~spur & sna & (dt >= 0) & (dt < S.FAST_RETRANS_WINDOW_NS) & (r_dupn >= 2) & (r_ack == sq)
        dt2 = tt - p["nst_prev"]
        ooo = ~spur & sna & ~fast & (dt2 >= 0) & (dt2 < thres) & ((nsprev != eu) | (p["lal_prev"] == 0))
        res = p["res"]
        res[spur] |= S.SPURIOUS_RETRANSMISSION
        res[fast] |= S.FAST_RETRANSMISSION
        res[ooo] |= S.OUT_OF_ORDER
        res[~spur & sna & ~fast & ~ooo] |= S.RETRANSMISSION

    # Commit the rows before the first one that broke a condition.
    for d, p in per.items():
        k = int(np.searchsorted(p["sel"], bad))
        if k == 0:
            continue
        ds = cs.dirs[d]
        ana[p["r"][:k]] = p["res"][:k]
        j = k - 1
        ri, li = int(p["ri"][j]), int(p["li"][j])
        ds.nextseq = int(p["nsafter"][j]) & M32
        if ri >= 0:
            ds.nextseqtime = int(p["tt"][ri])
        if li >= 0:
            ds.lastacklen = int(p["sl"][li])
        ds.maxseqtobeacked = int(p["mstba"][j]) & M32
        ds.window = int(win[p["r"][j]])
        ds.lastack = int(p["ak"][j])
        ds.lastacktime = int(p["tt"][j])
        ds.dupacknum = int(p["dupn"][j])
        ds.lastsegmentflags = int(p["res"][j])
    return bad
