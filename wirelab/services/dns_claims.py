"""What a DNS case claims, from its folder only: ``dns.json`` (the workload's
record, with the zone data) and two captures (at the home host; on the
resolver's upstream interface), decoded by :mod:`wirelab.services.dns_decode`.

Expectations come from the zone data in the record
(:func:`~wirelab.services.dns_zones.lookup`, :func:`~wirelab.services.dns_zones.resolution_chain`),
never from a constant. Each claim reads its own part of the evidence, so a
corrupted item fails exactly the claim that uses it.
"""

import dataclasses
import functools
import ipaddress

from wirelab.errors import WirelabError
from wirelab.experiment.claims import Claim, capture_problems
from wirelab.observe.pcap.reader import iter_frames
from wirelab.services.dns_decode import decode_dns, pair
from wirelab.services.dns_zones import Zones, absolute, lookup, resolution_chain

PREFIX = "DNS: "
TITLE = ""      # each claim's name is set from TITLES by dns_claims
RECORD_FILE = "dns.json"
#: unbound hands out a cached TTL as (expiry - now) in whole seconds, and the
#: capture clock is not its clock: one second either way.
TTL_SLACK_S = 1


def capture_files(host):
    """The capture file names of a DNS case (see ``dns.dns_captures``)."""
    return {"host": f"dns-at-{host}.pcap", "upstream": "dns-at-resolver-upstream.pcap"}


class Ctx:
    """The case's evidence, each part read (and decoded) on first use."""

    def __init__(self, ev, case_name):
        self.ev, self.case_name = ev, case_name
        self.rec = ev.json(case_name, RECORD_FILE)
        self.zones = Zones.from_dict(self.rec["zones"])
        self.name = absolute(self.rec["name"])
        self.host_ips = set(self.rec.get("host_addrs") or [])
        self.resolver = self.rec["resolver_ip"]
        self.out = self.rec["resolver_out_ip"]
        self.files = capture_files(self.rec["host"])

    @functools.cached_property
    def host_rows(self):
        return decode_dns(self.ev.path(self.case_name, self.files["host"]))

    @functools.cached_property
    def up_rows(self):
        return decode_dns(self.ev.path(self.case_name, self.files["upstream"]))

    def expected(self, name=None):
        return lookup(self.zones, name or self.name)

    def exchange(self, dig_record):
        """The (query, response) at the home host carrying dig's message id."""
        msgs = (dig_record or {}).get("messages") or []
        if not msgs:
            return None
        for q, r in pair(self.host_rows):
            if q["id"] == msgs[-1]["id"] and q["src"] in self.host_ips and q["dst"] == self.resolver \
                    and q["qname"] == absolute(msgs[-1]["question"][0].split()[0] if msgs[-1]["question"]
                                               else self.name):
                return q, r
        return None

    def upstream_between(self, t0, t1):
        """Pairs the resolver sent upstream whose query left within [t0, t1]."""
        return [(q, r) for q, r in pair(self.up_rows) if q["src"] == self.out and t0 <= q["t"] <= t1]


def _a(rows_or_msg, name):
    """(sorted A data, ttls) for ``name`` from a decoded row or a dig message."""
    answer = rows_or_msg.get("answer") or []
    if answer and len(answer[0]) == 5:      # dig: name ttl class type data
        rows = [(r[0], r[3], r[1], r[4]) for r in answer]
    else:                                   # decoded: name type ttl data
        rows = [tuple(r) for r in answer]
    hits = [r for r in rows if absolute(r[0]) == absolute(name) and r[1] == "A"]
    return sorted(r[3] for r in hits), [int(r[2]) for r in hits]


def _zone_ttl(zones, name):
    return next(r.ttl for z in zones.zones for r in z.records if r.name == absolute(name) and r.rtype == "A")


def _walk(pairs, name):
    return [(q["dst"], r["kind"] if r else "no response") for q, r in pairs
            if q["qname"] == absolute(name) and q["qtype"] == "A"]


def _chain(zones, name):
    return [(ip, kind) for _key, ip, _origin, kind in resolution_chain(zones, name)]


# -- the claims ------------------------------------------------------------------

def claim_captures(c):
    caps = [x for x in c.ev.case(c.case_name).get("captures") or []
            if str(x.get("path", "")).endswith(tuple("/" + f for f in c.files.values()))]
    problems = capture_problems(caps)
    if len(caps) != 2:
        problems.append(f"{len(caps)} of the 2 DNS captures in case.json")
    return Claim(TITLE, not problems,
                 measured=problems or {x["name"]: x.get("packets") for x in caps},
                 expected="2 captures, 0 dropped by kernel, files parse",
                 evidence="case.json captures (tcpdump counters)")


def claim_resolv_conf(c):
    seen = c.rec["resolv_conf"]
    ok = seen["own_file"] and seen["nameservers"] == [c.resolver]
    return Claim(TITLE, ok,
                 measured={"nameservers": seen["nameservers"], "own file": seen["own_file"]},
                 expected={"nameservers": [c.resolver], "own file": True},
                 evidence="/etc/resolv.conf read inside the host's mount namespace; its inode vs the machine's")


def claim_resolver_walk(c):
    ex = c.exchange(c.rec["cold"])
    if not ex or not ex[1]:
        return Claim(TITLE, False,
                     measured="the cold query and its answer are not in the home capture",
                     evidence="home capture")
    walk = _walk(c.upstream_between(ex[0]["t"], ex[1]["t"]), c.name)
    want = _chain(c.zones, c.name)
    return Claim(TITLE, walk == want,
                 measured=walk, expected=want, tolerance="exact order",
                 evidence=f"resolver's queries for {c.name} on its upstream capture while the host waited")


def claim_answers(c):
    _rc, want = c.expected()
    ttl = _zone_ttl(c.zones, c.name)
    got, bad = {}, []
    cold = c.rec["cold"]["messages"][-1]
    got["dig cold"], cold_ttls = _a(cold, c.name)
    if not cold_ttls or not all(ttl - TTL_SLACK_S <= t <= ttl for t in cold_ttls):
        bad.append(f"cold TTL {cold_ttls} not the zone's {ttl}")
    ex = c.exchange(c.rec["cold"])
    got["home capture"] = _a(ex[1], c.name)[0] if ex and ex[1] else None
    if ex and ex[1]:
        auth = [r for q, r in c.upstream_between(ex[0]["t"], ex[1]["t"])
                if r and r["kind"] == "answer" and q["qname"] == c.name]
        got["authoritative"], auth_ttls = _a(auth[-1], c.name) if auth else (None, [])
        if auth and not (auth[-1]["aa"] and auth_ttls and set(auth_ttls) == {ttl}):
            bad.append(f"authoritative answer aa={auth[-1]['aa']} TTL {auth_ttls}, zone TTL {ttl}")
    for i, a in enumerate(c.rec["cached"]["answers"]):
        got[f"cached {i + 1}"] = _a((a["messages"] or [{}])[-1], c.name)[0]
    got["dig +trace"] = _a((c.rec["trace"]["messages"] or [{}])[-1], c.name)[0]
    bad += [f"{k}: {v}" for k, v in got.items() if v != want]
    return Claim(TITLE, not bad, measured=bad or got,
                 expected={"A": want, "TTL": ttl}, tolerance=f"cold TTL within {TTL_SLACK_S} s",
                 evidence="dig +yaml answers; answers in both captures; zones in dns.json")


def claim_cache(c):
    cached = c.rec["cached"]
    cold_ex = c.exchange(c.rec["cold"])
    exs = [c.exchange(a) for a in cached["answers"]]
    if cached.get("failure") or not cold_ex or len(exs) < 2 or not all(e and e[1] for e in exs):
        return Claim(TITLE, False,
                     measured=cached.get("failure") or "cached exchanges missing from the home capture",
                     evidence="dns.json cached; home capture")
    t_cold = cold_ex[1]["t"]
    ttls, bad = [], []
    for q, r in exs:
        got = _a(r, c.name)[1]
        ttl = max(got) if got else None
        ttls.append(ttl)
        cold_ttl = _a(cold_ex[1], c.name)[1]
        if ttl is None or not cold_ttl:
            bad.append("no TTL")
            continue
        age = r["t"] - t_cold
        if not cold_ttl[0] - age - TTL_SLACK_S <= ttl <= cold_ttl[0] - age + TTL_SLACK_S:
            bad.append(f"TTL {ttl} after {age:.2f} s")
    if any(b is None or a is None or b > a for a, b in zip(ttls, ttls[1:])):
        bad.append("TTL rose")
    if ttls and ttls[-1] is not None and cold_ex and ttls[-1] >= _a(cold_ex[1], c.name)[1][0]:
        bad.append("TTL never dropped")
    upstream = c.upstream_between(exs[0][0]["t"], exs[-1][1]["t"])
    if upstream:
        bad.append(f"{len(upstream)} upstream queries")
    return Claim(TITLE, not bad,
                 measured={"ttls": [_a(cold_ex[1], c.name)[1][0]] + ttls, "upstream queries": len(upstream),
                           "problems": bad},
                 expected="TTL = cold TTL - age (counting down), 0 upstream queries",
                 tolerance=f"{TTL_SLACK_S} s on the TTL", evidence="home capture; resolver's upstream capture")


def claim_trace(c):
    msgs = c.rec["trace"]["messages"]
    servers = [(m["server"], "answer" if m["answer"] else "referral") for m in msgs[1:]]
    direct = [(q, r) for q, r in pair(c.host_rows)
              if q["src"] in c.host_ips and q["dst"] != c.resolver and not q["rd"]]
    walk = _walk(direct, c.name)
    want = _chain(c.zones, c.name)
    auth_ok = bool(msgs) and "aa" in msgs[-1]["flags"]
    return Claim(TITLE, walk == want and servers == want and auth_ok,
                 measured={"capture": walk, "dig": servers, "last aa": auth_ok}, expected=want,
                 tolerance="exact order", evidence="dig +trace +yaml; the host's non-recursive queries in its capture")


def claim_nxdomain(c):
    got, bad = {}, []
    for item in c.rec["nxdomain"]:
        name = absolute(item["name"])
        rcode, _ = lookup(c.zones, name)
        last = resolution_chain(c.zones, name)[-1]
        msg = (item["messages"] or [{}])[-1]
        soa = [r[0] for r in msg.get("authority", []) if len(r) == 5 and r[3] == "SOA"]
        said = [r["src"] for r in c.up_rows if r["qname"] == name and r["kind"] == "nxdomain"
                and r["dst"] == c.out]
        got[name] = {"status": msg.get("status"), "soa": soa, "said by": sorted(set(said))}
        if rcode != "NXDOMAIN" or msg.get("status") != "NXDOMAIN" or soa != [last[2]] or said[-1:] != [last[1]]:
            bad.append(name)
    return Claim(TITLE,
                 bool(got) and not bad, measured=got,
                 expected={absolute(i["name"]): resolution_chain(c.zones, i["name"])[-1][:3]
                           for i in c.rec["nxdomain"]},
                 evidence="dig +yaml status and SOA; NXDOMAIN responses on the resolver's upstream capture")


def claim_traceroute(c):
    tr = c.rec["traceroute"]
    _rc, want = c.expected()
    hops = tr["hops"]
    ok = tr["resolved"] in want and hops == tr["expected"] and bool(hops)
    return Claim(TITLE, ok,
                 measured={"resolved": tr["resolved"], "hops": hops},
                 expected={"resolved": want, "hops": tr["expected"]},
                 evidence="traceroute's output; the next hop each node's kernel chose (RTM_GETROUTE, at run time)")


def claim_http(c):
    h = c.rec["http"]
    _rc, want = c.expected()
    curl, body = h.get("curl") or {}, h.get("body") or {}
    syn_after_answer = False
    answers = [r["t"] for r in c.host_rows if r["qr"] and r["qname"] == c.name and r["kind"] == "answer"]
    syns = [t for t in _syns(c, curl.get("remote_ip"))]
    if answers and syns:
        syn_after_answer = any(a < syns[0] for a in answers)
    ok = (h.get("exit") == 0 and curl.get("http_code") == 200 and curl.get("remote_ip") in want
          and body.get("node") == c.zones.web.get(c.name) and body.get("host") == c.name.rstrip(".")
          and syn_after_answer)
    return Claim(TITLE, ok,
                 measured={"http": curl.get("http_code"), "remote_ip": curl.get("remote_ip"),
                           "served by": body.get("node"), "Host": body.get("host"),
                           "connect after answer": syn_after_answer},
                 expected={"http": 200, "remote_ip": want, "served by": c.zones.web.get(c.name)},
                 evidence="curl -w %{json}; the server's JSON body; the home capture (answer, then SYN)")


def _syns(c, ip):
    """Times the host sent a TCP SYN to ``ip``:80 (from its capture)."""
    import dpkt
    out = []
    if not ip:
        return out
    for _lt, ts, frame in iter_frames(c.ev.path(c.case_name, c.files["host"])):
        pkt = dpkt.ethernet.Ethernet(frame).data
        if isinstance(pkt, dpkt.ip.IP) and isinstance(pkt.data, dpkt.tcp.TCP) \
                and str(ipaddress.IPv4Address(pkt.dst)) == ip and pkt.data.dport == 80 \
                and pkt.data.flags & dpkt.tcp.TH_SYN and not pkt.data.flags & dpkt.tcp.TH_ACK:
            out.append(ts / 1e9)
    return out


def claim_inside(c):
    lab = {s.ip for s in c.zones.servers} | {c.resolver}
    ends = set()
    for r in c.host_rows + c.up_rows:
        ends.add(r["dst"] if r["dport"] == 53 else r["src"])
    sha = c.rec["machine_resolv_sha256"]
    outside = sorted(ends - lab)
    ok = not outside and bool(ends) and sha.get("before") and sha.get("before") == sha.get("after")
    return Claim(TITLE, bool(ok),
                 measured={"DNS servers seen": sorted(ends), "outside the lab": outside,
                           "machine resolv.conf unchanged": sha.get("before") == sha.get("after")},
                 expected={"DNS servers": sorted(lab)},
                 evidence="port-53 ends of every DNS message in both captures; SHA-256 before/after")


CLAIMS = (claim_captures, claim_resolv_conf, claim_resolver_walk, claim_answers, claim_cache,
          claim_trace, claim_nxdomain, claim_traceroute, claim_http, claim_inside)
# Stable names, whatever the outcome (a failed claim is found by its name).
TITLES = ("captures at the home host and the resolver's upstream are complete",
          "the home host resolves through its own resolv.conf, naming the ISP's resolver",
          "cold query: the resolver walks root -> TLD -> authoritative",
          "every answer equals the zone data",
          "a repeated query is answered from the resolver's cache, the TTL counting down",
          "dig +trace from the home host walks root -> TLD -> authoritative",
          "unknown names are NXDOMAIN, said by the zone that would hold them",
          "traceroute by name resolves it and follows the routed path",
          "curl http://NAME/ reaches the host the name is given to",
          "no DNS message leaves the lab; the machine's /etc/resolv.conf is unchanged")


def dns_claims(ev, case_name, prefix=PREFIX):
    """The ten DNS claims of a case, from its folder (``ev``: an Evidence)."""
    try:
        c = Ctx(ev, case_name)
    except (WirelabError, KeyError, TypeError, ValueError) as exc:
        return [Claim(prefix + t, False, measured=f"no DNS record: {exc}", evidence=RECORD_FILE)
                for t in TITLES]
    out = []
    for fn, title in zip(CLAIMS, TITLES):
        try:
            claim = fn(c)
        except (WirelabError, KeyError, TypeError, ValueError, IndexError, AttributeError, OSError) as exc:
            claim = Claim(title, False, measured=f"evidence unreadable: {type(exc).__name__}: {exc}",
                          evidence=fn.__doc__ or title)
        out.append(dataclasses.replace(claim, name=prefix + title))
    errors = c.rec.get("errors") or []
    if errors:   # a step that failed is named in every claim that lacks its data
        out = [dataclasses.replace(x, evidence=x.evidence + f"; workload errors: {errors}") if not x.ok else x
               for x in out]
    return out


def dns_figures(ev, case_name):
    """Resolution times (ms, home capture): cold, each cached; upstream messages."""
    c = Ctx(ev, case_name)
    cold = c.exchange(c.rec["cold"])
    cached = [c.exchange(a) for a in c.rec["cached"]["answers"]]
    ms = lambda ex: round((ex[1]["t"] - ex[0]["t"]) * 1e3, 3) if ex and ex[1] else None  # noqa: E731
    return {"cold_ms": ms(cold), "cached_ms": [ms(e) for e in cached],
            "upstream_queries_cold": len(c.upstream_between(cold[0]["t"], cold[1]["t"])) if cold and cold[1] else None}
