"""backbone end to end, as a user runs it: with the fibre delays (netem: inside
User-Mode Linux where the kernel lacks sch_netem) and natively with --delay 0.

Needs root (conftest skips otherwise).
"""

import json

import pytest

from test_experiments_e2e import assert_reverify_equals_run, run_experiment

NY_LA = ["newyork", "washingt", "atlanta", "houston", "losangel"]


def check_folder(out, metrics, claims):
    assert [c["ok"] for c in metrics["claims"]] == [True] * claims, \
        [c for c in metrics["claims"] if not c["ok"]]
    cases = json.loads((out / "run.json").read_text())["cases"]
    assert cases == ["Abilene/newyork-losangel", "Abilene/losangel-newyork"]
    there = json.loads((out / cases[0] / "case.json").read_text())
    back = json.loads((out / cases[1] / "case.json").read_text())
    assert there["args"]["shortest_delay_path"] == NY_LA and back["args"]["shortest_delay_path"] == NY_LA[::-1]
    assert there["error"] is None and (out / cases[0] / "at-h_newyork.pcap").exists()
    geo = json.loads((out / "run.json").read_text())["geo"]
    assert (out / geo["file"]).is_file() and geo["file"].startswith("geo/")
    for png in ("map-newyork-losangel.png", "map-losangel-newyork.png", "rtt-vs-hop.png"):
        assert (out / png).stat().st_size > 10000, png
    hops = metrics["metrics"]["hops"][cases[0]]
    assert [h["city"] for h in hops] == ["New York", "Washington DC", "Atlanta", "Houston",
                                         "Los Angeles", "Los Angeles"]
    assert_reverify_equals_run(out, metrics)
    return hops


@pytest.mark.netem
def test_backbone_with_fibre_delays(tmp_path, host_state):
    done, out, metrics = run_experiment("backbone", tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    hops = check_folder(out, metrics, 6)
    assert "RTT floor" not in json.dumps(metrics["metrics"].get("not_exercised", []))
    # coast to coast: 4536 km of fibre, 22.212 ms one way, so at least 44.4 ms there and back
    assert hops[-1]["floor_ms"] == pytest.approx(44.424) and hops[-1]["min_rtt_ms"] >= 44.42
    # every hop's least RTT climbs with the fibre behind it
    assert [h["min_rtt_ms"] >= h["floor_ms"] - 0.002 for h in hops] == [True] * 6


def test_backbone_without_delays_runs_natively(tmp_path, host_state):
    done, out, metrics = run_experiment("backbone", tmp_path, "--delay", "0")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "User-Mode Linux" not in done.stdout
    hops = check_folder(out, metrics, 5)
    assert not any(">= 2 x" in c["name"] for c in metrics["claims"])
    assert "RTT floor" in metrics["metrics"]["not_exercised"][0]
    assert {h["floor_ms"] for h in hops} == {0.0}
