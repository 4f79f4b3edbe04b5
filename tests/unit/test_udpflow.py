"""udpflow and tcpmessage without root: on the loopback interface of this
namespace, with the READY line awaited (never slept for) and JSON lines read."""

import errno
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from wirelab.apps import tcpflow, tcpmessage, udpflow
from wirelab.proc import LineReader, wait_until

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "wirelab", "apps")


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def udp_server():
    port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, os.path.join(APPS, "udpflow.py"), "serve", "--bind", "127.0.0.1",
                             "--port", str(port), "--timeout", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = LineReader(proc.stdout)
    try:
        wait_until(lambda: out.has(udpflow.READY_PREFIX) or proc.poll() is not None, 10, what="udpflow serve READY")
        yield port, proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


def test_payload_is_deterministic_and_distinct():
    a = udpflow.datagram_payload(1, 0, 5000)
    assert len(a) == 5000 and a == udpflow.datagram_payload(1, 0, 5000)
    assert a != udpflow.datagram_payload(1, 1, 5000) and a != udpflow.datagram_payload(2, 0, 5000)
    assert udpflow.datagram_payload(1, 0, 10) == a[:10]
    import hashlib
    assert udpflow.datagram_sha256(1, 3, 777) == hashlib.sha256(udpflow.datagram_payload(1, 3, 777)).hexdigest()


def test_send_and_serve_over_loopback(udp_server):
    port, proc, out = udp_server
    sizes = [1, 100, 1473, 10_000, udpflow.MAX_DATAGRAM]
    done = subprocess.run([sys.executable, os.path.join(APPS, "udpflow.py"), "send", "--to", "127.0.0.1",
                           "--port", str(port), "--sizes", *map(str, sizes), "--seed", "7", "--df", "on"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["df"] is True and [d["bytes"] for d in sent["datagrams"]] == sizes
    assert all(d["error"] is None for d in sent["datagrams"])
    assert proc.wait(10) == 0
    out.join(5)
    lines = [json.loads(line) for line in out.lines if line.startswith("{")]
    summary = lines[-1]
    assert summary["role"] == "receiver" and summary["ended"] == "end mark"
    assert [(d["bytes"], d["sha256"]) for d in summary["datagrams"]] == \
        [(n, udpflow.datagram_sha256(7, i, n)) for i, n in enumerate(sizes)]
    assert lines[:-1] == summary["datagrams"]    # one JSON line per datagram as it came


def test_serve_ends_after_silence(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    done = subprocess.run([sys.executable, os.path.join(APPS, "udpflow.py"), "serve", "--bind", "127.0.0.1",
                           "--port", str(port), "--timeout", "0.2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    first, last = done.stdout.splitlines()[0], json.loads(done.stdout.splitlines()[-1])
    assert first == f"LISTENING 127.0.0.1 {port}" and last == {"role": "receiver", "datagrams": [],
                                                                "ended": "0.2 s of silence"}


class FakeSocket:
    """Records options; refuses datagrams above ``limit`` as the kernel does with DF set."""

    def __init__(self, *_args, limit=1000):
        self.options, self.sent, self.limit = [], [], limit

    def setsockopt(self, *args):
        self.options.append(args)

    def sendto(self, data, addr):
        if len(data) > self.limit:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.sent.append(len(data))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("df,value", [(True, udpflow.IP_PMTUDISC_DO), (False, udpflow.IP_PMTUDISC_DONT)])
def test_df_sets_ip_mtu_discover_and_emsgsize_is_recorded(monkeypatch, df, value):
    fake = FakeSocket()
    monkeypatch.setattr(udpflow.socket, "socket", lambda *a: fake)
    result = udpflow.send("10.0.4.2", 6001, [1400, 900], seed=1, df=df)
    assert fake.options == [(socket.IPPROTO_IP, udpflow.IP_MTU_DISCOVER, value)]
    assert [d["error"] for d in result["datagrams"]] == ["EMSGSIZE", None]
    assert fake.sent == [900, 0]    # the one that fits, then the end mark


@pytest.mark.parametrize("size", ["0", "65508", "-3"])
def test_bad_sizes_are_one_line_errors(size):
    done = subprocess.run([sys.executable, os.path.join(APPS, "udpflow.py"), "send", "--to", "127.0.0.1",
                           "--port", "9", "--sizes", size], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "a datagram size is 1..65507 bytes" in done.stderr.splitlines()[-1]


# -- tcpmessage ------------------------------------------------------------------------
def test_tcpmessage_delivers_the_seeded_bytes_to_tcpflow_serve():
    port = free_port(socket.SOCK_STREAM)
    serve = subprocess.Popen([sys.executable, os.path.join(APPS, "tcpflow.py"), "serve", "--bind", "127.0.0.1",
                              "--port", str(port), "--timeout", "10"], stdout=subprocess.PIPE, text=True)
    out = LineReader(serve.stdout)
    try:
        wait_until(lambda: out.has(tcpflow.READY_PREFIX), 10, what="tcpflow serve READY")
        done = subprocess.run([sys.executable, os.path.join(APPS, "tcpmessage.py"), "--to", "127.0.0.1",
                               "--port", str(port), "--bytes", "300000", "--seed", "4"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert serve.wait(10) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(10)
    out.join(5)
    sent, got = json.loads(done.stdout), json.loads(out.lines[-1])
    want = tcpflow.payload_sha256(4, 300000)
    assert sent["corked"] and sent["bytes"] == got["bytes"] == 300000 and sent["sha256"] == got["sha256"] == want
    assert "aborted" not in sent


def test_tcpmessage_aborts_with_a_reset_at_its_deadline():
    """A receiver that never reads: the sender gives up at the deadline and
    resets the connection (no orphan keeps the unsent bytes)."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        seen = {}

        def accept():
            conn, _ = ls.accept()
            with conn:
                conn.settimeout(20)
                wait_until(lambda: "result" in seen, 20, what="the sender to give up")
                try:
                    while conn.recv(65536):
                        pass
                    seen["peer"] = "FIN"
                except ConnectionResetError:
                    seen["peer"] = "RST"
        t = threading.Thread(target=accept)
        t.start()
        seen["result"] = tcpmessage.send("127.0.0.1", ls.getsockname()[1], 50_000_000, seed=1, timeout=0.5)
        t.join(30)
    assert seen["result"]["aborted"].startswith("TimeoutError") and seen["result"]["bytes"] < 50_000_000
    assert seen["peer"] == "RST"

