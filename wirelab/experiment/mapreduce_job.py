"""One MapReduce job on the cluster, with a fault injected on cue: the workload
of ``experiments/mapreduce.py``, for the bundled programs and for yours.

    manager up (its TCP port listening: read in /proc, no probe connection)
    -> workers up -> every worker acknowledged (event log, or the wire)
    -> submit (from client1, through the routers)
    -> fault: kill   SIGKILL the group of a worker seen holding a task (the latest started)
              cut    that worker's bridge port disabled for past the dead window
                     + one interval, then forwarding; wait for its late messages
    -> the job's output files (or the deadline, or the manager's exit)
    -> shutdown; each program gets STOP_GRACE_S to exit, then its group is killed

Nothing here judges: the record says what happened and when (epoch seconds,
the capture's clock), and verify reads it with the captures and logs. Every
wait has a deadline derived from the parameters, and every program is
stopped by its process group id at the end, also on an exception: a run of
somebody else's code never hangs and leaves nothing behind.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time

from wirelab.apps.byo import REPO, Program, listening
from wirelab.errors import WaitTimeout
from wirelab.experiment.mapreduce_watch import LiveView
from wirelab.proc import wait_until

# A program's start-up: a Python interpreter importing its modules; in UML
# Python is 2-4x slower. Its port must listen within this.
STARTUP_S = 20.0
# Every worker acknowledged within this of the last one's start.
REGISTER_S = 20.0
# The submitter exits once the manager has the job (one TCP message).
SUBMIT_S = 20.0
# After shutdown, the manager exits (having told the workers it counts alive)...
SHUTDOWN_S = 15.0
# ... and those workers within this (a Python process ending, in UML too).
WORKER_EXIT_S = 5.0
# A connect begun during a partition reaches the manager after the heal
# within the SYN backoff still ahead of it: retransmissions 1, 2, 4 s apart.
LATE_WAIT_S = 1 + 2 + 4
# Polling a file or the capture: short, because a map task takes ~0.1 s.
POLL_EVERY_S = 0.01
# The bridge port states of linux/if_bridge.h (BR_STATE_*).
BRIDGE_STATES = {"disabled": 0, "forwarding": 3}


def poll(predicate, timeout, what):
    """:func:`wait_until` at a steady short interval (its interval grows)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return wait_until(predicate, max(0.0, min(0.1, left)), what, interval=POLL_EVERY_S)
        except WaitTimeout:
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}") from None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where things run (from the topology and the Testbed)."""

    manager: tuple        # (node, ip)
    workers: tuple        # ((node, ip), ...)
    client: tuple         # (node, ip): the submitter's host
    lan: str              # the bridge's node
    bridge_ports: dict    # worker node -> the bridge's port toward it


class JobRun:
    def __init__(self, tb, cluster, templates, settings, input_dir, folder, mapper, reducer, log=print):
        self.tb, self.cluster, self.templates, self.s = tb, cluster, templates, settings
        self.input_dir, self.folder, self.log = input_dir, folder, log
        self.mapper, self.reducer = mapper, reducer
        self.programs = {}
        self.rec = {"t0": time.time(), "settings": dataclasses.asdict(settings), "event_logs": {},
                    "fault": None, "job": {"done": False}, "errors": []}
        self.work = os.path.join(folder, "work")
        self.output = os.path.join(folder, "output")

    # -- helpers ---------------------------------------------------------------------
    def _event_log(self, name, role):
        if not self.templates[role].takes("event_log"):
            return None
        rel = os.path.join("events", f"{name}.jsonl")
        os.makedirs(os.path.join(self.folder, "events"), exist_ok=True)
        self.rec["event_logs"][name] = rel
        path = os.path.join(self.folder, rel)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)    # programs append: a folder used before must not mix two runs
        return path

    def _start(self, name, role, node, **values):
        cwd = os.path.join(self.work, name)
        os.makedirs(cwd, exist_ok=True)
        template = self.templates[role]
        log = self._event_log(name, role)
        if log:
            values["event_log"] = log
        argv = template.argv(**values)
        # Temporary files (a worker's task scratch) go into the program's own
        # folder, removed after the case: a SIGKILLed program leaves nothing in
        # /tmp. The bundled programs import wirelab from the repository; yours
        # get the environment they were given otherwise.
        env = {"TMPDIR": cwd, **({"PYTHONPATH": REPO} if template.is_bundled else {})}
        prog = Program(self.tb, node, argv, name, os.path.join(self.folder, "logs"), cwd, env)
        self.programs[name] = prog
        return prog

    def _wait_listening(self, prog, port):
        try:
            wait_until(lambda: listening(prog.pid, port) or not prog.running(), STARTUP_S,
                       what=f"{prog.name} to listen on TCP port {port}")
        except WaitTimeout as exc:
            raise JobProblem(str(exc)) from None
        if not prog.running():
            raise JobProblem(f"{prog.name} exited {prog.returncode} before listening on {port}: "
                             f"{prog.stderr_tail(300).strip() or 'no stderr'}")

    def _values(self):
        s = self.s
        return {"heartbeat_interval": s.heartbeat_interval, "missed_heartbeats": s.missed_heartbeats,
                "loglevel": s.loglevel}

    # -- the run ----------------------------------------------------------------------
    def run(self):
        """Run the job; always returns the record (a failure is in it, not raised)."""
        try:
            self._run()
        except JobProblem as exc:
            self.rec["errors"].append(str(exc))
            self.log(f"    {exc}")
        finally:
            self._stop_all()
            shutil.rmtree(self.work, ignore_errors=True)
        return self.rec

    def _run(self):
        s, c = self.s, self.cluster
        mnode, mip = c.manager
        shared = os.path.join(self.work, "shared")
        os.makedirs(shared)     # P4 managers make their temporary folders inside an existing one
        manager = self._start("manager", "manager", mnode, host=mip, port=s.manager_port,
                              shared_dir=shared, **self._values())
        self._wait_listening(manager, s.manager_port)
        workers = {}
        for node, ip in c.workers:
            workers[node] = self._start(node, "worker", node, host=ip, port=s.worker_port, manager_host=mip,
                                        manager_port=s.manager_port, **self._values())
        for prog in workers.values():
            self._wait_listening(prog, s.worker_port)
        logs = {n: os.path.join(self.folder, p) for n, p in self.rec["event_logs"].items()}
        view = LiveView(os.path.join(self.folder, "manager.pcap"), (s.manager_port, s.worker_port),
                        {n: (ip, s.worker_port) for n, ip in c.workers}, logs)
        try:
            poll(lambda: len(view.registered()) == len(workers) or not manager.running(), REGISTER_S,
                 "every worker to be acknowledged by the manager")
        except WaitTimeout:
            pass   # verify says which worker was never acknowledged; the job may still run
        self.rec["registered"] = {"t": time.time(), "workers": sorted(view.registered())}
        self._submit()
        fault = {"worker_killed": self._kill, "partitioned": self._partition}.get(s.kind)
        if fault:
            fault(view, workers)
        self._wait_job()
        if s.kind == "partitioned":
            self._wait_late(view)
        self._shutdown()

    def _submit(self):
        s, (cnode, _), (_, mip) = self.s, self.cluster.client, self.cluster.manager
        os.makedirs(self.output, exist_ok=True)   # the manager empties (or makes) it
        self.rec["submit"] = {"t": time.time()}
        prog = self._start("submit", "submit", cnode, host=mip, port=s.manager_port, input=self.input_dir,
                           output=self.output, mapper=self.mapper, reducer=self.reducer,
                           nmappers=s.nmappers, nreducers=s.nreducers)
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not prog.running(), SUBMIT_S, what="the submitter to exit")
        if prog.running() or prog.returncode != 0:
            what = f"did not exit within {SUBMIT_S:g} s" if prog.running() else f"exited {prog.returncode}"
            raise JobProblem(f"submit {what}: {prog.stderr_tail(300).strip() or 'no stderr'}")

    def _victim(self, view, what):
        """The worker that most recently started a task it has not finished
        (the longest left to run: the fault surely comes before its finished)."""
        manager = self.programs["manager"]
        try:
            held = poll(lambda: view.held_tasks() or not manager.running() or self._outputs_done(),
                        self.s.deadline_s, f"a worker to hold a task ({what})")
        except WaitTimeout:
            raise JobProblem(f"no worker was seen holding a task within {self.s.deadline_s:g} s: "
                             f"nothing to {what}") from None
        if not isinstance(held, list):
            raise JobProblem(f"the job ended (or the manager exited) before a worker was seen holding a task: "
                             f"nothing to {what}")
        t, name, kind, task_id = held[-1]
        return name, {"kind": kind, "task_id": task_id, "t_seen_holding": t}

    def _kill(self, view, workers):
        name, task = self._victim(view, "kill")
        workers[name].kill()
        t = time.time()
        self.rec["fault"] = {"kind": "kill", "victim": name, "task": task, "t": t,
                             "pid": workers[name].pid, "signal": "SIGKILL (process group)"}
        self.log(f"    killed {name} (pid {workers[name].pid}) holding {task['kind']} task {task['task_id']}")

    def _partition(self, view, workers):
        name, task = self._victim(view, "cut off")
        port = self.cluster.bridge_ports[name]
        fault = {"kind": "partition", "victim": name, "task": task, "bridge_port": port}
        self.rec["fault"] = fault
        fault["t_down"], fault["state_down"] = time.time(), self._port_state(port, "disabled")
        self.log(f"    {self.cluster.lan}:{port} disabled: {name} cut off holding "
                 f"{task['kind']} task {task['task_id']}")
        try:
            target = fault["t_down"] + self.s.partition_s
            wait_until(lambda: time.time() >= target or not self.programs["manager"].running(),
                       self.s.partition_s + 1, what="the partition to last its time")
        finally:
            fault["t_up"], fault["state_up"] = time.time(), self._port_state(port, "forwarding")
        self.log(f"    {self.cluster.lan}:{port} forwarding again after {fault['t_up'] - fault['t_down']:.2f} s")

    def _port_state(self, port, state):
        """Set the bridge's port to STP ``state`` and return the state read back.

        A disabled port forwards nothing either way while both ends keep their
        carrier: the worker goes on sending (its capture shows SYN
        retransmissions and heartbeats into the void), as behind a switch that
        stopped forwarding. (Setting the port down instead would take the
        worker's carrier away, and the kernel would not even try to send.)"""
        lan = self.cluster.lan
        self.tb.run(lan, ["bridge", "link", "set", "dev", port, "state", str(BRIDGE_STATES[state])], timeout=10)
        shown = json.loads(self.tb.run(lan, ["bridge", "-j", "link", "show", "dev", port], timeout=10).stdout)
        return shown[0].get("state") if shown else None

    def _wait_late(self, view):
        """After the heal: the victim's late ``finished`` (or the deadline)."""
        fault = self.rec["fault"]
        if not fault or "t_up" not in fault:
            return
        name, task_id = fault["victim"], fault["task"]["task_id"]
        try:
            poll(lambda: view.from_worker(name, "finished", fault["t_up"], task_id), LATE_WAIT_S,
                 f"{name}'s late finished of task {task_id}")
        except WaitTimeout:
            pass
        late = view.from_worker(name, "finished", fault["t_down"], task_id)
        fault["late_finished_t"] = [m.t for m in late]
        fault["heartbeats_after_heal"] = len(view.from_worker(name, "heartbeat", fault["t_up"]))

    def _outputs_done(self):
        try:
            parts = [n for n in os.listdir(self.output) if n.startswith("part-")]
        except OSError:
            return False
        if len(parts) < self.s.nreducers:
            return False
        log = self.rec["event_logs"].get("manager")
        if log is None:
            return True
        # The bundled manager says when the job is over (every reducer's file complete).
        with contextlib.suppress(OSError), open(os.path.join(self.folder, log)) as f:
            return any('"job_done"' in line for line in f)
        return False

    def _wait_job(self):
        job, manager = self.rec["job"], self.programs["manager"]
        left = self.s.deadline_s - (time.time() - self.rec["submit"]["t"])
        try:
            wait_until(lambda: self._outputs_done() or not manager.running(), max(left, 0.1),
                       what="the job's output")
        except WaitTimeout:
            pass
        job["t_end"] = time.time()
        job["seconds"] = round(job["t_end"] - self.rec["submit"]["t"], 3)
        job["done"] = self._outputs_done()
        if not job["done"]:
            job["why"] = (f"the manager exited {manager.returncode} while the job ran" if not manager.running()
                          else f"no complete output within the deadline ({self.s.deadline_s:g} s)")
            self.log(f"    job NOT done: {job['why']}")

    def _shutdown(self):
        s, (cnode, _), (_, mip) = self.s, self.cluster.client, self.cluster.manager
        self.rec["shutdown"] = {"t": time.time()}
        if not self.programs["manager"].running():
            self.rec["shutdown"]["skipped"] = "the manager was not running"
            return
        prog = self._start("shutdown", "shutdown", cnode, host=mip, port=s.manager_port)
        manager = self.programs["manager"]
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not manager.running(), SHUTDOWN_S, what="the manager to exit after shutdown")
        # The manager has told the workers it counts alive; those exit at once.
        # A worker it counts dead is never told: it is stopped after the grace.
        waiting = [p for n, p in self.programs.items() if n not in ("submit", "manager")]
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not any(p.running() for p in waiting if p is not self._victim_prog()),
                       WORKER_EXIT_S, what="the workers to exit after the manager")
        self.rec["shutdown"]["returncode"] = prog.returncode

    def _victim_prog(self):
        fault = self.rec["fault"]
        return self.programs.get(fault["victim"]) if fault else None

    def _stop_all(self):
        t0 = self.rec["t0"]
        leftovers = {}
        for name, prog in self.programs.items():
            left = prog.stop()
            if left:
                leftovers[name] = left
        self.rec["programs"] = {n: p.record(t0) for n, p in self.programs.items()}
        self.rec["leftover_processes"] = leftovers


class JobProblem(Exception):
    """A step of the job could not happen (a program would not start, the
    submitter failed): the job stops there, the record says why."""
