"""tcpdump's exit counters and the count of complete records in a growing pcap."""

import struct

from wirelab.observe.capture import CaptureResult, complete_records, parse_counters

STDERR = """tcpdump: listening on r1-eth1, link-type EN10MB (Ethernet), snapshot length 128 bytes
1387 packets captured
1390 packets received by filter
3 packets dropped by kernel
"""


def test_parse_counters():
    assert parse_counters(STDERR) == {"captured": 1387, "received by filter": 1390,
                                      "dropped by kernel": 3}
    assert parse_counters("1 packet captured\n") == {"captured": 1}
    assert parse_counters("tcpdump: no such device\n") == {}


def _pcap(records, partial=b""):
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 128, 1)
    body = b"".join(struct.pack("<IIII", 1, 0, len(r), len(r)) + r for r in records)
    return head + body + partial


def test_complete_records_ignores_a_record_being_written(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(_pcap([b"a" * 60, b"b" * 54]))
    assert complete_records(str(p)) == 2
    p.write_bytes(_pcap([b"a" * 60], partial=struct.pack("<IIII", 1, 0, 60, 60) + b"x" * 10))
    assert complete_records(str(p)) == 1
    p.write_bytes(b"\xd4\xc3")
    assert complete_records(str(p)) == 0
    assert complete_records(str(tmp_path / "missing.pcap")) == 0


def test_capture_with_kernel_drops_is_not_complete():
    r = CaptureResult(problems=[], dropped_by_kernel=3, dropped_by_interface=0)
    assert not r.complete
    assert CaptureResult(problems=[], dropped_by_kernel=0, dropped_by_interface=0).complete


def test_reading_functions_use_the_house_reader(tmp_path):
    """pcapng and gzip are read too; another link type is refused in one line."""
    import gzip

    import pytest

    from wirelab.observe.capture import count_packets, ethernet_frames
    from wirelab.observe.pcap import PcapFormatError
    from wirelab.errors import WirelabError

    frames = [b"\x02" * 12 + b"\x08\x00" + b"a" * 46, b"\x02" * 12 + b"\x08\x00" + b"b" * 60]
    p = tmp_path / "x.pcap.gz"  # the name does not matter: gzip is found by its magic
    p.write_bytes(gzip.compress(_pcap(frames)))
    assert list(ethernet_frames(str(p))) == frames
    assert count_packets(str(p)) == complete_records(str(p)) == 2
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(_pcap(frames)[:20] + struct.pack("<I", 101) + _pcap(frames)[24:])
    with pytest.raises(PcapFormatError, match=r"raw.pcap: link type 101, expected Ethernet \(1\)$") as e:
        list(ethernet_frames(str(raw)))
    assert isinstance(e.value, WirelabError)
    text = tmp_path / "t.pcap"
    text.write_text("not a capture")
    with pytest.raises(PcapFormatError, match="not a pcap or pcapng file"):
        count_packets(str(text))
    assert complete_records(str(text)) == 0
