"""Experiments end to end, as a user runs them: exit code, claims, evidence files."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_experiment(name, tmp_path, *args):
    out = tmp_path / name
    done = subprocess.run([os.path.join(REPO, "experiments", f"{name}.py"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else None
    return done, out, metrics


CLAIM_FIELDS = ("name", "ok", "measured", "expected", "tolerance")


def assert_reverify_equals_run(out, metrics):
    """The claims computed again from the saved folder alone equal the run's,
    and verifying again changes nothing in the folder."""
    from wirelab.experiment.core import reverify
    from wirelab.experiment.evidence import to_jsonable

    def files():
        return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")}
    before = files()
    _, now, saved = reverify(out)
    now = json.loads(json.dumps(to_jsonable(now)))
    at_run = [{f: c[f] for f in CLAIM_FIELDS} for c in metrics["claims"]]
    assert [{f: c[f] for f in CLAIM_FIELDS} for c in now] == at_run
    assert [{f: getattr(c, f) for f in CLAIM_FIELDS} for c in saved] == at_run
    assert files() == before


def test_routing_end_to_end(tmp_path, host_state):
    done, out, metrics = run_experiment("routing", tmp_path, "--destinations", "300", "--seed", "7")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert metrics["status"] == "pass"
    # five IPv4 claims, then seven IPv6 ones
    assert all(c["ok"] for c in metrics["claims"]) and len(metrics["claims"]) == 12
    assert [c["name"].startswith("IPv6: ") for c in metrics["claims"]] == [False] * 5 + [True] * 7
    lookups = json.loads((out / "lookups.json").read_text())
    # 300 drawn, plus the evenly spaced sweeps over nested prefixes (routing-lpm.png)
    assert len(lookups) >= 5 and all(len(r["checks"]) >= 300 for r in lookups.values())
    assert any(len(r["zoom"]) >= 3 for r in lookups.values())
    lookups6 = json.loads((out / "lookups6.json").read_text())
    assert sorted(lookups6) == sorted(lookups) and all(len(r["checks"]) >= 300 for r in lookups6.values())
    special = metrics["metrics"]["routers6"]["bb1"]["special"]
    assert all(special[k] >= 1 for k in ("local", "loopback", "anycast", "multicast", "link-local", "unreachable"))
    packets = json.loads((out / "packet_checks.json").read_text())
    packets6 = json.loads((out / "packet6_checks.json").read_text())
    assert metrics["metrics"]["packets"]["confirmed"] == metrics["metrics"]["packets"]["sent"] == len(packets) > 0
    assert metrics["metrics"]["packets6"]["confirmed"] == metrics["metrics"]["packets6"]["sent"] == len(packets6) > 0
    cases = json.loads((out / "run.json").read_text())["cases"]
    assert cases == [p["case"] for p in packets + packets6]
    assert all(c.startswith("packets/") for c in cases[:len(packets)])
    assert all(c.startswith("packets6/") and ":" in p["dst"] for c, p in zip(cases[len(packets):], packets6))
    case = json.loads((out / cases[0] / "case.json").read_text())
    assert case["error"] is None and case["captures"][0]["packets"] >= 1
    assert (out / cases[0] / "egress.pcap").exists()
    assert (out / "routing-lpm.png").stat().st_size > 1000
    assert json.loads((out / "params.json").read_text())["params"]["destinations"] == 300
    assert "all claims hold" in done.stdout
    assert_reverify_equals_run(out, metrics)
    # One IPv6 kernel answer changed in a copy: exactly the IPv6 LPM claim fails.
    import shutil
    from wirelab.experiment.core import reverify
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    lookups6["bb1"]["checks"][-1]["kernel"] = {"gateway": "fd77::1", "dev": "bb1-eth0", "type": 1}
    (tampered / "lookups6.json").write_text(json.dumps(lookups6))
    _, now, _ = reverify(tampered)
    assert [c.name for c in now if not c.ok] == [
        "IPv6: kernel route get == pure-Python longest-prefix match (every router, every destination)"]


def test_traceroute_end_to_end(tmp_path, host_state):
    done, out, metrics = run_experiment("traceroute", tmp_path, "--line-routers", "4",
                                        "--internet-pairs", "4", "--wait", "1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # six IPv4 claims, then the same six over IPv6
    assert [c["ok"] for c in metrics["claims"]] == [True] * 12
    assert [c["name"].startswith("IPv6: ") for c in metrics["claims"]] == [False] * 6 + [True] * 6
    cases = json.loads((out / "run.json").read_text())["cases"]
    assert cases[:4] == ["line/h1-h2", "line/h2-h1", "line6/h1-h2", "line6/h2-h1"]
    assert len(cases) == 4 + 8 and [c.split("/")[0] for c in cases[4:]] == ["internet"] * 4 + ["internet6"] * 4
    line = [json.loads((out / name / "case.json").read_text()) for name in cases[:4]]
    assert [c["args"]["expected_path"] for c in line] == [["r1", "r2", "r3", "r4"], ["r4", "r3", "r2", "r1"]] * 2
    assert all(c["error"] is None and len(c["captures"]) == 2 for c in line)
    assert line[2]["args"]["family"] == 6 and line[2]["args"]["expected"] == [
        "fd77:1:a00::2", "fd77:1:a00:100::2", "fd77:1:a00:200::2", "fd77:1:a00:300::2", "fd77:1:a00:400::2"]
    assert (out / "line" / "h1-h2" / "at-h2.pcap").exists() and (out / "hops.json").exists()
    assert (out / "line6" / "h1-h2" / "at-h1.pcap").exists()
    assert (out / "rtt-line.png").stat().st_size > 1000 and (out / "rtt-line6.png").stat().st_size > 1000
    assert (out / "rtt-internet.png").exists() and (out / "rtt-internet6.png").exists()
    assert_reverify_equals_run(out, metrics)


@pytest.mark.slow
def test_experiments_pass_with_every_core_busy(tmp_path, host_state, cpu_hog):
    """A busy laptop VM: with a busy loop on each core, no capture loses a
    packet at stop and the timing tolerances still hold."""
    done, out, metrics = run_experiment("traceroute", tmp_path, "--internet-pairs", "12")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [c["ok"] for c in metrics["claims"]] == [True] * 12   # IPv4 and IPv6
    done, out, metrics = run_experiment("tcp_recovery", tmp_path, "--scenarios", "none",
                                        "--bytes", "300000")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # the offloads claim, then eleven per fault (nth, synack, fin)
    assert metrics["status"] == "pass" and len(metrics["claims"]) == 1 + 3 * 11


@pytest.mark.parametrize("args,message", [
    (["--line-routers", "0"], "line_routers must be between 1 and 60"),
    (["--line-routers", "abc"], "line_routers: expected int, got 'abc'"),
    (["--wait", "-1"], "wait must be between"),
])
def test_bad_parameters_one_line_no_state(tmp_path, host_state, args, message):
    done, out, _ = run_experiment("traceroute", tmp_path, *args)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]   # argparse's usage, then one error line
    assert last.startswith("experiments/traceroute.py: error:") and message in last
    assert "Traceback" not in done.stderr
    assert not out.exists(), "nothing is created for bad parameters"


def test_suite_help():
    done = subprocess.run([sys.executable, "-m", "wirelab.experiment.suite", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "report" in done.stdout
