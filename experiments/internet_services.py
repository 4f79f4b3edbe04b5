#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Internet services: what your ISP gives you -- an address by DHCP, names by DNS,
a shared public address by NAT, and "what is my IP".

::

    home1 --.                                                          .-- srv1: ipinfo.io (HTTP),
    home2 ---+ homelan -- hgw ========== isp -- bb1 ... backbone ... cloudgw    nsd amazon.com, ipinfo.io
             192.168.1.0/24 |  100.64.0.2/30  |                          '-- srv2
             DHCP .100-.199 |  (its lease)    DHCP server: hgw's WAN address
             NAT: the home -> 100.64.0.2      unbound: the ISP's resolver (100.64.0.1)

The internet topology with ``home=nat,dhcp=1``: nobody outside the home routes
192.168.1.0/24, hgw and the home hosts start without addresses. One case per
step a laptop goes through when it joins, each with its captures:

1. ``dhcp/no-server``: home1 asks before any server runs: only DISCOVERs on
   the wire, and dhclient gives up after its timeout with one line and exit 2.
2. ``dhcp/dora``: the ISP's dnsmasq leases hgw 100.64.0.2 (router and DNS
   server with it); hgw's leases the home hosts addresses of its pool, with
   the DNS server hgw itself was given. DISCOVER, OFFER, REQUEST, ACK for
   every client (captures on the access link and the home LAN), leases in
   the pools and all different, each kernel configured as leased; every
   client renews at T1 (unicast REQUEST/ACK) within dhclient's window.
3. ``resolver``: each home host's resolv.conf (its own, bind-mounted in its
   namespace only) names the resolver the ISP's lease named.
4. ``dns``: a name resolved from the root down (wirelab.services.dns).
5. ``nat/outbound``: every home host runs several programs at once, all from
   the same local ports, to ipinfo's /ip: one public address, told apart by
   ports (conntrack read through netlink, matched with the first packet of
   each connection on both sides of hgw); each answer is the public address.
6. ``nat/inbound``: from the cloud, a connection to a home host's private
   address and one to the public address's port fail; nothing reaches the LAN.
7. ``whatismyip``: by name, every home host is told hgw's public address and
   its place (the run's own geolocation database), a cloud host its own
   address, a private address is a bogon.

Afterwards no daemon, work file, resolv.conf mount or nft table is left, and
the machine's /etc/resolv.conf is byte-identical. Native (no netem).
"""

import contextlib
import dataclasses
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.errors import ConfigError, WirelabError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, run_case  # noqa: E402
from wirelab.experiment.core import REPO, Experiment, main  # noqa: E402

HOST_RESOLV_CONF = "/etc/resolv.conf"


class StepError(WirelabError):
    """A step could not run because one before it failed (no lease, no client)."""
SERVICE_PORT = 80


@dataclasses.dataclass(frozen=True)
class InternetServicesParams:
    home_hosts: int = dataclasses.field(default=2, metadata={"help": "home hosts (DHCP clients), 1..8"})
    programs: int = dataclasses.field(default=3, metadata={
        "help": "nat/outbound: programs at once on every home host, 1..8"})
    t1: int = dataclasses.field(default=4, metadata={"help": "T1 (renewal) both DHCP servers hand out, s (2..30)"})
    lease: int = dataclasses.field(default=120, metadata={"help": "lease time, s (120..3600: dnsmasq's minimum is 120)"})
    no_server_timeout: int = dataclasses.field(default=3, metadata={
        "help": "dhcp/no-server: how long dhclient tries, s (3..20)"})
    base_port: int = dataclasses.field(default=40001, metadata={
        "help": "nat/outbound: the local ports base_port.. every host's programs use"})

    def __post_init__(self):
        for name, lo, hi in (("home_hosts", 1, 8), ("programs", 1, 8), ("t1", 2, 30), ("lease", 120, 3600),
                             ("no_server_timeout", 3, 20), ("base_port", 1024, 60000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be an integer {lo}..{hi}, got {value!r}")


def sha256_file(path):
    """sha256 of a file, or None when there is none (a machine without /etc/resolv.conf)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def topology_spec(p):
    return f"internet,home=nat,dhcp=1,home_hosts={p.home_hosts}"


def declared_cases(topo, p, dns_points=(), dns_snaplen=0):
    """The seven steps as cases (captures per case; whole packets)."""
    lan_if, wan_if = topo.interface_facing("hgw", "homelan"), topo.interface_facing("hgw", "isp")
    lan, wan = CapturePoint("hgw", lan_if, "lan.pcap"), CapturePoint("hgw", wan_if, "wan.pcap")
    access = CapturePoint("isp", topo.interface_facing("isp", "hgw"), "access.pcap")
    srv = CapturePoint("srv1", "srv1-eth0", "srv1.pcap")
    hosts = list(topo.home_hosts)
    return [
        Case("dhcp/no-server", {"step": "no_server", "host": hosts[0], "timeout": p.no_server_timeout},
             captures=(lan,), snaplen=0),
        Case("dhcp/dora", {"step": "dora", "t1": p.t1, "lease": p.lease}, captures=(access, lan), snaplen=0),
        Case("resolver", {"step": "resolver"}),
        Case("dns", {"step": "dns", "host": hosts[0]}, captures=tuple(dns_points), snaplen=dns_snaplen),
        Case("nat/outbound", {"step": "nat_outbound", "hosts": hosts, "programs": p.programs,
                              "base_port": p.base_port}, captures=(lan, wan), snaplen=0),
        Case("nat/inbound", {"step": "nat_inbound", "from": "srv1", "home_host": hosts[0], "port": SERVICE_PORT,
                             "public_port": p.base_port},
             captures=(lan, wan, srv), snaplen=0),
        Case("whatismyip", {"step": "whatismyip", "hosts": hosts, "cloud_hosts": ["srv2"]},
             captures=(lan, wan, srv), snaplen=0),
    ]


def _mounted_resolv(pid):
    """Whether /etc/resolv.conf is a mount point in the mount namespace of ``pid``."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return any(line.split()[4] == HOST_RESOLV_CONF for line in f if len(line.split()) > 4)
    except OSError:
        return None


def _alive(processes):
    from wirelab.net.runledger import proc_start_time
    return [f"{name} (pid {pid})" for name, pid, start in processes
            if start is not None and proc_start_time(pid) == start]


class InternetServices(Experiment):
    """Internet services: DHCP, the resolver, DNS, NAT and "what is my IP", as a joining laptop sees them."""

    name = "internet_services"
    Params = InternetServicesParams
    description = __doc__

    def run(self):
        from topologies.internet import InternetTopo
        from wirelab.geo.build import database_for
        from wirelab.net.testbed import Testbed
        p = self.params
        topo = InternetTopo(home="nat", dhcp=1, home_hosts=p.home_hosts)
        spec = topology_spec(p)
        geo = database_for(spec, directory=self.path("geo"))
        self.geo_path = geo.path
        self.record(topology=spec, dhcp_plan=topo.dhcp_plan(), nat_plan=topo.nat(),
                    geo={"file": os.path.relpath(geo.path, self.out_dir), "sha256": sha256_file(geo.path),
                         "public": topo.routed_prefixes()},
                    machine_resolv_sha256={"before": sha256_file(HOST_RESOLV_CONF)})
        processes = []
        with Testbed(topo, log=self.log) as tb:
            leftovers = self._journey(tb, topo, processes)
        leftovers["alive_after"] = _alive(processes)
        leftovers["workdirs_left"] = [d for d in leftovers.pop("workdirs") if os.path.exists(d)]
        self.record(cleanup={**leftovers, "machine_resolv_sha256_after": sha256_file(HOST_RESOLV_CONF)})

    def _journey(self, tb, topo, processes):
        from wirelab.apps.runner import AppServer
        from wirelab.services.dhcp import DhcpService
        from wirelab.services.dns import DNS_SNAPLEN, DnsHierarchy, dns_captures, dns_workload
        from wirelab.services.journey import (SERVICE_NAME, Journey, dhcp_dora, dhcp_no_server, learn_resolver,
                                              macs, nat_inbound, nat_outbound, service_zones, whatismyip)
        from wirelab.services.nat import Masquerade
        p, plan, natp = self.params, topo.dhcp_plan(), topo.nat()
        zones = service_zones(topo, SERVICE_NAME)
        with contextlib.ExitStack() as services:
            nat = Masquerade(tb, natp["router"], natp["outside"], natp["inside"], natp["inside_net"]).apply()
            # The daemons' files and logs under services/ (dns/ and dhcp/ there), apart from the cases.
            dns = services.enter_context(DnsHierarchy(tb, self.path("services"), zones=zones, log=self.log))
            dhcp = services.enter_context(DhcpService(tb, self.path("services", "dhcp")))
            j = Journey(tb, topo, p, dhcp, dns, nat, service_ip=tb.ip("srv1"), service_name=SERVICE_NAME)
            self.record(network={"macs": macs(tb, plan["clients"]), "resolver_ip": dns.resolver_ip,
                                 "service": {"name": SERVICE_NAME, "ip": j.service_ip, "port": SERVICE_PORT,
                                             "node": "srv1"},
                                 "cloud": {s: tb.ip(s) for s in topo.servers},
                                 "home_hosts": list(topo.home_hosts), "nat": {"table": nat.table,
                                                                              "ruleset": nat.text,
                                                                              "readback": nat.readback}})
            steps = {"no_server": dhcp_no_server, "dora": dhcp_dora, "resolver": learn_resolver,
                     "nat_outbound": nat_outbound, "nat_inbound": nat_inbound, "whatismyip": whatismyip}

            def workload(case, folder):
                if case.args["step"] == "dns":
                    return dns_workload(tb, dns, case.args["host"], folder)
                try:
                    return steps[case.args["step"]](j, case, folder)
                except (KeyError, IndexError) as exc:   # recorded in case.json; the next case runs
                    raise StepError(f"{case.name}: an earlier step left nothing to build on "
                                    f"({type(exc).__name__}: {exc})") from None

            cases = declared_cases(topo, p, dns_captures(topo, topo.home_hosts[0], zones), DNS_SNAPLEN)
            for i, case in enumerate(cases, 1):
                if case.name == "nat/outbound":   # after the DNS case, whose web server has port 80 of srv1
                    j.server = services.enter_context(AppServer(tb, "srv1", self._ipinfo_argv(topo, j), name="ipinfo"))
                    processes.append(("ipinfo", j.server.proc.pid, j.server.proc.start_time))
                self.log(f"[{i}/{len(cases)}] {case.name}")
                self.record_case(case.name)
                run_case(tb, case, self.path(case.name), workload, log=self.log)
            self.record(services={"dhcp": dhcp.describe(), "dns": dns.describe(),
                                  "ipinfo": {"pid": j.server.proc.pid} if j.server else None})
            processes += [(f"dnsmasq {s.cfg.node}", s.pid, s.proc.start_time) for s in dhcp.servers]
            processes += [(f"dhclient {c.cfg.node}", c.pid, c.proc.start_time) for c in dhcp.clients]
            processes += [(f"dns {k}", pr.pid, pr.start_time) for k, pr in dns.procs.items()]
            workdirs = [dhcp.workdir]
        nat.remove()
        return {"nat": nat.to_dict(), "workdirs": workdirs,
                "resolv_mounts_left": [h for h in topo.home_hosts + ["srv2"] if _mounted_resolv(tb.node(h).pid)],
                "alive_before_teardown": _alive(processes)}

    def _ipinfo_argv(self, topo, j):
        argv = [sys.executable, os.path.join(REPO, "wirelab", "apps", "ipinfo.py"), "serve", "--db", self.geo_path,
                "--bind", j.service_ip, "--port", SERVICE_PORT]
        for net in topo.routed_prefixes():
            argv += ["--public", net]
        return argv

    # -- verify and plot: from the results folder only --------------------------------------
    @classmethod
    def verify(cls, ev):
        from wirelab.experiment import services_claims as sc, services_nat_claims as nc
        from wirelab.services.dns import dns_claims
        return (sc.dhcp_claims(ev) + sc.resolver_claims(ev) + dns_claims(ev, "dns")
                + nc.nat_claims(ev) + nc.whatismyip_claims(ev) + sc.cleanup_claims(ev))

    @classmethod
    def plot(cls, ev):
        from wirelab.experiment import services_plot
        from wirelab.services.dns import dns_plot
        services_plot.plot_all(ev)
        if ev.exists("dns", "dns.json"):
            dns_plot(ev, "dns")


if __name__ == "__main__":
    sys.exit(main(InternetServices))
