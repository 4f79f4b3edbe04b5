"""A chunkserver: heartbeats to the main server, every interval, on a fixed timeline.

Run inside a node::

    python -m wirelab.apps.gfs.chunkserver --name w1 --to 10.1.0.2 --port 7000 \\
        --interval 0.1 --count 200 --log w1.jsonl

Heartbeat ``n`` is due at ``start + n * interval`` on the monotonic clock, so
a late wake-up delays one heartbeat, never the ones after it (no drift from
accumulated sleeps); how late each one left is measured and reported. It runs
for ``--count`` heartbeats, for ``--duration`` seconds, or until SIGTERM /
SIGINT, then prints one JSON summary line.

``--transport udp`` (default): one JSON object per datagram; a send the
kernel refuses (no route, no buffer) is counted and logged, and the next
heartbeat goes out on time. ``--transport tcp``: one connection, one JSON line
per heartbeat; at the end the write side is shut and the server's close
awaited (every byte was read), for at most ``--linger`` seconds.

Every heartbeat sent is an event line in ``--log`` (see
:mod:`wirelab.apps.gfs.protocol`). Exit 0, or 1 with one line on stderr when
the socket fails (TCP: the connection broke).
"""

import argparse
import errno
import json
import os
import socket
import sys
import time

if not __package__:   # run as a file inside a node: put the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from wirelab.apps.gfs import protocol  # noqa: E402
from wirelab.apps.gfs.stopper import StopSignals  # noqa: E402


class Sender:
    """One socket toward the main server; ``send(message)`` -> None or an errno name."""

    def __init__(self, transport, to, port, bind=None, timeout=10.0):
        self.transport, self.dst = transport, (to, port)
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        if bind:
            self.sock.bind((bind, 0))
        if transport == "tcp":
            self.sock.settimeout(timeout)
            # One heartbeat per segment, at once: Nagle would hold a small line
            # back while the previous one is unacknowledged.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # UDP too: connect() sends nothing, but fixes the source address the
        # route gives (logged with every heartbeat) and reports ICMP errors.
        self.sock.connect(self.dst)
        self.src = self.sock.getsockname()

    def send(self, message):
        data = protocol.encode(message)
        if self.transport == "tcp":
            self.sock.sendall(data + b"\n")   # a broken connection raises: fatal
            return None
        try:
            self.sock.send(data)
        except OSError as exc:   # the next heartbeat is due anyway
            return errno.errorcode.get(exc.errno, str(exc.errno))
        return None

    def finish(self, linger):
        """TCP: shut the write side, wait for the server's close (all read)."""
        if self.transport != "tcp":
            return "udp"
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(linger)
        try:
            while self.sock.recv(4096):
                pass
            return "server closed"
        except socket.timeout:
            return f"no close from the server within {linger:g} s"

    def close(self):
        self.sock.close()


def run(name, to, port, interval, count=None, duration=None, transport="udp", log_path=None,
        bind=None, linger=10.0):
    """Send heartbeats; return the summary (a dict)."""
    summary = {"role": "chunkserver", "chunkserver": name, "transport": transport,
               "interval": interval, "sent": 0, "send_errors": {}, "ended": None}
    lateness = []
    with StopSignals() as stop, protocol.EventLog(log_path) as log:
        sender = Sender(transport, to, port, bind=bind, timeout=linger)
        try:
            summary["src"] = list(sender.src)
            start_mono, start_wall = time.monotonic(), time.time()
            summary["start"] = start_wall
            seq = 0
            while True:
                if count is not None and seq >= count:
                    summary["ended"] = "count"
                    break
                due = start_mono + seq * interval
                if duration is not None and due - start_mono >= duration:
                    summary["ended"] = "duration"
                    break
                if not stop.wait(due - time.monotonic()):
                    break
                now_mono, sent_at = time.monotonic(), time.time()
                message = protocol.heartbeat(name, seq, sent_at)
                failed = sender.send(message)
                if failed:
                    summary["send_errors"][failed] = summary["send_errors"].get(failed, 0) + 1
                    log.write(sent_at, "send_failed", transport=transport, src=list(sender.src),
                              dst=list(sender.dst), errno=failed, message=message)
                else:
                    summary["sent"] += 1
                    log.message(sent_at, "send", transport, sender.src, sender.dst, message)
                lateness.append(now_mono - due)
                seq += 1
            summary["ended"] = summary["ended"] or f"signal {stop.stopped}"
            summary["seqs"] = seq
            summary["finish"] = sender.finish(linger)
        finally:
            sender.close()
    late = sorted(lateness)
    summary["lateness_ms"] = {"max": round(1000 * late[-1], 3) if late else None,
                              "p99": round(1000 * late[int(0.99 * (len(late) - 1))], 3) if late else None,
                              "over_half_interval": sum(1 for x in late if x > interval / 2)}
    return summary


def _positive(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.gfs.chunkserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="this chunkserver's name (1..64 characters)")
    parser.add_argument("--to", required=True, help="the main server's IPv4 address")
    parser.add_argument("--port", type=int, required=True, help="the main server's port")
    parser.add_argument("--interval", type=_positive, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--count", type=int, default=None, help="send this many heartbeats, then stop")
    parser.add_argument("--duration", type=_positive, default=None,
                        help="stop after this many seconds (default: run until SIGTERM)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--bind", default=None, help="source address (default: the kernel's choice)")
    parser.add_argument("--log", default=None, help="event log (JSON lines) to append to")
    parser.add_argument("--linger", type=_positive, default=10.0,
                        help="TCP: seconds to connect, and to wait for the server's close at the end")
    args = parser.parse_args(argv)
    if not 0 < len(args.name) <= protocol.MAX_NAME_CHARS:
        parser.error(f"--name: 1..{protocol.MAX_NAME_CHARS} characters")
    if args.count is not None and args.count < 0:
        parser.error("--count: must not be negative")
    try:
        summary = run(args.name, args.to, args.port, args.interval, count=args.count, duration=args.duration,
                      transport=args.transport, log_path=args.log, bind=args.bind, linger=args.linger)
    except OSError as exc:
        print(f"chunkserver {args.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
