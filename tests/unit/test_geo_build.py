"""wirelab.geo: the database derived from the address plans, written as a MaxMind
DB and read back; the places' coordinates against their source; the cache."""

import importlib.resources
import ipaddress
import json
import os
import time

import maxminddb
import pytest

from topologies import PlannedTopo
from wirelab.errors import ConfigError
from wirelab.geo import build, derive, places
from wirelab.net import addressing


@pytest.fixture(autouse=True)
def geo_cache(tmp_path, monkeypatch):
    cache = tmp_path / "geo-cache"
    monkeypatch.setenv("WIRELAB_GEO_CACHE", str(cache))
    return cache


# -- the places: every coordinate is its source's ------------------------------------
@pytest.mark.parametrize("place, network, node", places.PLACE_SOURCES,
                         ids=[p.city for p, _, _ in places.PLACE_SOURCES])
def test_each_coordinate_is_the_topology_zoo_one(place, network, node):
    topohub = pytest.importorskip("topohub")
    data = json.loads((importlib.resources.files(topohub) / "data" / "topozoo"
                       / f"{network}.json").read_text())
    pos = [n["pos"] for n in data["nodes"] if n["name"] == node]
    assert pos, f"{network}.json has no node {node!r}"
    assert (place.longitude, place.latitude) in [tuple(p) for p in pos]


def test_every_internet_node_has_a_site():
    topo = build.load_topology("internet,home_hosts=3,servers=3")
    nodes = topo.router_names() + topo.host_names() + topo.lan_names()
    assert [n for n in nodes if places.site_of(n, places.INTERNET_SITES) is None] == []


def test_a_topology_without_geography_is_a_clear_error():
    with pytest.raises(ConfigError, match="line has no geography"):
        build.database_for("line,3")
    with pytest.raises(ConfigError, match="unknown topology 'nowhere'"):
        build.database_for("nowhere")


# -- derivation from the plan ------------------------------------------------------------
# What the internet plan locates (IPv4): network -> (city, node). Derived, never typed
# into the database: this golden list checks the derivation.
INTERNET_V4 = {
    "10.0.0.0/8": ("Atlanta", "corpgw"),             # bb4's route -> corpgw (origin)
    "100.64.0.0/10": ("Boston", "isp"),
    "10.20.0.0/16": ("Champaign", "unigw"),
    "10.1.0.0/24": ("Atlanta", "corpgw"),            # link corpgw--office
    "10.20.1.0/24": ("Champaign", "unigw"),
    "10.20.30.0/24": ("Ashburn", "cloudgw"),         # LAN, and routed to cloudgw
    "172.16.1.0/24": ("New York", "bb1"),
    "172.16.2.0/24": ("Chicago", "bb2"),
    "172.16.3.0/24": ("Washington", "bb3"),
    "172.16.4.0/24": ("Atlanta", "bb4"),
    "192.168.1.0/24": ("Cambridge", "hgw"),
    # addresses whose node is not where their block is
    "100.64.0.2/32": ("Cambridge", "hgw"),           # the access link, in the ISP's /10
    "172.16.1.2/32": ("Boston", "isp"),              # bb1's block, isp's end
    "172.16.1.6/32": ("Chicago", "bb2"),
    "172.16.1.10/32": ("Washington", "bb3"),
    "172.16.2.2/32": ("Washington", "bb3"),
    "172.16.2.6/32": ("Champaign", "unigw"),
    "172.16.3.2/32": ("Atlanta", "bb4"),
    "172.16.3.6/32": ("Ashburn", "cloudgw"),
    "172.16.4.2/32": ("New York", "bb1"),
    "172.16.4.6/32": ("Atlanta", "corpgw"),
}


def test_internet_plan_locates_exactly_these_ipv4_networks():
    records = build.records_for("internet")
    got = {str(net): (rec["city"]["names"]["en"], rec["wirelab"]["node"])
           for net, rec in records if net.version == 4}
    assert got == INTERNET_V4
    for family in (4, 6):
        lengths = [net.prefixlen for net, _ in records if net.version == family]
        assert lengths == sorted(lengths), "supernets first, as the writer needs them"


def test_every_interface_address_answers_its_nodes_city():
    """Whatever the derivation chose, each address of the plan geolocates to the
    city of the node that holds it (both families when the plan is dual-stack)."""
    from wirelab.geo.lookup import GeoDatabase
    topo = build.load_topology("internet")
    db = build.database_for("internet")
    checked = 0
    with GeoDatabase(db.path) as geo:
        for family in derive.families(topo):
            owners = topo.owners() if family == 4 else topo.owners(family=6)
            for address, (node, _) in owners.items():
                answer = geo.lookup(address)
                assert answer.found and answer.emulated, address
                assert answer.city == places.site_of(node, places.INTERNET_SITES).place.city, address
                checked += 1
    assert checked >= 30


def zoo_topology(spec):
    pytest.importorskip("topohub")
    try:
        return build.load_topology(spec)
    except ConfigError as exc:
        if "zoo.py" in str(exc):
            pytest.skip(str(exc))
        raise


def test_a_summary_split_again_downstream_locates_nothing():
    """A route whose next router splits the prefix has no single origin."""
    topo = zoo_topology("zoo,Abilene")
    origins = derive.route_origins(topo)
    tables = {n: {ipaddress.ip_network(d) for d, _ in topo.static_routes(n) if d != "default"}
              for n in topo.router_names()}
    for net, (origin, _, _) in origins.items():
        assert not any(net.overlaps(o) for o in tables.get(origin, ())), (net, origin)


def test_zoo_cities_answer_their_coordinates():
    from wirelab.geo.lookup import GeoDatabase
    topo = zoo_topology("zoo,Abilene")
    db = build.database_for("zoo,Abilene")
    with GeoDatabase(db.path) as geo:
        for city in topo.cities():
            for ip in (city["router_ip"], city["host_ip"]):
                answer = geo.lookup(ip)
                assert (answer.city, answer.latitude, answer.longitude) == \
                    (city["name"], city["lat"], city["lon"]), ip
                assert answer.org == "Abilene (Topology Zoo)"
        for fibre in topo.fibres():    # each end of a link is in its own router's city
            net = ipaddress.ip_network(fibre["subnet"])
            for router, ip in zip((fibre["a"], fibre["b"]), (net[1], net[2])):
                assert geo.lookup(ip).node == router


# -- writing and reading the MaxMind DB -----------------------------------------------
def _record(city, lat, lon, asn=None):
    rec = {"city": {"names": {"en": city}},
           "country": {"iso_code": "NO", "names": {"en": "Norway"}},
           "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 20},
           "subdivisions": [{"iso_code": "03", "names": {"en": "Oslo"}}],
           "traits": {"organization": f"org of {city}"}}
    if asn:
        rec["traits"].update(autonomous_system_number=asn, autonomous_system_organization="AS org")
    return rec


def test_mmdb_written_and_read_back_with_exact_records(tmp_path):
    records = [(ipaddress.ip_network("10.0.0.0/8"), _record("Oslo", 59.91, 10.75, asn=64511)),
               (ipaddress.ip_network("10.20.0.0/16"), _record("Bergen", 60.39, 5.32)),
               (ipaddress.ip_network("fd00:1::/48"), _record("Tromso", 69.65, 18.96, asn=4200000000))]
    path = str(tmp_path / "t.mmdb")
    build.write_mmdb(path, records, "test")
    with maxminddb.open_database(path) as reader:
        meta = reader.metadata()
        assert (meta.database_type, meta.ip_version, meta.languages) == ("wirelab-City", 6, ["en"])
        assert meta.description == {"en": "test"}
        for net, rec in records:
            got, prefixlen = reader.get_with_prefix_len(str(net.network_address))
            assert got == rec
            assert type(got["location"]["latitude"]) is float
        assert reader.get("10.20.0.1")["location"]["accuracy_radius"] == 20
        assert reader.get("fd00:1::9")["traits"]["autonomous_system_number"] == 4200000000
        assert reader.get("11.0.0.1") is None and reader.get("fd00:2::1") is None


def test_nested_prefixes_whatever_the_insertion_order(tmp_path):
    """/8 > /16 > /24 in three cities: the longest match answers, in either order."""
    nested = [(ipaddress.ip_network("10.0.0.0/8"), _record("Oslo", 59.91, 10.75)),
              (ipaddress.ip_network("10.20.0.0/16"), _record("Bergen", 60.39, 5.32)),
              (ipaddress.ip_network("10.20.30.0/24"), _record("Tromso", 69.65, 18.96))]
    for order in (nested, nested[::-1]):
        path = str(tmp_path / f"n{len(order)}-{order[0][0].prefixlen}.mmdb")
        build.write_mmdb(path, order, "nested")
        with maxminddb.open_database(path) as reader:
            cities = {ip: reader.get(ip)["city"]["names"]["en"]
                      for ip in ("10.20.30.1", "10.20.31.1", "10.21.0.1", "10.255.255.255")}
        assert cities == {"10.20.30.1": "Tromso", "10.20.31.1": "Bergen",
                          "10.21.0.1": "Oslo", "10.255.255.255": "Oslo"}


# -- the cache: rebuilt when the inputs change, reused when not -----------------------
class TwoCities(PlannedTopo):
    """ha -- ra ==== rb -- hb: Oslo and Bergen."""

    topo_name = "twocities"
    coords = {"Oslo": (59.91, 10.75), "Bergen": (60.39, 5.32)}

    def build(self, base="10.50.0.0/16"):
        base = addressing.network(base)
        lan_a, lan_b, link = (addressing.nth_subnet(base, 24, k) for k in (0, 1, 2))
        ip = lambda net, k: str(net.network_address + k)   # noqa: E731
        self.router("ra", routes=[(str(lan_b), ip(link, 2))])
        self.router("rb", routes=[(str(lan_a), ip(link, 1))])
        self.host("ha", routes=[("default", ip(lan_a, 1))])
        self.host("hb", routes=[("default", ip(lan_b, 1))])
        self.p2p("ra", "rb", addressing.nth_subnet(link, 30, 0))
        self.p2p("ra", "ha", lan_a)
        self.p2p("rb", "hb", lan_b)
        self.blocks = {"ra": lan_a, "rb": lan_b}

    def cities(self):
        return [{"name": city, "lat": lat, "lon": lon, "router": r, "host": "h" + r[1],
                 "prefix": str(self.blocks[r])}
                for (city, (lat, lon)), r in zip(self.coords.items(), ("ra", "rb"))]


def test_database_rebuilt_when_inputs_change_and_reused_when_not(monkeypatch, geo_cache):
    plan = {"base": "10.50.0.0/16"}
    monkeypatch.setattr(build, "load_topology", lambda spec: TwoCities(**plan))
    first = build.database_for("twocities")
    assert first.built and os.path.dirname(first.path) == str(geo_cache)
    stamp = os.stat(first.path).st_mtime_ns
    again = build.database_for("twocities")
    assert (again.built, again.path, os.stat(again.path).st_mtime_ns) == (False, first.path, stamp)

    plan["base"] = "10.60.0.0/16"                        # the plan changes
    moved = build.database_for("twocities")
    assert moved.built and moved.path != first.path
    assert not os.path.exists(first.path), "the stale build is removed"
    from wirelab.geo.lookup import GeoDatabase
    with GeoDatabase(moved.path) as geo:
        assert geo.lookup("10.60.1.9").city == "Bergen" and not geo.lookup("10.50.1.9").found

    monkeypatch.setattr(TwoCities, "coords", {"Oslo": (59.91, 10.75), "Bergen": (60.4, 5.32)})
    relocated = build.database_for("twocities")           # a place changes
    assert relocated.built and relocated.path != moved.path
    assert build.database_for("twocities").built is False


def test_default_database_is_the_internet_one_in_the_cache(geo_cache):
    path = build.default_database()
    assert os.path.dirname(path) == str(geo_cache) and os.path.basename(path).startswith("internet-")
    assert build.default_database() == path


@pytest.mark.slow
def test_build_time_for_every_plan(capsys):
    """internet and every Topology Zoo network: each builds or says why not."""
    from wirelab.geo.cli import geographic_topologies
    specs, notes = geographic_topologies()
    started = time.perf_counter()
    sizes, refused = [], {}
    for spec in specs:
        try:
            db = build.database_for(spec)
        except ConfigError as exc:
            refused[spec] = str(exc)
            continue
        assert db.built and db.records
        sizes.append(os.path.getsize(db.path))
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\ngeo: {len(sizes)} databases ({len(refused)} refused, notes: {notes}) built in "
              f"{seconds:.2f} s, {min(sizes)}..{max(sizes)} bytes")
    assert all("\n" not in why for why in refused.values())
    assert len(sizes) >= len(specs) - len(refused) and len(sizes) >= 1
