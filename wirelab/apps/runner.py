"""Run applications on emulated hosts: a server that says READY, its clients.

The protocol every workload of the house follows (``tcpflow``, and the
MapReduce / heartbeat / packet workloads to come): a server prints one line
starting with its ready word (``LISTENING`` by default) once its socket is
bound, flushed, and then JSON objects, one per line; it exits 0 when done. A
client runs to completion and prints JSON lines too. Both exit non-zero with a
one-line error on stderr.

    with AppServer(tb, "rcv1", argv, name="tcpflow serve") as server:
        client = run_client(tb, "snd1", argv, timeout=60)
        server.wait(timeout=60)
    server.last_json(), client.last_json()

Every wait has a deadline. A failure is a result, not an exception: the
records say what happened, and :func:`socket_state` (``ss -tin``) of the nodes
involved is kept for the person reading them.
"""

import contextlib
import dataclasses
import json
import subprocess

from wirelab.errors import CommandError, WaitTimeout, WirelabError
from wirelab.proc import LineReader, wait_until

READY_PREFIX = "LISTENING"
READY_TIMEOUT_S = 30.0
# How much of a failed program's stderr a record keeps.
STDERR_TAIL = 2000


class AppError(WirelabError):
    """An application could not start (exited before READY, or never said it)."""

    exit_code = 6


def json_lines(lines):
    """The JSON objects among ``lines`` (other lines are skipped)."""
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class AppServer:
    """A long-running program on ``node`` that prints ``ready`` when it serves."""

    def __init__(self, tb, node, argv, name=None, ready=READY_PREFIX, ready_timeout=READY_TIMEOUT_S, stdin=False):
        self.tb, self.node, self.argv = tb, tb.resolve(node), [str(a) for a in argv]
        self.stdin = stdin      # a pipe the caller writes to with tell()
        self.name = name or self.argv[0]
        self.ready, self.ready_timeout = ready, ready_timeout
        self.proc = None
        self.failure = None

    def start(self):
        self.proc = self.tb.start(self.node, self.argv, name=self.name,
                                  stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._out, self._err = LineReader(self.proc.popen.stdout), LineReader(self.proc.popen.stderr)
        try:
            wait_until(lambda: self.is_ready() or not self.proc.running(), self.ready_timeout,
                       what=f"{self.name} on {self.node.name} to say {self.ready}")
        except WaitTimeout:
            self.stop()
            raise
        if not self.is_ready():
            self._join()
            raise AppError(f"{self.name} on {self.node.name} exited {self.proc.popen.returncode} "
                           f"before {self.ready}: {self.stderr_tail(300).strip() or 'no stderr'}")
        return self

    def is_ready(self):
        return self.saw(self.ready)

    def saw(self, prefix):
        """Whether the server has printed a line starting with ``prefix``."""
        return any(line.startswith(prefix) for line in list(self._out.lines))

    def tell(self, line):
        """Write one line to the server's stdin (``stdin=True``); False if it is gone."""
        try:
            self.proc.popen.stdin.write(f"{line}\n".encode())
            self.proc.popen.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def wait(self, timeout):
        """Wait for the server to finish; on the deadline stop it and record why."""
        try:
            wait_until(lambda: not self.proc.running(), timeout,
                       what=f"{self.name} on {self.node.name} to finish")
        except WaitTimeout as exc:
            self.failure = str(exc)
            self.stop()
        self._join()
        return self.proc.popen.returncode

    def stop(self):
        if self.proc is not None and self.proc.running():
            self.proc.stop()
        self._join()

    def _join(self):
        if self.stdin and self.proc.popen.stdin and not self.proc.popen.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.popen.stdin.close()
        self._out.join(5)
        self._err.join(5)

    @property
    def returncode(self):
        return self.proc.popen.returncode if self.proc else None

    def lines(self):
        return list(self._out.lines)

    def last_json(self):
        found = json_lines(self.lines())
        return found[-1] if found else None

    def stderr_tail(self, limit=STDERR_TAIL):
        return self._err.text()[-limit:]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


@dataclasses.dataclass
class ClientResult:
    returncode: object      # int, or None when the client outlived its deadline
    stdout: str
    stderr: str
    failure: object = None  # one line, when it did not exit 0

    def last_json(self):
        found = json_lines(self.stdout.splitlines())
        return found[-1] if found else None


def run_client(tb, node, argv, timeout):
    """Run a client to completion (killed at ``timeout`` seconds)."""
    try:
        done = tb.run(node, [str(a) for a in argv], timeout=timeout, check=False)
    except CommandError as exc:   # outlived its deadline
        return ClientResult(None, "", exc.stderr[-STDERR_TAIL:], failure=str(exc))
    failure = None if done.returncode == 0 else (
        f"exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return ClientResult(done.returncode, done.stdout, done.stderr[-STDERR_TAIL:], failure)


def socket_state(tb, nodes):
    """``ss -tin`` of each node: every TCP socket with its kernel state (cwnd,
    rto, retransmissions), for a person reading why a transfer failed."""
    out = {}
    for node in nodes:
        node = tb.resolve(node)
        out[node.name] = tb.run(node, ["ss", "-tina"], timeout=5, check=False).stdout
    return out
