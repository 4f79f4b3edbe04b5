"""IPv4 packets, fragments and ICMP errors in a capture, and the arithmetic of
fragmentation to compare them with. Pure functions over bytes and files.

::

    datagram (UDP: 8-byte header + data) ---> MTU 1500 ---> MTU 1000
    IP payload 8+4000 = 4008 bytes             4008 = 1480 + 1480 + 1048
                                               1480 = 976 + 504, 1048 = 976 + 72

A fragment carries ``(mtu - header) & ~7`` payload bytes (RFC 791: offsets
count 8-byte units, so every fragment but the last holds a multiple of 8), the
offset of its first byte within the datagram's IP payload, the MF ("more
fragments") flag on every fragment but the last, and the datagram's one IP ID.
A router that fragments a fragment again keeps its offset base and gives its
last piece the original's MF (RFC 791 sec. 3.2, Linux ``ip_fragment``).

:func:`read_ip_packets` reads the IPv4 headers of a capture (the house reader:
pcap or pcapng, plain or gzip; Ethernet or raw IP), with the UDP/TCP ports of
first fragments and the fields of ICMP errors (the next-hop MTU of
"fragmentation needed", RFC 1191, and the header of the datagram quoted).
"""

import dataclasses
import ipaddress
import math
import struct

from wirelab.observe.pcap.decode import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW
from wirelab.observe.pcap.reader import PcapFormatError, iter_frames

IPV4_HEADER = 20          # without options: every packet our hosts send
UDP_HEADER = 8
TCP_HEADER = 20
#: The largest UDP payload in one IPv4 datagram: 65535 - 20 - 8.
UDP_MAX_PAYLOAD = 65535 - IPV4_HEADER - UDP_HEADER
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17
ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED = 3, 4
_ETH_IPV4, _ETH_VLAN = 0x0800, (0x8100, 0x88A8)
_FLAG_DF, _FLAG_MF = 0x4000, 0x2000


@dataclasses.dataclass(frozen=True)
class Quoted:
    """The header of the datagram an ICMP error quotes (and its ports)."""

    src: str
    dst: str
    proto: int
    ident: int
    df: bool
    total_length: int
    sport: int | None
    dport: int | None


@dataclasses.dataclass(frozen=True)
class IpPacket:
    """One captured IPv4 packet (or fragment), as size claims need it."""

    index: int            # 0-based position in the capture
    ts_ns: int
    src: str
    dst: str
    proto: int
    ident: int
    df: bool
    mf: bool
    offset: int           # bytes (the header field times 8)
    total_length: int     # IP total length: header + payload
    header_length: int
    ttl: int
    sport: int | None = None      # UDP/TCP, first fragment only
    dport: int | None = None
    l4_length: int | None = None  # UDP length field (header + data), first fragment only
    tcp_payload: int | None = None
    seq: int | None = None        # TCP sequence number and flags
    tcp_flags: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    next_hop_mtu: int | None = None   # ICMP fragmentation needed (RFC 1191)
    quoted: Quoted | None = None

    @property
    def payload_length(self):
        """Bytes of IP payload in this packet (this fragment's share)."""
        return self.total_length - self.header_length

    @property
    def is_fragment(self):
        return self.mf or self.offset > 0


def _ip_header(buf, at):
    """(fields, header length) of the IPv4 header at ``at``, or None."""
    if len(buf) < at + IPV4_HEADER or buf[at] >> 4 != 4:
        return None
    ihl = (buf[at] & 0x0F) * 4
    total, ident, frag = struct.unpack_from("!HHH", buf, at + 2)
    ttl, proto = buf[at + 8], buf[at + 9]
    src = str(ipaddress.IPv4Address(buf[at + 12:at + 16]))
    dst = str(ipaddress.IPv4Address(buf[at + 16:at + 20]))
    return {"src": src, "dst": dst, "proto": proto, "ident": ident, "df": bool(frag & _FLAG_DF),
            "mf": bool(frag & _FLAG_MF), "offset": (frag & 0x1FFF) * 8, "total_length": total,
            "ttl": ttl}, ihl


def _ports(buf, at):
    if len(buf) >= at + 4:
        return struct.unpack_from("!HH", buf, at)
    return None, None


def parse_ipv4(buf, index=0, ts_ns=0):
    """An :class:`IpPacket` from the bytes of an IPv4 packet, or None."""
    head = _ip_header(buf, 0)
    if head is None:
        return None
    f, ihl = head
    extra = {}
    l4 = ihl
    if f["offset"] == 0:
        if f["proto"] in (PROTO_UDP, PROTO_TCP):
            extra["sport"], extra["dport"] = _ports(buf, l4)
        if f["proto"] == PROTO_UDP and len(buf) >= l4 + 6:
            extra["l4_length"] = struct.unpack_from("!H", buf, l4 + 4)[0]
        if f["proto"] == PROTO_TCP and len(buf) >= l4 + 14 and not f["mf"]:
            extra["tcp_payload"] = f["total_length"] - ihl - (buf[l4 + 12] >> 4) * 4
            extra["seq"] = struct.unpack_from("!I", buf, l4 + 4)[0]
            extra["tcp_flags"] = buf[l4 + 13]
        if f["proto"] == PROTO_ICMP and len(buf) >= l4 + 8:
            extra["icmp_type"], extra["icmp_code"] = buf[l4], buf[l4 + 1]
            if extra["icmp_type"] == ICMP_DEST_UNREACH:
                if extra["icmp_code"] == ICMP_FRAG_NEEDED:
                    extra["next_hop_mtu"] = struct.unpack_from("!H", buf, l4 + 6)[0]
                inner = _ip_header(buf, l4 + 8)
                if inner is not None:
                    q, qihl = inner
                    sport, dport = _ports(buf, l4 + 8 + qihl) if q["offset"] == 0 else (None, None)
                    extra["quoted"] = Quoted(q["src"], q["dst"], q["proto"], q["ident"], q["df"],
                                             q["total_length"], sport, dport)
    return IpPacket(index=index, ts_ns=ts_ns, header_length=ihl, **f, **extra)


def _ip_offset(linktype, frame):
    """Where the IPv4 header starts in a frame, or None (not IPv4)."""
    if linktype == LINKTYPE_ETHERNET:
        at = 12
        ethertype = struct.unpack_from("!H", frame, at)[0] if len(frame) >= 14 else None
        while ethertype in _ETH_VLAN and len(frame) >= at + 6:
            at += 4
            ethertype = struct.unpack_from("!H", frame, at)[0]
        return at + 2 if ethertype == _ETH_IPV4 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return 0
    raise PcapFormatError(f"link type {linktype}: expected Ethernet or raw IP")


def read_ip_packets(path):
    """Every IPv4 packet of a capture, in file order (other frames skipped).

    A header-only capture (``-s 128``) is enough: lengths come from the IP
    header, not from the bytes captured."""
    out = []
    for index, (linktype, ts_ns, frame) in enumerate(iter_frames(path)):
        at = _ip_offset(linktype, frame)
        if at is None:
            continue
        pkt = parse_ipv4(bytes(frame[at:]), index, ts_ns)
        if pkt is not None:
            out.append(pkt)
    return out


# -- the arithmetic ------------------------------------------------------------------
def fragment_payload(mtu, header=IPV4_HEADER):
    """IP payload bytes in every fragment but the last, for this MTU."""
    size = (mtu - header) & ~7
    if size <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment after a {header}-byte header")
    return size


def fragment_layout(length, mtu, offset=0, more=False, header=IPV4_HEADER):
    """The fragments ``[(offset, length, mf)]`` of ``length`` bytes of IP payload
    starting at ``offset`` (a fragment being fragmented again keeps its offset;
    its last piece keeps its ``more``), for an MTU of ``mtu``."""
    if header + length <= mtu:
        return [(offset, length, more)]
    step = fragment_payload(mtu, header)
    pieces = []
    for start in range(0, length, step):
        size = min(step, length - start)
        last = start + size >= length
        pieces.append((offset + start, size, more if last else True))
    return pieces


def path_layout(length, mtus, header=IPV4_HEADER):
    """The fragments after each MTU of a path in turn (DF clear everywhere)."""
    pieces = [(0, length, False)]
    for mtu in mtus:
        pieces = [p for off, size, more in pieces
                  for p in fragment_layout(size, mtu, off, more, header)]
    return pieces


def udp_datagrams(packets, src, dst):
    """The UDP datagrams ``src -> dst`` in ``packets``: ``{ip_id: [IpPacket]}``,
    each list in capture order (a datagram's fragments share one IP ID)."""
    out = {}
    for p in packets:
        if p.proto == PROTO_UDP and p.src == src and p.dst == dst:
            out.setdefault(p.ident, []).append(p)
    return out


def layout_of(fragments):
    """``[(offset, length, mf)]`` of captured fragments, sorted by offset."""
    return sorted((p.offset, p.payload_length, p.mf) for p in fragments)


def layout_problems(layout):
    """What is wrong with a datagram's fragments as a whole (empty: they
    reassemble): offsets contiguous from 0 in 8-byte units, MF on all but the last."""
    problems, at = [], 0
    for i, (off, size, more) in enumerate(layout):
        last = i == len(layout) - 1
        if off != at:
            problems.append(f"fragment at {off}, expected {at}")
        if off % 8:
            problems.append(f"offset {off} not a multiple of 8")
        if more == last:
            problems.append(f"fragment at {off}: MF={int(more)} {'on the last' if last else 'missing'}")
        if not last and size % 8:
            problems.append(f"fragment at {off}: {size} bytes, not a multiple of 8")
        at = off + size
    return problems


# -- TCP segments ----------------------------------------------------------------------
def tcp_payload_per_segment(mss, timestamps, path_mtu=None, header=IPV4_HEADER):
    """Payload bytes of a full TCP segment: the smaller of the MSS option and
    what the path MTU leaves after the IP and TCP headers, less 12 bytes when
    both SYNs carried the timestamp option (RFC 7323; it rides on every segment)."""
    limit = mss if path_mtu is None else min(mss, path_mtu - header - TCP_HEADER)
    return limit - (12 if timestamps else 0)


def expected_data_segments(nbytes, payload_per_segment):
    """Data segments a message of ``nbytes`` needs when every segment but the
    last is full and none is lost."""
    return math.ceil(nbytes / payload_per_segment)
