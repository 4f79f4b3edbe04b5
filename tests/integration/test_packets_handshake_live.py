"""The handmade TCP client (``wirelab packet handshake``) against a kernel server.

::

    h1 10.0.1.2 ---- 10.0.1.1 r1 10.0.2.1 ---- 10.0.2.2 h2
    handshake (scapy)   [fault: drop data #3]     tcpflow serve :P
    capture h1-eth0                               capture h2-eth0

Each test runs the tool in h1 as its own process (``python -m
wirelab.packets.handshake``) and proves from the server's output, the captures,
the fault's counters and h1's nftables tables: the server received exactly the
bytes sent (sha256); the handshake, both FINs and no RST from h1 are on the
wire; a segment dropped by r1 is retransmitted once and is the one dropped;
and no table of the tool is left in h1, after success and after SIGTERM or
Ctrl-C in the middle of a transfer.
"""

import json
import math
import signal
import subprocess
import sys

import pytest

from wirelab.apps.tcpflow import READY_PREFIX, payload_sha256
from wirelab.impair.faults import DropNthDataSegment, FaultsUnavailableError
from wirelab.observe.capture import Captures
from wirelab.observe.pcap import iter_segments, tcpflags
from wirelab.packets.rstguard import guard_name
from wirelab.proc import LineReader, wait_until

from tiny_topo import H2  # noqa: E402  (tests/integration on sys.path)

H1 = "10.0.1.2"
NBYTES = 100_000
TIMEOUT = 30
TOOL = [sys.executable, "-m", "wirelab.packets.handshake"]
# A server that accepts and never reads, with a tiny receive buffer: its window
# closes after a few segments and the client stays mid-transfer (probing).
STALLED_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("LISTENING", flush=True)
c, _ = s.accept(); sys.stdin.read()
"""


def serve(tb, port):
    """tcpflow serve on h2, listening when this returns; (process, its stdout reader)."""
    server = tb.start("h2", [sys.executable, "-m", "wirelab.apps.tcpflow", "serve", "--port", str(port),
                             "--timeout", str(TIMEOUT)],
                      name="tcpflow serve", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = LineReader(server.popen.stdout)
    wait_until(lambda: out.has(READY_PREFIX) or not server.running(), 10, what=f"server on :{port}")
    assert server.running(), server.popen.stderr.read()
    return server, out


def received(server, out):
    """The server's JSON line (bytes, sha256), once it has exited."""
    assert server.popen.wait(TIMEOUT) == 0, server.popen.stderr.read()
    out.join(5)
    return json.loads(out.lines[-1])


def handshake(tb, port, *options):
    done = tb.run("h1", TOOL + ["--to", H2, "--port", str(port), "--json", *options],
                  timeout=TIMEOUT + 10, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def guard_tables(tb):
    """Names of the nftables tables in h1 that a handshake run would own."""
    listed = json.loads(tb.run("h1", ["nft", "-j", "list", "tables"], timeout=10).stdout)
    return [t["table"]["name"] for t in listed["nftables"]
            if "table" in t and t["table"]["name"].startswith("wirelab_hs_")]


def segments(path):
    """(direction, flags, relative seq, payload length) of each TCP segment of a
    capture of one connection: direction 'c' client -> server, 's' the reverse."""
    return [("c" if s["dir"] == 0 else "s", s["flags"], s["rel_seq"], s["len"])
            for s in iter_segments(path)]


def captures(tb, port, out_dir, nodes=("h1", "h2")):
    """Captures of the flow to ``port`` on the hosts' interfaces, ready on enter."""
    return Captures(tb, [(n, f"{n}-eth0", f"{n}.pcap") for n in nodes], str(out_dir),
                    bpf=["tcp", "port", str(port)])


def has(flags, *bits):
    return all(flags & b for b in bits)


def test_handshake_delivers_the_exact_bytes_and_closes_cleanly(tb, tmp_path, host_state):
    port = 5401
    server, out = serve(tb, port)
    with captures(tb, port, tmp_path):
        report = handshake(tb, port, "--bytes", str(NBYTES), "--seed", "3")
    got = received(server, out)
    print(f"\nhandshake {report['times']['handshake'] * 1e3:.2f} ms, 100 kB acknowledged after "
          f"{report['times']['all_data_acked'] * 1e3:.1f} ms, closed at {report['times']['closed'] * 1e3:.1f} ms; "
          f"{report['rst_guard']['rsts_suppressed']} kernel RSTs dropped")
    assert got["bytes"] == NBYTES == report["bytes_sent"]
    assert got["sha256"] == report["sha256"] == payload_sha256(3, NBYTES)
    assert got["peer"] == [H1, report["flow"]["sport"]]
    assert report["retransmissions"] == [] and report["state"] == "TIME_WAIT"
    mss = report["mss"]["segment_size"]
    assert mss == report["mss"]["peer"] == 1460
    assert report["segments"]["data"] == math.ceil(NBYTES / mss)
    # The guard was needed (the kernel did answer with RSTs) and is gone.
    assert report["rst_guard"]["rsts_suppressed"] > 0 and report["rst_guard"]["removed"]
    assert guard_tables(tb) == []

    wire = segments(str(tmp_path / "h1.pcap"))
    flags = [(d, f) for d, f, _, _ in wire]
    assert flags[0] == ("c", tcpflags.SYN), "the first packet is the client's SYN"
    assert flags[1] == ("s", tcpflags.SYN | tcpflags.ACK), "then the server's SYN-ACK"
    assert flags[2] == ("c", tcpflags.ACK), "then the client's ACK"
    assert not any(d == "c" and f & tcpflags.RST for d, f in flags), "no RST from h1"
    assert any(d == "c" and has(f, tcpflags.FIN) for d, f in flags), "the client's FIN"
    assert any(d == "s" and has(f, tcpflags.FIN) for d, f in flags), "the server's FIN"
    assert flags[-1] == ("c", tcpflags.ACK), "the last packet ACKs the server's FIN"
    assert max(n for _, _, _, n in wire) == mss
    assert sum(n for d, _, _, n in segments(str(tmp_path / "h2.pcap")) if d == "c") == NBYTES
    assert [f for f in flags if f[1] & tcpflags.SYN] == flags[:2], "one SYN each way, no retry"


# Segment 3 has 66 segments behind it: three duplicate ACKs come back at once.
# Segment 69 (the last, 720 bytes) has only the FIN behind it: one duplicate
# ACK, so the retransmission timer (its 200 ms floor) resends it.
@pytest.mark.parametrize("n, reason", [(3, "dup_acks"), (69, "rto")])
def test_a_dropped_segment_is_retransmitted_once_and_is_the_one_dropped(tb, tmp_path, host_state,
                                                                          n, reason):
    port = 5420 + n
    try:
        fault = tb.install_fault("r1", DropNthDataSegment(n=n, direction="to_server", dport=port,
                                                          src=H1, dst=H2))
    except FaultsUnavailableError as exc:
        pytest.skip(f"no backend for targeted faults on this kernel: {exc}")
    server, out = serve(tb, port)
    with captures(tb, port, tmp_path):
        report = handshake(tb, port, "--bytes", str(NBYTES), "--log")
    got = received(server, out)
    assert fault.counters()["dropped"] == 1
    assert got["sha256"] == report["sha256"] and got["bytes"] == NBYTES
    mss = report["mss"]["segment_size"]
    assert report["segments"]["data"] == 69, "the segment numbers above assume 69 segments"
    (rt,) = report["retransmissions"]
    offset = (n - 1) * mss
    print(f"\nsegment {n} retransmitted at {rt['time'] * 1e3:.1f} ms ({rt['reason']})")
    assert (rt["segment"], rt["offset"], rt["length"]) == (n, offset, min(mss, NBYTES - offset))
    assert rt["reason"] == reason
    assert report["segments"]["data_transmissions"] == report["segments"]["data"] + 1
    # On the wire: segment n (relative seq 1 + offset) left h1 twice and reached h2 once.
    sent = [s for s in segments(str(tmp_path / "h1.pcap")) if s[0] == "c" and s[3]]
    arrived = [s for s in segments(str(tmp_path / "h2.pcap")) if s[0] == "c" and s[3]]
    assert [s[2] for s in sent].count(1 + offset) == 2
    assert [s[2] for s in arrived].count(1 + offset) == 1
    assert len(sent) == len(arrived) + 1
    first, again = [s["ts_ns"] / 1e9 for s in iter_segments(str(tmp_path / "h1.pcap"))
                    if s["dir"] == 0 and s["len"] and s["rel_seq"] == 1 + offset]
    print(f"resent {(again - first) * 1e3:.1f} ms after the first transmission")
    if reason == "rto":
        assert 0.2 <= again - first < 0.2 + 0.5   # the RTO floor, plus a busy machine's slack
    assert guard_tables(tb) == []


def test_chosen_segment_size_and_sequence_numbers_across_2_32(tb, tmp_path, host_state):
    port = 5403
    server, out = serve(tb, port)
    with captures(tb, port, tmp_path, nodes=("h1",)):
        report = handshake(tb, port, "--bytes", "20000", "--mss", "500", "--isn", str(2**32 - 5000))
    got = received(server, out)
    assert got["sha256"] == report["sha256"] and got["bytes"] == 20000
    assert report["isn"]["client"] == 2**32 - 5000
    assert report["segments"]["data"] == 40
    assert {n for d, _, _, n in segments(str(tmp_path / "h1.pcap")) if d == "c" and n} == {500}
    assert guard_tables(tb) == []


def test_legacy_iptables_guard_works_the_same_and_is_removed(tb, host_state):
    port = 5404
    saved = tb.run("h1", ["iptables-legacy-save"], timeout=10, check=False)
    if saved.returncode != 0:
        pytest.skip(f"no iptables-legacy here: {saved.stderr.strip()[:100]}")
    server, out = serve(tb, port)
    report = handshake(tb, port, "--bytes", "30000", "--rst-guard", "iptables")
    got = received(server, out)
    assert got["sha256"] == report["sha256"] and got["bytes"] == 30000
    guard = report["rst_guard"]
    assert guard["backend"] == "iptables" and guard["rsts_suppressed"] > 0 and guard["removed"]
    assert "wirelab_hs_" not in tb.run("h1", ["iptables-legacy-save"], timeout=10).stdout


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_killed_mid_transfer_it_leaves_no_table(tb, host_state, sig, code):
    port = 5410 + int(sig)
    server = tb.start("h2", [sys.executable, "-c", STALLED_SERVER, str(port)], name="stalled server",
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = LineReader(server.popen.stdout)
    wait_until(lambda: ready.has("LISTENING"), 10, what="the stalled server")
    tool = tb.start("h1", TOOL + ["--to", H2, "--port", str(port), "--bytes", "1000000", "--log"],
                    name="handshake", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = LineReader(tool.popen.stderr)
    try:
        # Mid-transfer: data went out, and the guard's table is in h1.
        wait_until(lambda: any(" > A" in line and "len=0" not in line for line in log.lines),
                   10, what="the first data segment")
        assert guard_tables(tb) == [guard_name(tool.pid)]
        tool.popen.send_signal(sig)
        assert tool.popen.wait(10) == code
        log.join(5)
        assert len([line for line in log.lines if "error" in line or "interrupted" in line]) == 1
        assert "Traceback" not in log.text()
        assert guard_tables(tb) == []
        # The server's side was reset: the tool's last word was a RST.
        assert any("> R" in line for line in log.lines[-3:])
    finally:
        server.stop(signal.SIGTERM)
        tool.stop(signal.SIGTERM)
