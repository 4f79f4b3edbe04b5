"""``wirelab messages CAPTURE [--port P ...] [--framing lines] [--json] [--plot OUT.png] [--logs LOG ...]``.

Rebuild the apps' JSON messages from a capture (:mod:`wirelab.observe.messages`).
Default output, the scripting format: one JSON object per message on stdout
(``t``, ``transport``, ``src``, ``dst``, ``message``, ``error``) in the order
the messages complete; a one-paragraph summary on stderr.  ``--json``: one
JSON document instead (every field of every message, the summary, the
comparison).  ``--framing lines``: TCP carries JSON Lines (one message per
line) instead of one JSON value per connection direction.  ``--logs``: compare with app event logs; exit 7 when they differ.
Exit codes: 0 ok (also: no messages), 2 unusable input (not a capture, a
truncated one, a missing file or log), 7 logs and capture differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from wirelab.errors import ConfigError, VerificationError
from wirelab.observe.messages import FRAMINGS, MessageStream, match_logged, read_event_log
from wirelab.observe.pcap.reader import PcapFormatError

EPILOG = """\
what is rebuilt:
  TCP   one JSON value per connection direction, read to EOF: the bytes are put in
        order by sequence number (retransmissions, copies, reordering, overlaps,
        wraparound, reused 4-tuples); a missing byte is an error, never garbage
        --framing lines: one JSON value per \\n-terminated line of that stream (JSON
        Lines); a hole spoils the line it falls in, the lines after it are whole
  UDP   one JSON value per datagram (IP fragments put back together)

errors (the "error" field, one line): truncated stream: gap at byte N | connection
  never closed | connection reset (RST) before FIN | no SYN: start of stream not
  captured | not JSON: ... | empty | IP fragments missing: ...

examples:
  wirelab messages results/mapreduce/<run>/cases/loss/manager.pcap --port 6000
  wirelab messages hb.pcap --port 7000 --plot timeline.png
  wirelab messages hb.pcap --logs master.jsonl cs1.jsonl cs2.jsonl     exit 7 if they differ
  wirelab messages server.pcap --port 7003 --framing lines --logs server.jsonl
  wirelab messages x.pcap | jq -c 'select(.error != null)'"""

# Progress lines for captures at least this large (a few seconds of reading).
PROGRESS_BYTES = 64 << 20
PROGRESS_EVERY_S = 2.0


def build_parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Rebuild application JSON messages from a pcap/pcapng capture (plain or gzip): "
        "one per TCP connection direction, one per UDP datagram. One JSON line per message on stdout, "
        "a summary on stderr.")
    parser.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file, plain or gzip-compressed")
    parser.add_argument("--port", type=int, action="append", metavar="P",
                        help="only flows with this port at either end (repeatable)")
    parser.add_argument("--framing", choices=FRAMINGS, default=FRAMINGS[0],
                        help="what a TCP direction holds: one JSON value read to EOF (connection, the "
                        "default) or one per newline-terminated line (lines)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document: all fields of every message, the summary and the comparison")
    parser.add_argument("--plot", metavar="OUT.png", help="write a timeline of the messages")
    parser.add_argument("--logs", nargs="+", metavar="LOG",
                        help="app event logs (JSON lines) to compare with; exit 7 when they differ")
    return parser


def _short(m) -> dict:
    return {"t": m.t, "transport": m.transport, "src": list(m.src), "dst": list(m.dst),
            "message": m.message, "error": m.error}


def summary_text(path, stats) -> str:
    """The one-paragraph summary (stderr)."""
    n = sum(stats.messages.values())
    if n == 0:
        return (f"no JSON messages in {path} ({stats.packets} packets, {stats.tcp_connections} TCP "
                f"connections, {stats.udp_datagrams} UDP datagrams)")
    per = ", ".join(f"{stats.messages[t]} {t.upper()}" for t in ("tcp", "udp") if stats.messages[t])
    errs = sum(stats.errors.values())
    text = (f"{path}: {n} messages ({per}) from {stats.packets} packets, {stats.tcp_connections} TCP "
            f"connections, {stats.udp_datagrams} UDP datagrams")
    if stats.ip_fragments:
        text += f", {stats.ip_fragments} IP fragments"
    text += "; "
    if errs:
        text += f"{errs} with an error (" + ", ".join(f"{c} {k}" for k, c in stats.errors.most_common()) + ")"
    else:
        text += "no errors"
    if stats.messages["tcp"]:
        text += (f"; TCP hid {stats.retransmitted_segments} retransmitted, {stats.duplicate_segments} "
                 f"duplicate and {stats.out_of_order_segments} out-of-order segments")
    return text + "."


def comparison_text(res) -> list[str]:
    c = res["counts"]
    lines = [f"logs vs capture: {'same' if res['ok'] else 'DIFFERENT'}: {c['matched']} matched, "
             f"{c['missing_on_wire']} missing on the wire, {c['extra_on_wire']} extra on the wire, "
             f"{c['duplicates']} duplicates, {c['not_received']} not received, "
             f"{c['unreadable_on_wire']} unreadable on the wire "
             f"({c['sent']} sent and {c['received']} received logged, {c['on_wire']} on the wire)"]
    for kind in ("missing_on_wire", "extra_on_wire", "duplicates", "not_received"):
        for e in res[kind][:10]:
            msg = json.dumps(e["message"], sort_keys=True)
            msg = msg if len(msg) <= 100 else msg[:97] + "..."
            lines.append(f"  {kind}: {e['count']}x {e['transport']} {e['src'][0]}:{e['src'][1]} -> "
                         f"{e['dst'][0]}:{e['dst'][1]} {msg}")
        if len(res[kind]) > 10:
            lines.append(f"  {kind}: ... {len(res[kind]) - 10} more")
    for e in res["unreadable_on_wire"][:10]:
        lines.append(f"  unreadable_on_wire: {e['transport']} {e['src'][0]}:{e['src'][1]} -> "
                     f"{e['dst'][0]}:{e['dst'][1]} {e['error']}")
    return lines


def _open_stream(path, ports, progress, framing):
    try:
        return MessageStream(path, ports=ports, progress=progress, framing=framing)
    except PcapFormatError:
        raise
    except OSError as exc:
        raise PcapFormatError(f"{path}: {exc.strerror or exc}") from None


def main(argv=None, prog="wirelab messages") -> int:
    args = build_parser(prog).parse_args(argv)
    err = sys.stderr
    if args.port and any(not 0 <= p <= 65535 for p in args.port):
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    logs = []
    for path in args.logs or []:
        try:
            logs.append(read_event_log(path))
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        except UnicodeError as exc:
            raise ConfigError(f"{path}: not a text file ({exc.reason})") from None
    size = os.path.getsize(args.capture) if os.path.isfile(args.capture) else 0
    last = [time.monotonic()]

    def progress(packets):
        now = time.monotonic()
        if size >= PROGRESS_BYTES and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            print(f"{prog}: {packets:,} packets read", file=err, flush=True)

    stream = _open_stream(args.capture, args.port, progress, args.framing)
    keep = args.json or args.plot or logs
    kept = []
    out = sys.stdout
    for m in stream:
        if keep:
            kept.append(m)
        if not args.json:
            out.write(json.dumps(_short(m)) + "\n")
    stats = stream.stats
    if stats.truncated:
        # What was read is printed; the capture is still not usable as evidence.
        out.flush()
        raise PcapFormatError(f"{args.capture}: {stats.truncated}")
    for note in stats.warnings:
        print(f"{prog}: warning: {args.capture}: {note}", file=err)
    for log in logs:
        if log.skipped or log.malformed:
            print(f"{prog}: {log.path}: skipped {log.skipped} lines that are not JSON objects and "
                  f"{log.malformed} send/recv events lacking a field", file=err)
    kept.sort(key=lambda m: (m.t, m.frame))
    res = match_logged(kept, logs, ports=args.port) if logs else None
    if args.json:
        doc = {"capture": args.capture, "ports": args.port, "framing": args.framing, "summary": stats.to_dict(),
               "messages": [m.to_dict() for m in kept]}
        if res is not None:
            doc["comparison"] = res
        json.dump(doc, out)
        out.write("\n")
    print(summary_text(args.capture, stats), file=err)
    if args.plot:
        from wirelab.observe.msgplot import timeline
        title = f"{os.path.basename(args.capture)}: {len(kept)} messages"
        if timeline(kept, args.plot, title):
            print(f"{prog}: timeline written to {args.plot}", file=err)
        else:
            print(f"{prog}: no messages: no timeline written", file=err)
    if res is not None:
        for line in comparison_text(res):
            print(line, file=err)
        if not res["ok"]:
            return VerificationError.exit_code
    return 0
