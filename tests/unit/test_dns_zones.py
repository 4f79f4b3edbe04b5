"""The lab's DNS tree and the daemons' files, without root: consistent delegations,
glue, answers from the data, and nsd's / unbound's own checkers on what we write."""

import ipaddress
import os
import shutil
import subprocess

import pytest

from topologies.internet import InternetTopo
from wirelab.errors import ConfigError
from wirelab.services import dns_conf, dns_zones
from wirelab.services.dns_zones import (DELEGATION_TTL, HOST_TTL, NEGATIVE_TTL, NameServer, absolute,
                                        build_zones, default_zones, is_within, lookup, parent_of,
                                        resolution_chain)


@pytest.fixture(scope="module")
def topo():
    return InternetTopo()


@pytest.fixture(scope="module")
def zones(topo):
    return default_zones(topo)


def test_names():
    assert absolute("WWW.Amazon.com") == "www.amazon.com."
    assert absolute(".") == "." and absolute("") == "."
    assert parent_of("www.amazon.com.") == "amazon.com." and parent_of("com.") == "."
    assert is_within("www.amazon.com.", "com.") and is_within("com.", ".")
    assert not is_within("notamazon.com.", "amazon.com.")
    with pytest.raises(ConfigError):
        absolute("a..b")
    with pytest.raises(ConfigError):
        parent_of(".")


def test_servers_live_on_the_topology_nodes_at_their_addresses(topo, zones):
    roles = {s.key: (s.role, s.node, s.ip) for s in zones.servers}
    assert roles == {"root": ("root", "campus", "10.20.1.2"), "tld": ("tld", "office", "10.1.0.2"),
                     "auth1": ("auth", "srv1", "10.20.30.10"), "auth2": ("auth", "srv2", "10.20.30.11")}
    for s in zones.servers:
        assert s.ip == topo.ip(s.node)
    assert (zones.resolver_node, zones.resolver_ip, zones.resolver_out_ip) == \
        ("isp", topo.ip("isp", "isp-eth0"), topo.ip("isp", "isp-eth1"))
    # The home LAN may ask the resolver; nobody outside the customers may.
    nets = [ipaddress.ip_network(c) for c in zones.clients]
    assert any(ipaddress.ip_address(topo.ip("home1")) in n for n in nets)
    assert not any(ipaddress.ip_address(topo.ip("office")) in n for n in nets)


def test_every_zone_has_soa_first_and_apex_ns_with_an_address(zones):
    for z in zones.zones:
        soa = z.records[0]
        assert (soa.name, soa.rtype) == (z.origin, "SOA"), z.origin
        mname, _rname, serial, _r, _rt, _e, minimum = soa.data.split()
        assert mname == z.ns_name and int(minimum) == NEGATIVE_TTL and int(serial) >= 1
        assert [r.data for r in z.rrset(z.origin, "NS")] == [z.ns_name]
        # the server's name resolves to the server's address, somewhere in the tree
        assert lookup(zones, z.ns_name) == ("NOERROR", [zones.server(z.server).ip]), z.origin
        for r in z.records:
            assert r.name.endswith(".") and is_within(r.name, z.origin) or r.rtype == "A", r


def test_every_delegation_matches_the_child_and_carries_glue(zones):
    origins = {z.origin for z in zones.zones}
    seen_children = set()
    for z in zones.zones:
        for child, ns_names in z.delegations().items():
            seen_children.add(child)
            assert child in origins, f"{z.origin} delegates {child}, which no server serves"
            assert parent_of(child) == z.origin
            assert sorted(ns_names) == sorted(r.data for r in zones.zone(child).rrset(child, "NS"))
            for ns in ns_names:
                glue = z.rrset(ns, "A")
                if is_within(ns, child):        # below the cut: glue is required
                    assert [g.data for g in glue] == [zones.server(zones.zone(child).server).ip]
                    assert glue[0].ttl == DELEGATION_TTL
    assert seen_children == origins - {"."}, "every zone but the root is delegated once"


def test_answers_and_chains_from_the_data(zones):
    assert lookup(zones, "www.amazon.com") == ("NOERROR", ["10.20.30.10"])
    assert lookup(zones, "aws.amazon.com") == ("NOERROR", ["10.20.30.11"])
    assert lookup(zones, "www.uni.edu") == ("NOERROR", ["10.20.1.2"])
    assert lookup(zones, "nosuch.amazon.com") == ("NXDOMAIN", [])
    assert lookup(zones, "www.amazon.xyz") == ("NXDOMAIN", [])
    assert lookup(zones, "amazon.com", "MX") == ("NOERROR", [])          # NODATA
    assert [r.ttl for r in zones.zone("amazon.com.").rrset("www.amazon.com.", "A")] == [HOST_TTL]
    assert resolution_chain(zones, "www.amazon.com") == [
        ("root", "10.20.1.2", ".", "referral"), ("tld", "10.1.0.2", "com.", "referral"),
        ("auth1", "10.20.30.10", "amazon.com.", "answer")]
    assert resolution_chain(zones, "www.example.org")[-1] == ("auth2", "10.20.30.11", "example.org.", "answer")
    assert resolution_chain(zones, "nosuch.amazon.com")[-1][3] == "nxdomain"
    assert resolution_chain(zones, "www.amazon.xyz") == [("root", "10.20.1.2", ".", "nxdomain")]
    assert resolution_chain(zones, "nosuch.com")[-1] == ("tld", "10.1.0.2", "com.", "nxdomain")


def test_one_server_topology_puts_every_domain_on_srv1():
    z = default_zones(InternetTopo(servers=1))
    assert {s.node for s in z.servers if s.role == "auth"} == {"srv1"}
    assert lookup(z, "www.example.org") == ("NOERROR", ["10.20.30.10"])
    assert z.web["aws.amazon.com."] == "srv1"


def test_round_trip_through_json(zones):
    import json
    again = dns_zones.Zones.from_dict(json.loads(json.dumps(zones.to_dict())))
    assert again == zones


def test_bad_trees_are_one_line_errors(topo):
    servers = (NameServer("root", "root", "campus", "10.20.1.2", "a.root-servers.net."),
               NameServer("tld", "tld", "office", "10.1.0.2", "a.gtld-servers.net."),
               NameServer("auth1", "auth", "srv1", "10.20.30.10", "ns.amazon.com."))
    res = ("isp", "100.64.0.1", "172.16.1.2")
    cases = [
        ([("amazon.com", "nope", {"www": "10.0.0.1"})], "no server 'nope'"),
        ([("com", "auth1", {"www": "10.0.0.1"})], "not below a TLD"),
        ([("amazon.com", "auth1", {}), ("amazon.com", "auth1", {})], "given twice"),
        ([("amazon.com", "tld", {})], "is a tld server"),
    ]
    for domains, words in cases:
        with pytest.raises(ConfigError, match=words) as err:
            build_zones(servers, "root", "tld", domains, res, ())
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="needs the internet topology"):
        from topologies.line import LineTopo
        default_zones(LineTopo(2))


def test_resolv_conf_text():
    text = dns_conf.resolv_conf_text(["100.64.0.1"], node="home1", search=["example.org"])
    assert [line for line in text.splitlines() if not line.startswith("#")] == \
        ["nameserver 100.64.0.1", "search example.org"]
    with pytest.raises(ConfigError):
        dns_conf.resolv_conf_text([])
    with pytest.raises(ConfigError):
        dns_conf.resolv_conf_text(["10.0.0.1"] * 4)
    with pytest.raises(ValueError):
        dns_conf.resolv_conf_text(["not-an-address"])


def test_configs_name_only_run_files_and_the_labs_root(zones, tmp_path):
    work = str(tmp_path / "root")
    conf = dns_conf.nsd_conf(zones.server("root"), zones.zones_of("root"), work)
    for line in conf.splitlines():
        if any(k in line for k in ("file:", "dir:", "zonesdir:")):
            assert work in line, line
    assert "ip-address: 10.20.1.2" in conf and 'name: "."' in conf
    ub = dns_conf.unbound_conf(zones, str(tmp_path / "resolver"))
    assert 'module-config: "iterator"' in ub          # no validator: DNSSEC validation off
    assert "interface: 100.64.0.1" in ub and "outgoing-interface: 172.16.1.2" in ub
    assert "qname-minimisation: no" in ub
    # unbound-control only on the node's own loopback, without certificates
    control = ub[ub.index("remote-control:"):].splitlines()
    assert control[1:] == ["    control-enable: yes", "    control-interface: 127.0.0.1",
                           "    control-port: 8953", "    control-use-cert: no"]
    assert dns_conf.root_hints(zones).split("\n")[1:3] == [
        ".\t3600\tIN\tNS\ta.root-servers.net.", "a.root-servers.net.\t3600\tIN\tA\t10.20.1.2"]
    with pytest.raises(ConfigError):
        dns_conf.nsd_conf(zones.server("root"), [], 'bad"path')


def _write_server(zones, key, folder):
    os.makedirs(folder, exist_ok=True)
    for z in zones.zones_of(key):
        with open(os.path.join(folder, dns_conf.zone_file_name(z.origin)), "w") as f:
            f.write(dns_conf.zone_text(z))
    with open(os.path.join(folder, "nsd.conf"), "w") as f:
        f.write(dns_conf.nsd_conf(zones.server(key), zones.zones_of(key), folder))


@pytest.mark.skipif(not shutil.which("nsd-checkzone"), reason="nsd-checkzone not installed (apt nsd)")
def test_nsd_accepts_every_zone_file_and_config(zones, tmp_path):
    for s in zones.servers:
        folder = str(tmp_path / s.key)
        _write_server(zones, s.key, folder)
        for z in zones.zones_of(s.key):
            done = subprocess.run(["nsd-checkzone", z.origin, os.path.join(folder, dns_conf.zone_file_name(z.origin))],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr
        done = subprocess.run(["nsd-checkconf", os.path.join(folder, "nsd.conf")],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not shutil.which("nsd-checkzone"), reason="nsd-checkzone not installed (apt nsd)")
def test_nsd_checkzone_would_catch_a_broken_zone(zones, tmp_path):
    """The checker above can fail: a CNAME beside other data at the apex is refused."""
    path = tmp_path / "bad.zone"
    path.write_text(dns_conf.zone_text(zones.zone("amazon.com.")) + "amazon.com.\t300\tIN\tCNAME\tfoo.\n")
    done = subprocess.run(["nsd-checkzone", "amazon.com.", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


@pytest.mark.skipif(not shutil.which("unbound-checkconf"), reason="unbound-checkconf not installed (apt unbound)")
def test_unbound_accepts_its_config(zones, tmp_path):
    work = tmp_path / "resolver"
    work.mkdir()
    (work / "root.hints").write_text(dns_conf.root_hints(zones))
    (work / "unbound.conf").write_text(dns_conf.unbound_conf(zones, str(work)))
    done = subprocess.run(["unbound-checkconf", str(work / "unbound.conf")], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
