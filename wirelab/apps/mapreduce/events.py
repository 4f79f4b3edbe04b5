"""The event log every MapReduce program writes with ``--event-log FILE``.

One JSON object per line, appended and flushed as it happens, so a reader
(the experiment's verifier, the messages rebuild) sees every line a program
wrote before it was killed. Kinds:

* ``send`` / ``recv``: ``transport`` (tcp|udp), ``src`` and ``dst`` as
  ``[ip, port]`` and the ``message``. For a TCP send, src is the connected
  socket's own address (the real ephemeral port) and dst its peer; for a
  receive, src is the peer and dst the listening address.
* ``dropped``: a receiver threw away what it got (``reason``, ``peer``,
  ``first_bytes``: the repr of at most 64 bytes).
* manager decisions: ``worker_registered``, ``worker_dead``, ``task_assigned``,
  ``task_reassigned``, ``task_finished``, ``late_finished_ignored``,
  ``job_queued``, ``job_started``, ``job_done``, ``job_failed``, ``send_failed``,
  ``shutdown``; worker steps: ``task_started``, ``task_done``, ``task_failed``.
"""

import json
import threading
import time

FIRST_BYTES = 64


def address(addr):
    """``[ip, port]`` of a socket address (IPv4 or IPv6 tuple)."""
    return [addr[0], addr[1]] if addr else None


class EventLog:
    """Appends events to ``path`` (one flushed JSON line each); no path: drops them."""

    def __init__(self, path=None):
        self.path = path
        self._lock = threading.Lock()
        # Line-buffered append: each event reaches the file before write() returns.
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def emit(self, event, **fields):
        if self._file is None:
            return
        line = json.dumps({"t": time.time(), "event": event, **fields}, default=repr)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def message(self, direction, transport, src, dst, message):
        self.emit(direction, transport=transport, src=address(src), dst=address(dst), message=message)

    def dropped(self, reason, peer, data, transport="tcp"):
        self.emit("dropped", reason=reason, transport=transport, peer=address(peer),
                  first_bytes=repr(bytes(data[:FIRST_BYTES])))

    def close(self):
        with self._lock:
            if self._file is not None:
                self._file.close()


def read_events(path):
    """The events in ``path`` (a line cut short by a kill is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
