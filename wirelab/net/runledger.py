"""What a run created, recorded where the next run (or ``make clean-net``) finds it.

Every process a run starts carries ``WIRELAB_RUN=<run id>`` in its environment
(Mininet's node shells inherit it, and so does everything started in a node),
and the run writes ``/run/wirelab/<run id>.json`` naming its owner (pid and
start time), the pids it started and the working folders it made (User-Mode
Linux's ``/tmp/wirelab-uml-*``). The file is JSON Lines: a header line written
once (atomically, by rename), then one line appended per pid or folder, so a
1000-node run writes O(n) bytes rather than rewriting the file per node
shell. A ledger from older code (the whole record as one JSON object) reads
the same: it is a header with its pids and folders inside. A run killed with
SIGKILL leaves all of them behind; :func:`clean_stale_runs` finds runs whose owner is gone, stops exactly
their processes and removes exactly their folders. Every node lives in its own network namespace, so when
a run's processes are gone its namespaces, veths, bridges, qdiscs and nftables
rules are gone with them: nothing is ever looked up by a name pattern.
"""

import datetime
import json
import os
import secrets
import shutil
import signal
import time

LABEL = "WIRELAB_RUN"
LEDGER_DIR = os.environ.get("WIRELAB_LEDGER_DIR", "/run/wirelab")
# A ledger is a file anyone with root may have written: the clean-up removes a
# recorded folder only if it is one a run can make (a real folder named so,
# directly in /tmp), never any path the file names.
OWNED_FOLDER_DIR = "/tmp"   # where User-Mode Linux's control folders live (see uml.py)
OWNED_FOLDER_PREFIXES = ("wirelab-uml-",)


def new_run_id(prefix=""):
    """A run id: UTC time to the second and 6 random hex digits, e.g. 20250101T120000-a1b2c3."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}{stamp}-{secrets.token_hex(3)}"


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
                     "created": time.time(), "pids": {}, "folders": []}
        os.makedirs(directory, exist_ok=True)
        try:
            self._write()
        except BaseException:   # interrupted half-way: the caller has no handle to remove it
            self.remove()
            raise

    def add_pid(self, pid):
        start = proc_start_time(pid)
        self.data["pids"][str(pid)] = start
        self._append({"pid": int(pid), "start": start})

    def add_folder(self, path):
        """Record a working folder this run made (see :data:`OWNED_FOLDER_PREFIXES`)."""
        path = os.path.abspath(path)
        if not is_owned_folder(path):
            raise ValueError(f"{path} is not a folder a run may own "
                             f"({OWNED_FOLDER_DIR}/{'|'.join(OWNED_FOLDER_PREFIXES)}*)")
        self.data["folders"].append(path)
        self._append({"folder": path})

    def _write(self):
        """The header line, atomically: the ledger exists only once it names its owner."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(self.data) + "\n")
        os.replace(tmp, self.path)

    def _append(self, record):
        """One line, in one write(2) with O_APPEND. A SIGKILL can cut it short
        only at a page boundary; :func:`read_ledger` ignores a last line without
        its newline (that process still carries the run label)."""
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
        if written != len(line):
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")

    def remove(self):
        for path in (self.path + ".tmp", self.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def read_ledger(path):
    """A ledger file as one dict (header with ``pids`` {pid: start} and
    ``folders``), whether written by :class:`RunLedger` or by older code (one
    JSON object). Raises OSError or ValueError if the header is unreadable.

    Only complete lines count: a record cut short by a SIGKILL has no newline.
    A line that is not a record is skipped, not fatal: the run's processes
    also carry its label, and the rest of the ledger must still be cleaned.
    """
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    data = json.loads(lines[0])
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    data["pids"] = dict(data.get("pids") or {})
    data["folders"] = list(data.get("folders") or [])
    for line in lines[1:-1]:   # lines[-1]: after the last newline, empty or cut short
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        pid, start = record.get("pid"), record.get("start")
        if type(pid) is int and (start is None or type(start) is int):
            data["pids"][str(pid)] = start
        elif isinstance(record.get("folder"), str):
            data["folders"].append(record["folder"])
    return data


def is_owned_folder(path):
    """Whether ``path`` is a folder a run can have made: named with an owned
    prefix, directly in :data:`OWNED_FOLDER_DIR`, not a symbolic link."""
    return (os.path.isabs(path) and os.path.normpath(path) == path
            and os.path.dirname(path) == OWNED_FOLDER_DIR
            and os.path.basename(path).startswith(OWNED_FOLDER_PREFIXES)
            and not os.path.islink(path))


def remove_folders(paths):
    """Remove the recorded folders that a run can own; return the problems."""
    problems = []
    for path in paths:
        if not is_owned_folder(path):
            problems.append(f"{path}: not a folder a run may own; left alone")
            continue
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    return problems


def processes_in_group(pgid):
    """PIDs whose process group is ``pgid`` (read from /proc, no signals sent)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(entry)   # state ppid pgrp ...
            if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
                pids.append(int(entry))
    return pids


def kill_and_wait(pids, timeout=5.0):
    """SIGKILL the given {pid: start_time} and wait until they are gone.

    A pid that leads its own process group (a node shell: ``mnexec -d``; the
    User-Mode Linux kernel) takes its whole group with it: a guest's processes
    are host processes in UML's group, and not all of them show the label.
    """
    from wirelab.proc import wait_until
    groups = set()
    for pid, start in pids.items():
        if alive(pid, start):
            fields = stat_fields(pid)
            leader = fields is not None and int(fields[2]) == pid
            try:
                if leader:
                    os.killpg(pid, signal.SIGKILL)
                    groups.add(pid)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    def gone():
        reap_children(pids)
        return not any(alive(p, s) for p, s in pids.items()) \
            and not any(processes_in_group(g) for g in groups)
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
            data = read_ledger(os.path.join(directory, name))
        except (OSError, ValueError):
            continue
        if not alive(data.get("owner_pid", -1), data.get("owner_start")):
            runs.append((data.get("run_id", name[:-5]), data))
    return runs


def clean_stale_runs(directory=LEDGER_DIR, log=None, unledgered=True):
    """Stop what dead runs left behind; return {run_id: number of processes killed}.

    ``unledgered``: also stop labelled processes whose run has no ledger in
    ``directory`` (its ledger was lost). Only right for the machine's real
    ledger folder: with any other, every live run would look ledgerless.
    """
    cleaned = {}
    runs = stale_runs(directory)
    by_label = labelled_pids()
    # A label with no ledger at all belongs to a run whose ledger was lost:
    # nobody can own it any more.
    known = set()
    if os.path.isdir(directory):
        known = {n[:-5] for n in os.listdir(directory) if n.endswith(".json")}
    stale_ids = {run_id for run_id, _ in runs}
    for label in sorted(set(by_label.values()) - known - stale_ids) if unledgered else ():
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
        # Only now: a process of the run might still have been writing there.
        problems = remove_folders(data.get("folders", []))
        if problems:
            if log:
                log(f"stale run {run_id}: " + "; ".join(problems))
            if any("left alone" not in p for p in problems):
                continue   # keep the ledger for the next clean-up
        try:
            os.unlink(os.path.join(directory, f"{run_id}.json"))
        except FileNotFoundError:
            pass
        cleaned[run_id] = len(live)
        if log:
            folders = len(data.get("folders", []))
            log(f"cleaned stale run {run_id}: {len(live)} processes stopped"
                + (f", {folders} folder(s) removed" if folders else ""))
    return cleaned
