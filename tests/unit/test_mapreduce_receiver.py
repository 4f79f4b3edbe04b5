"""The MapReduce receiver on loopback: what it drops, and that it keeps serving meanwhile."""

import json
import socket
import struct
import threading
import time

import pytest

from wirelab.apps.mapreduce import wire
from wirelab.apps.mapreduce.events import EventLog, read_events
from wirelab.apps.mapreduce.receiver import Receiver
from wirelab.proc import wait_until

REGISTER = {"message_type": "register", "worker_host": "127.0.0.1", "worker_port": 6001}


class Served:
    """A Receiver on 127.0.0.1:<free port> in a thread, collecting what it delivers."""

    def __init__(self, tmp_path, role="manager", **kwargs):
        self.got = []
        self.log_path = str(tmp_path / f"{role}.jsonl")
        self.events = EventLog(self.log_path)
        self.rx = Receiver("127.0.0.1", 0, role, lambda m, t, p: self.got.append((m, t, p)), self.events,
                           **kwargs)
        self.host, self.port = self.rx.bind()
        self.thread = threading.Thread(target=self.rx.serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.rx.stop()
        self.thread.join(5)
        self.events.close()
        assert not self.thread.is_alive()

    def drops(self):
        return [e for e in read_events(self.log_path) if e["event"] == "dropped"]

    def send_raw(self, data, close=True):
        s = socket.create_connection((self.host, self.port), timeout=5)
        s.sendall(data)
        if close:
            s.shutdown(socket.SHUT_WR)
            s.close()
        return s


@pytest.fixture
def served(tmp_path):
    made = []

    def make(**kwargs):
        made.append(Served(tmp_path, **kwargs))
        return made[-1]
    yield make
    for s in made:
        s.stop()


def test_a_valid_message_is_delivered_and_logged_with_real_addresses(served):
    s = served()
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        c.sendall(wire.encode(REGISTER))
        mine = c.getsockname()
        c.shutdown(socket.SHUT_WR)
    wait_until(lambda: s.got, 5, what="the message")
    assert s.got == [(REGISTER, "tcp", mine)]
    (recv,) = [e for e in read_events(s.log_path) if e["event"] == "recv"]
    assert recv["src"] == list(mine) and recv["dst"] == [s.host, s.port] and recv["message"] == REGISTER


@pytest.mark.parametrize("data, reason", [
    (b"", "empty message"),
    (b"{\"message_type\": \"register\"", "not JSON"),
    (b"\xc3\x28", "not UTF-8"),
    (b"[1, 2]", "not a JSON object but list"),
    (b"\"register\"", "not a JSON object but str"),
    (b"{\"message_type\": \"gossip\"}", "unknown message_type 'gossip'"),
    (b"{\"message_type\": \"register\", \"worker_host\": \"h\"}", "register without worker_port"),
    (b"{\"message_type\": \"new_map_task\"}", "a manager never receives new_map_task"),
    (json.dumps({"message_type": "heartbeat", "worker_host": "h", "worker_port": 1}).encode(),
     "heartbeat belongs on udp, came on tcp"),
])
def test_bad_messages_are_dropped_with_a_reason(served, data, reason):
    s = served()
    s.send_raw(data)
    wait_until(s.drops, 5, what="the drop")
    (drop,) = s.drops()
    assert reason in drop["reason"] and drop["first_bytes"] == repr(data[:64]) and s.got == []


def test_a_trickling_client_does_not_delay_a_valid_one_and_is_cut_at_its_deadline(served):
    s = served(deadline_s=1.0)
    silent = socket.create_connection((s.host, s.port), timeout=5)
    trickle = s.send_raw(b"{\"message_type\"", close=False)
    start = time.monotonic()
    wire.send_tcp(s.host, s.port, REGISTER)
    wait_until(lambda: s.got, 0.8, what="the valid message while two others hang")
    assert time.monotonic() - start < 0.8
    wait_until(lambda: len(s.drops()) == 2, 5, what="both hanging connections dropped")
    reasons = sorted(d["reason"] for d in s.drops())
    assert reasons == ["15 bytes without the end within 1 s", "nothing within 1 s"]
    # The receiver closed them: the peers read EOF (or a reset).
    for c in (silent, trickle):
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass
        c.close()


def test_an_oversize_message_is_cut_unread_and_the_server_goes_on(served):
    s = served(max_bytes=4096)
    c = socket.create_connection((s.host, s.port), timeout=5)
    with pytest.raises(OSError):    # the receiver stops reading and closes: the writer sees a reset
        c.sendall(b"x" * (8 << 20))
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
        c.sendall(b"x" * (8 << 20))
    c.close()
    wait_until(s.drops, 5, what="the drop")
    assert s.drops()[0]["reason"] == "message longer than 4096 bytes"
    wire.send_tcp(s.host, s.port, REGISTER)
    wait_until(lambda: s.got, 5, what="the next valid message")


def test_too_many_open_connections_drop_the_oldest(served):
    s = served(max_connections=3)
    idle = [socket.create_connection((s.host, s.port), timeout=5) for _ in range(5)]
    wait_until(lambda: len(s.drops()) == 2, 5, what="two oldest dropped")
    assert all("more than 3 connections open" in d["reason"] for d in s.drops())
    assert len(s.rx._conns) == 3
    for c in idle:
        c.close()
    wire.send_tcp(s.host, s.port, REGISTER)
    wait_until(lambda: s.got, 5, what="a valid message after")


def test_a_reset_connection_is_dropped(served):
    s = served()
    c = socket.create_connection((s.host, s.port), timeout=5)
    c.sendall(b"{\"message_type\": ")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()   # RST
    wait_until(s.drops, 5, what="the drop")
    assert "before the end of the message" in s.drops()[0]["reason"] or "not JSON" in s.drops()[0]["reason"]


def test_udp_heartbeats_pass_and_garbage_datagrams_are_dropped(served):
    s = served(udp=True)
    hb = {"message_type": "heartbeat", "worker_host": "127.0.0.1", "worker_port": 6001}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        u.sendto(b"\x00garbage", (s.host, s.port))
        u.sendto(wire.encode(REGISTER), (s.host, s.port))   # register belongs on TCP
        u.sendto(wire.encode(hb), (s.host, s.port))
        mine = u.getsockname()
    wait_until(lambda: s.got and len(s.drops()) == 2, 5, what="the heartbeat and two drops")
    assert s.got == [(hb, "udp", mine)]
    assert [d["transport"] for d in s.drops()] == ["udp", "udp"]
    assert "register belongs on tcp, came on udp" in s.drops()[1]["reason"]


def test_worker_role_accepts_tasks_not_registers(served):
    s = served(role="worker")
    task = {"message_type": "new_reduce_task", "task_id": 0, "executable": "/r", "input_paths": [],
            "output_directory": "/o", "worker_host": "127.0.0.1", "worker_port": 1}
    wire.send_tcp(s.host, s.port, REGISTER)
    wire.send_tcp(s.host, s.port, task)
    wait_until(lambda: s.got and s.drops(), 5, what="one delivered, one dropped")
    assert [m for m, _, _ in s.got] == [task]
    assert s.drops()[0]["reason"] == "a worker never receives register"


def test_a_handler_that_raises_does_not_stop_the_server(tmp_path):
    calls = []

    def handler(m, t, p):
        calls.append(m)
        if len(calls) == 1:
            raise RuntimeError("bug")
    events = EventLog(None)
    rx = Receiver("127.0.0.1", 0, "manager", handler, events)
    host, port = rx.bind()
    t = threading.Thread(target=rx.serve, daemon=True)
    t.start()
    try:
        wire.send_tcp(host, port, REGISTER)
        wire.send_tcp(host, port, REGISTER)
        wait_until(lambda: len(calls) == 2, 5, what="both messages handled")
    finally:
        rx.stop()
        t.join(5)


def test_binding_a_used_port_is_an_oserror(served):
    s = served()
    other = Receiver(s.host, s.port, "manager", lambda *a: None, EventLog(None))
    with pytest.raises(OSError):
        other.bind()
