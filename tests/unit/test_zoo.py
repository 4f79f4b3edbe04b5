"""topologies/zoo.py as data: every Topology Zoo network planned, fibre delays,
shortest-delay paths, names within Linux's limits, one-line errors. No root."""

import heapq
import ipaddress
import json
import os
import random
import subprocess
import sys

import pytest

from topologies import MAX_IFNAME, zoo_plan
from topologies.zoo import ZooTopo
from wirelab.errors import ConfigError
from wirelab.net import addressing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO = zoo_plan.available("topozoo")


def graph(cities, links, name="hand"):
    """A node-link dict: cities = [(name, lon, lat)], links = [(i, j, km or None)]."""
    return {"graph": {"name": name},
            "nodes": [{"id": i, "name": n, "pos": [lon, lat]} for i, (n, lon, lat) in enumerate(cities)],
            "edges": [{"source": a, "target": b, **({} if km is None else {"dist": km})}
                      for a, b, km in links]}


def trace_routers(topo, tables, owners, segments, src, dst_ip):
    hops = addressing.trace(tables, owners, src, dst_ip, segments=segments)
    return [n for n, _ in hops[1:-1] if topo.role(n) == "router"]


def independent_km(topo):
    """All-pairs shortest fibre km by plain Dijkstra over fibres() (not the plan's trees)."""
    adj = {}
    for f in topo.fibres():
        adj.setdefault(f["a"], []).append((f["b"], f["km"]))
        adj.setdefault(f["b"], []).append((f["a"], f["km"]))
    out = {}
    for s in topo.router_names():
        dist, heap = {s: 0.0}, [(0.0, s)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adj.get(u, ()):
                if d + w < dist.get(v, float("inf")):
                    dist[v] = d + w
                    heapq.heappush(heap, (d + w, v))
        out[s] = dist
    return out


# -- every network in the Zoo ------------------------------------------------------
def test_topohub_ships_the_zoo():
    assert len(ZOO) >= 200 and "Abilene" in ZOO and "TataNld" in ZOO


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_network_plans_and_routes_on_shortest_delay_paths(name):
    topo = ZooTopo(name)
    cities = topo.cities()
    assert len(topo.router_names()) == len(topo.host_names()) == len(cities)
    for node in topo.router_names() + topo.host_names():
        assert all(len(i) <= MAX_IFNAME for i in topo.interfaces(node)), node
    assert addressing.overlaps(topo.subnets().values()) == []
    assert addressing.overlaps(c["prefix"] for c in cities) == []
    # From the first host to every address in the plan, and from every host
    # back: the tables' path is the graph's shortest-delay path, and no
    # shorter one exists (an independent Dijkstra over the fibres).
    tables, owners, segments = topo.tables(), topo.owners(), topo.segments()
    km = independent_km(topo)
    lengths = {frozenset((f["a"], f["b"])): f["km"] for f in topo.fibres()}
    first = topo.host_names()[0]
    for ip, (node, _) in owners.items():
        trace_routers(topo, tables, owners, segments, first, ip)
    for host in topo.host_names()[1:]:
        for a, b in ((first, host), (host, first)):
            path = trace_routers(topo, tables, owners, segments, a, topo.ip(b))
            assert path == topo.shortest_delay_path(a, b)
            along = sum(lengths[frozenset(p)] for p in zip(path, path[1:]))
            # lengths compare in whole metres: a tie within rounding may go either way
            assert along == pytest.approx(km[path[0]][path[-1]], abs=0.001 * len(path))


def test_the_largest_zoo_network_and_a_gabriel_graph_plan_quickly_with_small_tables():
    tata = ZooTopo("TataNld")
    assert (len(tata.router_names()), len(tata.fibres())) == (143, 181)
    gabriel = ZooTopo("500/0", dataset="gabriel", hosts="none")
    assert (len(gabriel.router_names()), len(gabriel.fibres()), gabriel.host_names()) == (500, 982, [])
    routes = [len(gabriel.static_routes(r)) for r in gabriel.router_names()]
    # ORTC over Hilbert-ordered blocks: ~29 routes on average instead of 499
    assert sum(routes) / len(routes) < 40
    assert gabriel.cities()[0]["lat"] is None and gabriel.cities()[0]["pos"]
    assert {f["length_from"] for f in gabriel.fibres()} == {"dataset"}


# -- delays -------------------------------------------------------------------------
def test_fibre_speed_is_c_over_1_468():
    assert zoo_plan.FIBRE_KM_PER_MS == pytest.approx(204.218, abs=1e-3)
    assert zoo_plan.fibre_delay_ms(1000) == pytest.approx(4.897, abs=1e-3)   # ~4.9 us/km
    assert zoo_plan.fibre_delay_ms(0) == 0


def test_new_york_chicago():
    # Great circle NYC (40.71 N, 74.01 W) - Chicago (41.85 N, 87.65 W): 1145 km
    km = zoo_plan.haversine_km(40.71, -74.01, 41.85, -87.65)
    assert km == pytest.approx(1145, abs=2)
    abilene = ZooTopo("Abilene")
    [fibre] = [f for f in abilene.fibres() if set(f["cities"]) == {"New York", "Chicago"}]
    assert (fibre["km"], fibre["length_from"], fibre["delay_ms"]) == (1146.16, "dataset", 5.612)
    netem = abilene.declared_netem()
    segment = f"{fibre['a']}--{fibre['b']}"
    assert netem[(fibre["a"], segment)] == netem[(fibre["b"], segment)]
    assert netem[(fibre["a"], segment)].startswith("netem delay 5.612ms")


def test_a_link_without_a_length_gets_the_great_circle_distance():
    g = graph([("New York", -74.01, 40.71), ("Chicago", -87.65, 41.85)], [(0, 1, None)])
    [fibre] = ZooTopo(g).fibres()
    assert fibre["length_from"] == "haversine"
    assert fibre["km"] == pytest.approx(zoo_plan.haversine_km(40.71, -74.01, 41.85, -87.65))


def test_delay_scale_and_zero():
    full, double, none = ZooTopo("Abilene"), ZooTopo("Abilene", delay=2), ZooTopo("Abilene", delay=0)
    assert none.declared_netem() == {} and all(f["delay_ms"] == 0 for f in none.fibres())
    assert len(full.declared_netem()) == 2 * 14
    for f1, f2 in zip(full.fibres(), double.fibres()):
        assert f2["delay_ms"] == pytest.approx(2 * f1["delay_ms"], abs=0.0011)
    assert full.path_delay_ms("New York", "Los Angeles") == pytest.approx(
        zoo_plan.fibre_delay_ms(328.58 + 872.17 + 1127.88 + 2207.38), abs=0.003)
    assert none.path_delay_ms("h_newyork", "losangel") == 0


def test_a_fibre_of_zero_km_gets_no_netem():
    g = graph([("A", 0, 0), ("B", 0, 0), ("C", 1, 0)], [(0, 1, 0.0), (1, 2, None)])
    topo = ZooTopo(g)
    assert [f["delay_ms"] for f in topo.fibres()] == [0.0, zoo_plan.fibre_delay_ms(111.195)]
    assert {seg for _, seg in topo.declared_netem()} == {"b--c"}


# -- shortest-delay paths on a hand-made graph --------------------------------------
#      A ---100--- B ---100--- C          A--C direct is 300 km: longer than A-B-C.
#      |                       |          A--D and D--C tie with B on length and hops:
#      +---100---- D ---100----+          B wins, being listed first.
#                  |
#                  E (stub, 50 km)
HAND = graph([("A", 0, 0), ("B", 1, 1), ("C", 2, 0), ("D", 1, -1), ("E", 1, -2)],
             [(0, 1, 100), (1, 2, 100), (0, 2, 300), (0, 3, 100), (3, 2, 100), (3, 4, 50)])


def test_shortest_delay_paths_on_a_small_graph():
    topo = ZooTopo(HAND)
    assert topo.router_names() == ["a", "b", "c", "d", "e"]
    assert topo.expected_path("h_a", "h_c") == topo.shortest_delay_path("A", "C") == ["a", "b", "c"]
    assert topo.expected_path("h_c", "h_a") == ["c", "b", "a"]
    assert topo.expected_path("h_e", "h_c") == ["e", "d", "c"]
    assert topo.expected_path("h_b", "h_e") == ["b", "a", "d", "e"]   # a before c: lower index
    # traceroute answers from each router's inbound interface, then the host
    hops = topo.expected_traceroute("h_a", "h_c")
    assert hops == [topo.ip("a", topo.interface_facing("a", "h_a")),
                    topo.ip("b", topo.interface_facing("b", "a")),
                    topo.ip("c", topo.interface_facing("c", "b")), topo.ip("h_c")]
    assert topo.path_delay_ms("A", "C") == 2 * zoo_plan.fibre_delay_ms(100)


def test_plan_addresses_follow_the_documented_blocks():
    topo = ZooTopo(HAND)
    for city in topo.cities():
        block, lan = ipaddress.ip_network(city["prefix"]), ipaddress.ip_network(city["lan"])
        assert block.prefixlen == 23 and block.subnet_of(ipaddress.ip_network(zoo_plan.BASE))
        assert lan == next(block.subnets(new_prefix=24))
        assert (city["router_ip"], city["host_ip"]) == (str(lan[1]), str(lan[2]))
        assert topo.ip(city["host"]) == city["host_ip"]
    for f in topo.fibres():
        net = ipaddress.ip_network(f["subnet"])
        assert net.prefixlen == 30
        owner = next(c for c in topo.cities() if c["router"] == f["a"])
        assert net.subnet_of(ipaddress.ip_network(owner["prefix"]))
    json.dumps([topo.cities(), topo.fibres()])          # plain data


def test_ortc_tables_match_every_leaf():
    rng = random.Random(9)
    for _ in range(300):
        leaves = [rng.choice([None, 1, 2, 4, 8]) for _ in range(1 << rng.randint(0, 5))]
        routes = zoo_plan.ortc(leaves)
        for i, want in enumerate(leaves):
            covering = [(lvl, b) for lvl, idx, b in routes if i >> lvl == idx]
            if want is not None:
                assert covering and 1 << min(covering)[1] == want, (leaves, routes, i)
    assert zoo_plan.ortc([1, 1, 1, 2]) == [(0, 3, 1), (2, 0, 0)]     # /21 + one /23


# -- names --------------------------------------------------------------------------
def test_slugs_are_short_unique_ascii_and_deterministic():
    names = ["New York", "Washington DC", "Zürich", "São Paulo", "???",
             "Amsterdam", "Amsterdam (Schipluidlaan)", "AMSTERDAM"]
    assert zoo_plan.slugs(names) == ["newyork", "washingt", "zurich", "saopaulo", "city",
                                     "amsterda", "amsterd2", "amsterd3"]
    every = [c["router"] for n in ("Uninett2010", "Garr199904", "Arpanet19723")
             for c in ZooTopo(n).cities()]
    assert all(len(s) <= zoo_plan.SLUG_MAX for s in every)


def test_names_leave_room_for_mininets_interface_suffix():
    # a router with up to 1000 ports (eth999) and its host (eth0) stay within 15
    assert len("x" * zoo_plan.SLUG_MAX + "-eth999") == MAX_IFNAME
    assert len("h_" + "x" * zoo_plan.SLUG_MAX + "-eth0") == MAX_IFNAME
    ulaknet = ZooTopo("Ulaknet")            # the zoo's busiest city: 54 fibres
    assert max(len(ulaknet.interfaces(r)) for r in ulaknet.router_names()) == 55


# -- validation ------------------------------------------------------------------------
def test_unknown_network_names_the_count_and_the_closest():
    with pytest.raises(ConfigError) as err:
        ZooTopo("Abilen")
    msg = str(err.value)
    assert "\n" not in msg and f"{len(ZOO)} networks" in msg and "Abilene" in msg
    assert ZooTopo("abilene").network == "Abilene"       # any case, when unique
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        ZooTopo("Abilene", dataset="nope")


def test_disconnected_graph_is_refused_or_cut_to_its_largest_part():
    g = graph([("A", 0, 0), ("B", 1, 0), ("C", 2, 0), ("X", 9, 9), ("Y", 9, 8)],
              [(0, 1, 10), (1, 2, 10), (3, 4, 10)])
    with pytest.raises(ConfigError, match=r"not connected: 2 parts, the largest has 3 of 5 "
                                          r"cities \(cut off: X, Y\); largest_component=True"):
        ZooTopo(g)
    assert ZooTopo(g, largest_component=True).router_names() == ["a", "b", "c"]


def test_cities_without_coordinates_are_refused():
    g = graph([("A", 0, 0), ("B", 1, 0)], [(0, 1, 10)])
    del g["nodes"][1]["pos"]
    with pytest.raises(ConfigError, match=r"1 cities without longitude/latitude \(B\)"):
        ZooTopo(g)
    with pytest.raises(ConfigError, match=r"pos \(283.0, 248.0\) is no longitude/latitude"):
        ZooTopo("atlanta", dataset="sndlib")


@pytest.mark.parametrize("kwargs, match", [
    ({"delay": -1}, "delay must be a scale from 0 to 100"),
    ({"delay": "fast"}, "delay must be a scale"),
    ({"hosts": ["Atlantis"]}, "no city or router 'Atlantis'"),
    ({"hosts": 3}, "hosts must be 'all', 'none' or a list"),
    ({"base": "10.0.0.0/28"}, "holds 0 /23 city blocks"),
    ({"colour": "red"}, "zoo: .*colour"),
])
def test_bad_parameters_are_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ZooTopo("Abilene", **kwargs)


def test_chosen_hosts_by_city_or_router_name():
    topo = ZooTopo("Abilene", hosts=["New York", "losangel"])
    assert topo.host_names() == ["h_losangel", "h_newyork"]
    assert ZooTopo("Abilene", hosts="newyork+Los Angeles").host_names() == topo.host_names()
    assert ZooTopo("Abilene", hosts=None).host_names() == []
    # the fibre interfaces do not move when hosts change: the LAN is the last port
    assert ZooTopo("Abilene").interfaces("chicago").items() > topo.interfaces("chicago").items()
    with pytest.raises(ConfigError, match="2 cities named 'BBN': name one by its router"):
        ZooTopo("Arpanet19723", hosts=["BBN"])


# -- mn --custom ------------------------------------------------------------------------
def test_file_works_the_way_mn_custom_loads_it(tmp_path):
    """mn exec()s the file in /usr/bin/python3 (no venv, no __file__)."""
    path = os.path.join(REPO, "topologies", "zoo.py")
    probe = (f"p = {path!r}\ng = {{}}\nexec(compile(open(p).read(), p, 'exec'), g, g)\n"
             "t = g['topos']['zoo']('Abilene', delay=0)\n"
             "print(len(t.links()), t.declared_netem())\n"
             "try:\n    g['topos']['zoo']('Nowhere')\n"
             "except Exception as exc:\n    print(type(exc).__name__)\n")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    done = subprocess.run([python, "-I", "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["25", "{}", "ConfigError"]


@pytest.mark.skipif(not os.path.exists("/usr/bin/mn"), reason="Mininet's mn script is not installed")
def test_file_does_not_clobber_mns_globals():
    from test_topologies import _top_level_names
    mine = _top_level_names(os.path.join(REPO, "topologies", "zoo.py"))
    assert (mine & _top_level_names("/usr/bin/mn")) - {"os", "sys", "topos"} == set()
