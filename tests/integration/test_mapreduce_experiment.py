"""The MapReduce experiment end to end (root): the netem-free cases natively,
the impaired case in UML (netem), and "bring your own implementation" with
small fake student programs written here -- a manager that crashes after the
first register, one that never acts on a ``finished``, a worker that sends no
heartbeats: each run ends by its deadline with the right failed claims and
leaves no process behind."""

import json
import os
import sys
import time

import pytest

from test_experiments_e2e import assert_reverify_equals_run, run_experiment

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PER_CASE = ["job finished", "output", "delivered", "P4 message table", "heartbeats", "two live workers",
            "none lost", "exited 0", "SYN"]


def failed_lines(done):
    rows = [line for line in done.stdout.splitlines() if "  FAIL  " in line]
    return "\n".join(rows) + "\n...\n" + done.stdout[-1500:] + done.stderr[-1500:]


def test_native_cases_end_to_end(tmp_path, host_state):
    done, out, metrics = run_experiment("mapreduce", tmp_path, "--cases", "clean", "worker_killed", "partitioned")
    assert done.returncode == 0, failed_lines(done)
    assert "User-Mode Linux" not in done.stdout
    claims = metrics["claims"]
    assert all(c["ok"] for c in claims) and len(claims) == 9 + 11 + 12 + 2
    m = metrics["metrics"]["cases"]
    lo, hi = 5 * 0.5, 5 * 0.5 + 0.5 + 0.2
    for case in ("worker_killed", "partitioned"):
        assert lo <= m[case]["death"]["after_s"] <= hi and m[case]["death"]["reason"] == "heartbeats"
        assert m[case]["rerun"]["reassigned_to"] and m[case]["rerun"]["reassigned_to"][0] != m[case]["death"]["victim"]
    late = m["partitioned"]["late"]
    assert late["heartbeats_after_heal"] >= 1 and late["late_finished_t"] and late["late_finished_ignored"]
    # the partitioned worker's finished was retried into the partition: SYNs 1 s apart in its own capture
    assert m["partitioned"]["latency"]["syn_retransmissions"] >= 1
    fault = json.loads((out / "partitioned" / "case.json").read_text())["workload"]["fault"]
    assert fault["state_down"] == "disabled" and fault["state_up"] == "forwarding"
    for case in ("clean", "worker_killed", "partitioned"):
        assert (out / case / "timeline.png").stat().st_size > 10_000
        assert not (out / case / "work").exists()        # shared and per-program folders removed
    assert_reverify_equals_run(out, metrics)


@pytest.mark.netem
def test_impaired_case_in_uml(tmp_path, host_state):
    done, out, metrics = run_experiment("mapreduce", tmp_path, "--cases", "impaired")
    assert done.returncode == 0, failed_lines(done)
    claims = metrics["claims"]
    assert all(c["ok"] for c in claims) and len(claims) == 10 + 2
    netem = metrics["metrics"]["cases"]["impaired"]["netem"]
    assert len(netem) == 6 and all("loss 5%" in n["spec"] for n in netem)
    assert sum(n["counters"]["drops"] for n in netem if n["counters"]) >= 1
    assert_reverify_equals_run(out, metrics)


# -- bring your own implementation: fake students --------------------------------------------
COMMON = f"""
import argparse, json, os, socket, sys, tempfile
sys.path.insert(0, {REPO!r})

def read(conn):
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return json.loads(data)
        data += chunk

def send(address, message):
    with socket.create_connection(tuple(address), timeout=5) as s:
        s.sendall(json.dumps(message).encode())

p = argparse.ArgumentParser()
p.add_argument("--host"); p.add_argument("--port", type=int); p.add_argument("--shared_dir")
a = p.parse_args()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((a.host, a.port))
server.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((a.host, a.port))
"""

CRASHING_MANAGER = COMMON + """
conn, _ = server.accept()
msg = read(conn)
workers = {}
workers[msg["worker_id"]] = msg      # the bug: P4 messages have no worker_id
"""

FORGETFUL_MANAGER = COMMON + """
workers = []
while True:
    conn, _ = server.accept()
    msg = read(conn)
    conn.close()
    kind = msg["message_type"]
    if kind == "register":
        workers.append([msg["worker_host"], msg["worker_port"]])
        send(workers[-1], {"message_type": "register_ack"})
    elif kind == "new_manager_job":
        files = sorted(os.path.join(msg["input_directory"], f) for f in os.listdir(msg["input_directory"]))
        tmp = tempfile.mkdtemp(dir=a.shared_dir)
        os.makedirs(msg["output_directory"], exist_ok=True)
        for i in range(msg["num_mappers"]):
            w = workers[i % len(workers)]
            send(w, {"message_type": "new_map_task", "task_id": i, "executable": msg["mapper_executable"],
                     "input_paths": files[i::msg["num_mappers"]], "output_directory": tmp,
                     "num_partitions": msg["num_reducers"], "worker_host": w[0], "worker_port": w[1]})
    elif kind == "finished":
        pass                            # the bug: a finished is read, then forgotten
    elif kind == "shutdown":
        for w in workers:
            send(w, {"message_type": "shutdown"})
        break
"""

SILENT_WORKER = f"""
import sys
sys.path.insert(0, {REPO!r})
from wirelab.apps.mapreduce import worker
worker.Worker._start_heartbeats = lambda self: None      # the bug: no heartbeat thread
sys.exit(worker.main())
"""


def run_byo(tmp_path, job_timeout, *extra, **templates):
    args = ["--cases", "clean", "--job-timeout", str(job_timeout), *extra]
    for role, text in templates.items():
        args += [f"--{role}-cmd", text]
    started = time.monotonic()
    done, out, metrics = run_experiment("mapreduce", tmp_path, *args)
    return done, out, metrics, time.monotonic() - started


def script(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_nothing_left(tmp_path):
    """No process runs anything from this test's folder (the fake programs, mappers)."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(tmp_path).encode() in f.read():
                    left.append(pid)
        except OSError:
            continue
    assert not left, f"processes left: {left}"


def failed_names(metrics):
    return [c["name"].split(": ", 1)[1] for c in metrics["claims"] if not c["ok"]]


def claim(metrics, words):
    return next(c for c in metrics["claims"] if words in c["name"])


def test_byo_manager_that_crashes_after_register(tmp_path, host_state):
    fake = script(tmp_path, "crashing_manager.py", CRASHING_MANAGER)
    done, out, metrics, seconds = run_byo(
        tmp_path, 20, manager=f"{sys.executable} {fake} --host {{host}} --port {{port}} --shared_dir {{shared_dir}}")
    assert done.returncode == 7, failed_lines(done)
    job = claim(metrics, "the job finished")
    assert not job["ok"] and "the manager exited 1" in job["measured"]["diagnosis"]
    assert "KeyError: 'worker_id'" in job["measured"]["diagnosis"]
    exits = claim(metrics, "exited 0 by itself")
    assert not exits["ok"] and any(x.startswith("manager: exit 1") for x in exits["measured"])
    assert "every worker was acknowledged" in " ".join(failed_names(metrics))
    assert seconds < 20 + 60     # the deadline, plus the network's set-up and teardown
    assert_nothing_left(tmp_path)


def test_byo_manager_that_forgets_finished(tmp_path, host_state):
    fake = script(tmp_path, "forgetful_manager.py", FORGETFUL_MANAGER)
    done, out, metrics, seconds = run_byo(
        tmp_path, 8, manager=f"{sys.executable} {fake} --host {{host}} --port {{port}} --shared_dir {{shared_dir}}")
    assert done.returncode == 7, failed_lines(done)
    job = claim(metrics, "the job finished")
    assert not job["ok"] and "no complete output within the deadline (8 s)" in job["measured"]["why"]
    diagnosis = job["measured"]["diagnosis"]
    assert diagnosis.startswith("finished of task ") and "arrived whole" in diagnosis
    assert "the manager sent no task after" in diagnosis and "unfinished: reduce 0, reduce 1" in diagnosis
    assert any("finished" in line for line in job["measured"]["last messages"])
    assert sorted(failed_names(metrics)) == sorted([
        "the job finished within its deadline",
        "output == the reference word count (all part files, sorted by word; byte-identical)",
        "every task (4 map, 2 reduce) reported finished, none lost"])
    assert seconds < 8 + 60
    assert_nothing_left(tmp_path)


def test_byo_worker_without_heartbeats(tmp_path, host_state):
    """Dead 0.2 s after registering (T = 0.1 s, k = 2), shorter than any map
    task: every worker dies, the tasks have nowhere to go."""
    fake = script(tmp_path, "silent_worker.py", SILENT_WORKER)
    done, out, metrics, seconds = run_byo(
        tmp_path, 8, "--heartbeat-interval", "0.1", "--missed-heartbeats", "2",
        worker=f"{sys.executable} {fake} --host {{host}} --port {{port}} --manager-host "
               "{manager_host} --manager-port {manager_port} --heartbeat-interval {heartbeat_interval}")
    assert done.returncode == 7, failed_lines(done)
    beats = claim(metrics, "heartbeats reached the manager")
    assert not beats["ok"] and all("no heartbeat" in x for x in beats["measured"]) and len(beats["measured"]) == 4
    assert not claim(metrics, "the job finished")["ok"]
    # dead to the manager, so never told to shut down: stopped by the experiment, not held against it
    exits = claim(metrics, "exited 0 by itself")
    assert exits["ok"] and sorted(exits["measured"]["stopped"]) == ["w1", "w2", "w3", "w4"]
    events = [json.loads(x) for x in (out / "clean" / "events" / "manager.jsonl").read_text().splitlines()]
    assert {tuple(e["worker"]) for e in events if e["event"] == "worker_dead"} == \
        {(f"10.1.0.{10 + k}", 6001) for k in range(1, 5)}
    assert seconds < 8 + 60
    assert_nothing_left(tmp_path)
