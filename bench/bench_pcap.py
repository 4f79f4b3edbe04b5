#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
"""Throughput and memory of wirelab.observe.pcap against dpkt and tshark.

Usage::

    bench/bench_pcap.py                 # record a capture first (root)
    bench/bench_pcap.py some.pcap       # use an existing capture

Without an argument it records real traffic in a private network namespace
(``unshare -n``): eight concurrent TCP transfers over loopback (MTU 1500, no
TSO/GSO), with nft dropping every 97th data packet after tcpdump saw it so the
kernel retransmits, captured with ``tcpdump -s 96``; then every 50th pair of
data segments is swapped (reordering).  It prints packets/s for our analysis
(vectorised; and the exact packet-by-packet path on a 20k-packet slice),
plain ``dpkt`` iteration and ``tshark`` computing the same analysis flags,
and the peak RSS of the analysis (fresh process) for the file and for a file
twice as long, to show that memory does not grow with the file size.

Then the *reused 4-tuples* case (``--reuse`` runs only this one, no root
needed): ``tests/data/pcap/base_loss.pcap`` (a real transfer with loss) as
eight interleaved connections, replayed until the capture holds at least
``REUSE_PACKETS`` packets -- every replay with the same 4-tuples and sequence
numbers, so to Wireshark each replay continues the same connection, its data
are retransmissions and its pure ACKs keep-alives.  Target: >= 500k packets/s.

This prints figures; it is not a test.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import make_test_captures as mtc  # noqa: E402  (pcap I/O and namespace helpers)

FLOWS = 8
BYTES_PER_FLOW = 34_000_000
PORT = 5001
REUSE_PACKETS = 200_000
REUSE_SEED = ROOT / "tests" / "data" / "pcap" / "base_loss.pcap"
REUSE_TARGET_PPS = 500_000


def record(out: Path) -> None:
    if os.geteuid() != 0:
        sys.exit("bench_pcap: recording needs root; pass a capture file instead")
    r = subprocess.run(["unshare", "-n", sys.executable, __file__, "--_inside", str(out)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode:
        sys.exit(f"bench_pcap: recording failed ({r.returncode}): {r.stderr.strip()}")
    print(r.stderr.strip().replace("\n", "; "))


def _size_settled(path: Path, last: list) -> bool:
    """True once the file size stopped changing between two polls."""
    size = path.stat().st_size
    settled = bool(last) and last[-1] == size
    last.append(size)
    return settled


def _inside(out: str) -> None:
    import socket
    mtc._run(["ip", "link", "set", "lo", "up", "mtu", "1500"])
    subprocess.run(["ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off"],
                   capture_output=True, timeout=10)
    rules = ("table inet wlb {\n chain pre {\n type filter hook prerouting priority 0;\n"
             f" tcp dport {PORT} meta length > 200 numgen inc mod 97 == 5 drop\n }}\n}}\n")
    mtc._run(["nft", "-f", "-"], input=rules)
    tcpdump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "96", "-B", "65536", "--immediate-mode",
                                "-w", out, f"tcp port {PORT}"], stderr=subprocess.PIPE, text=True)
    try:
        if "listening" not in tcpdump.stderr.readline():
            raise RuntimeError("tcpdump did not start")
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", PORT))
        srv.listen(FLOWS)

        def serve(c):
            with c:
                while c.recv(1 << 16):
                    pass

        servers = []

        def accept_all():
            for _ in range(FLOWS):
                c, _ = srv.accept()
                th = threading.Thread(target=serve, args=(c,))
                th.start()
                servers.append(th)

        acc = threading.Thread(target=accept_all)
        acc.start()
        payload = os.urandom(1 << 16)

        def client():
            c = socket.create_connection(("127.0.0.1", PORT))
            sent = 0
            while sent < BYTES_PER_FLOW:
                c.sendall(payload)
                sent += len(payload)
            c.close()

        clients = [threading.Thread(target=client) for _ in range(FLOWS)]
        for th in clients:
            th.start()
        for th in clients:
            th.join(timeout=300)
        acc.join(timeout=60)
        for th in servers:
            th.join(timeout=60)
        srv.close()
        sizes: list = []
        mtc._wait_until(lambda: _size_settled(Path(out), sizes), 30, "tcpdump to drain")
    finally:
        tcpdump.send_signal(2)
        tcpdump.wait(timeout=30)
        print(tcpdump.stderr.read().strip(), file=sys.stderr)


def reorder(src: Path, dst: Path) -> None:
    lt, pkts = mtc.read_pcap(src)
    data = [i for i, (_, _, d) in enumerate(pkts) if len(d) > 54 and d[12:14] == b"\x08\x00"
            and int.from_bytes(d[36:38], "big") == PORT and int.from_bytes(d[16:18], "big") > 200]
    for k in range(0, len(data) - 1, 100):
        a, b = data[k], data[k + 1]
        (ta, oa, da), (tb, ob, db) = pkts[a], pkts[b]
        pkts[a], pkts[b] = (ta, ob, db), (tb, oa, da)
    mtc.write_pcap(dst, lt, pkts)


def double(src: Path, dst: Path) -> None:
    """The capture twice in a row, the copy shifted in time (same flows, 2x long)."""
    lt, pkts = mtc.read_pcap(src)
    shift = pkts[-1][0] - pkts[0][0] + 1_000_000_000
    mtc.write_pcap(dst, lt, pkts + [(t + shift, o, d) for t, o, d in pkts])


def reused(dst: Path) -> int:
    """Write the reused-4-tuple capture (see the module docstring); return its packet count."""
    lt, pkts = mtc.read_pcap(REUSE_SEED)
    span = pkts[-1][0] - pkts[0][0] + 10_000_000
    flows = []
    for i in range(FLOWS):
        port = (40000 + i).to_bytes(2, "big")
        # Ethernet + IPv4 without options: the client's port is at 34 (source) or 36 (destination).
        flows.append([(t + i * 100_000, o, d[:34] + port + d[36:] if d[36:38] == PORT.to_bytes(2, "big")
                       else d[:36] + port + d[38:]) for t, o, d in pkts])
    one = sorted((p for f in flows for p in f), key=lambda p: p[0])
    out, k = [], 0
    while len(out) < REUSE_PACKETS:
        out += [(t + k * span, o, d) for t, o, d in one]
        k += 1
    mtc.write_pcap(dst, lt, out)
    return len(out)


def reuse_case(tmp: Path) -> None:
    from wirelab.observe.pcap import analyze
    path = tmp / "reused.pcap"
    npk = reused(path)
    print(f"reused 4-tuples: {path.name} ({npk} packets, {FLOWS} connections replayed "
          f"{npk // (FLOWS * len(mtc.read_pcap(REUSE_SEED)[1]))} times)")
    walls, cpus = [], []
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        rep = analyze(path)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    tot = rep.totals()
    best = npk / min(walls)
    print(f"  wirelab analyze():       {min(walls):6.2f} s  {best:10,.0f} packets/s (best of 3 wall; "
          f"CPU {npk / min(cpus):,.0f}/s) target {REUSE_TARGET_PPS:,}: {'met' if best >= REUSE_TARGET_PPS else 'MISSED'}"
          f" ({len(rep.flows)} flows, {tot.get('retransmissions', 0)} retransmissions, "
          f"{tot.get('keep_alives', 0)} keep-alives)")
    if shutil.which("tshark"):
        cmd = ["tshark", "-r", str(path), "-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number"]
        dt, _ = timed(lambda: subprocess.run(cmd, capture_output=True, timeout=900, check=True))
        print(f"  tshark (analysis flags): {dt:6.2f} s  {npk / dt:10,.0f} packets/s")
    else:
        print("  tshark: not installed")


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def peak_rss_mb(path: Path) -> tuple[float, float]:
    """(peak RSS after imports, peak RSS after analyze()) of a fresh process.

    Read from VmHWM in /proc (per address space, reset by exec), because
    getrusage's ru_maxrss survives exec on Linux and would report this
    process's peak instead.
    """
    code = ("import sys; sys.path.insert(0, %r); from wirelab.observe.pcap import analyze\n"
            "hwm = lambda: [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "a = hwm(); analyze(%r); print(a, hwm())" % (str(ROOT), str(path)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
    a, b = r.stdout.split()
    return int(a) / 1024, int(b) / 1024


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--_inside":
        _inside(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description="Throughput and memory of wirelab.observe.pcap (prints figures)")
    ap.add_argument("pcap", nargs="?", help="capture to use (default: record one, needs root)")
    ap.add_argument("--keep", help="also save the recorded capture here")
    ap.add_argument("--reuse", action="store_true", help="only the reused-4-tuples case (no root needed)")
    a = ap.parse_args()
    from wirelab.observe.pcap import PcapReader, analyze

    if a.reuse:
        with tempfile.TemporaryDirectory(prefix="bench_pcap.") as tmpname:
            reuse_case(Path(tmpname))
        return

    with tempfile.TemporaryDirectory(prefix="bench_pcap.") as tmpname:
        tmp = Path(tmpname)
        if a.pcap:
            path = Path(a.pcap)
        else:
            raw = tmp / "raw.pcap"
            record(raw)
            path = tmp / "bench.pcap"
            reorder(raw, path)
            raw.unlink()
            if a.keep:
                shutil.copy(path, a.keep)
        npk = sum(len(b) for b in PcapReader(path))
        size = path.stat().st_size
        print(f"capture: {path} ({npk} packets, {size / 1e6:.1f} MB)")

        dt, rep = timed(lambda: analyze(path))
        tot = rep.totals()
        print(f"wirelab.observe.pcap analyze():    {dt:6.2f} s  {npk / dt:10,.0f} packets/s "
              f"({len(rep.flows)} flows, {tot.get('retransmissions', 0)} retransmissions, "
              f"{tot.get('out_of_order', 0)} out-of-order, {tot.get('duplicate_acks', 0)} dup ACKs)")
        try:
            import dpkt

            def dpkt_iter():
                n = 0
                with open(path, "rb") as f:
                    for _ts, _buf in dpkt.pcap.Reader(f):
                        n += 1
                return n
            dt, _ = timed(dpkt_iter)
            print(f"dpkt plain iteration:      {dt:6.2f} s  {npk / dt:10,.0f} packets/s")
        except ImportError:
            print("dpkt: not installed")
        if shutil.which("tshark"):
            cmd = ["tshark", "-r", str(path), "-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number"]
            dt, _ = timed(lambda: subprocess.run(cmd, capture_output=True, timeout=900, check=True))
            print(f"tshark (analysis flags):   {dt:6.2f} s  {npk / dt:10,.0f} packets/s")
        else:
            print("tshark: not installed")

        lt, pk = mtc.read_pcap(path)
        small = tmp / "small.pcap"
        mtc.write_pcap(small, lt, pk[:20000])
        del pk
        dt, _ = timed(lambda: analyze(small, exact=True))
        print(f"exact path (20k packets):  {dt:6.2f} s  {20000 / dt:10,.0f} packets/s")

        big = tmp / "double.pcap"
        double(path, big)
        (i1, r1), (i2, r2) = peak_rss_mb(path), peak_rss_mb(big)
        print(f"peak RSS of analyze() in a fresh process: {r1:.0f} MB for {size / 1e6:.0f} MB, "
              f"{r2:.0f} MB for {big.stat().st_size / 1e6:.0f} MB (after imports: {i1:.0f} MB)")
        print(f"(this benchmark process, which loads whole captures: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
        reuse_case(tmp)


if __name__ == "__main__":
    from wirelab.errors import WirelabError  # PcapFormatError is one
    try:
        main()
    except (WirelabError, OSError, subprocess.CalledProcessError) as exc:
        print(f"bench_pcap: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench_pcap: interrupted", file=sys.stderr)
        sys.exit(130)
