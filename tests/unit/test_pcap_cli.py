"""tools/pcapstat.py: text, --json, --flow, --help."""

import json
import os
import subprocess

from test_pcap_common import DATA, PCAPSTAT


def pcapstat(*args):
    r = subprocess.run([str(PCAPSTAT), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_executable_with_polyglot_header():
    assert os.access(PCAPSTAT, os.X_OK)
    assert PCAPSTAT.read_text().startswith("#!/bin/sh\n'''")


def test_help():
    out = pcapstat("--help")
    assert "--json" in out and "--flow" in out


def test_text_table():
    out = pcapstat(DATA / "base_loss.pcap")
    assert "1 connections" in out and "127.0.0.1:5001" in out
    head = next(line for line in out.splitlines() if line.lstrip().startswith("stream"))
    for col in ("retx", "fast", "rto", "spur", "ooo", "dupack", "rtt_ms", "goodput"):
        assert col in head.split()


def test_json_and_flow_filter():
    d = json.loads(pcapstat("--json", DATA / "base_loss.pcap"))
    (f,) = d["flows"]
    c2s = f["client_to_server"]
    assert c2s["retransmissions"] == 18 and c2s["fast_retransmissions"] == 11
    port = f["client"].rsplit(":", 1)[1]
    assert len(json.loads(pcapstat("--json", "--flow", "127.0.0.1:5001", DATA / "base_loss.pcap"))["flows"]) == 1
    assert len(json.loads(pcapstat("--json", "--flow", f":{port}", DATA / "base_loss.pcap"))["flows"]) == 1
    assert json.loads(pcapstat("--json", "--flow", "10.0.0.1:5001", DATA / "base_loss.pcap"))["flows"] == []
    assert len(json.loads(pcapstat("--json", "--flow", "::1", DATA / "base_v6.pcap"))["flows"]) == 1
