"""DropIcmpFragNeeded without root: validation and the exact rules each backend
writes (the backends' command runner is replaced by a recorder)."""

import types

import pytest

from wirelab.errors import ConfigError
from wirelab.impair import faults, nft, xtables
from wirelab.impair.faults import DropIcmpFragNeeded

RUN = "20250101T000000-abcdef"


class Recorder:
    """Stands in for wirelab.proc.run: records (argv, input), answers empty."""

    def __init__(self):
        self.calls = []

    def __call__(self, node, argv, timeout, input=None, check=True):
        self.calls.append((list(argv), input))
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(nft, "run", rec)
    monkeypatch.setattr(xtables, "run", rec)
    return rec


NODE = types.SimpleNamespace(name="r2")


def test_candidates_cover_both_families_unless_pinned():
    both = DropIcmpFragNeeded()
    assert both.families() == (4, 6)
    assert both.nft_candidates() == ("icmp type destination-unreachable icmp code frag-needed",
                                     "icmpv6 type packet-too-big")
    assert both.nft_l4proto() == "{ icmp, ipv6-icmp }"
    v4 = DropIcmpFragNeeded(dst="10.0.0.1")
    assert v4.families() == (4,) and v4.nft_l4proto() == "icmp"
    assert v4.nft_flow() == " ip daddr 10.0.0.1"
    assert v4.nft_candidates() == ("icmp type destination-unreachable icmp code frag-needed",)
    assert DropIcmpFragNeeded(src="fd00::1").nft_l4proto() == "ipv6-icmp"


def test_every_candidate_is_dropped():
    assert DropIcmpFragNeeded().nth_candidate() is None
    # the TCP faults keep their numbering
    assert faults.DropSynAck().nth_candidate() == 1


@pytest.mark.parametrize("kwargs", [dict(src="nope"), dict(dst="10.0.0.300"),
                                    dict(src="10.0.0.1", dst="fd00::1")])
def test_validation_is_one_line_config_error(kwargs):
    with pytest.raises(ConfigError) as exc:
        DropIcmpFragNeeded(**kwargs)
    assert "\n" not in str(exc.value)


def test_nft_rules_exact(recorder):
    table = nft.NftTable(NODE, RUN)
    key = table.add(DropIcmpFragNeeded(dst="10.0.0.1"))
    assert key == "f0"
    text = recorder.calls[-1][1]
    assert text == (
        "table inet wl_20250101T000000-abcdef {\n"
        "  counter f0_matched { }\n"
        "  counter f0_dropped { }\n"
        "  chain f0_hit {\n"
        '    counter name "f0_matched" counter name "f0_dropped" drop\n'
        "  }\n"
        "  chain f0 {\n"
        "    icmp type destination-unreachable icmp code frag-needed goto f0_hit\n"
        "  }\n"
        "  chain pre { meta l4proto icmp ip daddr 10.0.0.1 jump f0; }\n"
        "  chain out { meta l4proto icmp ip daddr 10.0.0.1 jump f0; }\n"
        "}\n")


def test_nft_tcp_fault_text_unchanged(recorder):
    """The TCP faults still jump on tcp and pick their candidate with numgen."""
    table = nft.NftTable(NODE, RUN)
    table.add(faults.DropSynAck(dport=80))
    text = recorder.calls[-1][1]
    assert '    counter name "f0_matched" numgen inc mod 4294967295 0 counter name "f0_dropped" drop\n' in text
    assert "  chain out { meta l4proto tcp tcp sport 80 jump f0; }\n" in text


def test_xtables_rules_exact(recorder):
    table = xtables.XtTable(NODE, RUN)
    cand, hit = table.add(DropIcmpFragNeeded(dst="10.0.0.1"))
    argv, text = recorder.calls[-1]
    assert argv[0] == "iptables-legacy-restore"
    assert text.splitlines() == [
        "*raw",
        f":{cand} - [0:0]", f":{hit} - [0:0]",
        f"-A {table.name} -p icmp -d 10.0.0.1 -j {cand}",
        f"-A {cand} -p icmp -m icmp --icmp-type fragmentation-needed -g {hit}",
        f"-A {hit}",
        f"-A {hit} -j DROP",
        "COMMIT"]


def test_xtables_ipv6_form(recorder):
    table = xtables.XtTable(NODE, RUN)
    cand, hit = table.add(DropIcmpFragNeeded(dst="fd00::1"))
    argv, text = recorder.calls[-1]
    assert argv[0] == "ip6tables-legacy-restore"
    assert f"-A {table.name} -p ipv6-icmp -d fd00::1 -j {cand}" in text.splitlines()
    assert f"-A {cand} -p ipv6-icmp -m icmp6 --icmpv6-type packet-too-big -g {hit}" in text.splitlines()
