"""Address allocation, summaries, longest-prefix match and next-hop tracing (no root)."""

import ipaddress
import random

import pytest

from wirelab.net import addressing
from wirelab.net.addressing import NoRoute, RoutingLoop, lpm, trace
from wirelab.errors import ConfigError


# -- allocation -------------------------------------------------------------------
def test_nth_subnet_matches_ipaddress_subnets():
    base = ipaddress.ip_network("10.64.0.0/16")
    every = list(base.subnets(new_prefix=24))
    assert addressing.capacity(base, 24) == len(every) == 256
    for i in (0, 1, 37, 255):
        assert addressing.nth_subnet(base, 24, i) == every[i]


@pytest.mark.parametrize("index", [-1, 256])
def test_nth_subnet_outside_the_base_names_the_limit(index):
    with pytest.raises(ConfigError, match=r"holds 256 /24 subnets: index .* outside 0\.\.255"):
        addressing.nth_subnet("10.64.0.0/16", 24, index)


def test_capacity_of_a_smaller_base_is_zero():
    assert addressing.capacity("10.0.0.0/24", 16) == 0


def test_interfaces_and_point_to_point_ends():
    assert addressing.interface("10.0.3.0/24", 1) == "10.0.3.1/24"
    assert addressing.point_to_point("172.16.1.8/30") == ("172.16.1.9/30", "172.16.1.10/30")
    with pytest.raises(ConfigError, match="hosts 1..2"):
        addressing.interface("172.16.1.8/30", 3)   # .11 is the broadcast address
    with pytest.raises(ConfigError):
        addressing.interface("10.0.3.0/24", 0)     # the network address


@pytest.mark.parametrize("value", ["10.0.0.1/24", "nonsense", "fe80::/64", None])
def test_network_rejects_what_is_not_an_ipv4_network(value):
    with pytest.raises(ConfigError, match="base"):
        addressing.network(value, "base")


# -- summaries and overlaps ------------------------------------------------------------
def test_summarize_covers_exactly_the_range():
    got = addressing.summarize("10.0.0.0/24", "10.0.4.0/24")
    assert [str(n) for n in got] == ["10.0.0.0/22", "10.0.4.0/24"]


def test_summarize_random_ranges_cover_exactly_and_minimally():
    rng = random.Random(7)
    base = ipaddress.ip_network("10.0.0.0/16")
    for _ in range(200):
        i, j = sorted(rng.sample(range(256), 2))
        first, last = addressing.nth_subnet(base, 24, i), addressing.nth_subnet(base, 24, j)
        got = addressing.summarize(first, last)
        assert sum(n.num_addresses for n in got) == (j - i + 1) * 256
        assert got[0].network_address == first.network_address
        assert got[-1].broadcast_address == last.broadcast_address
        assert addressing.overlaps(got) == []
        assert addressing.collapse(got) == got, "already the fewest prefixes"


def test_collapse_merges_neighbours():
    assert addressing.collapse(["10.0.0.0/24", "10.0.1.0/24", "10.0.1.128/25"]) == [
        ipaddress.ip_network("10.0.0.0/23")]


def test_overlaps_finds_nested_and_only_those():
    nets = ["10.0.0.0/8", "10.20.0.0/16", "192.168.1.0/24", "10.20.30.0/24", "11.0.0.0/8"]
    found = {(str(a), str(b)) for a, b in addressing.overlaps(nets)}
    assert found == {("10.0.0.0/8", "10.20.0.0/16"), ("10.0.0.0/8", "10.20.30.0/24"),
                     ("10.20.0.0/16", "10.20.30.0/24")}
    assert addressing.overlaps(["10.0.0.0/30", "10.0.0.4/30"]) == []


# -- longest-prefix match --------------------------------------------------------------
TABLE = [
    {"dst": "0.0.0.0/0", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "10.0.0.0/8", "gateway": "192.0.2.8", "dev": "eth1"},
    {"dst": "10.20.0.0/16", "gateway": "192.0.2.16", "dev": "eth2"},
    {"dst": "10.20.30.0/24", "gateway": "192.0.2.24", "dev": "eth3"},
]


@pytest.mark.parametrize("dst, via", [
    ("10.20.30.10", "192.0.2.24"),
    ("10.20.31.10", "192.0.2.16"),
    ("10.21.30.10", "192.0.2.8"),
    ("11.20.30.10", "192.0.2.1"),
    ("10.20.30.255", "192.0.2.24"),
    ("10.20.29.255", "192.0.2.16"),
])
def test_lpm_longest_prefix_wins_whatever_the_order(dst, via):
    assert lpm(TABLE, dst)["gateway"] == via
    assert lpm(list(reversed(TABLE)), dst)["gateway"] == via


def test_lpm_without_match_is_none_and_default_spelling():
    assert lpm(TABLE[1:], "11.0.0.1") is None
    assert lpm([{"dst": "default", "gateway": "192.0.2.1"}], "8.8.8.8")["gateway"] == "192.0.2.1"


def test_lpm_equal_prefixes_lower_metric_then_first_listed():
    a = {"dst": "10.0.0.0/8", "gateway": "a", "priority": 200}
    b = {"dst": "10.0.0.0/8", "gateway": "b", "priority": 100}
    c = {"dst": "10.0.0.0/8", "gateway": "c", "priority": 100}
    assert lpm([a, b, c], "10.1.1.1") is b


def test_lpm_takes_kernel_shaped_routes_and_does_not_interpret_types():
    # As Testbed.routes returns them; a blackhole still is the match (the kernel drops).
    table = [{"dst": "10.0.0.0/8", "gateway": None, "dev": None, "type": 6, "scope": 0},
             {"dst": "10.1.0.0/24", "gateway": None, "dev": "r1-eth0", "type": 1, "scope": 253}]
    assert lpm(table, "10.1.0.9")["dev"] == "r1-eth0"
    assert lpm(table, "10.2.0.9")["type"] == 6


def test_lpm_agrees_with_brute_force_on_random_tables():
    rng = random.Random(11)
    for _ in range(50):
        table = []
        for i in range(rng.randint(1, 30)):
            plen = rng.randint(0, 32)
            addr = rng.getrandbits(32) & (((1 << plen) - 1) << (32 - plen))
            table.append({"dst": f"{ipaddress.ip_address(addr)}/{plen}", "gateway": str(i)})
        for _ in range(50):
            # half the probes inside some route, half anywhere
            if rng.random() < 0.5:
                net = ipaddress.ip_network(rng.choice(table)["dst"])
                dst = ipaddress.ip_address(int(net.network_address) + rng.randrange(net.num_addresses))
            else:
                dst = ipaddress.ip_address(rng.getrandbits(32))
            matching = [r for r in table if dst in ipaddress.ip_network(r["dst"])]
            want = max(matching, key=lambda r: ipaddress.ip_network(r["dst"]).prefixlen,
                       default=None)
            got = lpm(table, dst)
            if want is None:
                assert got is None
            else:
                assert ipaddress.ip_network(got["dst"]).prefixlen == \
                    ipaddress.ip_network(want["dst"]).prefixlen


# -- tracing next hops -----------------------------------------------------------------
# a (10.0.0.1) -- x -- (10.0.1.2) b ; x has .2 and 10.0.1.1
OWNERS = {"10.0.0.1": ("a", "a-eth0"), "10.0.0.2": ("x", "x-eth0"),
          "10.0.1.1": ("x", "x-eth1"), "10.0.1.2": ("b", "b-eth0")}
SEGMENTS = {("a", "a-eth0"): "s0", ("x", "x-eth0"): "s0",
            ("x", "x-eth1"): "s1", ("b", "b-eth0"): "s1"}


def tables(**override):
    t = {
        "a": [{"dst": "10.0.0.0/24", "gateway": None, "dev": "a-eth0"},
              {"dst": "0.0.0.0/0", "gateway": "10.0.0.2", "dev": "a-eth0"}],
        "x": [{"dst": "10.0.0.0/24", "gateway": None, "dev": "x-eth0"},
              {"dst": "10.0.1.0/24", "gateway": None, "dev": "x-eth1"}],
        "b": [{"dst": "10.0.1.0/24", "gateway": None, "dev": "b-eth0"},
              {"dst": "0.0.0.0/0", "gateway": "10.0.1.1", "dev": "b-eth0"}],
    }
    t.update(override)
    return t


def test_trace_follows_next_hops_and_names_inbound_interfaces():
    assert trace(tables(), OWNERS, "a", "10.0.1.2", SEGMENTS) == [
        ("a", None), ("x", "x-eth0"), ("b", "b-eth0")]
    assert trace(tables(), OWNERS, "b", "10.0.0.2", SEGMENTS) == [("b", None), ("x", "x-eth1")]
    assert trace(tables(), OWNERS, "x", "10.0.1.1", SEGMENTS) == [("x", None)]


def test_trace_reports_a_missing_route():
    with pytest.raises(NoRoute, match="x has no route to 10.9.9.9"):
        trace(tables(), OWNERS, "a", "10.9.9.9", SEGMENTS)


def test_trace_reports_a_loop():
    looping = tables(x=tables()["x"] + [{"dst": "0.0.0.0/0", "gateway": "10.0.0.1",
                                         "dev": "x-eth0"}],
                     a=tables()["a"] + [{"dst": "10.9.0.0/16", "gateway": "10.0.0.2",
                                         "dev": "a-eth0"}])
    with pytest.raises(RoutingLoop, match="loop a > x > a"):
        trace(looping, OWNERS, "a", "10.9.9.9", SEGMENTS)


def test_trace_rejects_a_next_hop_on_another_segment():
    wrong = tables(a=[{"dst": "10.0.1.0/24", "gateway": "10.0.1.1", "dev": "a-eth0"}])
    with pytest.raises(NoRoute, match="not on that segment"):
        trace(wrong, OWNERS, "a", "10.0.1.2", SEGMENTS)
    # without segment knowledge the same table "works": the check is what catches it
    assert trace(wrong, OWNERS, "a", "10.0.1.2")[-1] == ("b", "b-eth0")


# -- IPv6 from the IPv4 plan --------------------------------------------------------------
def test_ipv6_prefixes_embed_the_ipv4_bits_after_the_block():
    block = "fd77:4::/32"
    assert str(addressing.ipv6_prefix(block, "10.0.0.0/8")) == "fd77:4:a00::/40"
    assert str(addressing.ipv6_prefix(block, "10.20.0.0/16")) == "fd77:4:a14::/48"
    assert str(addressing.ipv6_prefix(block, "10.20.30.0/24")) == "fd77:4:a14:1e00::/56"
    assert str(addressing.ipv6_prefix(block, "default")) == "::/0"
    assert str(addressing.ipv6_subnet(block, "172.16.1.4/30")) == "fd77:4:ac10:104::/64"
    assert addressing.ipv6_interface(block, "172.16.1.6/30") == "fd77:4:ac10:104::2/64"
    assert addressing.ipv6_interface(block, "192.168.1.10/24") == "fd77:4:c0a8:100::a/64"


def test_ipv6_prefixes_keep_containment_both_ways():
    rng = random.Random(3)
    nets = [ipaddress.ip_network((rng.getrandbits(32), rng.randint(0, 32)), strict=False)
            for _ in range(200)]
    nets += [n.supernet(new_prefix=max(0, n.prefixlen - 3)) for n in nets[:50]]
    for a in nets[:120]:
        for b in nets:
            a6, b6 = (addressing.ipv6_prefix("fd77:1::/32", n) for n in (a, b))
            assert a.subnet_of(b) == a6.subnet_of(b6)
            assert a.overlaps(b) == a6.overlaps(b6)


@pytest.mark.parametrize("block, message", [
    ("fd77::/48", "must be a /32 inside fd00::/8"),
    ("2001:db8::/32", "must be a /32 inside fd00::/8"),
    ("10.0.0.0/8", "is not an IPv6 network"),
    ("fd77::1/32", "is not an IPv6 network"),
])
def test_ipv6_block_must_be_a_ula_32(block, message):
    with pytest.raises(ConfigError, match=message):
        addressing.ipv6_block(block)


def test_lpm_over_ipv6_and_mixed_tables():
    assert lpm([{"dst": "default", "gateway": "fd77::9"}], "2001:db8::1")["gateway"] == "fd77::9"
    table = [{"dst": "0.0.0.0/0", "gateway": "10.0.0.1"},
             {"dst": "::/0", "gateway": "fd77::1"},
             {"dst": "fd77:4:a00::/40", "gateway": "fd77::2"},
             {"dst": "fd77:4:a14:1e00::/56", "gateway": "fd77::3"}]
    assert lpm(table, "fd77:4:a14:1e00::a")["gateway"] == "fd77::3"
    assert lpm(table, "fd77:4:a14:100::2")["gateway"] == "fd77::2"
    assert lpm(table, "2001:db8::1")["gateway"] == "fd77::1"
    assert lpm(table, "192.0.2.1")["gateway"] == "10.0.0.1"      # IPv4 never takes ::/0
    assert lpm(table[2:], "10.20.30.1") is None                 # nor an IPv6 prefix
