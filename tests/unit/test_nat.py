"""NAT parts without root: the nft ruleset, its read-back summary, conntrack
messages decoded (real pyroute2 nfct messages, encoded and parsed back), and
translations matched with captures on fabricated data."""

import pytest

from wirelab.observe.ipfrag import IpPacket
from wirelab.services import nat, nat_evidence as ne

TABLE = nat.table_name("20250101T000000-abc123")


def test_ruleset_masquerades_the_home_and_guards_the_way_in():
    text = nat.nat_ruleset(TABLE, "hgw-eth0", "hgw-eth1", "192.168.1.0/24")
    assert text.startswith(f"table ip {TABLE} {{") and TABLE == "wirelab_nat_20250101T000000-abc123"
    assert "type nat hook postrouting priority srcnat; policy accept;" in text
    assert 'oifname "hgw-eth0" ip saddr 192.168.1.0/24 counter name "masqueraded" masquerade' in text
    assert 'iifname "hgw-eth0" oifname "hgw-eth1" ct state established,related accept' in text
    assert 'iifname "hgw-eth0" oifname "hgw-eth1" counter name "inbound_dropped" drop' in text
    assert text.index("established,related accept") < text.index("inbound_dropped\" drop")
    assert " nat {" not in text and "table ip nat" not in text


def test_ruleset_rejects_a_bad_inside_network():
    with pytest.raises(ValueError):
        nat.nat_ruleset(TABLE, "hgw-eth0", "hgw-eth1", "192.168.1.1/24")


def test_ruleset_summary_reads_chains_and_statements_of_our_table_only():
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "ip", "name": TABLE}},
        {"chain": {"family": "ip", "table": TABLE, "name": "postrouting", "type": "nat",
                   "hook": "postrouting", "prio": 100, "policy": "accept"}},
        {"rule": {"family": "ip", "table": TABLE, "chain": "postrouting", "handle": 3,
                  "expr": [{"match": {}}, {"match": {}}, {"counter": "masqueraded"}, {"masquerade": None}]}},
        {"rule": {"family": "ip", "table": "someone_else", "chain": "x", "expr": [{"drop": None}]}},
    ]}
    assert nat.ruleset_summary(listing, TABLE) == {
        "chains": {"postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
        "rules": {"postrouting": [["match", "match", "counter", "masquerade"]]}}


def _tuple(src, dst, sport, dport, proto=6):
    return {"attrs": [["CTA_TUPLE_IP", {"attrs": [["CTA_IP_V4_SRC", src], ["CTA_IP_V4_DST", dst]]}],
                      ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", proto], ["CTA_PROTO_SRC_PORT", sport],
                                                     ["CTA_PROTO_DST_PORT", dport]]}]]}


def test_conntrack_messages_decode_to_tuples_status_and_state():
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg
    msg = nfct_msg()
    status = nat.IPS_SRC_NAT | nat.IPS_SEEN_REPLY | nat.IPS_ASSURED | nat.IPS_CONFIRMED
    msg["attrs"] = [["CTA_TUPLE_ORIG", _tuple("192.168.1.100", "10.20.30.10", 40001, 80)],
                    ["CTA_TUPLE_REPLY", _tuple("10.20.30.10", "100.64.0.2", 80, 1024)],
                    ["CTA_STATUS", status], ["CTA_TIMEOUT", 118], ["CTA_ID", 77],
                    ["CTA_PROTOINFO", {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [["CTA_PROTOINFO_TCP_STATE", 7]]}]]}]]
    msg.encode()
    back = nfct_msg(msg.data)
    back.decode()
    e = nat.conntrack_entry(back)
    assert e["orig"] == {"proto": "tcp", "src": "192.168.1.100", "dst": "10.20.30.10", "sport": 40001, "dport": 80}
    assert e["reply"]["dst"] == "100.64.0.2" and e["reply"]["dport"] == 1024
    assert e["src_nat"] and e["seen_reply"] and e["assured"] and e["tcp_state"] == "TIME_WAIT"
    assert (e["timeout"], e["id"]) == (118, 77)


# -- matching, on fabricated entries and packets ------------------------------------------

PUBLIC, SRV = "100.64.0.2", "10.20.30.10"


def entry(src, sport, out_port, dst=SRV, dport=80, proto="tcp"):
    return {"orig": {"proto": proto, "src": src, "dst": dst, "sport": sport, "dport": dport},
            "reply": {"proto": proto, "src": dst, "dst": PUBLIC, "sport": dport, "dport": out_port},
            "tcp_state": "TIME_WAIT", "src_nat": True}


def syn(src, sport, t, dst=SRV, dport=80, flags=0x02):
    return IpPacket(index=0, ts_ns=int(t * 1e9), src=src, dst=dst, proto=6, ident=1, df=True, mf=False,
                    offset=0, total_length=60, header_length=20, ttl=64, sport=sport, dport=dport,
                    tcp_payload=0, seq=1, tcp_flags=flags)


ENTRIES = [entry("192.168.1.100", 40001, 40001), entry("192.168.1.101", 40001, 1024),
           entry("192.168.1.100", 40002, 40002),
           entry("172.16.1.2", 53, 53, dst="100.64.0.1"),              # not from the home: ignored
           entry("192.168.1.100", 5353, 5353, dst="100.64.0.1", dport=53, proto="udp")]


def test_translations_keep_home_connections_and_filter_by_remote():
    trans = ne.translations(ENTRIES, "192.168.1.0/24", remote=(SRV, 80))
    assert [t.to_dict()["inside"] for t in trans] == ["192.168.1.100:40001", "192.168.1.101:40001",
                                                      "192.168.1.100:40002"]
    assert [t.port_changed for t in trans] == [False, True, False]
    assert len(ne.translations(ENTRIES, "192.168.1.0/24")) == 4
    assert ne.outside_unique(trans) == []
    clash = trans + [ne.Translation("tcp", ("192.168.1.102", 9), (PUBLIC, 1024), (SRV, 80))]
    assert ne.outside_unique(clash) == ["100.64.0.2:1024 for 192.168.1.101:40001 and 192.168.1.102:9"]


def _captures():
    lan = [syn("192.168.1.100", 40001, 1.000), syn("192.168.1.101", 40001, 1.001),
           syn("192.168.1.100", 40002, 1.002),
           syn(SRV, 80, 1.01, dst="192.168.1.100", dport=40001, flags=0x12)]     # SYN-ACK: not a first packet
    wan = [syn(PUBLIC, 40001, 1.0001), syn(PUBLIC, 1024, 1.0011), syn(PUBLIC, 40002, 1.0021)]
    return lan, wan


def test_every_translation_is_seen_on_both_sides_in_order():
    trans = ne.translations(ENTRIES, "192.168.1.0/24", remote=(SRV, 80))
    lan, wan = _captures()
    rows, strays = ne.match(trans, lan, wan, "192.168.1.0/24")
    assert [r["ok"] for r in rows] == [True, True, True] and strays == []
    assert rows[1]["outside"] == "100.64.0.2:1024" and rows[1]["delay_us"] == pytest.approx(100, abs=1)


def test_a_missing_or_early_wan_packet_fails_only_that_translation():
    trans = ne.translations(ENTRIES, "192.168.1.0/24", remote=(SRV, 80))
    lan, wan = _captures()
    rows, _ = ne.match(trans, lan, [wan[0], syn(PUBLIC, 1024, 0.5)], "192.168.1.0/24")
    assert [r["ok"] for r in rows] == [True, False, False]
    assert rows[1]["why"] == "WAN packet before the LAN one"
    assert rows[2]["why"] == "no first packet on the WAN side"


def test_strays_name_untranslated_connections_and_leaks():
    trans = ne.translations(ENTRIES, "192.168.1.0/24", remote=(SRV, 80))[:2]
    lan, wan = _captures()
    leak = syn("192.168.1.100", 40002, 1.003)        # a home source on the WAN side
    _, strays = ne.match(trans, lan, wan + [leak], "192.168.1.0/24")
    assert strays == ["LAN 192.168.1.100:40002 -> 10.20.30.10:80 has no conntrack translation",
                      "WAN packet from the home address 192.168.1.100 (to 10.20.30.10): not translated"]
