"""TCP connection tracking and per-segment analysis over decoded batches.

:class:`FlowAnalyzer` consumes :class:`~wirelab.observe.pcap.decode.TcpBatch` objects
in capture order and keeps only per-connection state, so memory depends on
the number of connections, never on the file size.

Wireshark's analysis flags (see :mod:`wirelab.observe.pcap.seqstate`) are computed two
ways that give identical results:

* a vectorised path (:mod:`wirelab.observe.pcap.fastpath`) for the common case -- an
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
from wirelab.observe.pcap.fastpath import M32, _s32, exact_rows, mixed_rows
from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

# A duplicate segment is looked for among the data segments of the same
# direction at most this many capture frames back; it bounds memory.
DUPLICATE_WINDOW_FRAMES = 65536

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


def _seg_starts(gid: np.ndarray) -> np.ndarray:
    """Boolean: element starts a new group (gid is sorted)."""
    st = np.ones(len(gid), dtype=bool)
    st[1:] = gid[1:] != gid[:-1]
    return st


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
                # New connections start at SYNs (port reuse): walk the SYNs
                # (and the first packet); the packets between two of them
                # belong to the connection the first one chose.
                idxs = np.nonzero(members)[0]
                events = np.union1d([0], np.nonzero(synmask[idxs])[0]).tolist()
                sides = gt[idxs]
                for k, e in enumerate(events):
                    j = int(idxs[e])
                    side = 1 if gt[j] else 0
                    f_ = int(tb.flags[j])
                    if conv is None:
                        conv = self._new_conv(key, side, f_)
                    elif (f_ & (SYN | ACK)) == SYN:
                        ds = conv.state.dirs[0 if side == conv.client_side else 1]
                        sq = int(tb.seq[j])
                        if ds.base_set and sq != ds.base_seq:
                            conv = self._new_conv(key, side, f_)
                        elif ds.base_set:
                            # Wireshark restores nextseq on a repeated SYN (issue 17616).
                            ds.nextseq = ds.maxseqtobeacked
                    nxt = events[k + 1] if k + 1 < len(events) else len(idxs)
                    stream[idxs[e:nxt]] = conv.stream
                    for sd in (0, 1):
                        ds = conv.state.dirs[0 if sd == conv.client_side else 1]
                        if ds.base_set:
                            continue
                        w = np.nonzero(sides[e:nxt] == bool(sd))[0]
                        if len(w):
                            jj = int(idxs[e + w[0]])
                            sq, fl = int(tb.seq[jj]), int(tb.flags[jj])
                            ds.base_set = True
                            ds.base_seq = sq if fl & SYN else (sq - 1) & M32
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
                exact_rows(self.convs[ci], rows, g, t, seq, ack, seglen, flags, win, ana)
            else:
                mixed_rows(self.convs[ci], rows, g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana)

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
