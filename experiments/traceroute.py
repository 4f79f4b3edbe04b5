#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Traceroute: the hops a packet takes, proved three ways.

Runs the real `traceroute` binary between hosts of `line` (h1 <-> h2 across N
routers) and of `internet` (every ordered pair of hosts, or a sample), and
checks, for each pair:
- the hop list traceroute prints equals the expected router path (each router
  answers from its inbound interface), ending at the destination;
- the ICMP time-exceeded messages captured at the source confirm every hop
  independently of traceroute's text (each probe's TTL is read back from the
  UDP port quoted inside the ICMP message);
- the TTL seen by the receiver equals the sender's initial TTL minus the number
  of routers, for a ping with a known TTL and for every UDP probe that arrived;
- per-hop RTTs are recorded (hops.json, rtt-*.png).
"""

import dataclasses
import ipaddress
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.observe.capture import Captures, ethernet_frames  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.experiment.core import Claim, Experiment, main, write_json  # noqa: E402
from wirelab.net.testbed import Testbed  # noqa: E402
from wirelab.observe.traceroute_parse import parse  # noqa: E402

UDP_BASE_PORT = 33434     # traceroute's default: probe k goes to port 33434 + k
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


def probe_ttl(udp_dport):
    """The TTL traceroute gave the probe sent to ``udp_dport`` (3 probes per TTL)."""
    return (udp_dport - UDP_BASE_PORT) // PROBES_PER_HOP + 1


def read_icmp_evidence(pcap, src_ip, dst_ip):
    """From the source's capture: {ttl: [time-exceeded sources]}, port-unreachable sources."""
    import dpkt
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


def read_arrival_ttls(pcap, src_ip):
    """From the receiver's capture: echo-request TTLs, and (probe TTL, arrival TTL) of probes."""
    import dpkt
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


class TracerouteExperiment(Experiment):
    __doc__ = __doc__
    name = "traceroute"
    Params = TracerouteParams

    def run(self):
        from topologies.internet import InternetTopo
        from topologies.line import LineTopo
        self.metrics["pairs"] = []
        line = LineTopo(n=self.params.line_routers)
        self.trace_all(line, [("h1", "h2"), ("h2", "h1")])
        internet = InternetTopo()
        hosts = internet.host_names()
        pairs = [(a, b) for a in hosts for b in hosts if a != b]
        if self.params.internet_pairs:
            step = max(1, len(pairs) // self.params.internet_pairs)
            pairs = pairs[::step][: self.params.internet_pairs]
        self.trace_all(internet, pairs)
        write_json(self.path("pairs.json"), self.metrics["pairs"])

    def trace_all(self, topo, pairs):
        with Testbed(topo, log=self.log) as tb:
            for i, (src, dst) in enumerate(pairs, 1):
                self.log(f"{topo.topo_name}: [{i}/{len(pairs)}] traceroute {src} -> {dst}")
                self.metrics["pairs"].append(self.trace_one(tb, topo, src, dst))

    def trace_one(self, tb, topo, src, dst):
        src_ip, dst_ip = topo.ip(src), topo.ip(dst)
        expected = topo.expected_traceroute(src, dst)
        routers = len(expected) - 1
        tag = f"{topo.topo_name}-{src}-{dst}"
        src_if, dst_if = next(iter(topo.interfaces(src))), next(iter(topo.interfaces(dst)))
        points = [(src, src_if, f"{tag}-at-{src}.pcap"), (dst, dst_if, f"{tag}-at-{dst}.pcap")]
        with Captures(tb, points, self.out_dir, bpf=["icmp", "or", "udp"]) as caps:
            argv = ["traceroute", "-n", "-q", str(PROBES_PER_HOP), "-w", str(self.params.wait),
                    "-p", str(UDP_BASE_PORT), "-m", str(len(expected) + 3), dst_ip]
            done = tb.run(src, argv, timeout=(len(expected) + 3) * self.params.wait * 3 + 10, check=False)
            ping = tb.run(src, ["ping", "-n", "-c", "1", "-W", "2", "-t", str(PING_TTL), dst_ip],
                          timeout=10, check=False)
        with open(self.path(f"{tag}-traceroute.txt"), "w") as f:
            f.write(" ".join(argv) + "\n" + done.stdout + done.stderr)
        return {"topology": topo.topo_name, "src": src, "dst": dst, "src_ip": src_ip,
                "dst_ip": dst_ip, "expected": expected, "routers": routers,
                "expected_path": topo.expected_path(src, dst),
                "traceroute_exit": done.returncode, "traceroute_stdout": done.stdout,
                "ping_exit": ping.returncode,
                "captures": [dict(r) for r in caps.results],
                "pcap_src": points[0][2], "pcap_dst": points[1][2]}

    def verify(self):
        with open(self.path("pairs.json")) as f:
            pairs = json.load(f)
        summary = {"hops": [0, 0], "icmp": [0, 0], "ttl": [0, 0], "probes": [0, 0], "rtt": [0, 0],
                   "captures": [0, 0]}
        bad = {k: [] for k in summary}
        hops_out = []
        for p in pairs:
            name = f"{p['topology']}:{p['src']}->{p['dst']}"
            try:
                hops = parse(p["traceroute_stdout"])
            except ValueError as exc:
                hops = []
                bad["hops"].append(f"{name}: {exc}")
            got = [h["addr"] for h in hops]
            ok = got == p["expected"] and p["traceroute_exit"] == 0
            summary["hops"][0] += ok
            summary["hops"][1] += 1
            if not ok:
                bad["hops"].append(f"{name}: got {got}, expected {p['expected']}")
            exceeded, unreachable = read_icmp_evidence(self.path(p["pcap_src"]), p["src_ip"], p["dst_ip"])
            want = {ttl: {addr} for ttl, addr in enumerate(p["expected"][:-1], 1)}
            ok = ({t: set(v) for t, v in exceeded.items()} == want and
                  set(unreachable) == {p["dst_ip"]})
            summary["icmp"][0] += ok
            summary["icmp"][1] += 1
            if not ok:
                bad["icmp"].append(f"{name}: time-exceeded {exceeded}, port-unreachable {unreachable}")
            pings, probes = read_arrival_ttls(self.path(p["pcap_dst"]), p["src_ip"])
            ok = bool(pings) and all(t == PING_TTL - p["routers"] for t in pings)
            summary["ttl"][0] += ok
            summary["ttl"][1] += 1
            if not ok:
                bad["ttl"].append(f"{name}: echo TTLs {pings}, expected {PING_TTL - p['routers']}")
            ok = bool(probes) and all(arrived == sent - p["routers"] for sent, arrived in probes)
            summary["probes"][0] += ok
            summary["probes"][1] += 1
            if not ok:
                bad["probes"].append(f"{name}: (probe TTL, arrival TTL) {probes[:6]}")
            rtts = [[pr["rtt_ms"] for pr in h["probes"] if pr["rtt_ms"] is not None] for h in hops]
            ok = bool(rtts) and all(len(r) == PROBES_PER_HOP for r in rtts)
            summary["rtt"][0] += ok
            summary["rtt"][1] += 1
            if not ok:
                bad["rtt"].append(f"{name}: {rtts}")
            problems = [f"{c['name']}: {c['problems'] or 'dropped by kernel'}" for c in p["captures"]
                        if c["problems"] or c["dropped_by_kernel"] or c["dropped_by_interface"]]
            summary["captures"][0] += not problems
            summary["captures"][1] += 1
            if problems:
                bad["captures"].append(f"{name}: {problems}")
            hops_out.append({"pair": name, "hops": hops, "rtts_ms": rtts,
                             "icmp_time_exceeded": exceeded, "arrival_ttls": probes, "ping_ttls": pings})
        write_json(self.path("hops.json"), hops_out)
        self.metrics["summary"] = summary

        def claim(key, text, evidence):
            n_ok, n = summary[key]
            return Claim(text, n > 0 and n_ok == n, measured=f"{n_ok}/{n} pairs", expected=f"{n}/{n}",
                         tolerance=0, evidence=evidence + (f"; failures: {bad[key][:3]}" if bad[key] else ""))
        return [
            claim("hops", "traceroute's hop list == the expected router path, ending at the destination",
                  "*-traceroute.txt, pairs.json expected (topology plan)"),
            claim("icmp", "captured ICMP time-exceeded sources confirm every hop (probe TTL from quoted port)",
                  "*-at-<src>.pcap"),
            claim("ttl", f"receiver sees TTL = {PING_TTL} - routers on the path (ping -t {PING_TTL})",
                  "*-at-<dst>.pcap"),
            claim("probes", "every UDP probe arriving at the receiver has TTL = probe TTL - routers",
                  "*-at-<dst>.pcap"),
            claim("rtt", f"every probe was answered: {PROBES_PER_HOP} RTT samples per hop, no '*'",
                  "hops.json"),
            claim("captures", "captures complete (tcpdump exited cleanly, dropped nothing)",
                  "pairs.json captures"),
        ]

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        with open(self.path("hops.json")) as f:
            hops = json.load(f)
        import statistics
        for topology in sorted({h["pair"].split(":")[0] for h in hops}):
            mine = [h for h in hops if h["pair"].startswith(topology + ":")]
            fig, ax = plt.subplots(figsize=(8, 4.5))
            if len(mine) <= 4:
                # few pairs: each pair's median per hop, whiskers to min and max
                for h in mine:
                    xs = [t for t, r in enumerate(h["rtts_ms"], 1) if r]
                    med = [statistics.median(r) for r in h["rtts_ms"] if r]
                    lo = [m - min(r) for m, r in zip(med, [r for r in h["rtts_ms"] if r])]
                    hi = [max(r) - m for m, r in zip(med, [r for r in h["rtts_ms"] if r])]
                    ax.errorbar(xs, med, yerr=[lo, hi], fmt="o-", ms=4, capsize=3,
                                label=h["pair"].split(":")[1])
                ax.legend(fontsize=8)
            else:
                # many pairs: every probe's RTT, grouped by hop
                by_hop = {}
                for h in mine:
                    for ttl, r in enumerate(h["rtts_ms"], 1):
                        by_hop.setdefault(ttl, []).extend(r)
                ttls = sorted(by_hop)
                ax.boxplot([by_hop[t] for t in ttls], positions=ttls, widths=0.5)
                ax.set_xticks(ttls)
            ax.set_xlabel("hop (TTL)")
            ax.set_ylabel("RTT (ms)")
            ax.set_title(f"traceroute per-hop RTT, {topology} ({len(mine)} pairs, "
                         f"{PROBES_PER_HOP} probes per hop)")
            fig.tight_layout()
            fig.savefig(self.path(f"rtt-{topology}.png"), dpi=110)
            plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(TracerouteExperiment))
