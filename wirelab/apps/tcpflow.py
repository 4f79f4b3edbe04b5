"""A known TCP transfer: deterministic bytes from a seed, checked by sha256.

Run inside a node::

    python -m wirelab.apps.tcpflow serve --bind 10.2.0.1 --port 5001 --timeout 60
    python -m wirelab.apps.tcpflow send --to 10.2.0.1 --port 5001 --bytes 1000000 --seed 7

``serve`` accepts one connection, reads until the peer closes, and prints one
JSON object: the bytes it received, their sha256, and start/end times. Before
that it prints ``LISTENING <addr> <port>`` (flushed) once the socket listens, so
the caller waits for that line instead of sleeping. ``send`` connects, writes
the payload, shuts down its write side, waits for the server's close and prints
its own JSON (bytes sent, sha256 of what it sent). Both exit non-zero with a
one-line error on timeout or failure.

The payload is ``payload(seed, n)``: a SHA-256 counter stream, so sender and
verifier agree on every byte without storing it.

``serve --hold`` makes transfers overlap for certain: once the connection has
brought its first bytes, the server prints ``HOLDING <queued bytes>`` and reads
nothing more until a line ``go`` arrives on its stdin. With a small
``--rcvbuf`` the sender then stalls on the closed window, so a caller that
holds every server and then says ``go`` to all of them has every flow on the
wire both before and after that moment.
"""

import argparse
import hashlib
import json
import select
import socket
import sys
import time

READY_PREFIX = "LISTENING"
HOLDING_PREFIX = "HOLDING"
GO = "go"
CHUNK = 64 * 1024


def payload_chunks(seed, nbytes, chunk=CHUNK):
    """Yield the deterministic payload for ``seed`` in pieces totalling ``nbytes``."""
    counter = 0
    left = nbytes
    buf = b""
    key = f"wirelab-tcpflow-{seed}".encode()
    while left > 0:
        while len(buf) < min(chunk, left):
            buf += hashlib.sha256(key + counter.to_bytes(8, "big")).digest()
            counter += 1
        piece, buf = buf[:min(chunk, left)], buf[min(chunk, left):]
        left -= len(piece)
        yield piece


def payload_sha256(seed, nbytes):
    """The sha256 (hex) of the payload ``send`` transmits for this seed and size."""
    h = hashlib.sha256()
    for piece in payload_chunks(seed, nbytes):
        h.update(piece)
    return h.hexdigest()


def _hold(conn, timeout):
    """Wait (up to ``timeout``) for the first bytes, say HOLDING, then for ``go`` on stdin."""
    if not select.select([conn], [], [], timeout)[0]:
        raise socket.timeout(f"no bytes within {timeout:g}s of the connection")
    queued = len(conn.recv(CHUNK, socket.MSG_PEEK))
    print(f"{HOLDING_PREFIX} {queued}", flush=True)
    if not select.select([sys.stdin], [], [], timeout)[0]:
        raise socket.timeout(f"no '{GO}' on stdin within {timeout:g}s of holding")
    line = sys.stdin.readline().strip()
    if line != GO:
        raise OSError(f"expected '{GO}' on stdin, got {line!r}")
    return {"held_bytes": queued, "released_time": time.time()}


def serve(bind, port, timeout, hold=False, rcvbuf=None):
    started = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:   # before listen(): accepted sockets inherit it, and the SYN's window scale follows it
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        ls.bind((bind, port))
        ls.listen(1)
        ls.settimeout(timeout)
        print(f"{READY_PREFIX} {bind} {port}", flush=True)
        conn, peer = ls.accept()
    with conn:
        held = _hold(conn, timeout) if hold else {}
        conn.settimeout(timeout)
        h = hashlib.sha256()
        total = 0
        first = None
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            if first is None:
                first = time.time()
            h.update(data)
            total += len(data)
        end = time.time()
    return {"role": "receiver", "peer": list(peer), "bytes": total, "sha256": h.hexdigest(),
            "listen_time": started, "first_byte_time": first, "end_time": end, **held}


def send(to, port, nbytes, seed, timeout):
    h = hashlib.sha256()
    total = 0
    with socket.create_connection((to, port), timeout=timeout) as s:
        s.settimeout(timeout)
        start = time.time()
        for piece in payload_chunks(seed, nbytes):
            s.sendall(piece)
            h.update(piece)
            total += len(piece)
        sent = time.time()
        s.shutdown(socket.SHUT_WR)
        # Wait for the receiver's FIN: then every byte was read by the server.
        while s.recv(CHUNK):
            pass
        end = time.time()
    return {"role": "sender", "bytes": total, "sha256": h.hexdigest(), "seed": seed,
            "start_time": start, "all_written_time": sent, "end_time": end}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.tcpflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="receive one transfer, print its sha256")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the connection and between reads")
    p.add_argument("--hold", action="store_true",
                   help=f"after the first bytes, print '{HOLDING_PREFIX} <bytes>' and read nothing until '{GO}' on stdin")
    p.add_argument("--rcvbuf", type=int, default=None, help="SO_RCVBUF of the listening socket (bytes)")
    p = sub.add_parser("send", help="send the payload of --seed, --bytes long")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "serve":
            result = serve(args.bind, args.port, args.timeout, hold=args.hold, rcvbuf=args.rcvbuf)
        else:
            result = send(args.to, args.port, args.bytes, args.seed, args.timeout)
    except (OSError, socket.timeout) as exc:
        print(f"tcpflow {args.cmd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
