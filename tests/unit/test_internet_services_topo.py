"""The internet topology's home variants (home=routed|nat, dhcp=0|1) as data: no root.

home=nat drops exactly the routes for the home LAN outside the home; dhcp=1
leaves hgw's WAN end and the home hosts without addresses and routes, and says
who leases what.
"""

import ipaddress

import pytest

from topologies.internet import HOME_NET, HOME_POOL, InternetTopo
from wirelab.errors import ConfigError
from wirelab.net import addressing


def test_default_is_routed_and_unchanged():
    routed, default = InternetTopo(home="routed"), InternetTopo()
    assert default.home == "routed" and not default.dhcp
    assert default.nat() is None and default.dhcp_plan() is None
    for node in default.router_names() + default.host_names():
        assert routed.static_routes(node) == default.static_routes(node)
        assert routed.interfaces(node) == default.interfaces(node)


def test_nat_drops_exactly_the_home_routes_outside_the_home():
    routed, nat = InternetTopo(), InternetTopo(home="nat")
    for node in routed.router_names() + routed.host_names():
        want = [(d, v) for d, v in routed.static_routes(node) if d != str(HOME_NET)]
        assert nat.static_routes(node) == want, node
        assert nat.interfaces(node) == routed.interfaces(node), node
    dropped = [n for n in routed.router_names() if routed.static_routes(n) != nat.static_routes(n)]
    assert dropped == ["bb1", "bb2", "bb3", "bb4", "isp"]


def test_nat_home_reaches_out_but_nobody_reaches_in():
    nat = InternetTopo(home="nat")
    assert nat.expected_path("home1", "srv1") == InternetTopo().expected_path("home1", "srv1")
    with pytest.raises(addressing.NoRoute, match="bb3 has no route to 192.168.1.10"):
        nat.trace("srv1", "home1")
    assert nat.nat() == {"router": "hgw", "outside": "hgw-eth0", "inside": "hgw-eth1",
                         "inside_net": "192.168.1.0/24"}


def test_routed_prefixes_hold_the_home_only_when_routed():
    home = ipaddress.ip_network("192.168.1.0/24")
    routed = [ipaddress.ip_network(n) for n in InternetTopo().routed_prefixes()]
    nat = [ipaddress.ip_network(n) for n in InternetTopo(home="nat").routed_prefixes()]
    assert any(home.subnet_of(n) for n in routed)
    assert not any(home.overlaps(n) for n in nat)
    for space in ("100.64.0.0/10", "10.0.0.0/8", "172.16.1.0/24"):
        assert any(ipaddress.ip_network(space).subnet_of(n) for n in nat), space


def test_dhcp_leaves_wan_and_home_hosts_unaddressed():
    topo = InternetTopo(home="nat", dhcp=1, home_hosts=3)
    assert topo.interfaces("hgw") == {"hgw-eth1": "192.168.1.1/24"}
    assert topo.interfaces("isp")["isp-eth0"] == "100.64.0.1/30"
    for host in topo.home_hosts:
        assert topo.interfaces(host) == {} and topo.static_routes(host) == []
        assert topo.interfaces(host, family=6) == {}
    assert topo.static_routes("hgw") == [] and topo.static_routes("hgw", family=6) == []
    # the link parameters the Testbed applies carry no address for those ends
    for _, _, info in topo.links(sort=True, withKeys=False, withInfo=True):
        for node, params in ((info["node1"], info["params1"]), (info["node2"], info["params2"])):
            if node in topo.home_hosts or (node == "hgw" and "isp" in (info["node1"], info["node2"])):
                assert "addrs" not in params and "addrs6" not in params
    assert topo.subnets()["isp--hgw"] == ipaddress.ip_network("100.64.0.0/30")


def test_dhcp_plan_names_servers_pools_and_clients():
    topo = InternetTopo(home="nat", dhcp=1)
    plan = topo.dhcp_plan()
    isp, home = plan["servers"]
    assert isp == {"node": "isp", "intf": "isp-eth0", "pool": ["100.64.0.2", "100.64.0.2"],
                   "netmask": "255.255.255.252", "router": "100.64.0.1", "clients": ["hgw"]}
    assert home == {"node": "hgw", "intf": "hgw-eth1", "pool": list(HOME_POOL),
                    "netmask": "255.255.255.0", "router": "192.168.1.1", "clients": ["home1", "home2"]}
    assert plan["clients"] == {"hgw": "hgw-eth0", "home1": "home1-eth0", "home2": "home2-eth0"}


@pytest.mark.parametrize("kwargs, match", [
    ({"home": "bridged"}, r"home must be one of routed, nat, not 'bridged'"),
    ({"dhcp": 2}, r"dhcp=2 is out of range 0\.\.1"),
    ({"dhcp": 1}, r"dhcp=1 needs home=nat"),
    ({"home": "nat", "dhcp": 1, "home_hosts": 101}, r"home_hosts=101 with dhcp=1 is more than"),
])
def test_bad_home_parameters_are_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        InternetTopo(**kwargs)
    assert "\n" not in str(err.value)


def test_mn_syntax_reaches_the_variants():
    from wirelab.geo.build import load_topology
    topo = load_topology("internet,home=nat,dhcp=1")
    assert topo.home == "nat" and topo.dhcp
