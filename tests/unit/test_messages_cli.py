"""``wirelab messages``: the JSON lines, --json, --plot, --logs (exit 7 when they
differ), no messages, and one-line errors with exit 2 for unusable captures."""

import json
import os
import subprocess
import sys

import pytest

from wirelab.observe import msgsynth as S
from wirelab.observe.messages_cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C, SV = ("10.1.0.2", 41234), ("10.1.0.11", 6000)
REQ, RESP = {"type": "map", "task": 1}, {"type": "result", "task": 1, "count": 3}
HB = {"type": "heartbeat", "node": "cs1", "seq": 4}
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def capture(tmp_path):
    pkts = S.tcp_connection(C, SV, json.dumps(REQ).encode(), json.dumps(RESP).encode(), t0=T0)
    pkts.append((T0 + 5_000_000, S.udp_packet("10.1.0.3", "10.1.0.11", 5000, 7000, json.dumps(HB).encode()), ""))
    pkts.append((T0 + 6_000_000, S.udp_packet("10.1.0.3", "10.1.0.11", 5000, 7000, b"\xff\xfe junk"), ""))
    path = tmp_path / "app.pcap"
    path.write_bytes(S.pcap_file(pkts))
    return path


def run(*args):
    """The installed entry point, as a user runs it (stdout, stderr, exit code)."""
    return subprocess.run([sys.executable, "-m", "wirelab", "messages", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def one_line_error(done, start):
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith(start), done.stderr
    assert "Traceback" not in done.stderr


def test_json_lines_and_summary(capture):
    done = run(capture)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert sorted(lines[0]) == ["dst", "error", "message", "src", "t", "transport"]
    got = sorted((d["transport"], tuple(d["src"]), json.dumps(d["message"]), d["error"] is None) for d in lines)
    assert got == sorted([("tcp", C, json.dumps(REQ), True), ("tcp", SV, json.dumps(RESP), True),
                          ("udp", ("10.1.0.3", 5000), json.dumps(HB), True), ("udp", ("10.1.0.3", 5000), "null", False)])
    assert done.stderr.count("\n") == 1
    assert "4 messages (2 TCP, 2 UDP)" in done.stderr and "1 with an error (1 not JSON)" in done.stderr


def test_port_filter_and_json_document(capture, capsys):
    assert main([str(capture), "--port", "7000", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert [m["message"] for m in doc["messages"]] == [HB, None]
    assert doc["summary"]["messages"] == {"udp": 2} and doc["ports"] == [7000]
    assert doc["messages"][0]["bytes"] == len(json.dumps(HB))
    assert "comparison" not in doc


def test_plot_writes_a_png(capture, tmp_path):
    out = tmp_path / "timeline.png"
    done = run(capture, "--plot", out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "timeline written" in done.stderr


def test_no_messages(tmp_path):
    path = tmp_path / "acks.pcap"
    pkts = S.tcp_connection(C, SV, b"", b"")
    path.write_bytes(S.pcap_file(pkts))
    done = run(path, "--plot", tmp_path / "x.png")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.splitlines()[0] == (f"no JSON messages in {path} ({len(pkts)} packets, "
                                           "1 TCP connections, 0 UDP datagrams)")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "empty", "directory"])
def test_unusable_input_is_one_line_and_exit_2(tmp_path, capture, case):
    path = tmp_path / "bad.pcap"
    if case == "text":
        path.write_text("this is not a capture\n")
    elif case == "truncated":
        path.write_bytes(capture.read_bytes()[:-20])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path = tmp_path
    done = run(path)
    assert done.returncode == 2
    if case == "truncated":   # the complete packets' messages are printed, then the error
        assert done.stderr.count("\n") == 1 and "truncated after" in done.stderr
        assert done.stderr.startswith(f"wirelab messages: error: {path}: ")
    else:
        one_line_error(done, f"wirelab messages: error: {path}: ")


def test_bad_arguments(capture, tmp_path):
    done = run(capture, "--port", "70000")
    assert done.returncode == 2
    one_line_error(done, "wirelab messages: error: --port must be 0..65535")
    done = run(capture, "--logs", tmp_path / "nosuch.jsonl")
    assert done.returncode == 2
    one_line_error(done, f"wirelab messages: error: {tmp_path}/nosuch.jsonl: No such file")
    done = run("--help")
    assert done.returncode == 0 and "usage: wirelab messages" in done.stdout and done.stderr == ""


def _log(path, events):
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def ev(event, transport, src, dst, message):
    return {"t": 1.0, "event": event, "transport": transport, "src": list(src), "dst": list(dst), "message": message}


def test_logs_same_and_different(capture, tmp_path):
    hb_src, hb_dst = ("10.1.0.3", 5000), ("10.1.0.11", 7000)
    client = _log(tmp_path / "client.jsonl", [{"event": "start"}, ev("send", "tcp", C, SV, REQ),
                                              ev("recv", "tcp", SV, C, RESP)])
    server = _log(tmp_path / "server.jsonl", [ev("recv", "tcp", C, SV, REQ), ev("send", "tcp", SV, C, RESP),
                                              ev("recv", "udp", hb_src, hb_dst, HB)])
    done = run(capture, "--port", "6000", "--logs", client, server)
    assert done.returncode == 0, done.stderr
    assert "logs vs capture: same: 2 matched" in done.stderr
    # the heartbeat logged by its sender too, and one that never made it to the wire
    node = _log(tmp_path / "cs1.jsonl", [ev("send", "udp", hb_src, hb_dst, HB),
                                        ev("send", "udp", hb_src, hb_dst, {**HB, "seq": 5}), "READY"])
    done = run(capture, "--logs", client, server, node)
    assert done.returncode == 7
    err = done.stderr
    assert "logs vs capture: DIFFERENT: 3 matched, 1 missing on the wire" in err
    assert '  missing_on_wire: 1x udp 10.1.0.3:5000 -> 10.1.0.11:7000 {"node": "cs1", "seq": 5' in err
    assert "  unreadable_on_wire: udp 10.1.0.3:5000 -> 10.1.0.11:7000 not JSON" in err
    assert "cs1.jsonl: skipped 1 lines" in err
    done = run(capture, "--json", "--logs", client, server, node)
    assert done.returncode == 7
    comparison = json.loads(done.stdout)["comparison"]
    assert comparison["counts"]["missing_on_wire"] == 1 and not comparison["ok"]


def test_listed_in_wirelab_help():
    done = subprocess.run([sys.executable, "-m", "wirelab", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert "messages" in done.stdout
