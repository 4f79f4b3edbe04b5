"""The manager's decisions, without sockets or files: workers, jobs, tasks.

Driven by calls (``register``, ``heartbeat``, ``submit``, ``finished``,
``send_failed``) and by :meth:`Scheduler.tick`, which declares dead the
workers whose heartbeats stopped, starts queued jobs, moves a job from its
map stage to its reduce stage and returns the assignments to send. The clock
is injected, so tests drive time by hand.

Invariants (tested): a task is assigned to at most one worker at a time; a
worker holds at most one task; a worker the manager declared dead gets
nothing until it registers again, and a ``finished`` from it counts only if
its task was not given to anyone else meanwhile (else it is logged as
``late_finished_ignored``). Files are the caller's business, through
``hooks``: ``start_job(job) -> (tmpdir, input_files)``,
``reduce_inputs(job, partition) -> paths`` and ``end_job(job)``.
"""

import collections
import dataclasses
import time

from wirelab.apps.mapreduce.tasks import deal

HEARTBEAT_INTERVAL_S = 2.0
MISSED_HEARTBEATS = 5          # P4: five missed in a row and the worker is dead

# A job asking for more tasks than this is refused: each task is a record in
# memory and a message on the wire, and a typo (or a fuzzer) must not exhaust either.
MAX_TASKS = 10000

READY, BUSY, DEAD = "ready", "busy", "dead"
MAP, REDUCE = "map", "reduce"


class JobError(Exception):
    """A job cannot run (its input directory is missing, ...): it fails, the manager goes on."""


@dataclasses.dataclass
class Task:
    job_id: int
    kind: str
    task_id: int
    input_paths: list
    worker: tuple = None        # who holds it now
    last_worker: tuple = None   # who held it last (a late finished from them may still count)
    attempt: int = 0
    done: bool = False
    requeued_because: str = None

    @property
    def ref(self):
        return (self.job_id, self.kind, self.task_id, self.attempt)


@dataclasses.dataclass
class Worker:
    address: tuple
    order: int                 # registration order: tasks go to the earliest registered first
    state: str = READY
    task: Task = None
    last_heartbeat: float = 0.0


@dataclasses.dataclass
class Job:
    job_id: int
    spec: dict                 # the new_manager_job message
    tmpdir: str = None
    stage: str = None
    tasks: list = dataclasses.field(default_factory=list)
    started: float = None


@dataclasses.dataclass(frozen=True)
class Assignment:
    worker: tuple
    message: dict
    ref: tuple                 # Task.ref when assigned: a send failure applies only to this attempt


class Scheduler:
    def __init__(self, hooks, emit=lambda event, **fields: None, clock=time.monotonic,
                 heartbeat_interval=HEARTBEAT_INTERVAL_S, missed_heartbeats=MISSED_HEARTBEATS):
        self.hooks, self.emit, self.clock = hooks, emit, clock
        self.heartbeat_interval, self.missed_heartbeats = heartbeat_interval, missed_heartbeats
        self.workers = {}
        self.jobs = collections.deque()   # queued, not started
        self.job = None                   # the running job
        self.pending = collections.deque()  # tasks of the current stage waiting for a worker
        self.next_job_id = 0
        self._orders = 0

    # --- inputs -----------------------------------------------------------
    def register(self, address):
        """A worker (new, restarted or back from the dead) is ready for work."""
        now = self.clock()
        worker = self.workers.get(address)
        if worker is None:
            worker = self.workers[address] = Worker(address, self._orders)
            self._orders += 1
            previous = None
        else:
            previous = worker.state
            if worker.task is not None:
                # It registers again while we think it works: it restarted and lost the task.
                self._take_back(worker, reason="registered again")
        worker.state, worker.last_heartbeat = READY, now
        self.emit("worker_registered", worker=list(address), previous_state=previous)

    def heartbeat(self, address):
        """A heartbeat from a registered, live worker keeps it alive; others are ignored."""
        worker = self.workers.get(address)
        if worker is None or worker.state == DEAD:
            return False
        worker.last_heartbeat = self.clock()
        return True

    def acknowledged(self, address):
        """The register_ack reached the worker, which starts beating only now: a slow
        ack (a lossy or long path) must not count as missed heartbeats."""
        worker = self.workers.get(address)
        if worker is not None and worker.state != DEAD:
            worker.last_heartbeat = max(worker.last_heartbeat, self.clock())

    def submit(self, spec):
        job = Job(self.next_job_id, dict(spec))
        self.next_job_id += 1
        self.jobs.append(job)
        self.emit("job_queued", job_id=job.job_id, output_directory=spec["output_directory"])
        return job.job_id

    def finished(self, address, task_id):
        """A worker says it finished ``task_id`` (of the current stage)."""
        worker = self.workers.get(address)
        task = self._current_task(task_id)
        if worker is None or task is None:
            self.emit("late_finished_ignored", worker=list(address), task_id=task_id,
                      reason="unknown worker" if worker is None else "no such task in the current stage")
            return
        if task.worker == address and worker.state == BUSY and worker.task is task:
            self._complete(task, worker)
        elif (worker.state == DEAD and not task.done and task.worker is None
              and task.last_worker == address):
            # Declared dead, yet it did the work and nobody else holds the task: keep
            # the result rather than run the task again. It stays dead until it registers.
            self._complete(task, None, late=True)
        else:
            holder = task.worker
            reason = ("already finished" if task.done else
                      f"reassigned to {holder[0]}:{holder[1]}" if holder else "not this worker's task")
            self.emit("late_finished_ignored", worker=list(address), task_id=task_id,
                      job_id=task.job_id, kind=task.kind, worker_state=worker.state, reason=reason)

    def send_failed(self, address, ref, error):
        """Sending to ``address`` failed (task ``ref``, or None for another message):
        that worker is dead and its task goes back."""
        worker = self.workers.get(address)
        if worker is None or worker.state == DEAD:
            return
        if ref is not None and (worker.task is None or worker.task.ref != ref):
            return   # a failure about an attempt that is over: the worker answered since
        task = dict(zip(("job_id", "kind", "task_id"), ref)) if ref else {}
        self.emit("send_failed", worker=list(address), error=str(error)[:200], **task)
        self._kill(worker, reason="send failed")

    # --- time passes ----------------------------------------------------------
    def tick(self):
        """Declare silent workers dead, advance jobs; returns the assignments to send."""
        now = self.clock()
        limit = self.missed_heartbeats * self.heartbeat_interval
        for worker in self._by_order():
            if worker.state != DEAD and now - worker.last_heartbeat > limit:
                missed = int((now - worker.last_heartbeat) // self.heartbeat_interval)
                self._kill(worker, reason="heartbeats", missed=missed)
        self._advance()
        return self._assign()

    def live_workers(self):
        return [w.address for w in self._by_order() if w.state != DEAD]

    def idle(self):
        """No running job, none queued."""
        return self.job is None and not self.jobs

    # --- internals ------------------------------------------------------------
    def _by_order(self):
        return sorted(self.workers.values(), key=lambda w: w.order)

    def _current_task(self, task_id):
        if self.job is None or not isinstance(task_id, int):
            return None
        for task in self.job.tasks:
            if task.task_id == task_id:
                return task
        return None

    def _kill(self, worker, reason, missed=None):
        worker.state = DEAD
        self.emit("worker_dead", worker=list(worker.address), reason=reason, missed=missed)
        if worker.task is not None:
            self._take_back(worker, reason=f"worker dead ({reason})")

    def _take_back(self, worker, reason):
        task = worker.task
        worker.task = None
        task.worker = None
        self.pending.appendleft(task)   # first in line: it is the oldest unfinished work
        task.requeued_because = reason

    def _complete(self, task, worker, late=False):
        task.done = True
        task.worker = None
        if late:
            self.pending = collections.deque(t for t in self.pending if t is not task)
        if worker is not None:
            worker.task, worker.state = None, READY
        self.emit("task_finished", job_id=task.job_id, kind=task.kind, task_id=task.task_id,
                  worker=list(worker.address if worker else task.last_worker), late=late)

    def _advance(self):
        """Start the next job, or the next stage, when the current one is over."""
        while True:
            job = self.job
            if job is None:
                if not self.jobs:
                    return
                self._start_job(self.jobs.popleft())
                continue
            if not all(t.done for t in job.tasks):
                return
            if job.stage == MAP:
                self._start_reduce(job)
                continue
            self.hooks.end_job(job)
            self.emit("job_done", job_id=job.job_id, output_directory=job.spec["output_directory"],
                      seconds=round(self.clock() - job.started, 3))
            self.job = None

    def _start_job(self, job):
        self.job = job
        job.started = self.clock()
        try:
            too_many = [k for k in ("num_mappers", "num_reducers") if job.spec[k] > MAX_TASKS]
            if too_many:
                raise JobError(f"{too_many[0]} {job.spec[too_many[0]]} is more than {MAX_TASKS} tasks")
            job.tmpdir, inputs = self.hooks.start_job(job)
        except JobError as exc:
            self.emit("job_failed", job_id=job.job_id, output_directory=job.spec["output_directory"],
                      error=str(exc))
            self.job = None
            return
        spec = job.spec
        job.stage = MAP
        job.tasks = [Task(job.job_id, MAP, i, paths)
                     for i, paths in enumerate(deal(inputs, spec["num_mappers"]))]
        self.pending = collections.deque(job.tasks)
        self.emit("job_started", job_id=job.job_id, output_directory=spec["output_directory"],
                  input_directory=spec["input_directory"], tmpdir=job.tmpdir,
                  num_mappers=spec["num_mappers"], num_reducers=spec["num_reducers"],
                  input_files=len(inputs))

    def _start_reduce(self, job):
        job.stage = REDUCE
        job.tasks = [Task(job.job_id, REDUCE, r, self.hooks.reduce_inputs(job, r))
                     for r in range(job.spec["num_reducers"])]
        self.pending = collections.deque(job.tasks)
        self.emit("stage_started", job_id=job.job_id, kind=REDUCE, tasks=len(job.tasks))

    def _assign(self):
        out = []
        for worker in self._by_order():
            if not self.pending:
                break
            if worker.state != READY:
                continue
            task = self.pending.popleft()
            previous = task.last_worker if task.attempt else None
            task.attempt += 1
            task.worker = task.last_worker = worker.address
            worker.task, worker.state = task, BUSY
            self.emit("task_assigned", job_id=task.job_id, kind=task.kind, task_id=task.task_id,
                      worker=list(worker.address), attempt=task.attempt)
            if previous is not None:
                self.emit("task_reassigned", job_id=task.job_id, kind=task.kind, task_id=task.task_id,
                          worker=list(worker.address), previous_worker=list(previous),
                          reason=task.requeued_because)
            out.append(Assignment(worker.address, self._message(task, worker.address), task.ref))
        return out

    def _message(self, task, address):
        spec = self.job.spec
        msg = {"message_type": "new_map_task" if task.kind == MAP else "new_reduce_task",
               "task_id": task.task_id,
               "executable": spec["mapper_executable" if task.kind == MAP else "reducer_executable"],
               "input_paths": list(task.input_paths)}
        if task.kind == MAP:
            msg["output_directory"] = self.job.tmpdir
            msg["num_partitions"] = spec["num_reducers"]
        else:
            msg["output_directory"] = spec["output_directory"]
        msg["worker_host"], msg["worker_port"] = address
        return msg
