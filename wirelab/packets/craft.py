"""``wirelab packet craft``: one packet with the fields you choose, and its reply.

:class:`CraftSpec` is the packet as values (validated: a one-line error before
anything is sent), :func:`build` turns it into a scapy packet (pure: fields
left unset -- lengths, checksums -- are computed by scapy when it is turned
into bytes), :func:`exchange` sends it and waits for the reply that answers it
(scapy's ``sr``: an echo-reply with our id and sequence, a TCP segment to our
port acknowledging our sequence number, an ICMP error quoting our packet).
"""

import argparse
import dataclasses
import ipaddress
import os
import random

from wirelab.errors import ConfigError
from wirelab.packets import scapyenv
from wirelab.packets.describe import Describer
from wirelab.packets.options import ToolParser, add_json, bounded, print_json, print_line, require_root

PROTOS = ("icmp", "udp", "tcp", "ip")
#: A round number, easy to spot in the reply: a SYN-ACK acknowledges 1001.
DEFAULT_SEQ = 1000
#: RFC 3692's protocol number for experiments: no host runs it, so a kernel
#: answers a bare IP packet with ICMP "protocol unreachable".
EXPERIMENTAL_PROTO = 253
#: ping's payload is bytes counting up; so is ours (easy to read in a hexdump).
PAYLOAD_PATTERN = bytes(range(256))
#: Exit code when nothing answered: like ping (1), a result, not an error.
NO_REPLY_EXIT = 1
TCP_FLAG_LETTERS = "FSRPAUEC"


@dataclasses.dataclass(frozen=True)
class CraftSpec:
    """One packet's chosen fields; the rest are scapy's (and the kernel's) defaults."""

    dst: str
    proto: str = "icmp"
    src: str | None = None         # default: the address of the interface the route leaves by
    ttl: int = 64
    df: bool = False
    ip_id: int = 1
    tos: int = 0
    sport: int = 40000
    dport: int | None = None       # default: 80 for TCP, 33434 (traceroute's first) for UDP
    flags: str = "S"               # TCP flags as letters: S, SA, PA, F, R ...
    seq: int = DEFAULT_SEQ
    ack: int = 0
    window: int = 64240
    icmp_type: int = 8             # echo-request
    icmp_code: int = 0
    icmp_id: int = 1
    icmp_seq: int = 1
    ip_proto: int = EXPERIMENTAL_PROTO
    payload: bytes = b""

    def __post_init__(self):
        for what, value in (("destination", self.dst), ("source", self.src)):
            if value is None:
                continue
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise ConfigError(f"{what} {value!r} is not an IPv4 address (names are not "
                                  "resolved: packets stay in the emulated network)") from None
            if address.version != 4:
                raise ConfigError(f"{what} {value}: only IPv4 is crafted")
        if self.proto not in PROTOS:
            raise ConfigError(f"protocol {self.proto!r}: choose from {', '.join(PROTOS)}")
        bad = set(self.flags.upper()) - set(TCP_FLAG_LETTERS)
        if bad:
            raise ConfigError(f"TCP flags {self.flags!r}: unknown letters {''.join(sorted(bad))} "
                              f"(use {TCP_FLAG_LETTERS})")
        if len(self.payload) > 65535 - 60:
            raise ConfigError(f"payload of {len(self.payload)} bytes does not fit in one IP packet")


def payload_of(text=None, size=None):
    """The payload: ``text`` as UTF-8, or ``size`` bytes of the counting pattern."""
    if text is not None and size is not None:
        raise ConfigError("give --payload or --size, not both")
    if text is not None:
        return text.encode()
    if size:
        return (PAYLOAD_PATTERN * (size // len(PAYLOAD_PATTERN) + 1))[:size]
    return b""


def build(spec):
    """The scapy packet for ``spec`` (lengths and checksums left to scapy)."""
    scapyenv.load()
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw
    ip = IP(dst=spec.dst, ttl=spec.ttl, id=spec.ip_id, tos=spec.tos, flags="DF" if spec.df else 0)
    if spec.src is not None:
        ip.src = spec.src
    if spec.proto == "icmp":
        pkt = ip / ICMP(type=spec.icmp_type, code=spec.icmp_code, id=spec.icmp_id, seq=spec.icmp_seq)
    elif spec.proto == "udp":
        pkt = ip / UDP(sport=spec.sport, dport=33434 if spec.dport is None else spec.dport)
    elif spec.proto == "tcp":
        pkt = ip / TCP(sport=spec.sport, dport=80 if spec.dport is None else spec.dport,
                       flags=spec.flags.upper(), seq=spec.seq, ack=spec.ack, window=spec.window)
    else:
        ip.proto = spec.ip_proto
        pkt = ip
    return pkt / Raw(spec.payload) if spec.payload else pkt


def match_reason(request, reply):
    """Why ``reply`` answers ``request``, in words (what scapy's ``answers`` checked)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    ip = reply[IP]
    layer = ip.payload
    if type(layer) is ICMP and layer.type in (3, 4, 5, 11, 12):
        quoted = layer.payload
        return (f"ICMP error from {ip.src} quoting our packet (IP id {quoted.id}, "
                f"TTL left {quoted.ttl})")
    if type(layer) is ICMP:
        return f"echo-reply from {ip.src} with our id {layer.id} and sequence {layer.seq}"
    if type(layer) is TCP:
        sent = request[TCP]
        what = "SYN-ACK" if layer.flags.S and layer.flags.A else "RST" if layer.flags.R else f"[{layer.flags}]"
        step = (layer.ack - sent.seq) % (1 << 32)
        return (f"TCP {what} from {ip.src}:{layer.sport} to our port {layer.dport}, "
                f"acknowledging our sequence number + {step}")
    if type(layer) is UDP:
        return f"UDP from {ip.src}:{layer.sport} to our port {layer.dport}"
    return f"{layer.name} from {ip.src}"


@dataclasses.dataclass
class Exchange:
    request: object       # the packet as sent (every computed field filled in)
    reply: object | None
    rtt_ms: float | None
    timeout_s: float


def exchange(spec, timeout):
    """Send ``spec``'s packet once and wait up to ``timeout`` s for its reply."""
    scapyenv.load()
    from scapy.sendrecv import sr
    pkt = build(spec)
    answered, _ = sr(pkt, timeout=timeout, verbose=0, chainCC=True)   # Ctrl-C is not a timeout
    if answered:
        sent, reply = answered[0]
        request = sent.__class__(bytes(sent))
        request.time = sent.sent_time
        return Exchange(request, reply, (float(reply.time) - float(sent.sent_time)) * 1e3, timeout)
    request = pkt.__class__(bytes(pkt))
    request.time = getattr(pkt, "sent_time", None) or 0.0
    return Exchange(request, None, None, timeout)


def record(result, describer, with_hex=False):
    """The JSON object of an exchange."""
    from scapy.utils import hexdump
    out = {"request": describer(result.request).to_dict(), "reply": None, "rtt_ms": None,
           "matched": None, "result": f"no reply within {result.timeout_s:g} s"}
    if result.reply is not None:
        out.update(reply=describer(result.reply).to_dict(), rtt_ms=round(result.rtt_ms, 3),
                   matched=match_reason(result.request, result.reply), result="reply")
    if with_hex:
        out["request_hex"] = hexdump(result.request, dump=True)
        out["reply_hex"] = hexdump(result.reply, dump=True) if result.reply is not None else None
    return out


def build_parser(prog):
    parser = ToolParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build one IP packet with the fields you choose (ICMP, UDP, TCP or bare IP), "
        "send it, and show the reply matched to it: both packets' fields and the round-trip time. "
        "No reply within --timeout is a result: it is said, and the exit code is 1. Needs root; "
        "run it inside an emulated host ('h1 wirelab packet craft ...' in Mininet's CLI).",
        epilog="examples:\n  wirelab packet craft 10.0.2.2                         # ping\n"
               "  wirelab packet craft 10.0.2.2 --proto tcp --dport 5001  # SYN: SYN-ACK or RST\n"
               "  wirelab packet craft 10.0.2.2 --proto udp --ttl 1     # time-exceeded from the first router\n"
               "  wirelab packet craft 10.0.2.2 --df --size 1472 --hex  # a full-size ping, DF set")
    parser.add_argument("dst", metavar="DST", help="destination IPv4 address")
    parser.add_argument("--proto", choices=PROTOS, default="icmp", help="what follows the IP header (default: icmp)")
    ip = parser.add_argument_group("IP header")
    ip.add_argument("--src", metavar="ADDR",
                    help="source address (default: that of the interface the route leaves by)")
    ip.add_argument("--ttl", type=bounded(int, 0, 255, "TTL"), default=64, help="time to live (default 64)")
    ip.add_argument("--df", action="store_true", help="set Don't Fragment")
    ip.add_argument("--ip-id", type=bounded(int, 0, 65535, "IP ID"), default=1, help="identification (default 1)")
    ip.add_argument("--tos", type=bounded(int, 0, 255, "TOS"), default=0, help="type of service / DSCP+ECN byte")
    ip.add_argument("--ip-proto", type=bounded(int, 0, 255, "protocol number"), default=EXPERIMENTAL_PROTO,
                    help=f"protocol number for --proto ip (default {EXPERIMENTAL_PROTO}, experimental)")
    ports = parser.add_argument_group("UDP and TCP")
    ports.add_argument("--sport", type=bounded(int, 1, 65535, "port"),
                       help="source port (default: a random one from 49152-65535)")
    ports.add_argument("--dport", type=bounded(int, 1, 65535, "port"),
                       help="destination port (default: 80 for TCP, 33434 for UDP)")
    tcp = parser.add_argument_group("TCP")
    tcp.add_argument("--flags", default="S", help="flags as letters F S R P A U E C (default S)")
    tcp.add_argument("--seq", type=bounded(int, 0, 2**32 - 1, "sequence number"), default=DEFAULT_SEQ,
                     help=f"sequence number (default {DEFAULT_SEQ})")
    tcp.add_argument("--ack", type=bounded(int, 0, 2**32 - 1, "acknowledgment number"), default=0,
                     help="acknowledgment number (default 0)")
    tcp.add_argument("--window", type=bounded(int, 0, 65535, "window"), default=64240, help="window (default 64240)")
    icmp = parser.add_argument_group("ICMP")
    icmp.add_argument("--icmp-type", type=bounded(int, 0, 255, "ICMP type"), default=8, help="type (default 8, echo-request)")
    icmp.add_argument("--icmp-code", type=bounded(int, 0, 255, "ICMP code"), default=0, help="code (default 0)")
    icmp.add_argument("--icmp-id", type=bounded(int, 0, 65535, "ICMP id"), help="echo id (default: this process id)")
    icmp.add_argument("--icmp-seq", type=bounded(int, 0, 65535, "ICMP sequence"), default=1, help="echo sequence (default 1)")
    data = parser.add_argument_group("payload").add_mutually_exclusive_group()
    data.add_argument("--payload", metavar="TEXT", help="payload text (UTF-8)")
    data.add_argument("--size", type=bounded(int, 0, 65475, "payload bytes"),
                      help="payload of SIZE bytes counting up 00 01 02 ... (as ping's)")
    parser.add_argument("--timeout", type=bounded(float, 0.01, 60.0, "seconds"), default=2.0,
                        help="seconds to wait for the reply (default 2)")
    parser.add_argument("--hex", action="store_true", help="also show both packets as hexdumps")
    add_json(parser)
    return parser


def main(argv, prog="wirelab packet craft"):
    args = build_parser(prog).parse_args(argv)
    spec = CraftSpec(
        dst=args.dst, src=args.src, proto=args.proto, ttl=args.ttl, df=args.df, ip_id=args.ip_id, tos=args.tos,
        sport=args.sport or random.randint(49152, 65535), dport=args.dport, flags=args.flags,
        seq=args.seq, ack=args.ack, window=args.window, icmp_type=args.icmp_type,
        icmp_code=args.icmp_code, icmp_id=os.getpid() & 0xFFFF if args.icmp_id is None else args.icmp_id,
        icmp_seq=args.icmp_seq, ip_proto=args.ip_proto, payload=payload_of(args.payload, args.size))
    require_root("sending a crafted packet")
    result = exchange(spec, args.timeout)
    out = record(result, Describer(), args.hex)
    if args.json:
        print_json(out)
    else:
        lines = [f"sent   {_fields(out['request'])}"]
        if args.hex:
            lines.append(out["request_hex"])
        if result.reply is None:
            lines.append(f"reply  none: {out['result']}")
        else:
            lines.append(f"reply  {_fields(out['reply'])}")
            if args.hex:
                lines.append(out["reply_hex"])
            lines.append(f"match  {out['matched']}; rtt {out['rtt_ms']:.3f} ms")
        for line in lines:
            print_line(line)
    return 0 if result.reply is not None else NO_REPLY_EXIT


def _fields(fields):
    from wirelab.packets.describe import PacketLine
    return PacketLine(**fields).human(absolute=True)   # the numbers chosen, as sent
