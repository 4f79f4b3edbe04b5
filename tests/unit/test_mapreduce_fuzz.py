"""Property-based fuzzing of the MapReduce manager and worker receivers, on loopback.

Hypothesis draws a sequence of connections: valid messages, and garbage sent
whole, trickled (held open while later ones come), reset, oversize or not at
all, plus UDP datagrams for the manager. Every valid message must be processed
exactly once (the manager acks each register and logs each heartbeat; the
worker runs each map task and reports it finished), each piece of garbage
dropped exactly once, and the receiver must end with no connection held.
Manager and worker run in this process (threads), on their real receivers.
"""

import itertools
import json
import os
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from wirelab.apps.mapreduce import wire
from wirelab.apps.mapreduce.events import EventLog, read_events
from wirelab.apps.mapreduce.manager import Manager
from wirelab.apps.mapreduce.protocol import check_message
from wirelab.apps.mapreduce.receiver import Receiver
from wirelab.apps.mapreduce.submit import WORDCOUNT_MAP
from wirelab.apps.mapreduce.worker import Worker
from wirelab.proc import wait_until

MAX_BYTES = 4096          # small, so that oversize examples stay cheap
# Seeded (derandomize) and without an example database, so every run tries the same
# cases and leaves no .hypothesis folder; no shrinking: a failing example costs a
# WAIT_S deadline, and the one found is printed as it is.
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WAIT_S = 10
SEQ = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10)
message_like = st.fixed_dictionaries(
    {"message_type": st.sampled_from(["register", "finished", "heartbeat", "new_map_task", "new_manager_job",
                                      "register_ack", "nope", ""])},
    optional={"worker_host": st.one_of(st.text(max_size=5), st.integers()),
              "worker_port": st.one_of(st.integers(), st.text(max_size=3)),
              "task_id": st.integers(-3, 3)})
garbage_bytes = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    message_like.map(lambda v: json.dumps(v).encode()),
)
TCP_MODES = ["whole", "trickle", "reset", "oversize", "silent"]
action = st.one_of(
    st.just(("valid",)),
    st.tuples(st.just("garbage"), garbage_bytes, st.sampled_from(TCP_MODES), st.integers(0, 300)),
)
manager_action = st.one_of(action, st.just(("udp_valid",)), st.tuples(st.just("udp_garbage"), garbage_bytes))


def is_valid(data):
    obj, reason = wire.decode(data)
    return reason is None and not check_message(obj)[0]


def connect(address):
    return socket.create_connection(address, timeout=5)


def play_tcp_garbage(address, data, mode, cut, held):
    """Send ``data`` the ``mode`` way; returns whether it was sent (valid bytes are not)."""
    if mode == "trickle":
        data = data[:cut]
    if mode == "oversize":
        data = (data or b"x") * (MAX_BYTES // max(1, len(data)) + 2)
    elif mode == "silent":
        data = b""
    if mode != "oversize" and is_valid(data):
        return False                 # garbage that happens to be a real message is not garbage
    s = connect(address)
    try:
        if mode == "oversize":
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:          # the receiver stopped reading and reset us: as it should
                pass
            s.close()
        elif mode in ("trickle", "silent"):
            if data:
                s.sendall(data)
            held.append(s)           # stays open while later connections come and go
        elif mode == "reset":
            s.sendall(data)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        else:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.close()
    except BaseException:
        s.close()
        raise
    return True


def finish_held(held):
    for s in held:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        s.close()


def count(path, event, pred=lambda e: True):
    return sum(1 for e in read_events(path) if e["event"] == event and pred(e))


# ----------------------------------------------------------------- manager ----
class ManagerUnderTest:
    def __init__(self, folder):
        self.log = os.path.join(folder, "manager.jsonl")
        self.events = EventLog(self.log)
        self.acks = []
        # The "worker" every register names: a receiver that counts the acks it gets.
        self.sink_events = EventLog(None)
        self.sink = Receiver("127.0.0.1", 0, "worker", lambda m, t, p: self.acks.append(m), self.sink_events)
        self.sink_address = self.sink.bind()
        self.sink_thread = threading.Thread(target=self.sink.serve, daemon=True)
        self.sink_thread.start()
        self.manager = Manager("127.0.0.1", 0, os.path.join(folder, "shared"), self.events,
                               deadline_s=WAIT_S, max_bytes=MAX_BYTES, heartbeat_interval=60)
        self.thread = threading.Thread(target=self.manager.run, kwargs={"ready_line": False}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.manager.receiver.tcp is not None and self.manager.receiver.udp is not None,
                   WAIT_S, what="the manager to listen")
        self.address = self.manager.receiver.address

    def stop(self):
        wire.send_tcp(*self.address, {"message_type": "shutdown"})
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        self.sink.stop()
        self.sink_thread.join(WAIT_S)
        self.events.close()


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    m = ManagerUnderTest(str(tmp_path_factory.mktemp("mr-manager")))
    yield m
    m.stop()
    # The shutdown went to the one live worker: the sink.
    assert any(a["message_type"] == "shutdown" for a in m.acks)


@SETTINGS
@given(actions=st.lists(manager_action, min_size=1, max_size=10).map(lambda a: a + [("valid",)]))
def test_manager_processes_every_valid_message_once_and_drops_the_rest(manager, actions):
    host, port = manager.sink_address
    drops_before = count(manager.log, "dropped")
    acks_before = len(manager.acks)
    seqs, beats, garbage, held = [], [], 0, []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for act in actions:
                if act[0] == "valid":
                    seqs.append(next(SEQ))
                    wire.send_tcp(*manager.address, {"message_type": "register", "worker_host": host,
                                                     "worker_port": port, "seq": seqs[-1]})
                elif act[0] == "udp_valid":
                    beats.append(next(SEQ))
                    udp.sendto(wire.encode({"message_type": "heartbeat", "worker_host": host,
                                            "worker_port": port, "seq": beats[-1]}), manager.address)
                elif act[0] == "udp_garbage":
                    if not is_valid(act[1]):
                        udp.sendto(act[1], manager.address)
                        garbage += 1
                else:
                    garbage += play_tcp_garbage(manager.address, *act[1:], held)
            rx = manager.manager.receiver
            assert len(rx._conns) <= rx.max_connections
            assert all(len(c.buf) <= MAX_BYTES for c in list(rx._conns.values()))
    finally:
        finish_held(held)

    def settled():
        return (len(manager.acks) - acks_before == len(seqs)
                and count(manager.log, "dropped") - drops_before == garbage
                and not manager.manager.receiver._conns)
    wait_until(settled, WAIT_S, what=f"{len(seqs)} acks and {garbage} drops")
    got = [e["message"].get("seq") for e in read_events(manager.log) if e["event"] == "recv"]
    for seq in seqs + beats:
        assert got.count(seq) == 1, seq   # (a lost heartbeat would show here: none on loopback)


# ------------------------------------------------------------------ worker ----
class WorkerUnderTest:
    def __init__(self, folder):
        self.folder = folder
        self.log = os.path.join(folder, "worker.jsonl")
        self.events = EventLog(self.log)
        self.to_manager = []       # what the fake manager received from the worker
        self.fake_events = EventLog(None)
        self.fake = Receiver("127.0.0.1", 0, "manager", lambda m, t, p: self.to_manager.append(m),
                             self.fake_events, udp=True)
        mhost, mport = self.fake.bind()
        self.fake_thread = threading.Thread(target=self.fake.serve, daemon=True)
        self.fake_thread.start()
        self.worker = Worker("127.0.0.1", 0, mhost, mport, self.events, deadline_s=WAIT_S,
                             max_bytes=MAX_BYTES, heartbeat_interval=60)
        self.thread = threading.Thread(target=self.worker.run, kwargs={"ready_line": False}, daemon=True)
        self.thread.start()
        wait_until(lambda: any(m["message_type"] == "register" for m in self.to_manager), WAIT_S,
                   what="the worker to register")
        self.address = self.worker.address
        self.out = os.path.join(folder, "out")
        os.makedirs(self.out)

    def finished(self):
        return [m["task_id"] for m in list(self.to_manager) if m["message_type"] == "finished"]

    def stop(self):
        wire.send_tcp(*self.address, {"message_type": "shutdown"})
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        self.fake.stop()
        self.fake_thread.join(WAIT_S)
        self.events.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = WorkerUnderTest(str(tmp_path_factory.mktemp("mr-worker")))
    yield w
    w.stop()


@SETTINGS
@given(actions=st.lists(action, min_size=1, max_size=10).map(lambda a: a + [("valid",)]))
def test_worker_runs_every_valid_task_once_and_drops_the_rest(worker, actions):
    drops_before = count(worker.log, "dropped")
    ids, garbage, held = [], 0, []
    try:
        for act in actions:
            if act[0] == "valid":
                ids.append(next(SEQ))
                wire.send_tcp(*worker.address, {
                    "message_type": "new_map_task", "task_id": ids[-1], "executable": WORDCOUNT_MAP,
                    "input_paths": [], "output_directory": worker.out, "num_partitions": 1,
                    "worker_host": worker.address[0], "worker_port": worker.address[1]})
            else:
                garbage += play_tcp_garbage(worker.address, *act[1:], held)
    finally:
        finish_held(held)

    def settled():
        done = worker.finished()
        return (all(i in done for i in ids)
                and count(worker.log, "dropped") - drops_before == garbage
                and not worker.worker.receiver._conns)
    wait_until(settled, WAIT_S, what=f"{len(ids)} tasks finished and {garbage} drops")
    done = worker.finished()
    for i in ids:
        assert done.count(i) == 1
        assert os.path.exists(os.path.join(worker.out, f"maptask{i:05d}-part00000"))
