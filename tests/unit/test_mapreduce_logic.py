"""The MapReduce experiment without root: command templates, parameters, the
reference word count, the time rules, the wire analysis, and verify on a
fabricated results folder (captures built byte by byte, event logs, outputs):
a correct one passes every claim, and each corrupted item fails exactly its
claim."""

import importlib.util
import json
import os
import shutil

import pytest

from wirelab.apps.byo import BUNDLED, Template, listening
from wirelab.errors import ConfigError
from wirelab.experiment import mapreduce_wire as wire
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.experiment.mapreduce_data import compare_output, make_inputs, reference_lines, word_counts
from wirelab.experiment.mapreduce_rules import (dead_window_s, heartbeat_gap_limit_s, job_deadline_s, partition_s,
                                                syn_gap_s, syn_retransmission_window_ms)
from wirelab.observe.msgsynth import pcap_file, tcp_connection, udp_packet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_experiment():
    spec = importlib.util.spec_from_file_location("mapreduce_exp_under_test",
                                                  os.path.join(REPO, "experiments", "mapreduce.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MR = load_experiment()


# -- command templates ----------------------------------------------------------------------
def test_bundled_templates_parse_and_fill():
    for role in BUNDLED:
        t = Template.bundled(role)
        assert t.is_bundled
    t = Template.bundled("worker")
    argv = t.argv(host="10.1.0.11", port=6001, manager_host="10.1.0.2", manager_port=6000,
                  heartbeat_interval=0.5, event_log="/x/w1.jsonl")
    assert argv[1:3] == ["-m", "wirelab.apps.mapreduce.worker"]
    assert argv[argv.index("--heartbeat-interval") + 1] == "0.5" and argv[argv.index("--port") + 1] == "6001"


def test_student_template_split_with_shlex_and_filled_word_by_word():
    t = Template.parse("manager", "'/home/a b/env/bin/mapreduce-manager' --host {host} --port={port} "
                                  "--shared_dir \"{shared_dir}\" --tag {{literal}}")
    assert not t.is_bundled and t.takes("shared_dir") and not t.takes("event_log")
    argv = t.argv(host="10.1.0.2", port=6000, shared_dir="/r/s d")
    assert argv == ["/home/a b/env/bin/mapreduce-manager", "--host", "10.1.0.2", "--port=6000",
                    "--shared_dir", "/r/s d", "--tag", "{literal}"]
    # a shell metacharacter is just a character: no shell ever sees the template
    assert Template.parse("manager", "prog --host {host} --port {port}; rm -rf /").argv(
        host="h", port=1)[-4:] == ["1;", "rm", "-rf", "/"]


@pytest.mark.parametrize("role,text,words", [
    ("manager", "m --host {host} --port {port} --x {nope}", "unknown placeholder {nope}"),
    ("worker", "w --host {host} --port {port} --manager-host {manager_host}", "needs {manager_port}"),
    ("manager", "m --host {host} --port {port:d}", "only plain names"),
    ("manager", "m --host {host} --port {0}", "only plain names"),
    ("manager", "m --host {host.x} --port {port}", "only plain names"),
    ("manager", "m --host {host} --port {port", "literal brace"),
    ("submit", "s 'unclosed --host {host}", "cannot split"),
    ("worker", "   ", "empty command"),
    ("submit", "s --host {host} --port {port} --input {input} --output {output} --mapper {mapper} "
               "--reducer {reducer} --nmappers {nmappers} --nreducers {nreducers} --x {shared_dir}",
     "unknown placeholder {shared_dir}"),
])
def test_bad_templates_are_one_line_config_errors(role, text, words):
    with pytest.raises(ConfigError) as err:
        Template.parse(role, text)
    msg = str(err.value)
    assert words in msg and "\n" not in msg and msg.startswith(f"--{role}-cmd")


def test_listening_reads_this_namespaces_table(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not listening(os.getpid(), port)
        s.listen()
        assert listening(os.getpid(), port)


# -- parameters -----------------------------------------------------------------------------
def test_params_heartbeat_interval_follows_the_templates():
    P = MR.MapReduceParams
    assert P().interval() == 0.5 and P(heartbeat_interval=1.0).interval() == 1.0
    mine = "/env/bin/mapreduce-worker --host {host} --port {port} --manager-host {manager_host} " \
           "--manager-port {manager_port}"
    assert P(worker_cmd=mine).interval() == 2.0 and P(worker_cmd=mine).byo()
    with pytest.raises(ConfigError, match="no {heartbeat_interval}"):
        P(worker_cmd=mine, heartbeat_interval=0.5)
    with pytest.raises(ConfigError, match="no {missed_heartbeats}"):
        P(manager_cmd="m --host {host} --port {port}", missed_heartbeats=3)
    for bad in ({"cases": ("clean", "nope")}, {"cases": ("clean", "clean")}, {"workers": 1}, {"loss": 0},
                {"job_timeout": 2}, {"heartbeat_interval": 0.01}, {"manager_cmd": "m {port}"}):
        with pytest.raises(ConfigError):
            P(**bad)


def test_only_the_impaired_case_needs_netem():
    P = MR.MapReduceParams
    assert MR.MapReduce.needs_netem_for(P())
    assert not MR.MapReduce.needs_netem_for(P(cases=("clean", "worker_killed", "partitioned")))


# -- data -------------------------------------------------------------------------------------
def test_inputs_are_seeded_and_the_reference_counts_words(tmp_path):
    a = make_inputs(tmp_path / "a", 3, 30_000, seed=5)
    b = make_inputs(tmp_path / "b", 3, 30_000, seed=5)
    c = make_inputs(tmp_path / "c", 3, 30_000, seed=6)
    assert a == b and a != c and sum(f["bytes"] for f in a) >= 30_000
    counts = word_counts(tmp_path / "a")
    text = b"".join((tmp_path / "a" / f["name"]).read_bytes() for f in a)
    assert sum(counts.values()) == len(text.split())
    lines = reference_lines(counts)
    assert lines == sorted(lines) and all(line.count("\t") == 1 for line in lines)


def test_compare_output_is_byte_exact_and_names_the_first_difference(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x").write_text("b a b\nc b\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000").write_text("b\t3\n")
    (out / "part-00001").write_text("c\t1\na\t1\n")
    assert compare_output(tmp_path / "in", out)["ok"]
    (out / "part-00001").write_text("c\t1\na\t2\n")
    r = compare_output(tmp_path / "in", out)
    assert not r["ok"] and r["first_difference"] == {"line": 1, "got": "a\t2\n", "expected": "a\t1\n"}
    shutil.rmtree(out)
    assert compare_output(tmp_path / "in", out)["why"] == "no output folder"


# -- time rules ---------------------------------------------------------------------------------
def test_dead_window_from_T_and_k():
    lo, hi = dead_window_s(0.5, 5)
    assert lo == pytest.approx(2.5 - 2e-6) and hi == pytest.approx(2.5 + 0.5 + 0.2)
    lo2, hi2 = dead_window_s(2.0, 5)                      # P4's values: 10 s, checked every 2 s
    assert lo2 == pytest.approx(10 - 2e-6) and hi2 == pytest.approx(12.2)
    assert partition_s(0.5, 5) == pytest.approx(hi + 0.5)
    assert heartbeat_gap_limit_s(0.5, 5, impaired=False) == pytest.approx(1.0)
    assert heartbeat_gap_limit_s(0.5, 5, impaired=True) == pytest.approx(2.5)


def test_syn_backoff_doubles_after_the_linear_ones():
    assert [syn_gap_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [syn_gap_s(n, 4) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 1, 1, 1, 1, 2, 4]
    lo, hi = syn_retransmission_window_ms(2)
    assert lo < 2000 < 2024 < hi < 2300


def test_deadlines_grow_with_the_job_and_the_fault():
    base = job_deadline_s("clean", 4, 2, 400_000, 0.5, 5)
    assert job_deadline_s("clean", 8, 4, 400_000, 0.5, 5) > base
    assert job_deadline_s("impaired", 4, 2, 400_000, 0.5, 5) > base
    assert job_deadline_s("partitioned", 4, 2, 400_000, 0.5, 5) > job_deadline_s("worker_killed", 4, 2, 400_000,
                                                                                0.5, 5) > base


# -- a fabricated folder ---------------------------------------------------------------------------
M_IP, CLIENT_IP = "10.1.0.2", "10.2.0.11"
WORKERS = {"w1": "10.1.0.11", "w2": "10.1.0.12"}
T, K = 0.5, 5
T0 = 1_800_000_000.0


class FakeCase:
    """One case of a correct run, as messages on the wire plus what the
    programs log; ``write`` makes the captures, logs, outputs and case.json."""

    def __init__(self, name, mport):
        self.name, self.mport, self.wport = name, mport, mport + 1
        self.msgs, self.decisions, self.sport = [], [], 40000
        self.ip = {"manager": M_IP, "submit": CLIENT_IP, "shutdown": CLIENT_IP, **WORKERS}

    def tcp(self, t, src, dst, message):
        """``src`` sends ``message`` to ``dst`` on a new connection at T0 + t."""
        self.sport += 1
        dport = self.mport if dst == "manager" else self.wport
        self.msgs.append({"t": T0 + t, "transport": "tcp", "src": src, "dst": dst, "message": message,
                          "s": [self.ip[src], self.sport], "d": [self.ip[dst], dport]})

    def heartbeats(self, worker, start, end):
        t = start
        while t <= end:
            self.msgs.append({"t": T0 + t, "transport": "udp", "src": worker, "dst": "manager",
                              "message": {"message_type": "heartbeat", "worker_host": WORKERS[worker],
                                          "worker_port": self.wport},
                              "s": [WORKERS[worker], 50000], "d": [M_IP, self.mport]})
            t += T

    def decide(self, t, event, **fields):
        self.decisions.append({"t": T0 + t, "event": event, **fields})

    def task(self, t, kind, tid, worker, took):
        self.tcp(t, "manager", worker, {"message_type": f"new_{kind}_task", "task_id": tid, "executable": "/x",
                                        "input_paths": ["/i"], "output_directory": "/o",
                                        **({"num_partitions": 1} if kind == "map" else {}),
                                        "worker_host": WORKERS[worker], "worker_port": self.wport})
        self.decide(t - 0.001, "task_assigned", job_id=0, kind=kind, task_id=tid, worker=[WORKERS[worker], self.wport])
        if took is not None:
            self.tcp(t + took, worker, "manager", {"message_type": "finished", "task_id": tid,
                                                   "worker_host": WORKERS[worker], "worker_port": self.wport})
            self.decide(t + took + 0.001, "task_finished", job_id=0, kind=kind, task_id=tid,
                        worker=[WORKERS[worker], self.wport], late=False)

    def write(self, root, fault=None, victim=None, end=3.0, input_dir=None):
        folder = root / self.name
        (folder / "events").mkdir(parents=True)
        pcaps = {n: [] for n in ["manager", *WORKERS]}
        logs = {n: [] for n in ["manager", "submit", "shutdown", *WORKERS]}
        for i, m in enumerate(sorted(self.msgs, key=lambda m: m["t"])):
            ts = int(m["t"] * 1e9)
            data = json.dumps(m["message"]).encode()
            if m["transport"] == "tcp":
                pkts = tcp_connection(tuple(m["s"]), tuple(m["d"]), data, t0=ts, step=20_000, isn_c=1000 + i)
            else:
                pkts = [(ts, udp_packet(m["s"][0], m["d"][0], m["s"][1], m["d"][1], data, ip_id=i), "udp")]
            for end_name in (m["src"], m["dst"]):
                if end_name in pcaps:
                    pcaps[end_name] += pkts
            ev = {"transport": m["transport"], "src": m["s"], "dst": m["d"], "message": m["message"]}
            logs[m["src"]].append({"t": m["t"] + 0.0001, "event": "send", **ev})
            logs[m["dst"]].append({"t": m["t"] + 0.0002, "event": "recv", **ev})
        logs["manager"] += self.decisions
        for n, pkts in pcaps.items():
            (folder / f"{n}.pcap").write_bytes(pcap_file(sorted(pkts, key=lambda p: p[0])))
        for n, events in logs.items():
            (folder / "events" / f"{n}.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["t"])))
        lines = reference_lines(word_counts(input_dir))
        (folder / "output").mkdir()
        (folder / "output" / "part-00000").write_text("".join(lines[::2]))
        (folder / "output" / "part-00001").write_text("".join(lines[1::2]))
        programs = {n: {"returncode": 0, "stopped_by": None, "stderr_tail": ""} for n in logs}
        if victim:
            programs[victim] = {"returncode": -9, "stopped_by": "SIGKILL", "stderr_tail": ""}
        settings = {"kind": self.name, "manager_port": self.mport, "worker_port": self.wport, "nmappers": 2,
                    "nreducers": 1, "heartbeat_interval": T, "missed_heartbeats": K, "deadline_s": 40.0,
                    "partition_s": 3.7, "loglevel": "info"}
        rec = {"t0": T0, "settings": settings, "event_logs": {n: f"events/{n}.jsonl" for n in logs},
               "fault": fault, "job": {"done": True, "seconds": end - 0.2, "t_end": T0 + end},
               "submit": {"t": T0 + 0.2}, "shutdown": {"t": T0 + end}, "programs": programs,
               "leftover_processes": {}, "errors": []}
        caps = [{"name": f"{n}.pcap", "packets": len(p), "problems": [], "dropped_by_kernel": 0}
                for n, p in pcaps.items()]
        write_json(str(folder / "case.json"), {"name": self.name, "args": {"settings": settings}, "netem": [],
                                               "faults": [], "captures": caps, "workload": rec, "error": None,
                                               "seconds": end})


def registration(case):
    for i, w in enumerate(WORKERS):
        case.tcp(0.01 + 0.02 * i, w, "manager", {"message_type": "register", "worker_host": WORKERS[w],
                                                 "worker_port": case.wport})
        case.tcp(0.02 + 0.02 * i, "manager", w, {"message_type": "register_ack"})
    case.tcp(0.2, "submit", "manager", {"message_type": "new_manager_job", "input_directory": "/i",
                                        "output_directory": "/o", "mapper_executable": "/m",
                                        "reducer_executable": "/r", "num_mappers": 2, "num_reducers": 1})


def clean_case(**corrupt):
    case = FakeCase("clean", 7000)
    registration(case)
    case.task(0.30, "map", 0, "w1", 0.4)
    case.task(0.31, "map", 1, "w2", 0.45)
    case.task(0.80, "reduce", 0, "w1", 0.3)
    if corrupt.get("double"):
        case.task(0.85, "reduce", 0, "w2", None)     # w1 alive and still on it
    case.tcp(2.0, "shutdown", "manager", {"message_type": "shutdown"})
    for w in WORKERS:
        case.tcp(2.01, "manager", w, {"message_type": "shutdown"})
        case.heartbeats(w, 0.05, 2.0 if not (corrupt.get("gap") and w == "w2") else 1.0)
        if corrupt.get("gap") and w == "w2":
            case.heartbeats(w, 1.95, 2.0)
    return case


def killed_case(**corrupt):
    """w2 holds map 1 and is killed at +0.6 s: its heartbeats stop (last at
    +0.56), the manager declares it dead 2.6 s later, map 1 goes to w1."""
    case = FakeCase("worker_killed", 7100)
    registration(case)
    case.task(0.30, "map", 0, "w1", 0.4)
    case.task(0.31, "map", 1, "w2", None)
    last = 0.56
    dead = last + 2.6
    # early: the log says dead at 1 s, though the task moves only at 2.6 s
    case.decide(dead if not corrupt.get("early") else last + 1.0, "worker_dead", worker=[WORKERS["w2"], case.wport],
                reason="heartbeats", missed=5)
    case.task(dead + 0.01, "map", 1, "w1", 0.4)
    case.task(dead + 0.5, "reduce", 0, "w1", 0.3)
    end = dead + 1.0
    case.tcp(end, "shutdown", "manager", {"message_type": "shutdown"})
    case.tcp(end + 0.01, "manager", "w1", {"message_type": "shutdown"})
    case.heartbeats("w1", 0.05, end)
    case.heartbeats("w2", 0.06, last)
    fault = {"kind": "kill", "victim": "w2", "task": {"kind": "map", "task_id": 1}, "t": T0 + 0.6}
    return case, fault, end


def fabricate(root, **corrupt):
    input_dir = root / "input"
    make_inputs(input_dir, 2, 20_000, seed=3)
    params = MR.MapReduceParams(cases=("clean", "worker_killed"), workers=2, files=2, input_bytes=20_000,
                                nmappers=2, nreducers=1)
    write_json(str(root / "params.json"), {"experiment": "mapreduce", "params": params})
    write_json(str(root / "run.json"), {
        "cases": ["clean", "worker_killed"],
        "cluster": {"manager": M_IP, "client": CLIENT_IP, "workers": WORKERS, "lan": "srvlan"},
        "heartbeat_interval": T, "missed_heartbeats": K,
        "tcp_syn_linear_timeouts": {"manager": 4, "w1": 4, "w2": 4}, "bundled": {"worker": True}})
    clean_case(**corrupt).write(root, input_dir=input_dir)
    case, fault, end = killed_case(**corrupt)
    case.write(root, fault=fault, victim="w2", end=end, input_dir=input_dir)
    return root


def verify(root):
    ev = Evidence(str(root), MR.MapReduceParams)
    return MR.MapReduce.verify(ev), ev


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = fabricate(tmp_path_factory.mktemp("mr") / "good")
    claims, ev = verify(root)
    return root, claims, ev


def test_a_correct_fabricated_run_passes_every_claim(good):
    root, claims, ev = good
    assert [c.name for c in claims if not c.ok] == []
    names = [c.name for c in claims]
    assert len(names) == 9 + 11 + 2 and len(set(names)) == len(names)
    death = ev.metrics["cases"]["worker_killed"]["death"]
    assert death["after_s"] == pytest.approx(2.6, abs=1e-3) and death["reason"] == "heartbeats"
    assert ev.metrics["cases"]["worker_killed"]["rerun"]["reassigned_to"] == ["w1"]
    assert ev.metrics["cases"]["clean"]["delivery"]["matched"] == 14


def failed(root):
    claims, _ = verify(root)
    return [c.name for c in claims if not c.ok]


def copy_of(good, tmp_path):
    dst = tmp_path / "bad"
    shutil.copytree(good[0], dst)
    return dst


def test_a_wrong_count_in_the_output_fails_only_the_output_claim(good, tmp_path):
    bad = copy_of(good, tmp_path)
    part = bad / "clean" / "output" / "part-00000"
    lines = part.read_text().splitlines(keepends=True)
    word, n = lines[3].rstrip("\n").split("\t")
    lines[3] = f"{word}\t{int(n) + 1}\n"
    part.write_text("".join(lines))
    assert failed(bad) == ["clean: output == the reference word count (all part files, sorted by word; byte-identical)"]


def test_a_message_a_worker_never_logged_fails_only_the_delivery_claim(good, tmp_path):
    bad = copy_of(good, tmp_path)
    log = bad / "clean" / "events" / "w2.jsonl"
    events = [json.loads(x) for x in log.read_text().splitlines()]
    events = [e for e in events if not (e["event"] == "recv" and e["message"]["message_type"] == "new_map_task")]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert failed(bad) == ["clean: every TCP message delivered exactly once and intact: captures at the receivers "
                           "== the programs' send and recv logs"]


def test_a_death_declared_too_early_fails_only_the_dead_window_claim(tmp_path):
    assert failed(fabricate(tmp_path / "early", early=True)) == [
        "worker_killed: the lost worker was declared dead 2.50-3.20 s after its last heartbeat on the wire"]


def test_a_heartbeat_gap_fails_only_the_heartbeat_claim(tmp_path):
    assert failed(fabricate(tmp_path / "gap", gap=True)) == [
        "clean: every worker was acknowledged and its heartbeats reached the manager at most 1.00 s apart while "
        "it lived"]


def test_a_task_given_to_a_second_live_worker_fails_only_the_double_assignment_claim(tmp_path):
    assert failed(fabricate(tmp_path / "double", double=True)) == [
        "clean: no task was ever with two live workers at once"]


def test_a_worker_left_running_fails_only_the_exit_claim(good, tmp_path):
    bad = copy_of(good, tmp_path)
    path = bad / "clean" / "case.json"
    case = json.loads(path.read_text())
    case["workload"]["programs"]["w1"].update(returncode=-15, stopped_by="SIGTERM")
    path.write_text(json.dumps(case))
    assert failed(bad) == ["clean: every program exited 0 by itself after shutdown (the lost worker aside); none left"]


def test_a_message_off_the_table_fails_only_the_table_claim(good, tmp_path):
    bad = copy_of(good, tmp_path)
    case = clean_case()
    for m in case.msgs:
        if m["message"]["message_type"] == "register" and m["src"] == "w1":
            m["message"] = {**m["message"], "worker_port": str(m["message"]["worker_port"])}
    shutil.rmtree(bad / "clean")
    case.write(bad, input_dir=bad / "input")
    assert failed(bad) == ["clean: every message on the wire follows the P4 message table"]


# -- the wire analysis alone ------------------------------------------------------------------------
def test_alive_rule_and_refused_connections():
    beats = [0.0, 0.5, 1.0]
    assert wire.alive(beats, 3.4, 0.5, 5) and not wire.alive(beats, 3.5, 0.5, 5)
    assert not wire.alive(beats, 1.2, 0.5, 5, refused=[1.1]) and wire.alive(beats, 1.2, 0.5, 5, refused=[0.9])
    assert not wire.alive([], 1.0, 0.5, 5)


def test_dead_by_rule_counts_from_the_register():
    case = FakeCase("clean", 7000)
    registration(case)                           # w1 registers at +0.01
    case.heartbeats("w1", 2.7, 4.0)              # its ack held back: first heartbeat 2.69 s later
    case.heartbeats("w2", 0.1, 4.0)
    msgs = [{"t": m["t"], "t_end": m["t"], "transport": m["transport"], "src": m["s"], "dst": m["d"],
             "message": m["message"], "error": None} for m in case.msgs]
    story = wire.Story(msgs, WORKERS, M_IP)
    assert wire.dead_by_rule(story, "w1", T, K, T0 + 4.0) == pytest.approx(T0 + 0.01 + K * T)
    assert wire.dead_by_rule(story, "w2", T, K, T0 + 4.0) is None
    assert wire.dead_by_rule(story, "w2", T, K, T0 + 7.0) == pytest.approx(T0 + 3.6 + K * T)


def test_stall_reason_names_a_finished_the_manager_never_acted_on():
    case = FakeCase("clean", 7000)
    registration(case)
    case.task(0.3, "map", 0, "w1", 0.2)
    case.task(0.3, "map", 1, "w2", 0.3)
    msgs = [{"t": m["t"], "t_end": m["t"], "transport": m["transport"], "src": m["s"], "dst": m["d"],
             "message": m["message"], "error": None} for m in case.msgs]
    story = wire.Story(msgs, WORKERS, M_IP)
    why = wire.stall_reason(story, {"manager": {"returncode": None}}, T0, 2, 1)
    assert why.startswith("finished of task 1 from w2 arrived whole at +0.60 s; the manager sent no task after "
                          "+0.30 s (lost or ignored it)")
    assert "unfinished: reduce 0" in why
    crashed = wire.stall_reason(story, {"manager": {"returncode": 1, "ended_s": 0.4, "stopped_by": None,
                                                    "stderr_tail": "KeyError: 'x'\n"}}, T0, 2, 1)
    assert crashed.startswith("the manager exited 1 at +0.4 s") and "KeyError" in crashed
    assert wire.lost_tasks(story, 2, 1) == ["reduce 0"]


def test_a_fabricated_folder_keeps_its_claims_when_copied(good, tmp_path):
    bad = copy_of(good, tmp_path)
    again, _ = verify(bad)
    assert [(c.name, c.ok, c.measured) for c in again] == [(c.name, c.ok, c.measured) for c in good[1]]
