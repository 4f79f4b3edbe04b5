"""``wirelab packet handshake``: a TCP client made by hand with scapy.

    python -m wirelab.packets.handshake --to 10.0.2.2 --port 5001 --bytes 100000 --json

Against any listening kernel socket (e.g. ``python -m wirelab.apps.tcpflow
serve``): SYN, SYN-ACK, ACK; the payload in segments of at most the peer's MSS
(``--mss`` for smaller) with the tool's own sequence numbers; cumulative ACKs,
the peer's window, retransmission on timeout and on three duplicate ACKs
(:mod:`wirelab.packets.tcpsender`); FIN, and an ACK for the server's FIN.

::

    client (this process, scapy)                  server (kernel socket)
    sniffer started ------------------------------------------------
    SYN  seq=ISN, MSS ------------------------------>
         <-------------------------------- SYN-ACK  (kernel: RST! -> dropped)
    ACK, data ... FIN ------------------------------>
         <-------------------------------- ACKs ... FIN
    ACK -------------------------------------------->

The kernel of this host has no socket for the connection and answers each
server segment with a RST; :class:`~wirelab.packets.rstguard.RstGuard` drops
those RSTs for this flow only, in a table owned by this process, created before
the SYN and deleted (and checked gone) on every exit, SIGTERM and Ctrl-C
included. The source port is one of the ephemeral range that no local socket
holds; a bound socket keeps it reserved while the tool runs.

Output: one JSON object with ``--json`` (else a few lines of text): bytes,
segments, retransmissions (time, segment, reason), RTT samples, ISNs, the
final state and the guard. ``--log``: one line per segment sent or received,
on stderr.
"""

import hashlib
import json
import os
import queue
import random
import socket
import sys
import time

from wirelab.errors import ConfigError, NotRootError, WaitTimeout, WirelabError
from wirelab.net.testbed import signals_blocked, signals_raise
from wirelab.packets.options import ToolParser, bounded, print_json, print_line
from wirelab.packets.rstguard import BACKENDS, Flow, RstGuard
from wirelab.packets.tcpsender import SEQ_MOD, Sender, seq_add, seq_diff
from wirelab.proc import run

#: Our receive window; no window-scale option is sent, so it is also the largest.
RECEIVE_WINDOW = 65535
#: RFC 6298 2.1 / RFC 6298 5.7: SYN retransmission starts at 1 s and doubles.
SYN_RTO_S = 1.0
#: RFC 9293 3.7.1: the MSS to assume when the SYN-ACK carries none.
DEFAULT_PEER_MSS = 536
#: RTT samples listed in the JSON (one per ACK: a long transfer would list thousands).
MAX_RTT_SAMPLES = 1000
#: IPv4 and TCP headers without options.
HEADERS = 40


class ConnectionFailed(WirelabError):
    """The peer refused or reset the connection, or never completed it."""

    exit_code = 6


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    with open(path) as f:
        low, high = (int(x) for x in f.read().split())
    return low, high


def reserve_port(src, port=None, tries=64):
    """A TCP socket bound to (src, port): no local socket holds the port, and
    while this one is open the kernel hands it to no one else. ``port=None``:
    a random one from the ephemeral range."""
    low, high = ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(1 if port else tries):
        candidate = port or rng.randint(low, high)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((src, candidate))
            return sock
        except OSError as exc:
            sock.close()
            if port:
                raise ConfigError(f"--sport {port}: {exc.strerror} on {src}") from None
    raise ConfigError(f"no free port in {low}-{high} after {tries} tries")


def route_to(dst):
    """(source address, interface, MTU) of the kernel's route to ``dst``."""
    got = json.loads(run(None, ["ip", "-j", "route", "get", dst], 5).stdout)[0]
    link = json.loads(run(None, ["ip", "-j", "link", "show", "dev", got["dev"]], 5).stdout)[0]
    route_mtus = [m["mtu"] for m in got.get("metrics", []) if "mtu" in m]   # a PMTU learnt
    return got["prefsrc"], got["dev"], min([link["mtu"], *route_mtus])


class Client:
    """The connection: handshake, transfer through a :class:`Sender`, close.

    ``sock``: a scapy L3 socket; ``rx``: a queue the sniffer fills with the
    flow's packets from the server; ``log``: a callable for --log lines or None."""

    def __init__(self, flow, data, sock, rx, mss=None, isn=None, min_rto=None, log=None):
        self.flow, self.data, self.sock, self.rx = flow, data, sock, rx
        self.want_mss, self.log = mss, log
        self.isn = random.SystemRandom().randrange(SEQ_MOD) if isn is None else isn
        self.min_rto = min_rto
        self.irs = self.rcv_nxt = None
        self.sender = None
        self.ip_id = random.randrange(1 << 16)
        self.t0 = None
        self.packets_sent = 0
        self.syn_retransmissions = []
        self.received = 0
        self.server_fin = False
        self.acks = {"new": 0, "dup": 0, "same": 0, "old": 0, "invalid": 0}
        self.times = {}
        self.advertised_mss = None
        self.peer_mss = None

    def now(self):
        return time.monotonic() - self.t0

    # -- wire ------------------------------------------------------------------
    def send(self, flags, seq, ack=0, payload=b"", options=(), reason=""):
        from scapy.layers.inet import IP, TCP
        pkt = IP(src=self.flow.src, dst=self.flow.dst, flags="DF", id=self.ip_id) / TCP(
            sport=self.flow.sport, dport=self.flow.dport, seq=seq, ack=ack, flags=flags,
            window=RECEIVE_WINDOW, options=list(options))
        if payload:
            pkt = pkt / payload
        self.ip_id = (self.ip_id + 1) % (1 << 16)
        self.sock.send(pkt)
        self.packets_sent += 1
        if self.log:
            rel_ack = seq_diff(ack, self.irs) if self.irs is not None and "A" in flags else "-"
            self.log(f"{self.now():10.6f} > {flags:<3} seq={seq_diff(seq, self.isn)} "
                     f"ack={rel_ack} len={len(payload)}" + (f" [{reason}]" if reason else ""))

    def receive(self, deadline):
        """The next packet from the server, or None when ``deadline`` (monotonic) passes."""
        wait = deadline - time.monotonic()
        try:
            pkt = self.rx.get(timeout=max(wait, 0)) if wait > 0 else self.rx.get_nowait()
        except queue.Empty:
            return None
        tcp = pkt["TCP"]
        if self.log:
            base = self.irs if self.irs is not None else tcp.seq
            self.log(f"{self.now():10.6f} < {str(tcp.flags):<3} seq={seq_diff(tcp.seq, base)} "
                     f"ack={seq_diff(tcp.ack, self.isn)} len={len(tcp.payload)} win={tcp.window}")
        return tcp

    # -- phases ----------------------------------------------------------------
    def connect(self, deadline, our_mss):
        self.advertised_mss = our_mss
        self.t0 = time.monotonic()
        rto, sent_at = SYN_RTO_S, 0.0
        self.send("S", self.isn, options=[("MSS", our_mss)])
        while True:
            tcp = self.receive(min(deadline, self.t0 + sent_at + rto))
            if tcp is None:
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"no SYN-ACK from {self.flow.dst}:{self.flow.dport} "
                                      f"after {len(self.syn_retransmissions) + 1} SYNs")
                sent_at, rto = self.now(), rto * 2
                self.syn_retransmissions.append({"time": sent_at, "segment": 0, "reason": "syn_rto"})
                self.send("S", self.isn, options=[("MSS", our_mss)], reason="syn_rto")
                continue
            if tcp.ack != seq_add(self.isn, 1):
                continue   # an old connection's segment: not ours
            if "R" in tcp.flags:
                raise ConnectionFailed(f"{self.flow.dst}:{self.flow.dport} refused the connection (RST)")
            if "S" in tcp.flags and "A" in tcp.flags:
                break
        synack_at = self.now()
        self.irs, self.rcv_nxt = tcp.seq, seq_add(tcp.seq, 1)
        self.peer_mss = dict((k, v) for k, v in tcp.options if isinstance(k, str)).get(
            "MSS", DEFAULT_PEER_MSS)
        seg = min(self.peer_mss, self.want_mss or self.peer_mss)
        kwargs = {"min_rto": self.min_rto} if self.min_rto is not None else {}
        self.sender = Sender(len(self.data), self.isn, seg, tcp.window, synack_at, **kwargs)
        if not self.syn_retransmissions:   # Karn: only a SYN sent once times the RTT
            self.sender.add_rtt_sample(synack_at, synack_at)
        self.send("A", seq_add(self.isn, 1), self.rcv_nxt)
        self.times["handshake"] = synack_at

    def transfer(self, deadline):
        """Send the data and the FIN; return when both FINs are acknowledged."""
        s = self.sender
        first = True
        while not (s.finished and self.server_fin):
            now = self.now()
            for seg in s.poll(now):
                self._send_segment(seg)
                if first and seg.length:
                    self.times["first_data"], first = now, False
            timer = s.deadline()
            until = deadline if timer is None else min(deadline, self.t0 + timer)
            tcp = self.receive(until)
            while tcp is not None:
                self._on_segment(tcp)
                tcp = self.receive(0)   # drain what is queued before sending more
            if s.una >= s.data_len and "all_data_acked" not in self.times:
                self.times["all_data_acked"] = self.now()
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"connection not closed before the deadline (state {self.state()}, "
                                  f"{s.una} of {s.data_len} bytes acknowledged)")
        self.times["closed"] = self.now()

    def _send_segment(self, seg):
        payload = self.data[seg.offset:seg.offset + seg.length]
        flags = "A" + ("P" if seg.length and seg.offset + seg.length == len(self.data) else "") \
            + ("F" if seg.fin else "")
        self.send(flags, seg.seq, self.rcv_nxt, payload,
                  reason="" if seg.reason == "new" else seg.reason)

    def _on_segment(self, tcp):
        if "R" in tcp.flags:
            raise ConnectionFailed(f"{self.flow.dst}:{self.flow.dport} reset the connection "
                                   f"(state {self.state()}, {self.sender.una} bytes acknowledged)")
        if "S" in tcp.flags:   # SYN-ACK again: our ACK was lost
            self.send("A", self.sender.seq_of(self.sender.nxt), self.rcv_nxt)
            return
        length = len(tcp.payload) + (1 if "F" in tcp.flags else 0)
        if "A" in tcp.flags:
            verdict = self.sender.on_ack(tcp.ack, tcp.window, self.now(), carries_data=length > 0)
            self.acks[verdict] += 1
        if not length:
            return
        if tcp.seq == self.rcv_nxt:
            self.received += len(tcp.payload)
            self.server_fin |= "F" in tcp.flags
            self.rcv_nxt = seq_add(self.rcv_nxt, length)
        # In order or not (a retransmitted FIN), say what we have.
        self.send("A", self.sender.seq_of(min(self.sender.nxt, self.sender.data_len + 1)), self.rcv_nxt)

    def abort(self):
        """Reset the server's side of an unfinished connection (best effort)."""
        if self.sender is not None and not (self.sender.finished and self.server_fin):
            try:
                self.send("R", self.sender.seq_of(self.sender.nxt), reason="abort")
            except OSError:
                pass   # the original error matters more; the server times out alone

    def state(self):
        s = self.sender
        if s is None:
            return "SYN_SENT"
        if s.nxt <= s.data_len:
            return "CLOSE_WAIT" if self.server_fin else "ESTABLISHED"
        if not s.finished:
            return "CLOSING" if self.server_fin else "FIN_WAIT_1"
        return "TIME_WAIT" if self.server_fin else "FIN_WAIT_2"

    def report(self):
        s = self.sender
        data_sent = -(-len(self.data) // s.seg_size) if s else 0
        retrans = [{"time": round(t, 6), "segment": seg.index, "offset": seg.offset,
                    "seq": seg.seq, "length": seg.length, "fin": seg.fin, "reason": seg.reason}
                   for t, seg in (s.retransmissions if s else [])]
        return {
            "flow": {"src": self.flow.src, "sport": self.flow.sport,
                     "dst": self.flow.dst, "dport": self.flow.dport},
            "isn": {"client": self.isn, "server": self.irs},
            "mss": {"advertised": self.advertised_mss, "peer": self.peer_mss,
                    "segment_size": s.seg_size if s else None},
            "bytes_sent": min(s.una, s.data_len) if s else 0,   # acknowledged
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "segments": {"data": data_sent,
                         "data_transmissions": data_sent + sum(1 for r in retrans if r["length"]),
                         "packets_sent": self.packets_sent},
            "retransmissions": self.syn_retransmissions + retrans,
            "acks": dict(self.acks),
            "rtt_samples": [{"time": round(t, 6), "rtt": round(r, 6)}
                            for t, r in (s.rtt_samples[:MAX_RTT_SAMPLES] if s else [])],
            "rtt_sample_count": len(s.rtt_samples) if s else 0,
            "srtt": s.srtt if s else None, "rto": s.rto if s else None,
            "received": {"bytes": self.received, "fin": self.server_fin},
            "times": {k: round(v, 6) for k, v in self.times.items()},
            "state": self.state(),
        }


def run_client(args, log=None):
    """Do the whole connection; the report (a dict for JSON)."""
    if os.geteuid() != 0:
        raise NotRootError("the handmade TCP client needs root (raw sockets, nftables); "
                           "run it inside an emulated host or with sudo")
    data = args.data.encode() if args.data is not None else _payload(args.seed, args.bytes)
    src, iface, mtu = route_to(args.to)
    with signals_raise():
        reservation = reserve_port(src, args.sport)
        try:
            flow = Flow(src, reservation.getsockname()[1], args.to, args.port)
            guard = RstGuard(flow, args.rst_guard)
            try:
                with signals_blocked():   # a signal now would leave the table half made
                    guard.install()
                result = _connect_and_send(args, flow, iface, mtu, data, log)
            finally:
                with signals_blocked():
                    guard.remove()
            result["rst_guard"] = guard.to_dict()
            return result
        finally:
            reservation.close()


def _connect_and_send(args, flow, iface, mtu, data, log):
    from wirelab.packets import scapyenv
    from wirelab.packets.sniff import Sniffer
    conf = scapyenv.load()
    from scapy.layers.l2 import getmacbyip
    rx = queue.Queue()
    bpf = (f"tcp and src host {flow.dst} and src port {flow.dport} "
           f"and dst host {flow.src} and dst port {flow.sport}")
    deadline = time.monotonic() + args.timeout
    # Resolve the next hop's MAC before the clock starts (scapy would ARP on the first send).
    nexthop = conf.route.route(flow.dst)[2]
    if getmacbyip(flow.dst if nexthop == "0.0.0.0" else nexthop) is None:
        raise ConnectionFailed(f"no ARP reply from the next hop toward {flow.dst} on {iface}")
    sock = conf.L3socket(iface=iface, promisc=False, filter=bpf)
    try:
        with Sniffer(iface=iface, bpf=bpf, on_packet=rx.put):
            client = Client(flow, data, sock, rx, mss=args.mss, isn=args.isn,
                            min_rto=args.min_rto, log=log)
            try:
                client.connect(deadline, mtu - HEADERS)
                client.transfer(deadline)
            except BaseException:
                client.abort()
                raise
            return client.report()
    finally:
        sock.close()


def _payload(seed, nbytes):
    from wirelab.apps.tcpflow import payload_chunks
    return b"".join(payload_chunks(seed, nbytes))


def build_parser(prog):
    p = ToolParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                   epilog="Needs root (raw sockets, nftables). Run it inside an emulated host.")
    p.add_argument("--to", required=True, help="server IPv4 address")
    p.add_argument("--port", required=True, type=bounded(int, 1, 65535, "port"))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--bytes", type=bounded(int, 0, 1 << 30, "bytes"),
                      help="send this many bytes of tcpflow's payload for --seed")
    what.add_argument("--data", help="send this text (UTF-8)")
    p.add_argument("--seed", type=int, default=1, help="payload seed (as tcpflow send; default 1)")
    p.add_argument("--mss", type=bounded(int, 1, 65495, "segment payload"),
                   help="largest payload per segment (default: the peer's MSS; never above it)")
    p.add_argument("--timeout", type=bounded(float, 0.1, 3600, "seconds"), default=30.0,
                   help="deadline for the whole connection (default 30 s)")
    p.add_argument("--sport", type=bounded(int, 1, 65535, "port"),
                   help="source port (default: a free one of the ephemeral range)")
    p.add_argument("--isn", type=bounded(int, 0, SEQ_MOD - 1, "sequence number"),
                   help="initial sequence number (default: random)")
    p.add_argument("--min-rto", type=bounded(float, 0.001, 60, "seconds"), default=None,
                   help="floor of the retransmission timeout (default 0.2 s, as Linux)")
    p.add_argument("--rst-guard", choices=BACKENDS, default="auto",
                   help="how the kernel's RSTs are dropped (default: nft, else iptables-legacy)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--log", action="store_true", help="one line per segment sent/received, on stderr")
    return p


def main(argv=None, prog="wirelab packet handshake"):
    args = build_parser(prog).parse_args(argv)
    try:
        socket.inet_pton(socket.AF_INET, args.to)
    except OSError:
        raise ConfigError(f"--to {args.to!r}: an IPv4 address") from None
    log = (lambda line: print_line(line, sys.stderr)) if args.log else None
    result = run_client(args, log)
    if args.json:
        print_json(result)
    else:
        r = result
        print_line(f"{r['bytes_sent']} bytes to {args.to}:{args.port} in {r['segments']['data']} "
                   f"segments of <= {r['mss']['segment_size']} B; "
                   f"{len(r['retransmissions'])} retransmissions; state {r['state']}")
        for rt in r["retransmissions"]:
            print_line(f"  retransmitted segment {rt['segment']} at {rt['time']:.3f}s ({rt['reason']})")
        print_line(f"  rst guard: {r['rst_guard']['backend']} {r['rst_guard']['name']}, "
                   f"{r['rst_guard']['rsts_suppressed']} RSTs dropped, removed")
    return 0


if __name__ == "__main__":
    from wirelab.cli import main_guard
    sys.exit(main_guard(lambda: main(sys.argv[1:]), "wirelab packet handshake"))
