"""Run a command inside a User-Mode Linux kernel, for hosts whose kernel lacks sch_netem.

::

    host kernel (no sch_netem)
    └── linux.uml (one process group; its helpers are host processes too)
        └── init = wirelab/net/uml_init.sh       root fs = host /, read-only (hostfs)
            ├── proc, sys, dev, devpts, tmpfs on /run /tmp /var/log /var/tmp
            ├── modules: sch_netem veth (+ bridge, htb, tbf, ifb, ... if present)
            ├── host dirs in ``writable``: hostfs, read-write, same paths
            └── argv in cwd, env  ->  stdout = console, stderr = ttyS0

``run_in_uml(argv, cwd=..., timeout=...)`` boots the guest, streams the command's
stdout and stderr live, and returns its exit status. The argument vector,
environment and working directory travel as NUL-separated files in a private
control directory that the guest mounts read-write; the guest writes the exit
status there and powers off. Kernel messages are filtered out of the stream by a
random token the guest prints around the command's output.

``in_uml()`` says whether we are inside such a guest; whether the running kernel
can create a netem qdisc is :func:`wirelab.net.kernel.has_sch_netem`.
"""

import hashlib
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from wirelab.errors import MissingToolError, WirelabError
from wirelab.net.runledger import (LABEL, OWNED_FOLDER_DIR, RunLedger, labelled_pids, new_run_id,
                                   processes_in_group)
from wirelab.proc import wait_until

UML_PACKAGE = "user-mode-linux"
UML_BINARY = "linux.uml"
INIT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "uml_init.sh")
MODULES_ROOT = "/usr/lib/uml/modules"

# The guest sees the host root read-only, so its own tmpfs hide these host
# folders; a working directory below them is mounted through hostfs.
_MASKED_BY_TMPFS = ("/tmp", "/run", "/var/tmp", "/var/log", "/dev")
# Paths go on the kernel command line (split on spaces) and into mount -o
# (split on commas): keep to characters that survive both.
_SAFE_BOOT_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Guest kernel messages up to KERN_ALERT reach the console: an oops still shows,
# routine notices do not.
_KERNEL_ARGS = ("quiet", "loglevel=2")
# How long a killed process group may take to disappear from /proc.
_REAP_TIMEOUT = 10.0

log = logging.getLogger(__name__)


class UmlError(WirelabError):
    """The guest did not run the command to completion (boot failure, crash)."""


class UmlNotInstalledError(MissingToolError):
    """``linux.uml`` is missing."""


class UmlTimeoutError(UmlError, TimeoutError):
    """The guest ran longer than ``timeout``; its whole process group was killed.

    ``pgid`` is the killed group, so callers and tests can check nothing is left.
    """

    exit_code = 124   # as timeout(1)

    def __init__(self, message, pgid):
        super().__init__(message)
        self.pgid = pgid


# --------------------------------------------------------------------------- probes

def in_uml():
    """True inside a User-Mode Linux guest (ours sets WIRELAB_IN_UML=1)."""
    if os.environ.get("WIRELAB_IN_UML") == "1":
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return "User Mode Linux" in f.read(4096)
    except OSError:
        return False


def uml_binary():
    """Path of ``linux.uml`` (or $WIRELAB_LINUX_UML), or raise UmlNotInstalledError."""
    name = os.environ.get("WIRELAB_LINUX_UML", UML_BINARY)
    path = shutil.which(name)
    if path is None:
        raise UmlNotInstalledError(
            f"{name} not found: install the apt package {UML_PACKAGE} "
            f"(sudo apt-get install {UML_PACKAGE})")
    return path


def uml_version(binary=None):
    """Kernel release of the UML binary, e.g. ``'6.1.176'``."""
    binary = binary or uml_binary()
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise UmlError(f"{binary} --version exited {done.returncode}: {done.stderr.strip()}")
    return version


# ------------------------------------------------------------- AMX xstate workaround

# linux.uml 6.1 saves and restores its processes' FPU state with
# PTRACE_SETREGSET(NT_X86_XSTATE) and a buffer sized for AVX-512 (2696 bytes).
# On CPUs with AMX the host kernel only accepts the full XSAVE size (11008 bytes)
# and fails with EFAULT, so the guest's init dies at once ("ptrace set fp regs
# failed, errno = 14"). This shim, preloaded into linux.uml, reads the full state,
# overlays UML's part and writes the full state back. AMX state itself is never
# used in the guest (it would need arch_prctl permission UML 6.1 cannot grant).
_XSTATE_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(int, pid_t, void *, void *);
static ptrace_fn real_ptrace;
/* UML runs its tracer on one host thread, so one buffer suffices. */
static unsigned char full_xstate[65536] __attribute__((aligned(64)));

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	va_start(ap, request);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);
	if (!real_ptrace)
		real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	if (request == PTRACE_SETREGSET && (unsigned long)addr == NT_X86_XSTATE) {
		struct iovec *part = data;
		struct iovec full = { full_xstate, sizeof(full_xstate) };
		if (real_ptrace(PTRACE_GETREGSET, pid, addr, &full) == 0 &&
		    full.iov_len > part->iov_len) {
			memcpy(full_xstate, part->iov_base, part->iov_len);
			return real_ptrace(PTRACE_SETREGSET, pid, addr, &full);
		}
	}
	return real_ptrace(request, pid, addr, data);
}
"""


def _cpu_has_amx():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def _xstate_shim():
    """Path of the compiled shim (built once into a cache folder)."""
    digest = hashlib.sha256(_XSTATE_SHIM_C.encode()).hexdigest()[:12]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "wirelab")
    path = os.path.join(cache, f"uml-xstate-shim-{digest}.so")
    if os.path.exists(path):
        return path
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MissingToolError(
            "this CPU has AMX, which linux.uml 6.1 cannot handle without a small "
            "preloaded shim; building it needs a C compiler: apt-get install gcc libc6-dev")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = os.path.join(tmp, "shim.c")
        with open(src, "w") as f:
            f.write(_XSTATE_SHIM_C)
        out = os.path.join(tmp, "shim.so")
        argv = [compiler, "-O2", "-shared", "-fPIC", "-o", out, src, "-ldl"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise UmlError(f"building the UML xstate shim failed: {done.stderr.strip()}")
        os.replace(out, path)
    return path


# ------------------------------------------------------------------------ running

def _nul_file(path, items):
    with open(path, "wb") as f:
        for item in items:
            data = os.fsencode(item)
            if b"\0" in data:
                raise ValueError(f"NUL byte in {item!r}")
            f.write(data + b"\0")


def _check_boot_path(path, what):
    if not _SAFE_BOOT_PATH.match(path):
        raise ValueError(f"{what} {path!r}: only letters, digits and ._/+- are supported "
                         "(it goes on the UML kernel command line and into mount options)")


def _under(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def default_env():
    """The environment a command gets in the guest unless the caller adds to it."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "WIRELAB_IN_UML": "1",
    }


def _kill_group(proc):
    """SIGKILL UML's process group, reap UML, and wait for the group to vanish."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    # UML's helpers are its children; once they are gone the group is empty.
    wait_until(lambda: not processes_in_group(proc.pid), _REAP_TIMEOUT,
               what=f"UML process group {proc.pid} to exit")


class _Framer:
    """Pass through only what the guest prints between '<token> start' and '<token> end'."""

    def __init__(self, token, out_fd, err_fd):
        self.start = f"{token} start\n".encode()
        self.end = f"{token} end\n".encode()
        self.out_fd = out_fd
        self.err_fd = err_fd
        self.state = "boot"        # boot -> run -> done
        self.pending = b""         # bytes not yet classified
        self.boot_log = b""        # console output before the command (diagnostics)
        self.started_at = None

    def feed(self, data):
        self.pending += data
        if self.state == "boot":
            i = self.pending.find(self.start)
            if i < 0:
                keep = len(self.start) - 1
                self.boot_log += self.pending[:-keep] if len(self.pending) > keep else b""
                self.pending = self.pending[-keep:]
                return
            self.boot_log += self.pending[:i]
            self.pending = self.pending[i + len(self.start):]
            self.state = "run"
            self.started_at = time.monotonic()
        if self.state == "run":
            i = self.pending.find(self.end)
            if i >= 0:
                self._write(self.pending[:i])
                self.pending = b""
                self.state = "done"
                return
            # Hold back a tail that might be the start of the end marker.
            keep = len(self.end) - 1
            for n in range(min(keep, len(self.pending)), 0, -1):
                if self.end.startswith(self.pending[-n:]):
                    self._write(self.pending[:-n])
                    self.pending = self.pending[-n:]
                    return
            self._write(self.pending)
            self.pending = b""
        else:                      # done: the guest's power-off messages
            self.pending = b""

    def feed_err(self, data):
        """The guest's ttyS0 carries only the command's stderr; UML's own host-side
        complaints come on the same pipe before boot: keep those for diagnostics."""
        if self.state == "boot":
            self.boot_log += data
        else:
            _write_all(self.err_fd, data)

    def close(self):
        """At EOF: a command that never ended (crash) still had its output shown."""
        if self.state == "run":
            self._write(self.pending)
        elif self.state == "boot":
            self.boot_log += self.pending
        self.pending = b""

    def _write(self, data):
        _write_all(self.out_fd, data)


def _fileno(stream, default_stream, default_fd):
    """An fd for ``stream``; None means our own stdout/stderr (its fd, or 1/2 when
    it has none, e.g. under pytest's capture)."""
    if stream is None:
        try:
            return default_stream.fileno()
        except (AttributeError, OSError, ValueError):
            return default_fd
    return stream if isinstance(stream, int) else stream.fileno()


def run_in_uml(argv, *, cwd, writable=(), env=None, timeout, mem="2G",
               stdout=None, stderr=None):
    """Run ``argv`` as root inside a User-Mode Linux guest and return its exit status.

    ``cwd``: working directory (a host path; it must exist). ``writable``: host
    directories the guest mounts read-write at the same path; everything else is
    the host's root, read-only, plus fresh tmpfs on /tmp /run /var/tmp /var/log.
    ``env``: added to :func:`default_env` (PATH etc.); nothing else is inherited.
    ``stdout``/``stderr``: file descriptors or files to stream the command's
    output to (default: this process's fd 1 and 2). ``timeout`` (s) covers the
    boot too. The status is 128+N if the command died from signal N.

    Raises UmlNotInstalledError, UmlTimeoutError (the guest's whole process group
    was killed), UmlError (boot failed, guest crashed), ValueError (bad paths).
    On KeyboardInterrupt the guest is killed before the exception propagates.
    """
    argv = [os.fspath(a) for a in argv]
    if not argv:
        raise ValueError("empty argv")
    binary = uml_binary()
    cwd = os.path.abspath(os.fspath(cwd))
    if not os.path.isdir(cwd):
        raise ValueError(f"working directory {cwd} does not exist")
    writable = [os.path.abspath(os.fspath(d)) for d in writable]
    for d in writable:
        if not os.path.isdir(d):
            raise ValueError(f"writable directory {d} does not exist")
        _check_boot_path(d, "writable directory")
    readonly = []
    if (any(_under(cwd, m) for m in _MASKED_BY_TMPFS)
            and not any(_under(cwd, d) for d in writable)):
        _check_boot_path(cwd, "working directory")
        readonly.append(cwd)
    full_env = default_env()
    full_env.update(env or {})
    for name in full_env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a shell identifier")
    full_env["WIRELAB_IN_UML"] = "1"

    host_env = dict(os.environ)
    if _cpu_has_amx():
        host_env["LD_PRELOAD"] = _xstate_shim()
    out_fd = _fileno(stdout, sys.stdout, 1)
    err_fd = _fileno(stderr, sys.stderr, 2)

    # The control folder belongs to a run ledger, recorded before it exists:
    # if we are killed (SIGKILL) the next Testbed or ``python -m
    # wirelab.net.clean`` removes it and stops the guest.
    run_id = new_run_id("uml-")
    ctl = os.path.join(OWNED_FOLDER_DIR, f"wirelab-{run_id}")   # /tmp/wirelab-uml-<time>-<hex>
    ledger = _open_ledger(run_id, ctl)
    if ledger is not None:
        # Every host process of the guest carries the run's label; only with
        # a ledger, or a clean-up would take the label for a lost run's.
        host_env[LABEL] = run_id
    try:
        os.mkdir(ctl, 0o700)
        _check_boot_path(ctl, "control directory")
        token = secrets.token_hex(16)
        init = os.path.join(ctl, "init")
        shutil.copyfile(INIT_SCRIPT, init)
        os.chmod(init, 0o755)
        _nul_file(os.path.join(ctl, "argv"), argv)
        _nul_file(os.path.join(ctl, "env"), [f"{k}={v}" for k, v in full_env.items()])
        _nul_file(os.path.join(ctl, "cwd"), [cwd])
        _nul_file(os.path.join(ctl, "writable"), writable)
        _nul_file(os.path.join(ctl, "readonly"), readonly)
        boot = [binary, f"mem={mem}", "root=/dev/root", "rootfstype=hostfs", "rootflags=/",
                "ro", f"init={init}", "con=null", "con0=null,fd:1", "ssl=null",
                "ssl0=null,fd:2", *_KERNEL_ARGS, f"wirelab_ctl={ctl}", f"wirelab_token={token}"]
        return _boot(boot, ctl, token, argv, timeout, host_env, out_fd, err_fd, ledger)
    finally:
        shutil.rmtree(ctl, ignore_errors=True)
        # The ledger goes only with everything it owns.
        if ledger is not None and not os.path.exists(ctl) and not labelled_pids(run_id):
            ledger.remove()


def _open_ledger(run_id, folder):
    """A run ledger owning ``folder``, or None where /run/wirelab is not writable
    (an unprivileged user: the folder is then only removed at normal exit)."""
    try:
        ledger = RunLedger(run_id)
    except PermissionError as exc:
        log.warning("no run ledger (%s): a killed run would leave %s behind", exc, folder)
        return None
    try:
        ledger.add_folder(folder)
    except BaseException:
        ledger.remove()
        raise
    return ledger


def _boot(boot, ctl, token, argv, timeout, host_env, out_fd, err_fd, ledger=None):
    began = time.monotonic()
    deadline = began + timeout
    framer = _Framer(token, out_fd, err_fd)
    # UML and its helper processes share one process group: ours, new, so that
    # one killpg ends them all.
    proc = subprocess.Popen(boot, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ctl, env=host_env,
                            start_new_session=True)
    finished = False
    try:
        if ledger is not None:
            ledger.add_pid(proc.pid)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, framer.feed)
            sel.register(proc.stderr, selectors.EVENT_READ, framer.feed_err)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _kill_group(proc)
                    raise UmlTimeoutError(
                        f"{' '.join(argv)} inside User-Mode Linux timed out after "
                        f"{timeout:g}s; killed its process group {proc.pid}", proc.pid)
                for key, _ in sel.select(remaining):
                    data = os.read(key.fileobj.fileno(), 65536)
                    if data:
                        key.data(data)
                    else:
                        sel.unregister(key.fileobj)
            framer.close()
        status = proc.wait(max(0.1, deadline - time.monotonic()))
        finished = True
        if processes_in_group(proc.pid):   # helpers UML did not take down with it
            _kill_group(proc)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise UmlTimeoutError(
            f"{' '.join(argv)} inside User-Mode Linux: the guest did not power off within "
            f"{timeout:g}s; killed its process group {proc.pid}", proc.pid) from None
    finally:
        if not finished and proc.returncode is None:
            _kill_group(proc)   # KeyboardInterrupt, or any error above
        proc.stdout.close()
        proc.stderr.close()
    init_log = _read_text(os.path.join(ctl, "init.log"))
    if framer.started_at is not None:
        log.info("UML guest ran the command %.2fs after start", framer.started_at - began)
    log.debug("UML init log:\n%s", init_log)
    try:
        with open(os.path.join(ctl, "rc")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        pass
    console = framer.boot_log.decode(errors="replace").strip().splitlines()
    detail = "; ".join(line for line in console[-3:] + init_log.splitlines()[-3:] if line)
    raise UmlError(f"User-Mode Linux exited {status} without reporting the exit status of "
                   f"{' '.join(argv)}" + (f": {detail}" if detail else ""))


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
