"""DNS from the root down on a live internet topology (root): real nsd and unbound in
the nodes, a home host resolving through its own resolv.conf; the ten claims from
the case folder; afterwards no daemon, no bind mount, the machine's resolv.conf
byte-identical. Bad zone data is one line and leaves nothing."""

import dataclasses
import hashlib
import os
import shutil

import pytest

from topologies.internet import InternetTopo
from wirelab.experiment.cases import Case, run_case
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.net.testbed import Testbed
from wirelab.services.dns import (DNS_SNAPLEN, HOST_RESOLV_CONF, DnsError, DnsHierarchy, dns_captures,
                                  dns_claims, dns_workload)
from wirelab.services.dns_zones import NameServer, default_zones

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("nsd", "unbound", "dig", "curl", "traceroute")),
                       reason="needs nsd, unbound, dig, curl, traceroute (scripts/setup.sh installs them)"),
]


def machine_resolv():
    with open(HOST_RESOLV_CONF, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def processes_mentioning(text):
    """PIDs whose command line names ``text`` (our run folder: only our daemons do)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(entry))
            except OSError:
                pass
    return out


def resolv_mounts(pid):
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line for line in f if f" {HOST_RESOLV_CONF} " in line]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dns-live"))
    write_json(os.path.join(out, "params.json"), {"experiment": "dns-live", "params": {}})
    write_json(os.path.join(out, "run.json"), {"cases": ["dns", "dns-again"]})
    info = {"sha_before": machine_resolv(), "host_mounts_before": resolv_mounts("self")}
    topo = InternetTopo()
    with Testbed(topo) as tb:
        nodes = {n.name: n.pid for n in tb.net.hosts}
        with DnsHierarchy(tb, out) as dns:
            case = Case("dns", captures=tuple(dns_captures(topo)), snaplen=DNS_SNAPLEN)
            record = run_case(tb, case, os.path.join(out, "dns"),
                              lambda _case, folder: dns_workload(tb, dns, "home1", folder))
            # a second case: the resolver's cache is flushed, so its query is cold again
            again = dataclasses.replace(case, name="dns-again")
            info["again"] = run_case(tb, again, os.path.join(out, "dns-again"),
                                     lambda _case, folder: dns_workload(tb, dns, "home1", folder))
            info["pids"] = {k: p.pid for k, p in dns.procs.items()}
            info["home1_mounts_during"] = resolv_mounts(nodes["home1"])
            info["home2_mounts_during"] = resolv_mounts(nodes["home2"])
        info["exits"] = dict(dns.exits)
        info["node_mounts_after"] = {n: resolv_mounts(pid) for n, pid in nodes.items()}
        info["daemons_after"] = processes_mentioning(os.path.join(out, "dns"))
    info["host_mounts_after"] = resolv_mounts("self")
    info["sha_after"] = machine_resolv()
    return out, record, info


def test_case_ran_without_error(live):
    _out, record, _info = live
    assert record.error is None, record.error
    assert not record.workload["errors"], record.workload["errors"]


@pytest.mark.parametrize("case", ["dns", "dns-again"])
def test_all_ten_dns_claims_hold_from_the_folder(live, case):
    out, _record, info = live
    assert info["again"].error is None, info["again"].error
    claims = dns_claims(Evidence(out), case)
    assert len(claims) == 10
    assert all(c.ok for c in claims), "\n".join(c.line() for c in claims if not c.ok)


def test_cached_answer_has_a_lower_ttl_than_the_cold_one(live):
    _out, record, _info = live
    rec = record.workload
    cold = rec["cold"]["messages"][0]["answer"][0]
    last = rec["cached"]["answers"][-1]["messages"][0]["answer"][0]
    assert cold[4] == last[4] == "10.20.30.10"
    assert cold[1] == 300 and last[1] < cold[1]
    assert [m["status"] for n in rec["nxdomain"] for m in n["messages"]] == ["NXDOMAIN", "NXDOMAIN"]
    # the kernels' next hops (what the traceroute claim compares with) are the plan's path
    assert rec["traceroute"]["expected"] == InternetTopo().expected_traceroute("home1", "10.20.30.10")


def test_the_mount_was_home1s_only_and_nothing_is_left(live):
    _out, _record, info = live
    assert len(info["home1_mounts_during"]) == 1 and "resolv" in info["home1_mounts_during"][0]
    assert info["home2_mounts_during"] == []            # another node: not touched
    assert info["node_mounts_after"] == {n: [] for n in info["node_mounts_after"]}
    assert info["host_mounts_after"] == info["host_mounts_before"]
    assert info["daemons_after"] == []
    assert set(info["exits"]) == {"root", "tld", "auth1", "auth2", "resolver"}
    assert all(code == 0 for code in info["exits"].values()), info["exits"]
    assert info["sha_after"] == info["sha_before"]


def test_a_server_address_its_node_lacks_is_one_line_and_leaves_nothing(tmp_path, host_state):
    topo = InternetTopo()
    good = default_zones(topo)
    broken = good.__class__(**{**good.__dict__, "servers": tuple(
        NameServer(s.key, s.role, s.node, "10.20.30.99" if s.key == "auth1" else s.ip, s.name)
        for s in good.servers)})
    before = machine_resolv()
    with Testbed(topo) as tb:
        with pytest.raises(DnsError) as err:
            with DnsHierarchy(tb, str(tmp_path), zones=broken):
                pass
        assert "\n" not in str(err.value) and "auth1" in str(err.value)
        assert processes_mentioning(str(tmp_path)) == []
    assert machine_resolv() == before
