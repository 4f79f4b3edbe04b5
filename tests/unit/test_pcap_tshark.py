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
