"""Mutated captures: the analyser reports or fails in one line, never a traceback or a hang.

Seeds are small committed captures of every format the reader knows (pcap of
both byte orders, nanosecond pcap, pcapng of both byte orders with EPB and SPB
blocks, Linux cooked v1/v2, VLAN, raw IP) and their gzip-compressed forms.
Each mutant gets bit flips, overwritten words (huge lengths), timestamps with
the high bits set, truncation, or inserted/deleted bytes; all from one fixed
seed, so a failure is reproducible by its index.  Every mutant goes through
:func:`analyze`, :func:`impairment.read_packets` and ``tools/pcapstat.py``'s
``main`` in-process under a per-mutant alarm (no hang), and a few through the
real command (exit code, no traceback on stderr).
"""

import contextlib
import gzip
import importlib.util
import io
import random
import signal
import struct
import subprocess
import time

import pytest

from test_pcap_common import DATA, PCAPSTAT
from wirelab.errors import WirelabError
from wirelab.observe.impairment import read_packets
from wirelab.observe.pcap import PcapFormatError, analyze

SEED = 6
MUTANTS = 360
PER_MUTANT_S = 3.0       # an alarm, far above the ~5 ms a mutant takes: a hang, not slowness
TOTAL_BUDGET_S = 20.0    # the whole test, on a loaded 2-core machine
SEED_FILES = ["link_ethernet.pcap", "link_bigendian.pcap", "link_nanosecond.pcap", "link_pcapng.pcapng",
              "link_pcapng_be.pcapng", "link_sll.pcap", "link_sll2.pcap", "link_vlan.pcap", "link_raw.pcap"]
KEEP_BYTES = 6000        # the first packets of each seed are enough and keep mutants fast


def _load_pcapstat():
    spec = importlib.util.spec_from_file_location("pcapstat_under_test", PCAPSTAT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cut(raw: bytes) -> bytes:
    """The file up to the last whole record or block before KEEP_BYTES."""
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        e = "<" if raw[8:12] == struct.pack("<I", 0x1A2B3C4D) else ">"
        off, size = 0, 0
        while off + 12 <= len(raw) and off <= KEEP_BYTES:
            size = off
            off += struct.unpack_from(e + "I", raw, off + 4)[0]
        return raw[:size]
    e = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, size = 24, 24
    while off + 16 <= len(raw) and off <= KEEP_BYTES:
        size = off
        off += 16 + struct.unpack_from(e + "I", raw, off + 8)[0]
    return raw[:size]


def _seeds():
    return [(name, _cut((DATA / name).read_bytes())) for name in SEED_FILES]


def _ts_high_words(raw: bytes) -> list[int]:
    """Offsets of pcapng EPB timestamp high words (little-endian files) and pcap seconds."""
    offs = []
    if raw[:4] == b"\x0a\x0d\x0d\x0a" and raw[8:12] == struct.pack("<I", 0x1A2B3C4D):
        off = 0
        while off + 12 <= len(raw):
            btype, blen = struct.unpack_from("<II", raw, off)
            if blen < 12 or blen % 4:
                break
            if btype == 6:
                offs.append(off + 12)
            off += blen
    elif raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        off = 24
        while off + 16 <= len(raw):
            offs.append(off)
            off += 16 + struct.unpack_from("<I", raw, off + 8)[0]
    return offs


def mutate(rng: random.Random, raw: bytes) -> tuple[str, bytes]:
    b = bytearray(raw)
    if len(b) < 8:
        return "grow", raw + rng.randbytes(rng.randint(1, 64))
    kind = rng.choice(["flip", "flip", "word", "word", "ts", "truncate", "splice"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "word":
        # huge or odd lengths, link types, block types, option lengths
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(0, max(1, len(b) - 4)) & ~3
            val = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000, 0, 1, 13, rng.getrandbits(32)])
            b[i:i + 4] = struct.pack(rng.choice("<>") + "I", val)
    elif kind == "ts":
        offs = _ts_high_words(raw) or [rng.randrange(len(b) - 4)]
        for i in rng.sample(offs, min(len(offs), rng.randint(1, 4))):
            b[i:i + 4] = struct.pack("<I", rng.choice([0xFFFFFFFF, 0xFFFFFFFE, 0x80000000, 0x7FFFFFFF]))
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    else:
        i = rng.randrange(len(b))
        if rng.random() < 0.5:
            del b[i:i + rng.randint(1, 64)]
        else:
            b[i:i] = rng.randbytes(rng.randint(1, 64))
    return kind, bytes(b)


def cases():
    rng = random.Random(SEED)
    seeds = _seeds()
    for i in range(MUTANTS):
        name, raw = seeds[i % len(seeds)]
        kind, data = mutate(rng, raw)
        zipped = rng.random() < 0.25
        if zipped:
            data = gzip.compress(data, mtime=0)
            if rng.random() < 0.5:  # and sometimes corrupt or cut the compressed stream itself
                kind2, data = mutate(rng, data)
                kind += "+gz-" + kind2
        yield i, f"{name}:{kind}{'+gzip' if zipped else ''}", data


class Hang(Exception):
    pass


def _alarm(_sig, _frame):
    raise Hang()


def test_mutants_report_or_fail_in_one_line(tmp_path):
    pcapstat = _load_pcapstat()
    old = signal.signal(signal.SIGALRM, _alarm)
    t0 = time.monotonic()
    outcomes = {"report": 0, "error": 0, "clamped": 0}
    try:
        for i, label, data in cases():
            p = tmp_path / f"m{i}"
            p.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, PER_MUTANT_S)
            try:
                try:
                    rep = analyze(p)
                    outcomes["report"] += 1
                    outcomes["clamped"] += bool(rep.warnings)
                    # the vectorised and the packet-by-packet analysis agree on any input
                    assert rep.totals() == analyze(p, exact=True).totals(), (i, label)
                except PcapFormatError as exc:
                    outcomes["error"] += 1
                    assert "\n" not in str(exc) and str(exc), label
                try:
                    read_packets(str(p))
                except WirelabError as exc:
                    assert "\n" not in str(exc), label
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = pcapstat.main([str(p)])
                assert code in (0, 2), (i, label, code, err.getvalue())
                lines = err.getvalue().splitlines()
                assert all(line.startswith("pcapstat: ") for line in lines), (i, label, lines)
                assert (code == 0) == bool(out.getvalue()), (i, label)
            except Hang:
                pytest.fail(f"mutant {i} ({label}) took more than {PER_MUTANT_S} s")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    elapsed = time.monotonic() - t0
    assert elapsed < TOTAL_BUDGET_S, f"{MUTANTS} mutants took {elapsed:.1f} s"
    # A fuzz test that only ever hits the error path (or never) tests little.
    assert outcomes["report"] > MUTANTS // 4 and outcomes["error"] > 0 and outcomes["clamped"] > 0, outcomes


def test_the_command_exits_with_a_code_not_a_traceback(tmp_path):
    """Through the real command: a handful of mutants, one of each outcome at least."""
    codes = set()
    for i, label, data in list(cases())[:: MUTANTS // 12]:
        p = tmp_path / f"c{i}"
        p.write_bytes(data)
        r = subprocess.run([str(PCAPSTAT), str(p)], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in r.stderr and r.returncode in (0, 2), (i, label, r.returncode, r.stderr)
        codes.add(r.returncode)
    p = tmp_path / "text.pcap.gz"
    p.write_bytes(gzip.compress(b"hello, not a capture"))
    r = subprocess.run([str(PCAPSTAT), str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "gzip-compressed file holds no pcap" in r.stderr
    codes.add(r.returncode)
    assert codes == {0, 2}
