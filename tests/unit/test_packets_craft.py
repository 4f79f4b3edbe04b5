"""craft's packets as exact bytes (as scapy's own tests: ``raw(p) == b'...'``, then
parsed back), its validation, its payloads and how a reply is said to match."""

import struct

import pytest

from wirelab.errors import ConfigError
from wirelab.packets.craft import CraftSpec, build, match_reason, payload_of

SRC, DST = "10.0.1.2", "10.0.2.2"


def internet_checksum(data):
    """RFC 1071, written independently of scapy: the sum over a correct header is 0."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def raw(spec):
    return bytes(build(spec))


def test_icmp_echo_exact_bytes_and_back():
    data = raw(CraftSpec(DST, src=SRC, icmp_id=77, icmp_seq=5, payload=b"abc"))
    assert data == (b"E\x00\x00\x1f\x00\x01\x00\x00@\x01c\xda\n\x00\x01\x02\n\x00\x02\x02"
                    b"\x08\x003K\x00M\x00\x05abc")
    assert internet_checksum(data[:20]) == 0 and internet_checksum(data[20:]) == 0
    from scapy.layers.inet import ICMP, IP
    back = IP(data)
    assert (back.src, back.dst, back.ttl, back.id, back.len) == (SRC, DST, 64, 1, 31)
    assert (back[ICMP].type, back[ICMP].id, back[ICMP].seq, bytes(back[ICMP].payload)) == (8, 77, 5, b"abc")


def test_udp_probe_ttl_1_exact_bytes():
    data = raw(CraftSpec(DST, src=SRC, proto="udp", sport=40000, dport=33434, ttl=1, ip_id=7))
    assert data == (b"E\x00\x00\x1c\x00\x07\x00\x00\x01\x11\xa2\xc7\n\x00\x01\x02\n\x00\x02\x02"
                    b"\x9c@\x82\x9a\x00\x08\xc9\xff")
    assert internet_checksum(data[:20]) == 0
    from scapy.layers.inet import IP, UDP
    back = IP(data)
    assert (back.ttl, back.id, back.proto, back[UDP].sport, back[UDP].dport, back[UDP].len) == \
           (1, 7, 17, 40000, 33434, 8)


def test_tcp_syn_with_df_exact_bytes():
    data = raw(CraftSpec(DST, src=SRC, proto="tcp", sport=40000, dport=5001, df=True, seq=1000))
    assert data == (b"E\x00\x00(\x00\x01@\x00@\x06#\xcc\n\x00\x01\x02\n\x00\x02\x02"
                    b"\x9c@\x13\x89\x00\x00\x03\xe8\x00\x00\x00\x00P\x02\xfa\xf0\xea<\x00\x00")
    assert data[6:8] == b"\x40\x00"          # DF, fragment offset 0
    assert data[33] == 0x02                  # SYN only
    from scapy.layers.inet import IP, TCP
    back = IP(data)
    assert back.flags.DF and not back.flags.MF
    assert (back[TCP].seq, back[TCP].ack, str(back[TCP].flags), back[TCP].window) == (1000, 0, "S", 64240)


def test_tcp_data_segment_flags_seq_ack_payload():
    data = raw(CraftSpec(DST, src=SRC, proto="tcp", sport=40000, dport=5001, seq=1001, ack=77,
                         flags="pa", payload=b"hi"))
    assert data == (b"E\x00\x00*\x00\x01\x00\x00@\x06c\xca\n\x00\x01\x02\n\x00\x02\x02"
                    b"\x9c@\x13\x89\x00\x00\x03\xe9\x00\x00\x00MP\x18\xfa\xf0\x81m\x00\x00hi")
    assert struct.unpack("!II", data[24:32]) == (1001, 77) and data[33] == 0x18   # PSH|ACK


def test_bare_ip_uses_the_experimental_protocol():
    data = raw(CraftSpec(DST, src=SRC, proto="ip", ttl=9))
    assert data == b"E\x00\x00\x14\x00\x01\x00\x00\t\xfd\x99\xe9\n\x00\x01\x02\n\x00\x02\x02"
    assert data[9] == 253


def test_payload_of_text_size_and_both():
    assert payload_of("hé") == "hé".encode()
    assert payload_of(size=300) == bytes(range(256)) + bytes(range(44))
    assert payload_of() == b""
    with pytest.raises(ConfigError):
        payload_of("x", 3)
    assert len(raw(CraftSpec(DST, src=SRC, proto="udp", payload=payload_of(size=1472)))) == 1500


@pytest.mark.parametrize("kwargs, words", [
    ({"dst": "example.com"}, "not an IPv4 address"),
    ({"dst": "2001:db8::1"}, "only IPv4"),
    ({"dst": DST, "src": "h1"}, "source 'h1'"),
    ({"dst": DST, "proto": "sctp"}, "choose from"),
    ({"dst": DST, "proto": "tcp", "flags": "SXZ"}, "unknown letters XZ"),
])
def test_spec_is_checked_before_anything_is_sent(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        CraftSpec(**kwargs)


def test_match_reason_names_what_was_matched():
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
    syn = build(CraftSpec(DST, src=SRC, proto="tcp", sport=40000, dport=5001, seq=1000))
    syn_ack = IP(src=DST, dst=SRC) / TCP(sport=5001, dport=40000, flags="SA", seq=9, ack=1001)
    assert match_reason(syn, IP(bytes(syn_ack))) == ("TCP SYN-ACK from 10.0.2.2:5001 to our port 40000, "
                                                       "acknowledging our sequence number + 1")
    ping = build(CraftSpec(DST, src=SRC, icmp_id=3, icmp_seq=4))
    echo = IP(src=DST, dst=SRC) / ICMP(type=0, id=3, seq=4)
    assert match_reason(ping, IP(bytes(echo))) == "echo-reply from 10.0.2.2 with our id 3 and sequence 4"
    probe = build(CraftSpec(DST, src=SRC, proto="udp", ttl=1, ip_id=7))
    exceeded = (IP(src="10.0.1.1", dst=SRC) / ICMP(type=11) /
                IPerror(src=SRC, dst=DST, ttl=1, id=7, proto=17) / UDPerror(sport=40000, dport=33434))
    assert match_reason(probe, IP(bytes(exceeded))) == \
        "ICMP error from 10.0.1.1 quoting our packet (IP id 7, TTL left 1)"
    assert IP(bytes(exceeded)).answers(probe)        # scapy's sr matches it to our probe...
    other = build(CraftSpec(DST, src=SRC, proto="udp", ttl=1, ip_id=7, dport=33435))
    assert UDP in other and not IP(bytes(exceeded)).answers(other)   # ...and not to another port's
