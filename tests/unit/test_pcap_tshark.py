"""Our per-packet analysis flags equal tshark's on the same captures.

Also checks that the vectorised path and the packet-by-packet path give the
same flags whatever the batch size (small batches make the vectorised path
take over after the handshake and switch back and forth at loss events).
"""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from test_pcap_common import DATA
from wirelab.observe.pcap import analysis as F
from wirelab.observe.pcap import iter_segment_batches

TSHARK_FLAGS = {
    "retransmission": F.ANY_RETRANSMISSION,
    "fast_retransmission": F.FAST_RETRANSMISSION,
    "spurious_retransmission": F.SPURIOUS_RETRANSMISSION,
    "out_of_order": F.OUT_OF_ORDER,
    "duplicate_ack": F.DUPLICATE_ACK,
    "lost_segment": F.LOST_SEGMENT,
    "ack_lost_segment": F.ACKED_UNSEEN,
    "zero_window": F.ZERO_WINDOW,
}
CAPTURES = ["base_clean.pcap", "base_loss.pcap", "base_v6.pcap", "base_zerowin.pcap",
            "crafted_drop.pcap", "crafted_dup.pcap", "crafted_reorder.pcap", "link_pcapng.pcapng"]


def flagged(recs, bit):
    return set(recs["frame"][(recs["analysis"] & bit) != 0].tolist())


def tshark_frames(path, field):
    r = subprocess.run(["tshark", "-r", str(path), "-Y", f"tcp.analysis.{field}", "-T", "fields",
                        "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(map(int, r.stdout.split()))


@pytest.fixture(scope="module")
def tshark_results():
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    jobs = [(c, f) for c in CAPTURES for f in TSHARK_FLAGS]
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda j: tshark_frames(DATA / j[0], j[1]), jobs))
    return dict(zip(jobs, res))


@pytest.mark.parametrize("name", CAPTURES)
def test_flags_equal_tshark(name, tshark_results):
    recs = np.concatenate(list(iter_segment_batches(DATA / name)))
    for field, bit in TSHARK_FLAGS.items():
        want = tshark_results[(name, field)]
        got = flagged(recs, bit)
        assert got == want, (f"{name}: tcp.analysis.{field}: tshark {len(want)} packets, ours {len(got)}; "
                             f"only tshark {sorted(want - got)[:10]}, only ours {sorted(got - want)[:10]}")


def test_captures_exercise_every_flag(tshark_results):
    """A test that cannot fail is a bug: the captures must contain each kind."""
    for field in TSHARK_FLAGS:
        if field == "zero_window":
            continue  # no committed capture has one (covered by the bench capture)
        assert any(tshark_results[(c, field)] for c in CAPTURES), field


@pytest.mark.parametrize("name", ["base_loss.pcap", "crafted_drop.pcap", "crafted_dup.pcap",
                                  "crafted_reorder.pcap", "base_v6.pcap"])
@pytest.mark.parametrize("batch", [5, 64, 257])
def test_vectorised_equals_exact(name, batch):
    exact = np.concatenate(list(iter_segment_batches(DATA / name, exact=True)))
    fast = np.concatenate(list(iter_segment_batches(DATA / name, batch_packets=batch)))
    assert np.array_equal(exact, fast)


def replayed(tmp_path, name="base_loss.pcap", times=3):
    """The capture replayed ``times`` times: same 4-tuple and sequence numbers,
    so every pure ACK of a replay is a keep-alive to Wireshark (the benchmark's
    port-reuse case, small)."""
    import struct
    raw = (DATA / name).read_bytes()
    recs, off = [], 24
    while off + 16 <= len(raw):
        s, us, incl, orig = struct.unpack_from("<IIII", raw, off)
        recs.append((s, us, incl, orig, raw[off + 16: off + 16 + incl]))
        off += 16 + incl
    span = recs[-1][0] - recs[0][0] + 1
    out = [raw[:24]]
    for k in range(times):
        out += [struct.pack("<IIII", s + k * span, us, incl, orig) + d for s, us, incl, orig, d in recs]
    p = tmp_path / f"replayed_{name}"
    p.write_bytes(b"".join(out))
    return p


@pytest.mark.parametrize("batch", [64, 1000, 16384])
def test_replayed_connection_vectorised_equals_exact(tmp_path, batch):
    p = replayed(tmp_path)
    exact = np.concatenate(list(iter_segment_batches(p, exact=True)))
    fast = np.concatenate(list(iter_segment_batches(p, batch_packets=batch)))
    assert np.array_equal(exact, fast)
    assert np.count_nonzero(exact["analysis"] & F.KEEP_ALIVE) > 100


def keepalives(tmp_path):
    """Data, then keep-alives answered by keep-alive ACKs, then more data with duplicate ACKs."""
    from test_pcap_common import ether, ipv4_tcp, pcap_bytes
    from wirelab.observe.pcap.tcpflags import ACK, PSH, SYN
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)

    def tcp(a, b, *rest):
        return ipv4_tcp(a[0], b[0], a[1], b[1], *rest)
    pk = [tcp(c, s, 100, 0, SYN), tcp(s, c, 900, 101, SYN | ACK), tcp(c, s, 101, 901, ACK)]
    seq = 101
    for _ in range(4):
        pk += [tcp(c, s, seq, 901, ACK | PSH, bytes(100)), tcp(s, c, 901, seq + 100, ACK)]
        seq += 100
    for _ in range(30):   # keep-alive (seq one below the next), answered with the same ACK
        pk += [tcp(c, s, seq - 1, 901, ACK), tcp(s, c, 901, seq, ACK)]
    for i in range(30):   # a lost segment: the receiver repeats its ACK
        pk += [tcp(c, s, seq + 100 * (i + 1), 901, ACK | PSH, bytes(100)), tcp(s, c, 901, seq, ACK)]
    p = tmp_path / "keepalive.pcap"
    p.write_bytes(pcap_bytes(1, [(1_700_000_000_000_000_000 + i * 10_000_000, ether(x)) for i, x in enumerate(pk)]))
    return p


@pytest.mark.parametrize("batch", [5, 16, 1000])
def test_keepalive_acks_vectorised_equals_exact_and_tshark(tmp_path, batch):
    p = keepalives(tmp_path)
    exact = np.concatenate(list(iter_segment_batches(p, exact=True)))
    fast = np.concatenate(list(iter_segment_batches(p, batch_packets=batch)))
    assert np.array_equal(exact, fast)
    assert np.count_nonzero(exact["analysis"] & F.KEEP_ALIVE) == np.count_nonzero(exact["analysis"] & F.KEEP_ALIVE_ACK) == 30
    assert np.count_nonzero(exact["analysis"] & F.DUPLICATE_ACK) == 30
    if batch == 1000 and shutil.which("tshark"):
        for field, bit in (("keep_alive", F.KEEP_ALIVE), ("keep_alive_ack", F.KEEP_ALIVE_ACK),
                           ("duplicate_ack", F.DUPLICATE_ACK), ("lost_segment", F.LOST_SEGMENT)):
            assert flagged(exact, bit) == tshark_frames(p, field), field


def test_replayed_connection_equals_tshark(tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    p = replayed(tmp_path)
    recs = np.concatenate(list(iter_segment_batches(p)))
    for field, bit in dict(TSHARK_FLAGS, keep_alive=F.KEEP_ALIVE, keep_alive_ack=F.KEEP_ALIVE_ACK).items():
        want, got = tshark_frames(p, field), flagged(recs, bit)
        assert got == want, (field, sorted(want - got)[:10], sorted(got - want)[:10])
