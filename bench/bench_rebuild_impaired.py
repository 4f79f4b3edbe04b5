#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Message rebuild against the apps' own logs under netem loss, reordering and duplication.

::

    h1 10.0.0.1 -------- r1 -------- h2 10.0.1.2
    sender (jsonpair send)              receiver (jsonpair serve)
    capture h1-eth0   netem on r1-eth0    capture h2-eth0
                      and r1-eth1 (both
                      directions, same spec)

Issue 7 section 4: "message rebuild agrees with the applications' logs on
100 % of messages at <= 30 % loss, <= 25 % reordering, <= 10 % duplication".
For each setting, h1 sends ``--messages`` JSON messages over TCP, one per
connection (``--parallel`` at a time, 40 B .. ``--max-bytes``: most take
several segments, so a lost one leaves later ones out of order), and ``--datagrams`` JSON datagrams over UDP, to h2, both programs
logging every message in the house format (wirelab.apps.jsonpair). Both
interfaces are captured whole; each capture is rebuilt
(wirelab.observe.messages.rebuild) and compared with the logs (match_logged):

* TCP at the receiver: every message the receiver logged is rebuilt whole
  from its capture, once, and equals what the sender logged (agreement =
  matched / logged); what TCP hid there (retransmitted, duplicate -- netem's
  copies --, out-of-order segments) is counted. At 30 % loss each way TCP
  sometimes re-sends one segment for a minute (its timer doubles from
  200 ms); the sender gives such a message up after ``--timeout`` s: then
  the receiver never logged it, and its capture must not show it whole
  either (the rebuild says it is cut: a gap, or no FIN);
* TCP at the sender: every message it logged is on its wire, whole, once
  (there the rebuilder counts nothing hidden: a stream is complete when its
  FIN leaves, and the sender's retransmissions come after; the segments it
  re-sent are counted by the house TCP analysis, wirelab.observe.pcap);
* UDP at the receiver: every datagram it logged is rebuilt (copies too),
  and the sender's log against that capture gives the loss and the network's
  copies, which must equal the counts from the message ids in the logs;
* UDP at the sender: every datagram it logged is on its wire once.

Settings (``--settings``, default all): clean, loss10, loss30, reorder25
(behind a 10 ms delay: netem reorders by sending some packets early),
duplicate10, combined (loss 30 %, reorder 25 %, duplicate 10 %, 10 ms).

Root. netem needs sch_netem: on a kernel without it the script runs itself
again inside User-Mode Linux (wirelab.net.uml), where one run with the
defaults took 41 s (boot included; a message TCP keeps re-sending adds up to
``--timeout``). ``--keep DIR`` keeps the captures and logs
(one folder per setting); otherwise they go with a temporary folder.

This prints figures; it is not a test (tests/integration/test_rebuild_drops.py
asserts the same agreement natively under nft drops). Exit 0 when every row
agrees 100 %, 7 when one does not, 2 for bad arguments, 4 not root.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from wirelab.errors import WaitTimeout, WirelabError  # noqa: E402

JSONPAIR = os.path.join(ROOT, "wirelab", "apps", "jsonpair.py")
DELAY_MS = 10.0   # reorder needs a delay; small against the RTO (200 ms): a reordering, not a timeout
SETTINGS = {
    "clean": {},
    "loss10": {"loss": 10.0},
    "loss30": {"loss": 30.0},
    "reorder25": {"reorder": 25.0, "delay": DELAY_MS},
    "duplicate10": {"duplicate": 10.0},
    "combined": {"loss": 30.0, "reorder": 25.0, "duplicate": 10.0, "delay": DELAY_MS},
}
BASE_PORT = 6100
# The last datagrams may still sit in netem's queue when the sender is done.
DRAIN_S = 1.0
UML_TIMEOUT_S = 900


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/bench_rebuild_impaired.py", description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="NAME",
                    help=f"settings to run (default all: {', '.join(SETTINGS)})")
    ap.add_argument("--messages", type=int, default=50, help="TCP messages per setting (default 50)")
    ap.add_argument("--datagrams", type=int, default=200, help="UDP datagrams per setting (default 200)")
    ap.add_argument("--parallel", type=int, default=10, help="TCP connections at a time (default 10)")
    ap.add_argument("--max-bytes", type=int, default=8000, help="largest TCP message, bytes (default 8000)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="the sender gives a message up after this many seconds (default 30)")
    ap.add_argument("--seed", type=int, default=7, help="message sizes and contents (default 7)")
    ap.add_argument("--keep", metavar="DIR", help="keep captures and logs here (one folder per setting)")
    a = ap.parse_args(argv)
    if not 1 <= a.messages <= 10_000 or not 0 <= a.datagrams <= 100_000 or not 1 <= a.parallel <= 200 \
            or not 40 <= a.max_bytes <= 1 << 20 or not 1 <= a.timeout <= 600:
        ap.error("--messages 1..10000, --datagrams 0..100000, --parallel 1..200, --max-bytes 40..1048576, "
                 "--timeout 1..600")
    return a


def run_setting(tb, name, spec, folder, port, a):
    """Run one setting's traffic with netem and captures; return the record."""
    from wirelab.apps.jsonpair import READY_PREFIX
    from wirelab.apps.runner import AppServer, run_client
    from wirelab.observe.capture import Captures
    from wirelab.observe.messages import read_event_log
    from wirelab.proc import wait_until
    os.makedirs(folder, exist_ok=True)
    snd_log, rcv_log = os.path.join(folder, "sender.jsonl"), os.path.join(folder, "receiver.jsonl")
    handles = []
    started = time.monotonic()
    try:
        for intf in ("r1-eth0", "r1-eth1") if spec else ():
            handles.append(tb.apply_netem("r1", intf, spec))
        points = [("h1", "h1-eth0", "sender.pcap"), ("h2", "h2-eth0", "receiver.pcap")]
        with Captures(tb, points, folder, snaplen=0) as caps:
            serve = [sys.executable, JSONPAIR, "serve", "--bind", tb.ip("h2"), "--port", port, "--log", rcv_log]
            send = [sys.executable, JSONPAIR, "send", "--to", tb.ip("h2"), "--port", port, "--tcp", a.messages,
                    "--udp", a.datagrams, "--parallel", a.parallel, "--seed", a.seed, "--max-bytes", a.max_bytes, "--timeout", a.timeout, "--log", snd_log]
            with AppServer(tb, "h2", serve, name="jsonpair serve", ready=READY_PREFIX) as server:
                client = run_client(tb, "h1", send, timeout=a.timeout * a.messages + 60)
                last = a.datagrams - 1

                def last_logged():
                    return any(e["transport"] == "udp" and e["message"].get("id") == last
                               for e in read_event_log(rcv_log))
                if a.datagrams:
                    try:
                        wait_until(last_logged, DRAIN_S, what="the last datagram")
                    except WaitTimeout:
                        pass   # lost: nothing more to wait for
                server.stop()
                received = server.last_json()
    finally:
        for h in reversed(handles):
            h.remove()
    return {"name": name, "spec": spec, "folder": folder, "port": int(port), "client": client.last_json(),
            "client_failure": client.failure, "server": received, "captures": [dict(r) for r in caps.results],
            "seconds": time.monotonic() - started}


def compare(rec):
    """Rows of the table for one setting's record (see the module docstring)."""
    from wirelab.observe.messages import MessageStream, match_logged, read_event_log
    from wirelab.observe.pcap import analyze
    folder, port = rec["folder"], [rec["port"]]
    logs = {who: read_event_log(os.path.join(folder, f"{who}.jsonl")) for who in ("sender", "receiver")}

    def events(who, transport, kind):
        return [e for e in logs[who] if e["transport"] == transport and e["event"] == kind]
    rows = []
    for point, who in (("receiver h2", "receiver"), ("sender h1", "sender")):
        stream = MessageStream(os.path.join(folder, f"{who}.pcap"), ports=port)
        wire = list(stream)
        for transport in ("tcp", "udp"):
            on_wire = [m for m in wire if m.transport == transport]
            mine = events(who, transport, "recv" if who == "receiver" else "send")
            other = events("sender", transport, "send") if who == "receiver" else []
            row = {"setting": rec["name"], "point": point, "transport": transport, "logged": len(mine),
                   "rebuilt": len(on_wire)}
            if transport == "tcp" and who == "receiver":
                row.update(tcp_at_receiver(on_wire, mine, other, port))
            else:
                # UDP at the receiver: its own log only (loss and copies differ from the sender's by design)
                res = match_logged(on_wire, mine, ports=port)
                row.update(matched=res["counts"]["matched"], ok=res["ok"])
            if transport == "tcp" and who == "sender":
                flows = analyze(os.path.join(folder, "sender.pcap")).flows
                row["resent"] = sum(f.client_to_server.payload_bytes - f.client_to_server.unique_bytes
                                    for f in flows if f.server.endswith(f":{rec['port']}"))
            if transport == "tcp":
                row["hid"] = tuple(sum(getattr(m, f) or 0 for m in on_wire) for f in (
                    "retransmitted_segments", "duplicate_segments", "out_of_order_segments"))
            elif who == "receiver":
                sent = match_logged(on_wire, other, ports=port)["counts"]
                ids = [e["message"]["id"] for e in mine]
                sent_ids = {e["message"]["id"] for e in other}
                by_id = (len(sent_ids - set(ids)), len(ids) - len(set(ids)))
                row["udp"] = (sent["missing_on_wire"], sent["duplicates"])
                row["ok"] = row["ok"] and row["udp"] == by_id and not (set(ids) - sent_ids)
            rows.append(row)
    return rows


def tcp_at_receiver(on_wire, received, sent, port):
    """The receiver's capture against both logs. Every message the receiver
    logged must be rebuilt whole, once, and equal what the sender logged;
    nothing else may come out whole. A message the sender logged but the
    receiver never got (the sender gave up while TCP was still re-sending:
    its timeout) must not be whole on the wire: the rebuild says it is cut
    (a gap, or no FIN), as the receiver's silence does."""
    from wirelab.observe.messages import canonical, match_logged
    got = {(canonical(e["message"])) for e in received}
    delivered = [e for e in sent if canonical(e["message"]) in got]
    undelivered = {canonical(e["message"]) for e in sent} - got
    whole = [m for m in on_wire if m.error is None]
    cut = [m for m in on_wire if m.error is not None]
    res = match_logged(whole, received + delivered, ports=port)
    cut_ok = len(cut) <= len(undelivered) and all(
        m.message is None or canonical(m.message) in undelivered for m in cut)
    return {"matched": res["counts"]["matched"], "ok": res["ok"] and cut_ok, "undelivered": len(undelivered),
            "cut": len(cut)}


def agreement(row):
    return 100.0 * row["matched"] / row["logged"] if row["logged"] else 100.0


HEADER = (f"{'setting':<12} {'point':<12} {'proto':<5} {'logged':>6} {'rebuilt':>7} {'whole':>6} {'agree':>7}  "
          "what the network did (TCP hid: retransmitted/duplicate/out-of-order segments; UDP: lost/copies)")


def line(row):
    extra = ""
    if "hid" in row:
        extra = "TCP hid {}/{}/{}".format(*row["hid"])
        if "resent" in row:
            extra += f"; the sender re-sent {row['resent']} bytes"
        if row.get("undelivered"):
            extra += (f"; {row['undelivered']} sent, never received (the sender gave up): "
                      f"{row['cut']} of them cut on the wire")
    elif "udp" in row:
        extra = "UDP lost {}, network copies {}".format(*row["udp"])
    flag = "" if row["ok"] else "   <-- DISAGREES"
    return (f"{row['setting']:<12} {row['point']:<12} {row['transport']:<5} {row['logged']:>6} {row['rebuilt']:>7} "
            f"{row['matched']:>6} {agreement(row):>6.1f}%  {extra}{flag}")


def run(a):
    from topologies.line import LineTopo
    from wirelab.impair.spec import NetemSpec
    from wirelab.net.testbed import Testbed
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="bench_rebuild.")
    rows, problems = [], []
    try:
        with Testbed(LineTopo(n=1)) as tb:
            for i, name in enumerate(a.settings):
                spec = NetemSpec(**SETTINGS[name]) if SETTINGS[name] else None
                rec = run_setting(tb, name, spec, os.path.join(work, name), str(BASE_PORT + i), a)
                for c in rec["captures"]:
                    if c.get("problems") or c.get("dropped_by_kernel"):
                        problems.append(f"{name}: capture {c.get('name')}: {c.get('problems')} "
                                        f"dropped {c.get('dropped_by_kernel')}")
                if rec["client_failure"] or rec["client"] is None:
                    problems.append(f"{name}: sender: {rec['client_failure']}")
                new = compare(rec)
                rows += new
                c = rec["client"] or {}
                print(f"{name} ({spec or 'no netem'}): {rec['seconds']:.1f} s, "
                      f"{c.get('connect_attempts')} connection attempts for {c.get('tcp_sent')} TCP messages"
                      + "".join(f"; message {i} given up: {why}" for i, why in c.get("tcp_failed", [])),
                      flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(HEADER)
    for row in rows:
        print(line(row))
    bad = [r for r in rows if not r["ok"]]
    print()
    for p in problems:
        print(f"problem: {p}")
    tcp_rx = [r for r in rows if r["transport"] == "tcp" and r["point"].startswith("receiver")]
    print(f"TCP at the receiver: {sum(r['matched'] for r in tcp_rx)} of {sum(r['logged'] for r in tcp_rx)} "
          f"logged messages rebuilt whole; every row agrees 100 %: {'yes' if not bad else 'NO'}"
          + (f"; kept in {work}" if a.keep else ""))
    return 0 if not bad and not problems else 7


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_rebuild_impaired: must run as root (network namespaces)", file=sys.stderr)
        return 4
    from wirelab.net import uml
    from wirelab.net.kernel import has_sch_netem
    needs_netem = any(SETTINGS[s] for s in a.settings)
    try:
        if needs_netem and not uml.in_uml() and not has_sch_netem():
            print(f"bench_rebuild_impaired: this kernel has no sch_netem; running inside User-Mode Linux "
                  f"(linux.uml {uml.uml_version()})", flush=True)
            writable = []
            if a.keep:
                os.makedirs(a.keep, exist_ok=True)
                writable.append(os.path.abspath(a.keep))
                argv = [x if x != a.keep else os.path.abspath(a.keep) for x in argv]
            return uml.run_in_uml([sys.executable, os.path.abspath(__file__), *argv], cwd=ROOT,
                                  writable=writable, timeout=UML_TIMEOUT_S)
        return run(a)
    except WirelabError as exc:
        print(f"bench_rebuild_impaired: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
