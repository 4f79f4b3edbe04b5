"""The vectorised shortcut of the TCP message rebuilder: whole, clean streams.

Most connection directions of an app's traffic start and end inside one read
batch and arrive clean: a SYN without data, segments each starting exactly
where the previous one ended, a FIN last, nothing cut by the snap length, no
RST.  For those the bytes are simply the payloads in capture order, and
placing them segment by segment (:mod:`wirelab.observe.tcpstream`) is wasted
Python work.  :func:`split_clean` groups a batch's TCP rows by direction with
one ``lexsort`` and checks those conditions for every group at once; the
caller rebuilds clean groups in one step and hands every other row, in
capture order, to the segment-by-segment path.  The caller must also send a
clean group to that path when its direction already has state (open, or a
finished one with the same ISN): the shortcut knows nothing of earlier batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN

M32 = 0xFFFFFFFF


@dataclass
class CleanGroups:
    """Clean directions of a batch (one entry per direction), as Python lists.

    ``key`` columns are those of the rows; ``isn`` the SYN's sequence number;
    ``opener`` whether the SYN had no ACK (a client opening a connection);
    ``first``/``last``: positions in ``rows`` of the first and one past the
    last data-carrying rows (equal: no data); ``start``/``stop``: of the
    group's SYN and one past its FIN; ``total`` the bytes; ``t_fin`` the
    FIN's time.
    """

    keys: list
    isn: list
    opener: list
    first: list
    last: list
    start: list
    stop: list
    total: list
    t_fin: list
    rows: np.ndarray
    # Directions whose peer sent an RST in this batch: not clean after all
    # (the segment-by-segment path decides whether the RST came before the FIN).
    reset: set     # L4Batch rows of clean groups, grouped, capture order in a group


def _key_columns(lb, rows):
    return (lb.src_hi[rows], lb.src_lo[rows], lb.sport[rows], lb.dst_hi[rows], lb.dst_lo[rows], lb.dport[rows])


def split_clean(lb, rows: np.ndarray):
    """``(CleanGroups, other rows in capture order)`` for the TCP ``rows`` of ``lb``."""
    cols = _key_columns(lb, rows)
    order = np.lexsort((rows,) + cols[::-1])
    s = rows[order]
    n = len(s)
    scols = [c[order] for c in cols]
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for c in scols:
        new[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new)
    last = np.empty(n, dtype=bool)
    last[:-1] = new[1:]
    last[-1] = True
    f = lb.flags[s]
    pl = lb.pay_len[s]
    sq = lb.seq[s]
    syn = (f & SYN) != 0
    fin = (f & FIN) != 0
    ok = ((f & RST) == 0) & (lb.pay_cap[s] == pl) & ~(new & last)
    ok &= np.where(new, syn & ~fin & (pl == 0), ~syn)
    ok &= np.where(last, fin, ~fin & (pl > 0)) | new
    nxt = (sq + pl + syn) & M32
    ok[1:] &= new[1:] | (sq[1:] == nxt[:-1])
    good = np.logical_and.reduceat(ok, starts)
    sizes = np.diff(np.append(starts, n))
    row_good = np.repeat(good, sizes)
    other = np.sort(s[~row_good])
    gs = starts[good]
    ge = gs + sizes[good]                       # one past the FIN row
    # Positions in the compacted array of clean rows.
    base = np.cumsum(np.concatenate([[0], sizes[good][:-1]])) if len(gs) else gs
    fin_has_data = pl[ge - 1] > 0
    data_end = base + sizes[good] - 1 + fin_has_data
    totals = np.add.reduceat(pl, starts)[good] if len(gs) else gs
    clean = CleanGroups(
        keys=list(zip(*(c[gs].tolist() for c in scols))),
        isn=sq[gs].tolist(), opener=((f[gs] & ACK) == 0).tolist(),
        first=(base + 1).tolist(), last=data_end.tolist(), start=base.tolist(),
        stop=(base + sizes[good]).tolist(), total=totals.tolist(),
        t_fin=lb.ts_ns[s[ge - 1]].tolist(), rows=s[row_good], reset=set(),
    )
    rst = np.flatnonzero((f & RST) != 0)
    if len(rst):
        clean.reset = set(zip(*(c[rst].tolist() for c in scols[3:] + scols[:3])))
    return clean, other
