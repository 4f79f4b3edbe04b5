"""The MapReduce manager (EECS 485 Project 4 protocol).

    mapreduce-manager --host 10.0.0.1 --port 6000 --shared_dir /tmp/mr --loglevel info \\
        [--heartbeat-interval 2 --missed-heartbeats 5 --event-log manager.jsonl]

Listens on TCP and UDP (heartbeats) at --host:--port and prints
``LISTENING host port`` once both are bound. Workers register; jobs
(``new_manager_job``) queue and run one at a time: the input files are dealt
round-robin to ``num_mappers`` map tasks writing into a temporary directory
under --shared_dir, then ``num_reducers`` reduce tasks write
``part-XXXXX`` into the job's output directory (emptied first). A worker
silent for --missed-heartbeats intervals, or that cannot be reached, is dead
and its task goes to another. ``shutdown`` is passed to every live worker,
then the manager exits 0. Logs go to stderr.
"""

import argparse
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading

from wirelab.apps.mapreduce import common
from wirelab.apps.mapreduce.events import EventLog
from wirelab.apps.mapreduce.outbox import Outbox
from wirelab.apps.mapreduce.protocol import MANAGER, worker_of
from wirelab.apps.mapreduce.receiver import DEADLINE_S, Receiver
from wirelab.apps.mapreduce.scheduler import (HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS, JobError,
                                              Scheduler)
from wirelab.apps.mapreduce.tasks import reduce_inputs
from wirelab.apps.mapreduce.wire import CONNECT_TIMEOUT_S, MAX_MESSAGE_BYTES
from wirelab.proc import wait_until
from wirelab.errors import WaitTimeout

PROG = "mapreduce-manager"
log = logging.getLogger("mapreduce.manager")


class Manager:
    def __init__(self, host, port, shared_dir, events, *, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                 missed_heartbeats=MISSED_HEARTBEATS, deadline_s=DEADLINE_S,
                 max_bytes=MAX_MESSAGE_BYTES, send_timeout=CONNECT_TIMEOUT_S):
        self.shared_dir, self.events = shared_dir, events
        self.inbox = queue.Queue()
        self.receiver = Receiver(host, port, MANAGER, self._on_message, events, udp=True,
                                 deadline_s=deadline_s, max_bytes=max_bytes)
        self.outbox = Outbox(events, self._on_send_failure, timeout=send_timeout)
        self.send_timeout = send_timeout
        self.scheduler = Scheduler(self, emit=self._emit, heartbeat_interval=heartbeat_interval,
                                   missed_heartbeats=missed_heartbeats)
        # Checking often enough to see a death within a quarter interval of it.
        self.tick_s = min(0.5, heartbeat_interval / 4)
        self.tmpdirs = set()

    # --- threads other than the loop only put things in the inbox ----------------
    def _on_message(self, message, transport, peer):
        self.inbox.put(("message", message))

    def _on_send_failure(self, address, ref, error):
        self.inbox.put(("send_failed", (address, ref, error)))

    def _emit(self, event, **fields):
        self.events.emit(event, **fields)
        log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    # --- the loop ------------------------------------------------------------
    def run(self, ready_line=True):
        try:
            host, port = self.receiver.bind()
        except OSError as exc:
            raise common.MapReduceError(f"cannot listen on {self.receiver.host}:{self.receiver.port}: "
                                        f"{exc.strerror or exc}") from None
        server = threading.Thread(target=self.receiver.serve, name="receiver", daemon=True)
        server.start()
        if ready_line:
            print(f"LISTENING {host} {port}", flush=True)
        log.info("listening on %s:%s (tcp and udp), shared dir %s", host, port, self.shared_dir)
        try:
            self._loop()
        finally:
            self.receiver.stop()
            server.join(timeout=2)
            for path in self.tmpdirs:
                shutil.rmtree(path, ignore_errors=True)
        return 0

    def _loop(self):
        while True:
            try:
                kind, item = self.inbox.get(timeout=self.tick_s)
            except queue.Empty:
                kind = None
            if kind == "message":
                if item["message_type"] == "shutdown":
                    self._shutdown()
                    return
                self._handle(item)
            elif kind == "send_failed":
                self.scheduler.send_failed(*item)
            elif kind == "acked":
                self.scheduler.acknowledged(item)
            for assignment in self.scheduler.tick():
                self.outbox.send(assignment.worker, assignment.message, assignment.ref)

    def _handle(self, msg):
        kind = msg["message_type"]
        if kind == "register":
            address = worker_of(msg)
            self.scheduler.register(address)
            # The worker beats only once it has the ack: its silence counts from then.
            self.outbox.send(address, {"message_type": "register_ack", "worker_host": address[0],
                                       "worker_port": address[1]},
                             on_sent=lambda a: self.inbox.put(("acked", a)))
        elif kind == "heartbeat":
            if not self.scheduler.heartbeat(worker_of(msg)):
                log.debug("heartbeat from %s ignored (not registered, or dead)", worker_of(msg))
        elif kind == "finished":
            self.scheduler.finished(worker_of(msg), msg["task_id"])
        elif kind == "new_manager_job":
            self.scheduler.submit(msg)

    def _shutdown(self):
        workers = self.scheduler.live_workers()
        self._emit("shutdown", workers=[list(w) for w in workers])
        for address in workers:
            self.outbox.send(address, {"message_type": "shutdown"})
        try:
            # Each send ends within its own timeout; a dead worker does not hold us longer.
            wait_until(self.outbox.drained, self.send_timeout + 1, what="shutdown sent to the workers")
        except WaitTimeout as exc:
            log.warning("%s", exc)

    # --- hooks the scheduler calls: the files of a job ----------------------------
    def start_job(self, job):
        spec = job.spec
        try:
            inputs = sorted(e.path for e in os.scandir(spec["input_directory"]) if e.is_file())
        except OSError as exc:
            raise JobError(f"input directory {spec['input_directory']}: {exc.strerror or exc}") from None
        try:
            shutil.rmtree(spec["output_directory"], ignore_errors=True)
            os.makedirs(spec["output_directory"], exist_ok=True)
            os.makedirs(self.shared_dir, exist_ok=True)
            tmpdir = tempfile.mkdtemp(prefix=f"mapreduce-shared-job{job.job_id:05d}-", dir=self.shared_dir)
        except OSError as exc:
            raise JobError(f"{exc.filename or spec['output_directory']}: {exc.strerror or exc}") from None
        self.tmpdirs.add(tmpdir)
        return tmpdir, inputs

    def reduce_inputs(self, job, part):
        return reduce_inputs(job.tmpdir, part)

    def end_job(self, job):
        shutil.rmtree(job.tmpdir, ignore_errors=True)
        self.tmpdirs.discard(job.tmpdir)


def parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="localhost", help="address to listen on (TCP and UDP)")
    p.add_argument("--port", type=common.port_number, default=6000)
    p.add_argument("--shared_dir", "--shared-dir", dest="shared_dir", default=None,
                   help="where each job's intermediate files live (default: the system temp dir)")
    p.add_argument("--heartbeat-interval", type=common.positive_float, default=HEARTBEAT_INTERVAL_S,
                   metavar="S", help=f"seconds between a worker's heartbeats (default {HEARTBEAT_INTERVAL_S:g})")
    p.add_argument("--missed-heartbeats", type=common.positive_int, default=MISSED_HEARTBEATS, metavar="K",
                   help=f"a worker silent for K intervals is dead (default {MISSED_HEARTBEATS})")
    p.add_argument("--send-timeout", type=common.positive_float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"a message to a worker not delivered within S s marks it dead (default {CONNECT_TIMEOUT_S:g})")
    common.add_receiver_options(p, DEADLINE_S, MAX_MESSAGE_BYTES)
    return p


def main(argv=None):
    args = parser().parse_args(argv)

    def body():
        common.setup_logging(args.loglevel, "mapreduce.manager")
        events = EventLog(args.event_log)
        try:
            manager = Manager(args.host, args.port, os.path.abspath(args.shared_dir or tempfile.gettempdir()),
                              events, heartbeat_interval=args.heartbeat_interval,
                              missed_heartbeats=args.missed_heartbeats, deadline_s=args.receive_deadline,
                              max_bytes=args.max_message_bytes, send_timeout=args.send_timeout)
            return manager.run()
        finally:
            events.close()
    return common.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
