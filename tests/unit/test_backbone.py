"""backbone's pure parts: the plan's hops and delays, the RTT window, the probe
reader on a generated capture, and verify over a tiny fake results folder (no root)."""

import hashlib
import json
import shutil

import pytest

from topologies.zoo import ZooTopo
from wirelab.errors import ConfigError
from wirelab.experiment import registry, timers
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.observe.probe_rtt import probe_answers

NY_LA = ["newyork", "washingt", "atlanta", "houston", "losangel"]


@pytest.fixture(scope="module")
def backbone():
    return registry.load("backbone")


@pytest.fixture(scope="module")
def mod(backbone):
    import sys
    return sys.modules[backbone.__module__]


def test_rtt_window_from_per_link_delays(mod):
    assert mod.rtt_window_ms(0.0, 0) == (-timers.TS_DIFF_MS, timers.EVENT_WAKEUP_SLACK_MS + timers.TS_DIFF_MS)
    lo, hi = mod.rtt_window_ms(22.212, 8)
    assert lo == pytest.approx(44.424 - timers.TS_DIFF_MS)
    assert hi == pytest.approx(44.424 + 9 * timers.EVENT_WAKEUP_SLACK_MS + timers.TS_DIFF_MS)


def test_planned_hops_sum_the_fibres_along_the_shortest_delay_path(mod):
    topo = ZooTopo("Abilene", hosts=["New York", "Los Angeles"])
    hops = mod.planned_hops(topo, "h_newyork", "h_losangel")
    assert [h["addr"] for h in hops] == topo.expected_traceroute("h_newyork", "h_losangel")
    assert [h["node"] for h in hops] == NY_LA + ["h_losangel"]
    assert [h["city"] for h in hops] == ["New York", "Washington DC", "Atlanta", "Houston",
                                         "Los Angeles", "Los Angeles"]
    assert [h["fibres"] for h in hops] == [0, 1, 2, 3, 4, 4]
    assert [h["netem_traversals"] for h in hops] == [0, 2, 4, 6, 8, 8]
    assert hops[1]["delay_ms"] == 1.609 and hops[1]["km"] == 328.58      # New York - Washington
    assert hops[-1]["delay_ms"] == pytest.approx(topo.path_delay_ms("h_newyork", "h_losangel"))
    # --delay 0: the same fibres, nothing declared, nothing to cross
    flat = mod.planned_hops(ZooTopo("Abilene", hosts="all", delay=0), "h_newyork", "h_losangel")
    assert [h["fibre_ms"] for h in flat] == [h["fibre_ms"] for h in hops]
    assert {h["delay_ms"] for h in flat} == {0.0} and {h["netem_traversals"] for h in flat} == {0}


def test_declared_cases_put_hosts_only_at_the_traced_cities(mod, backbone):
    topo, cases = mod.declared_cases(backbone.Params(pairs=("New York:Los Angeles", "seattle:Atlanta")))
    assert sorted(topo.host_names()) == ["h_atlanta", "h_losangel", "h_newyork", "h_seattle"]
    assert [c.name for c in cases] == ["Abilene/newyork-losangel", "Abilene/seattle-atlanta"]
    a = cases[0].args
    assert a["expected_path"] == a["shortest_delay_path"] == NY_LA
    assert a["src_city"] == "New York" and a["dst_city"] == "Los Angeles" and a["probes"] == 3
    assert [p.file for p in cases[0].captures] == ["at-h_newyork.pcap"]
    assert backbone.needs_netem_for(backbone.Params()) and not backbone.needs_netem_for(backbone.Params(delay=0))


@pytest.mark.parametrize("kwargs, message", [
    ({"pairs": ("New York",)}, "pairs: 'New York' is not 'cityA:cityB'"),
    ({"pairs": ("New York:Nowhere",)}, "no city or router 'Nowhere'"),
    ({"pairs": ("newyork:New York",)}, "traces a city to itself"),
    ({"network": "Abilen"}, "closest: Abilene"),
    ({"probes": 0}, "probes must be 1..10"),
    ({"delay": -1.0}, "delay must be a scale"),
])
def test_bad_parameters_are_one_line_errors(backbone, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        backbone.Params(**kwargs)
    assert "\n" not in str(info.value)


# -- a generated capture and a tiny fake folder --------------------------------------
SRC, DST = "10.64.16.2", "10.64.0.2"


def probe(ttl, n, dst=DST):
    from scapy.layers.inet import IP, UDP
    return IP(src=SRC, dst=dst, ttl=ttl) / UDP(sport=40000, dport=33434 + n)


def answer(router, quoted, kind="exceeded"):
    from scapy.layers.inet import ICMP, IP
    icmp = ICMP(type=11, code=0) if kind == "exceeded" else ICMP(type=3, code=3)
    return IP(src=router, dst=SRC) / icmp / bytes(quoted)[:28]


def write_trace_pcap(path, hops, rtts_ms, probes=3, t0=1000.0):
    """Each probe (n = 0, 1, ...) leaves at t0 + n/10 s; its answer comes rtts_ms[hop] later."""
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    frames = []
    for ttl, (addr, rtt) in enumerate(zip(hops, rtts_ms), 1):
        for k in range(probes):
            n = (ttl - 1) * probes + k
            p = probe(ttl, n)
            sent = Ether() / p
            sent.time = t0 + n / 10
            got = Ether() / answer(addr, p, "unreachable" if ttl == len(hops) else "exceeded")
            got.time = sent.time + (rtt + k * 0.25) / 1000
            frames += [sent, got]
    noise = Ether() / answer("10.64.9.9", probe(1, 0, dst="10.64.2.2"))     # another trace's answer
    noise.time = t0
    wrpcap(str(path), sorted(frames + [noise], key=lambda f: f.time))


def test_probe_answers_ties_each_answer_to_its_probe(tmp_path):
    hops = ["10.64.16.1", "10.64.17.6", DST]
    write_trace_pcap(tmp_path / "t.pcap", hops, [0.05, 3.3, 7.5])
    got = probe_answers(str(tmp_path / "t.pcap"), SRC, DST, 3)
    assert sorted(got) == [1, 2, 3]
    assert [x["from"] for x in got[2]] == [hops[1]] * 3 and {x["kind"] for x in got[2]} == {"exceeded"}
    assert [x["kind"] for x in got[3]] == ["unreachable"] * 3
    assert [x["rtt_ms"] for x in got[2]] == [3.3, 3.55, 3.8]


def make_folder(mod, backbone, root, rtt_excess_ms=0.2, traced=None):
    """A results folder as a run with the default params leaves it (one pair)."""
    from wirelab.geo.build import database_for
    params = backbone.Params(pairs=("New York:Los Angeles",))
    topo, cases = mod.declared_cases(params)
    case = cases[0]
    a = case.args
    db = database_for("zoo,Abilene", directory=str(root / "geo"))
    write_json(str(root / "params.json"), {"experiment": "backbone", "params": params})
    write_json(str(root / "run.json"), {
        "cases": [case.name], "backbone": {"network": "Abilene", "delay_scale": 1.0,
                                           "cities": topo.cities(), "fibres": topo.fibres()},
        "geo": {"spec": "zoo,Abilene", "file": f"geo/{db.path.rsplit('/', 1)[1]}",
                "sha256": hashlib.sha256(open(db.path, "rb").read()).hexdigest()}})
    folder = root / case.name
    folder.mkdir(parents=True)
    rtts = [2 * h["delay_ms"] + rtt_excess_ms for h in a["hops"]]
    write_trace_pcap(folder / "at-h_newyork.pcap", a["expected"], rtts)
    shown = traced(a["expected"]) if traced else a["expected"]
    lines = [f" {h['ttl']}  {addr}  " + "  ".join(f"{r + k * 0.25:.3f} ms" for k in range(3))
             for h, addr, r in zip(a["hops"], shown, rtts)]
    write_json(str(folder / "case.json"), {
        "name": case.name, "args": a, "netem": [], "faults": [], "error": None, "seconds": 1.0,
        "captures": [{"name": "at-h_newyork.pcap", "packets": 37, "problems": [], "dropped_by_kernel": 0}],
        "workload": {"traceroute_exit": 0, "traceroute_stdout": "traceroute to ...\n" + "\n".join(lines)}})
    return root


def verdicts(backbone, root):
    return [c.ok for c in backbone.verify(Evidence(str(root), backbone.Params))]


def test_verify_a_tiny_fake_folder_and_annotate_each_hop(mod, backbone, tmp_path):
    root = make_folder(mod, backbone, tmp_path / "ok")
    ev = Evidence(str(root), backbone.Params)
    claims = backbone.verify(ev)
    assert [c.ok for c in claims] == [True] * 6, [c.line() for c in claims if not c.ok]
    db, why = mod.geo_database(ev)
    assert why is None
    located = mod.annotate(ev.case(ev.case_names()[0])["args"]["expected"],
                           ev.case(ev.case_names()[0])["args"]["hops"], db)
    assert [g["city"] for g in located] == ["New York", "Washington DC", "Atlanta", "Houston",
                                            "Los Angeles", "Los Angeles"]
    assert [g["node"] for g in located][1:5] == NY_LA[1:]
    assert all(g["city"] == g["expected_city"] and g["loc"] for g in located)
    hops = ev.metrics["hops"]["Abilene/newyork-losangel"]
    assert [h["min_rtt_ms"] - h["floor_ms"] for h in hops] == pytest.approx([0.2] * 6, abs=0.002)


def test_verify_fails_exactly_the_broken_claim(mod, backbone, tmp_path):
    # an RTT below twice the fibre: only the floor fails
    low = make_folder(mod, backbone, tmp_path / "low", rtt_excess_ms=-0.1)
    assert verdicts(backbone, low) == [True, True, False, True, True, True]
    # far above the window: only the ceiling fails
    high = make_folder(mod, backbone, tmp_path / "high", rtt_excess_ms=200)
    assert verdicts(backbone, high) == [True, True, True, False, True, True]
    # traceroute printing Chicago's address at hop 2: the path and the city claims fail
    chicago = next(c["router_ip"] for c in ZooTopo("Abilene", hosts="none").cities() if c["router"] == "chicago")
    bad = make_folder(mod, backbone, tmp_path / "wrong", traced=lambda hops: hops[:1] + [chicago] + hops[2:])
    assert verdicts(backbone, bad) == [False, True, True, True, False, True]
    # the database in the folder changed after the run: the city claim fails, naming the sha256
    changed = tmp_path / "changed"
    shutil.copytree(make_folder(mod, backbone, tmp_path / "orig"), changed)
    mmdb = next((changed / "geo").glob("*.mmdb"))
    mmdb.write_bytes(mmdb.read_bytes() + b"\0")
    claims = backbone.verify(Evidence(str(changed), backbone.Params))
    assert [c.ok for c in claims] == [True, True, True, True, False, True]
    assert "sha256" in claims[4].evidence


def test_delay_zero_states_no_floor_claim(mod, backbone, tmp_path):
    root = make_folder(mod, backbone, tmp_path / "d0")
    doc = json.loads((root / "params.json").read_text())
    doc["params"]["delay"] = 0.0
    (root / "params.json").write_text(json.dumps(doc))
    ev = Evidence(str(root), backbone.Params)
    claims = backbone.verify(ev)
    assert len(claims) == 5 and not any(">= 2 x" in c.name for c in claims)
    assert "RTT floor" in ev.metrics["not_exercised"][0]
