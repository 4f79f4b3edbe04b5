"""Known UDP datagrams: deterministic bytes from a seed, each checked by sha256.

Run inside a node::

    python -m wirelab.apps.udpflow serve --bind 10.0.4.2 --port 6001 --timeout 10
    python -m wirelab.apps.udpflow send --to 10.0.4.2 --port 6001 --sizes 100 4000 --df off

``serve`` binds a UDP socket, prints ``LISTENING <addr> <port>`` (flushed),
then one JSON object per datagram it receives (its size and sha256: the kernel
reassembled any IP fragments, the program sees whole datagrams or nothing),
until an empty datagram (the sender's end mark) or ``--timeout`` seconds of
silence; last a summary object with every datagram. ``send`` sends one
datagram per size (payload ``datagram_payload(seed, i, size)``), with the IP
"don't fragment" bit set (``--df on``: IP_PMTUDISC_DO; a datagram larger than
the known path MTU is refused by the kernel with EMSGSIZE, which is recorded,
not fatal) or clear (``--df off``: IP_PMTUDISC_DONT; the kernel and routers
fragment), then the end mark, and prints one JSON object: per datagram the
size, sha256 and the send error if any. Both exit non-zero with a one-line
error when the socket itself fails.
"""

import argparse
import errno
import hashlib
import json
import socket
import sys
import time

READY_PREFIX = "LISTENING"
#: The largest UDP payload of one IPv4 datagram: 65535 - 20 (IP) - 8 (UDP).
MAX_DATAGRAM = 65507
# linux/in.h: IP_MTU_DISCOVER values (Python's socket module lacks some).
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
# Reassembled 64 KiB datagrams take ~45 fragments' worth of buffer each; the
# default receive buffer (212992) could drop one behind a slow reader.
RCVBUF_BYTES = 8 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)   # asm-generic/socket.h


def datagram_payload(seed, index, size):
    """The bytes of datagram ``index`` of size ``size`` for ``seed`` (SHA-256 counter stream)."""
    key = f"wirelab-udpflow-{seed}-{index}".encode()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(key + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def datagram_sha256(seed, index, size):
    return hashlib.sha256(datagram_payload(seed, index, size)).hexdigest()


def serve(bind, port, timeout):
    datagrams = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:   # as root (in a node): beyond rmem_max
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        s.bind((bind, port))
        s.settimeout(timeout)
        print(f"{READY_PREFIX} {bind} {port}", flush=True)
        ended = "end mark"
        while True:
            try:
                data, peer = s.recvfrom(MAX_DATAGRAM + 1)
            except socket.timeout:
                ended = f"{timeout:g} s of silence"
                break
            if not data:
                break
            rec = {"index": len(datagrams), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                   "peer": list(peer), "time": time.time()}
            datagrams.append(rec)
            print(json.dumps(rec), flush=True)
    return {"role": "receiver", "datagrams": datagrams, "ended": ended}


def send(to, port, sizes, seed, df):
    sent = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT)
        for i, size in enumerate(sizes):
            data = datagram_payload(seed, i, size)
            rec = {"index": i, "bytes": size, "sha256": hashlib.sha256(data).hexdigest(),
                   "time": time.time(), "error": None}
            try:
                s.sendto(data, (to, port))
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                rec["error"] = "EMSGSIZE"   # DF set and larger than the path MTU the kernel knows
            sent.append(rec)
        s.sendto(b"", (to, port))   # the end mark
    return {"role": "sender", "df": df, "seed": seed, "datagrams": sent}


def _size(text):
    n = int(text)
    if not 1 <= n <= MAX_DATAGRAM:
        raise argparse.ArgumentTypeError(f"a datagram size is 1..{MAX_DATAGRAM} bytes, got {n}")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.udpflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="receive datagrams until the end mark, report each")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds of silence that end the run")
    p = sub.add_parser("send", help="send one datagram per size, then the end mark")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sizes", type=_size, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--df", choices=("on", "off"), default="off",
                   help="IP don't-fragment bit: on = IP_PMTUDISC_DO, off = IP_PMTUDISC_DONT")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "serve":
            result = serve(args.bind, args.port, args.timeout)
        else:
            result = send(args.to, args.port, args.sizes, args.seed, args.df == "on")
    except OSError as exc:
        print(f"udpflow {args.cmd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
