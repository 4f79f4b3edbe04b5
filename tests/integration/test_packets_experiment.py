"""The packets experiment end to end (root), and its live parts: the ICMP
black-hole fault in both backends, the MTU and sysctl handles undone on an
exception and at teardown."""

import json
import os
import shutil

import pytest

from test_experiments_e2e import CLAIM_FIELDS, assert_reverify_equals_run, run_experiment
from wirelab.impair.faults import DropIcmpFragNeeded
from wirelab.net.mtu import LinkMtu, flush_route_cache, link_mtu, route_mtu
from wirelab.net.sysctl import SysctlChange, read_sysctl
from wirelab.net.testbed import Testbed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def failed_lines(done):
    """The claim table's failed rows first (the table is longer than a message)."""
    rows = [line for line in done.stdout.splitlines() if "  FAIL  " in line]
    return "\n".join(rows) + "\n...\n" + done.stdout[-1500:]


def test_packets_end_to_end(tmp_path, host_state):
    done, out, metrics = run_experiment("packets", tmp_path)
    assert done.returncode == 0, failed_lines(done) + done.stderr[-2000:]
    assert metrics["status"] == "pass" and len(metrics["claims"]) == 28
    assert all(c["ok"] for c in metrics["claims"])
    m = metrics["metrics"]
    # 1 MB in 1448-byte segments: ceil(1000000 / 1448) = 691, none re-sent
    assert m["tcp_sizes"]["1000000"]["data_segments"] == 691 and m["tcp_sizes"]["1000000"]["retransmissions"] == 0
    assert m["udp_sizes"]["65507"]["fragments"] == 45 and m["udp_sizes"]["1473"]["fragments"] == 2
    assert [x["next_hop_mtu"] for x in m["mtu"]["udp_df_set"]["icmp"]] == [1000]
    assert m["mtu"]["tcp_pmtud"]["largest_after_r2"] == 948 and m["mtu"]["tcp_pmtud"]["route_mtu_after"] == 1000
    assert m["mtu"]["blackhole"]["bytes_after_r2"] == 0 and m["mtu"]["blackhole"]["route_mtu_after"] is None
    assert m["mtu"]["probing"]["first_smaller_after_ms"] >= 3000 - 10
    assert m["sharing"]["flows"] == 6 and m["sharing"]["unmatched"] == 0 and m["sharing"]["alternations"] > 5
    cases = json.loads((out / "run.json").read_text())["cases"]
    assert cases[0] == "sizes/tcp-100" and cases[-1] == "sharing" and "mtu/tcp-probing" in cases
    probing = json.loads((out / "mtu" / "tcp-probing" / "case.json").read_text())
    assert probing["faults"][0]["type"] == "DropIcmpFragNeeded" and probing["faults"][0]["backend"] == "nft"
    assert probing["workload"]["sysctls"][0]["after_restore"] == "0"
    for png in ("sharing/packets_by_flow.png", "mtu/segment_sizes.png"):
        assert (out / png).stat().st_size > 10_000
    assert "all claims hold" in done.stdout
    assert_reverify_equals_run(out, metrics)


def test_verify_fails_exactly_the_claim_whose_evidence_is_wrong(tmp_path, host_state):
    """A folder with one datagram missing at the receiver: only that claim fails."""
    done, out, metrics = run_experiment("packets", tmp_path, "--tcp-sizes", "100", "1000000",
                                        "--probing-timeout", "40", "--flow-bytes", "500000")
    assert done.returncode == 0, failed_lines(done) + done.stderr[-2000:]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    path = bad / "sizes" / "udp" / "case.json"
    case = json.loads(path.read_text())
    case["workload"]["receiver"]["datagrams"].pop(2)
    path.write_text(json.dumps(case))
    from wirelab.experiment.core import reverify
    from wirelab.experiment.evidence import to_jsonable
    _, claims, _ = reverify(bad)
    claims = json.loads(json.dumps(to_jsonable(claims)))
    failed = [c["name"] for c in claims if not c["ok"]]
    assert failed == ["UDP: the receiver got every datagram whole (size and sha256 equal)"]
    assert [{f: c[f] for f in CLAIM_FIELDS} for c in claims if c["ok"]] == \
        [{f: c[f] for f in CLAIM_FIELDS} for c in metrics["claims"] if c["name"] not in failed]


@pytest.mark.parametrize("backend", ["nft", "xtables"])
def test_icmp_frag_needed_fault_drops_every_one(backend, host_state):
    from topologies.line import LineTopo
    with Testbed(LineTopo(n=2)) as tb:
        with LinkMtu(tb, [("r2", "r2-eth1"), ("h2", "h2-eth0")], 1000):
            hole = tb.install_fault("r2", DropIcmpFragNeeded(dst=tb.ip("h1")), backend=backend)
            ping = ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1200", tb.ip("h2")]
            done = tb.run("h1", ping, timeout=15, check=False)
            assert done.returncode == 1 and "Frag needed" not in done.stdout
            assert hole.counters() == {"matched": 3, "dropped": 3}
            assert route_mtu(tb, "h1", tb.ip("h2")) is None
            hole.remove()
            done = tb.run("h1", ping[:3] + ["1"] + ping[4:], timeout=15, check=False)
            assert "Frag needed and DF set (mtu = 1000)" in done.stdout
            assert route_mtu(tb, "h1", tb.ip("h2")) == 1000
            flush_route_cache(tb, "h1")
            assert route_mtu(tb, "h1", tb.ip("h2")) is None


def test_mtu_and_sysctl_restored_on_exception_and_at_teardown(host_state):
    from topologies.line import LineTopo
    with Testbed(LineTopo(n=2)) as tb:
        with pytest.raises(RuntimeError):
            with LinkMtu(tb, [("r1", "r1-eth1"), ("r2", "r2-eth0")], 1200) as change, \
                    SysctlChange(tb, "h1", "net/ipv4/tcp_mtu_probing", "2"):
                assert link_mtu(tb, "r1", "r1-eth1") == link_mtu(tb, "r2", "r2-eth0") == 1200
                assert read_sysctl(tb.node("h1"), "net/ipv4/tcp_mtu_probing") == "2"
                raise RuntimeError("a case failed")
        assert link_mtu(tb, "r1", "r1-eth1") == 1500 and not change.live
        assert read_sysctl(tb.node("h1"), "net/ipv4/tcp_mtu_probing") == "0"
        left = LinkMtu(tb, [("r1", "r1-eth1")], 900).apply()     # never removed by the caller
        probe = SysctlChange(tb, "h1", "net/ipv4/tcp_mtu_probing", "1").apply()
        assert link_mtu(tb, "r1", "r1-eth1") == 900
        r1 = tb.node("r1")
        seen = {}
        tb.add_cleanup("look", lambda: seen.update(mtu=link_mtu(tb, r1, "r1-eth1")))
    # cleanups run newest first: ours saw 900, then the handles restored
    assert seen == {"mtu": 900} and not left.live and not probe.live
