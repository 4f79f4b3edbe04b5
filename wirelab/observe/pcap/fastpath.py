"""The vectorised path of the TCP analysis, and the switch between it and the exact one.

:func:`mixed_rows` analyses one connection's rows of a batch (capture order):
where Wireshark's state evolves "simply" it derives the flags of many packets
at once with cumulative numpy operations (:func:`_fast_prefix`); elsewhere it
hands packets to the transcription :func:`seqstate.analyze_packet`
(:func:`exact_rows`).  Both give identical flags (tested on every committed
capture and on fuzzed ones).
"""

from __future__ import annotations

import numpy as np

from wirelab.observe.pcap import seqstate as S
from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

M32 = 0xFFFFFFFF


def _s32(a: np.ndarray) -> np.ndarray:
    """Signed 32-bit difference of int64 arrays holding uint32 values."""
    return ((a + 0x80000000) & M32) - 0x80000000


def exact_rows(conv, rows, g, t, seq, ack, seglen, flags, win, ana):
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
                or ds.dupacknum < 0 or ds.lastsegmentflags & S.ZERO_WINDOW_PROBE):
            return False
    return True


# The exact path runs over at least this many packets before the vectorised
# path is tried again; doubled (up to the maximum) each time the vectorised
# path gets less than that far, so alternating costs stay bounded.
EXACT_RUN_MIN, EXACT_RUN_MAX = 64, 8192


def mixed_rows(conv, rows, g, t, seq, ack, seglen, flags, win, seq_u, end_u, ana):
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
        exact_rows(conv, rows[pos:end], g, t, seq, ack, seglen, flags, win, ana)
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
    seen with a non-zero window, no SYN, no zero window, no ACK for data
    never seen, no sequence or ACK number equal to 0 (Wireshark's "unknown").
    Then zero-window probes cannot occur, no packet changes the other
    direction's state, and the state of a direction after a packet is a
    cumulative function of that direction's packets (running maximum of
    segment ends, last ACK/window, duplicate-ACK run length, the hole
    tracking of :func:`_max_seq_to_be_acked`), computed below for all rows;
    the only influence of one direction on the other's flags is through
    the state after its last earlier packet (ACK, time, duplicate-ACK count,
    whether it was a keep-alive: the answer to a keep-alive is a keep-alive
    ACK, not a duplicate ACK).  The prefix before the first packet that
    breaks a condition is committed.  Keep-alives are handled here because
    a capture that replays a connection (same 4-tuple and sequence numbers)
    makes every pure ACK of the replay one.
    """
    cs = conv.state
    f_all = flags[rows]
    b0 = np.nonzero(((f_all & SYN) != 0) | (win[rows] == 0) | (ack[rows] == 0)
                    | ((end_u[rows] & M32) == 0))[0]
    if len(b0):
        # Nothing from the first breaking row on is kept: do not compute it
        # (a capture replaying a connection has a SYN every few hundred rows).
        if b0[0] == 0:
            return 0
        rows = rows[:b0[0]]
    n = len(rows)
    dirs = g[rows] & 1
    bad = n  # first row (capture order) where the conditions break
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
        # A keep-alive (Wireshark's test; it changes no state of its own).
        ka = (sl <= 1) & (su == nsprev - 1) & ~sfr
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
        res[ka] |= S.KEEP_ALIVE
        per[d] = dict(sel=sel, r=r, sq=sq, su=su, eu=eu, sl=sl, f=f, ak=ak, tt=tt, sf=sf,
                      nsprev=nsprev, nsafter=nsafter, mstba=mstba, nst_prev=nst_prev,
                      lal_prev=lal_prev, res=res, ri=ri, li=li, ka=ka, pos=pos,
                      same_w=same & (w == wprev), new_ack=ak != aprev)

    # The other direction's state at each packet: after its last earlier packet.
    own = np.empty(n, dtype=np.int64)
    for d, p in per.items():
        own[p["sel"]] = np.arange(len(p["sel"]))
    for d, p in per.items():
        if 1 - d in per:
            last = np.maximum.accumulate(np.where(dirs != d, own, -1))[p["sel"]]
            p["has"], p["lq"] = last >= 0, np.maximum(last, 0)
    # Duplicate ACKs (a keep-alive's answer is a keep-alive ACK instead).
    for d, p in per.items():
        q = per.get(1 - d)
        r_ka = np.full(len(p["sel"]), bool(cs.dirs[1 - d].lastsegmentflags & S.KEEP_ALIVE))
        if q is not None:
            r_ka = np.where(p["has"], q["ka"][p["lq"]], r_ka)
        dup = p["same_w"] & ~r_ka
        p["res"][dup] |= S.DUPLICATE_ACK
        p["res"][p["same_w"] & r_ka] |= S.KEEP_ALIVE_ACK
        cum = np.cumsum(dup)
        lc = np.maximum.accumulate(np.where(p["new_ack"], p["pos"], -1))
        p["dupn"] = np.where(lc >= 0, cum - cum[np.maximum(lc, 0)], cum + cs.dirs[d].dupacknum)
    thres = cs.ts_first_rtt or S.DEFAULT_OOO_THRESHOLD_NS
    for d, p in per.items():
        q = per.get(1 - d)
        rds = cs.dirs[1 - d]
        if q is not None:
            has, lq = p["has"], p["lq"]
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
        cand = ((sl > 0) | (p["sf"] > 0)) & ~p["ka"]
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
