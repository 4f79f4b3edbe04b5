"""The manager's scheduler on a fake clock: assignment order, stages, deaths, late messages."""

import itertools

import pytest

from wirelab.apps.mapreduce.scheduler import BUSY, DEAD, READY, JobError, Scheduler

W1, W2, W3 = ("10.0.0.2", 6001), ("10.0.0.3", 6001), ("10.0.0.4", 6001)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Hooks:
    """Files of a job, faked: N input files, reduce inputs named after the partition."""

    def __init__(self, nfiles=5, fail=False):
        self.nfiles, self.fail = nfiles, fail
        self.ended = []

    def start_job(self, job):
        if self.fail:
            raise JobError(f"input directory {job.spec['input_directory']}: No such file or directory")
        return f"/shared/job{job.job_id}", [f"/in/f{i}" for i in range(self.nfiles)]

    def reduce_inputs(self, job, part):
        return [f"/shared/job{job.job_id}/maptask{t:05d}-part{part:05d}" for t in range(job.spec["num_mappers"])]

    def end_job(self, job):
        self.ended.append(job.job_id)


def job(m=2, r=2, out="/out"):
    return {"message_type": "new_manager_job", "input_directory": "/in", "output_directory": out,
            "mapper_executable": "/m", "reducer_executable": "/r", "num_mappers": m, "num_reducers": r}


def make(hooks=None, interval=2.0, missed=5):
    clock, events = Clock(), []
    s = Scheduler(hooks or Hooks(), emit=lambda e, **f: events.append(dict(f, event=e)),
                  clock=clock, heartbeat_interval=interval, missed_heartbeats=missed)
    return s, clock, events


def kinds(events, kind):
    return [e for e in events if e["event"] == kind]


def held(s):
    """task key -> the workers holding it: the invariant is at most one."""
    out = {}
    for w in s.workers.values():
        if w.task is not None:
            out.setdefault((w.task.kind, w.task.task_id), []).append(w.address)
    return out


def test_map_then_reduce_in_registration_order_with_p4_messages():
    s, clock, events = make()
    for w in (W2, W1):
        s.register(w)
    s.submit(job(m=3, r=2))
    first = s.tick()
    assert [(a.worker, a.message["task_id"]) for a in first] == [(W2, 0), (W1, 1)]
    m = first[0].message
    assert m == {"message_type": "new_map_task", "task_id": 0, "executable": "/m",
                 "input_paths": ["/in/f0", "/in/f3"], "output_directory": "/shared/job0",
                 "num_partitions": 2, "worker_host": W2[0], "worker_port": W2[1]}
    s.finished(W1, 1)
    assert [(a.worker, a.message["task_id"]) for a in s.tick()] == [(W1, 2)]
    s.finished(W2, 0)
    assert s.tick() == []                       # no reduce before every map task is done
    s.finished(W1, 2)
    reduce = s.tick()
    assert [(a.worker, a.message["message_type"], a.message["task_id"]) for a in reduce] == [
        (W2, "new_reduce_task", 0), (W1, "new_reduce_task", 1)]
    assert reduce[1].message["input_paths"] == [f"/shared/job0/maptask{t:05d}-part00001" for t in range(3)]
    assert reduce[1].message["output_directory"] == "/out"
    s.finished(W2, 0)
    s.finished(W1, 1)
    s.tick()
    assert [e["job_id"] for e in kinds(events, "job_done")] == [0] and s.idle()


def test_jobs_run_one_at_a_time_in_submission_order():
    hooks = Hooks(nfiles=1)
    s, clock, events = make(hooks)
    s.register(W1)
    s.submit(job(1, 1, out="/a"))
    s.submit(job(1, 1, out="/b"))
    for _ in range(4):
        (a,) = s.tick()
        assert a.message["output_directory"] != "/b" or hooks.ended == [0]
        s.finished(W1, a.message["task_id"])
    s.tick()
    assert [e["output_directory"] for e in kinds(events, "job_done")] == ["/a", "/b"]
    assert hooks.ended == [0, 1]


def test_silent_worker_dies_after_k_intervals_and_its_task_moves():
    s, clock, events = make(interval=2.0, missed=5)
    s.register(W1)
    s.register(W2)
    s.submit(job(m=2, r=1))
    s.tick()
    s.finished(W2, 1)
    assert s.tick() == []                      # W2 ready, nothing pending
    for _ in range(5):                          # W2 beats, W1 is silent
        clock.now += 2.0
        s.heartbeat(W2)
        assert s.tick() == []
    assert s.workers[W1].state == BUSY          # exactly 10 s silent: not yet dead
    clock.now += 0.1
    s.heartbeat(W2)
    moved = s.tick()
    assert s.workers[W1].state == DEAD
    assert kinds(events, "worker_dead") == [{"event": "worker_dead", "worker": list(W1), "reason": "heartbeats",
                                             "missed": 5}]
    assert [(a.worker, a.message["task_id"]) for a in moved] == [(W2, 0)]
    (re,) = kinds(events, "task_reassigned")
    assert re["previous_worker"] == list(W1) and re["worker"] == list(W2) and re["task_id"] == 0
    assert held(s) == {("map", 0): [W2]}


def test_silence_counts_from_the_ack_not_the_register():
    s, clock, events = make(interval=1.0, missed=3)
    s.register(W1)
    clock.now += 2.5                 # the ack took 2.5 s to get through
    s.acknowledged(W1)
    clock.now += 2.9                 # 5.4 s after register, 2.9 s of real silence
    s.tick()
    assert s.workers[W1].state == READY
    clock.now += 0.2
    s.tick()
    assert s.workers[W1].state == DEAD
    s.acknowledged(W1)               # an ack delivered late does not revive the dead
    assert s.workers[W1].state == DEAD


def test_late_finished_for_a_reassigned_task_is_ignored():
    s, clock, events = make(interval=1.0, missed=2)
    s.register(W1)
    s.register(W2)
    s.submit(job(m=2, r=1))
    s.tick()
    s.finished(W2, 1)
    s.tick()
    clock.now += 2.5
    s.heartbeat(W2)
    s.tick()                                    # W1 dead, map 0 -> W2
    s.finished(W1, 0)                           # W1 comes back with its old result
    (late,) = kinds(events, "late_finished_ignored")
    assert late["worker"] == list(W1) and "reassigned to 10.0.0.3:6001" in late["reason"]
    assert s.workers[W2].state == BUSY and s.job.stage == "map"
    s.finished(W2, 0)
    assert [a.worker for a in s.tick()] == [W2]   # reduce goes to W2 only: W1 is still dead
    assert s.workers[W1].state == DEAD
    s.heartbeat(W1)                              # a dead worker's heartbeat does not revive it
    assert s.tick() == [] and s.workers[W1].state == DEAD


def test_late_finished_for_an_unclaimed_task_counts_once():
    s, clock, events = make(interval=1.0, missed=2)
    s.register(W1)
    s.submit(job(m=1, r=1))
    s.tick()
    clock.now += 3
    assert s.tick() == []                        # W1 dead, nobody to take map 0
    s.finished(W1, 0)                            # its result arrives after all
    assert kinds(events, "task_finished")[-1]["late"] is True
    s.finished(W1, 0)                            # a duplicate
    assert kinds(events, "late_finished_ignored")[-1]["reason"] == "already finished"
    s.register(W2)
    (a,) = s.tick()
    assert a.message["message_type"] == "new_reduce_task" and a.worker == W2
    assert len(kinds(events, "task_finished")) == 1


def test_reregistered_worker_is_ready_again_and_gets_work():
    s, clock, events = make(interval=1.0, missed=2)
    s.register(W1)
    s.submit(job(m=2, r=1))
    s.tick()
    clock.now += 3
    s.tick()
    assert s.workers[W1].state == DEAD
    s.register(W1)
    assert kinds(events, "worker_registered")[-1]["previous_state"] == DEAD
    out = s.tick()
    assert [(a.worker, a.message["task_id"]) for a in out] == [(W1, 0)]
    assert s.workers[W1].state == BUSY


def test_register_while_busy_requeues_the_lost_task():
    s, clock, events = make()
    s.register(W1)
    s.submit(job(m=1, r=1))
    (a,) = s.tick()
    s.register(W1)                                # restarted: the task it had is gone with it
    (b,) = s.tick()
    assert b.message == a.message and b.ref != a.ref
    s.finished(W1, 0)
    assert kinds(events, "task_finished")[0]["late"] is False


def test_send_failure_kills_the_worker_and_reassigns():
    s, clock, events = make()
    s.register(W1)
    s.register(W2)
    s.submit(job(m=2, r=1))
    a1, a2 = s.tick()
    s.send_failed(W1, a1.ref, ConnectionRefusedError(111, "Connection refused"))
    assert s.workers[W1].state == DEAD and kinds(events, "send_failed")[0]["task_id"] == 0
    s.finished(W2, 1)
    (again,) = s.tick()
    assert again.worker == W2 and again.message["task_id"] == 0
    s.send_failed(W2, a2.ref, OSError("stale"))  # about an attempt that is over: nothing happens
    assert s.workers[W2].state == BUSY


def test_a_job_whose_input_is_missing_fails_and_the_next_runs():
    hooks = Hooks(fail=True)
    s, clock, events = make(hooks)
    s.register(W1)
    s.submit(job())
    assert s.tick() == []
    assert kinds(events, "job_failed")[0]["error"].startswith("input directory /in")
    hooks.fail = False
    s.submit(job(m=10001))
    assert s.tick() == [] and kinds(events, "job_failed")[1]["error"] == "num_mappers 10001 is more than 10000 tasks"
    s.submit(job())
    assert len(s.tick()) == 1


def test_unknown_worker_or_task_is_ignored():
    s, clock, events = make()
    s.finished(W3, 0)
    s.register(W1)
    s.finished(W1, 99)
    s.finished(W1, "0")
    assert [e["reason"] for e in kinds(events, "late_finished_ignored")] == [
        "unknown worker", "no such task in the current stage", "no such task in the current stage"]
    assert s.heartbeat(W3) is False


@pytest.mark.parametrize("seed", range(30))
def test_random_runs_keep_one_holder_per_task_and_finish(seed):
    """Random deaths, late finishes, re-registrations and send failures: at every step no task
    has two holders and no worker two tasks, and with one steady worker every job ends."""
    import random
    rng = random.Random(seed)
    s, clock, events = make(Hooks(nfiles=rng.randint(0, 7)), interval=1.0, missed=3)
    workers = [("10.0.0.%d" % i, 6001) for i in range(2, 6)]
    steady = workers[0]
    for w in workers:
        s.register(w)
    for _ in range(rng.randint(1, 3)):
        s.submit(job(m=rng.randint(1, 4), r=rng.randint(1, 3)))
    sent = []
    for step in itertools.count():
        assert step < 2000, "jobs never finished"
        sent.extend(s.tick())
        holders = held(s)
        assert all(len(v) == 1 for v in holders.values()), holders
        if s.idle():
            break
        clock.now += rng.choice([0.1, 0.5, 1.0])
        s.heartbeat(steady)
        for w in workers[1:]:
            if rng.random() < 0.6:
                s.heartbeat(w)
        live = [w for w in s.workers.values() if w.task is not None]
        if live and rng.random() < 0.7:
            w = rng.choice(live)
            s.finished(w.address, w.task.task_id)
        if sent and rng.random() < 0.2:          # a stale or late finished from anyone
            a = rng.choice(sent)
            s.finished(a.worker, a.message["task_id"])
        others = [a for a in sent if a.worker != steady]
        if others and rng.random() < 0.05:
            a = rng.choice(others)
            s.send_failed(a.worker, a.ref, OSError("refused"))
        if rng.random() < 0.05:
            s.register(rng.choice(workers[1:]))
    done = kinds(events, "job_done") + kinds(events, "job_failed")
    assert len(done) == s.next_job_id
    # Each task of each stage finished exactly once.
    finished = [(e["job_id"], e["kind"], e["task_id"]) for e in kinds(events, "task_finished")]
    assert len(finished) == len(set(finished))
