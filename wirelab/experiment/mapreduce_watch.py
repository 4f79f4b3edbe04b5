"""What a MapReduce job is doing, seen while it runs: for the moment to inject a fault.

Two sources, the same questions. A program that writes an event log (the
bundled ones) answers from it: a worker's ``task_started`` means it holds the
task, its ``recv`` of ``register_ack`` that it is registered. A program that
writes none (your own implementation) is watched on the wire: the capture on
the manager's interface is being written as the job runs (tcpdump -U), and
:func:`wirelab.observe.messages.rebuild` reads what is there so far: a task
message to a worker that arrived whole means the worker got the task.
Heartbeats and late messages are always read from the wire.
"""

import os

from wirelab.observe.messages import rebuild
from wirelab.observe.pcap.reader import PcapFormatError

TASK_TYPES = {"new_map_task": "map", "new_reduce_task": "reduce"}


class EventTail:
    """The events appended to a JSON-lines file so far (a half-written line waits)."""

    def __init__(self, path):
        self.path, self.offset, self.events, self._rest = path, 0, [], b""

    def read(self):
        import json
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.events
        self.offset += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                self.events.append(ev)
        return self.events


class LiveView:
    """The job so far. ``workers``: {name: (ip, port)}; ``event_logs``: {name:
    path} for the programs that write one; ``pcap``: the manager's capture."""

    def __init__(self, pcap, ports, workers, event_logs):
        self.pcap, self.ports, self.workers = pcap, list(ports), dict(workers)
        self.tails = {n: EventTail(p) for n, p in event_logs.items() if n in self.workers}
        self.by_ip = {ip: n for n, (ip, _) in self.workers.items()}
        self._size, self._wire = -1, []

    def wire(self):
        """Messages rebuilt from the capture so far (re-read only when it grew)."""
        try:
            size = os.path.getsize(self.pcap)
        except OSError:
            return []
        if size != self._size:
            try:
                self._wire = [m for m in rebuild(self.pcap, ports=self.ports, allow_truncated=True)
                              if m.message is not None and isinstance(m.message, dict)]
                self._size = size
            except PcapFormatError:   # not even the file header yet
                return self._wire
        return self._wire

    def _worker_of(self, m, end):
        """The worker a message comes from (``end='src'``) or goes to (``'dst'``)."""
        ip = (m.src if end == "src" else m.dst)[0]
        return self.by_ip.get(ip)

    def held_tasks(self):
        """[(t, worker, kind, task_id)] in time order: tasks a worker got and
        had not reported finished (so far)."""
        out, done = [], set()
        wire = None
        for name in self.workers:
            tail = self.tails.get(name)
            if tail is not None:
                for ev in tail.read():
                    if ev.get("event") == "task_started":
                        out.append((ev.get("t", 0), name, ev.get("kind"), ev.get("task_id")))
                    elif ev.get("event") in ("task_done", "task_failed"):
                        done.add((name, ev.get("kind"), ev.get("task_id")))
                continue
            wire = self.wire() if wire is None else wire
            kinds = {}
            for m in wire:
                kind = TASK_TYPES.get(m.message.get("message_type"))
                if kind and m.error is None and self._worker_of(m, "dst") == name:
                    out.append((m.t_end, name, kind, m.message.get("task_id")))
                    kinds[m.message.get("task_id")] = kind
                elif m.message.get("message_type") == "finished" and self._worker_of(m, "src") == name:
                    tid = m.message.get("task_id")
                    done.add((name, kinds.get(tid), tid))
        return sorted(x for x in out if (x[1], x[2], x[3]) not in done)

    def registered(self):
        """Workers the manager acknowledged."""
        out = set()
        wire = None
        for name in self.workers:
            tail = self.tails.get(name)
            if tail is not None:
                if any(ev.get("event") == "recv" and (ev.get("message") or {}).get("message_type")
                       == "register_ack" for ev in tail.read()):
                    out.add(name)
                continue
            wire = self.wire() if wire is None else wire
            if any(m.message.get("message_type") == "register_ack" and self._worker_of(m, "dst") == name
                   for m in wire):
                out.add(name)
        return out

    def from_worker(self, name, message_type, after, task_id=None):
        """Messages of ``message_type`` the capture shows from worker ``name`` after ``after``."""
        return [m for m in self.wire()
                if m.message.get("message_type") == message_type and self._worker_of(m, "src") == name
                and m.t > after and (task_id is None or m.message.get("task_id") == task_id)]
