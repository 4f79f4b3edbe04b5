"""DNS messages decoded from captures made with scapy: queries, referrals with
glue, authoritative answers, NXDOMAIN with the SOA, DNS over TCP; other traffic ignored."""

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSOA
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from wirelab.observe.pcap.reader import PcapFormatError
from wirelab.services.dns_decode import TruncatedDnsError, classify, decode_dns, decode_message, pair, summary

HOME, RES, OUT, ROOT, TLD, AUTH = "192.168.1.10", "100.64.0.1", "172.16.1.2", "10.20.1.2", "10.1.0.2", "10.20.30.10"


def udp(src, dst, sport, dport, msg, t):
    p = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / msg
    p.time = t
    return p


def q(name, qid, rd=1, qtype="A"):
    return DNS(id=qid, rd=rd, qd=DNSQR(qname=name, qtype=qtype))


def referral(name, qid, zone, ns, glue_ip):
    return DNS(id=qid, qr=1, rd=0, qd=DNSQR(qname=name),
               ns=[DNSRR(rrname=zone, type="NS", ttl=3600, rdata=ns)],
               ar=[DNSRR(rrname=ns, type="A", ttl=3600, rdata=glue_ip)])


def answer(name, qid, ip, ttl=300, aa=1, ra=0):
    return DNS(id=qid, qr=1, aa=aa, ra=ra, qd=DNSQR(qname=name), an=[DNSRR(rrname=name, type="A", ttl=ttl, rdata=ip)])


def nxdomain(name, qid, zone, mname):
    return DNS(id=qid, qr=1, aa=1, rcode=3, qd=DNSQR(qname=name),
               ns=[DNSRRSOA(rrname=zone, ttl=60, mname=mname, rname="hostmaster." + zone, serial=1,
                            refresh=3600, retry=600, expire=86400, minimum=60)])


@pytest.fixture
def walk_pcap(tmp_path):
    name = "www.amazon.com."
    pkts = [
        udp(HOME, RES, 40000, 53, q(name, 7), 1.000),
        udp(OUT, ROOT, 41000, 53, q(name, 8, rd=0), 1.001),
        udp(ROOT, OUT, 53, 41000, referral(name, 8, "com.", "a.gtld-servers.net.", TLD), 1.002),
        udp(OUT, TLD, 41001, 53, q(name, 9, rd=0), 1.003),
        udp(TLD, OUT, 53, 41001, referral(name, 9, "amazon.com.", "ns.amazon.com.", AUTH), 1.004),
        udp(OUT, AUTH, 41002, 53, q(name, 10, rd=0), 1.005),
        udp(AUTH, OUT, 53, 41002, answer(name, 10, AUTH), 1.006),
        udp(RES, HOME, 53, 40000, answer(name, 7, AUTH, aa=0, ra=1), 1.007),
        udp(OUT, AUTH, 41003, 53, q("nosuch.amazon.com.", 11, rd=0), 2.0),
        udp(AUTH, OUT, 53, 41003, nxdomain("nosuch.amazon.com.", 11, "amazon.com.", "ns.amazon.com."), 2.001),
        # not DNS: a UDP probe and HTTP; DNS-port garbage that does not parse
        udp(HOME, AUTH, 33434, 33434, b"x" * 20, 3.0),
        udp(HOME, AUTH, 5555, 53, b"\x01", 3.1),
    ]
    tcp_msg = bytes(q("www.example.org.", 12))
    t = Ether() / IP(src=OUT, dst=AUTH) / TCP(sport=42000, dport=53, flags="PA") / \
        (len(tcp_msg).to_bytes(2, "big") + tcp_msg)
    t.time = 4.0
    http = Ether() / IP(src=HOME, dst=AUTH) / TCP(sport=50000, dport=80, flags="S")
    http.time = 5.0
    path = str(tmp_path / "walk.pcap")
    wrpcap(path, pkts + [t, http])
    return path


def test_rows_say_who_asked_whom_what(walk_pcap):
    rows = decode_dns(walk_pcap)
    assert [(r["src"], r["dst"], r["kind"]) for r in rows] == [
        (HOME, RES, "query"), (OUT, ROOT, "query"), (ROOT, OUT, "referral"), (OUT, TLD, "query"),
        (TLD, OUT, "referral"), (OUT, AUTH, "query"), (AUTH, OUT, "answer"), (RES, HOME, "answer"),
        (OUT, AUTH, "query"), (AUTH, OUT, "nxdomain"), (OUT, AUTH, "query")]
    assert rows[0]["rd"] and not rows[1]["rd"]
    assert rows[2]["authority"] == [["com.", "NS", 3600, "a.gtld-servers.net."]]
    assert rows[2]["additional"] == [["a.gtld-servers.net.", "A", 3600, TLD]]
    assert rows[6]["aa"] and rows[6]["answer"] == [["www.amazon.com.", "A", 300, AUTH]]
    assert rows[7]["ra"] and not rows[7]["aa"]
    assert rows[9]["rcode"] == "NXDOMAIN" and rows[9]["authority"][0][:2] == ["amazon.com.", "SOA"]
    assert rows[9]["authority"][0][3].startswith("ns.amazon.com. hostmaster.amazon.com. 1 3600 600 86400 60")
    assert rows[10]["proto"] == "tcp" and rows[10]["qname"] == "www.example.org."
    assert rows[0]["t"] == pytest.approx(1.0) and rows[7]["t"] == pytest.approx(1.007)


def test_pairs_match_id_question_and_ends(walk_pcap):
    pairs = pair(decode_dns(walk_pcap))
    assert [(qq["dst"], rr["kind"] if rr else None) for qq, rr in pairs] == [
        (RES, "answer"), (ROOT, "referral"), (TLD, "referral"), (AUTH, "answer"), (AUTH, "nxdomain"), (AUTH, None)]


def test_a_response_from_elsewhere_does_not_pair():
    rows = [{"id": 1, "qname": "a.", "qtype": "A", "qr": False, "src": "1.1.1.1", "sport": 5, "dst": "2.2.2.2", "dport": 53},
            {"id": 1, "qname": "a.", "qtype": "A", "qr": True, "src": "3.3.3.3", "sport": 53, "dst": "1.1.1.1", "dport": 5}]
    assert pair(rows) == [(rows[0], None)]


def test_summaries(walk_pcap):
    rows = decode_dns(walk_pcap)
    assert summary(rows[0]) == "? www.amazon.com. A (rd)"
    assert summary(rows[2]) == "referral: com. NS a.gtld-servers.net.; glue a.gtld-servers.net. 10.1.0.2"
    assert summary(rows[6]) == "answer (aa): www.amazon.com. 300 A 10.20.30.10"
    assert summary(rows[9]) == "NXDOMAIN (SOA of amazon.com.)"


def test_classify_the_other_kinds():
    assert classify(True, "NOERROR", True, [], [["amazon.com.", "SOA", 60, "x"]]) == "nodata"
    assert classify(True, "SERVFAIL", False, [], []) == "error"
    # an authoritative answer listing its own NS is not a referral
    assert classify(True, "NOERROR", True, [], [["amazon.com.", "NS", 60, "ns.amazon.com."]]) == "nodata"
    assert decode_message(b"") is None and decode_message(b"\x00" * 11) is None


def test_a_capture_of_another_link_type_is_one_clear_error(tmp_path):
    path = str(tmp_path / "raw.pcap")
    wrpcap(path, [IP(src=HOME, dst=RES) / UDP(sport=1, dport=53) / q("a.", 1)], linktype=101)
    with pytest.raises(PcapFormatError, match="expected Ethernet"):
        decode_dns(path)


def test_a_capture_that_cut_messages_short_is_one_clear_error(tmp_path, walk_pcap):
    """tcpdump -s 80 keeps 80 bytes of a frame: a referral with glue no longer fits."""
    import struct
    from scapy.utils import rdpcap
    cut = tmp_path / "cut.pcap"
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 80, 1)        # classic pcap, Ethernet
    for p in rdpcap(walk_pcap):
        raw = bytes(p)
        out += struct.pack("<IIII", int(p.time), 0, min(len(raw), 80), len(raw)) + raw[:80]
    cut.write_bytes(out)
    with pytest.raises(TruncatedDnsError, match="snaplen 0") as err:
        decode_dns(str(cut))
    assert "\n" not in str(err.value)
