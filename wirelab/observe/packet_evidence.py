"""What one capture says about packet sizes: TCP data segments of a flow, the
transmissions of a stuck segment, ICMP "fragmentation needed", packets too big
for a path, and the fragment layout of each UDP datagram. Pure functions over
:class:`wirelab.observe.ipfrag.IpPacket` lists (``read_ip_packets``).
"""

from wirelab.observe import ipfrag
from wirelab.observe.ipfrag import ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, PROTO_TCP, PROTO_UDP


def tcp_data(packets, src, dst, dport):
    """Data segments (payload > 0) ``src -> dst:dport``, in capture order."""
    return [p for p in packets if p.proto == PROTO_TCP and p.src == src and p.dst == dst
            and p.dport == dport and p.tcp_payload]


def distinct_segments(segments):
    """``(first transmissions, retransmissions)``: a segment whose sequence
    number was seen before is a retransmission."""
    seen, first, again = set(), [], 0
    for p in segments:
        if p.seq in seen:
            again += 1
        else:
            seen.add(p.seq)
            first.append(p)
    return first, again


def transmissions_of_first(segments):
    """Every transmission, in order, of the flow's first data byte (the segment
    starting at the lowest sequence number: the one a black hole keeps stuck)."""
    if not segments:
        return []
    isn = segments[0].seq
    first = min(segments, key=lambda p: (p.seq - isn) & 0xFFFFFFFF).seq
    return [p for p in segments if p.seq == first]


def frag_needed(packets, to, about_src, about_dst, proto):
    """ICMP "fragmentation needed" (3/4) sent to ``to`` about a ``proto`` packet
    ``about_src -> about_dst`` (the header it quotes)."""
    return [p for p in packets if p.proto == ipfrag.PROTO_ICMP and p.dst == to
            and p.icmp_type == ICMP_DEST_UNREACH and p.icmp_code == ICMP_FRAG_NEEDED and p.quoted
            and p.quoted.src == about_src and p.quoted.dst == about_dst and p.quoted.proto == proto]


def too_big(packets, src, dst, mtu):
    """Packets ``src -> dst`` with DF set and larger than ``mtu``: each must be
    answered by one ICMP "fragmentation needed" from the router before the link."""
    return [p for p in packets if p.src == src and p.dst == dst and p.df and p.total_length > mtu]


def udp_layouts(packets, src, dst):
    """``{data size: {"ident", "layout", "problems", "largest"}}`` of the UDP
    datagrams ``src -> dst`` (size from the first fragment's UDP length; the
    empty end mark left out). A datagram whose first fragment is missing is
    listed under ``None``."""
    out = {}
    for ident, frags in ipfrag.udp_datagrams(packets, src, dst).items():
        head = next((p for p in frags if p.offset == 0), None)
        size = head.l4_length - ipfrag.UDP_HEADER if head is not None and head.l4_length else None
        if size == 0:
            continue
        layout = ipfrag.layout_of(frags)
        out[size] = {"ident": ident, "layout": layout, "problems": ipfrag.layout_problems(layout),
                     "largest": max(p.total_length for p in frags)}
    return out


def udp_payloads(packets, src, dst):
    """The UDP data sizes (first fragments) ``src -> dst`` that crossed this point."""
    return sorted(p.l4_length - ipfrag.UDP_HEADER for p in packets if p.proto == PROTO_UDP
                  and p.src == src and p.dst == dst and p.offset == 0 and p.l4_length
                  and p.l4_length > ipfrag.UDP_HEADER)
