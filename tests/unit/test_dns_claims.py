"""The DNS claims on a fabricated case folder (captures made with scapy, a record
as the workload writes it): all ten hold, and each corrupted item fails exactly
the claim that reads it. Also the chart and the message table from that folder."""

import json
import os

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSOA
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from topologies.internet import InternetTopo
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.services.dns_claims import TITLES, capture_files, dns_claims, dns_figures
from wirelab.services.dns_zones import default_zones

ZONES = default_zones(InternetTopo())
HOME, RES, OUT = "192.168.1.10", ZONES.resolver_ip, ZONES.resolver_out_ip
ROOT, TLD, AUTH = (ZONES.server(k).ip for k in ("root", "tld", "auth1"))
NAME = "www.amazon.com."
CASE = "dns"
T0 = 1_800_000_000.0       # capture timestamps: wall clock, as tcpdump writes them


def _udp(src, dst, sport, dport, msg, t):
    p = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / msg
    p.time = T0 + t
    return p


def _q(name, qid, rd):
    return DNS(id=qid, rd=rd, qd=DNSQR(qname=name))


def _ref(name, qid, zone, ns, ip):
    return DNS(id=qid, qr=1, qd=DNSQR(qname=name), ns=[DNSRR(rrname=zone, type="NS", ttl=3600, rdata=ns)],
               ar=[DNSRR(rrname=ns, type="A", ttl=3600, rdata=ip)])


def _ans(name, qid, ip, ttl, aa):
    return DNS(id=qid, qr=1, aa=aa, ra=1 - aa, rd=1 - aa, qd=DNSQR(qname=name),
               an=[DNSRR(rrname=name, type="A", ttl=ttl, rdata=ip)])


def _nx(name, qid, zone, mname, aa=1):
    return DNS(id=qid, qr=1, aa=aa, rcode=3, qd=DNSQR(qname=name),
               ns=[DNSRRSOA(rrname=zone, ttl=60, mname=mname, rname="hostmaster.x.", serial=1, minimum=60)])


def _dig(name, qid, ttl, server=RES, flags="qr rd ra", status="NOERROR", answer=True):
    return {"type": "RECURSIVE_RESPONSE", "server": server, "status": status, "flags": flags.split(), "id": qid,
            "question": [f"{name} IN A"], "answer": [[name, ttl, "IN", "A", AUTH]] if answer else [],
            "authority": [], "additional": []}


def walk(name, base_id, t, src, sport, rd=0):
    """src asks root, TLD, auth in turn (the resolver, or dig +trace at the host)."""
    return [_udp(src, ROOT, sport, 53, _q(name, base_id, rd), t),
            _udp(ROOT, src, 53, sport, _ref(name, base_id, "com.", "a.gtld-servers.net.", TLD), t + 0.001),
            _udp(src, TLD, sport + 1, 53, _q(name, base_id + 1, rd), t + 0.002),
            _udp(TLD, src, 53, sport + 1, _ref(name, base_id + 1, "amazon.com.", "ns.amazon.com.", AUTH), t + 0.003),
            _udp(src, AUTH, sport + 2, 53, _q(name, base_id + 2, rd), t + 0.004),
            _udp(AUTH, src, 53, sport + 2, _ans(name, base_id + 2, AUTH, 300, 1), t + 0.005)]


def fabricate(folder, *, extra_host=(), extra_up=(), skip_up=(), ttl2=299):
    """A case folder as a correct run leaves it; ``extra_*``/``skip_up`` corrupt its captures."""
    case = os.path.join(folder, CASE)
    os.makedirs(case, exist_ok=True)
    write_json(os.path.join(folder, "params.json"), {"experiment": "fabricated", "params": {}})
    write_json(os.path.join(folder, "run.json"), {"cases": [CASE]})
    files = capture_files("home1")
    host = [_udp(HOME, RES, 40000, 53, _q(NAME, 100, 1), 1.000),
            _udp(RES, HOME, 53, 40000, _ans(NAME, 100, AUTH, 300, 0), 1.010),
            _udp(HOME, RES, 40001, 53, _q(NAME, 101, 1), 1.500),
            _udp(RES, HOME, 53, 40001, _ans(NAME, 101, AUTH, 300, 0), 1.501),
            _udp(HOME, RES, 40002, 53, _q(NAME, 102, 1), 2.300),
            _udp(RES, HOME, 53, 40002, _ans(NAME, 102, AUTH, ttl2, 0), 2.301),
            *walk(NAME, 200, 3.0, HOME, 45000),
            _udp(HOME, RES, 40003, 53, _q("nosuch.amazon.com.", 300, 1), 4.0),
            _udp(RES, HOME, 53, 40003, _nx("nosuch.amazon.com.", 300, "amazon.com.", "ns.amazon.com.", 0), 4.01),
            _udp(HOME, RES, 40004, 53, _q("www.amazon.xyz.", 301, 1), 4.1),
            _udp(RES, HOME, 53, 40004, _nx("www.amazon.xyz.", 301, ".", "a.root-servers.net.", 0), 4.11),
            _udp(HOME, RES, 40005, 53, _q(NAME, 400, 1), 5.0),
            _udp(RES, HOME, 53, 40005, _ans(NAME, 400, AUTH, 297, 0), 5.001)]
    syn = Ether() / IP(src=HOME, dst=AUTH) / TCP(sport=50000, dport=80, flags="S")
    syn.time = T0 + 5.002
    up = [*walk(NAME, 500, 1.002, OUT, 41000),
          _udp(OUT, AUTH, 41010, 53, _q("nosuch.amazon.com.", 510, 0), 4.002),
          _udp(AUTH, OUT, 53, 41010, _nx("nosuch.amazon.com.", 510, "amazon.com.", "ns.amazon.com."), 4.003),
          _udp(OUT, ROOT, 41011, 53, _q("www.amazon.xyz.", 511, 0), 4.102),
          _udp(ROOT, OUT, 53, 41011, _nx("www.amazon.xyz.", 511, ".", "a.root-servers.net."), 4.103)]
    up = [p for i, p in enumerate(up) if i not in skip_up]
    wrpcap(os.path.join(case, files["host"]), sorted(host + [syn] + list(extra_host), key=lambda p: p.time))
    wrpcap(os.path.join(case, files["upstream"]), sorted(up + list(extra_up), key=lambda p: p.time))
    captures = [{"name": f"{n}:{i}", "node": n, "intf": i, "path": os.path.join(case, f), "packets": 10,
                 "problems": [], "dropped_by_kernel": 0, "dropped_by_interface": 0}
                for n, i, f in (("home1", "home1-eth0", files["host"]), ("isp", "isp-eth1", files["upstream"]))]
    write_json(os.path.join(case, "case.json"), {"name": CASE, "captures": captures, "error": None})
    trace = [_dig(".", 200 - 1, 3600) | {"answer": [[".", 3600, "IN", "NS", "a.root-servers.net."]]},
             {"type": "AUTH_RESPONSE", "server": ROOT, "flags": ["qr"], "answer": [],
              "authority": [["com.", 3600, "IN", "NS", "a.gtld-servers.net."]]},
             {"type": "AUTH_RESPONSE", "server": TLD, "flags": ["qr"], "answer": [],
              "authority": [["amazon.com.", 3600, "IN", "NS", "ns.amazon.com."]]},
             {"type": "AUTH_RESPONSE", "server": AUTH, "flags": ["qr", "aa"],
              "answer": [[NAME, 300, "IN", "A", AUTH]], "authority": []}]
    nx = [{"name": "nosuch.amazon.com.", "messages": [
              _dig("nosuch.amazon.com.", 300, 0, status="NXDOMAIN", answer=False)
              | {"authority": [["amazon.com.", 60, "IN", "SOA", "ns.amazon.com. h. 1 3600 600 86400 60"]]}]},
          {"name": "www.amazon.xyz.", "messages": [
              _dig("www.amazon.xyz.", 301, 0, status="NXDOMAIN", answer=False)
              | {"authority": [[".", 60, "IN", "SOA", "a.root-servers.net. h. 1 3600 600 86400 60"]]}]}]
    plan = InternetTopo().expected_traceroute("home1", AUTH)
    rec = {"host": "home1", "name": NAME, "unknown": ["nosuch.amazon.com.", "www.amazon.xyz."],
           "zones": ZONES.to_dict(), "resolver_ip": RES, "resolver_out_ip": OUT, "host_addrs": [HOME],
           "machine_resolv_sha256": {"before": "ab" * 32, "after": "ab" * 32}, "errors": [],
           "resolv_conf": {"text": f"nameserver {RES}\n", "own_file": True, "nameservers": [RES]},
           "cold": {"messages": [_dig(NAME, 100, 300)]},
           "cached": {"answers": [{"messages": [_dig(NAME, 101, 300)]}, {"messages": [_dig(NAME, 102, ttl2)]}],
                      "failure": None},
           "trace": {"messages": trace, "wall": [T0 + 2.9, T0 + 3.5]},
           "nxdomain": nx,
           "traceroute": {"resolved": AUTH, "hops": list(plan), "expected": list(plan)},
           "http": {"exit": 0, "curl": {"http_code": 200, "remote_ip": AUTH},
                    "body": {"node": "srv1", "host": "www.amazon.com"}}}
    write_json(os.path.join(case, "dns.json"), rec)
    return folder


def claims_of(folder):
    return dns_claims(Evidence(folder), CASE)


def failing(folder):
    return [c.name for c in claims_of(folder) if not c.ok]


def edit_record(folder, fn):
    path = os.path.join(folder, CASE, "dns.json")
    with open(path) as f:
        rec = json.load(f)
    fn(rec)
    write_json(path, rec)


@pytest.fixture
def good(tmp_path):
    return fabricate(str(tmp_path / "run"))


def test_a_correct_folder_passes_all_ten(good):
    claims = claims_of(good)
    assert len(claims) == len(TITLES) == 10
    assert [c.name for c in claims if not c.ok] == [], [c.line() for c in claims if not c.ok]
    assert all(c.name.startswith("DNS: ") for c in claims)
    fig = dns_figures(Evidence(good), CASE)
    assert fig["cold_ms"] == pytest.approx(10.0, abs=0.01) and fig["upstream_queries_cold"] == 3


def _one(folder, words):
    bad = failing(folder)
    assert len(bad) == 1 and words in bad[0], bad


def test_a_dropped_packet_in_a_capture_fails_only_completeness(good):
    path = os.path.join(good, CASE, "case.json")
    with open(path) as f:
        case = json.load(f)
    case["captures"][1]["dropped_by_kernel"] = 3
    write_json(path, case)
    _one(good, "are complete")


def test_a_host_asking_another_resolver_fails_only_its_resolv_conf_claim(good):
    edit_record(good, lambda r: r["resolv_conf"].update(nameservers=["10.255.255.53"]))
    _one(good, "its own resolv.conf")


def test_a_resolver_that_skips_the_tld_fails_only_the_walk(tmp_path):
    _one(fabricate(str(tmp_path / "r"), skip_up={2, 3}), "cold query: the resolver walks")


def test_an_authoritative_answer_unlike_the_zone_fails_only_the_answers(tmp_path):
    bad = _udp(AUTH, OUT, 53, 41002, _ans(NAME, 502, "10.20.30.99", 300, 1), 1.0065)
    _one(fabricate(str(tmp_path / "r"), skip_up={5}, extra_up=[bad]), "every answer equals the zone data")


def test_an_upstream_query_while_cached_fails_only_the_cache(tmp_path):
    leak = [_udp(OUT, ROOT, 41020, 53, _q(NAME, 520, 0), 1.6)]
    _one(fabricate(str(tmp_path / "r"), extra_up=leak), "from the resolver's cache")


def test_a_ttl_that_does_not_count_down_fails_only_the_cache(tmp_path):
    _one(fabricate(str(tmp_path / "r"), ttl2=300), "from the resolver's cache")


def test_a_trace_in_the_wrong_order_fails_only_the_trace(good):
    edit_record(good, lambda r: r["trace"].update(messages=[r["trace"]["messages"][i] for i in (0, 2, 1, 3)]))
    _one(good, "dig +trace from the home host")


def test_an_unknown_name_that_resolved_fails_only_nxdomain(good):
    edit_record(good, lambda r: r["nxdomain"][1]["messages"][0].update(status="NOERROR"))
    _one(good, "are NXDOMAIN")


def test_a_traceroute_off_the_plan_fails_only_traceroute(good):
    edit_record(good, lambda r: r["traceroute"]["hops"].__setitem__(2, "172.16.99.1"))
    _one(good, "traceroute by name")


def test_a_page_from_the_wrong_host_fails_only_curl(good):
    edit_record(good, lambda r: r["http"]["body"].update(node="srv2"))
    _one(good, "curl http://NAME/")


def test_a_query_to_an_outside_resolver_fails_only_stays_inside(tmp_path):
    leak = [_udp(HOME, "10.255.255.53", 40100, 53, _q("www.amazon.com.", 900, 1), 6.0)]
    _one(fabricate(str(tmp_path / "r"), extra_host=leak), "leaves the lab")


def test_a_changed_machine_resolv_conf_fails_only_stays_inside(good):
    edit_record(good, lambda r: r["machine_resolv_sha256"].update(after="cd" * 32))
    _one(good, "leaves the lab")


def test_no_record_fails_every_claim_with_the_reason(good):
    os.remove(os.path.join(good, CASE, "dns.json"))
    claims = claims_of(good)
    assert len(claims) == 10 and not any(c.ok for c in claims)
    assert "no DNS record" in claims[0].measured


def test_an_unreadable_capture_fails_the_claims_that_read_it(good):
    with open(os.path.join(good, CASE, capture_files("home1")["upstream"]), "wb") as f:
        f.write(b"not a capture")
    claims = claims_of(good)
    bad = [i for i, c in enumerate(claims) if not c.ok]
    # resolver walk, answers, cache, NXDOMAIN, stays inside: the ones reading the upstream capture
    assert bad == [2, 3, 4, 6, 9], [c.line() for c in claims if not c.ok]
    assert all("unreadable" in str(c.measured) for c in claims if not c.ok)


def test_chart_and_table_from_the_folder(good):
    from wirelab.services.dns_plot import PNG, TABLE, dns_plot, dns_rows
    path = dns_plot(Evidence(good), CASE)
    assert path == os.path.join(good, CASE, PNG)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = dns_rows(Evidence(good), CASE)
    kinds = [(r["from"], r["to"], r["kind"]) for r in rows if r["capture"] == "resolver upstream"][:6]
    assert [k[2] for k in kinds] == ["query", "referral", "query", "referral", "query", "answer"]
    assert kinds[1][0].startswith("root") and kinds[3][0].startswith("TLD") and kinds[5][0].startswith("auth")
    with open(os.path.join(good, CASE, TABLE)) as f:
        table = f.read()
    assert "referral: com. NS a.gtld-servers.net.; glue a.gtld-servers.net. 10.1.0.2" in table
