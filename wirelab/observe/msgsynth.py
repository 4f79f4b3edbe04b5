"""Synthetic captures of JSON apps, byte-exact, for the message rebuilder's
tests and benchmark (``bench/bench_messages.py``).

:func:`tcp_connection` gives the packets of one connection that carries one
JSON message each way (handshake, data cut into segments, FINs), as
``(ts_ns, frame bytes, tag)``; the tags name each packet (``"c2s:1"``: the
client's second data segment) so a test can drop, repeat or reorder
exactly the packets it means.  :func:`udp_datagram` and :func:`ip_fragments`
build datagrams; :func:`pcap_file` writes Ethernet pcap bytes.  Addresses
with a colon are IPv6.  Checksums are valid (Wireshark shows no errors).
"""

from __future__ import annotations

import ipaddress
import struct

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
M32 = 0xFFFFFFFF


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip(src: str, dst: str, proto: int, l4: bytes, ip_id: int = 1, frag: int = 0x4000) -> bytes:
    """An IP packet around ``l4`` (its checksum field already filled)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ip_id & 0xFFFF, frag, 64, proto, 0, s, d)
        return h[:10] + struct.pack("!H", _csum(h)) + h[12:] + l4
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, s, d) + l4


def _pseudo(src: str, dst: str, proto: int, n: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, n)
    return s + d + struct.pack("!I3xB", n, proto)


def tcp_packet(src, dst, sport, dport, seq, ack, flags, payload=b"", ip_id=1, win=65535, tsval=None):
    """An IP/TCP packet; ``tsval`` adds a timestamp option (NOP NOP TS)."""
    opts = b"" if tsval is None else struct.pack("!BBBBII", 1, 1, 8, 10, tsval & M32, 0)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & M32, ack & M32, (20 + len(opts)) // 4 << 4,
                      flags, win, 0, 0) + opts + payload
    c = _csum(_pseudo(src, dst, 6, len(tcp)) + tcp)
    return _ip(src, dst, 6, tcp[:16] + struct.pack("!H", c) + tcp[18:], ip_id)


def udp_packet(src, dst, sport, dport, payload: bytes, ip_id=1, frag=0x4000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _csum(_pseudo(src, dst, 17, len(udp)) + udp) or 0xFFFF
    return _ip(src, dst, 17, udp[:6] + struct.pack("!H", c) + udp[8:], ip_id, frag)


def ip_fragments(src, dst, sport, dport, payload: bytes, mtu: int, ip_id=7) -> list[bytes]:
    """The IP fragments of one UDP datagram for this MTU (IPv4 or IPv6)."""
    whole = udp_packet(src, dst, sport, dport, payload, ip_id, frag=0)
    v6 = ":" in src
    hdr = 40 if v6 else 20
    l4 = whole[hdr:]
    step = (mtu - hdr - (8 if v6 else 0)) & ~7
    out = []
    for off in range(0, len(l4), step):
        piece, more = l4[off:off + step], off + step < len(l4)
        if v6:
            fh = struct.pack("!BBHI", 17, 0, off | int(more), ip_id)
            s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
            out.append(struct.pack("!IHBB16s16s", 0x60000000, 8 + len(piece), 44, 64, s, d) + fh + piece)
        else:
            out.append(_ip(src, dst, 17, piece, ip_id, (off // 8) | (0x2000 if more else 0)))
    return out


def ether(ip: bytes) -> bytes:
    etype = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + etype + ip


def tcp_connection(client, server, request: bytes, response: bytes = b"", *, isn_c=1000, isn_s=5000,
                   mss=1000, t0=1_700_000_000_000_000_000, step=100_000, ip_id=1, tsval=None):
    """``[(ts_ns, ip packet, tag)]`` of one connection in the order sent.

    ``client``/``server``: ``(address, port)``.  Tags: ``syn``, ``synack``,
    ``ack``, ``c2s:i``/``s2c:i`` (data segments), ``ack:c2s:i`` (their ACKs),
    ``fin:c``, ``fin:s``, ``ack:fin:c``, ``ack:fin:s``."""
    (ca, cp), (sa, sp) = client, server
    out = []
    t = t0
    ids = iter(range(ip_id, ip_id + 10_000))
    ts = iter(range(tsval, tsval + 10_000)) if tsval is not None else None

    def add(src, dst, s, d, seq, ack, flags, payload, tag):
        nonlocal t
        out.append((t, tcp_packet(src, dst, s, d, seq, ack, flags, payload, next(ids),
                                  tsval=next(ts) if ts else None), tag))
        t += step

    c_next, s_next = isn_c + 1, isn_s + 1
    add(ca, sa, cp, sp, isn_c, 0, SYN, b"", "syn")
    add(sa, ca, sp, cp, isn_s, c_next, SYN | ACK, b"", "synack")
    add(ca, sa, cp, sp, c_next, s_next, ACK, b"", "ack")
    for i, off in enumerate(range(0, len(request), mss)):
        piece = request[off:off + mss]
        add(ca, sa, cp, sp, c_next + off, s_next, ACK | PSH, piece, f"c2s:{i}")
        add(sa, ca, sp, cp, s_next, c_next + off + len(piece), ACK, b"", f"ack:c2s:{i}")
    c_next += len(request)
    add(ca, sa, cp, sp, c_next, s_next, FIN | ACK, b"", "fin:c")
    for i, off in enumerate(range(0, len(response), mss)):
        piece = response[off:off + mss]
        add(sa, ca, sp, cp, s_next + off, c_next + 1, ACK | PSH, piece, f"s2c:{i}")
        add(ca, sa, cp, sp, c_next + 1, s_next + off + len(piece), ACK, b"", f"ack:s2c:{i}")
    s_next += len(response)
    add(sa, ca, sp, cp, s_next, c_next + 1, FIN | ACK, b"", "fin:s")
    add(ca, sa, cp, sp, c_next + 1, s_next + 1, ACK, b"", "ack:fin:s")
    return out


def pcap_file(pkts, linktype: int = 1) -> bytes:
    """``pkts``: ``[(ts_ns, ip packet, ...)]`` -> pcap bytes (Ethernet by default, ns stamps)."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype)]
    for p in pkts:
        ts, ip = p[0], p[1]
        data = ether(ip) if linktype == 1 else ip
        out.append(struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000, len(data), len(data)))
        out.append(data)
    return b"".join(out)
