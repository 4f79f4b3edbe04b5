"""Bring your own implementation: command templates, and the programs they start.

A template is one command line with ``{placeholders}``::

    /home/me/p4/env/bin/mapreduce-manager --host {host} --port {port} --shared_dir {shared_dir}

It is split with :func:`shlex.split` (never a shell: a student's command is
never interpreted twice), then each word's placeholders are filled in. Each
role has its own placeholders; an unknown one, a missing required one, or a
format the experiment cannot fill (``{port:d}``, ``{0}``, ``{host.x}``) is a
one-line :class:`~wirelab.errors.ConfigError` before anything starts.

:class:`Program` starts a filled-in template in a node as its own process
group (``mnexec -d`` makes every started program a session leader), so that
:meth:`Program.stop` ends the program *and* whatever it started (a worker's
mapper processes) by that group id, and waits until none is left.
"""

import contextlib
import dataclasses
import os
import shlex
import signal
import string
import subprocess
import sys
import time

from wirelab.errors import ConfigError
from wirelab.net.runledger import processes_in_group
from wirelab.proc import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Filled in for every role: the experiment's own interpreter and repository,
# so that a template can run the bundled programs from anywhere.
COMMON = ("python", "repo")
PLACEHOLDERS = {
    "manager": {"host", "port", "shared_dir", "loglevel", "event_log", "heartbeat_interval",
                "missed_heartbeats", *COMMON},
    "worker": {"host", "port", "manager_host", "manager_port", "event_log", "heartbeat_interval",
               *COMMON},
    "submit": {"host", "port", "input", "output", "mapper", "reducer", "nmappers", "nreducers",
               "event_log", *COMMON},
    # Not a command line option: the bundled submitter always sends shutdown
    # (the message is the same for every implementation).
    "shutdown": {"host", "port", "event_log", *COMMON},
}
# Without these the experiment could not tell the program where it runs, where
# its manager is, or what job to submit.
REQUIRED = {
    "manager": ("host", "port"),
    "worker": ("host", "port", "manager_host", "manager_port"),
    "submit": ("host", "port", "input", "output", "mapper", "reducer", "nmappers", "nreducers"),
    "shutdown": ("host", "port"),
}
# The bundled programs (wirelab/apps/mapreduce/), as templates like any other.
BUNDLED = {
    "manager": ("{python} -m wirelab.apps.mapreduce.manager --host {host} --port {port} "
                "--shared_dir {shared_dir} --loglevel {loglevel} --heartbeat-interval {heartbeat_interval} "
                "--missed-heartbeats {missed_heartbeats} --event-log {event_log}"),
    "worker": ("{python} -m wirelab.apps.mapreduce.worker --host {host} --port {port} "
               "--manager-host {manager_host} --manager-port {manager_port} "
               "--heartbeat-interval {heartbeat_interval} --event-log {event_log}"),
    "submit": ("{python} -m wirelab.apps.mapreduce.submit --host {host} --port {port} --input {input} "
               "--output {output} --mapper {mapper} --reducer {reducer} --nmappers {nmappers} "
               "--nreducers {nreducers} --event-log {event_log}"),
    "shutdown": "{python} -m wirelab.apps.mapreduce.submit --host {host} --port {port} --shutdown "
                "--event-log {event_log}",
}
# How long a program gets to exit after SIGTERM before its group is killed.
STOP_GRACE_S = 3.0
# How long the kernel may take to reap a killed group (a process in D state).
KILL_WAIT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Template:
    """A validated command template of one ``role`` (manager, worker, submit)."""

    role: str
    text: str
    words: tuple          # shlex words, placeholders unfilled
    fields: frozenset     # the placeholders used

    @classmethod
    def parse(cls, role, text):
        if role not in PLACEHOLDERS:
            raise ConfigError(f"unknown program role {role!r}")
        option = f"--{role}-cmd"
        try:
            words = tuple(shlex.split(text))
        except ValueError as exc:
            raise ConfigError(f"{option}: cannot split {text!r}: {exc}") from None
        if not words:
            raise ConfigError(f"{option}: empty command")
        fields = set()
        for word in words:
            fields |= _fields(option, word)
        unknown = sorted(fields - PLACEHOLDERS[role])
        if unknown:
            raise ConfigError(f"{option}: unknown placeholder {{{unknown[0]}}}; "
                              f"known: {' '.join('{' + p + '}' for p in sorted(PLACEHOLDERS[role]))}")
        missing = [p for p in REQUIRED[role] if p not in fields]
        if missing:
            raise ConfigError(f"{option}: needs {{{missing[0]}}} (required: "
                              f"{' '.join('{' + p + '}' for p in REQUIRED[role])})")
        return cls(role, text, words, frozenset(fields))

    @classmethod
    def bundled(cls, role):
        return cls.parse(role, BUNDLED[role])

    @property
    def is_bundled(self):
        return self.text == BUNDLED[self.role]

    def takes(self, name):
        return name in self.fields

    def argv(self, **values):
        """The command as an argument vector, every placeholder filled in."""
        values = {"python": sys.executable, "repo": REPO, **values}
        lacking = sorted(self.fields - set(values))
        if lacking:
            raise ConfigError(f"--{self.role}-cmd: no value for {{{lacking[0]}}}")
        return [w.format(**{k: _text(v) for k, v in values.items()}) for w in self.words]


def _fields(option, word):
    out = set()
    try:
        parsed = list(string.Formatter().parse(word))
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc} in {word!r} (a literal brace is written {{{{ or }}}})") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ConfigError(f"{option}: placeholder {{{name}{'!' + conv if conv else ''}"
                              f"{':' + spec if spec else ''}}} in {word!r}: only plain names like {{host}}")
        out.add(name)
    return out


def _text(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def template_or_bundled(role, text):
    """The template given on the command line, or the bundled program's."""
    return Template.parse(role, text) if text.strip() else Template.bundled(role)


class Program:
    """A filled-in template running in a node, with its output in files.

    ``tb.start`` registers it with the Testbed (stopped at teardown at the
    latest); :meth:`stop` ends its whole process group earlier, by id.
    """

    def __init__(self, tb, node, argv, name, log_dir, cwd, env=None):
        self.name, self.node, self.argv = name, node, list(argv)
        os.makedirs(log_dir, exist_ok=True)
        self.stdout_path = os.path.join(log_dir, f"{name}.stdout")
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        self.started = time.time()
        self.stopped_by = None        # None: exited by itself; else the signal we sent
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = tb.start(node, self.argv, name=name, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, cwd=cwd,
                                 env={**os.environ, **(env or {})})
        self.pid = self.proc.pid
        self.ended = None

    def running(self):
        alive = self.proc.running()
        if not alive and self.ended is None:
            self.ended = time.time()
        return alive

    @property
    def returncode(self):
        return self.proc.popen.poll()

    def group_left(self):
        return processes_in_group(self.pid)

    def kill(self):
        """SIGKILL the program's group now (a fault the experiment injects)."""
        self.stopped_by = "SIGKILL"
        self._signal_group(signal.SIGKILL)

    def stop(self, grace=STOP_GRACE_S):
        """SIGTERM the group, SIGKILL it after ``grace`` s, and wait until no
        process of it is left. Returns the leftovers' pids (empty when clean)."""
        if self.running():
            self.stopped_by = "SIGTERM"
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not self.running() and not self.group_left(), grace,
                           what=f"{self.name} to exit after SIGTERM")
        if self.running() or self.group_left():
            self.stopped_by = self.stopped_by or "SIGKILL"
            self._signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not self.running() and not self.group_left(), KILL_WAIT_S,
                       what=f"{self.name}'s processes to be reaped")
        self.running()
        return self.group_left()

    def _signal_group(self, sig):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stderr_tail(self, limit=600):
        with contextlib.suppress(OSError):
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode(errors="replace")
        return ""

    def record(self, t0):
        """What verify may know: argv, times (s since ``t0``), exit, who stopped it."""
        self.running()
        return {"name": self.name, "node": self.node, "argv": self.argv, "pid": self.pid,
                "started_s": round(self.started - t0, 3),
                "ended_s": round(self.ended - t0, 3) if self.ended else None,
                "returncode": self.returncode, "stopped_by": self.stopped_by,
                "stdout": os.path.basename(self.stdout_path), "stderr": os.path.basename(self.stderr_path),
                "stderr_tail": self.stderr_tail()}


def listening(pid, port):
    """Whether the network namespace of process ``pid`` has a TCP socket
    listening on ``port`` (its /proc/PID/net/tcp{,6} tables: kernel state,
    no connection made that the program or the capture would see)."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    # local_address is ADDR:PORT in hex; st 0A is TCP_LISTEN
                    if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False
