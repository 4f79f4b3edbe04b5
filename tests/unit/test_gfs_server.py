"""The main server: its receiving logic on a fake clock (detector decisions and
their log lines), and the real program on loopback: fuzzed datagrams, TCP
lines, SIGTERM, and the chunkserver's timeline."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelab.apps.gfs import protocol
from wirelab.apps.gfs.main_server import MAX_CHUNKSERVERS, MainServer
from wirelab.proc import LineReader, wait_until

SRC, DST = ("10.1.0.11", 4000), ("10.1.0.2", 7000)


class ListLog:
    def __init__(self):
        self.events = []

    def write(self, t, event, **fields):
        self.events.append({"t": t, "event": event, **fields})

    def message(self, t, event, transport, src, dst, message):
        self.write(t, event, transport=transport, src=list(src), dst=list(dst), message=message)

    def states(self):
        return [(e["t"], e["detector"], e["state"]) for e in self.events if e["event"] == "state"]


def beat(server, seq, t, name="w1"):
    return server.receive(protocol.encode(protocol.heartbeat(name, seq, t)), "udp", SRC, DST, t)


def test_fixed_k_dead_at_the_tick_after_k_missed_and_alive_at_the_next_arrival():
    log = ListLog()
    s = MainServer(log, interval=1.0, k=3, min_std=1.0)   # grace T/2: 3.5 s; phi only after ~6.6 s
    for seq in range(5):
        assert beat(s, seq, float(seq)) == "fresh"
    s.check(7.49)
    assert log.states() == []
    s.check(7.5)
    assert log.states() == [(7.5, "fixed_k", "dead")]
    (dead,) = [e for e in log.events if e["event"] == "state"]
    assert dead["silence"] == 3.5 and dead["last_seq"] == 4 and dead["last_arrival"] == 4.0 and dead["cause"] == "tick"
    beat(s, 8, 8.0)
    assert log.states()[-1] == (8.0, "fixed_k", "alive")
    assert s.summary()["chunkservers"]["w1"]["deaths"] == {"fixed_k": 1, "phi": 0}


def test_a_deadline_between_ticks_is_seen_at_the_next_arrival():
    log = ListLog()
    s = MainServer(log, interval=1.0, k=3, min_std=1.0)
    beat(s, 0, 0.0)
    beat(s, 9, 9.0)      # no tick ran: dead first (at the arrival), then alive again
    assert [x[1:] for x in log.states()] == [("fixed_k", "dead"), ("phi", "dead"), ("fixed_k", "alive"),
                                            ("phi", "alive")]
    assert {x[0] for x in log.states()} == {9.0}
    # causal order in the log: the verdicts on the silence, the heartbeat that ends it, the new verdicts
    assert [(e["event"], e.get("state")) for e in log.events[1:]] == [
        ("state", "dead"), ("state", "dead"), ("recv", None), ("state", "alive"), ("state", "alive")]
    dead = log.events[1]
    assert dead["prev_eval"] == 0.0 and dead["last_seq"] == 0 and dead["cause"] == "arrival"


def test_duplicates_and_overtaken_heartbeats_do_not_feed_the_detectors():
    log = ListLog()
    s = MainServer(log, interval=1.0, k=3, min_std=1.0)
    assert beat(s, 5, 0.0) == "fresh"
    assert beat(s, 3, 2.0) == "late"
    assert beat(s, 5, 3.0) == "duplicate"
    s.check(3.49)
    assert log.states() == []
    s.check(3.5)    # 3.5 s after seq 5, the last fresh one
    assert log.states() == [(3.5, "fixed_k", "dead")]
    assert s.summary()["chunkservers"]["w1"] | {} == {
        "arrivals": 3, "fresh": 1, "late": 1, "duplicate": 1, "highest_seq": 5,
        "deaths": {"fixed_k": 1, "phi": 0}, "alive_at_end": {"fixed_k": False, "phi": True}, "transports": ["udp"]}


def test_decisions_never_go_back_in_time():
    log = ListLog()
    s = MainServer(log, interval=1.0, k=3, min_std=1.0)
    beat(s, 0, 0.0)
    s.check(3.6)
    beat(s, 1, 3.55)     # stamped by the kernel before the tick, read after it
    assert log.states() == [(3.6, "fixed_k", "dead"), (3.6, "fixed_k", "alive")]


def test_phi_decision_logs_its_statistics():
    log = ListLog()
    s = MainServer(log, interval=0.1, k=100)
    for seq in range(20):
        beat(s, seq, seq * 0.1)
    s.check(1.9 + 0.6)
    assert log.states() == []
    s.check(1.9 + 0.67)
    (e,) = [e for e in log.events if e["event"] == "state"]
    assert e["detector"] == "phi" and e["state"] == "dead" and e["phi"] >= 8.0
    assert e["phi_mean"] == pytest.approx(0.1) and e["phi_std"] == 0.1 and e["phi_samples"] == 21


def test_malformed_input_is_dropped_with_its_reason_and_the_table_is_bounded():
    log = ListLog()
    s = MainServer(log, interval=1.0)
    assert s.receive(b"{oops", "udp", SRC, DST, 100.0) is None
    (d,) = log.events
    assert d["event"] == "dropped" and d["t"] == 100.0 and d["reason"].startswith("malformed JSON") and d["bytes"] == 5
    for i in range(MAX_CHUNKSERVERS):
        beat(s, 0, 1.0, name=f"c{i}")
    assert beat(s, 0, 1.0, name="one-too-many") is None
    assert log.events[-1]["reason"].startswith("too many chunkservers")
    assert s.dropped == {"malformed JSON": 1, "too many chunkservers": 1}


# -- the real programs, on loopback -----------------------------------------------------
class Served:
    def __init__(self, tmp_path, interval="0.05"):
        self.log = tmp_path / "server.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wirelab.apps.gfs.main_server", "--bind", "127.0.0.1", "--port", "0",
             "--interval", interval, "--log", str(self.log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out = LineReader(self.proc.stdout)
        wait_until(lambda: self.out.has("LISTENING") or self.proc.poll() is not None, 10, what="LISTENING")
        assert self.proc.poll() is None, self.proc.stderr.read()
        self.port = int([x for x in self.out.lines if x.startswith("LISTENING")][0].split()[2])
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.expected = 0     # datagrams sent: each becomes one recv or dropped line

    def send(self, data):
        self.udp.sendto(data, ("127.0.0.1", self.port))
        self.expected += 1

    def events(self):
        return protocol.read_log(str(self.log)) if self.log.exists() else []

    def settled(self):
        """Every datagram sent so far has its line in the log."""
        def lines():
            return len([e for e in self.events() if e["event"] in ("recv", "dropped")])
        wait_until(lambda: lines() >= self.expected, 10, what="the log to catch up")
        return self.events()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self.out.join(5)
        self.udp.close()
        self.proc.stderr.close()
        return code, json.loads(self.out.lines[-1])


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELD = st.sampled_from(protocol.FIELDS)
MUTANT = st.builds(lambda field, value, drop: (field, value, drop), FIELD, JSON, st.booleans())
JUNK = st.one_of(
    st.binary(max_size=120),
    JSON.map(lambda v: json.dumps(v).encode()),
    MUTANT.map(lambda m: m),                               # applied to a heartbeat below
    st.integers(protocol.MAX_MESSAGE_BYTES + 1, 9000).map(lambda n: b"{" + b" " * (n - 1)),
)
COUNTER = {"example": 0, "junk": 0}


def _junk_bytes(item, name):
    if isinstance(item, tuple):
        field, value, drop = item
        msg = protocol.heartbeat(name + "-mutant", 0, 1.0)
        if drop:
            del msg[field]
        else:
            msg[field] = value
        return json.dumps(msg).encode()
    return item


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.just("heartbeat"), JUNK), max_size=8))
def test_fuzz_every_valid_heartbeat_is_received_once_and_junk_is_dropped(served, items):
    if COUNTER["example"] == 0 or served.proc.pid != COUNTER.get("pid"):   # a new server: a new count
        COUNTER.update(pid=served.proc.pid, junk=0)
    COUNTER["example"] += 1
    name = f"fz{COUNTER['example']}"
    seq, want_valid, want_junk = 0, [], 0
    for item in items:
        if item == "heartbeat":
            served.send(protocol.encode(protocol.heartbeat(name, seq, 1.0)))
            want_valid.append(seq)
            seq += 1
        else:
            data = _junk_bytes(item, name)
            served.send(data)
            if protocol.parse(data)[0] is None:
                want_junk += 1
    COUNTER["junk"] += want_junk
    events = served.settled()
    got = [e["message"]["seq"] for e in events if e["event"] == "recv" and e["message"]["chunkserver"] == name]
    assert got == want_valid                       # none lost, none twice, in order (loopback)
    assert len([e for e in events if e["event"] == "dropped"]) == COUNTER["junk"]   # every bad one, once
    assert served.proc.poll() is None              # still serving


def test_oversize_and_binary_datagrams_then_sigterm_summary(served):
    served.send(b"x" * 65507)
    served.send(b"\x00\xff" * 10)
    served.send(protocol.encode(protocol.heartbeat("w1", 0, 1.0)))
    events = served.settled()
    drops = [e for e in events if e["event"] == "dropped"]
    assert [d["bytes"] for d in drops] == [65507, 20]
    assert drops[0]["reason"] == f"oversize: 65507 bytes > {protocol.MAX_MESSAGE_BYTES}"
    recv = [e for e in events if e["event"] == "recv"]
    assert recv[0]["dst"] == ["127.0.0.1", served.port] and recv[0]["transport"] == "udp"
    code, summary = served.stop()
    assert code == 0 and summary["ended"] == "signal SIGTERM"
    assert summary["dropped"] == {"oversize": 1, "not UTF-8": 1}
    assert summary["chunkservers"]["w1"]["fresh"] == 1


def test_tcp_lines_junk_oversize_and_a_last_line_without_newline(served):
    beats = [protocol.encode(protocol.heartbeat("t1", i, 1.0)) for i in range(3)]
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as c:
        c.sendall(beats[0] + b"\n" + b"{junk\n" + b"y" * 3000 + b"\n" + beats[1] + b"\n" + beats[2])
        c.shutdown(socket.SHUT_WR)
        assert c.recv(10) == b""        # the server read everything and closed
    events = protocol.read_log(str(served.log))
    assert [e["message"]["seq"] for e in events if e["event"] == "recv"] == [0, 1, 2]
    assert [e["transport"] for e in events if e["event"] in ("recv", "dropped")] == ["tcp"] * 5
    assert [e["reason"].split(":")[0] for e in events if e["event"] == "dropped"] == ["malformed JSON", "oversize"]
    assert served.stop()[0] == 0


def test_chunkserver_keeps_its_timeline_and_logs_every_send(served, tmp_path):
    log = tmp_path / "w1.jsonl"
    done = subprocess.run([sys.executable, "-m", "wirelab.apps.gfs.chunkserver", "--name", "w1", "--to", "127.0.0.1",
                           "--port", str(served.port), "--interval", "0.02", "--count", "25", "--log", str(log)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["sent"] == 25 and summary["ended"] == "count" and summary["send_errors"] == {}
    sends = protocol.read_log(str(log))
    assert [e["message"]["seq"] for e in sends] == list(range(25))
    # on the timeline: heartbeat n leaves at start + n * T, never earlier
    for e in sends:
        assert e["t"] - summary["start"] >= e["message"]["seq"] * 0.02 - 1e-3
    served.expected = 25
    events = served.settled()
    assert [e["message"]["seq"] for e in events if e["event"] == "recv"] == list(range(25))


def test_chunkserver_stops_on_sigterm_and_counts_refused_sends(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed below: nobody listens there
    proc = subprocess.Popen([sys.executable, "-m", "wirelab.apps.gfs.chunkserver", "--name", "w1", "--to",
                             "127.0.0.1", "--port", str(port), "--interval", "0.01", "--log",
                             str(tmp_path / "w.jsonl")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (tmp_path / "w.jsonl").exists() and len(protocol.read_log(str(tmp_path / "w.jsonl"))) >= 5,
               10, what="five heartbeats")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["ended"] == "signal SIGTERM"
    # loopback answers port-unreachable: the connected socket reports it on the next send
    assert summary["send_errors"].get("ECONNREFUSED", 0) >= 1
    assert summary["sent"] + sum(summary["send_errors"].values()) == summary["seqs"]


@pytest.mark.parametrize("module", ["main_server", "chunkserver"])
def test_help_and_bad_arguments(module):
    done = subprocess.run([sys.executable, "-m", f"wirelab.apps.gfs.{module}", "--help"], capture_output=True,
                          text=True, timeout=30, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0 and "usage:" in done.stdout
    done = subprocess.run([sys.executable, "-m", f"wirelab.apps.gfs.{module}", "--interval", "-1"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr
