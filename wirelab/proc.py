"""Run commands with deadlines and wait for conditions, never on ``sleep``.

``run(node, argv, timeout)`` runs an argument vector (no shell) in a Mininet
node's namespaces (``node=None``: the root namespace) and raises
:class:`~wirelab.errors.CommandError` carrying argv, exit code and stderr.
"""

import subprocess
import threading
import time

from wirelab.errors import CommandError, WaitTimeout


def _popen_argv(node, argv):
    argv = [str(a) for a in argv]
    if node is None:
        return argv
    # mnexec -a PID attaches to every namespace of the node's shell (as
    # Mininet's own Node.popen does), without going through that shell.
    return ["mnexec", "-da", str(node.pid)] + argv


def run(node, argv, timeout, check=True, input=None, env=None):
    """Run ``argv`` in ``node`` (or the root namespace) and wait at most ``timeout`` s.

    Returns a :class:`subprocess.CompletedProcess` with text stdout/stderr.
    Raises :class:`CommandError` on a non-zero exit (when ``check``) or on timeout;
    on timeout the process is killed and reaped.
    """
    full = _popen_argv(node, argv)
    name = getattr(node, "name", None)
    try:
        done = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout,
            env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, None, stderr, node=name, timeout=timeout) from None
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, str(exc), node=name) from None
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stderr, node=name)
    return done


def popen(node, argv, **kwargs):
    """Start ``argv`` in ``node`` without waiting; the caller owns the process."""
    return subprocess.Popen(_popen_argv(node, argv), **kwargs)


def wait_until(predicate, timeout, what="condition", interval=0.02):
    """Poll ``predicate()`` until it returns a true value, or raise
    :class:`~wirelab.errors.WaitTimeout` (a ``TimeoutError`` and a WirelabError).

    The polling interval grows from ``interval`` to at most 0.2 s, so short waits
    stay short and long ones stay cheap. Returns the predicate's value.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.2)


class LineReader:
    """Collect a pipe's lines in a daemon thread, so a line can be awaited.

    ``wait_until(lambda: reader.has("listening on"), 10)`` waits for a
    readiness line without blocking on the pipe or sleeping.
    """

    def __init__(self, pipe):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in pipe:
            if isinstance(raw, bytes):
                raw = raw.decode(errors="replace")
            self.lines.append(raw.rstrip("\n"))

    def has(self, text):
        """Whether any line so far contains ``text``."""
        return any(text in line for line in list(self.lines))

    def text(self):
        return "\n".join(self.lines)

    def join(self, timeout):
        self.thread.join(timeout)
