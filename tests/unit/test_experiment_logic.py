"""Pure logic of the routing and traceroute experiments (no root)."""

import importlib.util
import ipaddress
import os
import random

import pytest

from wirelab.errors import ConfigError
from wirelab.observe.traceroute_parse import parse
from wirelab.net import route_reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", os.path.join(REPO, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_traceroute_hops_and_stars():
    text = ("traceroute to 10.0.3.2 (10.0.3.2), 9 hops max, 60 byte packets\n"
            " 1  10.0.0.2  0.101 ms  0.031 ms  0.030 ms\n"
            " 2  * * *\n"
            " 3  10.0.2.2  0.2 ms !H  10.0.2.9  0.3 ms  0.4 ms\n")
    hops = parse(text)
    assert [h["addr"] for h in hops] == ["10.0.0.2", None, "10.0.2.9"]
    assert hops[0]["probes"][1] == {"addr": "10.0.0.2", "rtt_ms": 0.031, "note": None}
    assert hops[2]["probes"][0]["note"] == "!H"


@pytest.mark.parametrize("bad", [" 1  10.0.0.2  fast\n", "hello\n", " 2  10.0.0.2  1 ms\n",
                                 " 1  0.5 ms\n"])
def test_parse_traceroute_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_traceroute_probe_ttl_mapping_and_params():
    tr = load("traceroute")
    assert [tr.probe_ttl(33434 + k) for k in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    with pytest.raises(ConfigError, match="line_routers"):
        tr.TracerouteParams(line_routers=0)
    with pytest.raises(ConfigError, match="wait"):
        tr.TracerouteParams(wait=0)


def test_routing_reference_uses_local_table_first():
    local = [{"dst": "10.0.0.2/32", "type": 2, "gateway": None, "dev": "r1-eth0"}]
    main = [{"dst": "10.0.0.0/24", "type": 1, "gateway": None, "dev": "r1-eth0"},
            {"dst": "10.0.0.0/8", "type": 1, "gateway": "10.0.0.1", "dev": "r1-eth0"},
            {"dst": "10.1.0.0/16", "type": 1, "gateway": "10.0.1.1", "dev": "r1-eth1"}]
    assert route_reference.reference_choice(local, main, "10.0.0.2")["table"] == "local"
    assert route_reference.reference_choice(local, main, "10.0.0.7")["gateway"] is None
    assert route_reference.reference_choice(local, main, "10.1.2.3")["gateway"] == "10.0.1.1"
    assert route_reference.reference_choice(local, main, "10.9.2.3")["gateway"] == "10.0.0.1"
    assert route_reference.reference_choice(local, main, "192.0.2.1") is None
    # the kernel's special destinations
    assert route_reference.reference_choice(local, main, "0.0.0.0")["dev"] == "lo"
    assert route_reference.reference_choice(local, main, "10.0.0.2")["dev"] == "lo"
    default = main + [{"dst": "0.0.0.0/0", "type": 1, "gateway": "10.0.0.1", "dev": "r1-eth0"}]
    mc = route_reference.reference_choice(local, default, "239.1.2.3")
    assert (mc["type"], mc["gateway"], mc["dev"]) == (route_reference.RTN_MULTICAST, None, "r1-eth0")
    assert route_reference.reference_choice(local, default, "255.255.255.255")["type"] == route_reference.RTN_BROADCAST


def test_routing_destinations_cover_prefix_edges():
    routing = load("routing")
    table = [{"dst": "10.1.0.0/16"}, {"dst": "10.1.2.0/24"}]
    dests = route_reference.draw_destinations(table, 500, random.Random(1))
    assert len(dests) == 500 == len(set(dests))
    for edge in ("10.1.0.0", "10.1.255.255", "10.0.255.255", "10.2.0.0", "10.1.2.0", "10.1.2.255"):
        assert edge in dests
    with pytest.raises(ConfigError):
        routing.RoutingParams(destinations=0)


def test_routing_nested_chain_and_zoom_points():
    table = [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8"}, {"dst": "10.20.0.0/16"},
             {"dst": "10.20.30.0/24"}, {"dst": "172.16.1.0/30"}, {"dst": "10.99.0.0/16"}]
    assert [str(n) for n in route_reference.nested_chain(table)] == ["10.0.0.0/8", "10.20.0.0/16", "10.20.30.0/24"]
    assert route_reference.nested_chain([{"dst": "10.0.0.0/24"}, {"dst": "10.0.1.0/24"}])[0].prefixlen == 24
    pts = route_reference.evenly_spaced(ipaddress.ip_network("10.20.30.0/24"), 256)
    assert pts[0] == "10.20.30.0" and pts[-1] == "10.20.30.255" and len(set(pts)) == 256
