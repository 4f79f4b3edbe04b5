"""The run ledger owns what a run made: processes and working folders. A run
whose owner is dead (SIGKILL) is cleaned; anything else is left alone.

Every call passes ``unledgered=False``: with a ledger folder of the test's own,
every live run on the machine would look ledgerless. ``python -m
wirelab.net.clean`` on a real SIGKILLed run: tests/integration/test_uml_ledger.py.
"""

import json
import os
import subprocess

import pytest

from wirelab.net import runledger

DEAD_PID = 2 ** 22 + 7   # above pid_max's default: never a live process


@pytest.fixture
def uml_folder():
    """A folder named like User-Mode Linux's control folders, removed afterwards."""
    path = os.path.join(runledger.OWNED_FOLDER_DIR,
                        f"wirelab-uml-test-{runledger.new_run_id()}")
    os.mkdir(path)
    with open(os.path.join(path, "argv"), "w") as f:
        f.write("sleep\0")
    yield path
    subprocess.run(["rm", "-rf", "--", path], check=True, timeout=10)


def write_dead_ledger(directory, run_id, folders):
    """What a run killed with SIGKILL leaves: its ledger, owner gone."""
    ledger = runledger.RunLedger(run_id, directory=str(directory))
    for folder in folders:
        ledger.add_folder(folder)
    data = dict(ledger.data, owner_pid=DEAD_PID)
    (directory / f"{run_id}.json").write_text(json.dumps(data))
    return ledger


def test_stale_run_folder_is_removed(tmp_path, uml_folder):
    write_dead_ledger(tmp_path, "uml-dead", [uml_folder])
    logged = []
    cleaned = runledger.clean_stale_runs(directory=str(tmp_path), log=logged.append, unledgered=False)
    assert cleaned == {"uml-dead": 0}
    assert not os.path.exists(uml_folder), "the dead run's UML folder is still there"
    assert not (tmp_path / "uml-dead.json").exists()
    assert "1 folder(s) removed" in logged[-1]


def test_live_run_folder_is_kept(tmp_path, uml_folder):
    live = runledger.RunLedger("uml-live", directory=str(tmp_path))
    live.add_folder(uml_folder)
    assert runledger.clean_stale_runs(directory=str(tmp_path), unledgered=False) == {}
    assert os.path.isdir(uml_folder)
    live.remove()


def test_only_owned_folders_are_ever_removed(tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    ledger = runledger.RunLedger("forged", directory=str(tmp_path))
    with pytest.raises(ValueError, match="not a folder a run may own"):
        ledger.add_folder(str(victim))
    # A forged or corrupted ledger naming any other path: left alone.
    for path in (str(victim), "/tmp/wirelab-uml-x/../../etc", "/etc", "/tmp"):
        assert not runledger.is_owned_folder(path), path
    data = dict(ledger.data, owner_pid=DEAD_PID, folders=[str(victim)])
    (tmp_path / "forged.json").write_text(json.dumps(data))
    logged = []
    runledger.clean_stale_runs(directory=str(tmp_path), log=logged.append, unledgered=False)
    assert victim.is_dir()
    assert any("left alone" in line for line in logged)
