"""What a home host does with names, as a JSON-able record (``dns.json`` in the case folder).

:func:`dns_workload` runs, from ``host`` and through the resolver its own
resolv.conf names (plain ``dig NAME``, no ``@server``):

1. ``cold``: the name, never asked before: the resolver walks the tree;
2. ``cached``: the same name again, repeated until the answer's TTL has
   dropped below the cold one (a condition with a deadline, not a sleep): each
   answer comes from the resolver's cache, the TTL counting down;
3. ``trace``: ``dig +trace``: the host itself walks root -> TLD -> authoritative;
4. ``nxdomain``: names that do not exist (below a zone; below no TLD);
5. ``traceroute``: ``traceroute NAME`` (resolved by the C library, through resolv.conf);
6. ``http``: ``curl http://NAME/`` against :mod:`wirelab.services.dns_web` on the named host.

dig's answers are read from ``dig +yaml`` (structured), never from its screen
text. Verify reads the record and the captures (:mod:`wirelab.services.dns_claims`).
"""

import json
import os
import re
import subprocess
import sys
import time

import yaml

from wirelab.apps.runner import AppServer
from wirelab.errors import WaitTimeout, WirelabError
from wirelab.experiment.evidence import write_json
from wirelab.observe.traceroute_parse import parse as parse_traceroute
from wirelab.proc import wait_until
from wirelab.services.dns_zones import absolute, lookup

DEFAULT_NAME = "www.amazon.com."
#: One name below an existing zone (NXDOMAIN from its authoritative server), one
#: below no TLD of the lab (NXDOMAIN from the root). Not .invalid/.test: unbound
#: answers those itself, without asking the tree.
UNKNOWN_NAMES = ("nosuch.amazon.com.", "www.amazon.xyz.")
#: The TTL counts in whole seconds: it drops within 1 s; this covers a busy machine.
CACHE_DEADLINE_S = 5.0
DIG_TIMEOUT_S = 10.0
TRACEROUTE_WAIT_S = 1
TRACEROUTE_MAX_TTL = 16
HTTP_PORT = 80
CURL_MAX_S = 5
WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_web.py")
RECORD_FILE = "dns.json"


def _rr(text):
    """'www.amazon.com. 300 IN A 10.20.30.10' -> [name, ttl, class, type, data]."""
    parts = str(text).split(None, 4)
    if len(parts) < 4:
        return [str(text)]
    if parts[1].isdigit():
        parts[1] = int(parts[1])
    return parts


def parse_dig_yaml(text):
    """``dig +yaml`` output -> one dict per message dig printed (one, or one per
    step of ``+trace``): type, server, times, status, flags, id, sections."""
    docs = yaml.safe_load(text) or []
    out = []
    for doc in docs:
        m = (doc or {}).get("message") or {}
        data = m.get("response_message_data") or m.get("query_message_data") or {}
        out.append({
            "type": m.get("type"), "server": m.get("response_address"),
            "query_time": str(m.get("query_time")), "response_time": str(m.get("response_time")),
            "status": data.get("status"), "flags": str(data.get("flags") or "").split(),
            "id": data.get("id"),
            "question": [str(q) for q in data.get("QUESTION_SECTION") or []],
            "answer": [_rr(x) for x in data.get("ANSWER_SECTION") or []],
            "authority": [_rr(x) for x in data.get("AUTHORITY_SECTION") or []],
            "additional": [_rr(x) for x in data.get("ADDITIONAL_SECTION") or []]})
    return out


def dig(tb, node, args, timeout=DIG_TIMEOUT_S):
    """``dig +yaml ARGS`` in ``node``: {argv, exit, messages, stderr, wall}."""
    argv = ["dig", "+yaml", *args]
    t0 = time.time()
    done = tb.run(node, argv, timeout=timeout, check=False)
    try:
        messages = parse_dig_yaml(done.stdout)
    except (yaml.YAMLError, AttributeError) as exc:
        messages = []
        done.stderr += f"\nunreadable dig output: {exc}"
    return {"argv": argv, "exit": done.returncode, "messages": messages,
            "stderr": done.stderr.strip()[-500:], "wall": [round(t0, 6), round(time.time(), 6)]}


def dig_yaml(tb, node, args, timeout):
    """The first message of ``dig +yaml ARGS`` in ``node``, or None."""
    msgs = dig(tb, node, args, timeout)["messages"]
    return msgs[0] if msgs else None


def a_records(msg, name):
    """(sorted data, [ttls]) of ``name``'s A records in a dig message's answer."""
    rows = [r for r in (msg or {}).get("answer", []) if len(r) == 5 and r[3] == "A"
            and absolute(r[0]) == absolute(name)]
    return sorted(r[4] for r in rows), [r[1] for r in rows]


def host_addresses(tb, host):
    """Every IPv4 address on ``host``'s interfaces (a DHCP lease may add one)."""
    with tb.iproute(host) as ipr:
        return sorted({a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)} - {"127.0.0.1"})


def resolv_conf_seen(tb, dns, host):
    """What ``host`` reads as /etc/resolv.conf, and whether it is the machine's file."""
    from wirelab.services.dns import HOST_RESOLV_CONF
    node = tb.resolve(host)
    mine = os.stat(HOST_RESOLV_CONF)
    seen = os.stat(f"/proc/{node.pid}/root{HOST_RESOLV_CONF}")
    text = tb.run(node, ["cat", HOST_RESOLV_CONF], timeout=5).stdout
    return {"text": text, "own_file": (seen.st_dev, seen.st_ino) != (mine.st_dev, mine.st_ino),
            "nameservers": re.findall(r"^nameserver\s+(\S+)", text, re.M)}


def cache_test(tb, host, name, cold_ttl, deadline=CACHE_DEADLINE_S):
    """Ask again until the answer's TTL is below ``cold_ttl`` (at least twice)."""
    answers = []

    def dropped():
        answers.append(dig(tb, host, [name]))
        ttls = a_records((answers[-1]["messages"] or [None])[0], name)[1]
        return len(answers) >= 2 and ttls and cold_ttl is not None and max(ttls) < cold_ttl
    try:
        wait_until(dropped, deadline, what=f"the cached TTL of {name} to drop below {cold_ttl}",
                   interval=0.1)
        failure = None
    except WaitTimeout as exc:
        failure = str(exc)
    return {"answers": answers, "failure": failure}


def traceroute_by_name(tb, host, name, folder):
    # -N 1: one probe at a time, so none is sent past the destination. With the
    # default 16 at once, every probe with a TTL beyond it draws a port
    # unreachable from the host, whose kernel rate-limits those per peer (a
    # burst of 6, then 1/s): a second traceroute a second later finds no token left.
    argv = ["traceroute", "-4", "-n", "-N", "1", "-q", "1", "-w", str(TRACEROUTE_WAIT_S),
            "-m", str(TRACEROUTE_MAX_TTL), name.rstrip(".")]
    done = tb.run(host, argv, timeout=TRACEROUTE_MAX_TTL * TRACEROUTE_WAIT_S + 10, check=False)
    with open(os.path.join(folder, "dns-traceroute.txt"), "w") as f:
        f.write(" ".join(argv) + "\n" + done.stdout + done.stderr)
    head = re.search(r"^traceroute to \S+ \(([\d.]+)\)", done.stdout, re.M)
    try:
        hops = [h["addr"] for h in parse_traceroute(done.stdout)]
    except ValueError as exc:
        hops = str(exc)
    resolved = head.group(1) if head else None
    return {"argv": argv, "exit": done.returncode, "stdout": done.stdout,
            "resolved": resolved, "hops": hops,
            "expected": routed_path(tb, host, resolved) if resolved else None}


def routed_path(tb, host, dst, limit=TRACEROUTE_MAX_TTL):
    """The addresses traceroute should print, from the kernels' own tables: ask
    each node on the way (RTM_GETROUTE) for its next hop; a router answers from
    the interface the probe came in by, which holds that next-hop address. Works
    where the plan has no route for a host (a DHCP lease gave it one)."""
    owners = tb.topo.owners()
    hops, node = [], tb.resolve(host).name
    for _ in range(limit):
        gateway = tb.route_get(node, dst)["gateway"]
        if gateway is None:             # dst is on a link of this node
            return hops + [dst]
        if gateway not in owners:
            return None
        hops.append(gateway)
        node = owners[gateway][0]
    return None


def http_by_name(tb, zones, host, name, folder):
    """curl http://NAME/ to dns_web on the node the zones name for ``name``."""
    rcode, ips = lookup(zones, name)
    node = zones.web.get(absolute(name))
    if rcode != "NOERROR" or not ips or node is None:
        return {"error": f"{name}: no web server in the zone data"}
    body_path = os.path.join(folder, "dns-http-body.json")
    serve = [sys.executable, WEB, "--bind", ips[0], "--port", HTTP_PORT, "--node", node]
    argv = ["curl", "-4", "-sS", "--max-time", str(CURL_MAX_S), "-o", body_path,
            "-w", "%{json}", f"http://{name.rstrip('.')}/"]
    with AppServer(tb, node, serve, name=f"dns_web {node}") as server:
        done = tb.run(host, argv, timeout=CURL_MAX_S + 5, check=False)
        served = server.lines()
    out = {"server_node": node, "server_ip": ips[0], "argv": argv, "exit": done.returncode,
           "stderr": done.stderr.strip()[-300:], "served": served}
    try:
        info = json.loads(done.stdout or "{}")
        out["curl"] = {k: info.get(k) for k in ("http_code", "remote_ip", "remote_port", "url_effective",
                                                 "time_namelookup", "time_connect", "time_total")}
        with open(body_path) as f:
            out["body"] = json.load(f)
    except (ValueError, OSError) as exc:
        out["error"] = f"unreadable curl output: {exc}"
    return out


def dns_workload(tb, dns, host, folder, name=DEFAULT_NAME, unknown=UNKNOWN_NAMES):
    """Run the six steps from ``host``; write and return the record (``dns.json``)."""
    from wirelab.services.dns import HOST_RESOLV_CONF, sha256_of
    os.makedirs(folder, exist_ok=True)
    zones = dns.zones
    name = absolute(name)
    rec = {"host": tb.resolve(host).name, "name": name, "unknown": [absolute(n) for n in unknown],
           "zones": zones.to_dict(), "resolver_ip": zones.resolver_ip,
           "resolver_out_ip": zones.resolver_out_ip,
           "machine_resolv_sha256": {"before": dns.host_resolv_sha256}, "errors": []}
    step = "start"
    try:
        rec["host_addrs"] = host_addresses(tb, host)
        step = "resolv_conf"
        seen = resolv_conf_seen(tb, dns, host)
        if not seen["own_file"]:        # nobody gave the host one yet (no DHCP hook): do it
            dns.use_resolver(host)
            seen = resolv_conf_seen(tb, dns, host)
        rec["resolv_conf"] = seen
        step = "flush"
        dns.flush_cache()       # cold means cold, also in a second case of the run
        step = "cold"
        rec["cold"] = dig(tb, host, [name])
        cold_ttls = a_records((rec["cold"]["messages"] or [None])[0], name)[1]
        step = "cached"
        rec["cached"] = cache_test(tb, host, name, max(cold_ttls) if cold_ttls else None)
        step = "trace"
        rec["trace"] = dig(tb, host, ["+trace", "-4", name], timeout=30)
        step = "nxdomain"
        rec["nxdomain"] = [dict(dig(tb, host, [n]), name=n) for n in rec["unknown"]]
        step = "traceroute"
        rec["traceroute"] = traceroute_by_name(tb, host, name, folder)
        step = "http"
        rec["http"] = http_by_name(tb, zones, host, name, folder)
    except (WirelabError, OSError, subprocess.SubprocessError) as exc:
        rec["errors"].append(f"{step}: {type(exc).__name__}: {exc}")
    finally:
        rec["machine_resolv_sha256"]["after"] = sha256_of(HOST_RESOLV_CONF)
        write_json(os.path.join(folder, RECORD_FILE), rec)
    return rec
