"""Where the TCP and UDP payloads of a batch are: vectorised, over the house reader.

:func:`locate_payloads` takes one :class:`~wirelab.observe.pcap.reader.Batch`
and returns, as parallel numpy arrays, every TCP segment and UDP datagram of
it (IPv4 and IPv6, any link type the house decoder knows: its
``_l3_offsets`` finds the IP header) with the offset and length of the
payload inside ``batch.buf``.  Pure ACKs can be left out here (``keep_bare``)
so that the Python code after it only sees packets that carry bytes or open
and close connections.  IP fragments (IPv4 MF/offset, IPv6 fragment header)
are returned apart (where their IP header is) for :mod:`wirelab.observe.msgfrag`.

Why not ``decode_tcp``: it leaves out UDP and does not say where the payload
starts; the link-layer walk is the same code (imported, not copied).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wirelab.observe.pcap.decode import V4_MAPPED_HI, V4_MAPPED_LO, _be16, _be32, _be64, _l3_offsets
from wirelab.observe.pcap.reader import Batch
from wirelab.observe.pcap.tcpflags import FIN, RST, SYN

PROTO_TCP, PROTO_UDP = 6, 17
IPV6_FRAGMENT = 44
# IPv6 extension headers walked to reach TCP/UDP (hop-by-hop, routing,
# destination options, AH); ESP hides what follows, so it is not walked.
IPV6_EXT = (0, 43, 60, 51)


@dataclass
class L4Batch:
    """TCP segments and UDP datagrams of one batch (one row each)."""

    frame: np.ndarray    # int64, 1-based packet number in the file
    ts_ns: np.ndarray    # int64
    proto: np.ndarray    # int64, 6 or 17
    src_hi: np.ndarray   # uint64 (IPv4 as ::ffff:a.b.c.d, like decode_tcp)
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray    # int64
    dport: np.ndarray
    seq: np.ndarray      # int64 holding uint32 (0 for UDP)
    flags: np.ndarray    # int64, TCP flags (0 for UDP)
    sig: np.ndarray      # int64: IP ID, TCP checksum, ACK and window mixed (see below)
    pay_off: np.ndarray  # int64, payload offset in the batch buffer
    pay_len: np.ndarray  # int64, payload length from the IP/UDP length fields
    pay_cap: np.ndarray  # int64, payload bytes actually captured (<= pay_len)
    # IP fragments (see msgfrag): where their IP header starts and their
    # captured bytes end in the buffer, their packet number and time.
    frag_ip: np.ndarray
    frag_end: np.ndarray
    frag_frame: np.ndarray
    frag_ts_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


def _ipv6_walk(buf: bytes, o3: int, caplen: int):
    """(next header, offset of the L4 header) behind IPv6 extension headers.

    Stops at the first header that is not an extension walked here; a
    fragment header is returned as next header 44 at its own offset."""
    nh, p = buf[o3 + 6], 40
    for _ in range(8):
        if nh not in IPV6_EXT or p + 8 > caplen:
            return nh, p
        nxt = buf[o3 + p]
        hl = (buf[o3 + p + 1] + 2) * 4 if nh == 51 else (buf[o3 + p + 1] + 1) * 8
        nh, p = nxt, p + hl
    return nh, p


def locate_payloads(batch: Batch, ports=None, keep_bare: bool = False) -> L4Batch:
    """TCP/UDP rows of ``batch`` (only those with a port in ``ports`` if given).

    Without ``keep_bare``, TCP segments with no payload and none of SYN, FIN,
    RST (pure ACKs, window updates) are dropped: a message rebuilder has
    nothing to do with them."""
    u8 = np.frombuffer(batch.buf, dtype=np.uint8)
    rel = _l3_offsets(batch, u8)
    cap = batch.caplen
    ok = (rel >= 0) & (cap >= rel + 20)
    o3 = np.where(ok, batch.offset + rel, 0)
    ver = u8[o3] >> 4
    is4 = ok & (ver == 4)
    is6 = ok & (ver == 6) & (cap >= rel + 40)
    ihl = (u8[o3] & 0x0F).astype(np.int64) * 4
    frag4 = _be16(u8, o3 + 6) & 0x3FFF
    proto = np.where(is4, u8[o3 + 9], u8[o3 + 6]).astype(np.int64)
    l4rel = np.where(is4, ihl, 40)
    iplen = np.where(is4, _be16(u8, o3 + 2) - ihl, _be16(u8, o3 + 4))
    is_frag = is4 & (frag4 != 0) & np.isin(proto, (PROTO_TCP, PROTO_UDP))
    ext = np.nonzero(is6 & np.isin(proto, IPV6_EXT + (IPV6_FRAGMENT,)))[0]
    if len(ext):
        buf = batch.buf
        for i in ext.tolist():
            nh, p = _ipv6_walk(buf, int(o3[i]), int(cap[i] - rel[i]))
            if nh == IPV6_FRAGMENT:
                is_frag[i] = True
                proto[i] = -1
            else:
                proto[i], l4rel[i] = nh, p
                iplen[i] = iplen[i] + 40 - p
    whole = (is4 & (frag4 == 0) & (ihl >= 20)) | is6
    # Like Wireshark, an IP length beyond the frame's wire length is clipped.
    iplen = np.minimum(iplen, batch.wirelen - rel - l4rel)
    tcp = whole & (proto == PROTO_TCP) & (cap >= rel + l4rel + 20)
    udp = whole & (proto == PROTO_UDP) & (cap >= rel + l4rel + 8)
    keep = tcp | udp
    # Offsets are zeroed where a field is not there, so that no index runs
    # past the end of the buffer (np.where evaluates both branches).
    o4 = np.where(keep, o3 + l4rel, 0)
    o4t = np.where(tcp, o4, 0)
    sport, dport = _be16(u8, o4), _be16(u8, o4 + 2)
    if ports is not None:
        keep &= np.isin(sport, ports) | np.isin(dport, ports)
    hlen = np.where(tcp, (u8[o4t + 12] >> 4).astype(np.int64) * 4, 8)
    flags = np.where(tcp, _be16(u8, o4t + 12) & 0x0FFF, 0)
    # UDP: the shorter of the UDP length field and the IP payload.
    plen = np.where(tcp, iplen - hlen, np.minimum(_be16(u8, o4 + 4), iplen) - 8)
    keep &= (hlen >= 20) | udp
    keep &= plen >= 0
    if not keep_bare:
        keep &= udp | (plen > 0) | ((flags & (SYN | FIN | RST)) != 0)
    idx = np.nonzero(keep)[0]
    o3_all = o3
    o3, o4, o4t, is4k, tcpk = o3[idx], o4[idx], o4t[idx], is4[idx], tcp[idx]
    o6 = np.where(is4k, 0, o3)
    pay_off = o4 + hlen[idx]
    end = batch.offset[idx] + cap[idx]
    pay_len = plen[idx]
    pay_cap = np.clip(end - pay_off, 0, pay_len)
    # A segment's signature: a copy of a packet made by the network (netem
    # duplicate) has the same IP ID, checksum, ACK and window; the sender's
    # own retransmission differs in at least one of them (a new IP ID, a new
    # timestamp option, hence a new checksum, or a newer ACK).
    ipid = np.where(is4k, _be16(u8, o3 + 4), 0)
    # Mixed into one int64 (a hash: a collision only calls a retransmission a copy).
    sig = np.where(tcpk, (ipid << 46) ^ (_be16(u8, o4t + 16) << 30) ^ (_be16(u8, o4t + 14) << 14)
                   ^ _be32(u8, o4t + 8), 0)
    return L4Batch(
        frame=batch.frame[idx], ts_ns=batch.ts_ns[idx], proto=proto[idx],
        src_hi=np.where(is4k, V4_MAPPED_HI, _be64(u8, o6 + 8)),
        src_lo=np.where(is4k, V4_MAPPED_LO | _be32(u8, o3 + 12).astype(np.uint64), _be64(u8, o6 + 16)),
        dst_hi=np.where(is4k, V4_MAPPED_HI, _be64(u8, o6 + 24)),
        dst_lo=np.where(is4k, V4_MAPPED_LO | _be32(u8, o3 + 16).astype(np.uint64), _be64(u8, o6 + 32)),
        sport=sport[idx], dport=dport[idx],
        seq=np.where(tcpk, _be32(u8, o4t + 4), 0), flags=flags[idx], sig=sig,
        pay_off=pay_off, pay_len=pay_len, pay_cap=pay_cap,
        frag_ip=o3_all[is_frag], frag_end=(batch.offset + cap)[is_frag],
        frag_frame=batch.frame[is_frag], frag_ts_ns=batch.ts_ns[is_frag],
    )
