"""A direction never captured has Wireshark's initial window (G_MAXUINT32), not 0.

With 0, a 1-byte segment of the captured direction looked like a zero-window
probe, did not advance the expected sequence number, and the next segment was
then counted as "previous segment not captured" (a false lost segment).
"""

import shutil
import subprocess

import numpy as np
import pytest

from test_pcap_common import ether, ipv4_tcp, pcap_bytes
from wirelab.observe.pcap import analysis as F
from wirelab.observe.pcap import analyze, iter_segment_batches
from wirelab.observe.pcap.tcpflags import ACK, PSH, SYN

C, S = "10.0.0.1", "10.0.0.2"
# (seq, payload length): a SYN, two segments, a 1-byte segment, two more.
SEGMENTS = [(1000, 0), (1001, 100), (1101, 100), (1201, 1), (1202, 100), (1302, 100)]


@pytest.fixture
def one_sided(tmp_path):
    pkts = []
    for i, (seq, n) in enumerate(SEGMENTS):
        flags = SYN if i == 0 else ACK | PSH
        ip = ipv4_tcp(C, S, 40000, 80, seq, 0 if i == 0 else 5001, flags, b"x" * n, ip_id=i + 1)
        pkts.append((1_700_000_000_000_000_000 + i * 1_000_000, ether(ip)))
    p = tmp_path / "one_sided.pcap"
    p.write_bytes(pcap_bytes(1, pkts))
    return p


@pytest.mark.parametrize("exact", [False, True])
def test_one_byte_segment_is_not_a_zero_window_probe(one_sided, exact):
    recs = np.concatenate(list(iter_segment_batches(one_sided, exact=exact)))
    # Golden: Wireshark flags nothing in this capture (tshark 4.0, checked below).
    assert recs["analysis"].tolist() == [0] * len(SEGMENTS)
    t = analyze(one_sided, exact=exact).totals()
    assert t["lost_segments"] == 0 and t["retransmissions"] == 0
    assert t["unique_bytes"] == t["payload_bytes"] == 401


def test_tshark_agrees(one_sided):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    r = subprocess.run(["tshark", "-r", str(one_sided), "-Y", "tcp.analysis.flags", "-T", "fields",
                        "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == []


def test_a_real_zero_window_still_makes_probes(tmp_path):
    """The other side announced window 0: the 1-byte segment is a probe."""
    pkts = [
        ipv4_tcp(C, S, 40000, 80, 1000, 0, SYN),
        ipv4_tcp(S, C, 80, 40000, 5000, 1001, SYN | ACK),
        ipv4_tcp(C, S, 40000, 80, 1001, 5001, ACK),
        ipv4_tcp(C, S, 40000, 80, 1001, 5001, ACK | PSH, b"x" * 100),
        ipv4_tcp(S, C, 80, 40000, 5001, 1101, ACK, win=0),
        ipv4_tcp(C, S, 40000, 80, 1101, 5001, ACK, b"y"),
    ]
    p = tmp_path / "zwp.pcap"
    p.write_bytes(pcap_bytes(1, [(1_700_000_000_000_000_000 + i * 1_000_000, ether(x)) for i, x in enumerate(pkts)]))
    recs = np.concatenate(list(iter_segment_batches(p)))
    assert recs["analysis"][4] & F.ZERO_WINDOW
    assert recs["analysis"][5] & F.ZERO_WINDOW_PROBE
