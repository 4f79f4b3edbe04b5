"""The DHCP decoder and exchange finder on captures built with scapy's BOOTP/DHCP layers."""

import pytest

from wirelab.packets.scapyenv import load
from wirelab.services import dhcp_wire as w

load()
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.utils import wrpcap  # noqa: E402

SERVER_MAC, SERVER = "02:00:00:00:00:aa", "192.168.1.1"
A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"
BCAST = "ff:ff:ff:ff:ff:ff"


def _raw(mac):
    return bytes.fromhex(mac.replace(":", ""))


def req(mac, xid, kind, t, src="0.0.0.0", dst="255.255.255.255", ciaddr="0.0.0.0", opts=()):
    p = (Ether(src=mac, dst=BCAST if dst == "255.255.255.255" else SERVER_MAC) / IP(src=src, dst=dst)
         / UDP(sport=68, dport=67) / BOOTP(op=1, xid=xid, ciaddr=ciaddr, chaddr=_raw(mac))
         / DHCP(options=[("message-type", kind), *opts, "end"]))
    p.time = t
    return p


def rep(mac, xid, kind, t, yiaddr, dst=None, opts=()):
    p = (Ether(src=SERVER_MAC, dst=mac) / IP(src=SERVER, dst=dst or yiaddr) / UDP(sport=67, dport=68)
         / BOOTP(op=2, xid=xid, yiaddr=yiaddr, chaddr=_raw(mac))
         / DHCP(options=[("message-type", kind), ("server_id", SERVER), ("lease_time", 120),
                         ("renewal_time", 4), ("subnet_mask", "255.255.255.0"), ("router", SERVER),
                         ("name_server", "100.64.0.1"), *opts, "end"]))
    p.time = t
    return p


def dora_packets(mac, xid, ip, t0):
    sel = [("server_id", SERVER), ("requested_addr", ip)]
    return [req(mac, xid, "discover", t0), rep(mac, xid, "offer", t0 + 0.01, ip),
            req(mac, xid, "request", t0 + 0.02, opts=sel), rep(mac, xid, "ack", t0 + 0.03, ip)]


@pytest.fixture
def capture(tmp_path):
    a, b = dora_packets(A, 11, "192.168.1.101", 100.0), dora_packets(B, 22, "192.168.1.175", 100.005)
    interleaved = [p for pair in zip(a, b) for p in pair]
    renew = [req(A, 33, "request", 103.6, src="192.168.1.101", dst=SERVER, ciaddr="192.168.1.101"),
             rep(A, 33, "ack", 103.61, "192.168.1.101")]
    noise = [Ether(src=A, dst=SERVER_MAC) / IP(src="192.168.1.101", dst=SERVER) / UDP(sport=5353, dport=53),
             Ether(src=A, dst=BCAST) / IPv6() / UDP(sport=546, dport=547)]
    for p in noise:
        p.time = 101.0
    path = str(tmp_path / "lan.pcap")
    wrpcap(path, interleaved + noise + renew)
    return path


def test_every_message_is_decoded_with_its_options(capture):
    msgs = w.read_dhcp(capture)
    assert [m.kind for m in msgs] == ["DISCOVER", "DISCOVER", "OFFER", "OFFER", "REQUEST", "REQUEST",
                                      "ACK", "ACK", "REQUEST", "ACK"]
    offer = msgs[2]
    assert (offer.chaddr, offer.xid, offer.yiaddr, offer.server_id) == (A, 11, "192.168.1.101", SERVER)
    assert (offer.lease_s, offer.t1_s, offer.t2_s) == (120, 4, None)
    assert offer.routers == [SERVER] and offer.dns == ["100.64.0.1"] and offer.netmask == "255.255.255.0"
    assert msgs[0].broadcast and msgs[0].eth_dst == BCAST and msgs[0].ip_src == "0.0.0.0"
    assert msgs[4].requested_ip == "192.168.1.101" and msgs[4].server_id == SERVER
    assert msgs[0].t == pytest.approx(100.0)


def test_dora_per_client_and_leases(capture):
    msgs = w.read_dhcp(capture)
    for mac, ip in ((A, "192.168.1.101"), (B, "192.168.1.175")):
        ex = w.dora(msgs, mac)
        assert ex.ok and [m.kind for m in ex.messages] == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
        assert ex.ack.yiaddr == ip and len({m.xid for m in ex.messages}) == 1
    missing = w.dora(msgs, "02:00:00:00:00:99")
    assert not missing.ok and "no complete" in missing.why


def test_dora_needs_the_ack_of_the_requested_address(tmp_path):
    pk = dora_packets(A, 5, "192.168.1.101", 1.0)
    pk[3] = rep(A, 5, "ack", 1.03, "192.168.1.102")        # ACK of another address
    path = str(tmp_path / "x.pcap")
    wrpcap(path, pk)
    ex = w.dora(w.read_dhcp(path), A)
    assert not ex.ok and "'DISCOVER', 'OFFER', 'REQUEST', 'ACK'" in ex.why


def test_only_discovers_when_nobody_answers(tmp_path):
    path = str(tmp_path / "alone.pcap")
    wrpcap(path, [req(A, 9, "discover", 1.0 + k) for k in range(4)])
    msgs = w.read_dhcp(path)
    assert [m.kind for m in msgs] == ["DISCOVER"] * 4 and not w.dora(msgs, A).ok


def test_renewal_is_unicast_with_ciaddr_and_follows_the_ack(capture):
    msgs = w.read_dhcp(capture)
    (r,) = w.renewals(msgs, A)
    assert r.request.ip_dst == SERVER and r.request.ciaddr == "192.168.1.101" and r.answer.kind == "ACK"
    assert r.interval_s == pytest.approx(103.6 - 100.03, abs=1e-6)
    assert w.renewals(msgs, B) == []


def test_a_broadcast_request_is_not_a_renewal(tmp_path):
    pk = dora_packets(A, 5, "192.168.1.101", 1.0) + [
        req(A, 6, "request", 5.0, src="192.168.1.101", ciaddr="192.168.1.101")]   # REBINDING: broadcast
    path = str(tmp_path / "rebind.pcap")
    wrpcap(path, pk)
    assert w.renewals(w.read_dhcp(path), A) == []


def test_cut_and_odd_frames_are_skipped_or_kept_whole(tmp_path):
    good = dora_packets(A, 5, "192.168.1.101", 1.0)[1]
    raw = bytes(good)
    cut = Ether(raw[:200])                 # inside the BOOTP header: not a message
    cut.time = 2.0
    frag = good.copy()
    frag[IP].flags = "MF"
    frag.time = 3.0
    path = str(tmp_path / "odd.pcap")
    wrpcap(path, [cut, frag, good])
    assert [m.index for m in w.read_dhcp(path)] == [2]


def test_options_cut_short_keep_the_whole_ones():
    opts = bytes([53, 1, 5, 54, 4, 192, 168, 1, 1, 6, 8, 100, 64, 0, 1])   # DNS option lacks 4 bytes
    assert w.parse_options(opts, 0) == {53: b"\x05", 54: bytes([192, 168, 1, 1])}
    # RFC 3396: a repeated option is one long option
    assert w.parse_options(bytes([6, 4, 1, 2, 3, 4, 0, 6, 4, 5, 6, 7, 8, 255]), 0) == {6: bytes(range(1, 9))}
