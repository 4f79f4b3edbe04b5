#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
"""Throughput of the message rebuilder (wirelab.observe.messages) beside tshark.

Usage::

    bench/bench_messages.py                  # 1M packets, generated in a temp dir
    bench/bench_messages.py --packets 200000 --tshark-packets 50000
    bench/bench_messages.py --framing lines  # the same capture, TCP read as JSON Lines

It writes a capture of a MapReduce-and-GFS-like workload (no root needed;
:mod:`wirelab.observe.msgsynth`, valid checksums): workers open one TCP
connection per task to a manager on port 6000 (a JSON request of 200 B to
6 kB, a JSON reply, FINs; client ports cycle, so 4-tuples are reused with new
ISNs), chunkservers send one UDP JSON heartbeat a datagram to port 7000
(``HEARTBEAT_SHARE`` of the packets).  Impairments, seeded: ``DROP`` of the
data segments are lost before the capture point and re-sent after the next
segment (out of order at the capture), ``RETRANSMIT`` are sent twice by the
sender (a new IP ID), ``DUPLICATE`` are copied by the network (same bytes),
``DUPLICATE`` of the heartbeats too.  Then it times :func:`rebuild` (best of
3, wall and CPU) and checks that every message came back intact, and times
tshark on a slice of the same file decoding the same ports as JSON
(``-d tcp.port==6000,json -d udp.port==7000,json -Y json -T json``, TCP
reassembly on): a yardstick of what the standard tool costs for a similar
job, not the same output (tshark's JSON dissector does not wait for EOF).
Target: >= 500k packets/s.  ``--framing lines`` times the JSON Lines framing on
the same capture (each message is then one unterminated line, closed by its
FIN: the same messages come back).  The temp dir is removed at the end.

This prints figures; it is not a test.
"""

import argparse
import gc
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wirelab.observe import msgsynth as S  # noqa: E402
from wirelab.observe.messages import MessageStream  # noqa: E402

SEED = 20241201
MANAGER = ("10.1.0.11", 6000)
MASTER = ("10.1.0.12", 7000)
WORKERS = [f"10.1.0.{20 + i}" for i in range(8)]
CHUNKSERVERS = [f"10.1.0.{40 + i}" for i in range(16)]
HEARTBEAT_SHARE = 0.2
DROP, RETRANSMIT, DUPLICATE = 0.01, 0.005, 0.005
MSS = 1448
TARGET_PPS = 500_000
T0 = 1_733_060_000_000_000_000
# Task inputs are slices of this text (words of a few letters).
TEXT = " ".join("".join(random.Random(k).choice("abcdefgh") for _ in range(1 + k % 7)) for k in range(4000))


def connection(rng, i, t0):
    """One task's connection with impairments, and its two messages."""
    worker = WORKERS[i % len(WORKERS)]
    cport = 32768 + (i * 7919) % 28000          # cycles: the same 4-tuple comes back with a new ISN
    at, n = rng.randrange(len(TEXT) - 6000), rng.randint(200, 6000)
    req = {"type": "task", "id": i, "kind": rng.choice(["map", "reduce"]), "input": TEXT[at:at + n]}
    resp = {"type": "result", "id": i, "words": rng.randint(0, 10_000), "ok": True}
    rb, pb = json.dumps(req).encode(), json.dumps(resp).encode()
    pkts = S.tcp_connection((worker, cport), MANAGER, rb, pb, isn_c=rng.getrandbits(32),
                            isn_s=rng.getrandbits(32), mss=MSS, t0=t0, step=20_000,
                            ip_id=rng.getrandbits(16), tsval=rng.getrandbits(31))
    out = []
    held = None
    for p in pkts:
        tag = p[2]
        data = tag.startswith(("c2s:", "s2c:"))
        if held is not None and data:
            out.append(p)
            out.append((p[0] + 1000, held[1], held[2]))   # the lost segment, re-sent after the next one
            held = None
            continue
        r = rng.random() if data else 1.0
        if r < DROP:
            held = p
            continue
        out.append(p)
        if r < DROP + RETRANSMIT:
            ip = bytearray(p[1])
            ip[4:6] = (int.from_bytes(ip[4:6], "big") + 1000 & 0xFFFF).to_bytes(2, "big")
            out.append((p[0], bytes(ip), tag))      # a new IP ID: the sender's own retransmission
        elif r < DROP + RETRANSMIT + DUPLICATE:
            out.append(p)                           # a copy made by the network
    if held is not None:
        out.append((out[-1][0] + 1000, held[1], held[2]))
    msgs = [("tcp", (worker, cport), MANAGER, req), ("tcp", MANAGER, (worker, cport), resp)]
    return out, msgs


def workload(packets: int, rng):
    """[(ts_ns, ip bytes)] in time order, and the messages sent."""
    pkts, sent = [], []
    t, i, n_hb = T0, 0, 0
    while len(pkts) < packets:
        if n_hb < HEARTBEAT_SHARE * len(pkts):
            cs = CHUNKSERVERS[n_hb % len(CHUNKSERVERS)]
            hb = {"type": "heartbeat", "node": cs, "seq": n_hb, "chunks": rng.randint(0, 5000),
                  "free_mb": rng.randint(0, 100_000)}
            ip = S.udp_packet(cs, MASTER[0], 7001, MASTER[1], json.dumps(hb).encode(), ip_id=n_hb)
            pkts.append((t, ip))
            if rng.random() < DUPLICATE:
                pkts.append((t + 1000, ip))
            sent.append(("udp", (cs, 7001), MASTER, hb))
            n_hb += 1
        else:
            conn, msgs = connection(rng, i, t)
            pkts.extend((p[0], p[1]) for p in conn)
            sent.extend(msgs)
            i += 1
        t += 50_000
    pkts.sort(key=lambda p: p[0])
    return pkts, sent, i, n_hb


def write(path: Path, pkts) -> None:
    path.write_bytes(S.pcap_file(pkts))


def time_rebuild(path: Path, npk: int, framing: str = "connection"):
    walls, cpus, msgs, stats = [], [], None, None
    # The harness's own data (the 320k messages it sent, for the check) would
    # otherwise be walked by every collection the rebuild triggers: a cost of
    # this process, not of the rebuild.
    gc.collect()
    gc.freeze()
    for _ in range(3):
        msgs = None   # the previous run's result is not kept alive during this one
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        stream = MessageStream(path, framing=framing)
        msgs = list(stream)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        stats = stream.stats
    return min(walls), min(cpus), msgs, stats


def check(msgs, sent) -> str:
    """Every message sent came back intact (as a multiset, duplicates aside)."""
    from collections import Counter
    from wirelab.observe.messages import canonical
    want = Counter((t, tuple(s), tuple(d), canonical(m)) for t, s, d, m in sent)
    got = Counter((m.transport, m.src, m.dst, canonical(m.message)) for m in msgs if m.message is not None)
    missing = sum((want - got).values())
    extra = sum((got - want).values())
    errors = sum(1 for m in msgs if m.error)
    return f"{missing} missing, {extra} extra (network copies of heartbeats), {errors} with an error"


def tshark(path: Path, npk: int, slice_packets: int, tmp: Path):
    if not shutil.which("tshark"):
        print("tshark: not installed")
        return
    part = path
    if slice_packets < npk:
        part = tmp / "slice.pcap"
        subprocess.run(["editcap", "-r", str(path), str(part), f"1-{slice_packets}"], check=True,
                       capture_output=True, timeout=600)
    cmd = ["tshark", "-r", str(part), "-o", "tcp.desegment_tcp_streams:TRUE",
           "-o", "tcp.reassemble_out_of_order:TRUE", "-d", "tcp.port==6000,json",
           "-d", "udp.port==7000,json", "-Y", "json", "-T", "json"]
    w0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    dt = time.perf_counter() - w0
    if done.returncode:
        print(f"tshark failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()[:200]}")
        return
    n = min(slice_packets, npk)
    print(f"tshark -Y json -T json:    {dt:6.2f} s  {n / dt:10,.0f} packets/s (first {n:,} packets)")


def main() -> None:
    ap = argparse.ArgumentParser(description="Packets/s of wirelab.observe.messages vs tshark "
                                 "on a generated MapReduce/GFS-like capture.")
    ap.add_argument("--packets", type=int, default=1_000_000, help="size of the capture (default 1M)")
    ap.add_argument("--tshark-packets", type=int, default=100_000,
                    help="tshark runs on the first N packets (default 100k; it is slow)")
    ap.add_argument("--framing", choices=("connection", "lines"), default="connection",
                    help="TCP framing the rebuild uses (default connection)")
    a = ap.parse_args()
    if a.packets < 1000 or a.tshark_packets < 1000:
        ap.error("--packets and --tshark-packets must be at least 1000")
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="bench_messages.") as tmpname:
        tmp = Path(tmpname)
        g0 = time.perf_counter()
        pkts, sent, conns, hbs = workload(a.packets, rng)
        path = tmp / "workload.pcap"
        write(path, pkts)
        npk = len(pkts)
        del pkts
        print(f"capture: {npk:,} packets, {conns:,} TCP connections, {hbs:,} heartbeats, "
              f"{path.stat().st_size / 1e6:.0f} MB (generated in {time.perf_counter() - g0:.1f} s)")
        wall, cpu, msgs, stats = time_rebuild(path, npk, a.framing)
        best = npk / wall
        label = f"wirelab rebuild({a.framing}):"
        print(f"{label:<27}{wall:6.2f} s  {best:10,.0f} packets/s (best of 3 wall; CPU "
              f"{npk / cpu:,.0f}/s) target {TARGET_PPS:,}: {'met' if best >= TARGET_PPS else 'MISSED'}")
        print(f"  {len(msgs):,} messages; TCP hid {stats.retransmitted_segments} retransmitted, "
              f"{stats.duplicate_segments} duplicate, {stats.out_of_order_segments} out-of-order segments; "
              f"check: {check(msgs, sent)}")
        tshark(path, npk, a.tshark_packets, tmp)


if __name__ == "__main__":
    main()
