"""IPv4 fragments, ICMP "fragmentation needed" and the fragmentation arithmetic,
without root: packets built with scapy (exact bytes checked), written to a
pcap, read back with wirelab.observe.ipfrag; the arithmetic against scapy's
own fragment() and against hand-computed layouts."""

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPerror, Raw, UDPerror, fragment, raw, wrpcap

from wirelab.observe import ipfrag
from wirelab.observe.packet_evidence import (distinct_segments, frag_needed, tcp_data, too_big,
                                             transmissions_of_first, udp_layouts, udp_payloads)

H1, H2, R2 = "10.0.0.1", "10.0.4.2", "10.0.1.2"
# ICMP 3/4 from r2 to h1, next-hop MTU 1000, quoting h1's DF datagram of 1428 bytes.
FRAG_NEEDED = (IP(src=R2, dst=H1, id=1, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1000)
               / IPerror(src=H1, dst=H2, flags="DF", len=1428, id=0) / UDPerror(sport=5, dport=6))
FRAG_NEEDED_BYTES = bytes.fromhex(
    "4500003800010000400165c20a0001020a000001"     # IP: 56 bytes, id 1, TTL 64, ICMP
    "030416a8000003e8"                             # ICMP 3/4, checksum, unused 0, next-hop MTU 1000
    "450005940000400040111d570a0000010a000402"     # quoted IP: 1428 bytes, DF, UDP
    "000500060008e258")                            # quoted UDP ports 5 -> 6


def test_frag_needed_exact_bytes_and_parsed_back():
    assert raw(FRAG_NEEDED) == FRAG_NEEDED_BYTES
    p = ipfrag.parse_ipv4(FRAG_NEEDED_BYTES)
    assert (p.src, p.dst, p.proto, p.icmp_type, p.icmp_code, p.next_hop_mtu) == (R2, H1, 1, 3, 4, 1000)
    assert p.quoted == ipfrag.Quoted(H1, H2, 17, 0, True, 1428, 5, 6)
    assert not p.is_fragment and p.payload_length == 36


def test_fragment_fields_parsed_from_bytes():
    frags = fragment(IP(src=H1, dst=H2, id=4242) / UDP(sport=1, dport=2) / Raw(b"x" * 4000), fragsize=1480)
    got = [ipfrag.parse_ipv4(raw(f)) for f in frags]
    assert [(p.offset, p.payload_length, p.mf, p.ident) for p in got] == [
        (0, 1480, True, 4242), (1480, 1480, True, 4242), (2960, 1048, False, 4242)]
    assert got[0].l4_length == 4008 and got[0].sport == 1 and got[1].sport is None
    assert ipfrag.layout_problems(ipfrag.layout_of(got)) == []


@pytest.mark.parametrize("size,mtus", [(4000, [1500]), (4000, [1500, 1000]), (1400, [1500, 1000]),
                                       (65507, [1500]), (65507, [1500, 576]), (100, [1500, 1000])])
def test_path_layout_equals_scapy_fragmenting_in_turn(size, mtus):
    pkts = [IP(src=H1, dst=H2, id=9) / UDP(sport=1, dport=2) / Raw(b"y" * size)]
    for mtu in mtus:
        pkts = [q for p in pkts for q in (fragment(p, fragsize=ipfrag.fragment_payload(mtu))
                                          if len(raw(p)) > mtu else [p])]
    got = [ipfrag.parse_ipv4(raw(p)) for p in pkts]
    assert ipfrag.path_layout(8 + size, mtus) == ipfrag.layout_of(got)
    assert all(p.total_length <= min(mtus) for p in got)


def test_fragment_arithmetic_by_hand():
    assert ipfrag.fragment_payload(1500) == 1480 and ipfrag.fragment_payload(1000) == 976
    assert ipfrag.fragment_payload(576) == 552
    # 1473 B of data: one byte too many for 1500 -> a 1-byte second fragment
    assert ipfrag.path_layout(8 + 1473, [1500]) == [(0, 1480, True), (1480, 1, False)]
    # a 1480-byte fragment (MF) again through 1000: 976 + 504, the last keeps MF
    assert ipfrag.fragment_layout(1480, 1000, offset=1480, more=True) == [(1480, 976, True), (2456, 504, True)]
    assert ipfrag.path_layout(8 + 4000, [1500, 1000]) == [
        (0, 976, True), (976, 504, True), (1480, 976, True), (2456, 504, True), (2960, 976, True), (3936, 72, False)]
    with pytest.raises(ValueError):
        ipfrag.fragment_payload(24)


def test_layout_problems_name_each_fault():
    assert ipfrag.layout_problems([(0, 1480, True), (1488, 8, False)]) == ["fragment at 1488, expected 1480"]
    assert ipfrag.layout_problems([(0, 1004, True), (1004, 8, False)]) == [
        "fragment at 0: 1004 bytes, not a multiple of 8", "offset 1004 not a multiple of 8"]
    assert ipfrag.layout_problems([(0, 8, False), (8, 8, False)]) == ["fragment at 0: MF=0 missing"]
    assert ipfrag.layout_problems([(0, 16, True)]) == ["fragment at 0: MF=1 on the last"]


def test_tcp_segment_arithmetic():
    assert ipfrag.tcp_payload_per_segment(1460, True) == 1448
    assert ipfrag.tcp_payload_per_segment(1460, False) == 1460
    assert ipfrag.tcp_payload_per_segment(1460, True, path_mtu=1000) == 948
    assert [ipfrag.expected_data_segments(n, 1448) for n in (100, 1448, 1449, 1460, 10_000, 1_000_000)] == \
        [1, 1, 2, 2, 7, 691]


def test_capture_read_back(tmp_path):
    """A small capture as h1 would see it: a DF-clear datagram in fragments,
    TCP data with one retransmission, the ICMP error."""
    mac = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frags = fragment(IP(src=H1, dst=H2, id=77) / UDP(sport=1, dport=6001) / Raw(b"u" * 3000), fragsize=1480)
    tcp = [IP(src=H1, dst=H2, flags="DF", id=i) / TCP(sport=40000, dport=5001, seq=1000 + s, flags="PA")
           / Raw(b"t" * 1448) for i, s in enumerate((0, 1448, 0))]
    end = IP(src=H1, dst=H2, id=78) / UDP(sport=1, dport=6001)
    path = str(tmp_path / "h1.pcap")
    wrpcap(path, [mac / p for p in [*frags, *tcp, FRAG_NEEDED, end]])
    pk = ipfrag.read_ip_packets(path)
    assert len(pk) == len(frags) + 3 + 2 and [p.index for p in pk] == list(range(len(pk)))
    layouts = udp_layouts(pk, H1, H2)
    assert list(layouts) == [3000]   # the empty end mark is left out
    assert layouts[3000]["layout"] == ipfrag.path_layout(3008, [1500]) and layouts[3000]["ident"] == 77
    assert udp_payloads(pk, H1, H2) == [3000]
    data = tcp_data(pk, H1, H2, 5001)
    first, again = distinct_segments(data)
    assert [p.tcp_payload for p in data] == [1448] * 3 and len(first) == 2 and again == 1
    assert [p.seq for p in transmissions_of_first(data)] == [1000, 1000]
    assert len(too_big(pk, H1, H2, 1000)) == 3      # the DF TCP segments; fragments have no DF
    assert [p.next_hop_mtu for p in frag_needed(pk, H1, H1, H2, 17)] == [1000]
    assert frag_needed(pk, H1, H1, H2, 6) == []
