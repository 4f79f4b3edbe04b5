#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Longest-prefix match: the kernel's forwarding choice equals the textbook rule.

On every router of the `internet` topology, for many destinations (default
1000 per router, drawn so that they land inside, at the edges of and outside
every prefix of the router's table, overlapping /8, /16 and /24 included), the
kernel's choice (RTM_GETROUTE through netlink) equals a pure-Python
longest-prefix match over the tables read back from that router (the local
table first, then main, as the kernel's default policy rules order them). For
a sample -- one destination per gateway route per router, each a declared case
`packets/<router>-<prefix>` -- a real packet sent from the router is captured on
the chosen egress interface, and its Ethernet destination is the next hop's MAC
address. verify reads only the results folder: lookups.json (the kernel's
answers and the tables; the reference is computed there), the cases' pcaps and
run.json (the routers planned, every interface's address and MAC).

IPv6 (the topology is dual-stack, its IPv6 plan the twin of the IPv4 one; off
with --no-ipv6): the same check on every router's IPv6 tables (lookups6.json),
with destinations drawn the same way plus IPv6's special ones, each predicted
by the reference (reference_choice6): the local table first (local and
anycast addresses -> lo; multicast ff00::/8 -> the first interface's
multicast route), then main; a link-local destination fe80::/64 has no scope
id, so the first fe80::/64 route of the table (the kernel's own order) wins;
fe80::/10 outside fe80::/64, ::, ::ffff:a.b.c.d and 2001:db8::/32 match no
route (ENETUNREACH). Claims, prefixed "IPv6:": route get == LPM; every router
forwarding IPv6 (net.ipv6.conf.all.forwarding=1); overlapping prefixes
exercised; only the local and main policy rules (IPv6 has no rule for table
default); the main table equals the plan's (routes on lo aside); every special
kind exercised on every router; and a probe per gateway route
(`packets6/<router>-<prefix>`) captured leaving toward the next hop's MAC.
"""

import dataclasses
import ipaddress
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

from wirelab.errors import ConfigError, WirelabError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, run_cases  # noqa: E402
from wirelab.experiment.core import Claim, Experiment, main, write_json  # noqa: E402
from wirelab.net.addressing import lpm  # noqa: E402
from wirelab.net.route_reference import (  # noqa: E402
    ZOOM_POINTS, address, agrees, draw_destinations, draw_destinations6, evenly_spaced, nested_chain,
    reference_choice, reference_choice6, special_kind6, SPECIAL_KINDS6)
from wirelab.net.testbed import Testbed  # noqa: E402
from wirelab.observe.capture import ethernet_frames  # noqa: E402
from wirelab.proc import wait_until  # noqa: E402

MAIN, LOCAL = 254, 255


@dataclasses.dataclass(frozen=True)
class RoutingParams:
    destinations: int = dataclasses.field(default=1000, metadata={
        "help": "random destinations checked per router"})
    seed: int = dataclasses.field(default=1, metadata={"help": "seed for the destinations"})
    packets: bool = dataclasses.field(default=True, metadata={
        "help": "confirm a sample with real packets captured on the egress interface"})
    ipv6: bool = dataclasses.field(default=True, metadata={
        "help": "check the IPv6 tables too (and IPv6 packets)"})

    def __post_init__(self):
        if not 1 <= self.destinations <= 1_000_000:
            raise ConfigError(f"destinations must be between 1 and 1000000, got {self.destinations}")


PROBE_PCAP = "egress.pcap"


def packet_cases(lookups, rng, family=4):
    """One case per gateway route per router (``packets/<router>-<prefix>``,
    IPv6: ``packets6/<router>-<prefix with - for :>``): a probe to a destination
    whose longest match is that route, captured on the route's egress interface."""
    cases = []
    folder = "packets" if family == 4 else "packets6"
    for router, r in lookups.items():
        table, local = r["tables"]["main"], r["tables"]["local"]
        for route in table:
            if not route["gateway"]:
                continue
            net = ipaddress.ip_network(route["dst"])
            for _ in range(50):   # a destination whose reference choice is this very route
                dst = str(address(net.version, rng.randint(int(net.network_address), int(net.broadcast_address))))
                if lpm(table, dst) is route and lpm(local, dst) is None:
                    break
            else:
                continue
            where = (f"{net.network_address}" if family == 4 else
                     "default" if net.prefixlen == 0 else str(net.network_address).replace(":", "."))
            cases.append(Case(
                name=f"{folder}/{router}-{where}_{net.prefixlen}",
                args={"router": router, "route": route["dst"], "dst": dst,
                      "egress": route["dev"], "gateway": route["gateway"]},
                captures=(CapturePoint(router, route["dev"], PROBE_PCAP),),
                bpf=("udp", "and", "dst", "host", dst)))
    return cases



def policy_rules(ipr, family):
    """The node's policy routing rules (priority, table) of one family (2: IPv4, 10: IPv6)."""
    return [{"priority": r.get_attr("FRA_PRIORITY", 0), "table": r.get_attr("FRA_TABLE", r["table"])}
            for r in ipr.get_rules(family=family)]


def kernel_choices(tb, router, ipr, dests):
    """The kernel's route lookup for each destination: gateway, device and type,
    or the error (ENETUNREACH: no route at all)."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    checks = []
    for dst in dests:
        try:
            got = tb.route_get(router, dst, ipr=ipr)
            kernel = {"gateway": got["gateway"], "dev": names.get(got["oif"]), "type": got["type"]}
        except NetlinkError as exc:
            kernel = {"error": exc.code}
        checks.append({"dst": dst, "kernel": kernel})
    return checks


def lookup_claims(ev, results, label, evidence, forwarding_field, forwarding_text):
    """The claims every address family makes about its lookups: the kernel
    agrees with longest-prefix match everywhere, every planned router was
    checked and forwards, and overlapping prefixes were exercised."""
    claims = []
    total = sum(len(r["checks"]) for r in results.values())
    agree = sum(c["agree"] for r in results.values() for c in r["checks"])
    bad = [f"{name}:{c['dst']}" for name, r in results.items() for c in r["checks"] if not c["agree"]]
    claims.append(Claim(
        f"{label}kernel route get == pure-Python longest-prefix match (every router, every destination)",
        total > 0 and agree == total, measured=f"{agree}/{total}", expected=f"{total}/{total}",
        tolerance=0, evidence=evidence + (f"; disagreements: {bad[:5]}" if bad else "")))
    destinations = ev.params.destinations
    per_router_min = min((len(r["checks"]) for r in results.values()), default=0)
    forwarding = sorted(name for name, r in results.items() if r[forwarding_field] == "1")
    planned = sorted(ev.run.get("planned_routers", []))
    claims.append(Claim(
        f"{label}every router of the plan was checked, forwarding ({forwarding_text}), "
        f"with {destinations} destinations each",
        bool(planned) and forwarding == planned and per_router_min >= destinations,
        measured={"forwarding": forwarding, "min_destinations": per_router_min},
        expected={"routers": planned, "destinations": destinations},
        evidence=f"{evidence} ({forwarding_field} read from each router's namespace), "
                 "run.json planned_routers"))
    # The overlapping prefixes make the choice non-trivial: some destination's
    # longest match is strictly longer than another matching prefix.
    overlapping = 0
    for r in results.values():
        nets = [ipaddress.ip_network(x["dst"]) for x in r["tables"]["main"]]
        for c in r["checks"]:
            addr = ipaddress.ip_address(c["dst"])
            if sum(addr in n for n in nets if n.prefixlen > 0) >= 2:
                overlapping += 1
    claims.append(Claim(
        f"{label}destinations matched by 2+ overlapping prefixes were tested (LPM mattered)",
        overlapping > 0, measured=overlapping, expected="> 0", evidence=evidence))
    return claims


class RoutingExperiment(Experiment):
    __doc__ = __doc__
    name = "routing"
    Params = RoutingParams

    def setup(self):
        from topologies.internet import InternetTopo
        self.topo = InternetTopo()
        self.tb = self.stack.enter_context(Testbed(self.topo, log=self.log))
        self.record(planned_routers=self.topo.router_names(),
                    interfaces=[{"node": n.name, "intf": i.name, "ip": i.IP(), "mac": i.MAC(),
                                 "ip6": self.tb.ip(n.name, i.name, family=6)}
                                for n in self.tb.net.hosts for i in n.intfList() if i.name != "lo"])
        if self.params.ipv6:
            self.record(ipv6_block=self.topo.ipv6_block,
                        planned_routes6={r: self.topo.intended_routes(r, family=6)
                                         for r in self.topo.router_names()})

    def run(self):
        rng = random.Random(self.params.seed)
        lookups = {router.name: self.look_up(router, rng) for router in self.tb.routers}
        write_json(self.path("lookups.json"), lookups)
        write_json(self.path("owners.json"), {ip: node for ip, (node, _) in self.topo.owners().items()})
        cases = packet_cases(lookups, rng) if self.params.packets else []
        if self.params.ipv6:
            rng6 = random.Random(self.params.seed + 6)   # the IPv4 draws stay as they were
            lookups6 = {router.name: self.look_up6(router, rng6) for router in self.tb.routers}
            write_json(self.path("lookups6.json"), lookups6)
            if self.params.packets:
                cases += packet_cases(lookups6, rng6, family=6)
        if cases:
            run_cases(self, self.tb, cases, self.send_probe)

    def look_up(self, router, rng):
        """The router's tables and rules, and the kernel's choice for many destinations."""
        tb = self.tb
        tables = {"main": tb.routes(router, table=MAIN), "local": tb.routes(router, table=LOCAL)}
        with tb.iproute(router) as ipr:
            rules = policy_rules(ipr, family=2)
            dests = draw_destinations(tables["main"], self.params.destinations, rng)
            chain = nested_chain(tables["main"])
            zoom = {}
            if len(chain) >= 2:
                # dense sweeps across each nested prefix, drawn in routing-lpm.png
                for net in chain:
                    zoom[str(net)] = evenly_spaced(net, ZOOM_POINTS)
                dests = sorted(set(dests) | {a for pts in zoom.values() for a in pts},
                               key=lambda a: int(ipaddress.IPv4Address(a)))
            checks = kernel_choices(tb, router, ipr, dests)
        self.log(f"{router.name}: {len(tables['main'])} routes, {len(checks)} destinations looked up")
        return {"tables": tables, "rules": rules, "checks": checks, "zoom": zoom,
                "ip_forward": router.sysctl("net/ipv4/ip_forward")}

    def look_up6(self, router, rng):
        """The router's IPv6 tables and rules, and the kernel's choice for many destinations."""
        tb = self.tb
        tables = {"main": tb.routes(router, table=MAIN, family=6),
                  "local": tb.routes(router, table=LOCAL, family=6)}
        with tb.iproute(router) as ipr:
            rules = policy_rules(ipr, family=10)
            dests = draw_destinations6(tables, self.params.destinations, rng, self.topo.ipv6_block)
            for net in nested_chain(tables["main"]):   # the /40 > /48 > /56 twins, swept
                dests = sorted(set(dests) | set(evenly_spaced(net, 64)),
                               key=lambda a: int(ipaddress.IPv6Address(a)))
            checks = kernel_choices(tb, router, ipr, dests)
        self.log(f"{router.name}: {len(tables['main'])} IPv6 routes, {len(checks)} destinations looked up")
        return {"tables": tables, "rules": rules, "checks": checks,
                "forwarding": router.sysctl("net/ipv6/conf/all/forwarding")}

    def send_probe(self, case, folder):
        """The workload of a packets/ case: one UDP datagram sent by the router itself."""
        a = case.args
        family = "AF_INET6" if ":" in a["dst"] else "AF_INET"
        sender = (f"import socket; s=socket.socket(socket.{family}, socket.SOCK_DGRAM); "
                  f"s.sendto(b'wirelab-routing-probe', ({a['dst']!r}, 33434))")
        self.tb.run(a["router"], [sys.executable, "-c", sender], timeout=10)
        # -U writes each packet as it comes: past the 24-byte file header
        # means the probe was captured.
        pcap = os.path.join(folder, PROBE_PCAP)
        try:
            wait_until(lambda: os.path.getsize(pcap) > 24, 5, what=f"the probe on {a['router']}:{a['egress']}")
            return {"probe_written": True}
        except TimeoutError:
            return {"probe_written": False}   # verify finds no frame: the sample fails

    @classmethod
    def plot(cls, ev):
        plot_lpm(ev.json("lookups.json"), ev.json("owners.json"), ev.path("routing-lpm.png"))

    @classmethod
    def verify(cls, ev):
        results = ev.json("lookups.json")
        for r in results.values():
            for c in r["checks"]:
                c["agree"] = agrees(c["kernel"], reference_choice(r["tables"]["local"], r["tables"]["main"], c["dst"]))
        ev.metrics["routers"] = {
            name: {"routes": len(r["tables"]["main"]), "destinations": len(r["checks"]),
                   "agree": sum(c["agree"] for c in r["checks"]), "rules": r["rules"]}
            for name, r in results.items()}
        claims = lookup_claims(ev, results, "", "lookups.json", "ip_forward", "ip_forward=1")
        default_rules = all(sorted((x["priority"], x["table"]) for x in r["rules"])
                            == [(0, LOCAL), (32766, MAIN), (32767, 253)] for r in results.values())
        claims.append(Claim("only the kernel's default policy rules (local, main, default) exist",
                            default_rules, evidence="lookups.json rules"))
        if ev.params.packets:
            claims.append(cls.verify_packets(ev))
        # A folder whose params.json predates the ipv6 parameter is IPv4 only.
        if ev.params_dict.get("ipv6", False):
            claims += cls.verify6(ev)
        return claims

    @classmethod
    def verify6(cls, ev):
        """The IPv6 claims, from lookups6.json, run.json and the packets6/ cases."""
        results = ev.json("lookups6.json")
        kinds = {}
        for name, r in results.items():
            kinds[name] = dict.fromkeys(SPECIAL_KINDS6, 0)
            for c in r["checks"]:
                ref = reference_choice6(r["tables"]["local"], r["tables"]["main"], c["dst"])
                c["agree"] = agrees(c["kernel"], ref)
                kind = special_kind6(ref, c["dst"])
                if kind in kinds[name]:
                    kinds[name][kind] += 1
        ev.metrics["routers6"] = {
            name: {"routes": len(r["tables"]["main"]), "destinations": len(r["checks"]),
                   "agree": sum(c["agree"] for c in r["checks"]), "rules": r["rules"],
                   "special": kinds[name]}
            for name, r in results.items()}
        claims = lookup_claims(ev, results, "IPv6: ", "lookups6.json", "forwarding",
                               "net.ipv6.conf.all.forwarding=1")
        default_rules = all(sorted((x["priority"], x["table"]) for x in r["rules"])
                            == [(0, LOCAL), (32766, MAIN)] for r in results.values())
        claims.append(Claim("IPv6: only the kernel's default policy rules (local, main) exist",
                            default_rules, evidence="lookups6.json rules"))
        planned6 = ev.run.get("planned_routes6", {})
        differ = sorted(name for name, r in results.items()
                        if _table_key(r["tables"]["main"]) != _table_key(planned6.get(name, [])))
        claims.append(Claim(
            "IPv6: every router's main table == the plan's (the IPv4 prefixes' twins, fe80::/64 per interface)",
            bool(planned6) and set(planned6) == set(results) and not differ,
            measured={"differ": differ, "routers": len(results)}, expected={"differ": [], "routers": len(planned6)},
            evidence="lookups6.json tables.main (routes on lo aside), run.json planned_routes6"))
        # A router with a default route (::/0) answers every destination: none is unreachable.
        has_default = {name: any(x["dst"] == "::/0" for x in r["tables"]["main"])
                       for name, r in results.items()}
        missing = {name: [k for k, n in counts.items()
                          if n == 0 and not (k == "unreachable" and has_default[name])]
                   for name, counts in kinds.items()}
        missing = {name: ks for name, ks in missing.items() if ks}
        claims.append(Claim(
            "IPv6: every router was asked for each special kind: local, loopback ::1, anycast, "
            "multicast ff00::/8, link-local fe80::/10, unreachable (where there is no default route)",
            bool(kinds) and not missing,
            measured={k: sum(c[k] for c in kinds.values()) for k in SPECIAL_KINDS6},
            expected="each >= 1 on every router", evidence="lookups6.json"
                     + (f"; missing: {missing}" if missing else "")))
        if ev.params.packets:
            claims.append(cls.verify_packets(ev, family=6))
        return claims

    @classmethod
    def verify_packets(cls, ev, family=4):
        """Each packets/ (packets6/) case: the captured probe went to the gateway's
        MAC (run.json interfaces)."""
        key, folder = ("ip", "packets/") if family == 4 else ("ip6", "packets6/")
        by_ip = {i.get(key): i for i in ev.run.get("interfaces", [])}
        by_mac = {i["mac"]: f"{i['node']}:{i['intf']}" for i in ev.run.get("interfaces", [])}
        samples = []
        for rec in (ev.case(n) for n in ev.case_names() if n.startswith(folder)):
            a, gw = rec["args"], by_ip.get(rec["args"]["gateway"])
            frame = None if rec["error"] else _first_frame(ev.path(rec["name"], PROBE_PCAP))
            got = frame["dst_mac"] if frame else None
            samples.append({**a, "case": rec["name"], "error": rec["error"],
                            "gateway_node": gw and gw["node"], "expected_mac": gw and gw["mac"],
                            "captured_dst_mac": got, "captured_on": by_mac.get(got),
                            "confirmed": bool(frame and gw) and got == gw["mac"] and frame["ip_dst"] == a["dst"]})
        ok = sum(s["confirmed"] for s in samples)
        name = "packets" if family == 4 else "packets6"
        ev.save("packet_checks.json" if family == 4 else "packet6_checks.json", samples)
        ev.metrics[name] = {"sent": len(samples), "confirmed": ok}
        bad = [s["case"] for s in samples if not s["confirmed"]]
        return Claim(
            ("" if family == 4 else "IPv6: ")
            + "a real packet left by the chosen egress interface toward the next hop's MAC",
            bool(samples) and ok == len(samples), measured=f"{ok}/{len(samples)}",
            expected=f"{len(samples)}/{len(samples)}", tolerance=0,
            evidence=f"{folder}*/case.json, {folder}*/egress.pcap, run.json interfaces"
                     + (f"; not confirmed: {bad[:3]}" if bad else ""))


def plot_lpm(results, owners, path):
    """For the router with the deepest chain of nested prefixes: every destination
    of each nested prefix, coloured by the next hop the kernel chose."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    name, r = max(results.items(), key=lambda kv: (len(kv[1].get("zoom", {})), kv[0]))
    zoom = r.get("zoom", {})
    if not zoom:
        return False
    by_dst = {c["dst"]: c for c in r["checks"]}
    prefixes = list(zoom)
    hops = sorted({by_dst[a]["kernel"].get("gateway") or "on-link/local"
                   for pts in zoom.values() for a in pts if "error" not in by_dst[a]["kernel"]})
    colours = {h: plt.cm.tab10(i % 10) for i, h in enumerate(hops)}
    fig, axes = plt.subplots(len(prefixes), 1, figsize=(9, 1.6 + 1.3 * len(prefixes)))
    for ax, prefix in zip(axes, prefixes):
        net = ipaddress.ip_network(prefix)
        base = int(net.network_address)
        for hop in hops:
            xs = [int(ipaddress.IPv4Address(a)) - base for a in zoom[prefix]
                  if (by_dst[a]["kernel"].get("gateway") or "on-link/local") == hop
                  and "error" not in by_dst[a]["kernel"]]
            if xs:
                label = f"via {hop} ({owners[hop]})" if hop in owners else hop
                ax.scatter(xs, [0] * len(xs), s=18, marker="|", color=colours[hop], label=label)
        inner_prefixes = prefixes[prefixes.index(prefix) + 1:prefixes.index(prefix) + 2]
        for inner in inner_prefixes:   # the next prefix of the chain: shaded
            inet = ipaddress.ip_network(inner)
            if inet.subnet_of(net):
                lo = int(inet.network_address) - base
                ax.axvspan(lo, lo + inet.num_addresses - 1, color="0.85", zorder=0)
                ax.annotate(inner, (lo, 0.5), fontsize=7)
        ax.set_xlim(-net.num_addresses * 0.01, net.num_addresses * 1.01)
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.set_title(f"{name}: destinations in {prefix} ({len(zoom[prefix])} evenly spaced), "
                     f"by the kernel's next hop", fontsize=9)
        ax.set_xlabel(f"address offset in {prefix}", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _table_key(table):
    """A main table as a sorted list of (dst, gateway, dev), routes on lo left out
    (the kernel's ::1, listed in main by some kernels)."""
    return sorted((r["dst"], r["gateway"], r["dev"]) for r in table if r.get("dev") != "lo")


def _first_frame(pcap):
    """Ethernet destination and IP destination of the first frame in ``pcap`` (IPv4 or IPv6)."""
    import dpkt
    try:
        for buf in ethernet_frames(pcap):
            eth = dpkt.ethernet.Ethernet(buf)
            mac = ":".join(f"{b:02x}" for b in eth.dst)
            if isinstance(eth.data, dpkt.ip.IP):
                ip_dst = str(ipaddress.IPv4Address(eth.data.dst))
            elif isinstance(eth.data, dpkt.ip6.IP6):
                ip_dst = str(ipaddress.IPv6Address(eth.data.dst))
            else:
                ip_dst = None
            return {"dst_mac": mac, "ip_dst": ip_dst}
    except (OSError, ValueError, WirelabError, dpkt.dpkt.Error):
        return None   # no (readable) probe: the claim fails with this sample
    return None


if __name__ == "__main__":
    sys.exit(main(RoutingExperiment))
