"""A manager and N workers as processes on one machine (loopback), for tests and benchmarks.

    with LocalCluster(workdir, workers=3) as cluster:
        cluster.submit(input_dir, output_dir, nmappers=4, nreducers=2)
        cluster.wait_for("job_done", timeout=60)

Each program runs ``python -m wirelab.apps.mapreduce.<role>`` on 127.0.0.1 with
port 0 (the kernel picks; the ``LISTENING`` line says which), in a session
of its own, with its event log in ``workdir``. Stopping kills each process
group by the PID it was started with (a worker's mapper child goes with it)
and waits for it. No emulated network: the experiment runs the same
programs on Mininet hosts.
"""

import os
import signal
import subprocess
import sys

from wirelab.apps.mapreduce import events as mrevents
from wirelab.apps.mapreduce.scheduler import HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS
from wirelab.errors import WaitTimeout
from wirelab.proc import LineReader, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
START_TIMEOUT_S = 30.0


class Program:
    def __init__(self, name, argv, log_path, cwd):
        self.name, self.argv, self.log_path = name, argv, log_path
        # TMPDIR in the work folder: a worker killed mid-task leaves its scratch there.
        tmp = os.path.join(cwd, "tmp")
        os.makedirs(tmp, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), TMPDIR=tmp)
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                      env=env, start_new_session=True)
        self.out, self.err = LineReader(self.popen.stdout), LineReader(self.popen.stderr)
        self.address = None

    def wait_listening(self, timeout=START_TIMEOUT_S):
        def ready():
            for line in list(self.out.lines):
                if line.startswith("LISTENING "):
                    _, host, port = line.split()
                    return host, int(port)
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}: {self.err.text()[-500:]}")
            return None
        self.address = wait_until(ready, timeout, what=f"{self.name} to say LISTENING")
        return self.address

    def running(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def stop(self):
        """Kill the program's process group (it leads it) and reap it."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)
        self.out.join(2)
        self.err.join(2)

    def events(self):
        return mrevents.read_events(self.log_path) if os.path.exists(self.log_path) else []


class LocalCluster:
    def __init__(self, workdir, workers=3, heartbeat_interval=HEARTBEAT_INTERVAL_S, missed_heartbeats=MISSED_HEARTBEATS,
                 loglevel="info", extra_manager_args=(), python=sys.executable):
        self.workdir, self.nworkers, self.python = workdir, workers, python
        self.heartbeat_interval, self.missed_heartbeats = heartbeat_interval, missed_heartbeats
        self.loglevel, self.extra_manager_args = loglevel, list(extra_manager_args)
        self.manager = None
        self.workers = []

    def _module(self, role):
        return [self.python, "-m", f"wirelab.apps.mapreduce.{role}"]

    def start(self):
        try:
            log = os.path.join(self.workdir, "manager.jsonl")
            self.manager = Program("manager", self._module("manager") + [
                "--host", "127.0.0.1", "--port", "0", "--shared_dir", os.path.join(self.workdir, "shared"),
                "--loglevel", self.loglevel, "--heartbeat-interval", str(self.heartbeat_interval),
                "--missed-heartbeats", str(self.missed_heartbeats), "--event-log", log,
                *self.extra_manager_args], log, self.workdir)
            self.manager.wait_listening()
            for _ in range(self.nworkers):
                self.add_worker()
            wait_until(lambda: len(self.manager_events("worker_registered")) >= self.nworkers,
                       START_TIMEOUT_S, what=f"{self.nworkers} workers to register")
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self):
        k = len(self.workers)
        log = os.path.join(self.workdir, f"worker{k}.jsonl")
        host, port = self.manager.address
        worker = Program(f"worker{k}", self._module("worker") + [
            "--host", "127.0.0.1", "--port", "0", "--manager-host", host, "--manager-port", str(port),
            "--heartbeat-interval", str(self.heartbeat_interval), "--loglevel", self.loglevel,
            "--event-log", log], log, self.workdir)
        self.workers.append(worker)
        worker.wait_listening()
        return worker

    def worker_at(self, address):
        return next(w for w in self.workers if w.address == tuple(address))

    def submit(self, input_dir, output_dir, nmappers, nreducers, mapper=None, reducer=None, shutdown=False):
        host, port = self.manager.address
        argv = self._module("submit") + ["--host", host, "--port", str(port)]
        if shutdown:
            argv.append("--shutdown")
        else:
            argv += ["--input", input_dir, "--output", output_dir, "--nmappers", str(nmappers),
                     "--nreducers", str(nreducers)]
            argv += ["--mapper", mapper] if mapper else []
            argv += ["--reducer", reducer] if reducer else []
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"submit exited {done.returncode}: {done.stderr.strip()}")

    def manager_events(self, kind=None):
        found = self.manager.events()
        return [e for e in found if kind is None or e["event"] == kind]

    def wait_for(self, event, timeout, count=1, **match):
        """Wait until the manager logged ``count`` events ``event`` with fields ``match``."""
        def seen():
            hits = [e for e in self.manager_events(event) if all(e.get(k) == v for k, v in match.items())]
            return hits if len(hits) >= count else None
        try:
            return wait_until(seen, timeout, what=f"{count} manager event(s) {event} {match or ''}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; manager stderr: {self.manager.err.text()[-800:]}") from None

    def stop(self):
        for prog in [*self.workers, self.manager]:
            if prog is not None:
                prog.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
