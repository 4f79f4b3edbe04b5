"""A User-Mode Linux run killed with SIGKILL leaves its control folder and its
guest behind; the run ledger owns both, so ``python -m wirelab.net.clean``
removes exactly them."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from wirelab.net import runledger, uml
from wirelab.proc import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = [
    pytest.mark.skipif(uml.in_uml(), reason="already inside User-Mode Linux"),
    pytest.mark.skipif(shutil.which("linux.uml") is None,
                       reason="linux.uml not installed (apt package user-mode-linux)"),
]
BOOT_DEADLINE_S = 60   # boot is ~2.5 s idle; other test runs may share the cores


def ledger_of(owner_pid):
    """The UML run ledger whose owner is ``owner_pid`` once it names its guest, or None."""
    if not os.path.isdir(runledger.LEDGER_DIR):
        return None
    for name in os.listdir(runledger.LEDGER_DIR):
        if not (name.startswith("uml-") and name.endswith(".json")):
            continue
        try:
            data = runledger.read_ledger(os.path.join(runledger.LEDGER_DIR, name))
        except (OSError, ValueError):
            continue
        if data.get("owner_pid") == owner_pid and data.get("pids") and data.get("folders"):
            return data
    return None


def test_sigkilled_uml_run_is_cleaned(tmp_path):
    child = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "uml_run.py"),
                              "--timeout", "300", "--", "sleep", "300"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        data = wait_until(lambda: ledger_of(child.pid) or child.poll() is not None,
                          BOOT_DEADLINE_S, what="the UML run's ledger to name its guest")
        assert child.poll() is None, child.stderr.read().decode()[-500:]
        run_id, folder = data["run_id"], data["folders"][0]
        guest = int(next(iter(data["pids"])))   # linux.uml, leader of the guest's group
        assert os.path.isdir(folder)
        assert runledger.labelled_pids(run_id), "the guest's host processes carry the run label"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
    # What SIGKILL leaves behind: the ledger, the folder and the guest.
    assert os.path.isdir(folder)
    assert runledger.processes_in_group(guest)
    assert os.path.exists(os.path.join(runledger.LEDGER_DIR, f"{run_id}.json"))
    done = subprocess.run([sys.executable, "-m", "wirelab.net.clean"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"cleaned stale run {run_id}" in done.stdout
    assert not os.path.exists(folder), "the killed run's UML folder is still there"
    assert runledger.labelled_pids(run_id) == {}, "the killed run's guest is still running"
    assert runledger.processes_in_group(guest) == [], "a process of the guest is still running"
    assert not os.path.exists(os.path.join(runledger.LEDGER_DIR, f"{run_id}.json"))


def owned_folders():
    return {n for n in os.listdir(runledger.OWNED_FOLDER_DIR) if n.startswith("wirelab-uml-")}


def my_ledgers():
    if not os.path.isdir(runledger.LEDGER_DIR):
        return []
    mine = []
    for name in os.listdir(runledger.LEDGER_DIR):
        try:
            if runledger.read_ledger(
                    os.path.join(runledger.LEDGER_DIR, name)).get("owner_pid") == os.getpid():
                mine.append(name)
        except (OSError, ValueError):
            pass
    return mine


def test_normal_uml_run_leaves_nothing(monkeypatch):
    made = []
    def recorded(prefix=""):
        made.append(runledger.new_run_id(prefix))
        return made[-1]
    monkeypatch.setattr(uml, "new_run_id", recorded)
    with open(os.devnull, "w") as devnull:
        status = uml.run_in_uml(["true"], cwd=REPO, timeout=BOOT_DEADLINE_S,
                                stdout=devnull, stderr=devnull)
    assert status == 0 and len(made) == 1
    run_id = made[0]
    assert f"wirelab-{run_id}" not in owned_folders(), "the control folder was left behind"
    assert not os.path.exists(os.path.join(runledger.LEDGER_DIR, f"{run_id}.json"))
    assert my_ledgers() == [], "ledger left behind"
