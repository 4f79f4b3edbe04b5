"""Vectorised decoding of link, IP and TCP headers for a :class:`Batch`.

Every field is gathered for all packets of a batch at once with numpy fancy
indexing; only rare packets (IPv6 extension headers, unusual TCP option
layouts) fall back to a small per-packet Python loop.  Packets that are not
TCP over IPv4/IPv6, are IP fragments, or are cut too short by the snap length
to hold a TCP header are dropped here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from wirelab.observe.pcap.reader import Batch
from wirelab.observe.pcap.tcpflags import SYN

# Link types (DLT_/LINKTYPE_ values).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD1 = 12
LINKTYPE_RAW_OLD2 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = {
    LINKTYPE_NULL: "null/loopback", LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_OLD1: "raw IP", LINKTYPE_RAW_OLD2: "raw IP", LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback", LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6", LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
# BSD address families for IPv6 differ between systems.
AF_INET6_VALUES = (10, 24, 28, 30)
_IPV6_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH
V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_LO = np.uint64(0x0000FFFF00000000)



@dataclass
class TcpBatch:
    """TCP segments of one batch, as parallel numpy arrays (one row per segment)."""

    frame: np.ndarray     # int64, 1-based packet number in the file
    ts_ns: np.ndarray     # int64
    src_hi: np.ndarray    # uint64, IPv6 address high half (0 for IPv4)
    src_lo: np.ndarray    # uint64, low half (IPv4 as ::ffff:a.b.c.d)
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray     # int64
    dport: np.ndarray     # int64
    seq: np.ndarray       # int64 holding uint32
    ack: np.ndarray       # int64 holding uint32
    flags: np.ndarray     # int64, 12 bits
    win: np.ndarray       # int64, raw (unscaled) window field
    seglen: np.ndarray    # int64, payload length from the IP length fields
    ipver: np.ndarray     # int64, 4 or 6
    ipid: np.ndarray      # int64, IPv4 identification, -1 for IPv6
    tsval: np.ndarray     # int64, TCP timestamp value, -1 if absent
    tsecr: np.ndarray     # int64, TCP timestamp echo reply, -1 if absent
    wscale: np.ndarray    # int64, window scale option on SYNs, -1 if absent
    mss: np.ndarray       # int64, MSS option on SYNs, -1 if absent

    def __len__(self) -> int:
        return len(self.frame)


def _be16(u8: np.ndarray, o: np.ndarray) -> np.ndarray:
    return (u8[o].astype(np.int64) << 8) | u8[o + 1]


def _be32(u8: np.ndarray, o: np.ndarray) -> np.ndarray:
    return (_be16(u8, o) << 16) | _be16(u8, o + 2)


def _be64(u8: np.ndarray, o: np.ndarray) -> np.ndarray:
    return (_be32(u8, o).astype(np.uint64) << np.uint64(32)) | _be32(u8, o + 4).astype(np.uint64)


def _l3_offsets(batch: Batch, u8: np.ndarray):
    """Return (l3 offset relative to packet start, ok mask) per packet."""
    n = len(batch)
    off, cap, lt = batch.offset, batch.caplen, batch.linktype
    l3 = np.full(n, -1, dtype=np.int64)
    for linktype in np.unique(lt):
        m = lt == linktype
        o, c = off[m], cap[m]
        rel = np.full(len(o), -1, dtype=np.int64)
        if linktype == LINKTYPE_ETHERNET:
            ok = c >= 14
            oo = np.where(ok, o, 0)
            et = _be16(u8, oo + 12)
            rel = np.where(ok, 14, -1)
            # Up to two VLAN tags (802.1Q, QinQ).
            for _ in range(2):
                tagged = ok & np.isin(et, ETH_VLAN) & (c >= rel + 4)
                if not tagged.any():
                    break
                et = np.where(tagged, _be16(u8, np.where(tagged, oo + rel + 2, 0)), et)
                rel = np.where(tagged, rel + 4, rel)
            rel = np.where(ok & ((et == ETH_IPV4) | (et == ETH_IPV6)), rel, -1)
        elif linktype == LINKTYPE_LINUX_SLL:
            ok = c >= 16
            et = _be16(u8, np.where(ok, o, 0) + 14)
            rel = np.where(ok & ((et == ETH_IPV4) | (et == ETH_IPV6)), 16, -1)
        elif linktype == LINKTYPE_LINUX_SLL2:
            ok = c >= 20
            et = _be16(u8, np.where(ok, o, 0))
            rel = np.where(ok & ((et == ETH_IPV4) | (et == ETH_IPV6)), 20, -1)
        elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD1, LINKTYPE_RAW_OLD2, LINKTYPE_IPV4, LINKTYPE_IPV6):
            rel = np.zeros(len(o), dtype=np.int64)
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            ok = c >= 4
            oo = np.where(ok, o, 0)
            fam_be = _be32(u8, oo)
            fam_le = (u8[oo].astype(np.int64) | (u8[oo + 1].astype(np.int64) << 8)
                      | (u8[oo + 2].astype(np.int64) << 16) | (u8[oo + 3].astype(np.int64) << 24))
            # NULL uses host byte order of the capturing machine, LOOP network order.
            fam = fam_be if linktype == LINKTYPE_LOOP else np.where(fam_le < 256, fam_le, fam_be)
            good = (fam == 2) | np.isin(fam, AF_INET6_VALUES)
            rel = np.where(ok & good, 4, -1)
        l3[m] = rel
    return l3


def decode_tcp(batch: Batch) -> TcpBatch:
    """Extract the TCP segments of ``batch``."""
    u8 = np.frombuffer(batch.buf, dtype=np.uint8)
    rel = _l3_offsets(batch, u8)
    ok = rel >= 0
    cap = batch.caplen
    ok &= cap >= rel + 20
    o3 = np.where(ok, batch.offset + rel, 0)
    ver = u8[o3] >> 4
    is4 = ok & (ver == 4)
    is6 = ok & (ver == 6) & (cap >= rel + 40)

    # IPv4
    ihl = (u8[o3] & 0x0F).astype(np.int64) * 4
    proto4 = u8[o3 + 9]
    frag = _be16(u8, o3 + 6)
    # A non-first fragment or a first fragment with more to come is not a
    # whole TCP segment; Wireshark does not analyse those without reassembly.
    v4 = is4 & (proto4 == 6) & ((frag & 0x3FFF) == 0) & (ihl >= 20)
    tot4 = _be16(u8, o3 + 2)
    # IPv6 (extension headers handled per packet below)
    nh6 = u8[o3 + 6]
    plen6 = _be16(u8, o3 + 4)
    v6 = is6 & (nh6 == 6)
    l4rel = np.where(v4, ihl, 40)
    tcplen = np.where(v4, tot4 - ihl, plen6)
    ext = np.nonzero(is6 & np.isin(nh6, list(_IPV6_EXT)))[0]
    if len(ext):
        buf = batch.buf
        for i in ext.tolist():
            r = _ipv6_skip_ext(buf, int(o3[i]), int(cap[i] - rel[i]))
            if r is not None:
                l4rel[i] = r
                tcplen[i] = int(plen6[i]) + 40 - r
                v6[i] = True
    # Like Wireshark, an IP length beyond the frame's wire length is clipped.
    tcplen = np.minimum(tcplen, batch.wirelen - rel - l4rel)
    keep = (v4 | v6) & (cap >= rel + l4rel + 20)
    idx = np.nonzero(keep)[0]
    o3 = o3[idx]
    o4 = o3 + l4rel[idx]
    v4k = v4[idx]
    hlen = (u8[o4 + 12] >> 4).astype(np.int64) * 4
    seglen = tcplen[idx] - hlen
    # Wireshark: no segment length when the header claims more than there is.
    good = (hlen >= 20) & (seglen >= 0)
    if not good.all():
        g = np.nonzero(good)[0]
        idx, o3, o4, v4k, hlen, seglen = idx[g], o3[g], o4[g], v4k[g], hlen[g], seglen[g]

    src_hi = np.where(v4k, V4_MAPPED_HI, _be64(u8, o3 + 8))
    src_lo = np.where(v4k, V4_MAPPED_LO | _be32(u8, o3 + 12).astype(np.uint64), _be64(u8, o3 + 16))
    dst_hi = np.where(v4k, V4_MAPPED_HI, _be64(u8, o3 + 24))
    dst_lo = np.where(v4k, V4_MAPPED_LO | _be32(u8, o3 + 16).astype(np.uint64), _be64(u8, o3 + 32))

    flags = _be16(u8, o4 + 12) & 0x0FFF
    tsval, tsecr, wscale, mss = _tcp_options(batch, u8, idx, o4, hlen, flags)
    return TcpBatch(
        frame=batch.frame[idx], ts_ns=batch.ts_ns[idx],
        src_hi=src_hi, src_lo=src_lo, dst_hi=dst_hi, dst_lo=dst_lo,
        sport=_be16(u8, o4), dport=_be16(u8, o4 + 2),
        seq=_be32(u8, o4 + 4), ack=_be32(u8, o4 + 8),
        flags=flags, win=_be16(u8, o4 + 14), seglen=seglen,
        ipver=np.where(v4k, 4, 6), ipid=np.where(v4k, _be16(u8, o3 + 4), -1),
        tsval=tsval, tsecr=tsecr, wscale=wscale, mss=mss,
    )


def _tcp_options(batch, u8, idx, o4, hlen, flags):
    """TCP timestamps (and window scale and MSS on SYNs) for each segment."""
    n = len(o4)
    tsval = np.full(n, -1, dtype=np.int64)
    tsecr = np.full(n, -1, dtype=np.int64)
    wscale = np.full(n, -1, dtype=np.int64)
    mss = np.full(n, -1, dtype=np.int64)
    end = batch.offset[idx] + batch.caplen[idx]
    has_opt = hlen > 20
    if not has_opt.any():
        return tsval, tsecr, wscale, mss
    # The first option bytes are only peeked at where the packet holds them.
    peek = has_opt & (o4 + 23 <= end)
    oo = np.where(peek, o4, 0)
    # The layouts used by Linux, BSD and Windows on data segments:
    # "TS first" (08 0a ...) or "NOP NOP TS" (01 01 08 0a ...).
    k20 = u8[oo + 20]
    k21 = u8[oo + 21]
    k22 = u8[oo + 22]
    first = peek & (k20 == 8) & (hlen >= 30) & (oo + 30 <= end)
    nopnop = peek & (k20 == 1) & (k21 == 1) & (k22 == 8) & (hlen >= 32) & (oo + 32 <= end)
    for m, at in ((first, 22), (nopnop, 24)):
        if m.any():
            oa = np.where(m, oo, 0)
            tsval = np.where(m, _be32(u8, oa + at), tsval)
            tsecr = np.where(m, _be32(u8, oa + at + 4), tsecr)
    rest = np.nonzero(has_opt & ~first & ~nopnop | (has_opt & ((flags & SYN) != 0)))[0]
    if len(rest):
        buf = batch.buf
        for i in rest.tolist():
            start = int(o4[i]) + 20
            stop = min(int(o4[i]) + int(hlen[i]), int(end[i]))
            tv, te, ws, ms = _parse_options(buf, start, stop)
            if tv >= 0:
                tsval[i], tsecr[i] = tv, te
            if flags[i] & SYN:
                wscale[i], mss[i] = ws, ms
    return tsval, tsecr, wscale, mss


def _parse_options(buf: bytes, p: int, stop: int) -> tuple[int, int, int, int]:
    tv = te = ws = ms = -1
    while p < stop:
        kind = buf[p]
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= stop:
            break
        olen = buf[p + 1]
        if olen < 2 or p + olen > stop:
            break
        if kind == 8 and olen == 10:
            tv, te = struct.unpack_from(">II", buf, p + 2)
        elif kind == 3 and olen == 3:
            ws = buf[p + 2]
        elif kind == 2 and olen == 4:
            ms = (buf[p + 2] << 8) | buf[p + 3]
        p += olen
    return tv, te, ws, ms


def _ipv6_skip_ext(buf: bytes, o3: int, caplen: int):
    """Offset of the TCP header behind IPv6 extension headers, or None."""
    nh = buf[o3 + 6]
    p = 40
    for _ in range(8):
        if nh == 6:
            return p
        if nh == 44:  # fragment: not a whole segment
            return None
        if nh not in _IPV6_EXT or p + 8 > caplen:
            return None
        nxt = buf[o3 + p]
        hl = (buf[o3 + p + 1] + 2) * 4 if nh == 51 else (buf[o3 + p + 1] + 1) * 8
        nh, p = nxt, p + hl
    return None
