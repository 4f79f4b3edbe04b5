"""Files that are not captures, empty or truncated: clear errors, no traceback."""

import subprocess

import pytest

from test_pcap_common import DATA, GOLDEN, PCAPSTAT
from wirelab.errors import WirelabError
from wirelab.observe.pcap import NotACaptureError, PcapFormatError, analyze


def pcapstat(*args):
    return subprocess.run([str(PCAPSTAT), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_text_file_is_not_a_capture():
    with pytest.raises(NotACaptureError) as e:
        analyze(DATA / "err_text.pcap")
    assert str(e.value).endswith("err_text.pcap: not a pcap or pcapng file (magic 0x74686973)")
    assert isinstance(e.value, PcapFormatError) and isinstance(e.value, WirelabError)


def test_empty_file():
    with pytest.raises(NotACaptureError, match=r"not a pcap or pcapng file \(magic 0x, file is only 0 bytes"):
        analyze(DATA / "err_empty.pcap")


def test_truncated_file_reports_what_was_read():
    rep = analyze(DATA / "err_truncated.pcap")
    n = GOLDEN["injected"]["err_truncated.pcap"]["complete_packets"]
    assert rep.packets == n and rep.truncated == f"truncated after {n} packets"
    assert len(rep.flows) == 1 and rep.flows[0].handshake.complete


def test_truncated_in_file_header(tmp_path):
    p = tmp_path / "hdr.pcap"
    p.write_bytes((DATA / "link_ethernet.pcap").read_bytes()[:10])
    rep = analyze(p)
    assert rep.packets == 0 and rep.truncated == "truncated in the pcap file header"


def test_truncated_pcapng(tmp_path):
    raw = (DATA / "link_pcapng.pcapng").read_bytes()
    p = tmp_path / "cut.pcapng"
    p.write_bytes(raw[: len(raw) - 50])
    rep = analyze(p)
    assert rep.packets == 299 and rep.truncated == "truncated after 299 packets"


@pytest.mark.parametrize("name,magic", [("err_text.pcap", "0x74686973"), ("err_empty.pcap", "0x")])
def test_cli_not_a_capture(name, magic):
    r = pcapstat(DATA / name)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"pcapstat: error: {DATA / name}: not a pcap or pcapng file (magic {magic}")
    assert r.stdout == ""


def test_cli_missing_file(tmp_path):
    r = pcapstat(tmp_path / "nope.pcap")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("pcapstat: error: ") and "No such file" in r.stderr


def test_cli_truncated_warns_and_reports():
    r = pcapstat(DATA / "err_truncated.pcap")
    assert r.returncode == 0
    assert r.stderr == f"pcapstat: warning: {DATA / 'err_truncated.pcap'}: truncated after 100 packets\n"
    assert "100 packets" in r.stdout
