"""tcpflow serve --hold: the server holds after the first bytes until 'go' (loopback, no root)."""

import json
import socket
import subprocess
import sys

from wirelab.apps import tcpflow
from wirelab.proc import LineReader, wait_until

TCPFLOW = tcpflow.__file__


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port, nbytes):
    server = subprocess.Popen([sys.executable, TCPFLOW, "serve", "--bind", "127.0.0.1", "--port", str(port),
                               "--timeout", "20", "--hold", "--rcvbuf", "16384"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = LineReader(server.stdout)
    wait_until(lambda: out.has(tcpflow.READY_PREFIX) or server.poll() is not None, 20, what="LISTENING")
    sender = subprocess.Popen([sys.executable, TCPFLOW, "send", "--to", "127.0.0.1", "--port", str(port),
                               "--bytes", str(nbytes), "--seed", "3", "--timeout", "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return server, out, sender


def test_held_transfer_completes_only_after_go():
    server, out, sender = _start(_free_port(), 500_000)
    try:
        wait_until(lambda: out.has(tcpflow.HOLDING_PREFIX) or server.poll() is not None, 20, what="HOLDING")
        held = int(next(line for line in out.lines if line.startswith(tcpflow.HOLDING_PREFIX)).split()[1])
        assert 0 < held < 500_000
        # Held: neither side can be done (the sender waits for the server's close).
        assert server.poll() is None and sender.poll() is None
        server.stdin.write(b"go\n")
        server.stdin.flush()
        assert server.wait(20) == 0 and sender.wait(20) == 0
        out.join(5)
        got = json.loads([line for line in out.lines if line.startswith("{")][-1])
        assert got["bytes"] == 500_000 and got["sha256"] == tcpflow.payload_sha256(3, 500_000)
        assert got["held_bytes"] == held and got["released_time"] >= got["listen_time"]
    finally:
        for p in (server, sender):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_held_server_without_go_fails_with_one_line():
    server, out, sender = _start(_free_port(), 500_000)
    try:
        wait_until(lambda: out.has(tcpflow.HOLDING_PREFIX) or server.poll() is not None, 20, what="HOLDING")
        server.stdin.write(b"stop\n")
        server.stdin.flush()
        assert server.wait(20) == 1
        err = server.stderr.read().decode().strip()
        assert err.count("\n") == 0 and "expected 'go'" in err
    finally:
        for p in (server, sender):
            if p.poll() is None:
                p.kill()
                p.wait()
