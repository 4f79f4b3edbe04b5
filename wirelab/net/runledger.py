"""What a run created, recorded where the next run (or ``make clean-net``) finds it.

Every process a run starts carries ``WIRELAB_RUN=<run id>`` in its environment
(Mininet's node shells inherit it, and so does everything started in a node),
and the run writes ``/run/wirelab/<run id>.json`` naming its owner (pid and
start time) and the pids it started. A run killed with SIGKILL leaves both
behind; :func:`clean_stale_runs` finds runs whose owner is gone and stops
exactly their processes. Every node lives in its own network namespace, so when
a run's processes are gone its namespaces, veths, bridges, qdiscs and nftables
rules are gone with them: nothing is ever looked up by a name pattern.
"""

import json
import os
import signal
import time

LABEL = "WIRELAB_RUN"
LEDGER_DIR = os.environ.get("WIRELAB_LEDGER_DIR", "/run/wirelab")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp,
    ...: field N of proc(5) is index N-3), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2:].split()


def proc_start_time(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid, start_time):
    """Whether ``pid`` is still the process that started at ``start_time`` and runs.

    A zombie (state Z, or X while it is being reaped) has exited: it holds no
    namespace, socket or file any more, only its pid until its parent reaps it.
    It is dead here; otherwise a node shell we have not reaped yet would make
    every wait for "the run's processes are gone" time out.
    """
    if start_time is None:
        return False
    fields = stat_fields(pid)
    return bool(fields) and fields[0] not in (b"Z", b"X") and int(fields[19]) == start_time


def reap_children(pids):
    """Reap those of ``pids`` that are zombie children of this process.

    Only zombies, and only the given pids: ``waitpid(-1)`` would steal the exit
    status of a child some other code (a ``subprocess.Popen``) still waits for.
    Returns the pids reaped.
    """
    reaped = []
    me = os.getpid()
    for pid in pids:
        fields = stat_fields(pid)
        if not fields or fields[0] != b"Z" or int(fields[1]) != me:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
        except ChildProcessError:
            pass  # reaped meanwhile by its Popen object
    return reaped


def labelled_pids(run_id=None):
    """Pids of processes carrying a run label: {pid: run_id}, optionally one run's."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item.startswith(LABEL.encode() + b"="):
                value = item.split(b"=", 1)[1].decode(errors="replace")
                if run_id is None or value == run_id:
                    found[pid] = value
                break
    return found


class RunLedger:
    """The on-disk record of one live run."""

    def __init__(self, run_id, directory=LEDGER_DIR):
        self.run_id = run_id
        self.path = os.path.join(directory, f"{run_id}.json")
        self.data = {"run_id": run_id, "owner_pid": os.getpid(),
                     "owner_start": proc_start_time(os.getpid()),
                     "created": time.time(), "pids": {}}
        os.makedirs(directory, exist_ok=True)
        try:
            self._write()
        except BaseException:   # interrupted half-way: the caller has no handle to remove it
            self.remove()
            raise

    def add_pid(self, pid):
        self.data["pids"][str(pid)] = proc_start_time(pid)
        self._write()

    def _write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)

    def remove(self):
        for path in (self.path + ".tmp", self.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def kill_and_wait(pids, timeout=5.0):
    """SIGKILL the given {pid: start_time} and wait until they are gone."""
    from wirelab.proc import wait_until
    for pid, start in pids.items():
        if alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    def gone():
        reap_children(pids)
        return not any(alive(p, s) for p, s in pids.items())
    wait_until(gone, timeout, what=f"processes {sorted(pids)} to exit")


def stale_runs(directory=LEDGER_DIR):
    """Ledgers whose owner process is gone: [(run_id, data)]."""
    runs = []
    if not os.path.isdir(directory):
        return runs
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if not alive(data.get("owner_pid", -1), data.get("owner_start")):
            runs.append((data.get("run_id", name[:-5]), data))
    return runs


def clean_stale_runs(directory=LEDGER_DIR, log=None):
    """Stop what dead runs left behind; return {run_id: number of processes killed}."""
    cleaned = {}
    runs = stale_runs(directory)
    by_label = labelled_pids()
    # A label with no ledger at all belongs to a run whose ledger was lost:
    # nobody can own it any more.
    known = set()
    if os.path.isdir(directory):
        known = {n[:-5] for n in os.listdir(directory) if n.endswith(".json")}
    stale_ids = {run_id for run_id, _ in runs}
    for label in sorted(set(by_label.values()) - known - stale_ids):
        runs.append((label, {}))
    for run_id, data in runs:
        pids = {int(p): s for p, s in data.get("pids", {}).items()}
        for pid, label in by_label.items():
            if label == run_id:
                pids[pid] = proc_start_time(pid)
        live = {p: s for p, s in pids.items() if alive(p, s)}
        try:
            kill_and_wait(live)
        except TimeoutError as exc:
            # Keep the ledger: the next clean-up tries again. Go on with the others.
            if log:
                log(f"stale run {run_id}: {exc}")
            continue
        try:
            os.unlink(os.path.join(directory, f"{run_id}.json"))
        except FileNotFoundError:
            pass
        cleaned[run_id] = len(live)
        if log:
            log(f"cleaned stale run {run_id}: {len(live)} processes stopped")
    return cleaned
