"""Errors with a one-line message and the exit code a command-line tool returns.

Library code raises these; only entry points (``wirelab.cli.main_guard``) turn
them into ``exit(code)``.
"""


class WirelabError(Exception):
    """Base class: ``str(err)`` is one line a user can act on."""

    exit_code = 1


class ConfigError(WirelabError, ValueError):
    """Bad parameters (topology, experiment, impairment): nothing was created."""

    exit_code = 2


class PreflightError(WirelabError):
    """The machine cannot run the testbed (not root, missing tool or module)."""

    exit_code = 3


class NotRootError(PreflightError):
    exit_code = 4


class MissingToolError(PreflightError):
    exit_code = 5


class CommandError(WirelabError):
    """A command exited non-zero or timed out; carries argv, exit code, stderr."""

    exit_code = 6

    def __init__(self, argv, returncode, stderr="", node=None, timeout=None):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr or ""
        self.node = node
        self.timeout = timeout
        where = f" on {node}" if node else ""
        if timeout is not None:
            what = f"timed out after {timeout:g}s"
        else:
            what = f"exited {returncode}"
        last = self.stderr.strip().splitlines()[-1:] or [""]
        detail = f": {last[0]}" if last[0] else ""
        super().__init__(f"{' '.join(map(str, self.argv))}{where} {what}{detail}")


class VerificationError(WirelabError):
    """An experiment's claim did not hold."""

    exit_code = 7


class WaitTimeout(WirelabError, TimeoutError):
    """A condition awaited with :func:`wirelab.proc.wait_until` did not come true."""

    exit_code = 8


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived; raised so that ``finally`` blocks run.

    A ``BaseException``, like ``KeyboardInterrupt`` (SIGINT), so that no
    ``except Exception`` on the way can swallow it.
    """

    exit_code = 143
