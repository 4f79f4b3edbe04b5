"""One packet as one record: the fields a person reads off the wire.

Pure functions of scapy packets (no sockets): :func:`describe` turns a packet
into a :class:`PacketLine` (time, src -> dst, protocol, TCP flags, sequence and
ACK numbers relative to each direction's first, payload length, IP ID, TTL,
fragment offset and MF/DF), :class:`RelativeSeq` keeps the per-direction base
sequence numbers as Wireshark does, :func:`decode` builds a packet from a
capture's bytes and link type.
"""

from __future__ import annotations

import dataclasses

from wirelab.observe.pcap import tcpflags
from wirelab.packets import scapyenv

SEQ_MOD = 1 << 32


class RelativeSeq:
    """Sequence and ACK numbers relative to each direction's base, as Wireshark's
    "relative sequence numbers": a direction's base is the sequence number of
    its SYN, or of the first segment seen when the capture starts mid-flow; a
    new SYN with another sequence number (the 4-tuple reused) starts a new base.
    ACKs are relative to the *other* direction's base; ``None`` until it is seen."""

    def __init__(self):
        self.base = {}   # (src, sport, dst, dport) -> base sequence number

    def relative(self, src, sport, dst, dport, flags, seq, ack):
        """``(relative seq, relative ack or None)`` of one segment (ack only with the ACK bit)."""
        key = (src, sport, dst, dport)
        if key not in self.base or (flags & tcpflags.SYN and self.base[key] != seq):
            self.base[key] = seq
        rel_seq = (seq - self.base[key]) % SEQ_MOD
        rel_ack = None
        reverse = self.base.get((dst, dport, src, sport))
        if flags & tcpflags.ACK and reverse is not None:
            rel_ack = (ack - reverse) % SEQ_MOD
        return rel_seq, rel_ack


@dataclasses.dataclass
class PacketLine:
    """What one packet shows; ``None`` where a field does not apply."""

    time: float                  # seconds since the epoch (capture time)
    rel_time: float              # seconds since the first packet shown
    src: str
    dst: str
    proto: str                   # TCP, UDP, ICMP, ARP, ... (the IP payload's protocol)
    sport: int | None = None
    dport: int | None = None
    flags: str | None = None     # tcpdump's letters: "S", "S.", "P.", "F." ...
    seq: int | None = None       # relative to this direction's base
    ack: int | None = None       # relative to the other direction's base
    seq_raw: int | None = None
    ack_raw: int | None = None
    len: int = 0                 # payload bytes after the transport header (after IP for a later fragment)
    ip_len: int | None = None    # IP total length
    ip_id: int | None = None
    ttl: int | None = None
    frag_offset: int | None = None   # in bytes (the header field times 8)
    mf: bool | None = None
    df: bool | None = None
    info: str = ""               # ICMP type and what it quotes, ARP question, ...

    def to_dict(self):
        return dataclasses.asdict(self)

    def human(self, absolute=False):
        """One line: ``0.000123 10.0.1.2:40000 > 10.0.2.2:80 TCP [S.] seq=0 ack=1 len=0 ipid=0 ttl=64 DF``.

        ``absolute``: sequence and ACK numbers as on the wire, not relative."""
        ends = (f"{self.src}:{self.sport} > {self.dst}:{self.dport}" if self.sport is not None
                else f"{self.src} > {self.dst}")
        parts = [f"{self.rel_time:.6f}", ends, self.proto]
        if self.flags is not None:
            parts.append(f"[{self.flags}]")
            parts.append(f"seq={self.seq_raw if absolute else self.seq}")
            if "." in self.flags:
                parts.append(f"ack={self.ack_raw}" if absolute or self.ack is None else f"ack={self.ack}")
        if self.info:
            parts.append(self.info)
        if self.ip_id is not None:
            parts.append(f"len={self.len} ipid={self.ip_id} ttl={self.ttl}")
            if self.frag_offset or self.mf:
                parts.append(f"frag={self.frag_offset}" + (" MF" if self.mf else ""))
            if self.df:
                parts.append("DF")
        return " ".join(parts)


def _icmp_info(icmp):
    """``echo-request id=1 seq=1``; an error names the packet it quotes."""
    from scapy.layers.inet import icmpcodes, icmptypes
    name = icmptypes.get(icmp.type, f"type-{icmp.type}")
    code = icmpcodes.get(icmp.type, {}).get(icmp.code)
    text = name + (f" {code}" if code else (f" code={icmp.code}" if icmp.code else ""))
    if icmp.type in (0, 8):
        return f"{text} id={icmp.id} seq={icmp.seq}"
    if icmp.type == 3 and icmp.code == 4:
        text += f" mtu={icmp.nexthopmtu}"
    quoted = icmp.payload
    if quoted.name == "IP in ICMP":
        inner = quoted.payload
        ports = (f"{quoted.src}:{inner.sport} > {quoted.dst}:{inner.dport}"
                 if hasattr(inner, "sport") and hasattr(inner, "dport") else f"{quoted.src} > {quoted.dst}")
        proto = {1: "ICMP", 6: "TCP", 17: "UDP"}.get(quoted.proto, f"proto {quoted.proto}")
        text += f" quoting {proto} {ports} ttl={quoted.ttl} id={quoted.id}"
    return text


def describe(pkt, first_time, seqs):
    """A :class:`PacketLine` for ``pkt`` (its ``time`` is the capture time).

    ``first_time``: the time of the first packet shown (for ``rel_time``);
    ``seqs``: the :class:`RelativeSeq` of the whole capture (updated here).
    """
    scapyenv.load()
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP
    when = float(pkt.time)
    rel = when - first_time
    ip = pkt.getlayer(IP)
    if ip is None:
        ip6 = pkt.getlayer(IPv6)
        if ip6 is not None:
            inner = ip6.payload
            return PacketLine(when, rel, ip6.src, ip6.dst, inner.name if inner else "IPv6",
                              sport=getattr(inner, "sport", None), dport=getattr(inner, "dport", None),
                              len=ip6.plen, ttl=ip6.hlim, info="IPv6")
        arp = pkt.getlayer(ARP)
        if arp is not None:
            op = {1: f"who-has {arp.pdst} tell {arp.psrc}", 2: f"{arp.psrc} is-at {arp.hwsrc}"}
            return PacketLine(when, rel, arp.psrc, arp.pdst, "ARP", info=op.get(arp.op, f"op {arp.op}"))
        return PacketLine(when, rel, getattr(pkt, "src", "?"), getattr(pkt, "dst", "?"),
                          pkt.lastlayer().name, len=len(pkt), info=pkt.summary())
    ihl = ip.ihl * 4 if ip.ihl else 20
    ip_len = ip.len if ip.len is not None else len(ip)
    line = PacketLine(when, rel, ip.src, ip.dst, _proto_name(ip.proto), ip_len=ip_len, ip_id=ip.id,
                      ttl=ip.ttl, frag_offset=ip.frag * 8, mf=bool(ip.flags.MF), df=bool(ip.flags.DF),
                      len=max(0, ip_len - ihl))
    layer = ip.payload
    if ip.frag:   # a later fragment: no transport header, only data
        line.info = "fragment"
        return line
    if type(layer) is TCP:
        flags = int(layer.flags)
        line.sport, line.dport, line.flags = layer.sport, layer.dport, tcpflags.letters(flags)
        line.seq_raw, line.ack_raw = layer.seq, layer.ack
        line.seq, line.ack = seqs.relative(ip.src, layer.sport, ip.dst, layer.dport, flags,
                                           layer.seq, layer.ack)
        line.len = max(0, ip_len - ihl - (layer.dataofs or 5) * 4)
    elif type(layer) is UDP:
        line.sport, line.dport = layer.sport, layer.dport
        line.len = max(0, ip_len - ihl - 8)
    elif type(layer) is ICMP:
        line.info = _icmp_info(layer)
        line.len = max(0, ip_len - ihl - 8)
    return line


def _proto_name(number):
    return {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6"}.get(number, f"IP-{number}")


def decode(linktype, data, ts_ns):
    """A scapy packet from a capture's frame bytes and link type (DLT), time set.

    Link types scapy does not know come back as ``Raw``."""
    conf = scapyenv.load()
    from scapy.packet import Raw
    cls = conf.l2types.num2layer.get(linktype, Raw)
    try:
        pkt = cls(data)
    except Exception:   # a frame scapy cannot dissect: show its bytes, keep going
        pkt = Raw(data)
    pkt.time = ts_ns / 1e9
    return pkt


class Describer:
    """:func:`describe` with the state a stream of packets needs: the first
    packet's time and the per-direction sequence bases."""

    def __init__(self):
        self.first_time = None
        self.seqs = RelativeSeq()

    def __call__(self, pkt):
        if self.first_time is None:
            self.first_time = float(pkt.time)
        return describe(pkt, self.first_time, self.seqs)
