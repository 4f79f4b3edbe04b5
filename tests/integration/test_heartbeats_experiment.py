"""The heartbeats experiment end to end (root): the partition natively (it
needs no netem: a bridge port goes down and up), and the whole experiment
where sch_netem exists (inside User-Mode Linux on a kernel without it:
``tools/uml_run.py -- .venv/bin/python -m pytest -m netem tests/integration/test_heartbeats_experiment.py``).

Every expectation comes from the experiment's claims, whose tolerances come
from the parameters; these tests check that the claims are there and hold,
that verify from the folder alone gives the same claims, that the evidence
files exist, and that nothing is left behind."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "experiments"))

from heartbeats import Heartbeats, HeartbeatsParams  # noqa: E402

from wirelab.experiment.core import reverify  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def _run(tmp_path, **params):
    exp = Heartbeats(HeartbeatsParams(**params), out_dir=str(tmp_path / "run"))
    claims = exp.execute()
    with open(exp.path("metrics.json")) as f:
        metrics = json.load(f)
    # verify is a function of the folder: checked again from disk, the same claims
    _, again, saved = reverify(exp.out_dir)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in claims] == [c.to_dict() for c in saved]
    return exp, claims, metrics, [c.line() for c in claims if not c.ok]


def test_partition_natively(tmp_path, host_state):
    exp, claims, metrics, failed = _run(tmp_path, cases=("partition",))
    assert not failed, "\n".join(failed)
    assert metrics["status"] == "pass" and len(claims) == 9
    case = json.loads(open(exp.path("partition", "case.json")).read())
    fault = case["workload"]["fault"]
    assert fault["port"] == "srvlan:srvlan-eth3" and fault["up"][0] - fault["down"][1] >= 1.5
    w1 = metrics["metrics"]["cases"]["partition"]["w1"]
    assert w1["deaths"] == {"fixed_k": {"true: link down": 1}, "phi": {"true: link down": 1}}
    assert w1["lost"] == w1["loss_runs"][0][1] >= 14          # one run: the cut
    assert metrics["metrics"]["cases"]["partition"]["w2"]["lost"] == 0
    for f in ("server.jsonl", "w1.jsonl", "w2.jsonl", "server.pcap", "timeline.png"):
        assert os.path.getsize(exp.path("partition", f)) > 0, f
    # the permanent ARP entries were there during the run, and are gone with the network
    run = json.loads(open(exp.path("run.json")).read())
    assert all(e and e[0]["permanent"] for e in run["neighbours"].values())


@pytest.mark.netem
def test_whole_experiment_with_netem(tmp_path):
    exp, claims, metrics, failed = _run(tmp_path)
    assert not failed, "\n".join(failed)
    assert metrics["status"] == "pass" and len(claims) == 33
    cases = metrics["metrics"]["cases"]
    # the sweep: more loss, more false "dead" from fixed-k; none at 0 %
    points = metrics["metrics"]["sweep_points"]
    assert points[0]["loss"] == 0 and points[0]["fixed_false"] == 0
    assert points[-1]["loss"] == 0.5 and points[-1]["fixed_false_lost"] >= 1
    # netem's settings reached the kernel on each worker's own link
    case = json.loads(open(exp.path("sweep", "case.json")).read())
    assert [(n["node"], n["readback"]["loss"]) for n in case["netem"]] == [("w2", 10), ("w3", 20), ("w4", 30),
                                                                          ("w5", 50)]
    assert cases["impaired"]["w1"]["duplicates"] > 0 and cases["impaired"]["w2"]["reordered"] > 0
    tcp = cases["tcp_vs_udp"]["w1-tcp"]
    assert tcp["lost"] == tcp["duplicates"] == tcp["reordered"] == 0 and tcp["received"] == tcp["sent"]
    for png in ("sweep/false_dead_vs_loss.png", "sweep/timeline.png", "impaired/timeline.png",
                "partition/timeline.png", "tcp_vs_udp/tcp_vs_udp.png"):
        assert os.path.getsize(exp.path(png)) > 10_000, png
