"""trace's pure parts: hop assembly from (ttl, answer) records, traceroute-style
lines (read back by the parser of the real traceroute's output), probes, answers."""

import json

from wirelab.observe.traceroute_parse import parse
from wirelab.packets.trace import Answer, Hop, TraceResult, assemble_hops, classify, format_hops, make_probe

DST = "10.0.4.2"


def te(addr, rtt=0.1):
    return Answer(addr, "time-exceeded", rtt)


def test_hops_end_at_the_destination_and_later_records_are_ignored():
    records = [(1, te("10.0.0.2", 0.05)), (1, te("10.0.0.2")), (1, te("10.0.0.2")),
               (2, te("10.0.1.2")), (2, None), (2, te("10.0.1.2")),
               (3, Answer(DST, "port-unreachable", 0.3)), (3, Answer(DST, "port-unreachable", 0.2)), (3, None),
               (4, Answer(DST, "port-unreachable", 0.4))]
    hops, reached = assemble_hops(records, DST)
    assert reached and [h.addr for h in hops] == ["10.0.0.2", "10.0.1.2", DST]
    assert hops[1].rtts_ms == [0.1, None, 0.1] and hops[2].rtts_ms == [0.3, 0.2, None]


def test_silent_hops_and_not_reached():
    hops, reached = assemble_hops([(1, te("10.0.0.2")), (2, None), (2, None), (3, te("10.0.2.2"))], DST)
    assert not reached and [h.addr for h in hops] == ["10.0.0.2", None, "10.0.2.2"]


def test_an_unreachable_from_a_router_ends_the_trace_without_reaching():
    records = [(1, te("10.0.0.2")), (2, Answer("10.0.1.2", "unreachable-1", 3.0)), (3, te("10.0.2.2"))]
    hops, reached = assemble_hops(records, DST)
    assert not reached and len(hops) == 2 and hops[1].probes[0].note == "!H"


def test_the_hop_address_is_the_one_most_probes_came_from():
    hops, _ = assemble_hops([(1, te("10.0.0.9")), (1, te("10.0.0.2")), (1, te("10.0.0.2"))], DST)
    assert hops[0].addr == "10.0.0.2"
    hops, _ = assemble_hops([(1, te("10.0.0.9")), (1, te("10.0.0.2"))], DST)
    assert hops[0].addr == "10.0.0.9"   # a tie: the first answer's


def test_lines_read_back_by_the_traceroute_parser():
    hops = [Hop(1, "10.0.0.2", [te("10.0.0.2", 0.101), te("10.0.0.2", 0.031), None]),
            Hop(2, None, [None, None, None]),
            Hop(3, "10.0.2.2", [te("10.0.2.9", 1.5), te("10.0.2.2", 0.2), te("10.0.2.2", 0.25)]),
            Hop(4, "10.0.3.2", [Answer("10.0.3.2", "unreachable-1", 0.5)])]
    lines = format_hops(hops)
    assert lines[0] == " 1  10.0.0.2  0.101 ms  0.031 ms *"
    assert lines[1] == " 2  * * *"
    assert lines[2] == " 3  10.0.2.9  1.500 ms 10.0.2.2  0.200 ms  0.250 ms"
    assert lines[3] == " 4  10.0.3.2  0.500 ms !H"
    parsed = parse("traceroute to 10.0.4.2 (10.0.4.2), 30 hops max\n" + "\n".join(lines))
    assert [h["addr"] for h in parsed] == ["10.0.0.2", None, "10.0.2.2", "10.0.3.2"]
    assert [p["rtt_ms"] for p in parsed[0]["probes"]] == [0.101, 0.031, None]
    assert parsed[3]["probes"][0]["note"] == "!H"


def test_the_json_record():
    hops, reached = assemble_hops([(1, te("10.0.0.2", 0.1234)), (2, Answer(DST, "echo-reply", 0.5))], DST)
    record = json.loads(json.dumps(TraceResult(DST, "icmp", hops, reached, 0.01).to_dict(queries=1)))
    assert record == {"dst": DST, "proto": "icmp", "queries": 1, "reached": True, "elapsed_s": 0.01, "hops": [
        {"ttl": 1, "addr": "10.0.0.2", "rtts_ms": [0.123],
         "probes": [{"addr": "10.0.0.2", "kind": "time-exceeded", "rtt_ms": 0.123, "note": None}]},
        {"ttl": 2, "addr": DST, "rtts_ms": [0.5],
         "probes": [{"addr": DST, "kind": "echo-reply", "rtt_ms": 0.5, "note": None}]}]}


def test_each_probe_differs_in_what_an_icmp_error_quotes():
    from scapy.layers.inet import ICMP, TCP, UDP
    udp = [make_probe("udp", DST, 2, n, 50000, 33434) for n in range(3)]
    assert [(p.ttl, p[UDP].sport, p[UDP].dport) for p in udp] == [(2, 50000, 33434 + n) for n in range(3)]
    icmp = [make_probe("icmp", DST, 1, n, 50000, 0) for n in range(2)]
    assert [(p[ICMP].type, p[ICMP].id, p[ICMP].seq) for p in icmp] == [(8, 50000, 1), (8, 50000, 2)]
    tcp = make_probe("tcp", DST, 5, 4, 50000, 80)
    assert (tcp.ttl, tcp[TCP].sport, tcp[TCP].dport, str(tcp[TCP].flags)) == (5, 50004, 80, "S")


def test_classify_answers():
    from scapy.layers.inet import ICMP, IP, TCP
    def pkt(p):
        return IP(bytes(p))
    assert classify(pkt(IP(src="1.1.1.1") / ICMP(type=11))) == ("1.1.1.1", "time-exceeded")
    assert classify(pkt(IP(src=DST) / ICMP(type=3, code=3))) == (DST, "port-unreachable")
    assert classify(pkt(IP(src="1.1.1.1") / ICMP(type=3, code=1))) == ("1.1.1.1", "unreachable-1")
    assert classify(pkt(IP(src=DST) / ICMP(type=0))) == (DST, "echo-reply")
    assert classify(pkt(IP(src=DST) / TCP(flags="SA"))) == (DST, "syn-ack")
    assert classify(pkt(IP(src=DST) / TCP(flags="RA"))) == (DST, "rst")
