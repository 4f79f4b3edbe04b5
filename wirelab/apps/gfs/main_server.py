"""The main server: receives heartbeats, judges each chunkserver alive or dead.

Run inside a node::

    python -m wirelab.apps.gfs.main_server --bind 10.1.0.2 --port 7000 --interval 0.1 \\
        --k 3 --log server.jsonl

It binds UDP (and TCP, same port: heartbeats as JSON lines, to compare),
prints ``LISTENING <addr> <port>`` (the house protocol,
:mod:`wirelab.apps.runner`), serves until SIGTERM / SIGINT or ``--duration``,
then prints one JSON summary line.

Receiving: anything that is not a heartbeat (malformed JSON, not an object,
an unknown ``message_type``, a missing or mistyped field, more than
``protocol.MAX_MESSAGE_BYTES``) is logged as ``dropped`` with the reason and
skipped; the server keeps serving. Each datagram's arrival time is the
kernel's receive timestamp (SO_TIMESTAMPNS), so a server that was slow to
read does not mistake its own delay for the chunkserver's silence.

Per chunkserver, every valid heartbeat is logged (``recv``) and classified
from its sequence number (:mod:`wirelab.apps.gfs.sequence`): only a *fresh*
one (above every number seen) is news; a duplicate or an overtaken one says
nothing newer, so it does not feed the detectors. Two detectors judge the
same arrivals side by side (:mod:`wirelab.apps.detectors`): ``fixed_k`` (dead
after ``k`` missed intervals, with half an interval of grace for the k-th
heartbeat's own jitter) and ``phi`` (phi accrual, Akka's parameters). Both
are evaluated on every arrival (first at the arrival time, so a deadline
that passed between two checks is still seen, then after the heartbeat) and
on a check tick every ``--check-every`` seconds (default interval / 10);
every change of state is logged (``state``: detector, dead/alive, phi, the
silence, the last sequence number and its arrival, the phi statistics).
"""

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time

if not __package__:   # run as a file inside a node: put the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from wirelab.apps.detectors import FIXED, PHI, FixedTimeoutDetector, PhiAccrualDetector  # noqa: E402
from wirelab.apps.gfs import protocol  # noqa: E402
from wirelab.apps.gfs.sequence import FRESH, SequenceTracker  # noqa: E402
from wirelab.apps.gfs.stopper import StopSignals  # noqa: E402

READY_PREFIX = "LISTENING"
# asm-generic/socket.h SO_TIMESTAMPNS (the old, 64-bit-timespec one on x86_64)
# and linux/in.h IP_PKTINFO: Python's socket module names neither.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
# Any UDP payload fits: an oversize one is read whole and measured, then dropped.
RECV_BUFFER = 65536
# Heartbeats queue in the socket while the server is busy; 4 MiB holds ~20000.
RCVBUF_BYTES = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# Bounded tables: junk names or connections cannot grow them without limit.
MAX_CHUNKSERVERS = 1024
MAX_CONNECTIONS = 64


class Monitor:
    """One chunkserver: its sequence numbers and its two detectors."""

    def __init__(self, name, detectors):
        self.name = name
        self.tracker = SequenceTracker()
        self.detectors = detectors
        self.available = {d: True for d in detectors}
        self.deaths = {d: 0 for d in detectors}
        self.last_arrival = None    # wall time of the last fresh heartbeat
        self.last_seq = None        # and its sequence number
        self.prev_eval = None       # wall time the detectors were last judged
        self.arrivals = 0
        self.transports = set()


class MainServer:
    """The receiving logic, without sockets: fed bytes and times, writes the log.

    Times are wall-clock seconds (``time.time()``), the clock of the
    kernel's receive stamps and of the log: the detectors judge with the very
    numbers the log shows, so verify can check each decision to the
    microsecond. (Converting between a monotonic and the wall clock would
    need two readings, and a preemption between them -- milliseconds in a
    busy guest -- would shift every decision. Nothing steps the clock of a
    testbed in a minute's run; a slew is below 0.05 %.)"""

    def __init__(self, log, interval, k=3, grace=None, phi_threshold=8.0, min_std=0.1,
                 acceptable_pause=0.0, first_estimate=None, max_samples=1000):
        self.log = log
        self.interval, self.k = interval, k
        self.grace = interval / 2 if grace is None else grace
        self.phi_args = {"threshold": phi_threshold, "min_std": min_std, "acceptable_pause": acceptable_pause,
                         "first_estimate": first_estimate or interval, "max_sample_size": max_samples}
        FixedTimeoutDetector(k, interval, self.grace)     # validate once, here
        PhiAccrualDetector(**self.phi_args)
        self.monitors = {}
        self.dropped = {}
        self.last_eval = float("-inf")

    def _monitor(self, name):
        mon = self.monitors.get(name)
        if mon is None and len(self.monitors) < MAX_CHUNKSERVERS:
            mon = self.monitors[name] = Monitor(name, {
                FIXED: FixedTimeoutDetector(self.k, self.interval, self.grace),
                PHI: PhiAccrualDetector(**self.phi_args)})
        return mon

    def drop(self, t_wall, transport, src, dst, reason, nbytes):
        key = reason.split(":")[0]
        self.dropped[key] = self.dropped.get(key, 0) + 1
        self.log.write(t_wall, "dropped", transport=transport, src=list(src), dst=list(dst),
                       reason=reason, bytes=nbytes)

    def receive(self, data, transport, src, dst, t_wall):
        """One datagram (or TCP line) that arrived at ``t_wall``."""
        message, reason = protocol.parse(data)
        if message is None:
            self.drop(t_wall, transport, src, dst, reason, len(data))
            return None
        mon = self._monitor(message["chunkserver"])
        if mon is None:
            self.drop(t_wall, transport, src, dst, f"too many chunkservers: {MAX_CHUNKSERVERS} known", len(data))
            return None
        mon.arrivals += 1
        mon.transports.add(transport)
        kind = mon.tracker.classify(message["seq"])
        if kind != FRESH:
            self.log.message(t_wall, "recv", transport, src, dst, message)
            return kind
        # The log keeps causal order: a deadline that passed since the last
        # tick is judged (and logged) before the heartbeat that ends it.
        now = max(t_wall, self.last_eval)      # decisions never go back in time
        self._evaluate(mon, now, "arrival")
        self.log.message(t_wall, "recv", transport, src, dst, message)
        # The detectors learn the arrival time itself (the kernel's stamp), so
        # their history is a function of the logged arrivals alone.
        for det in mon.detectors.values():
            det.heartbeat(t_wall)
        mon.last_arrival, mon.last_seq = t_wall, message["seq"]
        self._evaluate(mon, now, "arrival")
        return kind

    def check(self, t_wall):
        """The periodic tick: every chunkserver, every detector."""
        now = max(t_wall, self.last_eval)
        for mon in self.monitors.values():
            self._evaluate(mon, now, "tick")

    def _evaluate(self, mon, now, cause):
        """Judge ``mon`` at ``now``; log each detector whose verdict changed,
        with the time of the previous judgement (``prev_eval``): a decision
        is right when the deadline fell between the two."""
        self.last_eval = now
        phi_det = mon.detectors[PHI]
        for name, det in mon.detectors.items():
            ok = det.is_available(now)
            if ok == mon.available[name]:
                continue
            mon.available[name] = ok
            mon.deaths[name] += not ok
            stats = phi_det.state()
            self.log.write(now, "state", chunkserver=mon.name, detector=name,
                           state="alive" if ok else "dead", phi=_finite(phi_det.phi(now)),
                           silence=round(now - det.last, 6), last_seq=mon.last_seq,
                           last_arrival=mon.last_arrival, cause=cause, prev_eval=mon.prev_eval,
                           phi_mean=stats["mean"], phi_std=stats["std"], phi_samples=stats["samples"])
        mon.prev_eval = now

    def summary(self):
        return {"role": "main_server", "interval": self.interval, "k": self.k, "grace": self.grace,
                "phi": self.phi_args, "dropped": self.dropped,
                "chunkservers": {name: {"arrivals": m.arrivals, **m.tracker.counts,
                                        "highest_seq": m.tracker.highest, "deaths": m.deaths,
                                        "alive_at_end": m.available, "transports": sorted(m.transports)}
                                 for name, m in sorted(self.monitors.items())}}


def _finite(x):
    return round(x, 4) if x != float("inf") else "inf"


def _ancillary(ancdata, fallback_dst):
    """(kernel receive time in wall seconds or None, destination address)."""
    stamp, dst = None, fallback_dst
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            stamp = sec + nsec / 1e9
        elif level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            dst = str(ipaddress.IPv4Address(data[8:12]))
    return stamp, dst


class Sockets:
    """The UDP socket and the TCP listener (same port) plus TCP connections."""

    def __init__(self, bind, port):
        # Port 0: the kernel picks a free UDP port; the TCP one of the same
        # number may be taken, then try another (a few times).
        for attempt in range(1 if port else 20):
            self.udp = self._udp(bind, port)
            self.addr = self.udp.getsockname()
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((bind, self.addr[1]))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if port or attempt == 19:
                    raise
        self.tcp.listen(16)
        for s in (self.udp, self.tcp):
            s.setblocking(False)
        self.conns = {}   # socket -> [peer, local, buffer, discarding]

    @staticmethod
    def _udp(bind, port):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:   # as root (in a node): beyond rmem_max
            udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except OSError:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        udp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        udp.bind((bind, port))
        return udp

    def readers(self):
        return [self.udp, self.tcp, *self.conns]

    def close(self):
        for s in [self.udp, self.tcp, *self.conns]:
            s.close()


def _drain_udp(server, socks):
    anc = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(12)
    for _ in range(10000):   # then let the tick run; the rest stays queued
        try:
            data, ancdata, _flags, src = socks.udp.recvmsg(RECV_BUFFER, anc)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:      # e.g. an ICMP error queued on the socket: not a datagram
            continue
        stamp, dst = _ancillary(ancdata, socks.addr[0])
        server.receive(data, "udp", src, (dst, socks.addr[1]), stamp if stamp is not None else time.time())


def _serve_tcp(server, socks, ready):
    if socks.tcp in ready:
        try:
            conn, peer = socks.tcp.accept()
        except OSError:
            conn = None
        if conn is not None:
            if len(socks.conns) >= MAX_CONNECTIONS:
                conn.close()
            else:
                conn.setblocking(False)
                socks.conns[conn] = [peer, conn.getsockname(), b"", False]
    for conn in [c for c in ready if c in socks.conns]:
        peer, local, buf, discarding = socks.conns[conn]
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            chunk = b""
        now = time.time()   # TCP: the time the bytes were read (no per-line kernel stamp)
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if discarding:   # the tail of an oversize line: already reported
                discarding = False
                continue
            server.receive(line, "tcp", peer, local, now)
        if len(buf) > protocol.MAX_MESSAGE_BYTES and not discarding:
            server.drop(now, "tcp", peer, local,
                        f"oversize: line longer than {protocol.MAX_MESSAGE_BYTES} bytes", len(buf))
            buf, discarding = b"", True
        elif discarding:
            buf = b""
        if not chunk:   # the peer closed: a last line without "\n" still counts
            if buf and not discarding:
                server.receive(buf, "tcp", peer, local, now)
            conn.close()
            del socks.conns[conn]
        else:
            socks.conns[conn] = [peer, local, buf, discarding]


def serve(bind, port, interval, log_path=None, duration=None, check_every=None, ready=print, **detector_args):
    """Serve until a stop signal or ``duration``; return the summary."""
    clock = time.monotonic
    check_every = check_every or interval / 10
    with StopSignals() as stop, protocol.EventLog(log_path) as log:
        server = MainServer(log, interval, **detector_args)
        socks = Sockets(bind, port)
        try:
            ready(f"{READY_PREFIX} {socks.addr[0]} {socks.addr[1]}")
            start = clock()
            ticks = 1
            while not stop.stopped:
                now = clock()
                if duration is not None and now - start >= duration:
                    break
                next_tick = start + ticks * check_every
                readable, _, _ = select.select([stop.fd, *socks.readers()], [], [], max(0.0, next_tick - now))
                if stop.fd in readable:
                    stop.drain()
                if socks.udp in readable:
                    _drain_udp(server, socks)
                _serve_tcp(server, socks, readable)
                now = clock()
                if now >= next_tick:
                    server.check(time.time())
                    ticks = int((now - start) / check_every) + 1   # skip missed ticks, no burst
            ended = time.time()   # a last judgement: every verdict in the log holds up to ended_at
            server.check(ended)
            summary = server.summary()
            summary["ended_at"] = ended
            summary["check_every"] = check_every
            summary["ended"] = f"signal {stop.stopped}" if stop.stopped else "duration"
            summary["address"] = list(socks.addr)
            return summary
        finally:
            socks.close()


def _positive(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.gfs.main_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default="0.0.0.0", help="IPv4 address to bind")
    parser.add_argument("--port", type=int, required=True, help="UDP and TCP port (0: any free one)")
    parser.add_argument("--interval", type=_positive, required=True,
                        help="the chunkservers' heartbeat interval T, seconds")
    parser.add_argument("--k", type=int, default=3, help="fixed_k: dead after k missed intervals")
    parser.add_argument("--grace", type=_non_negative, default=None,
                        help="fixed_k: seconds beyond k*T before suspecting (default T/2)")
    parser.add_argument("--phi-threshold", type=_positive, default=8.0, help="phi: suspect at phi >= this")
    parser.add_argument("--min-std", type=_positive, default=0.1, help="phi: least standard deviation, s")
    parser.add_argument("--acceptable-pause", type=_non_negative, default=0.0,
                        help="phi: seconds added to the mean interval")
    parser.add_argument("--first-estimate", type=_positive, default=None,
                        help="phi: first heartbeat interval estimate, s (default T)")
    parser.add_argument("--max-samples", type=int, default=1000, help="phi: intervals kept")
    parser.add_argument("--check-every", type=_positive, default=None,
                        help="seconds between detector checks (default T/10)")
    parser.add_argument("--duration", type=_positive, default=None,
                        help="serve this many seconds (default: until SIGTERM/SIGINT)")
    parser.add_argument("--log", default=None, help="event log (JSON lines) to append to")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k: at least 1")
    if args.max_samples < 1:
        parser.error("--max-samples: at least 1")
    try:
        summary = serve(args.bind, args.port, args.interval, log_path=args.log, duration=args.duration,
                        check_every=args.check_every, ready=lambda line: print(line, flush=True),
                        k=args.k, grace=args.grace, phi_threshold=args.phi_threshold, min_std=args.min_std,
                        acceptable_pause=args.acceptable_pause, first_estimate=args.first_estimate,
                        max_samples=args.max_samples)
    except OSError as exc:
        print(f"main_server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
