"""The same packets written with different link types and file formats."""

import numpy as np
import pytest

from test_pcap_common import DATA
from wirelab.observe.pcap import PcapReader, iter_segment_batches

VARIANTS = {
    "link_sll.pcap": [113], "link_sll2.pcap": [276], "link_raw.pcap": [101], "link_null.pcap": [0],
    "link_vlan.pcap": [1], "link_bigendian.pcap": [1], "link_nanosecond.pcap": [1],
    "link_pcapng.pcapng": [1, 101], "link_pcapng_be.pcapng": [1, 101],
}
COMPARED = ("frame", "stream", "dir", "seq", "ack", "rel_seq", "rel_ack", "len", "flags", "win",
            "ipid", "tsval", "tsecr", "analysis")


def segments(name):
    return np.concatenate(list(iter_segment_batches(DATA / name)))


REF = None


def reference():
    global REF
    if REF is None:
        REF = segments("link_ethernet.pcap")
    return REF


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_segments_as_ethernet(name):
    ref, got = reference(), segments(name)
    assert len(got) == len(ref) == 300
    for field in COMPARED:
        assert np.array_equal(got[field], ref[field]), field
    r = PcapReader(DATA / name)
    list(r)
    assert sorted(r.linktypes) == VARIANTS[name]
    assert r.format == ("pcapng" if name.endswith(".pcapng") else "pcap")


def test_timestamps():
    ref = reference()
    assert np.array_equal(segments("link_bigendian.pcap")["ts_ns"], ref["ts_ns"])
    # nanosecond file: written with +123 ns that microseconds cannot carry
    assert np.array_equal(segments("link_nanosecond.pcap")["ts_ns"], ref["ts_ns"] + 123)
    ng = segments("link_pcapng.pcapng")
    spb = ng["frame"] % 50 == 1  # frames written as Simple Packet Blocks carry no time
    spb[0] = False
    assert (ng["ts_ns"][spb] == 0).all()
    assert np.array_equal(ng["ts_ns"][~spb], ref["ts_ns"][~spb])


def test_segment_records_describe_the_handshake():
    ref = reference()
    syn, synack, ack = ref[:3]
    assert (syn["flags"], synack["flags"], ack["flags"]) == (0x02, 0x12, 0x10)
    assert (syn["dir"], synack["dir"], ack["dir"]) == (0, 1, 0)
    assert syn["rel_seq"] == 0 and synack["rel_ack"] == 1 and ack["rel_seq"] == 1
    assert syn["tsval"] > 0 and synack["tsecr"] == syn["tsval"] and syn["ipid"] >= 0
    assert synack["rtt_ns"] > 0  # the SYN-ACK acknowledges the SYN
