"""SIGTERM / SIGINT as a flag plus a file descriptor a select() loop can watch.

A signal handler that raised an exception could land between a send and the
log line that records it; this one only sets ``stopped`` and, through
:func:`signal.set_wakeup_fd`, makes a pipe readable, so a program blocked in
``select`` (the main server) or in a paced wait (the chunkserver) wakes at
once and finishes its current step cleanly.
"""

import os
import select
import signal


class StopSignals:
    """``with StopSignals() as stop: ... stop.wait(seconds) ... stop.stopped``."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.stopped = None   # the name of the signal that asked to stop
        self.fd = None
        self._w = None
        self._saved = {}
        self._saved_fd = None

    def __enter__(self):
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        self._saved_fd = signal.set_wakeup_fd(self._w)
        for sig in self.SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.stopped = signal.Signals(signum).name

    def drain(self):
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def wait(self, seconds):
        """Sleep up to ``seconds`` (pacing, not synchronisation); False if a stop
        signal came, True when the time is up."""
        if self.stopped:
            return False
        if seconds > 0:
            ready, _, _ = select.select([self.fd], [], [], seconds)
            if ready:
                self.drain()
        return not self.stopped

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._saved_fd if self._saved_fd is not None else -1)
        os.close(self.fd)
        os.close(self._w)
        return False
