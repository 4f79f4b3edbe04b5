"""internet_services end to end (root): every step on a live internet topology
(home=nat, dhcp=1), claims from the folder equal to those at run time, nothing
left behind, the machine's /etc/resolv.conf unchanged; one corrupted item of
evidence fails exactly its claim. And the live parts' failure paths."""

import glob
import hashlib
import json
import os
import shutil

import pytest

from test_experiments_e2e import CLAIM_FIELDS, assert_reverify_equals_run, run_experiment

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

RESOLV = "/etc/resolv.conf"


def _sha(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("services")
    before = _sha(RESOLV)
    done, out, metrics = run_experiment("internet_services", tmp)
    return done, out, metrics, before


def _failed_rows(done):
    return "\n".join(line for line in done.stdout.splitlines() if "  FAIL  " in line) + done.stderr[-2000:]


def test_end_to_end(run, host_state):
    done, out, metrics, resolv_before = run
    assert done.returncode == 0, _failed_rows(done)
    assert metrics["status"] == "pass" and len(metrics["claims"]) == 31
    assert _sha(RESOLV) == resolv_before
    cases = json.loads((out / "run.json").read_text())["cases"]
    assert cases == ["dhcp/no-server", "dhcp/dora", "resolver", "dns", "nat/outbound", "nat/inbound", "whatismyip"]
    renew = metrics["metrics"]["dhcp"]["renewals"]
    assert set(renew) == {"hgw", "home1", "home2"}
    for row in renew.values():      # T1 4 s: dhclient picks 3..4 s, +-1 s of timer
        assert 2.0 <= row["interval_s"] <= 5.2 and row["unicast_ack"]
    trans = metrics["metrics"]["nat"]["translations"]
    assert len(trans) == 6 and {t["outside"].split(":")[0] for t in trans} == {"100.64.0.2"}
    assert sum(t["port_changed"] for t in trans) >= 3
    for png in ("dhcp/no-server/dhcp-no-server.png", "dhcp/dora/dhcp-dora.png", "resolver/resolver.png",
                "dns/dns-sequence.png", "nat/outbound/nat-outbound.png", "nat/inbound/nat-inbound.png",
                "whatismyip/whatismyip.png"):
        assert (out / png).stat().st_size > 10_000, png
    assert_reverify_equals_run(out, metrics)


def test_nothing_of_the_run_is_left(run):
    _, out, _, _ = run
    rec = json.loads((out / "run.json").read_text())
    workdir = rec["services"]["dhcp"]["workdir"]
    assert os.path.basename(workdir).startswith("wirelab-dhcp-") and not os.path.exists(workdir)
    assert not glob.glob(os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + "*"))
    pids = [s["pid"] for s in rec["services"]["dhcp"]["servers"] + rec["services"]["dhcp"]["clients"]]
    pids += list(rec["services"]["dns"]["pids"].values()) + [rec["services"]["ipinfo"]["pid"]]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert rec["services"]["dhcp"]["workdir"] not in cmd and "ipinfo" not in cmd, cmd


# -- one corrupted item, one failed claim ------------------------------------------------------

def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _edit_lines(path, fn):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fn(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _edit_pcap(path, keep=None, extra=()):
    from wirelab.packets.scapyenv import load
    load()
    import scapy.layers.dhcp  # noqa: F401  (dissect BOOTP/DHCP when reading)
    from scapy.utils import rdpcap, wrpcap
    packets = [p for p in rdpcap(str(path)) if keep is None or keep(p)]
    wrpcap(str(path), packets + list(extra))


def _answer(rows, host, ask):
    return next(a for a in rows["workload"]["answers"] if a["host"] == host and a["ask"] == ask)


def _macs(out):
    return json.loads((out / "run.json").read_text())["network"]["macs"]


def _is_offer_to(mac):
    def keep(p):
        from scapy.layers.dhcp import BOOTP, DHCP
        if BOOTP in p and DHCP in p and ("message-type", 2) in p[DHCP].options:
            return p[BOOTP].chaddr[:6] != bytes.fromhex(mac.replace(":", ""))
        return True
    return keep


def _not_first_syn(p, _seen=[]):
    from scapy.layers.inet import TCP
    if TCP in p and p[TCP].flags == "S" and not _seen:
        _seen.append(p)
        return False
    return True


def _an_offer(out):
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    mac = _macs(out)["home1"]
    return [Ether(src="02:00:00:00:00:aa", dst=mac) / IP(src="192.168.1.1", dst="192.168.1.150")
            / UDP(sport=67, dport=68) / BOOTP(op=2, xid=1, yiaddr="192.168.1.150",
                                             chaddr=bytes.fromhex(mac.replace(":", "")))
            / DHCP(options=[("message-type", "offer"), "end"])]


CORRUPTIONS = {
    "dhcp/no-server: with no server, dhclient gives up": lambda o: _edit_json(
        o / "dhcp/no-server/case.json", lambda c: c["workload"].update(exit_code=0)),
    "dhcp/no-server: only DISCOVERs on the home LAN": lambda o: _edit_pcap(
        o / "dhcp/no-server/lan.pcap", extra=_an_offer(o)),
    "dhcp/dora: DISCOVER, OFFER, REQUEST, ACK for every client": lambda o: _edit_pcap(
        o / "dhcp/dora/lan.pcap", keep=_is_offer_to(_macs(o)["home2"])),
    "dhcp/dora: every lease is inside its server's pool": lambda o: _edit_json(
        o / "dhcp/dora/case.json", lambda c: c["workload"]["servers"]["hgw"]["leases"][0].update(ip="192.168.1.250")),
    "dhcp/dora: each ACK carries its server's router": lambda o: _edit_json(
        o / "dhcp/dora/case.json", lambda c: c["workload"]["servers"]["hgw"].update(t1_s=9)),
    "dhcp/dora: each client's kernel holds its lease": lambda o: _edit_json(
        o / "dhcp/dora/case.json", lambda c: c["workload"]["clients"]["home1"].update(addresses=[])),
    "dhcp/dora: every client renews at T1": lambda o: _edit_json(
        o / "dhcp/dora/case.json", lambda c: c["workload"]["clients"]["home1"].update(
            dhclient_lines=[line.replace("renewal in", "renewal in 3") for line in
                            c["workload"]["clients"]["home1"]["dhclient_lines"]])),
    "resolver: the resolver's address travels by DHCP": lambda o: _edit_json(
        o / "resolver/case.json", lambda c: c["workload"]["hosts"]["home1"].update(dhcp_resolv_conf=["8.8.8.8"])),
    "resolver: each home host reads its own /etc/resolv.conf": lambda o: _edit_json(
        o / "resolver/case.json", lambda c: c["workload"]["hosts"]["home2"]["seen"].update(own_file=False)),
    "nat/outbound: every program got HTTP 200": lambda o: _edit_json(
        o / "nat/outbound/case.json", lambda c: c["workload"]["programs"][0].update(body="192.168.1.100\n")),
    "nat/outbound: one public address for all": lambda o: _edit_json(
        o / "nat/outbound/case.json", lambda c: c["workload"]["nat_counters"]["masqueraded"].update(packets=1)),
    "nat/outbound: each translation is on the wire": lambda o: _edit_pcap(
        o / "nat/outbound/lan.pcap", keep=lambda p, s=[]: _not_first_syn(p, s)),
    "nat/outbound: the server saw every connection": lambda o: _edit_lines(
        o / "nat/outbound/ipinfo-requests.jsonl", lambda rows: rows[0].update(peer_port=rows[0]["peer_port"] + 1)),
    "nat/inbound: nothing from outside gets in": lambda o: _edit_json(
        o / "nat/inbound/case.json", lambda c: c["workload"]["attempts"][1].update(exit=0)),
    "whatismyip: every home host, asking by name": lambda o: _edit_json(
        o / "whatismyip/case.json", lambda c: _answer(c, "home1", "ip").update(body="1.2.3.4\n")),
    "whatismyip: /json's place": lambda o: _edit_json(
        o / "whatismyip/case.json", lambda c: _answer(c, "home2", "json").update(
            body=json.dumps({**json.loads(_answer(c, "home2", "json")["body"]), "city": "Paris"}))),
    "whatismyip: a cloud host is told its own address": lambda o: _edit_json(
        o / "whatismyip/case.json", lambda c: _answer(c, "home1", "bogon").update(body='{"ip": "192.168.1.1"}')),
    "whatismyip: the server saw the home hosts": lambda o: _edit_lines(
        o / "whatismyip/ipinfo-requests.jsonl", lambda rows: rows[0].update(peer_ip="192.168.1.150")),
    "every case ran to its end": lambda o: _edit_json(
        o / "nat/inbound/case.json", lambda c: c["captures"][0].update(dropped_by_kernel=3)),
    "nothing is left": lambda o: _edit_json(
        o / "run.json", lambda r: r["cleanup"].update(workdirs_left=["/tmp/wirelab-dhcp-x"])),
    "the machine's /etc/resolv.conf is byte-identical": lambda o: _edit_json(
        o / "resolver/case.json", lambda c: c["workload"].update(machine_resolv_sha256="0" * 64)),
}


@pytest.mark.parametrize("claim", sorted(CORRUPTIONS))
def test_one_corrupted_item_fails_exactly_its_claim(run, tmp_path, claim):
    done, out, metrics, _ = run
    assert done.returncode == 0, _failed_rows(done)
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    CORRUPTIONS[claim](bad)
    from wirelab.experiment.core import reverify
    from wirelab.experiment.evidence import to_jsonable
    _, claims, _ = reverify(bad)
    claims = json.loads(json.dumps(to_jsonable(claims)))
    failed = [c["name"] for c in claims if not c["ok"]]
    assert len(failed) == 1 and failed[0].startswith(claim), failed
    assert [{f: c[f] for f in CLAIM_FIELDS} for c in claims if c["ok"]] == \
        [{f: c[f] for f in CLAIM_FIELDS} for c in metrics["claims"] if c["name"] not in failed]


# -- failure paths of the live parts -----------------------------------------------------------

def test_a_server_on_a_missing_interface_is_one_line_and_leaves_nothing(tmp_path, host_state):
    from topologies.internet import InternetTopo
    from wirelab.net.testbed import Testbed
    from wirelab.services.dhcp import DhcpError, DhcpService, ServerConfig
    from wirelab.services.nat import Masquerade, read_conntrack
    with Testbed(InternetTopo(home="nat", dhcp=1)) as tb:
        with DhcpService(tb, str(tmp_path / "dhcp")) as dhcp:
            cfg = ServerConfig("hgw", "hgw-eth9", ("192.168.1.100", "192.168.1.199"), "255.255.255.0", "192.168.1.1")
            with pytest.raises(DhcpError, match=r"dnsmasq on hgw:hgw-eth9 exited") as err:
                dhcp.server(cfg)
            assert "\n" not in str(err.value)
            workdir = dhcp.workdir
        assert not os.path.exists(workdir)
        nat = Masquerade(tb, "hgw", "hgw-eth0", "hgw-eth1", "192.168.1.0/24").apply()
        assert ("ip", nat.table) in nat.tables() and nat.readback["rules"]["postrouting"][0][-1] == "masquerade"
        assert isinstance(read_conntrack(tb["hgw"]), list)
        nat.remove()
        assert ("ip", nat.table) not in nat.tables() and nat.removed["deleted"]
