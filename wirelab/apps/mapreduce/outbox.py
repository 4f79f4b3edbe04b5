"""Per-destination senders: messages to one worker go out in order, on their own thread.

A worker that does not answer (a partitioned host: the SYN goes unanswered
until the connect timeout) delays only its own messages, never another
worker's, and the manager's loop never blocks on the network. A failed send
is reported through ``on_failure(address, ref, error)``.
"""

import queue
import threading

from wirelab.apps.mapreduce.wire import CONNECT_TIMEOUT_S, send_tcp


class Outbox:
    def __init__(self, events, on_failure, timeout=CONNECT_TIMEOUT_S):
        self.events, self.on_failure, self.timeout = events, on_failure, timeout
        self._queues = {}
        self._lock = threading.Lock()
        self._busy = 0   # messages queued or being sent, over every destination

    def send(self, address, message, ref=None, on_sent=None):
        """Queue ``message`` for ``address``; ``on_sent(address)`` once it is written."""
        with self._lock:
            q = self._queues.get(address)
            if q is None:
                q = self._queues[address] = queue.Queue()
                threading.Thread(target=self._run, args=(address, q), daemon=True,
                                 name=f"send-{address[0]}:{address[1]}").start()
            self._busy += 1
        q.put((message, ref, on_sent))

    def drained(self):
        with self._lock:
            return self._busy == 0

    def _run(self, address, q):
        while True:
            message, ref, on_sent = q.get()
            try:
                send_tcp(address[0], address[1], message, self.events, timeout=self.timeout)
            except OSError as exc:
                self.on_failure(address, ref, exc)
            else:
                if on_sent is not None:
                    on_sent(address)
            finally:
                with self._lock:
                    self._busy -= 1
