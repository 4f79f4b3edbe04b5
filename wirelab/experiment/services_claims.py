"""Claims of ``internet_services`` about DHCP, the resolver and the clean-up, from the folder only.

Evidence: ``run.json`` (the clients' MACs, the DHCP plan, the resolver's
address, the clean-up record), each case's ``case.json`` and its captures,
decoded by :mod:`wirelab.services.dhcp_wire`. Expectations come from the
servers' configurations as recorded and from dhclient's timer model
(:func:`wirelab.services.dhcp.dhclient_renewal_range`), never from a constant.
Each claim reads its own part, so a corrupted item fails exactly its claim.
"""

import functools
import ipaddress
import os

from wirelab.errors import WirelabError
from wirelab.experiment.claims import Claim, Tally, capture_problems
from wirelab.services.dhcp import RENEWAL_LINE, dhclient_renewal_range
from wirelab.services.dhcp_wire import dora, read_dhcp, renewals

NO_SERVER, DORA, RESOLVER = "dhcp/no-server", "dhcp/dora", "resolver"
#: dhclient retransmits at most every backoff-cutoff (2 s, :class:`ClientConfig`)
#: and reads its clock in whole seconds: it gives up between ``timeout`` and
#: ``timeout`` + 3 s after it started, plus its own start and exit.
GIVE_UP_SLACK_S = 3.5
#: dhclient sets its renewal timer to a whole second plus random() % 10^6 us,
#: counted from an ACK received at some fraction of a second: +-1 s around the
#: delay it chose, and a process woken by its timer on a busy machine.
TIMER_SLACK_S = 1.0
WAKEUP_SLACK_S = 0.2
PROBLEM = (WirelabError, KeyError, TypeError, ValueError, IndexError, AttributeError, OSError)


def guarded(title, evidence):
    """A claim function that fails (with the reason) instead of raising on broken evidence."""
    def wrap(fn):
        def run(ev):
            try:
                return fn(ev)
            except PROBLEM as exc:
                return Claim(title, False, measured=f"evidence unreadable: {type(exc).__name__}: {exc}",
                             evidence=evidence)
        run.title = title
        return run
    return wrap


def _workload(ev, case):
    c = ev.case(case)
    if c.get("error"):
        raise ValueError(f"{case} failed: {c['error'].get('message')}")
    return c["workload"]


def _client_link(ev):
    """{client: capture file of its DHCP exchange} (hgw's on the access link)."""
    return {node: ("access.pcap" if node == "hgw" else "lan.pcap") for node in ev.run["network"]["macs"]}


@functools.lru_cache(maxsize=16)
def _read(path, _mtime_ns, _size):
    return read_dhcp(path)


def _messages(ev, case, name):
    """The DHCP messages of a capture, decoded once per file version."""
    path = ev.path(case, name)
    st = os.stat(path)
    return _read(path, st.st_mtime_ns, st.st_size)


# -- 1. no server ----------------------------------------------------------------------------

T_GIVE_UP = "dhcp/no-server: with no server, dhclient gives up after its timeout: exit 2 and one line"


@guarded(T_GIVE_UP, "case.json workload (exit code, last line, seconds, addresses after)")
def claim_gives_up(ev):
    w = _workload(ev, NO_SERVER)
    timeout = w["config"]["timeout_s"]
    window = (timeout, timeout + GIVE_UP_SLACK_S)
    ok = (w["exit_code"] == 2 and "Unable to obtain a lease" in w["last_line"]
          and window[0] <= w["seconds"] <= window[1] and not w["addresses_after"])
    return Claim(T_GIVE_UP, ok,
                 measured={"exit": w["exit_code"], "last_line": w["last_line"], "seconds": w["seconds"],
                           "addresses_after": w["addresses_after"]},
                 expected="exit 2, 'Unable to obtain a lease on first try.  Exiting.', no address",
                 tolerance=f"[{window[0]}, {window[1]}] s: timeout {timeout} s, retransmissions at most "
                           f"every {w['config']['backoff_cutoff_s']} s (backoff-cutoff), whole-second clock",
                 evidence="case.json workload (dhclient's output and exit code, netlink addresses)")


T_ONLY_DISCOVERS = "dhcp/no-server: only DISCOVERs on the home LAN, broadcast from the client, until it gives up"


@guarded(T_ONLY_DISCOVERS, "lan.pcap")
def claim_only_discovers(ev):
    w = _workload(ev, NO_SERVER)
    mac = ev.run["network"]["macs"][ev.case(NO_SERVER)["args"]["host"]]
    msgs = _messages(ev, NO_SERVER, "lan.pcap")
    kinds = [m.kind for m in msgs]
    mine = [m for m in msgs if m.chaddr == mac.lower() and m.kind == "DISCOVER" and m.broadcast]
    cfg = w["config"]
    # one at once, then one at least every backoff-cutoff until the timeout
    least = 1 + cfg["timeout_s"] // cfg["backoff_cutoff_s"] - (cfg["timeout_s"] % cfg["backoff_cutoff_s"] == 0)
    ok = len(mine) >= least and len(mine) == len(msgs)
    return Claim(T_ONLY_DISCOVERS, ok, measured={"messages": kinds, "discovers_from_client": len(mine)},
                 expected=f">= {least} DISCOVERs, nothing else (no OFFER)",
                 tolerance=f"timeout {cfg['timeout_s']} s, a retransmission at most every "
                           f"{cfg['backoff_cutoff_s']} s",
                 evidence="lan.pcap (hgw-eth1), decoded DHCP")


# -- 2. DORA and renewals --------------------------------------------------------------------

def _dora_all(ev):
    macs, links = ev.run["network"]["macs"], _client_link(ev)
    return {node: dora(_messages(ev, DORA, links[node]), mac) for node, mac in macs.items()}


T_DORA = "dhcp/dora: DISCOVER, OFFER, REQUEST, ACK for every client (one xid, in order), on its own link"


@guarded(T_DORA, "access.pcap, lan.pcap")
def claim_dora(ev):
    tally = Tally()
    for node, ex in _dora_all(ev).items():
        tally.check("dora", ex.ok, node, ex.why)
    ev.metrics.setdefault("dhcp", {})["dora_ms"] = {
        n: round((ex.messages[3].ts_ns - ex.messages[0].ts_ns) / 1e6, 3) for n, ex in _dora_all(ev).items() if ex.ok}
    return tally.claim("dora", T_DORA, "access.pcap (hgw's lease), lan.pcap (the home hosts'), decoded DHCP",
                       unit="clients")


def _acks(ev):
    """{client: the first ACK sent to it (its DORA's), or None}, found by MAC
    alone: the claims about the lease do not depend on the exchange's order."""
    macs, links, out = ev.run["network"]["macs"], _client_link(ev), {}
    for node, mac in macs.items():
        out[node] = next((m for m in _messages(ev, DORA, links[node])
                          if m.chaddr == mac.lower() and m.kind == "ACK" and m.op == 2), None)
    return out


def _server_of(ev, node):
    servers = _workload(ev, DORA)["servers"]
    return servers["isp"] if node == "hgw" else servers["hgw"]


def _in_pool(cfg, ip):
    first, last = (ipaddress.IPv4Address(a) for a in cfg["pool"])
    return first <= ipaddress.IPv4Address(ip) <= last


T_POOLS = "dhcp/dora: every lease is inside its server's pool, no address is given twice, and the lease files agree"


@guarded(T_POOLS, "ACKs in the captures; leases-*.txt")
def claim_pools(ev):
    tally, given = Tally(), {}
    macs = ev.run["network"]["macs"]
    for node, ack in _acks(ev).items():
        ip = ack.yiaddr if ack else None
        cfg = _server_of(ev, node)
        tally.check("pool", ip is not None and _in_pool(cfg, ip), node, f"{ip} outside {cfg['pool']}")
        tally.check("pool", ip not in given, node, f"{ip} also given to {given.get(ip)}")
        leased = {e["mac"]: e["ip"] for e in cfg["leases"]}
        tally.check("pool", leased.get(macs[node].lower()) == ip, node, f"lease file says {leased.get(macs[node].lower())}")
        given[ip] = node
    return tally.claim("pool", T_POOLS, "ACK yiaddr per client; the servers' lease files (case.json)", unit="checks")


def _prefixlen(mask):
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


T_OPTIONS = "dhcp/dora: each ACK carries its server's router, DNS server, lease time and T1"


@guarded(T_OPTIONS, "ACK options in the captures; the servers' configurations")
def claim_options(ev):
    tally = Tally()
    for node, ack in _acks(ev).items():
        cfg = _server_of(ev, node)
        got = ack and {"routers": ack.routers, "dns": ack.dns, "lease": ack.lease_s, "t1": ack.t1_s,
                       "netmask": ack.netmask}
        want = {"routers": [cfg["router"]], "dns": list(cfg["dns"]), "lease": cfg["lease_s"], "t1": cfg["t1_s"],
                "netmask": cfg["netmask"]}
        tally.check("options", got == want, node, f"{got} != {want}")
    return tally.claim("options", T_OPTIONS, "ACK options 3, 6, 51, 58, 1 vs case.json servers", unit="clients")


T_KERNEL = "dhcp/dora: each client's kernel holds its lease: address/prefix on its interface, default route via the router"


@guarded(T_KERNEL, "netlink addresses and routes after BOUND (case.json)")
def claim_kernel(ev):
    tally, clients = Tally(), _workload(ev, DORA)["clients"]
    for node, ack in _acks(ev).items():
        c = clients[node]
        want_addr = f"{ack.yiaddr}/{_prefixlen(ack.netmask)}" if ack else None
        default = [r for r in c["routes"] if r["dst"] == "0.0.0.0/0"]
        ok = (want_addr is not None and c["addresses"] == [want_addr]
              and [(r["gateway"], r["dev"]) for r in default] == [(ack.routers[0], c["intf"])])
        tally.check("kernel", ok, node, f"addresses {c['addresses']}, default {default}")
    return tally.claim("kernel", T_KERNEL, "netlink RTM_GETADDR/RTM_GETROUTE in each client's namespace", unit="clients")


T_RENEW = "dhcp/dora: every client renews at T1: unicast REQUEST (ciaddr = its lease) to its server, unicast ACK"


def renewal_rows(ev):
    """Per client: the first renewal after its DORA, the window and the client's own word."""
    rows, clients = {}, _workload(ev, DORA)["clients"]
    links, macs = _client_link(ev), ev.run["network"]["macs"]
    for node, ack in _acks(ev).items():
        msgs = _messages(ev, DORA, links[node])
        # dhclient binds on the DORA's (first) ACK: its renewal timer counts from there
        ren = [r for r in renewals(msgs, macs[node]) if ack and r.request.index > ack.index]
        t1 = ack.t1_s if ack else None
        lo, hi = dhclient_renewal_range(t1) if t1 else (None, None)
        said = [int(m.group(2)) for m in map(RENEWAL_LINE.search, clients[node]["dhclient_lines"]) if m]
        row = {"t1": t1, "range": [lo, hi], "stated_s": said[0] if said else None, "interval_s": None,
               "unicast_ack": None}
        if ren:
            r = ren[0]
            row.update(interval_s=round((r.request.ts_ns - ack.ts_ns) / 1e9, 3), server=r.request.ip_dst,
                       ciaddr=r.request.ciaddr,
                       unicast_ack=bool(r.answer and r.answer.kind == "ACK" and r.answer.ip_dst == r.request.ciaddr))
        rows[node] = row
    return rows


@guarded(T_RENEW, "access.pcap, lan.pcap; dhclient's output")
def claim_renewals(ev):
    tally, rows = Tally(), renewal_rows(ev)
    for node, r in rows.items():
        iv, (lo, hi), said = r["interval_s"], r["range"], r["stated_s"]
        ok = (iv is not None and r["unicast_ack"] and lo is not None
              and lo - TIMER_SLACK_S <= iv <= hi + TIMER_SLACK_S + WAKEUP_SLACK_S
              and said is not None and lo <= said <= hi and abs(iv - said) <= TIMER_SLACK_S + WAKEUP_SLACK_S)
        tally.check("renew", ok, node, str(r))
    ev.metrics.setdefault("dhcp", {})["renewals"] = rows
    claim = tally.claim("renew", T_RENEW, "first unicast REQUEST after the DORA ACK (captures); "
                        "'renewal in N seconds' (dhclient)", unit="clients")
    t1 = next((r["t1"] for r in rows.values() if r["t1"]), None)
    claim.measured = {n: r["interval_s"] for n, r in rows.items()}
    claim.expected = (f"T1 {t1} s -> dhclient picks {rows and next(iter(rows.values()))['range']} s "
                      "(3/4 T1..T1), and is within its stated delay" if t1 else "a T1 in the ACK")
    claim.tolerance = (f"+-{TIMER_SLACK_S:g} s (whole-second timer + random us) + {WAKEUP_SLACK_S:g} s wake-up; "
                       f"{claim.tolerance} failures")
    return claim


# -- 3. the resolver ----------------------------------------------------------------------------

T_RELAY = "resolver: the resolver's address travels by DHCP: ISP's ACK -> hgw -> hgw's ACKs -> each home host"


@guarded(T_RELAY, "ACK option 6 in both captures; hgw's and the hosts' resolv.conf of the run")
def claim_relay(ev):
    want = ev.run["network"]["resolver_ip"]
    w, r = _workload(ev, DORA), _workload(ev, RESOLVER)
    acks = _acks(ev)
    chain = {"isp_ack": acks["hgw"] and acks["hgw"].dns, "hgw_learned": w["hgw_learned_dns"],
             "hgw_server_gives": w["servers"]["hgw"]["dns"]}
    hosts = ev.run["network"]["home_hosts"]
    for h in hosts:
        chain[f"{h}_ack"] = acks[h] and acks[h].dns
        chain[f"{h}_resolv"] = r["hosts"][h]["dhcp_resolv_conf"]
    ok = all(v == [want] for v in chain.values()) and r["hgw"]["resolv_conf"] == [want]
    return Claim(T_RELAY, ok, measured=chain, expected=[want],
                 evidence="option 6 of the ACKs (access.pcap, lan.pcap), the servers' configurations, "
                          "the hook's resolv.conf files")


T_SEEN = "resolver: each home host reads its own /etc/resolv.conf (a mount in its namespace) naming that resolver"


@guarded(T_SEEN, "resolver/case.json (what each host reads, and whether it is the machine's file)")
def claim_seen(ev):
    want, tally = ev.run["network"]["resolver_ip"], Tally()
    for h, entry in _workload(ev, RESOLVER)["hosts"].items():
        seen = entry.get("seen") or {}
        tally.check("seen", seen.get("own_file") is True and seen.get("nameservers") == [want], h, str(seen))
    return tally.claim("seen", T_SEEN, "cat /etc/resolv.conf inside each host; stat against the machine's file",
                       unit="hosts")


# -- the whole run ----------------------------------------------------------------------------

T_CASES = "every case ran to its end and its captures are complete (tcpdump dropped nothing)"


@guarded(T_CASES, "case.json of every case")
def claim_cases(ev):
    tally = Tally()
    for name in ev.case_names():
        c = ev.case(name)
        tally.check("cases", not c.get("error"), name, (c.get("error") or {}).get("message"))
        tally.check("cases", not capture_problems(c["captures"]), name, capture_problems(c["captures"]))
    return tally.claim("cases", T_CASES, "case.json error and captures", unit="checks")


T_LEFT = "nothing is left: no daemon, no DHCP work folder, no resolv.conf mount, the NAT table gone"


@guarded(T_LEFT, "run.json cleanup")
def claim_left(ev):
    c = ev.run["cleanup"]
    nat = c["nat"]
    table_gone = nat["removed"] is not None and ["ip", nat["table"]] not in nat["removed"]["tables_after"]
    left = {"alive_after": c["alive_after"], "alive_before_teardown": c["alive_before_teardown"],
            "workdirs_left": c["workdirs_left"], "resolv_mounts_left": c["resolv_mounts_left"],
            "nat_table_gone": table_gone}
    ok = table_gone and not any(left[k] for k in ("alive_after", "alive_before_teardown", "workdirs_left",
                                                  "resolv_mounts_left"))
    return Claim(T_LEFT, ok, measured=left, expected="nothing left; the table gone",
                 evidence="PIDs and start times of every daemon, the work folder, /proc/<pid>/mountinfo "
                          "of every host, nft -j list tables on hgw")


T_MACHINE = "the machine's /etc/resolv.conf is byte-identical before and after the run"


@guarded(T_MACHINE, "sha256 of /etc/resolv.conf (run.json; resolver and dns records)")
def claim_machine(ev):
    before = ev.run["machine_resolv_sha256"]["before"]
    seen = {"after": ev.run["cleanup"]["machine_resolv_sha256_after"],
            "during (resolver step)": _workload(ev, RESOLVER)["machine_resolv_sha256"]}
    return Claim(T_MACHINE, all(v == before for v in seen.values()), measured=seen, expected=before,
                 evidence="sha256 of the machine's file before, during and after")


def dhcp_claims(ev):
    return [f(ev) for f in (claim_gives_up, claim_only_discovers, claim_dora, claim_pools, claim_options,
                            claim_kernel, claim_renewals)]


def resolver_claims(ev):
    return [claim_relay(ev), claim_seen(ev)]


def cleanup_claims(ev):
    return [claim_cases(ev), claim_left(ev), claim_machine(ev)]

