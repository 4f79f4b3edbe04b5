"""One message over TCP, handed to the kernel whole: segments are full but the last.

Run inside a node (the receiver is ``tcpflow serve``)::

    python -m wirelab.apps.tcpmessage --to 10.0.4.2 --port 5001 --bytes 1000000 --seed 1

The bytes are tcpflow's seeded payload (``tcpflow.payload_chunks``), so the
receiver's sha256 is checked the same way. Why not ``tcpflow send``: it writes
64 KiB at a time, and Linux sends the partial segment left at the end of a
write at once when nothing small is in flight (Nagle as Minshall's variant), so
a 1 MB message takes more segments than ceil(len / payload). Here the socket is
corked (TCP_CORK) while the message is written, so the kernel sends only full
segments until the uncork pushes the last one: the data-segment count is
exactly ceil(len / payload per segment), whatever the write sizes.

At ``--timeout`` seconds (a black-holed path stalls the connection) the
connection is aborted: SO_LINGER 0 makes close() send a RST and drop the unsent
data, so no orphaned socket keeps retransmitting into the next experiment. It
then prints its JSON (``"aborted"``: the reason) and exits 1 with one line.
"""

import argparse
import hashlib
import json
import socket
import struct
import sys
import time

if not __package__:   # run as a file inside a node: put the repository on the path
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from wirelab.apps.tcpflow import CHUNK, payload_chunks  # noqa: E402


def send(to, port, nbytes, seed, timeout):
    h, total, record = hashlib.sha256(), 0, {"role": "sender", "bytes": 0, "seed": seed, "corked": True}
    s = socket.create_connection((to, port), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        record["local"] = list(s.getsockname())
        record["start_time"] = time.time()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for piece in payload_chunks(seed, nbytes):
            s.settimeout(max(0.001, deadline - time.monotonic()))
            s.sendall(piece)
            h.update(piece)
            total += len(piece)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)   # push the last, partial segment
        record["all_written_time"] = time.time()
        s.shutdown(socket.SHUT_WR)
        while True:   # the receiver's FIN: every byte was read by the server
            s.settimeout(max(0.001, deadline - time.monotonic()))
            if not s.recv(CHUNK):
                break
        record["end_time"] = time.time()
    except (OSError, socket.timeout) as exc:
        # Abort: a RST now, no orphan retransmitting the unsent bytes later.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        record["aborted"] = f"{type(exc).__name__}: {exc}"
    finally:
        s.close()
    record.update(bytes=total, sha256=h.hexdigest())
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.tcpmessage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds for the whole message; then the connection is aborted (RST)")
    args = parser.parse_args(argv)
    try:
        result = send(args.to, args.port, args.bytes, args.seed, args.timeout)
    except (OSError, socket.timeout) as exc:   # could not connect
        print(f"tcpmessage: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    if result.get("aborted"):
        print(f"tcpmessage: aborted after {args.timeout:g} s: {result['aborted']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
