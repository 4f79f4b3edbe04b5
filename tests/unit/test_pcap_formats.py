"""The house reader: gzip-compressed captures, Linux cooked v2, VLAN tags, raw IP,
timestamps that overflow, corrupt records; the same packets read every way."""

import gzip
import struct

import numpy as np
import pytest

from test_pcap_common import DATA, ether, ipv4_tcp, pcap_bytes, pcapng_bytes
from wirelab.observe.impairment import read_packets
from wirelab.observe.pcap import PcapReader, analyze, iter_segment_batches
from wirelab.observe.pcap.tcpflags import ACK, PSH, SYN

C, S = "10.0.0.1", "10.0.0.2"
T0 = 1_700_000_000_000_000_000


def conversation():
    """IP packets of a short connection: handshake, 3 data segments and their ACKs."""
    pk = [ipv4_tcp(C, S, 40000, 80, 100, 0, SYN, ip_id=1),
          ipv4_tcp(S, C, 80, 40000, 900, 101, SYN | ACK, ip_id=2),
          ipv4_tcp(C, S, 40000, 80, 101, 901, ACK, ip_id=3)]
    for i in range(3):
        pk.append(ipv4_tcp(C, S, 40000, 80, 101 + 50 * i, 901, ACK | PSH, bytes(50), ip_id=4 + i))
        pk.append(ipv4_tcp(S, C, 80, 40000, 901, 151 + 50 * i, ACK, ip_id=10 + i))
    return pk


def sll2(ip: bytes) -> bytes:
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address (8)
    return struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02\0\0\0\0\x01")


def frames(kind):
    out = []
    for i, ip in enumerate(conversation()):
        t = T0 + i * 1_000_000
        if kind == "ether":
            out.append((t, ether(ip)))
        elif kind == "vlan":
            out.append((t, ether(ip, vlan=42)))
        elif kind == "sll2":
            out.append((t, sll2(ip) + ip))
        elif kind == "sll":
            out.append((t, struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01", 0x0800) + ip))
        elif kind == "raw":
            out.append((t, ip))
    return out


LINKTYPE = {"ether": 1, "vlan": 1, "sll2": 276, "sll": 113, "raw": 101}


def segments(path):
    return np.concatenate(list(iter_segment_batches(path)))


@pytest.fixture
def reference(tmp_path):
    p = tmp_path / "ref.pcap"
    p.write_bytes(pcap_bytes(1, frames("ether")))
    return segments(p)


@pytest.mark.parametrize("kind", ["vlan", "sll2", "sll", "raw"])
@pytest.mark.parametrize("compress", [False, True])
def test_link_types_and_gzip_give_the_same_segments(tmp_path, reference, kind, compress):
    data = pcap_bytes(LINKTYPE[kind], frames(kind))
    p = tmp_path / "capture.bin"  # no telling name: gzip is recognised by its magic
    p.write_bytes(gzip.compress(data) if compress else data)
    got = segments(p)
    assert len(got) == len(reference) == 9
    for field in ("frame", "ts_ns", "stream", "dir", "seq", "ack", "len", "flags", "analysis", "ipid"):
        assert np.array_equal(got[field], reference[field]), field
    r = PcapReader(p)
    list(r)
    assert r.compressed == compress and r.linktypes == {LINKTYPE[kind]} and r.truncated is None
    # the impairment ledger reads through the same reader
    pk = read_packets(str(p))
    assert [x.ip_id for x in pk] == list(range(1, 4)) + [4, 10, 5, 11, 6, 12]
    assert pk[0].src == C and pk[0].flags == SYN and pk[3].payload_len == 50


@pytest.mark.parametrize("name", ["link_pcapng.pcapng", "link_sll2.pcap", "link_vlan.pcap", "base_loss.pcap"])
def test_committed_captures_read_the_same_gzipped(tmp_path, name):
    p = tmp_path / (name + ".gz")
    p.write_bytes(gzip.compress((DATA / name).read_bytes()))
    a, b = analyze(DATA / name), analyze(p)
    assert b.compressed and not a.compressed
    assert (b.packets, b.tcp_packets, b.totals()) == (a.packets, a.tcp_packets, a.totals())


def test_cut_gzip_stream_reports_the_packets_before_the_cut(tmp_path):
    whole = gzip.compress((DATA / "link_ethernet.pcap").read_bytes())
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(whole[: len(whole) // 2])
    rep = analyze(p)
    assert 0 < rep.packets < 300
    assert rep.truncated.startswith(f"compressed data corrupt or cut after {rep.packets} packets")


def test_pcapng_timestamp_beyond_int64_is_clamped_and_said(tmp_path):
    """High word 0xFFFFFFFF: about 584 000 years of microseconds; tshark reads it."""
    fr = frames("ether")
    pk = [((t - T0) // 1000 + 1_700_000_000_000_000, d) for t, d in fr]
    pk[4] = ((0xFFFFFFFF << 32) | 7, pk[4][1])
    p = tmp_path / "huge_ts.pcapng"
    p.write_bytes(pcapng_bytes(1, pk))
    rep = analyze(p)
    assert rep.packets == 9 and rep.tcp_packets == 9 and rep.truncated is None
    assert rep.warnings == ["1 packets have timestamps outside int64 nanoseconds "
                            "(before 1677 or after 2262); clamped"]
    ts = segments(p)["ts_ns"]
    assert ts[4] == 2**63 - 1 and ts[3] == 1_700_000_000_003_000_000


def test_pcapstat_warns_about_clamped_timestamps(tmp_path):
    import subprocess

    from test_pcap_common import PCAPSTAT
    pk = [(1, d) for _, d in frames("ether")]
    pk[0] = (0xFFFFFFFF << 32, pk[0][1])
    p = tmp_path / "huge_ts.pcapng"
    p.write_bytes(pcapng_bytes(1, pk))
    r = subprocess.run([str(PCAPSTAT), str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "9 packets" in r.stdout
    assert r.stderr == f"pcapstat: warning: {p}: 1 packets have timestamps outside int64 nanoseconds " \
                       "(before 1677 or after 2262); clamped\n"


def test_corrupt_record_length_stops_with_a_reason(tmp_path):
    data = bytearray(pcap_bytes(1, frames("ether")))
    # the third record's captured length: far beyond any snap length
    off = 24
    for _ in range(2):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    data[off + 8: off + 12] = struct.pack("<I", 0x7FFFFFFF)
    p = tmp_path / "corrupt.pcap"
    p.write_bytes(bytes(data))
    rep = analyze(p)
    assert rep.packets == 2 and rep.truncated == "corrupt record length 2147483647 after 2 packets"


def test_corrupt_pcapng_block_stops_with_a_reason(tmp_path):
    data = bytearray(pcapng_bytes(1, [(1, d) for _, d in frames("ether")]))
    # SHB (28) + IDB (20) + first EPB: make the second EPB's length too short
    first_epb = 28 + 20
    second = first_epb + struct.unpack_from("<I", data, first_epb + 4)[0]
    data[second + 4: second + 8] = struct.pack("<I", 16)
    p = tmp_path / "corrupt.pcapng"
    p.write_bytes(bytes(data))
    rep = analyze(p)
    assert rep.packets == 1 and rep.truncated == "corrupt pcapng block (type 6, length 16) after 1 packets"
