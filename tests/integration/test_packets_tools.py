"""The scapy tools (`wirelab packet craft|sniff|trace`) on live topologies (root).

    h1 10.0.1.2 --- 10.0.1.1 r1 10.0.2.1 --- 10.0.2.2 h2     (RouterPair, the `tb` fixture)

- craft: a ping and a TCP SYN to a listening port get their matched replies
  (echo-reply; SYN-ACK acknowledging our sequence number + 1), a closed port
  an RST, TTL 1 the first router's time-exceeded, an absent host "no reply"
  with exit 1;
- sniff: a live capture started in h2 sees the very first packet sent after it
  said "listening on"; the in-process Sniffer (ready on enter, in h2's
  namespace) sees a datagram sent after it; reading a tcpdump capture gives
  exactly tcpdump's packets (time, addresses, TTL, IP ID, fragment offset,
  MF/DF, TCP flags, payload length) and Wireshark's relative seq/ack (tshark);
- trace: on every ordered pair of line(4) and internet, scapy's hop list ==
  the traceroute binary's == the plan's, every probe answered.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tiny_topo import H2
from wirelab.apps.runner import AppServer, run_client
from wirelab.observe.capture import Captures
from wirelab.observe.traceroute_parse import parse as parse_traceroute
from wirelab.proc import LineReader, wait_until

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIRELAB = [sys.executable, os.path.join(REPO, ".venv", "bin", "wirelab")]   # any cwd
H1, R1_LEFT = "10.0.1.2", "10.0.1.1"


def packet(tb, node, *args, timeout=30):
    return tb.run(node, [*WIRELAB, "packet", *map(str, args)], timeout=timeout, check=False)


def one_json(done):
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout + done.stderr
    return json.loads(lines[0])


# -- craft ------------------------------------------------------------------------------
def test_craft_ping_gets_the_echo_reply(tb, host_state):
    done = packet(tb, "h1", "craft", H2, "--icmp-id", 77, "--icmp-seq", 5, "--json")
    assert done.returncode == 0, done.stderr
    out = one_json(done)
    assert out["request"]["src"] == H1 and out["request"]["ttl"] == 64
    reply = out["reply"]
    assert (reply["src"], reply["dst"], reply["proto"]) == (H2, H1, "ICMP")
    assert reply["info"] == "echo-reply id=77 seq=5" and reply["ttl"] == 63   # one router
    assert "echo-reply" in out["matched"] and 0 < out["rtt_ms"] < 1000


def test_craft_syn_to_listening_port_gets_syn_ack(tb, host_state):
    server = [sys.executable, "-m", "wirelab.apps.tcpflow", "serve", "--bind", H2, "--port", 5001,
              "--timeout", 30]
    with AppServer(tb, "h2", [str(a) for a in server], name="tcpflow serve"):
        done = packet(tb, "h1", "craft", H2, "--proto", "tcp", "--dport", 5001, "--sport", 40001,
                      "--seq", 123456, "--json")
    assert done.returncode == 0, done.stderr
    out = one_json(done)
    reply = out["reply"]
    assert (reply["src"], reply["sport"], reply["dport"]) == (H2, 5001, 40001)
    assert reply["flags"] == "S." and reply["ack_raw"] == 123457 and reply["ack"] == 1
    assert "SYN-ACK" in out["matched"] and "+ 1" in out["matched"]
    closed = one_json(packet(tb, "h1", "craft", H2, "--proto", "tcp", "--dport", 5002, "--json"))
    assert closed["reply"]["flags"] == "R." and "RST" in closed["matched"]


def test_craft_ttl_1_and_no_reply(tb, host_state):
    out = one_json(packet(tb, "h1", "craft", H2, "--proto", "udp", "--ttl", 1, "--json"))
    assert out["reply"]["src"] == R1_LEFT and out["reply"]["info"].startswith("time-exceeded")
    assert f"> {H2}:33434 ttl=1" in out["reply"]["info"]     # the quoted probe, TTL spent
    done = packet(tb, "h1", "craft", "10.0.2.99", "--timeout", 0.5)   # nobody has this address
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reply  none: no reply within 0.5 s" in done.stdout


# -- sniff ------------------------------------------------------------------------------
def test_sniff_live_sees_the_first_packet_after_ready(tb, host_state):
    proc = tb.start("h2", [*WIRELAB, "packet", "sniff", "-i", "h2-eth0", "-f",
                           "icmp[icmptype] == icmp-echo", "-c", 5, "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = LineReader(proc.popen.stdout), LineReader(proc.popen.stderr)
    wait_until(lambda: err.has("listening on h2-eth0") or not proc.running(), 15, what="sniff ready")
    assert proc.running(), err.text()
    ping = tb.run("h1", ["ping", "-n", "-c", 5, "-i", 0.01, "-W", 2, H2], timeout=15)
    wait_until(lambda: not proc.running(), 10, what="sniff to stop after 5 packets")
    out.join(5)
    assert proc.popen.returncode == 0, err.text()
    lines = [json.loads(line) for line in out.lines]
    assert [line["info"] for line in lines] == [f"echo-request id={lines[0]['info'].split('id=')[1].split()[0]} "
                                                f"seq={k}" for k in range(1, 6)], ping.stdout


def test_sniffer_api_in_h2_namespace(tb, host_state):
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.sendrecv import sr1
    from wirelab.packets import scapyenv
    from wirelab.packets.sniff import Sniffer
    with Sniffer(iface="h2-eth0", bpf="udp port 9999", node=tb["h2"]) as sniffer:
        packet(tb, "h1", "craft", H2, "--proto", "udp", "--dport", 9999, "--payload", "hello",
               "--timeout", 0.2)
        got = sniffer.wait_for(lambda p: p.haslayer(UDP) and p[UDP].dport == 9999, timeout=5)
    assert got[IP].src == H1 and bytes(got[UDP].payload) == b"hello"
    conf = scapyenv.load()
    with scapyenv.entered(tb["h1"]):   # in-process: scapy's routes are h1's in here
        assert conf.route.route(H2)[0] == "h1-eth0"
        reply = sr1(IP(dst=H2) / ICMP(), timeout=2, verbose=0)
    assert reply is not None and reply[IP].src == H2
    assert conf.route.route(H2)[0] != "h1-eth0"   # and the root namespace's again after


_TCPDUMP_HEAD = re.compile(r"^(\d+\.\d+) IP \(tos \S+, ttl (\d+), id (\d+), offset (\d+), flags \[([^\]]*)\], "
                           r"proto (\w+) \(\d+\), length (\d+)\)$")


def tcpdump_packets(path):
    """tcpdump -r -v: per packet (time, src, dst, ttl, id, offset, MF, DF, tcp flags, tcp payload)."""
    text = subprocess.run(["tcpdump", "-r", path, "-nn", "-tt", "-v"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    records = []
    for line in text.splitlines():
        if not line.startswith(" "):
            m = _TCPDUMP_HEAD.match(line)
            assert m, line
            ts, ttl, ipid, offset, flags, proto, _ = m.groups()
            records.append({"time": ts, "ttl": int(ttl), "ip_id": int(ipid), "frag_offset": int(offset),
                            "mf": "+" in flags, "df": "DF" in flags, "proto": proto, "body": ""})
        else:
            records[-1]["body"] += line.strip() + " "
    for rec in records:
        ends = re.match(r"(\d+\.\d+\.\d+\.\d+)(?:\.(\d+))? > (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?:", rec["body"])
        rec["src"], rec["dst"] = ends.group(1), ends.group(3)
        flags = re.search(r"Flags \[([^\]]*)\]", rec["body"])
        rec["flags"] = flags.group(1) if flags else None
        rec["tcp_len"] = int(re.findall(r"length (\d+)", rec["body"])[-1]) if flags else None
    return records


def test_sniff_from_pcap_equals_tcpdump_and_wireshark(tb, tmp_path, host_state):
    from wirelab.apps.runner import AppServer
    server = [sys.executable, "-m", "wirelab.apps.tcpflow", "serve", "--bind", H2, "--port", 5003,
              "--timeout", 30]
    with Captures(tb, [("h2", "h2-eth0", "h2.pcap")], str(tmp_path), bpf=["ip"]) as caps:
        with AppServer(tb, "h2", [str(a) for a in server], name="tcpflow serve") as app:
            sent = run_client(tb, "h1", [sys.executable, "-m", "wirelab.apps.tcpflow", "send", "--to", H2,
                                         "--port", "5003", "--bytes", "100000", "--seed", "3"], timeout=30)
            app.wait(30)
        assert sent.returncode == 0, sent.stderr
        tb.run("h1", ["ping", "-n", "-c", "2", "-s", "3000", H2], timeout=10)   # fragmented both ways
    pcap = caps.captures[0].path
    done = subprocess.run([*WIRELAB, "packet", "sniff", "-r", pcap, "--json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mine = [json.loads(line) for line in done.stdout.splitlines()]
    theirs = tcpdump_packets(pcap)
    assert len(mine) == len(theirs) > 100
    assert sum(1 for t in theirs if t["mf"]) >= 4 and sum(1 for t in theirs if t["frag_offset"]) >= 4
    for m, t in zip(mine, theirs):
        assert f"{m['time']:.6f}" == t["time"]
        assert (m["src"], m["dst"], m["ttl"], m["ip_id"], m["frag_offset"], m["mf"], m["df"]) == \
               (t["src"], t["dst"], t["ttl"], t["ip_id"], t["frag_offset"], t["mf"], t["df"]), (m, t)
        if t["flags"] is not None and not t["frag_offset"]:
            assert (m["flags"], m["len"]) == (t["flags"], t["tcp_len"]), (m, t)
    fields = ["tcp.seq", "tcp.ack", "tcp.len", "tcp.srcport"]
    shark = subprocess.run(["tshark", "-r", pcap, "-Y", "tcp", "-T", "fields", *sum((["-e", f] for f in fields), [])],
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    tcp = [m for m in mine if m["proto"] == "TCP"]
    assert len(tcp) == len(shark)
    for m, row in zip(tcp, shark):
        seq, ack, length, sport = row.split("\t")
        want_ack = int(ack) if "." in m["flags"] else None
        assert (m["seq"], m["ack"], m["len"], m["sport"]) == (int(seq), want_ack, int(length), int(sport))


# -- trace ------------------------------------------------------------------------------
def _traces(tb, topo, src, dst, timings, proto="udp"):
    """Scapy's hop list and the traceroute binary's, from ``src`` to ``dst``."""
    expected = topo.expected_traceroute(src, dst)
    max_hops = len(expected) + 3
    t0 = time.monotonic()
    mine = packet(tb, src, "trace", topo.ip(dst), "--proto", proto, "-q", 3, "-w", 1, "-m", max_hops, "--json")
    t1 = time.monotonic()
    flag = {"udp": [], "icmp": ["-I"], "tcp": ["-T"]}[proto]
    binary = tb.run(src, ["traceroute", "-n", *flag, "-q", "3", "-w", "1", "-m", str(max_hops), topo.ip(dst)],
                    timeout=60, check=False)
    assert mine.returncode == 0, mine.stdout + mine.stderr
    out = one_json(mine)
    timings.append((f"{src}->{dst}", t1 - t0, time.monotonic() - t1, out["elapsed_s"]))
    hops = [h["addr"] for h in out["hops"]]
    theirs = [h["addr"] for h in parse_traceroute(binary.stdout)]
    return expected, hops, theirs, out


@pytest.mark.slow
def test_trace_equals_traceroute_and_plan_line_and_internet(host_state):
    from topologies.internet import InternetTopo
    from topologies.line import LineTopo
    from wirelab.net.testbed import Testbed
    timings, problems = [], []
    for topo in (LineTopo(n=4), InternetTopo()):
        hosts = topo.host_names()
        with Testbed(topo) as tb:
            for src in hosts:
                for dst in hosts:
                    if src == dst:
                        continue
                    expected, hops, theirs, out = _traces(tb, topo, src, dst, timings)
                    if not hops == theirs == expected:
                        problems.append(f"{src}->{dst}: scapy {hops}, traceroute {theirs}, plan {expected}")
                    if not all(None not in h["rtts_ms"] and len(h["rtts_ms"]) == 3 for h in out["hops"]):
                        problems.append(f"{src}->{dst}: unanswered probes {out['hops']}")
            if isinstance(topo, LineTopo):
                for proto in ("icmp", "tcp"):
                    expected, hops, theirs, _ = _traces(tb, topo, "h1", "h2", timings, proto)
                    if not hops == theirs == expected:
                        problems.append(f"{proto} h1->h2: scapy {hops}, traceroute {theirs}, plan {expected}")
    mine = sum(t[1] for t in timings) / len(timings)
    binary = sum(t[2] for t in timings) / len(timings)
    probing = sum(t[3] for t in timings) / len(timings)
    print(f"\n{len(timings)} traces: scapy trace {mine:.3f} s per pair ({probing:.3f} s probing, the rest "
          f"process start), traceroute {binary:.3f} s; slowest scapy {max(t[1] for t in timings):.3f} s")
    assert not problems, "\n".join(problems)


def test_ctrl_c_ends_sniff_cleanly_and_trace_at_once(tb, host_state):
    sniff = tb.start("h2", [*WIRELAB, "packet", "sniff", "-i", "h2-eth0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = LineReader(sniff.popen.stdout), LineReader(sniff.popen.stderr)
    wait_until(lambda: err.has("listening on") or not sniff.running(), 15, what="sniff ready")
    tb.run("h1", ["ping", "-n", "-c", "1", H2], timeout=10)
    # ping returns on the reply; the sniffer prints it a moment later: wait for both lines
    wait_until(lambda: sum("ICMP" in line for line in list(out.lines)) >= 2 or not sniff.running(), 15,
               what="sniff to print the echo request and reply")
    assert sniff.stop(signal.SIGINT, timeout=10) == 0, err.text()
    err.join(5)
    assert err.lines[-1].endswith("packets captured") and int(err.lines[-1].split()[-3]) >= 2
    # a trace towards nobody waits 10 s per hop: SIGINT ends it within one hop's wait
    trace = tb.start("h1", [*WIRELAB, "packet", "trace", "10.0.2.99", "-w", "10"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = LineReader(trace.popen.stdout), LineReader(trace.popen.stderr)
    wait_until(lambda: out.has(" 1  10.0.1.1") or not trace.running(), 15, what="trace's first hop")
    started = time.monotonic()
    assert trace.stop(signal.SIGINT, timeout=10) == 130
    err.join(5)
    assert time.monotonic() - started < 5 and err.lines == ["wirelab packet: interrupted"], err.text()
