"""internet_services without root: parameters, declared cases, the DNS tree with
the service's name, the sequence chart, and claims on small fabricated folders
(each corrupted item fails its claim)."""

import json
import os
import subprocess
import sys

import pytest

from topologies.internet import InternetTopo
from wirelab.errors import ConfigError
from wirelab.experiment import registry
from wirelab.experiment import services_claims as sc
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.packets.scapyenv import load
from wirelab.services.journey import service_zones
from wirelab.services.msc import Arrow, draw

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
cls = registry.load("internet_services")
P = cls.Params


def test_registered_in_teaching_order_after_the_paths():
    assert "internet_services" in registry.ORDER
    names = registry.names()
    assert names.index("traceroute") < names.index("internet_services") < names.index("packets")


@pytest.mark.parametrize("kwargs, match", [
    ({"home_hosts": 0}, r"home_hosts must be an integer 1\.\.8, got 0"),
    ({"programs": 9}, r"programs must be an integer 1\.\.8"),
    ({"lease": 60}, r"lease must be an integer 120\.\.3600"),
    ({"t1": 1}, r"t1 must be an integer 2\.\.30"),
    ({"no_server_timeout": 2}, r"no_server_timeout must be an integer 3\.\.20"),
    ({"base_port": 80}, r"base_port must be an integer 1024\.\.60000"),
    ({"home_hosts": True}, r"home_hosts must be an integer"),
])
def test_bad_parameters_are_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        P(**kwargs)
    assert "\n" not in str(err.value)


def test_declared_cases_capture_where_each_step_happens():
    mod = sys.modules[cls.__module__]
    topo = InternetTopo(home="nat", dhcp=1, home_hosts=3)
    cases = {c.name: c for c in mod.declared_cases(topo, P(home_hosts=3))}
    assert list(cases) == ["dhcp/no-server", "dhcp/dora", "resolver", "dns", "nat/outbound", "nat/inbound",
                           "whatismyip"]
    points = {n: [(p.node, p.intf, p.file) for p in c.captures] for n, c in cases.items()}
    assert points["dhcp/dora"] == [("isp", "isp-eth0", "access.pcap"), ("hgw", "hgw-eth1", "lan.pcap")]
    assert points["nat/outbound"] == [("hgw", "hgw-eth1", "lan.pcap"), ("hgw", "hgw-eth0", "wan.pcap")]
    assert ("srv1", "srv1-eth0", "srv1.pcap") in points["nat/inbound"]
    assert all(c.snaplen == 0 for n, c in cases.items() if c.captures)   # DHCP needs whole packets
    assert cases["resolver"].captures == ()
    assert cases["nat/outbound"].args["hosts"] == ["home1", "home2", "home3"]


def test_help_runs_without_root():
    done = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "internet_services.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--no-server-timeout" in done.stdout and "DHCP" in done.stdout


def test_service_zones_add_the_name_and_keep_the_rest():
    from wirelab.services.dns_zones import default_zones, lookup
    topo = InternetTopo(home="nat", dhcp=1)
    zones, base = service_zones(topo), default_zones(topo)
    assert lookup(zones, "ipinfo.io.") == ("NOERROR", [topo.ip("srv1")])
    for z in base.zones:
        if z.origin.count(".") >= 2:
            assert zones.zone(z.origin) == z
    assert zones.resolver_ip == base.resolver_ip == "100.64.0.1"


def test_sequence_chart_draws_arrows_notes_and_unanswered(tmp_path):
    path = str(tmp_path / "c.png")
    n = draw(["a", "b", "c"], [Arrow(1.0, "a", "b", "hello"), Arrow(1.001, "b", None, "lost", "C3"),
                               Arrow(1.002, "c", "c", "a note"), Arrow(1.003, "c", "a", "back", dashed=True)],
             path, "test chart")
    assert n == 4 and os.path.getsize(path) > 5000


# -- claims on fabricated folders ---------------------------------------------------------------

MAC = "02:00:00:00:00:01"


def _no_server_folder(tmp_path, kinds=("discover",) * 3, exit_code=2, seconds=4.1):
    load()
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    out = tmp_path / "run"
    (out / "dhcp" / "no-server").mkdir(parents=True)
    write_json(str(out / "params.json"), {"experiment": "internet_services", "params": {}})
    write_json(str(out / "run.json"), {"cases": ["dhcp/no-server"], "network": {"macs": {"home1": MAC}}})
    packets = []
    for k, kind in enumerate(kinds):
        p = (Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(op=1 if kind == "discover" else 2, xid=5,
                                               chaddr=bytes.fromhex(MAC.replace(":", "")))
             / DHCP(options=[("message-type", kind), "end"]))
        p.time = 100.0 + k
        packets.append(p)
    wrpcap(str(out / "dhcp" / "no-server" / "lan.pcap"), packets)
    write_json(str(out / "dhcp" / "no-server" / "case.json"), {
        "name": "dhcp/no-server", "args": {"host": "home1"}, "error": None, "captures": [],
        "workload": {"exit_code": exit_code, "last_line": "Unable to obtain a lease on first try.  Exiting.",
                     "seconds": seconds, "addresses_after": [],
                     "config": {"timeout_s": 3, "backoff_cutoff_s": 2}}})
    return Evidence(str(out), P)


def test_no_server_claims_hold_on_a_good_folder(tmp_path):
    ev = _no_server_folder(tmp_path)
    assert sc.claim_gives_up(ev).ok and sc.claim_only_discovers(ev).ok


@pytest.mark.parametrize("change, failing", [
    ({"exit_code": 0}, "gives_up"), ({"seconds": 9.0}, "gives_up"), ({"seconds": 2.0}, "gives_up"),
    ({"kinds": ("discover", "discover", "offer")}, "only_discovers"), ({"kinds": ("discover",)}, "only_discovers"),
])
def test_no_server_claims_fail_on_their_own_evidence(tmp_path, change, failing):
    ev = _no_server_folder(tmp_path, **change)
    got = {"gives_up": sc.claim_gives_up(ev).ok, "only_discovers": sc.claim_only_discovers(ev).ok}
    assert got == {k: k != failing for k in got}


def _cleanup_folder(tmp_path, **cleanup):
    out = tmp_path / "run"
    (out / "resolver").mkdir(parents=True)
    write_json(str(out / "params.json"), {"experiment": "internet_services", "params": {}})
    base = {"nat": {"table": "wirelab_nat_x", "removed": {"deleted": True, "tables_after": [["ip", "other"]]}},
            "alive_after": [], "alive_before_teardown": [], "workdirs_left": [], "resolv_mounts_left": [],
            "machine_resolv_sha256_after": "ab"}
    write_json(str(out / "run.json"), {"cases": ["resolver"], "machine_resolv_sha256": {"before": "ab"},
                                       "cleanup": {**base, **cleanup}})
    write_json(str(out / "resolver" / "case.json"), {"name": "resolver", "error": None, "captures": [],
                                                     "workload": {"machine_resolv_sha256": "ab"}})
    return Evidence(str(out), P)


@pytest.mark.parametrize("cleanup, left_ok, machine_ok", [
    ({}, True, True),
    ({"alive_after": ["dnsmasq hgw (pid 7)"]}, False, True),
    ({"resolv_mounts_left": ["home1"]}, False, True),
    ({"nat": {"table": "wirelab_nat_x", "removed": {"deleted": False, "tables_after": [["ip", "wirelab_nat_x"]]}}},
     False, True),
    ({"nat": {"table": "wirelab_nat_x", "removed": None}}, False, True),
    ({"machine_resolv_sha256_after": "cd"}, True, False),
])
def test_cleanup_claims(tmp_path, cleanup, left_ok, machine_ok):
    ev = _cleanup_folder(tmp_path, **cleanup)
    assert (sc.claim_left(ev).ok, sc.claim_machine(ev).ok) == (left_ok, machine_ok)


def test_a_missing_file_fails_the_claim_with_the_reason(tmp_path):
    ev = _cleanup_folder(tmp_path)
    os.remove(ev.path("resolver", "case.json"))
    claim = sc.claim_machine(ev)
    assert not claim.ok and "evidence unreadable" in claim.measured and "missing" in claim.measured
    json.dumps(claim.to_dict())
