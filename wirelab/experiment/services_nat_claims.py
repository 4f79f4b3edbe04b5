"""Claims of ``internet_services`` about NAT and "what is my IP", from the folder only.

Evidence: ``nat/outbound`` (the programs' curl records, ``conntrack.json`` read
through netlink, ``ipinfo-requests.jsonl``, captures on both sides of hgw),
``nat/inbound`` (curl from the cloud, captures at srv1, hgw's WAN and LAN),
``whatismyip`` (curl records, the server's lines) and the run's geolocation
database (``geo/*.mmdb``, its sha256 in run.json). The public address is the
one hgw leased (``dhcp/dora``), never a constant.
"""

import ipaddress
import json

from wirelab.experiment.claims import Claim, Tally
from wirelab.experiment.services_claims import DORA, _workload, guarded
from wirelab.observe.ipfrag import read_ip_packets
from wirelab.observe.pcap.tcpflags import ACK, FIN, RST, SYN
from wirelab.services import nat_evidence as ne

OUT, IN, WHAT = "nat/outbound", "nat/inbound", "whatismyip"
ICMP_UNREACH = 3
CURL_COULDNT_CONNECT = 7


def public_ip(ev):
    """hgw's WAN address, as its DHCP lease gave it."""
    return _workload(ev, DORA)["clients"]["hgw"]["bound"]["ip"]


def home_net(ev):
    return ev.run["nat_plan"]["inside_net"]


def _lines(ev, case, name):
    with open(ev.path(case, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def outbound_translations(ev):
    """The translations of the programs' connections (conntrack), in program order."""
    w, svc = _workload(ev, OUT), ev.run["network"]["service"]
    entries = ev.json(OUT, "conntrack.json")
    trans = {t.inside: t for t in ne.translations(entries, home_net(ev), remote=(svc["ip"], svc["port"]))}
    return [(p, trans.get((p["local_ip"], p["local_port"]))) for p in w["programs"]]


T_ANSWERS = "nat/outbound: every program got HTTP 200 and hgw's public address as the address it comes from"


@guarded(T_ANSWERS, "the programs' curl records and bodies")
def claim_answers(ev):
    tally, pub = Tally(), public_ip(ev)
    for p in _workload(ev, OUT)["programs"]:
        tally.check("ans", p["http_code"] == 200 and (p["body"] or "").strip() == pub,
                    f"{p['host']}:{p['port']}", f"{p['http_code']} {p['body']!r} {p.get('errormsg')}")
    claim = tally.claim("ans", T_ANSWERS, "curl -w %{json} and the body of /ip", unit="programs")
    claim.expected = f"{claim.expected} answered {pub}"
    return claim


T_PORTS = "nat/outbound: one public address for all, each connection told apart by its public port; clashing ports rewritten"


@guarded(T_PORTS, "conntrack.json (netlink dump in hgw)")
def claim_ports(ev):
    w, pub = _workload(ev, OUT), public_ip(ev)
    pairs = outbound_translations(ev)
    trans = [t for _, t in pairs if t is not None]
    hosts, k = len(w["programs"]) // max(1, ev.case(OUT)["args"]["programs"]), ev.case(OUT)["args"]["programs"]
    changed = sum(t.port_changed for t in trans)
    dup = ne.outside_unique(trans)
    # every local port is used by every host: at most one of them can keep it
    least = (hosts - 1) * k
    # nft counts the first packet of each connection its nat chain masquerades
    counted = (w.get("nat_counters") or {}).get("masqueraded", {}).get("packets", 0)
    ok = (len(trans) == len(pairs) and {t.outside[0] for t in trans} == {pub} and not dup and changed >= least
          and counted >= len(pairs))
    ev.metrics.setdefault("nat", {})["translations"] = [t.to_dict() for t in trans]
    return Claim(T_PORTS, ok,
                 measured={"connections": len(pairs), "with_translation": len(trans),
                           "outside_addresses": sorted({t.outside[0] for t in trans}),
                           "ports_rewritten": changed, "duplicates": dup, "nft_masqueraded": counted},
                 expected=f"{len(pairs)} translations, all from {pub}, no outside (address, port) twice, "
                          f">= {least} ports rewritten ({hosts} hosts x {k} programs on the same ports), "
                          f"nft's masquerade counter >= {len(pairs)}",
                 evidence="conntrack original tuple (inside) and reply tuple (outside), per program's local port; "
                          "nft -j list counters")


T_MATCH = "nat/outbound: each translation is on the wire: inside -> remote on the LAN side, outside -> remote on the WAN side, nothing unexplained"


@guarded(T_MATCH, "lan.pcap, wan.pcap, conntrack.json")
def claim_match(ev):
    trans = [t for _, t in outbound_translations(ev) if t is not None]
    lan, wan = read_ip_packets(ev.path(OUT, "lan.pcap")), read_ip_packets(ev.path(OUT, "wan.pcap"))
    rows, strays = ne.match(trans, lan, wan, home_net(ev))
    ev.metrics.setdefault("nat", {})["matched"] = rows
    bad = [f"{r['inside']}: {r['why']}" for r in rows if not r["ok"]]
    delays = [r["delay_us"] for r in rows if r["delay_us"] is not None]
    return Claim(T_MATCH, bool(rows) and not bad and not strays,
                 measured={"matched": f"{len(rows) - len(bad)}/{len(rows)}", "failures": bad[:3],
                           "unexplained": strays[:3],
                           "lan_to_wan_us": [min(delays), max(delays)] if delays else None},
                 expected="every translation on both sides, the WAN packet not earlier; no stray connection",
                 evidence="first packet of each connection (SYN) on hgw-eth1 and hgw-eth0")


T_SERVER = "nat/outbound: the server saw every connection from the public address and its translated port, all open at once"


@guarded(T_SERVER, "ipinfo-requests.jsonl, conntrack.json")
def claim_server(ev):
    trans = [t for _, t in outbound_translations(ev) if t is not None]
    seen = _lines(ev, OUT, "ipinfo-requests.jsonl")
    outside = sorted(f"{t.outside[0]}:{t.outside[1]}" for t in trans)
    peers = sorted(f"{r['peer_ip']}:{r['peer_port']}" for r in seen)
    together = [r.get("together") for r in seen]
    ok = bool(trans) and peers == outside and all(x is True for x in together)
    return Claim(T_SERVER, ok, measured={"peers": peers, "together": together},
                 expected={"peers": outside, "together": "all true (the server held each answer until all "
                                                         f"{len(outside)} were in)"},
                 evidence="the server's line per request (peer address and port, barrier) vs conntrack's reply tuples")


T_INBOUND = "nat/inbound: nothing from outside gets in: the private address is unrouted, the public port refuses"


def _inbound_rows(ev):
    w = _workload(ev, IN)
    att = {a["kind"]: a for a in w["attempts"]}
    src = ev.run["network"]["cloud"][ev.case(IN)["args"]["from"]]
    srv = read_ip_packets(ev.path(IN, "srv1.pcap"))
    wan = read_ip_packets(ev.path(IN, "wan.pcap"))
    lan = read_ip_packets(ev.path(IN, "lan.pcap"))
    priv, pub = att["private"], att["public"]
    icmp = [p for p in srv if p.icmp_type == ICMP_UNREACH and p.quoted and p.quoted.dst == priv["ip"]
            and p.quoted.dport == priv["port"] and p.dst == src]
    syn_in = [p for p in wan if p.src == src and p.dst == pub["ip"] and p.dport == pub["port"]
              and p.tcp_flags is not None and p.tcp_flags & (SYN | ACK) == SYN]
    rst = [p for p in wan if p.src == pub["ip"] and p.dst == src and p.sport == pub["port"]
           and p.tcp_flags is not None and p.tcp_flags & RST]
    reached = [f"{p.src} -> {p.dst}" for p in lan if p.src == src]
    return {"private": {"curl_exit": priv["exit"], "errormsg": priv.get("errormsg"),
                        "icmp_unreachable_from": sorted({p.src for p in icmp}),
                        "icmp_codes": sorted({p.icmp_code for p in icmp})},
            "public": {"curl_exit": pub["exit"], "errormsg": pub.get("errormsg"), "syn_on_wan": len(syn_in),
                       "rst_from_public": len(rst)},
            "reached_lan": reached}


@guarded(T_INBOUND, "curl from the cloud host; srv1.pcap, wan.pcap, lan.pcap")
def claim_inbound(ev):
    rows = _inbound_rows(ev)
    routers = set(ev.run["geo"]["public"])
    pv, pb = rows["private"], rows["public"]
    from_router = pv["icmp_unreachable_from"] and all(
        any(ipaddress.ip_address(a) in ipaddress.ip_network(n) for n in routers) for a in pv["icmp_unreachable_from"])
    ok = (pv["curl_exit"] == CURL_COULDNT_CONNECT and from_router and pb["curl_exit"] == CURL_COULDNT_CONNECT
          and pb["syn_on_wan"] >= 1 and pb["rst_from_public"] >= 1 and not rows["reached_lan"])
    return Claim(T_INBOUND, ok, measured=rows,
                 expected={"private": "curl exit 7, ICMP unreachable from a router of the emulated Internet",
                           "public": "curl exit 7, SYN on hgw's WAN answered by RST from the public address",
                           "reached_lan": []},
                 evidence="curl -w %{json}; ICMP errors quoting the SYN at srv1; TCP flags on hgw-eth0; hgw-eth1")


# -- what is my IP -----------------------------------------------------------------------------

def _answers(ev):
    return _workload(ev, WHAT)["answers"]


def _body_json(a):
    return json.loads(a["body"]) if a.get("body") else None


T_MYIP = "whatismyip: every home host, asking by name, is told hgw's public address (/ip and /json)"


@guarded(T_MYIP, "curl records of the home hosts; the zone's address of the name")
def claim_myip(ev):
    pub, svc, tally = public_ip(ev), ev.run["network"]["service"], Tally()
    for a in _answers(ev):
        if a["host"] not in ev.run["network"]["home_hosts"] or a["ask"] == "bogon":
            continue
        got = (a["body"] or "").strip() if a["ask"] == "ip" else (_body_json(a) or {}).get("ip")
        tally.check("myip", a["http_code"] == 200 and got == pub and a["remote_ip"] == svc["ip"]
                    and a["url"].startswith(f"http://{svc['name']}/"), f"{a['host']} /{a['ask']}",
                    f"{a['http_code']} {got} via {a['remote_ip']}")
    claim = tally.claim("myip", T_MYIP, f"curl http://{svc['name']}/ip and /json from each home host", unit="answers")
    claim.expected = f"{claim.expected} = {pub}, {svc['name']} resolved to {svc['ip']}"
    return claim


def _db(ev):
    import hashlib

    from wirelab.geo.lookup import GeoDatabase
    geo = ev.run["geo"]
    with open(ev.path(geo["file"]), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != geo["sha256"]:
        raise ValueError(f"{geo['file']}: sha256 {digest[:12]}... is not the run's {geo['sha256'][:12]}...")
    return GeoDatabase(ev.path(geo["file"]))


T_PLACE = "whatismyip: /json's place (city, region, country, loc, org) is the run's database's for that address"


@guarded(T_PLACE, "/json bodies; geo/*.mmdb (sha256 in run.json)")
def claim_place(ev):
    from wirelab.apps.ipinfo import answer_for, public_networks
    tally = Tally()
    public = public_networks(ev.run["geo"]["public"])
    with _db(ev) as db:
        for a in _answers(ev):
            if a["ask"] != "json":
                continue
            got = _body_json(a) or {}
            want = answer_for(got.get("ip", "0.0.0.0"), db, public)
            tally.check("place", got == want and "city" in got, f"{a['host']}", f"{got} != {want}")
    return tally.claim("place", T_PLACE, "ipinfo answers vs a lookup in the run's .mmdb", unit="answers")


T_CLOUD = "whatismyip: a cloud host is told its own address; a private address is a bogon, as ipinfo answers it"


@guarded(T_CLOUD, "curl records of the cloud host and of the bogon question")
def claim_cloud_and_bogon(ev):
    tally, cloud = Tally(), ev.run["network"]["cloud"]
    w = _workload(ev, WHAT)
    for a in _answers(ev):
        if a["host"] in cloud:
            got = (a["body"] or "").strip() if a["ask"] == "ip" else (_body_json(a) or {}).get("ip")
            tally.check("cb", a["http_code"] == 200 and got == cloud[a["host"]], f"{a['host']} /{a['ask']}", got)
        if a["ask"] == "bogon":
            tally.check("cb", _body_json(a) == {"ip": w["private_asked"], "bogon": True}, "bogon", a["body"])
    return tally.claim("cb", T_CLOUD, "curl bodies", unit="answers")


T_SEEN_FROM = "whatismyip: the server saw the home hosts as the public address, the cloud host as itself"


@guarded(T_SEEN_FROM, "whatismyip/ipinfo-requests.jsonl")
def claim_seen_from(ev):
    pub, cloud = public_ip(ev), set(ev.run["network"]["cloud"].values())
    seen = _lines(ev, WHAT, "ipinfo-requests.jsonl")
    peers = sorted({r["peer_ip"] for r in seen})
    ok = len(seen) == len(_answers(ev)) and set(peers) <= {pub} | cloud and pub in peers
    leaked = [p for p in peers if ipaddress.ip_address(p) in ipaddress.ip_network(home_net(ev))]
    return Claim(T_SEEN_FROM, ok and not leaked, measured={"requests": len(seen), "peers": peers},
                 expected={"requests": len(_answers(ev)), "peers": f"{pub} and the cloud hosts' own"},
                 evidence="the server's line per request")


def nat_claims(ev):
    return [f(ev) for f in (claim_answers, claim_ports, claim_match, claim_server, claim_inbound)]


def whatismyip_claims(ev):
    return [f(ev) for f in (claim_myip, claim_place, claim_cloud_and_bogon, claim_seen_from)]
