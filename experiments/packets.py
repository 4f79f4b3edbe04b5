#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Packets: messages cut to the MTU, fragments, path MTU discovery, a shared link.

::

    h1 --- r1 --- r2 ==[MTU 1000 in the mtu/* cases]== r3 --- r4 --- h2
    h1-eth0 (sender.pcap)  r3-eth0 (after.pcap: after r2)     h2-eth0 (receiver.pcap)

    snd1 (3 programs) --.                              .-- rcv1
                         >-- r1 ==(shared.pcap)== r2 --<
    snd2 (3 programs) --'   r1-eth0                    '-- rcv2

* sizes/tcp-N: one N-byte message (100 B .. 1 MB) handed to TCP whole: no
  segment exceeds the MSS the SYN announced (less 12 bytes of timestamps), and
  the data-segment count is ceil(N / payload per segment).
* sizes/udp: UDP datagrams up to 65507 B: those above the MTU leave h1 in IP
  fragments (offsets in 8-byte units, MF on all but the last, one IP ID each,
  sizes from the MTU); the receiver gets each whole (size and sha256).
* mtu/*: the r2-r3 link's MTU lowered (both ends, restored after): r2 fragments
  DF-clear datagrams; answers DF-set ones with ICMP "fragmentation needed"
  carrying the next-hop MTU; h1 caches that path MTU (netlink) and TCP's
  segments shrink to fit. With r2's ICMP dropped (a PMTUD black hole) TCP
  stalls; with tcp_mtu_probing=1 on h1 it finds a size that fits by itself.
* sharing: six connections from two hosts (three programs each) at once on one
  link: told apart by ports, their packets interleave on the wire.

Offloads (TSO/GSO/GRO) are off on every interface where sizes are claimed.
h1's route cache is flushed before every case, so each starts with no path MTU.
"""

import contextlib
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.errors import ConfigError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, NodeFault, run_cases  # noqa: E402
from wirelab.experiment.claims import Claim, Tally, capture_problems  # noqa: E402
from wirelab.experiment.core import Experiment, main  # noqa: E402
from wirelab.experiment.packet_claims import (MTU_CASES, Ctx, check_mtu_tcp, check_mtu_udp, check_sharing,  # noqa: E402
                                              check_tcp_sizes, check_udp_sizes, sharing_flows)
from wirelab.impair.faults import DropIcmpFragNeeded  # noqa: E402
from wirelab.observe import ipfrag  # noqa: E402

TCP_SIZES = (100, 1000, 1460, 10_000, 100_000, 1_000_000)
UDP_SIZES = (100, 1000, 1472, 1473, 10_000, 65_507)   # 1472 fills a 1500 MTU exactly
DF_CLEAR_SIZES = (100, 1400, 4000)     # fits everywhere; fits 1500 only; fragmented at h1 already
DF_SET_TOO_BIG, DF_SET_FITS = 1400, 900
# Kernel settings of h1 that the claims derive from, recorded in each case.
KERNEL_KEYS = ("net/ipv4/tcp_retries1", "net/ipv4/tcp_base_mss", "net/ipv4/tcp_mtu_probing",
               "net/ipv4/ip_no_pmtu_disc")
PROBING = "net/ipv4/tcp_mtu_probing"
# sharing: each receiver's SO_RCVBUF while held (the kernel doubles it: ~32 KB
# window), far below flow_bytes' 100000 minimum, so every sender stalls mid-flow
# until the common release and every flow is on the wire before and after it.
SHARING_RCVBUF = 16_384
PMTU_WAIT_S = 5.0         # for h1 to cache the path MTU after r2's ICMP
POINTS = {"sender.pcap": ("h1", "r1"), "receiver.pcap": ("h2", "r4"), "after.pcap": ("r3", "r2")}


@dataclasses.dataclass(frozen=True)
class PacketsParams:
    tcp_sizes: tuple[int, ...] = dataclasses.field(default=TCP_SIZES, metadata={
        "help": "TCP message sizes, bytes (1..10000000)"})
    udp_sizes: tuple[int, ...] = dataclasses.field(default=UDP_SIZES, metadata={
        "help": f"UDP datagram sizes, bytes, all different (1..{ipfrag.UDP_MAX_PAYLOAD})"})
    mtu: int = dataclasses.field(default=1000, metadata={"help": "MTU of the r2-r3 link in the mtu cases (576..1400)"})
    stall_seconds: float = dataclasses.field(default=2.0, metadata={
        "help": "how long the black-holed transfer may try (1..10 s)"})
    probing_timeout: float = dataclasses.field(default=40.0, metadata={
        "help": "seconds the transfer with tcp_mtu_probing may take"})
    flows_per_host: int = dataclasses.field(default=3, metadata={"help": "sharing: programs per sending host (1..8)"})
    flow_bytes: int = dataclasses.field(default=2_000_000, metadata={"help": "sharing: bytes per connection"})
    seed: int = dataclasses.field(default=1, metadata={"help": "seed of every payload"})

    def __post_init__(self):
        for name, top in (("tcp_sizes", 10_000_000), ("udp_sizes", ipfrag.UDP_MAX_PAYLOAD)):
            values = getattr(self, name)
            if not values or any(not 1 <= v <= top for v in values) or len(set(values)) != len(values):
                raise ConfigError(f"{name}: different sizes of 1..{top} bytes, got {list(values)}")
        if not 576 <= self.mtu <= 1400:
            raise ConfigError(f"mtu must be 576..1400 (below the hosts' 1500 and above {DF_SET_FITS} + 28), "
                              f"got {self.mtu}")
        if not 1 <= self.stall_seconds <= 10:
            raise ConfigError(f"stall_seconds must be 1..10, got {self.stall_seconds}")
        if not 10 <= self.probing_timeout <= 300:
            raise ConfigError(f"probing_timeout must be 10..300 s, got {self.probing_timeout}")
        if not 1 <= self.flows_per_host <= 8:
            raise ConfigError(f"flows_per_host must be 1..8, got {self.flows_per_host}")
        if not 100_000 <= self.flow_bytes <= 50_000_000:
            raise ConfigError(f"flow_bytes must be 100000..50000000, got {self.flow_bytes}")


def describe_network(tb, hosts, ends):
    """Addresses of ``hosts``; MTU (netlink) and offloads (ethtool ioctls) of
    the interface of each ``(node, peer)`` in ``ends`` facing that peer."""
    from wirelab.net.mtu import link_mtu
    from wirelab.net.netns import get_offloads, open_ioctl_socket
    offloads, mtus = {}, {}
    for node, peer in ends:
        intf = tb.topo.interface_facing(node, peer)
        with open_ioctl_socket(tb.node(node)) as sock:
            offloads[f"{node}:{intf}"] = get_offloads(sock, intf)
        mtus[f"{node}:{intf}"] = link_mtu(tb, node, intf)
    return {"ips": {n: tb.ip(n) for n in hosts}, "mtus": mtus, "offloads": offloads}


class Packets(Experiment):
    """Packets up close: sizes and MTU, fragments, path MTU discovery and its black hole, a shared link."""

    name = "packets"
    Params = PacketsParams
    description = __doc__

    def run(self):
        from topologies.dumbbell import DumbbellTopo
        from topologies.line import LineTopo
        from wirelab.net.testbed import Testbed
        line = LineTopo(n=4)
        with Testbed(line, log=self.log) as tb:
            self.mtu_link = [("r2", line.interface_facing("r2", "r3")), ("r3", line.interface_facing("r3", "r2"))]
            net = describe_network(tb, ("h1", "h2", "r2"), [("h1", "r1"), ("h2", "r4"), ("r1", "h1"), ("r1", "r2"),
                                                             ("r2", "r1"), ("r2", "r3"), ("r3", "r2")])
            self.record(line={**net, "icmp_from_r2": tb.ip("r2", line.interface_facing("r2", "r1")),
                              "host_mtu": net["mtus"][f"h1:{line.interface_facing('h1', 'r1')}"],
                              "mtu_link": [f"{n}:{i}" for n, i in self.mtu_link]})
            run_cases(self, tb, self.line_cases(tb), lambda case, folder: self.workload(tb, case, folder))
        bell = DumbbellTopo(senders=2, receivers=2)
        with Testbed(bell, log=self.log) as tb:
            self.record(dumbbell=describe_network(tb, ("snd1", "snd2", "rcv1", "rcv2"),
                                                  [("r1", "r2"), ("r2", "r1"), ("snd1", "r1"), ("snd2", "r1"),
                                                   ("rcv1", "r2"), ("rcv2", "r2")]))
            run_cases(self, tb, [self.sharing_case(bell)], lambda case, folder: self.workload(tb, case, folder))

    def line_cases(self, tb):
        p, caps = self.params, {}
        for f, (node, peer) in POINTS.items():
            caps[f] = CapturePoint(node, tb.topo.interface_facing(node, peer), f)
        ends, mtu_caps = (caps["sender.pcap"], caps["receiver.pcap"]), (caps["sender.pcap"], caps["after.pcap"])
        hole = (NodeFault("r2", DropIcmpFragNeeded(dst=tb.ip("h1"))),)
        cases = [Case(f"sizes/tcp-{n}", {"kind": "tcp", "bytes": n, "port": 5001 + i, "timeout": 60},
                      captures=ends) for i, n in enumerate(p.tcp_sizes)]
        cases.append(Case("sizes/udp", {"kind": "udp", "sizes": list(p.udp_sizes), "df": False, "port": 6001},
                          captures=ends))
        m = {"mtu": p.mtu}
        cases += [Case("mtu/udp-df-clear", {"kind": "udp", "sizes": list(DF_CLEAR_SIZES), "df": False, "port": 6002, **m},
                       captures=mtu_caps),
                  Case("mtu/udp-df-set", {"kind": "udp-pmtud", "first": [DF_SET_TOO_BIG],
                                          "then": [DF_SET_TOO_BIG, DF_SET_FITS], "port": 6003, **m}, captures=mtu_caps),
                  Case("mtu/tcp-pmtud", {"kind": "tcp", "bytes": 200_000, "port": 7001, "timeout": 60, **m},
                       captures=mtu_caps),
                  Case("mtu/tcp-blackhole", {"kind": "tcp", "bytes": 100_000, "port": 7002,
                                             "timeout": p.stall_seconds, **m}, faults=hole, captures=mtu_caps),
                  Case("mtu/tcp-probing", {"kind": "tcp", "bytes": 100_000, "port": 7003, "timeout": p.probing_timeout,
                                           "sysctls": {PROBING: "1"}, **m}, faults=hole, captures=mtu_caps)]
        return cases

    def sharing_case(self, topo):
        n = self.params.flows_per_host
        flows = [{"sender": snd, "receiver": f"rcv{1 + k % 2}", "port": 5001 + i * n + k,
                  "bytes": self.params.flow_bytes} for i, snd in enumerate(("snd1", "snd2")) for k in range(n)]
        return Case("sharing", {"kind": "sharing", "flows": flows},
                    captures=(CapturePoint("r1", topo.interface_facing("r1", "r2"), "shared.pcap"),))

    def workload(self, tb, case, folder):
        from wirelab.apps.messages import concurrent_transfers, message_transfer, udp_exchange
        from wirelab.net.mtu import LinkMtu, flush_route_cache, link_mtu, route_mtu
        from wirelab.net.sysctl import SysctlChange, read_sysctl
        from wirelab.proc import wait_until
        a, seed = case.args, self.params.seed
        if a["kind"] == "sharing":
            return {"flows": concurrent_transfers(tb, a["flows"], seed=seed, timeout=60, hold_rcvbuf=SHARING_RCVBUF)}
        h2 = tb.ip("h2")
        flush_route_cache(tb, "h1")
        rec = {"route_mtu_before": route_mtu(tb, "h1", h2)}
        with contextlib.ExitStack() as stack:
            mtu = stack.enter_context(LinkMtu(tb, self.mtu_link, a["mtu"])) if a.get("mtu") else None
            changes = [stack.enter_context(SysctlChange(tb, "h1", k, v)) for k, v in a.get("sysctls", {}).items()]
            rec["kernel"] = {k: read_sysctl(tb.node("h1"), k) for k in KERNEL_KEYS}
            rec["icmp_ratelimit_r2"] = read_sysctl(tb.node("r2"), "net/ipv4/icmp_ratelimit")
            if a["kind"] == "tcp":
                rec.update(message_transfer(tb, "h1", "h2", port=a["port"], nbytes=a["bytes"], seed=seed,
                                            timeout=a["timeout"]))
            elif a["kind"] == "udp":
                rec.update(udp_exchange(tb, "h1", "h2", port=a["port"], sizes=a["sizes"], seed=seed, df=a["df"], timeout=10))
            else:   # DF set: the first too-big datagram teaches h1 the path MTU, then the kernel refuses
                rec["first"] = udp_exchange(tb, "h1", "h2", port=a["port"], sizes=a["first"], seed=seed, df=True, timeout=10)
                wait_until(lambda: route_mtu(tb, "h1", h2) == a["mtu"], PMTU_WAIT_S,
                           what=f"h1 to cache path MTU {a['mtu']} toward h2")
                rec["then"] = udp_exchange(tb, "h1", "h2", port=a["port"] + 100, sizes=a["then"], seed=seed + 1,
                                           df=True, timeout=10)
            rec["route_mtu_after"] = route_mtu(tb, "h1", h2)
        rec["mtu_change"] = mtu.to_dict() if mtu else None
        rec["mtu_after_restore"] = {f"{n}:{i}": link_mtu(tb, n, i) for n, i in self.mtu_link} if mtu else None
        rec["sysctls"] = [{**c.to_dict(), "after_restore": read_sysctl(c.node, c.key)} for c in changes]
        return rec

    # -- verify: from the results folder only -------------------------------------------
    @classmethod
    def verify(cls, ev):
        line, cases = ev.run.get("line") or {}, {c["name"]: c for c in ev.cases()}
        ips = line.get("ips", {})
        ctx = Ctx(ev, cases, ips.get("h1"), ips.get("h2"), line.get("host_mtu"), ev.params.mtu)
        ev.metrics.update(tcp_sizes={}, udp_sizes={}, mtu={}, sharing={})
        off = {**line.get("offloads", {}), **(ev.run.get("dumbbell") or {}).get("offloads", {})}
        on = [f"{k}:{f}" for k, v in off.items() for f, state in v.items() if state]
        claims = [Claim("offloads (TSO/GSO/GRO) off on every interface whose packet sizes are claimed",
                        bool(off) and not on, measured=on or f"all off on {len(off)} interfaces",
                        expected="all off", evidence="ethtool ioctls in each node's namespace (run.json)")]
        claims += check_tcp_sizes(ctx) + check_udp_sizes(ctx) + check_mtu_udp(ctx, line.get("icmp_from_r2"))
        claims += check_mtu_tcp(ctx) + check_sharing(ctx, ev.run.get("dumbbell") or {})
        tally = Tally()
        for name in [f"sizes/tcp-{n}" for n in ev.params.tcp_sizes] + ["sizes/udp", *MTU_CASES, "sharing"]:
            c = cases.get(name)
            tally.check("ran", c is not None and not c["error"], name, (c or {}).get("error") or "not run")
            tally.check("captures", c is not None and not capture_problems(c["captures"]) and c["captures"],
                        name, capture_problems((c or {}).get("captures", [])))
            if name.startswith("mtu/"):
                w = (c or {}).get("workload") or {}
                ch, back = w.get("mtu_change") or {}, w.get("mtu_after_restore") or {}
                tally.check("mtu", set((ch.get("readback") or {}).values()) == {ctx.mtu} and back
                            and back == ch.get("before"), name, f"readback {ch.get('readback')}, after {back}")
            if name.startswith(("sizes/", "mtu/")):
                w = (c or {}).get("workload") or {}
                tally.check("flushed", c is not None and "route_mtu_before" in w and w["route_mtu_before"] is None,
                            name, f"cached MTU {w.get('route_mtu_before')}")
        claims += [tally.claim("ran", "every case ran to its end (no error in case.json)", "case.json", "cases"),
                   tally.claim("captures", "captures complete in every case (tcpdump dropped nothing)",
                               "case.json captures", "cases"),
                   tally.claim("mtu", f"the r2-r3 link's MTU read back as {ctx.mtu} on both ends, then restored",
                               "netlink IFLA_MTU before, during, after (case.json workload)", "cases"),
                   tally.claim("flushed", "h1's route cache flushed before each case: no path MTU cached at the start",
                               "netlink RTM_GETROUTE RTAX_MTU (case.json workload.route_mtu_before)", "cases")]
        return claims

    @classmethod
    def plot(cls, ev):
        from wirelab.observe import flowmix
        from wirelab.observe.packet_evidence import tcp_data
        h1, h2 = ev.run["line"]["ips"]["h1"], ev.run["line"]["ips"]["h2"]
        series = {}
        for name in ("mtu/tcp-pmtud", "mtu/tcp-probing", "mtu/tcp-blackhole"):
            if ev.exists(name, "sender.pcap"):
                segs = tcp_data(ipfrag.read_ip_packets(ev.path(name, "sender.pcap")), h1, h2, ev.case(name)["args"]["port"])
                if segs:
                    series[name.split("/")[1]] = [((q.ts_ns - segs[0].ts_ns) / 1e6, q.tcp_payload) for q in segs]
        if series:
            flowmix.plot_segment_sizes(series, ev.params.mtu - 52, ev.path("mtu", "segment_sizes.png"),
                                       f"packets: h1's TCP segment sizes, r2-r3 MTU {ev.params.mtu}")
        if ev.exists("sharing", "shared.pcap"):
            flows = sharing_flows(ev.case("sharing"), ev.run["dumbbell"]["ips"])
            by_flow, _ = flowmix.data_packets_by_flow(ipfrag.read_ip_packets(ev.path("sharing", "shared.pcap")), flows)
            flowmix.plot_flows(by_flow, flows, ev.path("sharing", "packets_by_flow.png"),
                               "packets: six connections sharing the r1-r2 link, coloured by flow")


if __name__ == "__main__":
    sys.exit(main(Packets))
