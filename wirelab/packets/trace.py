"""``wirelab packet trace``: a traceroute written with scapy.

Probes go out with TTL 1, 2, 3, ...: a router that would forward a probe
with TTL 1 drops it and answers ICMP time-exceeded from itself -- that is the
hop. The destination ends the trace: ICMP port-unreachable for a UDP probe
(nobody listens on 33434+), echo-reply for an ICMP probe, SYN-ACK or RST for a
TCP SYN. An ICMP unreachable from a router ends it too (traceroute's !H, !N).

The ``-q`` probes of one TTL are sent together and awaited together (at most
``-w`` s); TTLs are probed one after the other, so a router or the destination
answers at most ``-q`` probes at once -- well inside Linux's ICMP burst of 6
per peer (net.ipv4.icmp_ratelimit; the testbed's routers turn it off).

:func:`assemble_hops` (pure) turns ``(ttl, answer)`` records into hops;
:func:`format_hops` prints them as ``traceroute -n`` does, so
:func:`wirelab.observe.traceroute_parse.parse` reads both the same way.
"""

import argparse
import collections
import dataclasses
import ipaddress
import os
import time

from wirelab.errors import ConfigError
from wirelab.packets import scapyenv
from wirelab.packets.options import ToolParser, add_json, bounded, print_json, print_line, require_root

UDP_BASE_PORT = 33434   # traceroute's default (-p): probe n goes to port 33434 + n
TCP_PORT = 80           # traceroute -T's default port
PROTOS = ("udp", "icmp", "tcp")
#: Answers from the destination that end the trace.
DESTINATION_KINDS = ("port-unreachable", "echo-reply", "syn-ack", "rst")
#: traceroute's annotations for ICMP destination-unreachable codes (RFC 792, RFC 1812).
UNREACHABLE_NOTES = {0: "!N", 1: "!H", 2: "!P", 4: "!F", 5: "!S", 9: "!X", 10: "!X", 13: "!X"}
#: Exit code when the destination did not answer: a result, not an error (like ping's 1).
NOT_REACHED_EXIT = 1


@dataclasses.dataclass(frozen=True)
class Answer:
    """What came back for one probe."""

    addr: str
    kind: str             # time-exceeded, port-unreachable, echo-reply, syn-ack, rst, unreachable-<code>
    rtt_ms: float

    @property
    def note(self):
        """traceroute's annotation (``!H``...), or None."""
        if self.kind.startswith("unreachable-"):
            code = int(self.kind.split("-")[1])
            return UNREACHABLE_NOTES.get(code, f"!<{code}>")
        return None

    def ends_trace(self, dst):
        return (self.addr == dst and self.kind in DESTINATION_KINDS) or self.kind.startswith("unreachable-")


@dataclasses.dataclass
class Hop:
    ttl: int
    addr: str | None                  # the address most probes of this TTL were answered from
    probes: list                      # [Answer or None], in the order sent

    @property
    def rtts_ms(self):
        return [None if a is None else round(a.rtt_ms, 3) for a in self.probes]

    def to_dict(self):
        return {"ttl": self.ttl, "addr": self.addr, "rtts_ms": self.rtts_ms,
                "probes": [None if a is None else {"addr": a.addr, "kind": a.kind,
                                                   "rtt_ms": round(a.rtt_ms, 3), "note": a.note}
                           for a in self.probes]}


def assemble_hops(records, dst):
    """``(hops, reached)`` from ``[(ttl, Answer or None)]`` in the order the probes were sent.

    Hops are in TTL order; the list ends at the first TTL with an answer that
    ends the trace (the destination, or an unreachable), later records are
    ignored. ``reached``: the destination itself answered.
    """
    by_ttl = collections.defaultdict(list)
    for ttl, answer in records:
        by_ttl[ttl].append(answer)
    hops = []
    for ttl in sorted(by_ttl):
        probes = by_ttl[ttl]
        votes = collections.Counter(a.addr for a in probes if a is not None)
        hops.append(Hop(ttl, votes.most_common(1)[0][0] if votes else None, probes))
        if any(a is not None and a.ends_trace(dst) for a in probes):
            return hops, any(a is not None and a.addr == dst and a.kind in DESTINATION_KINDS
                             for a in probes)
    return hops, False


def format_hops(hops):
    """Lines as ``traceroute -n`` prints them: `` 2  10.0.1.1  0.101 ms  0.031 ms *``."""
    lines = []
    for hop in hops:
        text, shown = f"{hop.ttl:2d} ", None
        for answer in hop.probes:
            if answer is None:
                text += " *"
                continue
            if answer.addr != shown:
                text += f" {answer.addr}"
                shown = answer.addr
            text += f"  {answer.rtt_ms:.3f} ms"
            if answer.note:
                text += f" {answer.note}"
        lines.append(text)
    return lines


def classify(reply):
    """``(source address, kind)`` of a packet that answered a probe."""
    from scapy.layers.inet import ICMP, IP, TCP
    ip = reply[IP]
    layer = ip.payload
    if type(layer) is ICMP:
        if layer.type == 11:
            return ip.src, "time-exceeded"
        if layer.type == 0:
            return ip.src, "echo-reply"
        if layer.type == 3:
            return ip.src, "port-unreachable" if layer.code == 3 else f"unreachable-{layer.code}"
        return ip.src, f"icmp-{layer.type}"
    if type(layer) is TCP:
        return ip.src, "syn-ack" if layer.flags.S and layer.flags.A else "rst" if layer.flags.R else "tcp"
    return ip.src, layer.name.lower()


def make_probe(proto, dst, ttl, n, sport, port):
    """Probe number ``n`` (from 0) with ``ttl``; each probe differs in what an
    ICMP error quotes back (UDP destination port, echo sequence, TCP source
    port), so every answer is matched to exactly one probe."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    ip = IP(dst=dst, ttl=ttl, id=(sport + n) & 0xFFFF)
    if proto == "udp":
        return ip / UDP(sport=sport, dport=port + n)
    if proto == "icmp":
        return ip / ICMP(id=sport, seq=n + 1)
    return ip / TCP(sport=sport + n, dport=port, flags="S", seq=1000 + n)


@dataclasses.dataclass
class TraceResult:
    dst: str
    proto: str
    hops: list
    reached: bool
    elapsed_s: float

    def to_dict(self, **extra):
        return {"dst": self.dst, "proto": self.proto, **extra, "reached": self.reached,
                "elapsed_s": round(self.elapsed_s, 3), "hops": [h.to_dict() for h in self.hops]}


def trace(dst, proto="udp", queries=3, wait=1.0, max_hops=30, first_ttl=1, port=None, on_hop=None):
    """Trace the path to ``dst`` from the namespace this thread is in.

    ``on_hop(hop)`` is called as each hop completes (for printing as it goes).
    """
    scapyenv.load()
    port = port or (UDP_BASE_PORT if proto == "udp" else TCP_PORT)
    # Source port (UDP, TCP) or echo id (ICMP): distinct per process, so two
    # traces from one host do not take each other's answers.
    sport = 49152 + os.getpid() % 8192
    records, n = [], 0
    started = time.monotonic()
    sock = _socket_towards(dst)
    try:
        for ttl in range(first_ttl, max_hops + 1):
            probes = [make_probe(proto, dst, ttl, n + i, sport, port) for i in range(queries)]
            n += queries
            # chainCC: Ctrl-C ends the trace (scapy would only end this hop's wait)
            answered, _ = sock.sr(probes, timeout=wait, verbose=0, chainCC=True)
            answers = _in_send_order(probes, answered)
            records += [(ttl, a) for a in answers]
            if on_hop:
                on_hop(Hop(ttl, assemble_hops([(ttl, a) for a in answers], dst)[0][0].addr, answers))
            if any(a is not None and a.ends_trace(dst) for a in answers):
                break
    finally:
        sock.close()
    hops, reached = assemble_hops(records, dst)
    return TraceResult(dst, proto, hops, reached, time.monotonic() - started)


def _socket_towards(dst):
    """One layer-3 socket on the interface the route to ``dst`` leaves by (as
    scapy's ``sr`` opens per call), kept for every probe of the trace."""
    from scapy.interfaces import resolve_iface
    from scapy.layers.inet import IP
    iface = resolve_iface(IP(dst=dst).route()[0])
    return iface.l3socket(False)(iface=iface)


def _in_send_order(probes, answered):
    """[Answer or None] per probe, matched by the probe's identifying field."""
    def key(pkt):
        from scapy.layers.inet import ICMP, TCP, UDP
        layer = pkt.payload
        if type(layer) is UDP:
            return ("udp", layer.dport)
        if type(layer) is ICMP:
            return ("icmp", layer.seq)
        if type(layer) is TCP:
            return ("tcp", layer.sport)
        return None
    found = {}
    for sent, reply in answered:
        addr, kind = classify(reply)
        found[key(sent)] = Answer(addr, kind, (float(reply.time) - float(sent.sent_time)) * 1e3)
    return [found.get(key(p)) for p in probes]


def build_parser(prog):
    parser = ToolParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trace the routers on the path to DST with probes of growing TTL, collecting "
        "ICMP time-exceeded from each; the destination's answer ends it. Prints the hops as "
        "'traceroute -n' does (or one JSON line with --json). Exit 0 when the destination "
        "answered, 1 when it did not. Needs root; run it inside an emulated host.",
        epilog="examples:\n  wirelab packet trace 10.0.4.2\n"
               "  wirelab packet trace 10.0.4.2 --proto tcp -p 5001 -q 1 -w 0.5 --json")
    parser.add_argument("dst", metavar="DST", help="destination IPv4 address")
    parser.add_argument("--proto", "-P", choices=PROTOS, default="udp",
                        help="probe kind: udp (default, as traceroute), icmp (echo, as traceroute -I), "
                             "tcp (SYN, as traceroute -T)")
    parser.add_argument("-q", "--queries", type=bounded(int, 1, 10, "probes per hop"), default=3,
                        help="probes per hop (default 3)")
    parser.add_argument("-w", "--wait", type=bounded(float, 0.05, 10.0, "seconds"), default=1.0,
                        help="seconds to wait for a hop's answers (default 1)")
    parser.add_argument("-m", "--max-hops", type=bounded(int, 1, 255, "hops"), default=30,
                        help="largest TTL probed (default 30)")
    parser.add_argument("-f", "--first-ttl", type=bounded(int, 1, 255, "TTL"), default=1,
                        help="first TTL probed (default 1)")
    parser.add_argument("-p", "--port", type=bounded(int, 1, 65535, "port"),
                        help=f"UDP: first destination port (default {UDP_BASE_PORT}, +1 per probe); "
                             f"TCP: the destination port (default {TCP_PORT})")
    add_json(parser)
    return parser


def main(argv, prog="wirelab packet trace"):
    args = build_parser(prog).parse_args(argv)
    try:
        if ipaddress.ip_address(args.dst).version != 4:
            raise ValueError
    except ValueError:
        raise ConfigError(f"destination {args.dst!r} is not an IPv4 address "
                          "(names are not resolved: probes stay in the emulated network)") from None
    if args.first_ttl > args.max_hops:
        raise ConfigError(f"first TTL {args.first_ttl} is beyond --max-hops {args.max_hops}")
    require_root("tracing with crafted probes")
    if not args.json:
        print_line(f"traceroute to {args.dst} ({args.dst}), {args.max_hops} hops max, "
                   f"{args.proto} probes (scapy)")
    on_hop = None if args.json else (lambda hop: print_line(format_hops([hop])[0]))
    result = trace(args.dst, args.proto, args.queries, args.wait, args.max_hops, args.first_ttl,
                   args.port, on_hop)
    if args.json:
        print_json(result.to_dict(queries=args.queries, wait_s=args.wait, max_hops=args.max_hops))
    return 0 if result.reached else NOT_REACHED_EXIT
