"""Traceroute's probes and their answers, read from a capture at the source.

Each UDP probe of ``traceroute -p BASE -q N`` goes to its own port (BASE + n,
n counted from 0 over all hops), and every ICMP error quotes the probe's IP
header and first 8 bytes, so the port ties an answer to its probe: which hop
answered, how (time-exceeded or port-unreachable), and the RTT between the two
capture timestamps (microseconds in classic pcap).
"""

import ipaddress

from wirelab.observe.pcap.decode import LINKTYPE_ETHERNET
from wirelab.observe.pcap.reader import PcapFormatError, iter_frames

TRACEROUTE_BASE_PORT = 33434    # traceroute's default -p


def probe_answers(pcap, src_ip, dst_ip, probes_per_hop, base_port=TRACEROUTE_BASE_PORT):
    """{ttl: [{from, kind, rtt_ms}]}: every ICMP time-exceeded ("exceeded") or
    port-unreachable ("unreachable") quoting a probe from ``src_ip`` to
    ``dst_ip``; ``rtt_ms`` from the probe leaving to the answer arriving (None
    when the probe itself is not in the capture). IPv4, Ethernet captures."""
    import dpkt
    sent, answers = {}, []
    for linktype, ts_ns, frame in iter_frames(pcap):
        if linktype != LINKTYPE_ETHERNET:
            raise PcapFormatError(f"{pcap}: link type {linktype}, expected Ethernet ({LINKTYPE_ETHERNET})")
        ip = dpkt.ethernet.Ethernet(frame).data
        if not isinstance(ip, dpkt.ip.IP):
            continue
        src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
        if ip.p == dpkt.ip.IP_PROTO_UDP and (src, dst) == (src_ip, dst_ip) and ip.data.dport >= base_port:
            sent.setdefault(ip.data.dport, ts_ns)      # the first copy: the probe leaving
        elif ip.p == dpkt.ip.IP_PROTO_ICMP:
            icmp = ip.data
            inner = getattr(icmp.data, "data", None)      # the quoted IP header + 8 bytes
            dport = getattr(getattr(inner, "data", None), "dport", None)
            if not isinstance(inner, dpkt.ip.IP) or dport is None or dport < base_port \
                    or str(ipaddress.IPv4Address(inner.dst)) != dst_ip:
                continue
            if icmp.type == dpkt.icmp.ICMP_TIMEXCEED:
                answers.append((dport, src, "exceeded", ts_ns))
            elif icmp.type == dpkt.icmp.ICMP_UNREACH and icmp.code == dpkt.icmp.ICMP_UNREACH_PORT:
                answers.append((dport, src, "unreachable", ts_ns))
    out = {}
    for dport, src, kind, ts_ns in answers:
        t0 = sent.get(dport)
        out.setdefault((dport - base_port) // probes_per_hop + 1, []).append(
            {"from": src, "kind": kind, "rtt_ms": None if t0 is None else round((ts_ns - t0) / 1e6, 3)})
    return out
