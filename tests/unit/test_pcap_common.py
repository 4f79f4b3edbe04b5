"""Shared paths and helpers of the pcap unit tests (no tests here)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data" / "pcap"
GOLDEN = json.loads((DATA / "golden.json").read_text())
PCAPSTAT = ROOT / "tools" / "pcapstat.py"


# -- small captures built in the tests (struct only, exact bytes) --------------

import struct  # noqa: E402


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_tcp(src, dst, sport, dport, seq, ack, flags, payload=b"", win=65535, ip_id=1, options=b""):
    """An IPv4/TCP packet (no link header) with valid checksums."""
    s, d = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    options += b"\0" * (-len(options) % 4)
    off = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, win, 0, 0) + options + payload
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp


def ether(ip: bytes, vlan=None) -> bytes:
    head = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01"
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + b"\x08\x00" + ip


def pcap_bytes(linktype, pkts, nanos=False):
    """pkts: [(ts_ns, frame bytes)] -> a little-endian pcap file's bytes."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, data in pkts:
        frac = ts % 1_000_000_000 if nanos else ts % 1_000_000_000 // 1000
        out.append(struct.pack("<IIII", ts // 1_000_000_000, frac, len(data), len(data)) + data)
    return b"".join(out)


def ng_block(btype, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng_bytes(linktype, pkts):
    """pkts: [(ticks (microseconds), frame bytes)] -> a pcapng file (one interface)."""
    out = [ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           ng_block(1, struct.pack("<HHI", linktype, 0, 65535))]
    for ticks, data in pkts:
        out.append(ng_block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
                            + data))
    return b"".join(out)
