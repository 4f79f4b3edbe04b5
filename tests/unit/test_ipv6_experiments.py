"""IPv6 logic of the routing and traceroute experiments, and IPv6 in the pcap
readers (no root)."""

import importlib.util
import ipaddress
import os
import random

import pytest

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
    ref = routing.reference_choice6(LOCAL6, MAIN6, dst)
    assert (ref["table"], ref["gateway"], ref["dev"], ref["type"]) == (table, gateway, dev, rtype)
    assert routing.special_kind6(ref, dst) == kind
    kernel = {"gateway": gateway, "dev": dev, "type": rtype}
    assert routing.agrees(kernel, ref)
    assert not routing.agrees({**kernel, "dev": "eth9"}, ref)


@pytest.mark.parametrize("dst", ["::", "fe80:0:0:1::1", "2001:db8::1", "::ffff:10.1.0.2", "fd77:5::1"])
def test_reference_choice6_unreachable(dst):
    ref = routing.reference_choice6(LOCAL6, MAIN6, dst)
    assert ref is None and routing.special_kind6(ref, dst) == "unreachable"
    assert routing.agrees({"error": 101}, ref)          # ENETUNREACH
    assert not routing.agrees({"gateway": None, "dev": "eth1", "type": 1}, ref)


def test_draw_destinations6_is_seeded_and_covers_the_special_ones():
    tables = {"main": MAIN6, "local": LOCAL6}
    a = routing.draw_destinations6(tables, 200, random.Random(5), "fd77:4::/32")
    b = routing.draw_destinations6(tables, 200, random.Random(5), "fd77:4::/32")
    assert a == b and len(a) == 200 + len(routing.IPV6_SPECIAL)
    assert set(routing.IPV6_SPECIAL) <= set(a)
    assert all(ipaddress.ip_address(x).version == 6 for x in a)
    kinds = {routing.special_kind6(routing.reference_choice6(LOCAL6, MAIN6, x), x) for x in a}
    assert kinds == {"unicast", "local", "loopback", "anycast", "multicast", "link-local", "unreachable"}


def test_packet_cases6_name_folders_without_colons():
    lookups = {"bb1": {"tables": {"main": MAIN6, "local": LOCAL6}}}
    cases = routing.packet_cases(lookups, random.Random(1), family=6)
    assert [c.name for c in cases] == ["packets6/bb1-fd77.4.a14.1e00.._56", "packets6/bb1-fd77.4.a14.._48",
                                       "packets6/bb1-fd77.4.a00.._40"]
    for case in cases:
        assert routing.lpm(MAIN6, case.args["dst"])["dst"] == case.args["route"]
