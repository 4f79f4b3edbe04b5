#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Traceroute: the hops a packet takes, proved three ways.

Runs the real `traceroute` binary between hosts of `line` (h1 <-> h2 across N
routers) and of `internet` (every ordered pair of hosts, or a sample), one
declared case per pair (`line/h1-h2`, `internet/<src>-<dst>`, captures at both
ends), and checks, for each pair:
- the hop list traceroute prints equals the expected router path (each router
  answers from its inbound interface), ending at the destination;
- the ICMP time-exceeded messages captured at the source confirm every hop
  independently of traceroute's text (each probe's TTL is read back from the
  UDP port quoted inside the ICMP message);
- the TTL seen by the receiver equals the sender's initial TTL minus the number
  of routers, for a ping with a known TTL and for every UDP probe that arrived;
- per-hop RTTs are recorded (hops.json, rtt-*.png).
The expectations come from the topology plan (no root) and are saved in each
case's case.json, so verify reads only the results folder.

Over IPv6 as well (the topologies are dual-stack; run.json records families
[4, 6]): the same
pairs as cases `line6/<src>-<dst>` and `internet6/<src>-<dst>` in the same
networks, `traceroute -6 -n` and `ping -6 -t 64`, each router answering from
the IPv6 address of the interface the probe came in by. The same six checks,
claimed separately with the prefix "IPv6:": ICMPv6 time-exceeded (type 3) and
port-unreachable (type 1 code 4) quote the probe, whose hop limit is read back
from its UDP port, and the receiver sees hop limit = initial - routers.
"""

import dataclasses
import ipaddress
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.apps.traceroute import run_traceroute  # noqa: E402
from wirelab.errors import ConfigError, WirelabError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, run_cases  # noqa: E402
from wirelab.experiment.claims import Tally, capture_problems  # noqa: E402
from wirelab.experiment.core import Experiment, main  # noqa: E402
from wirelab.net.testbed import Testbed  # noqa: E402
from wirelab.observe.capture import ethernet_frames  # noqa: E402
from wirelab.observe.probe_rtt import TRACEROUTE_BASE_PORT  # noqa: E402
from wirelab.observe.traceroute_parse import parse  # noqa: E402

UDP_BASE_PORT = TRACEROUTE_BASE_PORT     # traceroute's default: probe k goes to port 33434 + k
PROBES_PER_HOP = 3
PING_TTL = 64


@dataclasses.dataclass(frozen=True)
class TracerouteParams:
    line_routers: int = dataclasses.field(default=6, metadata={
        "help": "routers in the line topology (h1 - r1..rN - h2)"})
    internet_pairs: int = dataclasses.field(default=0, metadata={
        "help": "ordered host pairs to trace in `internet` (0 = all)"})
    wait: float = dataclasses.field(default=2.0, metadata={
        "help": "seconds traceroute waits for each probe's answer (-w)"})

    def __post_init__(self):
        if not 1 <= self.line_routers <= 60:
            raise ConfigError(f"line_routers must be between 1 and 60 "
                              f"(traceroute's hop limit is 64 with room for 4), got {self.line_routers}")
        if self.internet_pairs < 0:
            raise ConfigError(f"internet_pairs must be >= 0, got {self.internet_pairs}")
        if not 0.1 <= self.wait <= 10:
            raise ConfigError(f"wait must be between 0.1 and 10 s, got {self.wait}")


# -- the cases, from the topology plans (no root) ---------------------------------
def pcap_names(src, dst):
    """The captures of a pair's case: at the source, at the destination."""
    return f"at-{src}.pcap", f"at-{dst}.pcap"


def pair_case(topo, src, dst, family=4):
    """One traced pair; its ``args`` carry what the plan expects."""
    expected = topo.expected_traceroute(src, dst, family=family)
    at_src, at_dst = pcap_names(src, dst)
    args = {"topology": topo.topo_name, "src": src, "dst": dst,
            "src_ip": topo.ip(src, family=family), "dst_ip": topo.ip(dst, family=family),
            "expected": expected, "routers": len(expected) - 1,
            "expected_path": topo.expected_path(src, dst, family=family)}
    if family == 6:
        args["family"] = 6    # absent: IPv4 (and case.json of IPv4 pairs as before)
    return Case(
        name=f"{topo.topo_name}{'6' if family == 6 else ''}/{src}-{dst}",
        args=args,
        captures=(CapturePoint(src, next(iter(topo.interfaces(src))), at_src),
                  CapturePoint(dst, next(iter(topo.interfaces(dst))), at_dst)),
        bpf=("icmp", "or", "udp") if family == 4 else ("icmp6", "or", "udp"))


FAMILIES = (4, 6)   # every pair is traced over IPv4, then over IPv6


def declared_cases(params, families=FAMILIES):
    """[(topology, [Case...])]: h1 <-> h2 on `line`, then the `internet` pairs,
    each over every family (IPv6 cases: `line6/...`, `internet6/...`)."""
    from topologies.internet import InternetTopo
    from topologies.line import LineTopo
    line = LineTopo(n=params.line_routers)
    internet = InternetTopo()
    hosts = internet.host_names()
    pairs = [(a, b) for a in hosts for b in hosts if a != b]
    if params.internet_pairs:
        step = max(1, len(pairs) // params.internet_pairs)
        pairs = pairs[::step][: params.internet_pairs]
    line_pairs = [("h1", "h2"), ("h2", "h1")]
    return [(line, [pair_case(line, a, b, f) for f in families for a, b in line_pairs]),
            (internet, [pair_case(internet, a, b, f) for f in families for a, b in pairs])]


# -- the pcap readers (pure functions of a file) -----------------------------------
def probe_ttl(udp_dport):
    """The TTL traceroute gave the probe sent to ``udp_dport`` (3 probes per TTL)."""
    return (udp_dport - UDP_BASE_PORT) // PROBES_PER_HOP + 1


ICMP6_DST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_PORT_UNREACH = 1, 3, 4   # RFC 4443
ICMP6_ECHO_REQUEST = 128


def read_icmp6_evidence(pcap, dst_ip):
    """IPv6: {hop limit: [ICMPv6 time-exceeded sources]}, port-unreachable sources,
    for the probes to ``dst_ip`` the messages quote."""
    import dpkt
    exceeded, unreachable = {}, []
    for buf in ethernet_frames(pcap):
        ip6 = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip6, dpkt.ip6.IP6) or ip6.nxt != dpkt.ip.IP_PROTO_ICMP6:
            continue
        icmp = ip6.data
        if not isinstance(icmp, dpkt.icmp6.ICMP6):
            continue
        inner = getattr(icmp.data, "data", None)   # the quoted IPv6 packet
        if not isinstance(inner, dpkt.ip6.IP6):
            continue
        dport = getattr(inner.data, "dport", None)
        if str(ipaddress.IPv6Address(inner.dst)) != dst_ip or dport is None:
            continue
        src = str(ipaddress.IPv6Address(ip6.src))
        if icmp.type == ICMP6_TIME_EXCEEDED:
            exceeded.setdefault(probe_ttl(dport), []).append(src)
        elif icmp.type == ICMP6_DST_UNREACH and icmp.code == ICMP6_PORT_UNREACH:
            unreachable.append(src)
    return exceeded, unreachable


def read_icmp_evidence(pcap, src_ip, dst_ip):
    """From the source's capture: {ttl: [time-exceeded sources]}, port-unreachable sources
    (IPv6 addresses: ICMPv6, :func:`read_icmp6_evidence`)."""
    import dpkt
    if ":" in dst_ip:
        return read_icmp6_evidence(pcap, dst_ip)
    exceeded, unreachable = {}, []
    for buf in ethernet_frames(pcap):
        ip = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip, dpkt.ip.IP) or ip.p != dpkt.ip.IP_PROTO_ICMP:
            continue
        icmp = ip.data
        src = str(ipaddress.IPv4Address(ip.src))
        inner = getattr(icmp.data, "data", None)   # the quoted IP header + 8 bytes
        if not isinstance(inner, dpkt.ip.IP):
            continue
        quoted = inner.data
        dport = getattr(quoted, "dport", None)
        if str(ipaddress.IPv4Address(inner.dst)) != dst_ip or dport is None:
            continue
        if icmp.type == dpkt.icmp.ICMP_TIMEXCEED:
            exceeded.setdefault(probe_ttl(dport), []).append(src)
        elif icmp.type == dpkt.icmp.ICMP_UNREACH and icmp.code == dpkt.icmp.ICMP_UNREACH_PORT:
            unreachable.append(src)
    return exceeded, unreachable


def read_arrival_hop_limits(pcap, src_ip):
    """IPv6: echo-request hop limits, and (probe hop limit, arrival hop limit) of probes."""
    import dpkt
    pings, probes = [], []
    for buf in ethernet_frames(pcap):
        ip6 = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip6, dpkt.ip6.IP6) or str(ipaddress.IPv6Address(ip6.src)) != src_ip:
            continue
        if ip6.nxt == dpkt.ip.IP_PROTO_ICMP6 and isinstance(ip6.data, dpkt.icmp6.ICMP6) \
                and ip6.data.type == ICMP6_ECHO_REQUEST:
            pings.append(ip6.hlim)
        elif ip6.nxt == dpkt.ip.IP_PROTO_UDP and ip6.data.dport >= UDP_BASE_PORT:
            probes.append((probe_ttl(ip6.data.dport), ip6.hlim))
    return pings, probes


def read_arrival_ttls(pcap, src_ip):
    """From the receiver's capture: echo-request TTLs, and (probe TTL, arrival TTL) of probes
    (an IPv6 ``src_ip``: hop limits, :func:`read_arrival_hop_limits`)."""
    import dpkt
    if ":" in src_ip:
        return read_arrival_hop_limits(pcap, src_ip)
    pings, probes = [], []
    for buf in ethernet_frames(pcap):
        ip = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip, dpkt.ip.IP) or str(ipaddress.IPv4Address(ip.src)) != src_ip:
            continue
        if ip.p == dpkt.ip.IP_PROTO_ICMP and ip.data.type == dpkt.icmp.ICMP_ECHO:
            pings.append(ip.ttl)
        elif ip.p == dpkt.ip.IP_PROTO_UDP and ip.data.dport >= UDP_BASE_PORT:
            probes.append((probe_ttl(ip.data.dport), ip.ttl))
    return pings, probes


def hop_rtts(hops):
    """Per hop, the RTTs of the probes that were answered."""
    return [[pr["rtt_ms"] for pr in h["probes"] if pr["rtt_ms"] is not None] for h in hops]


# -- verify: one Tally over the pairs, one claim per check ---------------------------
CLAIMS = [
    ("hops", "traceroute's hop list == the expected router path, ending at the destination",
     "<case>/traceroute.txt, case.json args.expected (topology plan)"),
    ("icmp", "captured ICMP time-exceeded sources confirm every hop (probe TTL from quoted port)",
     "<case>/at-<src>.pcap"),
    ("ttl", f"receiver sees TTL = {PING_TTL} - routers on the path (ping -t {PING_TTL})",
     "<case>/at-<dst>.pcap"),
    ("probes", "every UDP probe arriving at the receiver has TTL = probe TTL - routers",
     "<case>/at-<dst>.pcap"),
    ("rtt", f"every probe was answered: {PROBES_PER_HOP} RTT samples per hop, no '*'", "hops.json"),
    ("captures", "captures complete (tcpdump exited cleanly, dropped nothing)", "case.json captures"),
]


CLAIMS6 = [
    ("hops6", "IPv6: traceroute -6's hop list == the expected router path, ending at the destination",
     "<case>/traceroute.txt, case.json args.expected (topology plan, family 6)"),
    ("icmp6", "IPv6: captured ICMPv6 time-exceeded sources confirm every hop "
              "(probe hop limit from quoted port)", "<case>/at-<src>.pcap"),
    ("ttl6", f"IPv6: receiver sees hop limit = {PING_TTL} - routers on the path (ping -6 -t {PING_TTL})",
     "<case>/at-<dst>.pcap"),
    ("probes6", "IPv6: every UDP probe arriving at the receiver has hop limit = probe hop limit - routers",
     "<case>/at-<dst>.pcap"),
    ("rtt6", f"IPv6: every probe was answered: {PROBES_PER_HOP} RTT samples per hop, no '*'", "hops.json"),
    ("captures6", "IPv6: captures complete (tcpdump exited cleanly, dropped nothing)", "case.json captures"),
]


def check_pair(ev, rec, tally):
    """Apply every check to one case (``rec``: its case.json); return its hops.json entry."""
    import dpkt
    name, a, w = rec["name"], rec["args"], rec["workload"] or {}
    k = "6" if a.get("family", 4) == 6 else ""      # IPv6 pairs count towards the IPv6 claims
    if rec["error"]:
        why = f"case failed at {rec['error']['stage']}: {rec['error']['message']}"
        for key, _, _ in CLAIMS:
            tally.check(key + k, False, name, why)
        return {"case": name, "topology": a["topology"], "pair": f"{a['src']}->{a['dst']}",
                "error": why, "hops": [], "rtts_ms": []}
    try:
        hops, hops_error = parse(w["traceroute_stdout"]), None
    except ValueError as exc:
        hops, hops_error = [], str(exc)
    got = [h["addr"] for h in hops]
    tally.check("hops" + k, got == a["expected"] and w["traceroute_exit"] == 0, name,
                hops_error or f"got {got}, expected {a['expected']} (exit {w['traceroute_exit']})")
    at_src, at_dst = pcap_names(a["src"], a["dst"])
    try:
        exceeded, unreachable = read_icmp_evidence(ev.path(name, at_src), a["src_ip"], a["dst_ip"])
        pings, probes = read_arrival_ttls(ev.path(name, at_dst), a["src_ip"])
        pcap_error = None
    except (OSError, WirelabError, dpkt.dpkt.Error) as exc:
        exceeded, unreachable, pings, probes, pcap_error = {}, [], [], [], str(exc)
    want = {ttl: {addr} for ttl, addr in enumerate(a["expected"][:-1], 1)}
    tally.check("icmp" + k, {t: set(v) for t, v in exceeded.items()} == want
                and set(unreachable) == {a["dst_ip"]}, name,
                pcap_error or f"time-exceeded {exceeded}, port-unreachable {unreachable}")
    tally.check("ttl" + k, bool(pings) and all(t == PING_TTL - a["routers"] for t in pings), name,
                pcap_error or f"echo TTLs {pings}, expected {PING_TTL - a['routers']}")
    tally.check("probes" + k, bool(probes) and all(arrived == sent - a["routers"] for sent, arrived in probes),
                name, pcap_error or f"(probe TTL, arrival TTL) {probes[:6]}")
    rtts = hop_rtts(hops)
    tally.check("rtt" + k, bool(rtts) and all(len(r) == PROBES_PER_HOP for r in rtts), name, str(rtts))
    problems = capture_problems(rec["captures"])
    if len(rec["captures"]) != 2:
        problems.append(f"{len(rec['captures'])} captures of 2")
    tally.check("captures" + k, not problems, name, str(problems))
    return {"case": name, "topology": a["topology"] + k, "pair": f"{a['src']}->{a['dst']}",
            "hops": hops, "rtts_ms": rtts, "icmp_time_exceeded": exceeded,
            "arrival_ttls": probes, "ping_ttls": pings}


class TracerouteExperiment(Experiment):
    __doc__ = __doc__
    name = "traceroute"
    Params = TracerouteParams

    def run(self):
        self.record(families=list(FAMILIES))
        for topo, cases in declared_cases(self.params):
            with Testbed(topo, log=self.log) as tb:
                run_cases(self, tb, cases, lambda case, folder: self.trace(tb, case, folder))

    def trace(self, tb, case, folder):
        """The workload: traceroute, then one ping with a known TTL."""
        a = case.args
        family = a.get("family", 4)
        record = run_traceroute(tb, a["src"], a["dst_ip"], max_ttl=len(a["expected"]) + 3,
                                probes=PROBES_PER_HOP, wait=self.params.wait, folder=folder, family=family)
        v6 = ["-6"] if family == 6 else []
        ping = tb.run(a["src"], ["ping"] + v6 + ["-n", "-c", "1", "-W", "2", "-t", str(PING_TTL), a["dst_ip"]],
                      timeout=10, check=False)
        return {**record, "ping_exit": ping.returncode}

    @classmethod
    def verify(cls, ev):
        tally = Tally()
        table = [check_pair(ev, rec, tally) for rec in ev.cases()]
        ev.save("hops.json", table)
        ev.metrics["summary"] = tally.summary()
        claims = [tally.claim(key, title, evidence) for key, title, evidence in CLAIMS]
        # A folder from before IPv6 (no families in run.json) is IPv4 only.
        if 6 in ev.run.get("families", [4]):
            claims += [tally.claim(key, title, evidence) for key, title, evidence in CLAIMS6]
        return claims

    @classmethod
    def plot(cls, ev):
        import statistics

        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        by_topology = {}
        for rec in ev.cases():
            try:
                rtts = hop_rtts(parse((rec["workload"] or {}).get("traceroute_stdout", "")))
            except ValueError:
                rtts = []
            family = "6" if rec["args"].get("family", 4) == 6 else ""
            by_topology.setdefault(rec["args"]["topology"] + family, []).append(
                (f"{rec['args']['src']}->{rec['args']['dst']}", rtts))
        for topology, mine in sorted(by_topology.items()):
            fig, ax = plt.subplots(figsize=(8, 4.5))
            if len(mine) <= 4:
                # few pairs: each pair's median per hop, whiskers to min and max
                for label, rtts in mine:
                    answered = [r for r in rtts if r]
                    xs = [t for t, r in enumerate(rtts, 1) if r]
                    med = [statistics.median(r) for r in answered]
                    lo = [m - min(r) for m, r in zip(med, answered)]
                    hi = [max(r) - m for m, r in zip(med, answered)]
                    ax.errorbar(xs, med, yerr=[lo, hi], fmt="o-", ms=4, capsize=3, label=label)
                ax.legend(fontsize=8)
            else:
                # many pairs: every probe's RTT, grouped by hop
                by_hop = {}
                for _, rtts in mine:
                    for ttl, r in enumerate(rtts, 1):
                        by_hop.setdefault(ttl, []).extend(r)
                ttls = sorted(by_hop)
                ax.boxplot([by_hop[t] for t in ttls], positions=ttls, widths=0.5)
                ax.set_xticks(ttls)
            ax.set_xlabel("hop (TTL)")
            ax.set_ylabel("RTT (ms)")
            ax.set_title(f"traceroute per-hop RTT, {topology} ({len(mine)} pairs, "
                         f"{PROBES_PER_HOP} probes per hop)")
            fig.tight_layout()
            fig.savefig(ev.path(f"rtt-{topology}.png"), dpi=110)
            plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(TracerouteExperiment))
