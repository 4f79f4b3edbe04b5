"""Core pieces that need no root: errors, the experiment CLI, ledgers, report."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from wirelab.net import runledger

from wirelab.experiment import suite
from wirelab.errors import CommandError, ConfigError
from wirelab.experiment.core import Claim, Experiment, build_parser, main, params_from_args
from wirelab.proc import run, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class DemoParams:
    routers: int = dataclasses.field(default=3, metadata={"help": "number of routers"})
    loss: float = 1.0
    verbose: bool = False
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if self.routers < 1:
            raise ConfigError(f"routers must be >= 1, got {self.routers}")


class DemoExperiment(Experiment):
    """A demo."""
    name = "demo"
    Params = DemoParams

    def run(self):
        self.record(x=1)

    @classmethod
    def verify(cls, ev):
        ev.metrics["x"] = ev.run["x"]
        return [Claim("x is one", ev.run["x"] == 1, measured=ev.run["x"], expected=1)]


def test_cli_from_dataclass():
    parser = build_parser(DemoExperiment)
    args = parser.parse_args(["--routers", "5", "--loss", "2.5", "--verbose", "--sizes", "4", "5"])
    params = params_from_args(DemoExperiment, args)
    assert params == DemoParams(routers=5, loss=2.5, verbose=True, sizes=(4, 5))
    assert "number of routers" in parser.format_help()


def test_cli_rejects_bad_type(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser(DemoExperiment).parse_args(["--routers", "abc"])
    assert exc.value.code == 2
    assert "routers: expected int, got 'abc'" in capsys.readouterr().err


def test_cli_rejects_invalid_value_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(DemoExperiment, ["--routers", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "experiments/demo.py: error: routers must be >= 1, got 0"


def test_execute_writes_evidence(tmp_path):
    exp = DemoExperiment(DemoParams(), out_dir=str(tmp_path / "out"), log=lambda m: None)
    claims = exp.execute()
    assert [c.ok for c in claims] == [True]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "pass" and metrics["metrics"] == {"x": 1}
    params = json.loads((tmp_path / "out" / "params.json").read_text())
    assert params["params"]["routers"] == 3


def test_verify_reads_only_the_folder(tmp_path):
    """verify is a function of the saved folder: the typed params come back
    from params.json, and a changed record changes the verdict."""
    from wirelab.experiment.evidence import Evidence
    out = tmp_path / "out"
    DemoExperiment(DemoParams(sizes=(4, 5)), out_dir=str(out), log=lambda m: None).execute()
    ev = Evidence(str(out), DemoParams)
    assert ev.params == DemoParams(sizes=(4, 5))
    assert [c.ok for c in DemoExperiment.verify(ev)] == [True]
    run_json = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run_json, "x": 2}))
    assert [c.ok for c in DemoExperiment.verify(Evidence(str(out), DemoParams))] == [False]


def test_evidence_missing_file_is_one_line_error(tmp_path):
    from wirelab.experiment.evidence import Evidence, EvidenceError
    with pytest.raises(EvidenceError, match="params.json: missing from the results folder"):
        Evidence(str(tmp_path))


def test_execute_records_failure(tmp_path):
    class Failing(DemoExperiment):
        @classmethod
        def verify(cls, ev):
            return [Claim("impossible", False, measured=2, expected=1)]
    Failing(DemoParams(), out_dir=str(tmp_path), log=lambda m: None).execute()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "fail"


def test_run_only_then_host_verifies(tmp_path):
    """Inside UML the run stops after teardown (status "ran", no claims); the
    host then verifies and plots the folder and writes the claims, adding its
    time to the run's."""
    from wirelab.experiment.core import conclude_after_uml
    out = tmp_path / "out"
    assert DemoExperiment(DemoParams(), out_dir=str(out), log=lambda m: None).execute(verify=False) == []
    ran = json.loads((out / "metrics.json").read_text())
    assert ran["status"] == "ran" and ran["claims"] == []
    claims = conclude_after_uml(DemoExperiment, str(out), lambda m: None)
    assert [c.ok for c in claims] == [True]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "pass" and metrics["metrics"] == {"x": 1}
    assert metrics["run_in_uml_s"] == ran["duration_s"] and metrics["duration_s"] >= ran["duration_s"]


def test_host_refuses_a_folder_whose_uml_run_did_not_finish(tmp_path):
    from wirelab.experiment.core import conclude_after_uml
    from wirelab.experiment.evidence import EvidenceError
    with pytest.raises(EvidenceError, match="left no metrics.json"):
        conclude_after_uml(DemoExperiment, str(tmp_path), lambda m: None)
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "interrupted", "error": "SIGTERM"}))
    with pytest.raises(EvidenceError, match="ended 'interrupted', not 'ran': SIGTERM"):
        conclude_after_uml(DemoExperiment, str(tmp_path), lambda m: None)


def test_command_error_carries_argv_code_stderr():
    with pytest.raises(CommandError) as err:
        run(None, [sys.executable, "-c", "import sys; sys.stderr.write('bad thing\\n'); sys.exit(3)"], 10)
    assert err.value.returncode == 3
    assert err.value.argv[0] == sys.executable
    assert "exited 3: bad thing" in str(err.value)
    with pytest.raises(CommandError, match="timed out after 0.1s"):
        run(None, ["sleep", "3"], 0.1)
    with pytest.raises(CommandError, match="exited 127"):
        run(None, ["/nonexistent/tool"], 1)


def test_wait_until():
    calls = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3, 2) is True
    with pytest.raises(TimeoutError, match="the moon"):
        wait_until(lambda: False, 0.05, what="the moon")


def test_proc_start_time_handles_odd_names(tmp_path):
    assert runledger.proc_start_time(os.getpid()) > 0
    assert runledger.proc_start_time(2 ** 22 + 7) is None
    assert runledger.alive(os.getpid(), runledger.proc_start_time(os.getpid()))
    assert not runledger.alive(os.getpid(), 1)


def test_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = runledger.proc_start_time(child.pid)
    wait_until(lambda: (runledger.stat_fields(child.pid) or [b"?"])[0] == b"Z", 10,
               what="the child to exit (a zombie until reaped)")
    assert not runledger.alive(child.pid, start), "a zombie has exited: it is not alive"
    assert runledger.reap_children([child.pid, os.getpid()]) == [child.pid]
    assert runledger.stat_fields(child.pid) is None
    assert child.wait(1) == 0   # Popen copes with a child reaped under it


def test_kill_and_wait_reaps_own_children():
    child = subprocess.Popen(["sleep", "60"])
    pids = {child.pid: runledger.proc_start_time(child.pid)}
    runledger.kill_and_wait(pids, timeout=5)   # before: timed out on the zombie
    assert runledger.stat_fields(child.pid) is None
    child.wait(1)


def test_interrupted_ledger_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(_path, _tmp):
        raise KeyboardInterrupt
    monkeypatch.setattr(runledger.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runledger.RunLedger("cut-short", directory=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_stale_ledger_detection(tmp_path):
    live = runledger.RunLedger("live-run", directory=str(tmp_path))
    dead = dict(live.data, run_id="dead-run", owner_pid=2 ** 22 + 7)
    (tmp_path / "dead-run.json").write_text(json.dumps(dead))
    stale = [run_id for run_id, _ in runledger.stale_runs(str(tmp_path))]
    assert stale == ["dead-run"]
    live.remove()
    assert not os.path.exists(live.path)


def test_suite_table_and_report(tmp_path):
    from wirelab.experiment import report
    out = tmp_path / "results" / "routing" / "T"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({
        "status": "fail", "claims": [{"name": "a", "ok": True}, {"name": "b", "ok": False}]}))
    row = report.ExperimentResult.from_run("routing", str(out), 7, 3.2, str(tmp_path))
    assert (row.claims_passed, row.claims_total, row.failed_claims) == (1, 2, ["b"])
    assert row.results == os.path.join("results", "routing", "T")
    assert "routing" in report.table([row])
    report_dir = tmp_path / "results" / "report" / "T"
    report_dir.mkdir(parents=True)
    assert "| b | FAIL |" in report.render_markdown([row], "STAMP", str(report_dir))
    assert suite.build_parser().parse_args(["--only", "routing"]).only == ["routing"]


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant not installed (Ubuntu 24.04 has no package)")
def test_vagrantfile_validates():
    done = subprocess.run(["vagrant", "validate", "-p"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    text = open(os.path.join(REPO, "Vagrantfile")).read()
    assert "scripts/setup.sh" in text and 'config.vm.box = "debian/bookworm64"' in text
    assert "ubuntu/jammy64" in text   # the documented, untested alternative


def test_scripts_have_help():
    for script in ("wirelab.net.clean", "wirelab.net.preflight", "wirelab.experiment.suite"):
        done = subprocess.run([sys.executable, "-m", script, "--help"], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "usage:" in done.stdout, script
