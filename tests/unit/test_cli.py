"""The ``wirelab`` command: help everywhere, list, verify (exit codes, the saved
claims reproduced), one-line errors, ``python -m wirelab``, completion, the
installed wrapper; and, as root, ``wirelab topo`` end to end."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from wirelab import cli
from wirelab.experiment import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBCOMMANDS = ["list", "run", "verify", "report", "suite", "pcapstat", "preflight", "clean",
               "topo", "completion"]

FAKE_EXPERIMENT = '''
import dataclasses
from wirelab.experiment.core import Claim, Experiment


@dataclasses.dataclass(frozen=True)
class FakeParams:
    expect: int = 1
    sizes: tuple = (1, 2)


class Fake(Experiment):
    """A fake experiment: its verify reads run.json only."""
    name = "fake"
    Params = FakeParams

    def run(self):
        self.record(x=1)

    @classmethod
    def verify(cls, ev):
        ev.metrics["x"] = ev.run["x"]
        return [Claim("x as expected", ev.run["x"] == ev.params.expect, measured=ev.run["x"],
                      expected=ev.params.expect, tolerance=0, evidence="run.json"),
                Claim("<b>sizes</b> kept", True, measured=list(ev.params.sizes), evidence="params.json")]
'''



def wirelab(*args, cwd=REPO, timeout=60):
    return subprocess.run([sys.executable, "-m", "wirelab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(done, prefix):
    """stderr is exactly one line starting with ``prefix``, and no traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.fixture
def experiments_dir(tmp_path, monkeypatch):
    """An experiments/ folder with a fake experiment."""
    d = tmp_path / "experiments"
    d.mkdir()
    (d / "fake.py").write_text(FAKE_EXPERIMENT)
    monkeypatch.setattr(registry, "EXPERIMENTS_DIR", str(d))
    yield d
    sys.modules.pop("wirelab_experiments.fake", None)


def fake_run(tmp_path, name="fake", **params):
    cls = registry.load(name)
    out = tmp_path / "results" / name / "T"
    cls(cls.Params(**params), out_dir=str(out), log=lambda m: None).execute()
    return out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command):
    done = wirelab(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and done.stderr == ""


def test_top_level_help_and_no_command():
    done = wirelab("--help")
    assert done.returncode == 0
    for command in SUBCOMMANDS:
        assert f"\n  {command} " in done.stdout, command
    done = wirelab()
    assert done.returncode == 2 and "usage: wirelab" in done.stderr
    done = wirelab("bogus")
    assert done.returncode == 2 and "invalid choice: 'bogus'" in done.stderr


def test_run_help_is_the_experiments_own():
    done = wirelab("run", "traceroute", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: wirelab run traceroute")
    direct = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "traceroute.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    # The same options as ./experiments/traceroute.py, only the program name differs.
    assert done.stdout.split("\n", 3)[3] == direct.stdout.split("\n", 3)[3]


def test_run_bad_parameters_and_unknown_experiment():
    done = wirelab("run", "traceroute", "--line-routers", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("wirelab run traceroute: error: line_routers")
    done = wirelab("run", "nope")
    assert done.returncode == 2
    one_line_error(done, "wirelab run: error: unknown experiment 'nope'; choose from routing")


def test_list_names_every_experiment_in_teaching_order():
    done = wirelab("list")
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["routing", "traceroute", "backbone", "internet_services", "packets", "tcp_recovery",
                     "mapreduce", "heartbeats"]
    assert all(len(line.split(None, 1)) == 2 for line in done.stdout.splitlines())
    summaries = json.loads(wirelab("list", "--json").stdout)
    assert summaries["routing"].startswith("Longest-prefix match")


def test_verify_reproduces_saved_claims(tmp_path, experiments_dir, capsys):
    out = fake_run(tmp_path, sizes=(4, 5))
    assert cli.main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "x as expected" in text and "<b>sizes</b> kept" in text
    assert "fake: all claims hold; the same claims as its run saved" in text
    assert cli.main(["verify", "--json", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["same_as_saved"] and data["changed"] == []
    assert data["claims"] == data["saved_claims"]
    assert data["claims"][1]["measured"] == [4, 5]
    saved = json.loads((out / "metrics.json").read_text())["claims"]
    assert data["claims"] == saved
    # verify changed nothing in the folder
    assert json.loads((out / "metrics.json").read_text())["claims"] == saved


def test_verify_failing_claim_exit_7_and_difference(tmp_path, experiments_dir, capsys):
    out = fake_run(tmp_path)
    run_json = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run_json, "x": 2}))
    assert cli.main(["verify", str(out)]) == 7
    text = capsys.readouterr().out
    assert "SOME CLAIMS FAILED" in text and "DIFFERENT from what its run saved: x as expected" in text
    assert cli.main(["verify", "--json", str(out)]) == 7
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and data["changed"] == ["x as expected"]


@pytest.mark.parametrize("case,code,message", [
    ("missing", 2, "no such results folder"),
    ("empty", 9, "params.json: missing from the results folder"),
    ("garbage", 9, "params.json: cannot read"),
    ("unknown", 2, "unknown experiment 'nosuch'"),
    ("broken", 9, "fake cannot verify this folder: KeyError"),
])
def test_verify_bad_folder_one_line(tmp_path, experiments_dir, capsys, case, code, message):
    folder = tmp_path / case
    if case == "broken":
        folder = fake_run(tmp_path)
        (folder / "run.json").write_text("{}")
    elif case != "missing":
        folder.mkdir()
        if case == "garbage":
            (folder / "params.json").write_text("{not json")
        elif case == "unknown":
            (folder / "params.json").write_text(json.dumps({"experiment": "nosuch", "params": {}}))
    assert cli.main(["verify", str(folder)]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("wirelab verify: error: "), err
    assert message in err and "Traceback" not in err


def test_verify_bad_dir_in_a_subprocess(tmp_path):
    done = wirelab("verify", tmp_path / "nope")
    assert done.returncode == 2
    one_line_error(done, f"wirelab verify: error: {tmp_path / 'nope'}: no such results folder")
    done = wirelab("verify")
    assert done.returncode == 2 and "the following arguments are required: DIR" in done.stderr


def test_unexpected_error_is_one_line(monkeypatch, capsys):
    def boom(argv, prog):
        raise RuntimeError("a bug")
    monkeypatch.setitem(cli.COMMANDS, "list", (boom, ""))
    monkeypatch.delenv("WIRELAB_DEBUG", raising=False)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err == "wirelab list: internal error: RuntimeError: a bug (WIRELAB_DEBUG=1 shows the traceback)\n"


def test_report_bad_dir(tmp_path):
    done = wirelab("report", tmp_path / "nope")
    assert done.returncode == 2
    one_line_error(done, "wirelab report: error:")
    done = wirelab("report", tmp_path)
    assert done.returncode == 9
    one_line_error(done, f"wirelab report: error: {tmp_path}/summary.json: missing")


def test_pcapstat_delegates():
    pcap = os.path.join(REPO, "tests", "data", "pcap", "base_loss.pcap")
    done = wirelab("pcapstat", "--json", pcap)
    assert done.returncode == 0, done.stderr
    (flow,) = json.loads(done.stdout)["flows"]
    assert flow["client_to_server"]["retransmissions"] == 18
    done = wirelab("pcapstat", os.path.join(REPO, "tests", "data", "pcap", "err_text.pcap"))
    assert done.returncode == 2
    one_line_error(done, "pcapstat: error:")


def test_topo_errors_before_touching_the_machine():
    done = wirelab("topo", "nosuch,3")
    assert done.returncode == 2
    one_line_error(done, "wirelab topo: error: unknown topology 'nosuch'; choose from line")
    done = wirelab("topo", "line,0")
    assert done.returncode == 2
    one_line_error(done, "wirelab topo: error: line: n (routers)=0 is out of range")
    done = wirelab("topo", "line,3,colour=red")
    assert done.returncode == 2
    one_line_error(done, "wirelab topo: error:")


def test_completion_script():
    done = wirelab("completion", "bash")
    assert done.returncode == 0
    script = done.stdout
    assert "complete -o filenames -F _wirelab wirelab" in script
    for word in SUBCOMMANDS + ["tcp_recovery", "--line-routers", "--sweep-loss", "dumbbell"]:
        assert word in script, word
    assert "--native" not in script   # hidden option
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert syntax.returncode == 0, syntax.stderr
    # Complete "wirelab run tr" and "wirelab run traceroute --line" in a real bash.
    probe = script + '\nCOMP_WORDS=(wirelab run tr); COMP_CWORD=2; _wirelab; echo "${COMPREPLY[*]}"' \
                     '\nCOMP_WORDS=(wirelab run traceroute --line); COMP_CWORD=3; _wirelab; echo "${COMPREPLY[*]}"'
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=10)
    assert done.stdout.splitlines() == ["traceroute", "--line-routers"], done.stdout + done.stderr


def test_installed_wrapper_runs_from_anywhere(tmp_path):
    wrapper = os.path.join(REPO, ".venv", "bin", "wirelab")
    if not os.path.exists(wrapper):
        pytest.skip("no .venv/bin/wirelab: scripts/setup.sh has not run since the command was added")
    done = subprocess.run([wrapper, "list"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tcp_recovery" in done.stdout
    linked = shutil.which("wirelab")
    if linked:
        assert os.path.realpath(linked) == os.path.realpath(wrapper) or "wirelab" in linked


def _newest_real_folders():
    """The newest results folder of each registered experiment that has metrics.json."""
    found = {}
    for name in registry.names():
        folders = sorted(glob.glob(os.path.join(REPO, "results", name, "*", "metrics.json")),
                         key=os.path.getmtime)
        if folders:
            found[name] = os.path.dirname(folders[-1])
    return found


def test_verify_a_real_results_folder():
    """End to end on a folder a real run wrote (results/<experiment>/<time>/)."""
    folders = _newest_real_folders()
    if not folders:
        pytest.skip("no real results folder under results/: run 'wirelab suite' (bash scripts/demo.sh) first")
    for name, folder in folders.items():
        done = wirelab("verify", "--json", folder, timeout=600)
        saved = json.loads(open(os.path.join(folder, "metrics.json")).read())
        assert done.returncode == (0 if saved["status"] == "pass" else 7), done.stderr
        data = json.loads(done.stdout)
        assert data["same_as_saved"], (name, data["changed"])


@pytest.mark.root
@pytest.mark.slow
def test_topo_builds_runs_script_and_cleans_up(tmp_path, host_state):
    script = tmp_path / "cmds"
    script.write_text("h1 ping -c1 -W2 h2\nr1 ip -j route\n")
    done = wirelab("topo", "line,2", "--script", script, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert "1 received" in out
    assert "wirelab topo: network removed" in out


@pytest.mark.root
@pytest.mark.slow
def test_topo_sigterm_at_the_prompt_removes_the_network(host_state):
    """SIGTERM while the CLI waits for input: exit 143, one line, nothing left."""
    import select
    import signal
    import time
    child = subprocess.Popen([sys.executable, "-m", "wirelab", "topo", "line,2"], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, deadline = b"", time.monotonic() + 60
    try:
        while b"mininet>" not in seen and time.monotonic() < deadline and child.poll() is None:
            if select.select([child.stdout], [], [], 1)[0]:
                seen += os.read(child.stdout.fileno(), 4096)
        assert b"mininet>" in seen, seen.decode(errors="replace")
        child.send_signal(signal.SIGTERM)
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    text = (seen + rest).decode(errors="replace")
    assert child.returncode == 143, text
    assert "wirelab topo: interrupted by SIGTERM; network removed" in text
    assert "Traceback" not in text


@pytest.mark.root
@pytest.mark.parametrize("script", ["setup.sh", "demo.sh", "test.sh"])
def test_scripts_without_root_use_sudo_or_say_why(script):
    """README's commands: a user shell asks sudo when there is one, else one line
    and exit 4 (a root shell on a minimal Debian has no sudo and needs none)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    import tempfile
    fake = tempfile.mkdtemp(prefix="wirelab-fake-sudo-")   # tmp_path is root's only (0700)
    try:
        os.chmod(fake, 0o755)
        with open(os.path.join(fake, "sudo"), "w") as f:
            f.write('#!/bin/sh\necho "sudo $*"\n')
        os.chmod(os.path.join(fake, "sudo"), 0o755)
        path = os.path.join(REPO, "scripts", script)
        as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", path, "--x"]
        done = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 4
        assert done.stderr == (f"{script[:-3]}: must run as root, and there is no sudo: "
                               "run it in a root shell (su -)\n")
        done = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30,
                              env={"PATH": f"{fake}:/usr/bin:/bin"})
        assert done.returncode == 0 and done.stdout == f"sudo bash {path} --x\n", done.stderr
    finally:
        shutil.rmtree(fake)
