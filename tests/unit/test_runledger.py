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


def bytes_written():
    """Bytes this process has passed to write(2) so far (/proc/self/io ``wchar``)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def test_recording_pids_writes_linear_bytes(tmp_path):
    """Recording N pids writes O(N) bytes, not a rewrite of the ledger per pid:
    1000 pids rewritten each time would be ~1000 * 1000 / 2 * 20 B = 10 MB."""
    n = 1000
    ledger = runledger.RunLedger("many", directory=str(tmp_path))
    before = bytes_written()
    for i in range(n):
        ledger.add_pid(DEAD_PID + i)
    written = bytes_written() - before
    line = len(json.dumps({"pid": DEAD_PID, "start": None}) + "\n")
    assert written <= n * line, f"{written} bytes for {n} pids, {line} bytes a pid expected"
    data = runledger.read_ledger(ledger.path)
    assert data["pids"] == {str(DEAD_PID + i): None for i in range(n)}
    ledger.remove()
    assert os.listdir(tmp_path) == []


def test_appended_records_reach_the_clean_up(tmp_path, uml_folder):
    """A SIGKILLed run's ledger is as it was on disk: header plus appended lines."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        ledger = runledger.RunLedger("killed", directory=str(tmp_path))
        ledger.add_pid(child.pid)
        ledger.add_folder(uml_folder)
        # The owner dies: rewrite the header line only, as another process would see it.
        path = tmp_path / "killed.json"
        lines = path.read_text().split("\n")
        lines[0] = json.dumps(dict(json.loads(lines[0]), owner_pid=DEAD_PID))
        path.write_text("\n".join(lines))
        cleaned = runledger.clean_stale_runs(directory=str(tmp_path), unledgered=False)
        assert cleaned == {"killed": 1}
        # kill_and_wait reaped it (a zombie child of ours): its pid is gone.
        assert runledger.stat_fields(child.pid) is None, "the run's process still exists"
        assert not os.path.exists(uml_folder)
        assert os.listdir(tmp_path) == []
    finally:
        if runledger.stat_fields(child.pid) is not None:
            child.kill()
            child.wait(5)


def test_reader_takes_old_ledgers_and_cut_short_lines(tmp_path):
    old = {"run_id": "old", "owner_pid": DEAD_PID, "owner_start": 1, "created": 0.0,
           "pids": {"17": 5}, "folders": []}
    (tmp_path / "old.json").write_text(json.dumps(old))   # older code: one JSON object
    assert runledger.read_ledger(str(tmp_path / "old.json")) == old
    header = dict(old, run_id="cut", pids={})
    (tmp_path / "cut.json").write_text(
        json.dumps(header) + "\n" + '{"pid": 18, "start": 6}\n' + "not a record\n"
        + '{"pid": 19, "sta')   # a SIGKILL in the middle of the last append
    assert runledger.read_ledger(str(tmp_path / "cut.json"))["pids"] == {"18": 6}
