#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
"""Make the small captures in tests/data/pcap/ that the pcap unit tests use.

Two steps:

``--record`` (root) records *real* TCP transfers over the loopback interface
of a private network namespace (``unshare -n``, so nothing outside is
touched and the namespace disappears with the process)::

    +---------------- unshare -n -----------------+
    |  client ---- lo (mtu 1500, no TSO/GSO) ---> server:5001
    |               |  tcpdump -s 96 -w base_*.pcap
    |               +- nft: drop every Nth data packet after capture
    +---------------------------------------------+

  * ``base_clean.pcap``   600 kB transfer, no loss.
  * ``base_loss.pcap``    every 23rd data packet to the server is dropped by
                          nft *after* tcpdump saw it (prerouting), so the
                          kernel really retransmits (fast retransmissions,
                          duplicate ACKs, SACK, possibly timeouts).
  * ``base_zerowin.pcap`` a receiver that reads slowly with a small buffer
                          (many window updates; zero windows if the kernel
                          lets the buffer fill).
  * ``base_v6.pcap``      the clean transfer over ::1.

The default step derives every other capture from the committed base
captures, deterministically (fixed seeds, no clock): packets dropped from the
trace, duplicated, reordered; and the same packets rewritten as Linux cooked
(SLL, SLL2), raw IP, BSD loopback, 802.1Q-tagged Ethernet, big-endian pcap,
nanosecond pcap and pcapng with two interfaces of different link types
(EPB and SPB blocks).  It then writes ``golden.json`` with the analysis
results (``--golden``, default on), which tests compare against, plus what
was injected (``injected``), from which the tests derive exact expectations.
"""

import argparse
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wirelab.observe.pcap.tcpflags import ACK  # noqa: E402

OUT = ROOT / "tests" / "data" / "pcap"
SNAPLEN = 96
PORT = 5001


# -- minimal pcap I/O (raw bytes, no third-party code so the output is exact) --

def read_pcap(path: Path):
    """Return (linktype, [(ts_ns, orig_len, data)]) of a little/big-endian pcap."""
    raw = path.read_bytes()
    magic = struct.unpack("<I", raw[:4])[0]
    e = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic = struct.unpack(e + "I", raw[:4])[0]
    ns = magic == 0xA1B23C4D
    linktype = struct.unpack(e + "I", raw[20:24])[0]
    pkts, off = [], 24
    while off + 16 <= len(raw):
        s, f, incl, orig = struct.unpack_from(e + "IIII", raw, off)
        pkts.append((s * 1_000_000_000 + (f if ns else f * 1000), orig, raw[off + 16: off + 16 + incl]))
        off += 16 + incl
    return linktype, pkts


def write_pcap(path: Path, linktype: int, pkts, *, endian: str = "<", nanos: bool = False) -> None:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for ts, orig, data in pkts:
        frac = ts % 1_000_000_000 if nanos else (ts % 1_000_000_000) // 1000
        out.append(struct.pack(endian + "IIII", ts // 1_000_000_000, frac, len(data), orig))
        out.append(data)
    path.write_bytes(b"".join(out))


def _ng_block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def write_pcapng(path: Path, ifaces, pkts, *, endian: str = "<") -> None:
    """ifaces: [(linktype, tsresol_exp10, snaplen)]; pkts: [(iface, ts_ns, orig, data, simple)]."""
    e = endian
    out = [_ng_block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)]
    for lt, res, snap in ifaces:
        opts = struct.pack(e + "HHB3x", 9, 1, res) + struct.pack(e + "HH", 0, 0)
        out.append(_ng_block(1, struct.pack(e + "HHI", lt, 0, snap) + opts, e))
    for iface, ts, orig, data, simple in pkts:
        if simple:
            # SPB: always interface 0, no timestamp, captured length implied
            # by the block length (and the interface's snap length).
            out.append(_ng_block(3, struct.pack(e + "I", orig) + data, e))
            continue
        ticks = ts // (10 ** (9 - ifaces[iface][1]))
        out.append(_ng_block(6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                            len(data), orig) + data, e))
    path.write_bytes(b"".join(out))


# -- recording real traffic --------------------------------------------------

def _run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)
    if r.returncode:
        raise RuntimeError(f"{argv} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def _transfer(host: str, nbytes: int, slow_reader: bool) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if slow_reader:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind((host, PORT))
    srv.listen(1)
    got = []

    def serve():
        c, _ = srv.accept()
        total = 0
        with c:
            while True:
                if slow_reader:
                    # The application is deliberately slow so the window closes.
                    threading.Event().wait(0.02)
                b = c.recv(2048 if slow_reader else 65536)
                if not b:
                    break
                total += len(b)
        got.append(total)

    th = threading.Thread(target=serve)
    th.start()
    cl = socket.create_connection((host, PORT), timeout=30)
    payload = bytes(random.Random(1).getrandbits(8) for _ in range(1024)) * (nbytes // 1024)
    cl.sendall(payload)
    cl.shutdown(socket.SHUT_WR)
    cl.recv(1)  # wait for the server's FIN
    cl.close()
    th.join(timeout=60)
    srv.close()
    if got != [len(payload)]:
        raise RuntimeError(f"server received {got}, expected {len(payload)} bytes")


def _wait_until(cond, timeout: float, what: str) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.05)


def _closed_both_ways(path: Path) -> bool:
    """The capture holds a FIN each way and an ACK after the last FIN."""
    try:
        _, pkts = read_pcap(path)
    except (struct.error, OSError):
        return False
    fins, after = 0, False
    for _, _, d in pkts:
        if len(d) < 14 + 20 + 14:
            continue
        fl = d[14 + (d[14] & 15) * 4 + 13] if d[12:14] == b"\x08\x00" else d[14 + 40 + 13]
        if fl & 1:
            fins += 1
            after = False
        elif fins >= 2 and fl & ACK:
            after = True
    return fins >= 2 and after


def _record_inside(name: str, host: str, nbytes: int, drop_every: int, slow: bool) -> None:
    """Runs inside the private namespace."""
    _run(["ip", "link", "set", "lo", "up", "mtu", "1500"])
    subprocess.run(["ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off"],
                   capture_output=True, timeout=10)
    if drop_every:
        rules = (f"table inet wlt {{\n chain pre {{\n type filter hook prerouting priority 0;\n"
                 f" tcp dport {PORT} meta length > 200 numgen inc mod {drop_every} == 7 drop\n }}\n}}\n")
        _run(["nft", "-f", "-"], input=rules)
    path = OUT / name
    tcpdump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", str(SNAPLEN), "-U", "--immediate-mode",
                                "-w", str(path),
                                "tcp port %d" % PORT], stderr=subprocess.PIPE, text=True)
    try:
        line = tcpdump.stderr.readline()  # "listening on lo ..." once the capture runs
        if "listening" not in line:
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        _transfer(host, nbytes, slow)
        _wait_until(lambda: _closed_both_ways(path), timeout=10, what=f"{path} to hold both FINs")
    finally:
        tcpdump.send_signal(2)  # SIGINT flushes the file
        tcpdump.wait(timeout=10)
        print(tcpdump.stderr.read().strip().replace("\n", "; "), file=sys.stderr)


def record() -> None:
    if os.geteuid() != 0:
        sys.exit("make_test_captures: --record needs root (unshare -n, nft, tcpdump)")
    for name, host, nbytes, drop, slow in (
            ("base_clean.pcap", "127.0.0.1", 600_000, 0, False),
            ("base_loss.pcap", "127.0.0.1", 800_000, 23, False),
            ("base_zerowin.pcap", "127.0.0.1", 120_000, 0, True),
            ("base_v6.pcap", "::1", 300_000, 0, False)):
        _run(["unshare", "-n", sys.executable, __file__, "--_inside", name, host, str(nbytes),
              str(drop), "1" if slow else "0"])
        print(f"recorded {name}: {(OUT / name).stat().st_size} bytes")


# -- deterministic derivations ------------------------------------------------

def _tcp_info(data: bytes):
    """(is_data_c2s, seq, payload_len) for an Ethernet IPv4 frame, else None."""
    if len(data) < 54 or data[12:14] != b"\x08\x00":
        return None
    ihl = (data[14] & 15) * 4
    tot = struct.unpack(">H", data[16:18])[0]
    t = 14 + ihl
    dport = struct.unpack(">H", data[t + 2:t + 4])[0]
    seq = struct.unpack(">I", data[t + 4:t + 8])[0]
    plen = tot - ihl - (data[t + 12] >> 4) * 4
    return dport == PORT, seq, plen


def derive() -> dict:
    """Write the derived captures; return what was injected into each."""
    injected: dict[str, dict] = {}
    lt, clean = read_pcap(OUT / "base_clean.pcap")
    assert lt == 1, lt
    data_idx = [i for i, (_, _, d) in enumerate(clean) if (x := _tcp_info(d)) and x[0] and x[2] > 0]

    # Segments missing from the capture (capture loss, not network loss).
    rng = random.Random(11)
    drop = sorted(rng.sample(data_idx[5:-5], 6))
    # keep the dropped segments apart so each gives its own gap
    drop = [d for k, d in enumerate(drop) if k == 0 or d - drop[k - 1] > 3]
    write_pcap(OUT / "crafted_drop.pcap", 1, [p for i, p in enumerate(clean) if i not in set(drop)])
    injected["crafted_drop.pcap"] = {"dropped_data_segments": len(drop), "frames": [i + 1 for i in drop]}

    # Duplicated data segments (same bytes, 10 us later, right after the original).
    rng = random.Random(12)
    dup = sorted(rng.sample(data_idx[5:-5], 8))
    out = []
    for i, (ts, orig, d) in enumerate(clean):
        out.append((ts, orig, d))
        if i in set(dup):
            out.append((ts + 10_000, orig, d))
    out.sort(key=lambda p: p[0])
    write_pcap(OUT / "crafted_dup.pcap", 1, out)
    injected["crafted_dup.pcap"] = {"duplicated_data_segments": len(dup)}

    # Reordered: swap a data segment with the next data segment (timestamps
    # stay in capture order, only contents move).
    rng = random.Random(13)
    cand = [k for k in range(5, len(data_idx) - 6)]
    picks = sorted(rng.sample(cand, 10))
    picks = [p for k, p in enumerate(picks) if k == 0 or p - picks[k - 1] > 2]
    re = list(clean)
    for k in picks:
        a, b = data_idx[k], data_idx[k + 1]
        (ta, oa, da), (tb, ob, db) = re[a], re[b]
        re[a], re[b] = (ta, ob, db), (tb, oa, da)
    write_pcap(OUT / "crafted_reorder.pcap", 1, re)
    injected["crafted_reorder.pcap"] = {"swapped_pairs": len(picks)}

    # Link types and file formats, from the first 300 packets of the clean run.
    few = clean[:300]

    def l3(d):  # strip Ethernet
        return d[14:]

    def cut(p, hdr_add, body):
        ts, orig, _ = p
        return ts, orig - 14 + hdr_add, body

    write_pcap(OUT / "link_ethernet.pcap", 1, few)
    write_pcap(OUT / "link_sll.pcap", 113, [cut(p, 16, struct.pack(">HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + l3(p[2])) for p in few])
    write_pcap(OUT / "link_sll2.pcap", 276, [cut(p, 20, struct.pack(">HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\0" * 8) + l3(p[2])) for p in few])
    write_pcap(OUT / "link_raw.pcap", 101, [cut(p, 0, l3(p[2])) for p in few])
    write_pcap(OUT / "link_null.pcap", 0, [cut(p, 4, struct.pack("<I", 2) + l3(p[2])) for p in few])
    write_pcap(OUT / "link_vlan.pcap", 1, [(ts, orig + 4, d[:12] + b"\x81\x00\x00\x2a" + d[12:]) for ts, orig, d in few])
    write_pcap(OUT / "link_bigendian.pcap", 1, few, endian=">")
    write_pcap(OUT / "link_nanosecond.pcap", 1, [(ts + 123, o, d) for ts, o, d in few], nanos=True)
    # pcapng: interface 0 raw IP (ns resolution), interface 1 Ethernet (us);
    # odd packets on interface 1, every 50th packet as a Simple Packet Block.
    ng = []
    for i, (ts, orig, d) in enumerate(few):
        if i % 2:
            ng.append((1, ts, orig, d, False))
        else:
            ng.append((0, ts, orig - 14, d[14:], i % 50 == 0 and i > 0))
    # An SPB holds min(original length, snap length) bytes: the raw-IP
    # interface's snap length is that of the Ethernet capture minus 14.
    ifaces = [(101, 9, SNAPLEN - 14), (1, 6, SNAPLEN)]
    write_pcapng(OUT / "link_pcapng.pcapng", ifaces, ng)
    write_pcapng(OUT / "link_pcapng_be.pcapng", ifaces, [x[:4] + (False,) for x in ng], endian=">")

    # Error cases.
    (OUT / "err_empty.pcap").write_bytes(b"")
    (OUT / "err_text.pcap").write_bytes(b"this is not a capture\n")
    raw = (OUT / "link_ethernet.pcap").read_bytes()
    # cut inside the 101st record: 100 whole packets remain
    off, n = 24, 0
    while n < 100:
        off += 16 + struct.unpack_from("<I", raw, off + 8)[0]
        n += 1
    (OUT / "err_truncated.pcap").write_bytes(raw[:off + 30])
    injected["err_truncated.pcap"] = {"complete_packets": 100}
    return injected


def golden(injected: dict) -> None:
    from wirelab.observe.pcap import analyze
    res = {}
    for p in sorted(OUT.iterdir()):
        if p.suffix not in (".pcap", ".pcapng") or p.name.startswith("err_") and p.name != "err_truncated.pcap":
            continue
        rep = analyze(p)
        res[p.name] = {"packets": rep.packets, "tcp_packets": rep.tcp_packets,
                       "truncated": rep.truncated, "flows": len(rep.flows), "totals": rep.totals()}
    out = {"injected": injected, "captures": res}
    (OUT / "golden.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT / 'golden.json'}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_inside":
        name, host, nbytes, drop, slow = sys.argv[2:7]
        _record_inside(name, host, int(nbytes), int(drop), slow == "1")
        return
    ap = argparse.ArgumentParser(description="Make the small captures in tests/data/pcap/ (see the module docstring).")
    ap.add_argument("--record", action="store_true", help="record new base captures (root)")
    ap.add_argument("--no-golden", action="store_true", help="do not rewrite golden.json")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.record:
        if not shutil.which("tcpdump"):
            sys.exit("make_test_captures: tcpdump not found")
        record()
    inj = derive()
    if not a.no_golden:
        golden(inj)


if __name__ == "__main__":
    main()
