"""A JSON sender and receiver with house event logs, to check message rebuilds.

Run inside nodes::

    python -m wirelab.apps.jsonpair serve --bind 10.0.1.2 --port 6100 --log rcv.jsonl
    python -m wirelab.apps.jsonpair send --to 10.0.1.2 --port 6100 --tcp 30 --udp 200 --log snd.jsonl

``send``: ``--tcp N`` JSON messages over TCP, one per connection (written
whole, then the write side shut: the FIN ends the message, as the MapReduce
wire does), ``--parallel`` connections at a time, each waiting for the
receiver's close (it read the message and logged it); and ``--udp M`` JSON
datagrams, one every ``--interval`` seconds, at the same time. Message sizes
are seeded (``--seed``), 40 bytes to ``--max-bytes``: many TCP messages take
several segments. ``serve``: logs every message it gets (TCP: read to EOF,
then close; UDP: one per datagram) until SIGINT/SIGTERM, then prints its
summary. Both print one JSON summary line; ``serve`` first prints
``LISTENING <ip> <port>`` once both sockets are bound.

The logs are the house format (:mod:`wirelab.apps.mapreduce.events`): ``send``
with the connected socket's real addresses once every byte is written, ``recv``
with the peer and the bound address, ``dropped`` for what is not JSON.

Why a connection attempt is retried after ``--connect-timeout`` instead of
left to the kernel: Linux re-sends a lost SYN after 1, 2, 4, 8 ... s, so at
30 % loss each way one connection in twenty waits 15 s or more; a fresh
attempt every half second bounds the run without changing what is measured
(the messages ride established connections; an abandoned attempt carries no
data and the receiver never accepts it).
"""

import argparse
import contextlib
import json
import os
import random
import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

if not __package__:   # run as a file inside a node: put the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from wirelab.apps.gfs.stopper import StopSignals  # noqa: E402
from wirelab.apps.mapreduce import wire  # noqa: E402
from wirelab.apps.mapreduce.events import EventLog  # noqa: E402
from wirelab.proc import wait_until  # noqa: E402

READY_PREFIX = "LISTENING"
_closing = contextlib.closing
WORDS = ("map", "reduce", "shuffle", "chunk", "lease", "replica", "heartbeat", "task")


def message(rng, kind, i, max_bytes):
    """A JSON object of ``kind`` number ``i`` whose encoding is about 40..max_bytes bytes."""
    n = rng.randint(0, max(0, max_bytes - 40))
    body = " ".join(rng.choice(WORDS) for _ in range(n // 6 + 1))[:n]
    return {"type": kind, "id": i, "body": body}


# -- receiver -------------------------------------------------------------------------------
def serve(bind, port, log_path, ready=print):
    counts = {"tcp": 0, "udp": 0, "dropped": 0, "empty": 0}
    events = EventLog(log_path)
    with StopSignals() as stop, _closing(events):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((bind, port))
        lsock.listen(128)
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        usock.bind((bind, port))
        usock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for s in (lsock, usock):
            s.setblocking(False)
        conns = {}   # socket -> (peer, local, chunks)
        ready(f"{READY_PREFIX} {bind} {port}")
        sys.stdout.flush()
        while not stop.stopped:
            readable, _, _ = select.select([stop.fd, lsock, usock, *conns], [], [])
            if stop.fd in readable:
                stop.drain()
            if lsock in readable:
                try:
                    conn, peer = lsock.accept()
                    conn.setblocking(False)
                    conns[conn] = (peer, conn.getsockname(), [])
                except BlockingIOError:
                    pass
            if usock in readable:
                while True:
                    try:
                        data, peer = usock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    _received(events, counts, "udp", data, peer, (bind, port))
            for conn in [c for c in readable if c in conns]:
                peer, local, chunks = conns[conn]
                try:
                    chunk = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    chunks.append(chunk)
                    continue
                del conns[conn]
                _received(events, counts, "tcp", b"".join(chunks), peer, local)
                conn.close()   # the sender waits for this close: its message was read and logged
        for s in (lsock, usock, *conns):
            s.close()
    return {"role": "receiver", **counts, "stopped": stop.stopped}


def _received(events, counts, transport, data, peer, local):
    if not data:   # an abandoned attempt the kernel completed at the last moment
        counts["empty"] += 1
        return
    obj, why = wire.decode(data)
    if obj is None:
        counts["dropped"] += 1
        events.dropped(why, peer, data, transport=transport)
        return
    counts[transport] += 1
    events.message("recv", transport, peer, local, obj)


# -- sender ---------------------------------------------------------------------------------
# Between refused attempts (a refusal comes back at once: without a pause the
# loop would spin); a lost SYN is retried after connect_timeout instead.
REFUSED_RETRY_S = 0.05


def _connect(to, port, connect_timeout, deadline):
    """A connection to ``to``:``port``, attempts of ``connect_timeout`` each
    until ``deadline`` (monotonic); (socket, attempts). Raises WaitTimeout (an OSError)."""
    attempts = 0

    def attempt():
        nonlocal attempts
        attempts += 1
        try:
            return socket.create_connection((to, port), timeout=connect_timeout)
        except (socket.timeout, ConnectionRefusedError):
            return None
    sock = wait_until(attempt, max(0.0, deadline - time.monotonic()), what=f"a connection to {to}:{port}",
                      interval=REFUSED_RETRY_S)
    return sock, attempts


def _send_tcp(to, port, msg, events, connect_timeout, timeout):
    """One message on its own connection; (connection attempts, failure or None)."""
    deadline = time.monotonic() + timeout
    try:
        sock, attempts = _connect(to, port, connect_timeout, deadline)
    except OSError as exc:
        return None, f"connect: {exc}"
    with sock:
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(wire.encode(msg))
            src, dst = sock.getsockname(), sock.getpeername()
            sock.shutdown(socket.SHUT_WR)
            events.message("send", "tcp", src, dst, msg)
            while sock.recv(4096):   # the receiver closes once it has logged the message
                pass
        except OSError as exc:
            return attempts, f"{type(exc).__name__}: {exc}"
    return attempts, None


def _send_udp(to, port, n, interval, rng_seed, max_bytes, events, out):
    rng = random.Random(rng_seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((to, port))
    pace = threading.Event()   # pacing, not synchronisation: datagrams leave on a timeline
    start, errors = time.monotonic(), 0
    for i in range(n):
        msg = message(rng, "datagram", i, min(max_bytes, 1400))
        try:
            sock.send(wire.encode(msg))
            events.message("send", "udp", sock.getsockname(), (to, port), msg)
        except OSError:
            errors += 1
        pace.wait(max(0.0, start + (i + 1) * interval - time.monotonic()))
    sock.close()
    out.update(udp_sent=n - errors, udp_errors=errors)


def send(to, port, tcp, udp, log_path, parallel=8, interval=0.005, seed=1, max_bytes=4000,
         connect_timeout=0.5, timeout=60.0):
    rng = random.Random(seed)
    msgs = [message(rng, "request", i, max_bytes) for i in range(tcp)]
    summary = {"role": "sender", "tcp_sent": 0, "tcp_failed": [], "connect_attempts": 0}
    events = EventLog(log_path)
    with _closing(events):
        udp_thread = threading.Thread(target=_send_udp, args=(to, port, udp, interval, seed + 1, max_bytes,
                                                              events, summary))
        udp_thread.start()
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            results = list(pool.map(lambda m: _send_tcp(to, port, m, events, connect_timeout, timeout), msgs))
        udp_thread.join()
    for i, (attempts, failure) in enumerate(results):
        summary["connect_attempts"] += attempts or 0
        if failure:
            summary["tcp_failed"].append([i, failure])
        else:
            summary["tcp_sent"] += 1
    summary["udp_last_id"] = udp - 1
    return summary


def build_parser():
    p = argparse.ArgumentParser(prog="python -m wirelab.apps.jsonpair",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="log every JSON message received (TCP and UDP) until SIGINT")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True, help="event log (JSON lines) to append to")
    c = sub.add_parser("send", help="send JSON messages over TCP (one per connection) and UDP")
    c.add_argument("--to", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tcp", type=int, default=20, help="TCP messages (default 20)")
    c.add_argument("--udp", type=int, default=100, help="UDP datagrams (default 100)")
    c.add_argument("--parallel", type=int, default=8, help="TCP connections at a time (default 8)")
    c.add_argument("--interval", type=float, default=0.005, help="seconds between datagrams (default 0.005)")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--max-bytes", type=int, default=4000, help="largest TCP message, bytes (default 4000)")
    c.add_argument("--connect-timeout", type=float, default=0.5, help="per connection attempt, s (default 0.5)")
    c.add_argument("--timeout", type=float, default=60.0, help="per message, s (default 60)")
    c.add_argument("--log", required=True, help="event log (JSON lines) to append to")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    if not 0 < a.port < 65536:
        print(f"jsonpair: --port must be 1..65535, got {a.port}", file=sys.stderr)
        return 2
    try:
        if a.cmd == "serve":
            out = serve(a.bind, a.port, a.log)
        else:
            if min(a.tcp, a.udp) < 0 or a.parallel < 1 or not a.interval > 0 or a.max_bytes < 40:
                print("jsonpair: --tcp/--udp >= 0, --parallel >= 1, --interval > 0, --max-bytes >= 40",
                      file=sys.stderr)
                return 2
            out = send(a.to, a.port, a.tcp, a.udp, a.log, a.parallel, a.interval, a.seed, a.max_bytes,
                       a.connect_timeout, a.timeout)
    except OSError as exc:
        print(f"jsonpair {a.cmd}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
