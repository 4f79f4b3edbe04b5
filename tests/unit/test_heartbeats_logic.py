"""The heartbeats experiment without root: parameters (one-line errors), the
declared cases, the theory (false-dead MTTF, netem's outcome model, the
Poisson interval) against independent computations, and verify on a
fabricated folder: every claim holds, and each corrupted item fails exactly
its claim."""

import json
import math
import os
import random
import shutil

import pytest

from heartbeat_folder import Heartbeats, HeartbeatsParams, fabricate
from topologies.cluster import ClusterTopo
from wirelab.errors import ConfigError
from wirelab.experiment import stats
from wirelab.experiment.core import reverify
from wirelab.experiment.evidence import Evidence
from wirelab.experiment.heartbeat_claims import COMMON, TITLES
from wirelab.experiment.heartbeat_evidence import exposure
from wirelab.experiment.heartbeat_model import (heartbeat_outcomes, mttf_fixed_k, overtakers, phi_floor_silence,
                                                trials_to_false_dead)


# -- parameters and cases ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,words", [
    ({"cases": ("sweep", "nope")}, "cases: unknown nope"),
    ({"cases": ("sweep", "sweep")}, "listed twice"),
    ({"interval_ms": 10}, "interval_ms must be 50..5000"),
    ({"k": 0}, "k must be 1..20"),
    ({"sweep_loss": (0, 95)}, "sweep_loss"),
    ({"reorder_delay_ms": 80}, "must exceed T"),
    ({"reorder_delay_ms": 210}, "off its multiples"),
    ({"reorder_delay_ms": 150}, "half-multiples"),
    ({"tcp_delay_ms": 310}, "off its multiples"),
    ({"jitter_ms": 250}, "at most jitter_delay_ms"),
    ({"jitter_ms": 250, "jitter_delay_ms": 400}, "reaches phi's least threshold silence"),
    ({"partition_s": 0.5}, "the cut must outlast detection"),
    ({"partition_after_s": 0.5}, "at least 10 heartbeats before the cut"),
    ({"tcp_s": 1}, "at least 20 heartbeats"),
    ({"duplicate": 0}, "duplicate must be a percentage"),
])
def test_impossible_parameters_are_one_line_errors(kwargs, words):
    with pytest.raises(ConfigError) as err:
        HeartbeatsParams(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_jitter_allowed_only_below_phis_floor():
    floor = 1000 * phi_floor_silence(8.0, 0.1, 0.0)       # 561.2 ms
    assert floor == pytest.approx(561.2, abs=0.1)
    HeartbeatsParams(jitter_ms=170, jitter_delay_ms=200)   # 100 + 340 + 20 + 10 = 470 < 561
    HeartbeatsParams(cases=("sweep",), jitter_ms=300, jitter_delay_ms=400)   # no impaired case: no bound needed


def declared(params):
    exp = Heartbeats(params, out_dir="/nonexistent")
    exp.topo = ClusterTopo(workers=params.workers(), clients=1)
    return {c.name: c for c in exp.cases()}


def test_declared_cases_put_each_setting_on_its_own_link():
    cases = declared(HeartbeatsParams())
    assert list(cases) == ["sweep", "impaired", "partition", "tcp_vs_udp"]
    sweep = cases["sweep"]
    assert [(n.node, n.intf, n.spec.loss) for n in sweep.netem] == [
        ("w2", "w2-eth0", 10), ("w3", "w3-eth0", 20), ("w4", "w4-eth0", 30), ("w5", "w5-eth0", 50)]
    assert [c["node"] for c in sweep.args["chunkservers"]] == ["w1", "w2", "w3", "w4", "w5"]
    assert sweep.args["count"] == 200 and sweep.snaplen == 0
    assert [(p.node, p.intf, p.file) for p in sweep.captures] == [("manager", "manager-eth0", "server.pcap")]
    assert sweep.bpf == ()     # unfiltered: the capture's stop then waits for every packet the link carried
    imp = {n.node: n.spec for n in cases["impaired"].netem}
    assert imp["w1"].duplicate == 10 and (imp["w2"].reorder, imp["w2"].delay) == (25, 125)
    assert (imp["w3"].delay, imp["w3"].jitter) == (200, 150)
    part = cases["partition"]
    assert part.netem == () and part.args["fault"]["intf"] == "srvlan-eth3" and part.args["fault"]["after"] == 15
    tcp = cases["tcp_vs_udp"]
    assert [c.get("transport", "udp") for c in tcp.args["chunkservers"]] == ["udp", "tcp"]
    assert {c.args["port"] for c in cases.values()} == {7000, 7001, 7002, 7003}


def test_only_the_partition_runs_without_netem():
    assert not Heartbeats.needs_netem_for(HeartbeatsParams(cases=("partition",)))
    assert Heartbeats.needs_netem_for(HeartbeatsParams(cases=("partition", "sweep")))
    assert HeartbeatsParams(cases=("partition",)).workers() == 2
    assert HeartbeatsParams(sweep_loss=(0, 1, 2, 3, 4, 5, 6)).workers() == 7


# -- theory --------------------------------------------------------------------------------
def markov_trials(p, k):
    """Mean trials to k consecutive losses, from the chain's equations
    E_j = 1 + p E_{j+1} + (1-p) E_0, E_k = 0, solved for E_0."""
    # E_j = a_j + b_j E_0, backwards from E_k = 0
    a, b = 0.0, 0.0
    for _ in range(k):
        a, b = 1 + p * a, p * b + (1 - p)
    return a / (1 - b)


@pytest.mark.parametrize("p,k", [(0.1, 3), (0.2, 3), (0.5, 3), (0.5, 1), (0.3, 5)])
def test_false_dead_mttf_matches_the_markov_chain(p, k):
    assert trials_to_false_dead(p, k) == pytest.approx(markov_trials(p, k), rel=1e-12)
    assert mttf_fixed_k(p, k, 0.1) == pytest.approx(0.1 * markov_trials(p, k))
    assert trials_to_false_dead(0.0, 3) == math.inf


def test_false_dead_mttf_against_a_seeded_simulation():
    rng, p, k, total, episodes = random.Random(3), 0.5, 3, 0, 0
    for _ in range(4000):
        run = n = 0
        while run < k:
            n += 1
            run = run + 1 if rng.random() < p else 0
        total += n
        episodes += 1
    mean, sd = total / episodes, math.sqrt(142.0 / episodes)      # Var = 142 for p = 0.5, k = 3
    assert abs(mean - trials_to_false_dead(p, k)) < 4 * sd


def simulate_netem(loss, dup, reorder, delay, T, n, seed):
    """A Monte Carlo of Linux 6.1 netem_enqueue for periodic datagrams, counted at the receiver."""
    rng, arrivals = random.Random(seed), []
    for s in range(n):
        count = 1 + (rng.random() < dup) - (rng.random() < loss)
        times = []
        if count == 2 and rng.random() >= loss:
            times.append(s * T + (0 if rng.random() < reorder else delay))
        if count:
            times.append(s * T + (0 if rng.random() < reorder else delay))
        arrivals += [(t, s) for t in times]
    arrivals.sort()
    seen, hi, reordered = {}, -1, 0
    for _, s in arrivals:
        if s not in seen and s < hi:
            reordered += 1
        seen[s] = seen.get(s, 0) + 1
        hi = max(hi, s)
    return (n - len(seen)) / n, sum(1 for v in seen.values() if v == 2) / n, reordered / n


@pytest.mark.parametrize("l,d,r,delay", [(0.2, 0.05, 0.25, 250), (0.0, 0.0, 0.25, 150), (0.1, 0.2, 0.0, 0),
                                         (0.3, 0.1, 0.5, 350)])
def test_netem_outcome_model_matches_a_simulation(l, d, r, delay):
    n = 200_000
    lost, twice, reordered = simulate_netem(l, d, r, delay, 100, n, seed=11)
    model = heartbeat_outcomes(l, d, r, delay, 100)
    for got, want in ((lost, model["lost"]), (twice, model["duplicated"]), (reordered, model["reordered"])):
        assert abs(got - want) <= 5 * math.sqrt(max(want * (1 - want), 1e-9) / n) + 1e-9
    assert overtakers(250, 100) == 2 and overtakers(150, 100) == 1 and overtakers(100, 100) == 0


def test_poisson_interval_is_garwoods():
    # chi-square quantiles / 2 (tables): 95% for k = 10 -> [4.7954, 18.3904]
    lo, hi = stats.poisson_interval(10, z=1.959963984540054)
    assert (lo, hi) == (pytest.approx(4.7954, abs=1e-4), pytest.approx(18.3904, abs=1e-4))
    lo, hi = stats.poisson_interval(0)
    assert lo == 0 and hi == pytest.approx(-math.log(0.5e-4))           # e^-hi = alpha / 2
    for k in (1, 5, 30):
        lo, hi = stats.poisson_interval(k)
        assert stats.poisson_cdf(k, hi) == pytest.approx(0.5e-4, rel=1e-6)
        assert 1 - stats.poisson_cdf(k - 1, lo) == pytest.approx(0.5e-4, rel=1e-6)
    with pytest.raises(ValueError):
        stats.poisson_interval(-1)


# -- verify on a fabricated folder ------------------------------------------------------------
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("hb") / "good"
    fabricate(root)
    return root


def all_titles():
    return [t for kind in TITLES for t in list(TITLES[kind].values()) +
            [c.format(case=kind) for c in COMMON.values()]]


def test_a_good_folder_passes_every_claim_and_plots(good, tmp_path):
    cls, claims, _ = reverify(good)
    assert cls.name == Heartbeats.name
    assert [c.name for c in claims] == all_titles() and len(claims) == 33
    assert [c.line() for c in claims if not c.ok] == []
    # JSON-plain (no tuples, no infinities): what the run saves is what verify computes again
    assert json.loads(json.dumps([c.to_dict() for c in claims], allow_nan=False)) == [c.to_dict() for c in claims]
    # verify wrote nothing (not its own run), and the plots come from the folder alone
    folder = tmp_path / "copy"
    shutil.copytree(good, folder)
    ev = Evidence(str(folder), HeartbeatsParams, writable=True)
    Heartbeats.verify(ev)
    Heartbeats.plot(ev)
    for png in ("sweep/timeline.png", "sweep/false_dead_vs_loss.png", "partition/timeline.png",
                "tcp_vs_udp/tcp_vs_udp.png", "impaired/timeline.png"):
        assert (folder / png).stat().st_size > 10_000, png
    points = json.loads((folder / "sweep" / "points.json").read_text())
    assert [p["loss"] for p in points] == [0.0, 0.1, 0.2, 0.3, 0.5]
    assert points[0]["fixed_false"] == 0 and points[-1]["fixed_false_lost"] >= 1


def test_exposure_counts_alive_heartbeats_and_runs_of_k():
    from wirelab.apps.gfs.sequence import analyse
    from wirelab.experiment.heartbeat_evidence import Chunkserver
    arrived = [0, 1, 5, 9]
    cs = Chunkserver("w1", "w1", "udp", 0.0, {s: 0.1 * s for s in range(10)}, [], [], analyse(arrived, 10), {})
    # alive from 0: 1 (arrives), 2, 3, 4 (third miss: dead); 5 revives; 6, 7, 8 (dead); 9 revives
    assert exposure(cs, 3) == (7, 2)
    assert exposure(cs, 4) == (9, 0)          # runs 2-4 and 6-8 are three long: no episode, all alive
    cs = Chunkserver("w1", "w1", "udp", 0.0, {s: 0.1 * s for s in range(10)}, [], [], analyse([0, 6], 10), {})
    # 1..4 alive (dead at the fourth miss); 5 and 6 while dead; 7, 8, 9 alive again
    assert exposure(cs, 4) == (7, 1)


def rewrite(path, fn):
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines = fn(lines)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def drop_one_udp_packet(folder):
    import struct   # msgsynth.pcap_file's records: ts_s, ts_ns, caplen, len
    path = folder / "sweep" / "server.pcap"
    data = path.read_bytes()
    head, off, out, dropped = data[:24], 24, [], False
    while off < len(data):
        _, _, caplen, _ = struct.unpack("<IIII", data[off:off + 16])
        rec = data[off:off + 16 + caplen]
        if not dropped and caplen > 100 and b'"w3"' in rec:
            dropped = True
        else:
            out.append(rec)
        off += 16 + caplen
    path.write_bytes(head + b"".join(out))


def shift_the_cut(folder):
    path = folder / "partition" / "case.json"
    case = json.loads(path.read_text())
    case["workload"]["fault"]["down"] = [t + 0.15 for t in case["workload"]["fault"]["down"]]
    path.write_text(json.dumps(case))


def tcp_heartbeat_logged_twice(folder):
    def fn(lines):
        i = next(i for i, e in enumerate(lines) if e["event"] == "recv" and e["transport"] == "tcp")
        return lines[:i + 1] + [lines[i]] + lines[i + 1:]
    rewrite(folder / "tcp_vs_udp" / "server.jsonl", fn)


def tcp_heartbeats_logged_out_of_order(folder):
    """Two TCP heartbeats that arrived together (one read) logged in swapped order:
    the same lines (the capture agrees), not in order."""
    def fn(lines):
        tcp = [i for i, e in enumerate(lines) if e["event"] == "recv" and e["transport"] == "tcp"]
        i, j = min(zip(tcp, tcp[1:]), key=lambda p: lines[p[1]]["t"] - lines[p[0]]["t"])
        lines[i]["message"], lines[j]["message"] = lines[j]["message"], lines[i]["message"]
        return lines
    rewrite(folder / "tcp_vs_udp" / "server.jsonl", fn)


def a_tcp_line_changed_on_the_wire(folder):
    """Heartbeat 3's line in the capture says seq 4 (same length): the TCP stream
    rebuilt line by line no longer equals the logs."""
    path = folder / "tcp_vs_udp" / "server.pcap"
    data = path.read_bytes()
    old = b'"chunkserver":"w1-tcp","seq":3,'
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, old.replace(b":3,", b":4,")))


def more_duplication_asked(folder):
    path = folder / "impaired" / "case.json"
    case = json.loads(path.read_text())
    for n in case["netem"]:
        if n["node"] == "w1":
            n["spec"]["duplicate"] = 40.0
    path.write_text(json.dumps(case))


def a_decision_about_another_heartbeat(folder):
    def fn(lines):
        e = next(e for e in lines if e["event"] == "state" and e["state"] == "dead")
        e["last_seq"] -= 1
        return lines
    rewrite(folder / "sweep" / "server.jsonl", fn)


def a_decision_checked_after_its_deadline_already(folder):
    def fn(lines):
        e = next(e for e in lines if e["event"] == "state" and e["state"] == "dead" and e["detector"] == "fixed_k")
        e["prev_eval"] = e["last_arrival"] + 0.36
        return lines
    rewrite(folder / "sweep" / "server.jsonl", fn)


def a_missed_decision(folder):
    def fn(lines):
        def turn(i):   # the verdict that follows decision i
            return next(j for j in range(i + 1, len(lines)) if lines[j]["event"] == "state"
                        and lines[j]["chunkserver"] == "w1" and lines[j]["detector"] == "fixed_k")
        # a decision well past its deadline (the next heartbeat came 5 ms later or more)
        i = next(i for i, e in enumerate(lines) if e["event"] == "state" and e["state"] == "dead"
                 and e["detector"] == "fixed_k" and e["chunkserver"] == "w1"
                 and lines[turn(i)]["t"] - e["t"] > 0.005)
        j = turn(i)
        return [e for n, e in enumerate(lines) if n not in (i, j)]
    rewrite(folder / "tcp_vs_udp" / "server.jsonl", fn)


@pytest.mark.parametrize("corrupt,claim", [
    (drop_one_udp_packet, COMMON["capture"].format(case="sweep")),
    (shift_the_cut, TITLES["partition"]["lost"]),
    (tcp_heartbeats_logged_out_of_order, TITLES["tcp_vs_udp"]["tcp"]),
    (a_tcp_line_changed_on_the_wire, COMMON["capture"].format(case="tcp_vs_udp")),
    (more_duplication_asked, TITLES["impaired"]["duplicate"]),
    (a_decision_about_another_heartbeat, COMMON["labelled"].format(case="sweep")),
    (a_decision_checked_after_its_deadline_already, COMMON["on_time"].format(case="sweep")),
    (a_missed_decision, COMMON["replay"].format(case="tcp_vs_udp")),
])
def test_one_corrupted_item_fails_exactly_its_claim(good, tmp_path, corrupt, claim):
    folder = tmp_path / "bad"
    shutil.copytree(good, folder)
    corrupt(folder)
    _, claims, _ = reverify(folder)
    assert [c.name for c in claims if not c.ok] == [claim]


def test_a_tcp_heartbeat_logged_twice_fails_delivery_and_the_capture(good, tmp_path):
    """Logged twice, on the wire once: the server did not get it "once", and its
    log disagrees with the TCP stream rebuilt line by line."""
    folder = tmp_path / "bad"
    shutil.copytree(good, folder)
    tcp_heartbeat_logged_twice(folder)
    _, claims, _ = reverify(folder)
    failed = [c for c in claims if not c.ok]
    assert [c.name for c in failed] == [TITLES["tcp_vs_udp"]["tcp"], COMMON["capture"].format(case="tcp_vs_udp")]
    assert failed[1].measured["tcp lines vs the logs"]["captured, not logged"] == 0
    assert failed[1].measured["tcp lines vs the logs"]["logged, not captured"] == 1


def test_a_missing_log_fails_that_cases_claims_and_no_other(good, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(good, folder)
    os.remove(folder / "impaired" / "server.jsonl")
    _, claims, _ = reverify(folder)
    failed = [c for c in claims if not c.ok]
    assert {c.name for c in failed} == {c.name for c in claims if c.name.startswith("impaired")}
    assert all("evidence missing or broken" in c.measured for c in failed)
