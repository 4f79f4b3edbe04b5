#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
"""pcapstat: per-connection TCP statistics of a pcap or pcapng file (or a gzip of one).

Examples::

    tools/pcapstat.py capture.pcap
    tools/pcapstat.py --json capture.pcapng > stats.json
    tools/pcapstat.py --flow 10.0.0.1:5001 capture.pcap

Counters follow Wireshark's ``tcp.analysis.*`` flags; see
``wirelab/observe/pcap/report.py`` for their exact definitions.  Exit codes: 0 ok,
2 unreadable input (one-line message on stderr; ``PcapFormatError.exit_code``),
3 not set up.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wirelab.observe.pcap import PcapFormatError, analyze  # noqa: E402

COLUMNS = [  # (header, attribute of DirectionSummary, format)
    ("pkts", "packets", "d"), ("bytes", "payload_bytes", "d"), ("uniq", "unique_bytes", "d"),
    ("retx", "retransmissions", "d"), ("fast", "fast_retransmissions", "d"),
    ("rto", "timeout_retransmissions", "d"), ("spur", "spurious_retransmissions", "d"),
    ("ooo", "out_of_order", "d"), ("dupseg", "duplicate_segments", "d"),
    ("dupack", "duplicate_acks", "d"), ("zwin", "zero_windows", "d"), ("lost", "lost_segments", "d"),
    ("rtt_ms", "rtt_mean_ms", ".3f"), ("goodput", "goodput_bps", "bps"),
]


def _bps(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def _cell(v, fmt: str) -> str:
    if v is None:
        return "-"
    if fmt == "bps":
        return _bps(v)
    return format(v, fmt)


def matches(flow, spec: str) -> bool:
    """``spec`` is "ip", "ip:port", ":port" or "[v6]:port"; matches either end."""
    ends = (flow.client, flow.server)
    if spec.startswith(":") and spec[1:].isdigit():
        return any(e.rsplit(":", 1)[1] == spec[1:] for e in ends)
    if ":" in spec and (spec.count(":") == 1 or spec.startswith("[")):
        return spec in ends
    return any(e.rsplit(":", 1)[0].strip("[]") == spec for e in ends)


def text_report(rep) -> str:
    lines = [f"{rep.path}: {rep.format}, link types {rep.linktypes}, {rep.packets} packets, "
             f"{rep.tcp_packets} TCP, {len(rep.flows)} connections"]
    head = ["stream", "dir"] + [h for h, _, _ in COLUMNS]
    rows = []
    for f in rep.flows:
        hs = "handshake" if f.handshake.complete else ("SYN only" if f.handshake.syn else "no handshake")
        td = []
        if f.teardown.fin_client or f.teardown.fin_server:
            td.append("FIN " + "/".join(s for s, b in (("c", f.teardown.fin_client), ("s", f.teardown.fin_server)) if b))
        if f.teardown.rst_client or f.teardown.rst_server:
            td.append("RST")
        rows.append([f"#{f.stream} {f.client} -> {f.server}  {f.duration:.3f} s, {hs}"
                     + (", " + ", ".join(td) if td else "")])
        for name, d in (("c>s", f.client_to_server), ("s>c", f.server_to_client)):
            rows.append([str(f.stream), name] + [_cell(getattr(d, a), fm) for _, a, fm in COLUMNS])
    widths = [len(h) for h in head]
    for r in rows:
        if len(r) > 1:
            widths = [max(w, len(c)) for w, c in zip(widths, r)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        lines.append(r[0] if len(r) == 1 else "  ".join(c.rjust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pcapstat", description="Per-connection TCP statistics of a pcap/pcapng file "
                                 "(counters agree with Wireshark's tcp.analysis flags).")
    ap.add_argument("file", help="pcap or pcapng capture, plain or gzip-compressed")
    ap.add_argument("--json", action="store_true", help="print the full report as JSON")
    ap.add_argument("--flow", action="append", metavar="ADDR[:PORT]",
                    help="only connections with this endpoint (ip, ip:port, :port; repeatable)")
    a = ap.parse_args(argv)
    try:
        rep = analyze(a.file)
    except PcapFormatError as e:
        print(f"pcapstat: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"pcapstat: error: {a.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    if a.flow:
        rep.flows = [f for f in rep.flows if any(matches(f, s) for s in a.flow)]
    if rep.truncated:
        print(f"pcapstat: warning: {a.file}: {rep.truncated}", file=sys.stderr)
    for note in rep.warnings:
        print(f"pcapstat: warning: {a.file}: {note}", file=sys.stderr)
    if a.json:
        json.dump(rep.to_dict(), sys.stdout, indent=1)
        print()
    else:
        print(text_report(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
