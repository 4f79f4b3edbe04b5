"""The workloads of ``experiments/internet_services.py``: what a laptop goes through
when it joins a home network, one step per function, each returning a JSON-able
record (the case's ``workload`` in case.json) and leaving its files in the case
folder. The Testbed, the DHCP service, the DNS tree and the NAT are set up by
the experiment and handed in as :class:`Journey`.

1. :func:`dhcp_no_server` -- a client whose server is not there gives up;
2. :func:`dhcp_dora` -- the ISP leases hgw its WAN address, hgw leases the home
   hosts theirs (with the DNS server the ISP gave it), everyone renews at T1;
3. :func:`learn_resolver` -- each home host resolves through what DHCP told it;
4. (DNS: ``wirelab.services.dns_workload``, N's)
5. :func:`nat_outbound` -- several hosts and programs at once through one address;
6. :func:`nat_inbound` -- nobody outside can open a connection into the home;
7. :func:`whatismyip` -- the ipinfo-shaped service says which address the world sees.
"""

import dataclasses
import json
import os
import shutil
import subprocess

from wirelab.experiment.evidence import write_json
from wirelab.services.dhcp import ClientConfig, ServerConfig, parse_leases, read_nameservers

CURL_MAX_S = 5
PROGRAM_DEADLINE_S = 20.0
RENEW_SLACK_S = 3.0      # beyond dhclient's latest T1 choice: one timer second and a busy machine


@dataclasses.dataclass
class Journey:
    """What the steps share: the running network and its services."""

    tb: object
    topo: object
    params: object
    dhcp: object                   # wirelab.services.dhcp.DhcpService
    dns: object = None             # wirelab.services.dns.DnsHierarchy
    nat: object = None             # wirelab.services.nat.Masquerade
    service_ip: str = None         # the ipinfo server's address
    service_name: str = None       # and its name in the DNS
    server: object = None          # AppServer of the ipinfo service
    clients: dict = dataclasses.field(default_factory=dict)   # node -> DhcpClient


def _addresses(tb, node, intf):
    """The IPv4 addresses on ``intf`` (netlink), as 'ip/len'."""
    with tb.iproute(node) as ipr:
        idx = ipr.link_lookup(ifname=intf)
        return sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                      for a in ipr.get_addr(family=2, index=idx[0])) if idx else []


def macs(tb, clients):
    """{node: MAC of its client interface} (netlink IFLA_ADDRESS)."""
    out = {}
    for node, intf in clients.items():
        with tb.iproute(node) as ipr:
            out[node] = ipr.get_links(ifname=intf)[0].get_attr("IFLA_ADDRESS")
    return out


# -- 1. no server ------------------------------------------------------------------------

def dhcp_no_server(j, case, folder):
    host = case.args["host"]
    cfg = ClientConfig(host, f"{host}-eth0", timeout_s=case.args["timeout"], once=True)
    rec = j.dhcp.once(cfg, deadline_s=case.args["timeout"] + 15)
    rec["addresses_after"] = _addresses(j.tb, host, cfg.intf)
    rec["routes_after"] = j.tb.routes(host)
    return rec


# -- 2. DORA and renewal -------------------------------------------------------------------

def _server(j, spec, dns):
    p = j.params
    cfg = ServerConfig(spec["node"], spec["intf"], tuple(spec["pool"]), spec["netmask"], spec["router"],
                       dns=tuple(dns), lease_s=p.lease, t1_s=p.t1)
    return j.dhcp.server(cfg)


def dhcp_dora(j, case, folder):
    plan = j.topo.dhcp_plan()
    isp_spec, home_spec = plan["servers"]
    rec = {"servers": {}, "clients": {}, "order": []}
    isp = _server(j, isp_spec, [j.dns.resolver_ip] if j.dns else [])
    rec["servers"]["isp"] = dataclasses.asdict(isp.cfg)
    j.clients["hgw"] = j.dhcp.client(ClientConfig("hgw", plan["clients"]["hgw"]))
    bound = j.clients["hgw"].wait_bound(15)
    rec["order"].append("hgw")
    # The home router hands its hosts the resolver its own lease named.
    learned = read_nameservers(j.clients["hgw"].paths["resolv"])
    rec["hgw_learned_dns"] = learned
    home = _server(j, home_spec, learned)
    rec["servers"]["hgw"] = dataclasses.asdict(home.cfg)
    for host in home_spec["clients"]:
        j.clients[host] = j.dhcp.client(ClientConfig(host, plan["clients"][host]))
    for host in home_spec["clients"]:
        j.clients[host].wait_bound(15)
        rec["order"].append(host)
    hi = max(_t1_range(j.params.t1))
    for node, cli in j.clients.items():
        intf = plan["clients"][node]
        rec["clients"][node] = {"intf": intf, "bound": cli.events()[-1] if cli.events() else None,
                                "addresses": _addresses(j.tb, node, intf), "routes": j.tb.routes(node)}
    for node, cli in j.clients.items():
        renew = cli.wait_event(("RENEW",), 1, hi + RENEW_SLACK_S)
        rec["clients"][node]["renew"] = renew
    for node, cli in j.clients.items():
        rec["clients"][node]["events"] = cli.events()
        rec["clients"][node]["dhclient_lines"] = list(cli.reader.lines)
        rec["clients"][node]["resolv_conf"] = cli.paths["resolv"]
    for name, srv in (("isp", isp), ("hgw", home)):
        text = srv.leases_text()
        with open(os.path.join(folder, f"leases-{name}.txt"), "w") as f:
            f.write(text)
        rec["servers"][name]["leases"] = parse_leases(text)
        rec["servers"][name]["log_lines"] = list(srv.reader.lines)
    rec["hgw_bound"] = bound
    return rec


def _t1_range(t1):
    from wirelab.services.dhcp import dhclient_renewal_range
    return dhclient_renewal_range(t1)


# -- 3. the resolver -------------------------------------------------------------------

def learn_resolver(j, case, folder):
    from wirelab.services.dns import HOST_RESOLV_CONF, sha256_of
    from wirelab.services.dns_workload import resolv_conf_seen
    rec = {"hosts": {}, "hgw": {"resolv_conf": read_nameservers(j.clients["hgw"].paths["resolv"])},
           "machine_resolv_sha256": sha256_of(HOST_RESOLV_CONF)}
    for host in j.topo.home_hosts:
        path = j.clients[host].paths["resolv"]
        learned = read_nameservers(path)
        shutil.copyfile(path, os.path.join(folder, f"dhcp-resolv-{host}.conf"))
        entry = {"dhcp_resolv_conf": learned}
        if learned and j.dns is not None:
            j.dns.use_resolver(host, learned[0])
            entry["seen"] = resolv_conf_seen(j.tb, j.dns, host)
        rec["hosts"][host] = entry
    return rec


# -- 5. NAT, outbound ---------------------------------------------------------------------

def _curl_argv(url, body_path, local_port=None):
    argv = ["curl", "-4", "-sS", "--max-time", str(CURL_MAX_S), "-o", body_path, "-w", "%{json}"]
    if local_port is not None:
        argv += ["--local-port", str(local_port)]
    return argv + [url]


CURL_KEYS = ("http_code", "exitcode", "errormsg", "local_ip", "local_port", "remote_ip", "remote_port",
             "time_namelookup", "time_connect", "time_total", "url_effective")


def _curl_result(out, err, code, body_path):
    rec = {"exit": code, "stderr": (err or "").strip()[-300:]}
    try:
        info = json.loads(out or "{}")
        rec.update({k: info.get(k) for k in CURL_KEYS})
    except ValueError:
        rec["error"] = f"unreadable curl output: {(out or '')[:200]!r}"
    try:
        with open(body_path) as f:
            rec["body"] = f.read()
    except OSError:
        rec["body"] = None
    return rec


def _server_lines(j, since):
    from wirelab.apps.runner import json_lines
    return json_lines(j.server.lines()[since:])


def nat_outbound(j, case, folder):
    """``programs`` curl processes on every home host at once, each from the same
    local ports on every host (the NAT must tell them apart), to ``/ip``."""
    a = case.args
    hosts, k = a["hosts"], a["programs"]
    together = len(hosts) * k
    since = len(j.server.lines())
    procs = []
    for host in hosts:
        for i in range(k):
            port = a["base_port"] + i
            body = os.path.join(folder, f"body-{host}-{port}.txt")
            url = f"http://{j.service_ip}/ip?together={together}&group={case.name}"
            procs.append((host, port, body, j.tb.start(host, _curl_argv(url, body, port),
                                                       name=f"curl {host}:{port}", stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, text=True)))
    programs = []
    for host, port, body, proc in procs:
        try:
            out, err = proc.popen.communicate(timeout=PROGRAM_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.stop()
            out, err = proc.popen.communicate()
        programs.append({"host": host, "port": port, **_curl_result(out, err, proc.popen.returncode, body)})
    from wirelab.services.nat import read_conntrack
    conntrack = read_conntrack(j.nat.node)
    write_json(os.path.join(folder, "conntrack.json"), conntrack)
    requests = _server_lines(j, since)
    with open(os.path.join(folder, "ipinfo-requests.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
    return {"programs": programs, "together": together, "conntrack_entries": len(conntrack),
            "nat_counters": j.nat.counters(), "server_requests": len(requests)}


# -- 6. NAT, inbound ----------------------------------------------------------------------

def nat_inbound(j, case, folder):
    """From a cloud host: a connection to a home host's private address, and to
    the public address's port that an outbound connection was translated to."""
    a = case.args
    private = j.clients[a["home_host"]].events()[-1]["ip"]     # its lease (the last BOUND/RENEW)
    public = j.clients["hgw"].events()[-1]["ip"]
    out = {"attempts": []}
    for kind, (ip, port) in (("private", (private, a["port"])), ("public", (public, a["public_port"]))):
        body = os.path.join(folder, f"body-{kind}.txt")
        done = j.tb.run(a["from"], _curl_argv(f"http://{ip}:{port}/", body), timeout=CURL_MAX_S + 5, check=False)
        out["attempts"].append({"kind": kind, "ip": ip, "port": port,
                                **_curl_result(done.stdout, done.stderr, done.returncode, body)})
    out["nat_counters"] = j.nat.counters()
    return out


# -- 7. what is my IP ------------------------------------------------------------------------

def whatismyip(j, case, folder):
    """Every home host asks ``/ip`` and ``/json`` by name; a cloud host asks by
    address (the ISP's resolver serves its customers only); one home host asks
    about its own private address (a bogon)."""
    a = case.args
    since = len(j.server.lines())
    asks = []
    for host in a["hosts"]:
        for path in ("ip", "json"):
            asks.append((host, path, f"http://{j.service_name}/{path}"))
    for host in a["cloud_hosts"]:
        for path in ("ip", "json"):
            asks.append((host, path, f"http://{j.service_ip}/{path}"))
    private = _addresses(j.tb, a["hosts"][0], f"{a['hosts'][0]}-eth0")[0].split("/")[0]
    asks.append((a["hosts"][0], "bogon", f"http://{j.service_name}/{private}/json"))
    answers = []
    for host, path, url in asks:
        body = os.path.join(folder, f"body-{host}-{path}.txt")
        done = j.tb.run(host, _curl_argv(url, body), timeout=CURL_MAX_S + 5, check=False)
        answers.append({"host": host, "ask": path, "url": url,
                        **_curl_result(done.stdout, done.stderr, done.returncode, body)})
    requests = _server_lines(j, since)
    with open(os.path.join(folder, "ipinfo-requests.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
    return {"answers": answers, "private_asked": private, "server_requests": len(requests)}


# -- the name of the service -----------------------------------------------------------------

SERVICE_NAME = "ipinfo.io"


def service_zones(topo, name=SERVICE_NAME, node="srv1"):
    """The lab's DNS tree (``dns_zones.default_zones``) with one more domain:
    ``name`` -> ``node``'s address, served by the authoritative server on that node."""
    from wirelab.services.dns_zones import build_zones, default_zones
    base = default_zones(topo)
    root = base.zone(".").server
    tld = next(z.server for z in base.zones if z.origin.count(".") == 1 and z.origin != ".")
    domains = []
    for z in base.zones:
        if z.origin.count(".") < 2:
            continue          # the root and the TLDs are rebuilt from the domains
        hosts = {}
        for r in z.records:
            if r.rtype == "A" and r.name != z.ns_name:
                hosts["@" if r.name == z.origin else r.name[:-len(z.origin) - 1]] = r.data
        domains.append((z.origin, z.server, hosts))
    auth = next(s.key for s in base.servers if s.node == node and s.role == "auth")
    domains.append((name, auth, {"@": topo.ip(node)}))
    return build_zones(base.servers, root, tld, domains,
                       (base.resolver_node, base.resolver_ip, base.resolver_out_ip), base.clients, base.web)
