"""IPv6 logic of the routing and traceroute experiments, and IPv6 in the pcap
readers (no root)."""

import importlib.util
import ipaddress
import os
import random

import pytest

from wirelab.observe import impairment as L
from wirelab.net import route_reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    spec = importlib.util.spec_from_file_location(f"exp6_{name}", os.path.join(REPO, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


routing = load("routing")

# bb1-like IPv6 tables, in the kernel's dump order
MAIN6 = [
    {"dst": "fd77:4:a14:1e00::/56", "gateway": "fd77:4:ac10:108::2", "dev": "eth2", "type": 1, "priority": 1024},
    {"dst": "fd77:4:a14::/48", "gateway": "fd77:4:ac10:104::2", "dev": "eth1", "type": 1, "priority": 1024},
    {"dst": "fd77:4:a00::/40", "gateway": "fd77:4:ac10:400::1", "dev": "eth3", "type": 1, "priority": 1024},
    {"dst": "fd77:4:ac10:104::/64", "gateway": None, "dev": "eth1", "type": 1, "priority": 256},
    {"dst": "fe80::/64", "gateway": None, "dev": "eth1", "type": 1, "priority": 256},
    {"dst": "fe80::/64", "gateway": None, "dev": "eth0", "type": 1, "priority": 256},
]
LOCAL6 = [
    {"dst": "::1/128", "gateway": None, "dev": "lo", "type": 2, "priority": 0},
    {"dst": "fd77:4:ac10:104::/128", "gateway": None, "dev": "eth1", "type": 4, "priority": 0},
    {"dst": "fd77:4:ac10:104::1/128", "gateway": None, "dev": "eth1", "type": 2, "priority": 0},
    {"dst": "ff00::/8", "gateway": None, "dev": "eth1", "type": 5, "priority": 256},
    {"dst": "ff00::/8", "gateway": None, "dev": "eth0", "type": 5, "priority": 256},
]


@pytest.mark.parametrize("dst, table, kind, gateway, dev, rtype", [
    ("fd77:4:a14:1e00::a", "main", "unicast", "fd77:4:ac10:108::2", "eth2", 1),   # /56 beats /48, /40
    ("fd77:4:a14:100::2", "main", "unicast", "fd77:4:ac10:104::2", "eth1", 1),    # /48 beats /40
    ("fd77:4:a01::2", "main", "unicast", "fd77:4:ac10:400::1", "eth3", 1),
    ("fd77:4:ac10:104::2", "main", "unicast", None, "eth1", 1),                   # on-link
    ("fd77:4:ac10:104::1", "local", "local", None, "lo", 2),
    ("fd77:4:ac10:104::", "local", "anycast", None, "lo", 4),                     # subnet-router anycast
    ("::1", "local", "loopback", None, "lo", 2),
    ("ff02::1", "local", "multicast", None, "eth1", 5),                           # first multicast route
    ("fe80::1", "main", "link-local", None, "eth1", 1),                           # first fe80::/64 route
])
def test_reference_choice6(dst, table, kind, gateway, dev, rtype):
    ref = route_reference.reference_choice6(LOCAL6, MAIN6, dst)
    assert (ref["table"], ref["gateway"], ref["dev"], ref["type"]) == (table, gateway, dev, rtype)
    assert route_reference.special_kind6(ref, dst) == kind
    kernel = {"gateway": gateway, "dev": dev, "type": rtype}
    assert route_reference.agrees(kernel, ref)
    assert not route_reference.agrees({**kernel, "dev": "eth9"}, ref)


@pytest.mark.parametrize("dst", ["::", "fe80:0:0:1::1", "2001:db8::1", "::ffff:10.1.0.2", "fd77:5::1"])
def test_reference_choice6_unreachable(dst):
    ref = route_reference.reference_choice6(LOCAL6, MAIN6, dst)
    assert ref is None and route_reference.special_kind6(ref, dst) == "unreachable"
    assert route_reference.agrees({"error": 101}, ref)          # ENETUNREACH
    assert not route_reference.agrees({"gateway": None, "dev": "eth1", "type": 1}, ref)


def test_draw_destinations6_is_seeded_and_covers_the_special_ones():
    tables = {"main": MAIN6, "local": LOCAL6}
    a = route_reference.draw_destinations6(tables, 200, random.Random(5), "fd77:4::/32")
    b = route_reference.draw_destinations6(tables, 200, random.Random(5), "fd77:4::/32")
    assert a == b and len(a) == 200 + len(route_reference.IPV6_SPECIAL)
    assert set(route_reference.IPV6_SPECIAL) <= set(a)
    assert all(ipaddress.ip_address(x).version == 6 for x in a)
    kinds = {route_reference.special_kind6(route_reference.reference_choice6(LOCAL6, MAIN6, x), x) for x in a}
    assert kinds == {"unicast", "local", "loopback", "anycast", "multicast", "link-local", "unreachable"}


def test_packet_cases6_name_folders_without_colons():
    lookups = {"bb1": {"tables": {"main": MAIN6, "local": LOCAL6}}}
    cases = routing.packet_cases(lookups, random.Random(1), family=6)
    assert [c.name for c in cases] == ["packets6/bb1-fd77.4.a14.1e00.._56", "packets6/bb1-fd77.4.a14.._48",
                                       "packets6/bb1-fd77.4.a00.._40"]
    for case in cases:
        assert routing.lpm(MAIN6, case.args["dst"])["dst"] == case.args["route"]


# -- traceroute's IPv6 evidence readers, on a capture made here ----------------------------
traceroute = load("traceroute")
SRC6, DST6 = "fd77:1:a00::1", "fd77:1:a00:300::2"
HOPS6 = ["fd77:1:a00::2", "fd77:1:a00:100::2", "fd77:1:a00:200::2"]


def probe6(hlim, dport, src=SRC6, dst=DST6):
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    return IPv6(src=src, dst=dst, hlim=hlim) / UDP(sport=40000, dport=dport) / (b"@" * 32)


def write_pcap(path, packets):
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    wrpcap(str(path), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p for p in packets])
    return str(path)


def test_read_icmp6_evidence_from_a_generated_capture(tmp_path):
    from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6NDOptSrcLLAddr, \
        ICMPv6ND_NS, ICMPv6TimeExceeded, IPv6
    packets = [IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fd77:1:a00::2")
               / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")]          # noise: NDP
    for ttl, hop in enumerate(HOPS6, 1):
        for q in range(3):
            dport = 33434 + (ttl - 1) * 3 + q
            packets.append(probe6(ttl, dport))
            packets.append(IPv6(src=hop, dst=SRC6) / ICMPv6TimeExceeded() / probe6(ttl - ttl + 1, dport))
    for q in range(3):   # the destination answers the 4th hop limit's probes
        dport = 33434 + 9 + q
        packets.append(IPv6(src=DST6, dst=SRC6) / ICMPv6DestUnreach(code=4) / probe6(1, dport))
    # an error about another destination is not evidence
    packets.append(IPv6(src="fd77:1:a00:9::9", dst=SRC6) / ICMPv6TimeExceeded()
                   / probe6(1, 33434, dst="fd77:1:a00:9::1"))
    packets.append(IPv6(src=SRC6, dst=DST6, hlim=64) / ICMPv6EchoRequest())
    pcap = write_pcap(tmp_path / "at-h1.pcap", packets)
    exceeded, unreachable = traceroute.read_icmp_evidence(pcap, SRC6, DST6)
    assert exceeded == {ttl: [hop] * 3 for ttl, hop in enumerate(HOPS6, 1)}
    assert unreachable == [DST6] * 3


def test_read_arrival_hop_limits_from_a_generated_capture(tmp_path):
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
    routers = 3
    packets = [probe6(ttl - routers, 33434 + (ttl - 1) * 3 + q)
               for ttl in range(routers + 1, routers + 3) for q in range(3)]
    packets += [IPv6(src=SRC6, dst=DST6, hlim=64 - routers) / ICMPv6EchoRequest(),
                IPv6(src=DST6, dst=SRC6, hlim=64) / ICMPv6EchoReply(),         # the reply: not counted
                probe6(9, 33434, src="fd77:1:a00:9::1")]                      # someone else
    pcap = write_pcap(tmp_path / "at-h2.pcap", packets)
    pings, probes = traceroute.read_arrival_ttls(pcap, SRC6)
    assert pings == [61]
    assert probes == [(ttl, ttl - routers) for ttl in range(routers + 1, routers + 3) for _ in range(3)]


def test_traceroute_declares_ipv6_cases_from_the_plan():
    params = traceroute.TracerouteParams(line_routers=2, internet_pairs=3)
    (line, line_cases), (net, net_cases) = traceroute.declared_cases(params)
    assert [c.name for c in line_cases] == ["line/h1-h2", "line/h2-h1", "line6/h1-h2", "line6/h2-h1"]
    assert line_cases[2].args["expected"] == ["fd77:1:a00::2", "fd77:1:a00:100::2", "fd77:1:a00:200::2"]
    assert line_cases[2].args["routers"] == 2 and line_cases[2].bpf == ("icmp6", "or", "udp")
    assert "family" not in line_cases[0].args            # IPv4 case.json as before
    assert [c.name.split("/")[0] for c in net_cases] == ["internet"] * 3 + ["internet6"] * 3
    off = traceroute.declared_cases(traceroute.TracerouteParams(line_routers=2), families=(4,))
    assert [c.name for c in off[0][1]] == ["line/h1-h2", "line/h2-h1"]


# -- the impairment ledger and the TCP analyser on IPv6 captures -------------------------------
C6, S6 = "fd77:3:a01:100::2", "fd77:3:a02:100::2"


def tcp6(seq, ts_ns, payload=b"x" * 100, tsval=None, flags="A"):
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    tsval = seq if tsval is None else tsval
    p = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src=C6, dst=S6)
         / TCP(sport=40000, dport=5001, seq=seq, ack=1, flags=flags, options=[("Timestamp", (tsval, 0))])
         / payload)
    p.time = ts_ns / 1e9
    return p


def test_ledger_reads_ipv6_tcp_and_finds_a_drop_and_a_duplicate(tmp_path):
    """Six segments leave; the 3rd is lost and resent (a new tsval), the 5th arrives twice."""
    from scapy.utils import wrpcap
    sent = [tcp6(1000 + 100 * k, 1_000_000 * k) for k in range(6)]
    resent = tcp6(1200, 9_000_000, tsval=99999)
    before = sent + [resent]
    after = [tcp6(1000 + 100 * k, 1_000_000 * k + 500_000) for k in (0, 1, 3, 4)]
    after += [tcp6(1400, 4_600_000), tcp6(1500, 5_500_000), tcp6(1200, 9_500_000, tsval=99999)]
    wrpcap(str(tmp_path / "before.pcap"), before)
    wrpcap(str(tmp_path / "after.pcap"), after)
    pkts = L.read_packets(str(tmp_path / "before.pcap"))
    assert [(p.src, p.dst, p.ip_id, p.payload_len) for p in pkts[:1]] == [(C6, S6, -1, 100)]
    assert len(pkts) == 7
    ledger = L.build_ledger(str(tmp_path / "before.pcap"), str(tmp_path / "after.pcap"))
    (direction,) = ledger.directions
    assert direction.direction == (C6, 40000, S6, 5001)
    assert direction.counts() == {"departed": 7, "arrived_once": 5, "dropped": 1, "duplicated": 1,
                                  "extra_copies": 1, "reordered": 0}
    dropped = [d for d in direction.departures if d.fate == "dropped"]
    assert [(d.packet.seq, d.packet.tsval) for d in dropped] == [(1200, 1200)]


def test_no_tcp_at_all_is_one_clear_error(tmp_path):
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    wrpcap(str(tmp_path / "icmp6.pcap"), [Ether() / IPv6(src=C6, dst=S6) / ICMPv6EchoRequest()])
    with pytest.raises(L.LedgerError, match="no TCP packets \\(IPv4 or IPv6\\)"):
        L.build_ledger(str(tmp_path / "icmp6.pcap"), str(tmp_path / "icmp6.pcap"))
