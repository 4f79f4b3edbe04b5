"""A MapReduce worker (EECS 485 Project 4 protocol).

    mapreduce-worker --host 10.0.0.2 --port 6001 --manager-host 10.0.0.1 --manager-port 6000 \\
        [--heartbeat-interval 2 --event-log worker.jsonl --loglevel info]

Listens on TCP --host:--port (prints ``LISTENING host port``), registers
with the manager (retrying while the manager is not up yet, until
--register-timeout), and once acknowledged sends a UDP heartbeat every
--heartbeat-interval seconds to the manager's port. Tasks run one at a time
(see :mod:`wirelab.apps.mapreduce.tasks`), each followed by ``finished``.
``shutdown`` ends it with exit 0.
"""

import argparse
import logging
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time

from wirelab.apps.mapreduce import common
from wirelab.apps.mapreduce.events import EventLog
from wirelab.apps.mapreduce.protocol import WORKER
from wirelab.apps.mapreduce.receiver import DEADLINE_S, Receiver
from wirelab.apps.mapreduce.scheduler import HEARTBEAT_INTERVAL_S
from wirelab.apps.mapreduce.tasks import TaskError, run_map, run_reduce
from wirelab.apps.mapreduce.wire import CONNECT_TIMEOUT_S, MAX_MESSAGE_BYTES, send_tcp, send_udp
from wirelab.errors import WaitTimeout
from wirelab.proc import wait_until

PROG = "mapreduce-worker"
REGISTER_TIMEOUT_S = 30.0
# A finished that cannot reach the manager (partitioned) is retried this long:
# if the manager comes back it hears about the work, late, rather than never.
FINISHED_RETRY_S = 30.0
# A mapper or reducer running longer is killed and its task fails (logged; P4
# has no message for it): a hung executable must not hold the task thread forever.
TASK_TIMEOUT_S = 3600.0
log = logging.getLogger("mapreduce.worker")


class Worker:
    def __init__(self, host, port, manager_host, manager_port, events, *,
                 heartbeat_interval=HEARTBEAT_INTERVAL_S, deadline_s=DEADLINE_S,
                 max_bytes=MAX_MESSAGE_BYTES, send_timeout=CONNECT_TIMEOUT_S,
                 register_timeout=REGISTER_TIMEOUT_S, finished_retry=FINISHED_RETRY_S,
                 task_timeout=TASK_TIMEOUT_S):
        self.task_timeout = task_timeout
        self.manager = (manager_host, manager_port)
        self.events = events
        self.heartbeat_interval, self.send_timeout = heartbeat_interval, send_timeout
        self.register_timeout, self.finished_retry = register_timeout, finished_retry
        self.inbox = queue.Queue()
        self.tasks = queue.Queue()
        self.stopping = threading.Event()
        self.receiver = Receiver(host, port, WORKER, lambda m, t, p: self.inbox.put(m), events,
                                 deadline_s=deadline_s, max_bytes=max_bytes)
        self.address = None
        self._heartbeats = None
        self.local_dir = None

    def run(self, ready_line=True):
        try:
            self.address = tuple(self.receiver.bind())
        except OSError as exc:
            raise common.MapReduceError(f"cannot listen on {self.receiver.host}:{self.receiver.port}: "
                                        f"{exc.strerror or exc}") from None
        # The tasks' scratch folders live in one folder of this process, removed at
        # exit (shutdown, SIGTERM, an error) even if a task is cut short.
        self.local_dir = tempfile.mkdtemp(prefix=f"mapreduce-worker-{self.address[1]}-")
        server = threading.Thread(target=self.receiver.serve, name="receiver", daemon=True)
        server.start()
        threading.Thread(target=self._execute, name="tasks", daemon=True).start()
        if ready_line:
            print(f"LISTENING {self.address[0]} {self.address[1]}", flush=True)
        try:
            self._register()
            while True:
                msg = self.inbox.get()
                kind = msg["message_type"]
                if kind == "shutdown":
                    log.info("shutdown")
                    return 0
                if kind == "register_ack":
                    self._start_heartbeats()
                else:
                    self.tasks.put(msg)
        finally:
            self.stopping.set()
            self.receiver.stop()
            server.join(timeout=2)
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def _identity(self):
        return {"worker_host": self.address[0], "worker_port": self.address[1]}

    def _register(self):
        message = {"message_type": "register", **self._identity()}
        last = []

        def attempt():
            try:
                send_tcp(*self.manager, message, self.events, timeout=self.send_timeout)
                return True
            except OSError as exc:
                last[:] = [exc]
                return False
        try:
            wait_until(attempt, self.register_timeout, what="the manager to accept register", interval=0.1)
        except WaitTimeout:
            raise common.MapReduceError(
                f"cannot register with the manager at {self.manager[0]}:{self.manager[1]} within "
                f"{self.register_timeout:g} s: {last[0] if last else 'no answer'}") from None

    def _start_heartbeats(self):
        if self._heartbeats is None:   # a second ack (we registered twice) changes nothing
            self._heartbeats = threading.Thread(target=self._heartbeat_loop, name="heartbeats", daemon=True)
            self._heartbeats.start()

    def _heartbeat_loop(self):
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        message = {"message_type": "heartbeat", **self._identity()}
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((self.address[0], 0))
            while not self.stopping.is_set():
                try:
                    send_udp(sock, *self.manager, message, self.events)
                except OSError as exc:   # no route for a while: keep beating
                    log.debug("heartbeat not sent: %s", exc)
                # A timer, not a synchronisation: wakes at once when stopping.
                self.stopping.wait(self.heartbeat_interval)

    def _execute(self):
        while not self.stopping.is_set():
            msg = self.tasks.get()
            kind = "map" if msg["message_type"] == "new_map_task" else "reduce"
            task_id = msg["task_id"]
            started = time.monotonic()
            self.events.emit("task_started", kind=kind, task_id=task_id, inputs=len(msg["input_paths"]))
            try:
                if kind == "map":
                    run_map(task_id, msg["executable"], msg["input_paths"], msg["output_directory"],
                            msg["num_partitions"], timeout=self.task_timeout, local_dir=self.local_dir)
                else:
                    run_reduce(task_id, msg["executable"], msg["input_paths"], msg["output_directory"],
                               timeout=self.task_timeout, local_dir=self.local_dir)
            except (TaskError, OSError) as exc:
                # P4 has no message for a failed task: the manager's job waits; say why here.
                log.error("%s task %s failed: %s", kind, task_id, exc)
                self.events.emit("task_failed", kind=kind, task_id=task_id, error=str(exc)[:300])
                continue
            self.events.emit("task_done", kind=kind, task_id=task_id,
                             seconds=round(time.monotonic() - started, 3))
            self._send_finished(task_id)

    def _send_finished(self, task_id):
        message = {"message_type": "finished", "task_id": task_id, **self._identity()}

        def attempt():
            if self.stopping.is_set():
                return True
            try:
                send_tcp(*self.manager, message, self.events, timeout=self.send_timeout)
                return True
            except OSError as exc:
                log.warning("finished %s not delivered yet: %s", task_id, exc)
                return False
        try:
            wait_until(attempt, self.finished_retry, what=f"the manager to accept finished {task_id}",
                       interval=0.2)
        except WaitTimeout as exc:
            log.error("%s", exc)


def parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="localhost", help="address to listen on (TCP)")
    p.add_argument("--port", type=common.port_number, default=6001)
    p.add_argument("--manager-host", default="localhost")
    p.add_argument("--manager-port", type=common.port_number, default=6000)
    p.add_argument("--heartbeat-interval", type=common.positive_float, default=HEARTBEAT_INTERVAL_S,
                   metavar="S", help=f"seconds between heartbeats (default {HEARTBEAT_INTERVAL_S:g})")
    p.add_argument("--send-timeout", type=common.positive_float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"timeout of one message to the manager (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--register-timeout", type=common.positive_float, default=REGISTER_TIMEOUT_S, metavar="S",
                   help=f"give up (exit 2) if the manager does not accept register within S s "
                        f"(default {REGISTER_TIMEOUT_S:g})")
    p.add_argument("--finished-retry", type=common.positive_float, default=FINISHED_RETRY_S, metavar="S",
                   help=f"keep retrying an undelivered finished for S s (default {FINISHED_RETRY_S:g})")
    p.add_argument("--task-timeout", type=common.positive_float, default=TASK_TIMEOUT_S, metavar="S",
                   help=f"kill a mapper or reducer running longer than S s; the task fails (default {TASK_TIMEOUT_S:g})")
    common.add_receiver_options(p, DEADLINE_S, MAX_MESSAGE_BYTES)
    return p


def main(argv=None):
    args = parser().parse_args(argv)

    def body():
        common.setup_logging(args.loglevel, "mapreduce.worker")
        events = EventLog(args.event_log)
        try:
            worker = Worker(args.host, args.port, args.manager_host, args.manager_port, events,
                            heartbeat_interval=args.heartbeat_interval, deadline_s=args.receive_deadline,
                            max_bytes=args.max_message_bytes, send_timeout=args.send_timeout,
                            register_timeout=args.register_timeout, finished_retry=args.finished_retry,
                            task_timeout=args.task_timeout)
            return worker.run()
        finally:
            events.close()
    return common.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
