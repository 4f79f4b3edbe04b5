"""MapReduce manager + workers as real processes on 127.0.0.1 (no namespaces needed).

A word count job against a Python reference (byte for byte), a worker killed
(SIGKILL) or frozen (SIGSTOP) in the middle of its map task, and shutdown.
Map tasks are held at a gate (a TCP listener of the test) until the test has
done what it wants to them: no sleeps, every wait has a deadline.
"""

import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from wirelab.apps.mapreduce.localcluster import LocalCluster
from wirelab.apps.mapreduce.submit import WORDCOUNT_MAP
from wirelab.apps.mapreduce.tasks import partition
from wirelab.proc import wait_until

JOB_TIMEOUT_S = 60


def write_inputs(folder, nfiles, seed, lines=300):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(400)] + ["the", "a", "ab", "über", "日本"]
    os.makedirs(folder)
    for i in range(nfiles):
        with open(os.path.join(folder, f"file{i:02d}.txt"), "w", encoding="utf-8") as f:
            for _ in range(lines):
                f.write(" ".join(rng.choice(words) for _ in range(rng.randint(0, 15))) + "\n")


def reference(folder, nreducers):
    counts = collections.Counter()
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            counts.update(f.read().split())
    parts = [b""] * nreducers
    for word in sorted(counts):
        parts[partition(word, nreducers)] += word + b"\t%d\n" % counts[word]
    return {f"part-{r:05d}": parts[r] for r in range(nreducers)}


def outputs(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def holders_never_overlap(events):
    """Replay the manager's decisions: no task is held by two live workers at once."""
    holder = {}
    for e in events:
        key = (e.get("job_id"), e.get("kind"), e.get("task_id"))
        if e["event"] == "task_assigned":
            assert key not in holder, f"{key} given to {e['worker']} while {holder[key]} holds it"
            holder[key] = e["worker"]
        elif e["event"] == "task_finished":
            holder.pop(key, None)
        elif e["event"] == "worker_dead":
            for k in [k for k, w in holder.items() if w == e["worker"]]:
                del holder[k]
    return True


class Gate:
    """Mappers connect here, say their worker's PID, and wait for EOF.

    :meth:`release` lets the mappers of one worker through, :meth:`open` every
    one, for good (later mappers are refused and go on)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []           # (worker pid, connection)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
                conn.settimeout(10)
                line = b""
                while not line.endswith(b"\n"):
                    piece = conn.recv(64)
                    if not piece:
                        break
                    line += piece
            except OSError:      # shut down by open()
                return
            self.held.append((int(line or b"0"), conn))

    def waiting(self, pid=None):
        return [c for p, c in list(self.held) if (pid is None or p == pid) and c.fileno() != -1]

    def release(self, pid):
        for conn in self.waiting(pid):
            conn.close()

    def open(self):
        # shutdown() wakes the accept() blocked in the thread (close() alone would not).
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.sock.close()
        for _, conn in self.held:
            conn.close()         # waiting mappers read EOF

    def mapper(self, folder):
        """A mapper that waits at this gate, then is the word count mapper."""
        path = os.path.join(folder, "gated_map.py")
        with open(path, "w") as f:
            f.write(f"""#!{sys.executable}
import os, socket
try:
    with socket.create_connection(("127.0.0.1", {self.port}), timeout=60) as s:
        s.sendall(b"%d\\n" % os.getppid())
        while s.recv(1024):
            pass
except OSError:
    pass
os.execv({WORDCOUNT_MAP!r}, [{WORDCOUNT_MAP!r}])
""")
        os.chmod(path, 0o755)
        return path


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="mapreduce-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_wordcount_job_equals_the_reference_and_shutdown_stops_everything(workdir):
    write_inputs(os.path.join(workdir, "in"), 7, seed=1)
    out = os.path.join(workdir, "out")
    with LocalCluster(workdir, workers=3, heartbeat_interval=0.5) as cluster:
        cluster.submit(os.path.join(workdir, "in"), out, nmappers=4, nreducers=3)
        cluster.wait_for("job_done", JOB_TIMEOUT_S)
        assert outputs(out) == reference(os.path.join(workdir, "in"), 3)
        # A second job queued behind a third: both run, in order, into their own folders.
        cluster.submit(os.path.join(workdir, "in"), out + "2", nmappers=1, nreducers=1)
        cluster.submit(os.path.join(workdir, "in"), out + "3", nmappers=7, nreducers=5)
        done = cluster.wait_for("job_done", JOB_TIMEOUT_S, count=3)
        assert [e["output_directory"] for e in done] == [out, out + "2", out + "3"]
        assert outputs(out + "2") == reference(os.path.join(workdir, "in"), 1)
        assert outputs(out + "3") == reference(os.path.join(workdir, "in"), 5)
        events = cluster.manager_events()
        assert holders_never_overlap(events)
        assert not [e for e in events if e["event"] in ("worker_dead", "task_reassigned", "dropped")]
        assert os.listdir(os.path.join(workdir, "shared")) == []     # per-job folders removed
        # Every message on the wire in the manager's log passes the protocol table.
        from wirelab.apps.mapreduce.protocol import check_message
        for e in events:
            if e["event"] in ("send", "recv"):
                assert check_message(e["message"], transport=e["transport"])[0] == []
        cluster.submit(None, None, 0, 0, shutdown=True)
        progs = [cluster.manager, *cluster.workers]
        wait_until(lambda: not any(p.running() for p in progs), 20, what="every program to exit")
        assert [p.popen.returncode for p in progs] == [0] * len(progs)
        sent = [e["dst"][1] for e in cluster.manager_events("send") if e["message"]["message_type"] == "shutdown"]
        assert sorted(sent) == sorted(w.address[1] for w in cluster.workers)


def test_a_killed_worker_s_task_is_reassigned_and_the_job_completes(workdir):
    write_inputs(os.path.join(workdir, "in"), 6, seed=2)
    out = os.path.join(workdir, "out")
    gate = Gate()
    with LocalCluster(workdir, workers=3, heartbeat_interval=0.5, missed_heartbeats=6) as cluster:
        cluster.submit(os.path.join(workdir, "in"), out, nmappers=3, nreducers=2,
                       mapper=gate.mapper(workdir))
        wait_until(lambda: len(gate.waiting()) == 3, 30, what="three mappers at the gate")
        (first,) = cluster.wait_for("task_assigned", 5, task_id=0, kind="map")
        victim = cluster.worker_at(first["worker"])
        victim.signal(signal.SIGKILL)
        (dead,) = cluster.wait_for("worker_dead", 10)
        assert dead["worker"] == first["worker"] and dead["reason"] == "heartbeats" and dead["missed"] >= 6
        gate.open()
        (moved,) = cluster.wait_for("task_reassigned", JOB_TIMEOUT_S)
        assert moved["task_id"] == 0 and moved["previous_worker"] == first["worker"]
        assert moved["worker"] != first["worker"]
        cluster.wait_for("job_done", JOB_TIMEOUT_S)
        assert outputs(out) == reference(os.path.join(workdir, "in"), 2)
        events = cluster.manager_events()
        assert holders_never_overlap(events)
        given = [e["worker"] for e in events if e["event"] == "task_assigned" and e.get("job_id") == 0
                 and e["worker"] == first["worker"]]
        assert len(given) == 1        # nothing more for the dead one


def test_a_frozen_worker_that_wakes_up_late_is_ignored(workdir):
    """A worker frozen (SIGSTOP) past its heartbeats is dead; its task goes to the other;
    woken while that one still works on it, its finished is ignored and the job completes."""
    write_inputs(os.path.join(workdir, "in"), 2, seed=3)
    out = os.path.join(workdir, "out")
    gate = Gate()
    with LocalCluster(workdir, workers=2, heartbeat_interval=0.5, missed_heartbeats=6) as cluster:
        cluster.submit(os.path.join(workdir, "in"), out, nmappers=2, nreducers=2, mapper=gate.mapper(workdir))
        wait_until(lambda: len(gate.waiting()) == 2, 30, what="two mappers at the gate")
        (first,) = cluster.wait_for("task_assigned", 5, task_id=0, kind="map")
        frozen = cluster.worker_at(first["worker"])
        other = next(w for w in cluster.workers if w is not frozen)
        frozen.signal(signal.SIGSTOP)
        try:
            cluster.wait_for("worker_dead", 10, worker=first["worker"])
            gate.release(other.popen.pid)        # the other finishes map 1 and takes map 0
            (moved,) = cluster.wait_for("task_reassigned", 30, task_id=0)
            assert moved["worker"] == list(other.address)
            wait_until(lambda: gate.waiting(other.popen.pid), 30, what="map 0 again, at the gate")
            gate.release(frozen.popen.pid)
        finally:
            frozen.signal(signal.SIGCONT)
        (late,) = cluster.wait_for("late_finished_ignored", 30, worker=first["worker"])
        assert late["task_id"] == 0 and late["reason"] == f"reassigned to 127.0.0.1:{other.address[1]}"
        gate.open()
        cluster.wait_for("job_done", JOB_TIMEOUT_S)
        assert outputs(out) == reference(os.path.join(workdir, "in"), 2)
        events = cluster.manager_events()
        assert holders_never_overlap(events)
        assert [e["task_id"] for e in events if e["event"] == "task_finished" and e["kind"] == "map"] == [1, 0]
        # Awake, it beats again, but only a new register would revive it: the next job is the other's.
        cluster.submit(os.path.join(workdir, "in"), out + "2", nmappers=2, nreducers=1)
        cluster.wait_for("job_done", JOB_TIMEOUT_S, count=2)
        second = [e for e in cluster.manager_events("task_assigned") if e["job_id"] == 1]
        assert second and all(e["worker"] == list(other.address) for e in second)


def test_console_commands_answer_help():
    venv_bin = os.path.dirname(sys.executable)
    for name in ("mapreduce-manager", "mapreduce-worker", "mapreduce-submit"):
        path = os.path.join(venv_bin, name)
        if not os.path.exists(path):
            pytest.skip(f"{path} not installed (scripts/setup.sh writes it)")
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {name}")


def test_bad_options_are_one_line_errors(workdir):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    base = [sys.executable, "-m"]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        cases = [
            (["wirelab.apps.mapreduce.manager", "--host", "127.0.0.1", "--port", str(port)], 2, "cannot listen on"),
            (["wirelab.apps.mapreduce.manager", "--loglevel", "chatty", "--port", "0"], 2, "--loglevel"),
            (["wirelab.apps.mapreduce.worker", "--port", "0", "--manager-port", "1", "--register-timeout", "0.5"],
             2, "cannot register with the manager"),
            (["wirelab.apps.mapreduce.submit", "--port", "1", "--shutdown"], 2, "cannot reach the manager"),
            (["wirelab.apps.mapreduce.submit", "--input", "/nonexistent", "--output", "x"], 2, "not a directory"),
            (["wirelab.apps.mapreduce.manager", "--port", "70000"], 2, "not a port"),
        ]
        for argv, code, text in cases:
            done = subprocess.run(base + argv, capture_output=True, text=True, timeout=30, env=env, cwd=workdir)
            assert done.returncode == code, (argv, done.stderr)
            assert text in done.stderr and "Traceback" not in done.stderr, done.stderr
