"""wirelab.geo.lookup: longest-prefix match, bogons, our records first for the
emulated private space, a real (GeoIP2-shaped) database answering as ipinfo."""

import ipaddress
import re
import time

import pytest

from wirelab.errors import ConfigError
from wirelab.geo import bogons, build, geolocate
from wirelab.geo.lookup import GeoDatabase, parse_address


@pytest.fixture(autouse=True)
def geo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WIRELAB_GEO_CACHE", str(tmp_path / "geo-cache"))


@pytest.fixture
def ours():
    return build.database_for("internet").path


def _city(name, lat, lon, iso="GB", country="United Kingdom"):
    return {"city": {"names": {"en": name}}, "country": {"iso_code": iso, "names": {"en": country}},
            "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 100},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}]}


@pytest.fixture
def foreign(tmp_path):
    """A GeoIP2-City-shaped file as MaxMind ships one (its test data's London
    network 81.2.69.142/31), which also (wrongly) holds 10.0.0.0/8."""
    path = str(tmp_path / "GeoIP2-City-Test.mmdb")
    build.write_mmdb(path, [
        (ipaddress.ip_network("10.0.0.0/8"), _city("Nowhere", 0.0, 0.0)),
        (ipaddress.ip_network("81.2.69.142/31"), _city("London", 51.5142, -0.0931)),
        (ipaddress.ip_network("2a02:d300::/29"), _city("Kyiv", 50.45, 30.52, "UA", "Ukraine")),
    ], "a stand-in for GeoIP2-City", database_type="GeoIP2-City")
    return path


# -- longest-prefix match ----------------------------------------------------------------
@pytest.mark.parametrize("ip, prefix, city, node", [
    ("10.20.30.10", "10.20.30.0/24", "Ashburn", "cloudgw"),     # /24 inside the /16 inside the /8
    ("10.20.99.1", "10.20.0.0/16", "Champaign", "unigw"),
    ("10.99.0.1", "10.0.0.0/8", "Atlanta", "corpgw"),
    ("100.64.0.2", "100.64.0.2/32", "Cambridge", "hgw"),         # /32 inside the ISP's /10
    ("100.64.0.1", "100.64.0.0/10", "Boston", "isp"),
    ("192.168.1.77", "192.168.1.0/24", "Cambridge", "hgw"),
])
def test_nested_prefixes_answer_the_longest_match(ours, ip, prefix, city, node):
    answer = geolocate(ip, db=ours)
    assert (answer["prefix"], answer["city"], answer["node"]) == (prefix, city, node)
    assert answer["emulated"] is True and answer["found"] is True
    # The file's tree holds the /8 as the pieces its subnets leave: db_prefix is
    # one of them, inside the plan's network.
    assert ipaddress.ip_network(answer["db_prefix"]).subnet_of(ipaddress.ip_network(prefix))


def test_ipinfo_shaped_answer(ours):
    answer = geolocate("10.20.30.10", db=ours)
    assert {k: answer[k] for k in ("ip", "city", "region", "country", "loc", "org")} == {
        "ip": "10.20.30.10", "city": "Ashburn", "region": "Virginia", "country": "US",
        "loc": "39.0400,-77.4900", "org": "AS64499 wirelab Cloud"}
    assert answer["record"]["traits"]["autonomous_system_number"] == 64499
    assert answer["record"]["wirelab"]["network"] == "10.20.30.0/24"


def test_the_default_database_is_built_on_first_use():
    assert geolocate("172.16.2.9")["city"] == "Chicago"


# -- bogons ---------------------------------------------------------------------------
def _inside(net):
    net = ipaddress.ip_network(net)
    # +2: not ::1 inside ::/96 (that is the loopback's own /128)
    return net.network_address + (2 if net.num_addresses > 4 else 1 if net.num_addresses > 1 else 0)


@pytest.mark.parametrize("rng, why", bogons.BOGON_RANGES, ids=[r for r, _ in bogons.BOGON_RANGES])
def test_each_reserved_range_is_a_bogon_for_a_real_database(foreign, rng, why):
    ip = str(_inside(rng))
    assert geolocate(ip, db=foreign) == {"ip": ip, "bogon": True, "prefix": rng, "reason": why}


@pytest.mark.parametrize("ip, rng", [("255.255.255.255", "240.0.0.0/4"), ("::ffff:10.1.0.2", "::ffff:0:0/96"),
                                     ("fd12:3456::1", "fc00::/7"), ("2001:db8::1", "2001:db8::/32"),
                                     ("169.254.1.1", "169.254.0.0/16"), ("0.1.2.3", "0.0.0.0/8")])
def test_most_specific_reserved_range(ip, rng):
    assert str(bogons.bogon(ipaddress.ip_address(ip))[0]) == rng


def test_public_addresses_are_no_bogons():
    for ip in ("8.8.8.8", "81.2.69.142", "2a02:d300::1", "1.1.1.1", "2606:4700::1111"):
        assert bogons.bogon(ipaddress.ip_address(ip)) is None, ip


def test_our_database_answers_first_in_private_space_then_bogons(ours):
    assert geolocate("10.1.0.2", db=ours)["city"] == "Atlanta"          # ours, though RFC 1918
    assert geolocate("172.31.0.1", db=ours) == {                        # not ours: a bogon
        "ip": "172.31.0.1", "bogon": True, "prefix": "172.16.0.0/12", "reason": "private (RFC 1918)"}
    assert geolocate("127.0.0.1", db=ours)["bogon"] is True
    assert geolocate("8.8.8.8", db=ours) == {"ip": "8.8.8.8", "found": False, "prefix": None}


def test_a_real_database_answers_normally_and_private_ranges_as_bogons(foreign):
    london = geolocate("81.2.69.143", db=foreign)
    assert (london["city"], london["country"], london["loc"], london["prefix"], london["emulated"]) == \
        ("London", "GB", "51.5142,-0.0931", "81.2.69.142/31", False)
    assert "node" not in london and london["org"] is None
    assert geolocate("2a02:d300::1", db=foreign)["prefix"] == "2a02:d300::/29"
    assert geolocate("10.1.0.2", db=foreign)["bogon"] is True            # its record is not asked
    assert geolocate("81.2.70.1", db=foreign)["found"] is False


def test_an_ipv4_only_database_and_an_asn_database(tmp_path):
    import netaddr
    from mmdb_writer import MMDBWriter, MmdbU32
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    writer.insert_network(netaddr.IPSet(["1.1.1.0/24"]), {
        "autonomous_system_number": MmdbU32(13335), "autonomous_system_organization": "CLOUDFLARENET"})
    path = str(tmp_path / "asn.mmdb")
    writer.to_db_file(path)
    answer = geolocate("1.1.1.1", db=path)
    assert (answer["org"], answer["prefix"], answer["city"], answer["loc"]) == \
        ("AS13335 CLOUDFLARENET", "1.1.1.0/24", None, None)
    assert geolocate("2606:4700::1111", db=path) == {"ip": "2606:4700::1111", "found": False, "prefix": None}


# -- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["10.0.0.256", "example.com", "", "1.2.3", "::g", "10.0.0.0/8", "  "])
def test_bad_addresses_are_one_line_exit_2(bad):
    with pytest.raises(ConfigError) as info:
        parse_address(bad)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    assert "is not an IPv4 or IPv6 address" in str(info.value)


def test_not_a_maxmind_db(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    for path, words in ((str(text), "not a MaxMind DB (.mmdb) file"), (str(tmp_path), "a folder"),
                        (str(tmp_path / "missing.mmdb"), "no such database file"),
                        ("/dev/null", "not a MaxMind DB")):
        with pytest.raises(ConfigError, match=re.escape(words)) as info:
            GeoDatabase(path)
        assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_lookups_per_second(ours, capsys):
    """A figure (not a timing claim); the floor only catches a pathology."""
    addresses = [str(ipaddress.ip_address("10.0.0.0") + k * 797) for k in range(20000)]   # all in 10/8
    with GeoDatabase(ours) as db:
        started = time.perf_counter()
        answers = [db.lookup(a) for a in addresses]
        rate = len(addresses) / (time.perf_counter() - started)
    assert all(a.found for a in answers)
    with capsys.disabled():
        print(f"\ngeo: {rate:,.0f} lookups/s (GeoDatabase.lookup, internet database)")
    assert rate > 2000
