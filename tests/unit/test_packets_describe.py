"""sniff's lines: relative sequence numbers per flow and direction (as Wireshark),
fragment offset and MF, the JSON line format, reading captures (and a bad one)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from wirelab.observe.pcap import tcpflags
from wirelab.packets.describe import Describer, PacketLine, RelativeSeq, describe

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PCAPS = os.path.join(REPO, "tests", "data", "pcap")
A, B = "10.0.1.2", "10.0.2.2"
S, SA, AK = tcpflags.SYN, tcpflags.SYN | tcpflags.ACK, tcpflags.ACK


def test_relative_seq_per_direction_from_the_syn():
    r = RelativeSeq()
    assert r.relative(A, 40000, B, 80, S, 1000, 0) == (0, None)            # no ACK bit: no ack
    assert r.relative(B, 80, A, 40000, SA, 5000, 1001) == (0, 1)
    assert r.relative(A, 40000, B, 80, AK, 1001, 5001) == (1, 1)
    assert r.relative(A, 40000, B, 80, AK, 2449, 5001) == (1449, 1)
    assert r.relative(B, 80, A, 40000, AK, 5001, 2449) == (1, 1449)
    # another flow between the same hosts has its own bases
    assert r.relative(A, 40001, B, 80, S, 7, 0) == (0, None)


def test_relative_seq_mid_flow_wraparound_and_reuse():
    r = RelativeSeq()
    # capture started mid-flow: the first segment seen is the base; the other side unseen yet
    assert r.relative(A, 1, B, 2, AK, 2**32 - 10, 77) == (0, None)
    assert r.relative(A, 1, B, 2, AK, 5, 77) == (15, None)                 # across 2^32
    assert r.relative(B, 2, A, 1, AK, 70, 6) == (0, 16)
    # the 4-tuple reused by a new connection: its SYN starts a new base
    assert r.relative(A, 1, B, 2, S, 123, 0) == (0, None)
    assert r.relative(A, 1, B, 2, AK, 124, 71) == (1, 1)


def test_fragments_show_offset_in_bytes_and_mf():
    from scapy.layers.inet import ICMP, IP, fragment
    big = IP(src=A, dst=B, id=4242) / ICMP(id=1, seq=1) / (b"x" * 3000)
    parts = fragment(big, fragsize=1480)
    d = Describer()
    lines = []
    for k, part in enumerate(parts):
        p = IP(bytes(part))
        p.time = 10.0 + k / 1000
        lines.append(d(p))
    assert [(l.frag_offset, l.mf, l.ip_id) for l in lines] == [(0, True, 4242), (1480, True, 4242),
                                                               (2960, False, 4242)]
    assert [l.len for l in lines] == [1480 - 8, 1480, 48]   # after ICMP's header; later ones: data
    assert lines[0].info.startswith("echo-request id=1 seq=1")
    assert lines[1].info == "fragment" and lines[1].proto == "ICMP"
    assert "frag=1480 MF" in lines[1].human() and "frag=2960" in lines[2].human()
    assert "MF" not in lines[2].human()
    assert lines[2].rel_time == pytest.approx(0.002)


def test_tcp_line_and_its_json():
    from scapy.layers.inet import IP, TCP
    d = Describer()
    syn = IP(bytes(IP(src=A, dst=B, id=9, flags="DF") / TCP(sport=40000, dport=80, flags="S", seq=1000)))
    syn.time = 5.0
    synack = IP(bytes(IP(src=B, dst=A, id=0, ttl=63) / TCP(sport=80, dport=40000, flags="SA", seq=9, ack=1001)))
    synack.time = 5.25
    data = IP(bytes(IP(src=A, dst=B, id=10) / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=10) / b"hello"))
    data.time = 5.5
    first, second, third = d(syn), d(synack), d(data)
    assert first.human() == "0.000000 10.0.1.2:40000 > 10.0.2.2:80 TCP [S] seq=0 len=0 ipid=9 ttl=64 DF"
    assert second.human() == "0.250000 10.0.2.2:80 > 10.0.1.2:40000 TCP [S.] seq=0 ack=1 len=0 ipid=0 ttl=63"
    assert second.human(absolute=True).startswith("0.250000 10.0.2.2:80 > 10.0.1.2:40000 TCP [S.] seq=9 ack=1001")
    assert (third.flags, third.seq, third.ack, third.len) == ("P.", 1, 1, 5)
    record = json.loads(json.dumps(third.to_dict()))
    assert list(record) == ["time", "rel_time", "src", "dst", "proto", "sport", "dport", "flags", "seq",
                            "ack", "seq_raw", "ack_raw", "len", "ip_len", "ip_id", "ttl", "frag_offset",
                            "mf", "df", "info"]
    assert PacketLine(**record) == third
    assert (record["time"], record["rel_time"], record["seq_raw"], record["ip_len"]) == (5.5, 0.5, 1001, 45)


def test_icmp_error_names_what_it_quotes():
    from scapy.layers.inet import ICMP, IP, IPerror, UDPerror
    err = IP(bytes(IP(src="10.0.1.1", dst=A) / ICMP(type=3, code=4, nexthopmtu=1000) /
                   IPerror(src=A, dst=B, ttl=3, id=7, proto=17) / UDPerror(sport=1, dport=2)))
    err.time = 1.0
    line = describe(err, 1.0, RelativeSeq())
    assert line.info == ("dest-unreach fragmentation-needed mtu=1000 quoting UDP 10.0.1.2:1 > 10.0.2.2:2 "
                         "ttl=3 id=7")


def run_sniff(*args):
    return subprocess.run([sys.executable, "-m", "wirelab.packets.cli", "sniff", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_sniff_reads_every_link_type_the_house_reader_reads():
    for name in ("link_ethernet.pcap", "link_sll.pcap", "link_sll2.pcap", "link_raw.pcap",
                 "link_null.pcap", "link_pcapng.pcapng", "link_vlan.pcap", "base_v6.pcap"):
        done = run_sniff("-r", os.path.join(PCAPS, name), "--json", "-c", "3")
        assert done.returncode == 0, (name, done.stderr)
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(lines) == 3 and all(line["proto"] == "TCP" for line in lines), (name, lines)


@pytest.mark.parametrize("name, words", [("err_text.pcap", "not a pcap or pcapng file"),
                                         ("err_empty.pcap", "")])
def test_a_bad_capture_is_one_line_exit_2(name, words):
    done = run_sniff("-r", os.path.join(PCAPS, name))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("wirelab packet sniff: error: ") and words in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("name", ["base_loss.pcap", "crafted_reorder.pcap", "link_vlan.pcap"])
def test_relative_seq_and_ack_equal_wiresharks(name):
    path = os.path.join(PCAPS, name)
    done = run_sniff("-r", path, "--json")
    assert done.returncode == 0, done.stderr
    mine = [json.loads(line) for line in done.stdout.splitlines()]
    mine = [m for m in mine if m["proto"] == "TCP"]
    shark = subprocess.run(["tshark", "-r", path, "-Y", "tcp", "-T", "fields", "-e", "tcp.seq", "-e", "tcp.ack",
                            "-e", "tcp.len", "-e", "tcp.flags.ack"],
                           capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert len(mine) == len(shark) > 10
    for m, row in zip(mine, shark):
        seq, ack, length, has_ack = row.split("\t")
        assert (m["seq"], m["len"]) == (int(seq), int(length)), (m, row)
        if has_ack in ("1", "True"):
            assert m["ack"] == int(ack), (m, row)


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed")
def test_a_filter_on_a_capture_file_keeps_what_it_matches():
    path = os.path.join(PCAPS, "base_loss.pcap")
    done = run_sniff("-r", path, "-f", "tcp[tcpflags] & tcp-syn != 0", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["flags"] for line in lines] == ["S", "S."]
    bad = run_sniff("-r", path, "-f", "tcp port nonsense")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
