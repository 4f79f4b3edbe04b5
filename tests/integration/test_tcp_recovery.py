"""tcp_recovery end to end: netem scenarios (inside UML when the kernel lacks
sch_netem) and the targeted faults, which need only nftables (host kernel).

Every expectation comes from the experiment's own claims, whose tolerances are
derived from the parameters (Wilson intervals for rates, the configured delay
for one-way delays); these tests check that the claims are there, that they
hold, and that the evidence files they rest on were written.
"""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "experiments"))

from tcp_recovery import TcpRecovery, TcpRecoveryParams  # noqa: E402


def _run(tmp_path, **params):
    exp = TcpRecovery(TcpRecoveryParams(**params), out_dir=str(tmp_path / "run"))
    claims = exp.execute()
    with open(exp.path("metrics.json")) as f:
        metrics = json.load(f)
    failed = [c.line() for c in claims if not c.ok]
    return exp, claims, metrics, failed


@pytest.mark.netem
def test_loss_reorder_duplicate_are_hidden_and_proved(tmp_path):
    exp, claims, metrics, failed = _run(
        tmp_path, scenarios=("loss", "reorder", "duplicate"), faults=(), bytes=1_000_000,
        loss=3.0)
    assert not failed, "\n".join(failed)
    assert metrics["status"] == "pass"
    names = [c.name for c in claims]
    for scenario in ("loss", "reorder", "duplicate"):
        assert f"{scenario}: receiver got exactly the bytes sent, in order (sha256)" in names
        assert any(n.startswith(f"{scenario}: measured") for n in names)
        for f in ("up.pcap", "down.pcap", "rcv.pcap", "ledger.json", "run.json", "time_sequence.png"):
            assert os.path.exists(exp.path("scenarios", scenario, f)), f
    m = metrics["metrics"]["scenarios"]
    # The network really did each thing (else the recovery claims prove nothing).
    assert m["loss"]["ledger"]["data_direction"]["data_dropped"] > 0
    assert m["duplicate"]["ledger"]["data_direction"]["data_extra_copies"] > 0
    assert m["reorder"]["ledger"]["data_direction"]["data_reordered"] > 0
    assert m["loss"]["rates"]["dropped"]["false_alarm_probability"] < 1e-3


def test_targeted_faults_show_the_exact_recovery(tmp_path):
    from wirelab import faults
    try:
        exp, claims, metrics, failed = _run(
            tmp_path, scenarios=(), faults=("nth", "synack", "fin"), bytes=300_000, nth=10)
    except getattr(faults, "FaultsUnavailableError", ()) as exc:
        pytest.skip(str(exc))
    if metrics["metrics"].get("skipped"):
        pytest.skip("; ".join(metrics["metrics"]["skipped"]))
    assert not failed, "\n".join(failed)
    f = metrics["metrics"]["faults"]
    synack = f["synack"]["recovery"]["recovery"]
    # The SYN-ACK came again after the initial RTO (1 s), not sooner.
    assert 900 <= synack["retransmitted_after_ms"] <= 3000
    assert f["nth"]["fault"]["counts"]["dropped"] == 1
    assert f["fin"]["recovery"]["dropped"][0]["flags"].startswith("F")
