"""The four topologies as data: address plans, routing tables, graphs, paths, bad input.

No root: a Topo only computes. Reachability is proved by following each node's
intended table with the pure-Python longest-prefix match (wirelab.net.addressing).
"""

import ipaddress
import os
import re
import subprocess
import sys

import pytest

import topologies
from topologies import LongPathHost, LongPathRouter
from topologies.cluster import ClusterTopo
from topologies.dumbbell import DumbbellTopo
from topologies.internet import InternetTopo
from topologies.line import LineTopo
from wirelab.net import addressing
from wirelab.errors import ConfigError
from wirelab.net.nodes import Host, LanBridge, LinuxRouter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (constructor, args, kwargs): small and large instances of each.
CASES = {
    "line1": (LineTopo, (1,), {}),
    "line5": (LineTopo, (5,), {}),
    "line70-base": (LineTopo, (), {"n": 70, "base": "10.64.0.0/20", "link_prefix": 28}),
    "line200": (LineTopo, (200,), {}),
    "dumbbell": (DumbbellTopo, (), {}),
    "dumbbell3x2": (DumbbellTopo, (3, 2), {}),
    "cluster": (ClusterTopo, (), {}),
    "cluster8x2": (ClusterTopo, (), {"workers": 8, "clients": 2}),
    "internet": (InternetTopo, (), {}),
    "internet3x4": (InternetTopo, (), {"home_hosts": 3, "servers": 4}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def topo(request):
    cls, args, kwargs = CASES[request.param]
    return cls(*args, **kwargs)


# -- address plan ------------------------------------------------------------------
def test_link_subnets_do_not_overlap(topo):
    nets = list(topo.subnets().values())
    assert addressing.overlaps(nets) == []


def test_every_link_end_is_a_usable_address_of_its_subnet(topo):
    seen = {}
    for segment, net in topo.subnets().items():
        ends = topo.segment_ends(segment)
        assert len(ends) >= 2, f"{segment} has {len(ends)} ends"
        for node, ifname, addr in ends:
            if topo.role(node) == "lan":
                assert addr is None, f"bridge port {ifname} has an address"
                continue
            iface = ipaddress.ip_interface(addr)
            assert iface.network == net, f"{ifname} {addr} outside {segment} {net}"
            assert iface.ip not in (net.network_address, net.broadcast_address)
            assert str(iface.ip) not in seen, f"{iface.ip} on {ifname} and {seen.get(str(iface.ip))}"
            seen[str(iface.ip)] = ifname


def test_interface_names_are_mininets_and_fit_the_kernel(topo):
    for src, dst, info in topo.links(sort=True, withKeys=False, withInfo=True):
        for node, port in ((info["node1"], info["port1"]), (info["node2"], info["port2"])):
            ifname = f"{node}-eth{port}"
            assert len(ifname) <= 15
            if topo.role(node) != "lan":
                assert ifname in topo.interfaces(node), f"{ifname} not in the plan"
                want = topo.interfaces(node)[ifname]
                got = info["params1" if node == info["node1"] else "params2"]["addrs"]
                assert got == [want]


def test_node_classes(topo):
    for name in topo.nodes():
        cls = topo.nodeInfo(name)["cls"]
        role = topo.role(name)
        if role == "router":
            assert issubclass(cls, LinuxRouter)
        elif role == "host":
            assert issubclass(cls, Host) and not issubclass(cls, LinuxRouter)
        else:
            assert cls is LanBridge and topo.isSwitch(name)


def test_host_ips_are_the_plans_first_interfaces(topo):
    ips = topo.host_ips()
    assert sorted(ips) == sorted(topo.host_names())
    for host, ip in ips.items():
        assert topo.owners()[ip][0] == host


# -- routing tables ------------------------------------------------------------------
def test_every_static_route_has_an_on_link_next_hop(topo):
    for node in topo.router_names() + topo.host_names():
        for route in topo.intended_routes(node):
            if route["gateway"]:
                assert route["dev"], f"{node}: {route} has no connected interface for its gateway"
                owner = topo.owners().get(route["gateway"])
                assert owner and owner[0] != node, f"{node}: next hop {route['gateway']} is nobody"


def test_every_address_reachable_from_every_node_without_loops(topo):
    """Forward with LPM over the intended tables, from each node to every
    address in the plan (hosts and router interfaces), and back."""
    tables, owners, segments = topo.tables(), topo.owners(), topo.segments()
    sources = topo.router_names() + topo.host_names()
    targets = list(owners)
    if len(sources) > 50:   # line200: every node to both hosts, hosts to everything
        pairs = [(s, t) for s in sources for t in (topo.ip("h1"), topo.ip("h2"))]
        pairs += [(h, t) for h in topo.host_names() for t in targets]
    else:
        pairs = [(s, t) for s in sources for t in targets]
    for src, dst in pairs:
        hops = addressing.trace(tables, owners, src, dst, segments)
        assert hops[-1][0] == owners[dst][0]


def test_no_router_has_more_than_a_handful_of_routes(topo):
    for router in topo.router_names():
        assert len(topo.static_routes(router)) <= 16, router


def test_unplanned_addresses_are_not_bounced_back_and_forth_on_line():
    # No default routes in the line: an address outside the plan is unreachable.
    topo = LineTopo(5)
    with pytest.raises(addressing.NoRoute, match="r1 has no route to 192.0.2.1"):
        topo.trace("h1", "192.0.2.1")


# -- graphs --------------------------------------------------------------------------
@pytest.mark.parametrize("case, routers, hosts, lans, links", [
    ("line1", 1, 2, 0, 2),
    ("line5", 5, 2, 0, 6),
    ("line200", 200, 2, 0, 201),
    ("dumbbell", 2, 2, 0, 3),
    ("dumbbell3x2", 2, 5, 0, 6),
    ("cluster", 2, 5, 2, 3 + 4 + 1),
    ("cluster8x2", 2, 11, 2, 3 + 9 + 2),
    ("internet", 9, 6, 2, 12 + 2 + 2 + 2),
    ("internet3x4", 9, 9, 2, 12 + 2 + 3 + 4),
])
def test_node_and_link_counts(case, routers, hosts, lans, links):
    cls, args, kwargs = CASES[case]
    topo = cls(*args, **kwargs)
    assert len(topo.router_names()) == routers
    assert len(topo.host_names()) == hosts
    assert len(topo.lan_names()) == lans
    assert len(topo.switches()) == lans
    assert len(topo.nodes()) == routers + hosts + lans
    assert len(topo.links()) == links


# -- the line ------------------------------------------------------------------------
def test_line_plan_and_paths():
    topo = LineTopo(3)
    assert topo.host_ips() == {"h1": "10.0.0.1", "h2": "10.0.3.2"}
    assert topo.interfaces("r2") == {"r2-eth0": "10.0.1.2/24", "r2-eth1": "10.0.2.1/24"}
    assert topo.interface_facing("r2", "r1") == "r2-eth0"
    assert topo.expected_path("h1", "h2") == ["r1", "r2", "r3"]
    assert topo.expected_path("h2", "h1") == ["r3", "r2", "r1"]
    assert topo.expected_path("h1", "10.0.2.1") == ["r1"]   # r2's far interface
    assert topo.expected_traceroute("h1", "h2") == ["10.0.0.2", "10.0.1.2", "10.0.2.2", "10.0.3.2"]
    assert topo.expected_traceroute("h2", "h1") == ["10.0.3.1", "10.0.2.1", "10.0.1.1", "10.0.0.1"]


def test_line_tables_are_summarised():
    topo = LineTopo(5)
    assert topo.static_routes("r3") == [("10.0.0.0/23", "10.0.2.1"), ("10.0.4.0/23", "10.0.3.2")]
    assert topo.static_routes("h1") == [("default", "10.0.0.2")]
    assert topo.intended_routes("r1") == [
        {"dst": "10.0.0.0/24", "gateway": None, "dev": "r1-eth0"},
        {"dst": "10.0.1.0/24", "gateway": None, "dev": "r1-eth1"},
        {"dst": "10.0.2.0/23", "gateway": "10.0.1.2", "dev": "r1-eth1"},
        {"dst": "10.0.4.0/23", "gateway": "10.0.1.2", "dev": "r1-eth1"},
    ]


def test_line200_is_quick_to_plan_and_h1_to_h2_crosses_every_router():
    topo = LineTopo(200)
    assert topo.expected_path("h1", "h2") == [f"r{i}" for i in range(1, 201)]
    assert max(len(topo.static_routes(r)) for r in topo.router_names()) <= 16


def test_long_lines_raise_the_ttl_and_short_ones_do_not():
    # A packet starting at TTL 64 survives 63 routers; the echo reply needs it too.
    short, long_ = LineTopo(63), LineTopo(64)
    assert all(short.nodeInfo(n)["cls"] in (Host, LinuxRouter) for n in short.nodes())
    assert all(long_.nodeInfo(n)["cls"] in (LongPathHost, LongPathRouter) for n in long_.nodes())
    assert LongPathRouter.SYSCTLS["net/ipv4/ip_default_ttl"] == "255"
    assert LongPathRouter.SYSCTLS["net/ipv4/ip_forward"] == "1"


def test_line_with_another_base():
    topo = LineTopo(n=2, base="192.168.0.0/24", link_prefix=30)
    assert topo.host_ips() == {"h1": "192.168.0.1", "h2": "192.168.0.10"}
    assert topo.expected_path("h1", "h2") == ["r1", "r2"]


# -- dumbbell, cluster, internet ----------------------------------------------------------
def test_dumbbell_bottleneck_is_eth0_on_both_routers():
    topo = DumbbellTopo(3, 2)
    assert topo.bottleneck() == {"r1": "r1-eth0", "r2": "r2-eth0"}
    assert topo.interfaces("r1")["r1-eth0"] == "10.0.0.1/24"
    assert topo.interface_facing("r1", "snd3") == "r1-eth3"
    assert topo.interface_facing("r2", "rcv2") == "r2-eth2"
    assert topo.senders == ["snd1", "snd2", "snd3"] and topo.receivers == ["rcv1", "rcv2"]
    assert topo.host_ips()["snd3"] == "10.1.3.2" and topo.host_ips()["rcv2"] == "10.2.2.2"
    for s in topo.senders:
        for r in topo.receivers:
            assert topo.expected_path(s, r) == ["r1", "r2"]
            assert topo.expected_path(r, s) == ["r2", "r1"]
    assert topo.expected_path("snd1", "snd2") == ["r1"]


def test_cluster_plan_and_paths():
    topo = ClusterTopo(workers=3, clients=2)
    assert topo.manager == "manager" and topo.workers == ["w1", "w2", "w3"]
    assert topo.host_ips() == {"manager": "10.1.0.2", "w1": "10.1.0.11", "w2": "10.1.0.12",
                               "w3": "10.1.0.13", "client1": "10.2.0.11", "client2": "10.2.0.12"}
    assert topo.expected_path("manager", "w3") == []          # same LAN, no router
    assert topo.expected_path("client1", "w2") == ["edge", "gw"]
    assert topo.expected_path("w2", "client2") == ["gw", "edge"]
    assert topo.interface_facing("gw", "edge") == "gw-eth0"
    assert topo.interface_facing("gw", "srvlan") == "gw-eth1"


INTERNET_PATHS = [
    ("home1", "srv1", ["hgw", "isp", "bb1", "bb3", "cloudgw"]),
    ("home1", "campus", ["hgw", "isp", "bb1", "bb2", "unigw"]),
    ("home2", "office", ["hgw", "isp", "bb1", "bb4", "corpgw"]),
    ("srv2", "home1", ["cloudgw", "bb3", "bb1", "isp", "hgw"]),
    ("campus", "office", ["unigw", "bb2", "bb3", "bb4", "corpgw"]),
    ("office", "campus", ["corpgw", "bb4", "bb3", "bb2", "unigw"]),
    ("campus", "srv1", ["unigw", "bb2", "bb3", "cloudgw"]),
    ("office", "srv1", ["corpgw", "bb4", "bb3", "cloudgw"]),
    ("home1", "home2", []),
]


@pytest.mark.parametrize("src, dst, path", INTERNET_PATHS)
def test_internet_paths(src, dst, path):
    assert InternetTopo().expected_path(src, dst) == path


def test_internet_longest_prefix_match_picks_three_neighbours_at_bb1_and_bb3():
    topo = InternetTopo()
    for router, want in (("bb1", {"10.1.0.2": "bb4", "10.20.1.2": "bb2", "10.20.30.10": "bb3"}),
                         ("bb3", {"10.1.0.2": "bb4", "10.20.1.2": "bb2", "10.20.30.10": "cloudgw"})):
        table = topo.intended_routes(router)
        got = {dst: topo.owners()[addressing.lpm(table, dst)["gateway"]][0] for dst in want}
        assert got == want
        # the three prefixes are nested, so only the prefix length decides
        assert addressing.lpm(table, "10.20.30.10")["dst"] == "10.20.30.0/24"
        assert addressing.lpm(table, "10.20.99.1")["dst"] == "10.20.0.0/16"
        assert addressing.lpm(table, "10.99.0.1")["dst"] == "10.0.0.0/8"


def test_internet_backbone_is_default_free_and_stubs_use_defaults():
    topo = InternetTopo()
    for router in topo.router_names():
        has_default = any(dst == "default" for dst, _ in topo.static_routes(router))
        assert has_default == (not router.startswith("bb")), router


def test_internet_backbone_has_two_paths_between_every_pair():
    topo = InternetTopo()
    bb = [r for r in topo.router_names() if r.startswith("bb")]
    adjacency = {r: set(topo.neighbours(r)) & set(bb) for r in bb}
    for a in bb:
        for b in bb:
            if a == b:
                continue
            for cut in adjacency[a] - {b}:   # remove any one neighbour: b still reachable
                seen, todo = {a}, [a]
                while todo:
                    n = todo.pop()
                    for m in adjacency[n]:
                        if m not in seen and not (n == a and m == cut):
                            seen.add(m)
                            todo.append(m)
                assert b in seen, f"{a}->{b} depends on the link {a}-{cut}"


ROUTE_LINE = re.compile(r"^ {8}(default|\d+\.\d+\.\d+\.\d+/\d+)\s+via\s+(\S+)\s+(\S+)")
HEADER_LINE = re.compile(r"^ {4}(\w+)\s*$")


def test_internet_docstring_documents_every_routers_table_exactly():
    topo = InternetTopo()
    documented, current = {}, None
    for line in InternetTopo.__doc__.splitlines():
        if HEADER_LINE.match(line) and HEADER_LINE.match(line).group(1) in topo.router_names():
            current = HEADER_LINE.match(line).group(1)
            documented[current] = []
        elif current and ROUTE_LINE.match(line):
            dst, via, name = ROUTE_LINE.match(line).groups()
            assert topo.owners()[via][0] == name, f"{current}: {via} is not {name}"
            documented[current].append((dst, via))
    assert sorted(documented) == topo.router_names()
    for router in topo.router_names():
        assert documented[router] == topo.static_routes(router), router


def test_internet_interfaces_as_documented():
    topo = InternetTopo()
    doc = " ".join(InternetTopo.__doc__.split())
    for router in topo.router_names():
        facing = ", ".join(f"{i.split('-')[1]} {peer}" for i, peer in
                           zip(topo.interfaces(router), topo.neighbours(router)))
        assert f"{router} {facing}" in doc, f"{router}: {facing}"


def test_every_class_has_an_ascii_diagram():
    for cls in (LineTopo, DumbbellTopo, ClusterTopo, InternetTopo):
        assert "::" in cls.__doc__ and "--" in cls.__doc__, cls.__name__


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("cls, args, kwargs, match", [
    (LineTopo, (0,), {}, r"n \(routers\)=0 is out of range 1\.\.254"),
    (LineTopo, (-3,), {}, r"out of range 1\.\.254"),
    (LineTopo, (255,), {}, r"out of range 1\.\.254 \(a packet's TTL"),
    (LineTopo, ("abc",), {}, r"must be an integer from 1 to 254, not 'abc'"),
    (LineTopo, (2.5,), {}, r"must be an integer"),
    (LineTopo, (True,), {}, r"must be an integer"),
    (LineTopo, (), {"n": 20, "base": "10.0.0.0/20"}, r"1\.\.15 \(10\.0\.0\.0/20 holds 16 /24"),
    (LineTopo, (), {"base": "10.0.0.1/16"}, r"base: '10\.0\.0\.1/16' is not an IPv4 network"),
    (LineTopo, (), {"link_prefix": 31}, r"link_prefix=31 is out of range 16\.\.30"),
    (LineTopo, (), {"routers": 3}, r"unexpected keyword argument 'routers' \(parameters: n, base"),
    (LineTopo, (1, "10.0.0.0/16", 24, 9), {}, r"too many positional arguments"),
    (DumbbellTopo, (0,), {}, r"senders=0 is out of range 1\.\.255"),
    (DumbbellTopo, (1, 256), {}, r"receivers=256 is out of range 1\.\.255"),
    (DumbbellTopo, ("x",), {}, r"senders must be an integer"),
    (ClusterTopo, (0,), {}, r"workers=0 is out of range 1\.\.244"),
    (ClusterTopo, (245,), {}, r"workers=245 is out of range 1\.\.244"),
    (ClusterTopo, (), {"clients": 0}, r"clients=0"),
    (ClusterTopo, (), {"managers": 2}, r"unexpected keyword argument 'managers'"),
    (InternetTopo, (), {"servers": 0}, r"servers=0 is out of range 1\.\.245"),
    (InternetTopo, (), {"home_hosts": "two"}, r"home_hosts must be an integer"),
])
def test_bad_parameters_are_one_line_config_errors(cls, args, kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        cls(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_numbers_given_as_strings_are_accepted():
    assert LineTopo("4").n == 4
    assert len(ClusterTopo(workers="2").workers) == 2


@pytest.mark.parametrize("call, match", [
    (lambda t: t.expected_path("h1", "h9"), r"no node named 'h9'"),
    (lambda t: t.expected_path("nobody", "h2"), r"no node named 'nobody'"),
    (lambda t: t.interfaces("r7"), r"no node named 'r7'"),
    (lambda t: t.intended_routes("h3"), r"no node named 'h3'"),
    (lambda t: t.interface_facing("r1", "h2"), r"r1 has no link to h2"),
    (lambda t: t.ip("r1", "r1-eth7"), r"r1 has no interface 'r1-eth7'"),
])
def test_unknown_names_are_config_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call(LineTopo(2))


# -- mn --custom ---------------------------------------------------------------------
def test_all_topos_registry():
    assert set(topologies.all_topos()) == {"line", "cluster", "dumbbell", "internet", "zoo"}


@pytest.mark.parametrize("name", ["line", "cluster", "dumbbell", "internet"])
def test_file_works_the_way_mn_custom_loads_it(name, tmp_path):
    """mn exec()s the file: no __file__, repo not on sys.path, /usr/bin/python3
    (no venv). Do exactly that in a clean interpreter started elsewhere."""
    path = os.path.join("topologies", f"{name}.py")
    probe = (
        "import sys\n"
        f"p = {os.path.join(REPO, path)!r}\n"
        "g = {}\n"
        "exec(compile(open(p).read(), p, 'exec'), g, g)\n"
        f"topo = g['topos'][{name!r}]()\n"
        "print(sorted(topo.host_ips().items())[0], len(topo.links()))\n"
        "try:\n"
        f"    g['topos'][{name!r}]('abc')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    done = subprocess.run([python, "-I", "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ConfigError"


def _top_level_names(path):
    import ast
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.skipif(not os.path.exists("/usr/bin/mn"), reason="Mininet's mn script is not installed")
@pytest.mark.parametrize("name", ["line", "cluster", "dumbbell", "internet"])
def test_file_does_not_clobber_mns_globals(name):
    """mn copies every top-level name of a --custom file into its own globals:
    a constant called LINKS once replaced mn's link table and broke it."""
    mine = _top_level_names(os.path.join(REPO, "topologies", f"{name}.py"))
    mns = _top_level_names("/usr/bin/mn")
    harmless = {"os", "sys", "topos"}   # same modules; 'topos' is merged on purpose
    assert (mine & mns) - harmless == set()


def test_lans_ask_for_their_own_namespace():
    # mn passes inNamespace=False to every switch; without this the bridges
    # (each with a br0) would land in the root namespace and collide.
    topo = InternetTopo()
    for lan in topo.lan_names():
        assert topo.nodeInfo(lan)["inNamespace"] is True


# -- IPv6: the same plan, dual-stack ------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_ipv6_plan_is_deterministic(case):
    cls, args, kwargs = CASES[case]
    topo, again = cls(*args, **kwargs), cls(*args, **kwargs)
    for node in topo.router_names() + topo.host_names():
        assert again.interfaces(node, family=6) == topo.interfaces(node, family=6)
        assert again.static_routes(node, family=6) == topo.static_routes(node, family=6)


def test_ipv6_subnets_are_64s_in_the_block_without_overlap(topo):
    block = ipaddress.ip_network(topo.ipv6_block)
    nets6 = topo.subnets(family=6)
    assert set(nets6) == set(topo.subnets())
    assert all(n.prefixlen == 64 and n.subnet_of(block) for n in nets6.values())
    assert addressing.overlaps(list(nets6.values())) == []
    for segment, net in nets6.items():
        for node, ifname, addr in topo.segment_ends(segment):
            if addr is None:
                continue
            v6 = ipaddress.ip_interface(topo.interfaces(node, family=6)[ifname])
            assert v6.network == net, f"{ifname} {v6} outside {segment} {net}"
            # host number k of the IPv4 subnet is ::k of the /64
            k = int(ipaddress.ip_interface(addr).ip) - int(topo.subnets()[segment].network_address)
            assert int(v6.ip) - int(net.network_address) == k


def test_ipv6_link_params_carry_the_plan(topo):
    for src, dst, info in topo.links(sort=True, withKeys=False, withInfo=True):
        for node, port, params in ((info["node1"], info["port1"], info["params1"]),
                                   (info["node2"], info["port2"], info["params2"])):
            if topo.role(node) != "lan":
                assert params["addrs6"] == [topo.interfaces(node, family=6)[f"{node}-eth{port}"]]


def test_ipv6_routes_mirror_the_ipv4_ones(topo):
    """Same count, same next-hop node, prefixes /L -> /(32+L), default -> ::/0; and
    the IPv4 prefixes of a table nest exactly as their IPv6 twins do."""
    owners4, owners6 = topo.owners(), topo.owners(family=6)
    for node in topo.router_names() + topo.host_names():
        v4, v6 = topo.static_routes(node), topo.static_routes(node, family=6)
        assert len(v4) == len(v6)
        for (dst4, via4), (dst6, via6) in zip(v4, v6):
            assert owners4[via4][0] == owners6[via6][0]
            if dst4 == "default":
                assert dst6 == "default"
                continue
            n4, n6 = ipaddress.ip_network(dst4), ipaddress.ip_network(dst6)
            assert n6.prefixlen == 32 + n4.prefixlen and n6 == addressing.ipv6_prefix(topo.ipv6_block, n4)
        pairs = [(ipaddress.ip_network(a[0]), ipaddress.ip_network(b[0]))
                 for a in v4 for b in v4 if "default" not in (a[0], b[0])]
        for a, b in pairs:
            a6, b6 = (addressing.ipv6_prefix(topo.ipv6_block, n) for n in (a, b))
            assert a.subnet_of(b) == a6.subnet_of(b6) and a.overlaps(b) == a6.overlaps(b6)


def test_ipv6_every_address_reachable_on_the_ipv4_path(topo):
    """LPM over the IPv6 tables reaches every IPv6 address of the plan, through
    the same nodes as IPv4 to the twin address."""
    tables, owners, segments = topo.tables(family=6), topo.owners(family=6), topo.segments()
    twin = {topo.interfaces(n, 6)[i].split("/")[0]: a.split("/")[0]
            for n in topo.router_names() + topo.host_names()
            for i, a in topo.interfaces(n).items()}
    sources = topo.router_names() + topo.host_names()
    if len(sources) > 50:
        pairs = [(s, t) for s in sources for t in (topo.ip("h1", family=6), topo.ip("h2", family=6))]
    else:
        pairs = [(s, t) for s in sources for t in owners]
    for src, dst in pairs:
        hops = addressing.trace(tables, owners, src, dst, segments)
        assert hops == topo.trace(src, twin[dst]), (src, dst)


def test_ipv6_intended_tables_add_the_link_local_routes():
    topo = LineTopo(5)
    assert topo.intended_routes("r1", family=6) == [
        {"dst": "fd77:1:a00::/64", "gateway": None, "dev": "r1-eth0"},
        {"dst": "fd77:1:a00:100::/64", "gateway": None, "dev": "r1-eth1"},
        {"dst": "fe80::/64", "gateway": None, "dev": "r1-eth0"},
        {"dst": "fe80::/64", "gateway": None, "dev": "r1-eth1"},
        {"dst": "fd77:1:a00:200::/55", "gateway": "fd77:1:a00:100::2", "dev": "r1-eth1"},
        {"dst": "fd77:1:a00:400::/55", "gateway": "fd77:1:a00:100::2", "dev": "r1-eth1"},
    ]
    assert topo.intended_routes("h1", family=6)[-1] == {
        "dst": "::/0", "gateway": "fd77:1:a00::2", "dev": "h1-eth0"}
    assert topo.intended_routes("r1") == LineTopo(5).intended_routes("r1")   # IPv4 as before


def test_ipv6_line_and_internet_traceroutes():
    line = LineTopo(3)
    assert line.host_ips(family=6) == {"h1": "fd77:1:a00::1", "h2": "fd77:1:a00:300::2"}
    assert line.expected_traceroute("h1", "h2", family=6) == [
        "fd77:1:a00::2", "fd77:1:a00:100::2", "fd77:1:a00:200::2", "fd77:1:a00:300::2"]
    assert line.expected_traceroute("h1", "fd77:1:a00:200::1") == [
        "fd77:1:a00::2", "fd77:1:a00:200::1"]   # r2's far interface: an address picks its family
    assert line.expected_path("h2", "h1", family=6) == ["r3", "r2", "r1"]
    net = InternetTopo()
    for src in net.host_names():
        for dst in net.host_names():
            if src != dst:
                assert net.expected_path(src, dst, family=6) == net.expected_path(src, dst)
    assert net.expected_traceroute("home1", "srv1", family=6) == [
        "fd77:4:c0a8:100::1", "fd77:4:6440::1", "fd77:4:ac10:100::1", "fd77:4:ac10:108::2",
        "fd77:4:ac10:304::2", "fd77:4:a14:1e00::a"]


def test_ipv6_longest_prefix_match_matters_in_internet_too():
    """bb1 sends srv1's, campus's and office's IPv6 addresses to three neighbours,
    chosen by /56, /48 and /40 twins of the overlapping /24, /16 and /8."""
    topo = InternetTopo()
    table = topo.intended_routes("bb1", family=6)
    owners = topo.owners(family=6)
    chosen = {h: owners[addressing.lpm(table, topo.ip(h, family=6))["gateway"]][0]
              for h in ("srv1", "campus", "office")}
    assert chosen == {"srv1": "bb3", "campus": "bb2", "office": "bb4"}
    matching = [r["dst"] for r in table
                if ipaddress.ip_address(topo.ip("srv1", family=6)) in ipaddress.ip_network(r["dst"])]
    assert matching == ["fd77:4:a00::/40", "fd77:4:a14::/48", "fd77:4:a14:1e00::/56"]


def test_ipv6_unplanned_addresses_are_unreachable_on_line():
    with pytest.raises(addressing.NoRoute, match="r1 has no route to 2001:db8::1"):
        LineTopo(5).trace("h1", "2001:db8::1")


def test_ipv6_family_must_be_4_or_6():
    with pytest.raises(ConfigError, match="family must be 4 or 6"):
        LineTopo(1).interfaces("h1", family=5)


def test_node_sysctls_turn_dad_and_ra_off_and_long_paths_raise_the_hop_limit():
    for cls in (Host, LinuxRouter, LongPathHost, LongPathRouter):
        for key in ("all/accept_dad", "default/accept_dad", "all/accept_ra", "default/accept_ra"):
            assert cls.SYSCTLS[f"net/ipv6/conf/{key}"] == "0", (cls, key)
    for cls in (LinuxRouter, LongPathRouter):
        assert cls.SYSCTLS["net/ipv6/conf/all/forwarding"] == "1"
        assert cls.SYSCTLS["net/ipv6/icmp/ratelimit"] == "0"
    assert "net/ipv6/conf/all/forwarding" not in Host.SYSCTLS
    for cls in (LongPathHost, LongPathRouter):
        assert cls.SYSCTLS["net/ipv6/conf/default/hop_limit"] == "255"
