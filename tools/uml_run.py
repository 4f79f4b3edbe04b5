#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Run a command as root inside User-Mode Linux, whose kernel has sch_netem.

Example (the netem tests on a kernel without sch_netem):

    tools/uml_run.py --writable results -- .venv/bin/python -m pytest -p no:cacheprovider -m netem

The host's root file system is visible read-only; --writable folders are mounted
read-write at the same paths; /tmp, /run, /var/tmp and /var/log are empty tmpfs.
The command's stdout and stderr stream here live; the exit status is the command's
(124: timed out, the guest was killed; 130: interrupted).
"""

import argparse
import logging
import math
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.net import uml  # noqa: E402  (after the sys.path change above)
from wirelab.net.kernel import has_sch_netem  # noqa: E402
from wirelab.errors import Interrupted, WirelabError  # noqa: E402

# Passed from the caller's environment into the guest (the rest is not: the
# guest gets a clean root environment).
PASSED_ENV = ("PATH", "TERM", "LANG", "LC_ALL", "PYTEST_ADDOPTS", "PYTHONPATH")
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def guest_env(extra):
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update({name: value for name, value in os.environ.items() if name.startswith("WIRELAB_")})
    path = env.get("PATH", uml.default_env()["PATH"]).split(":")
    env["PATH"] = ":".join(path + [d for d in SBIN_DIRS if d not in path])
    # The guest's console has no size; tell full-screen-ish tools (pytest) ours.
    size = shutil.get_terminal_size()
    env.setdefault("COLUMNS", str(size.columns))
    env.setdefault("LINES", str(size.lines))
    # The guest's stdout is always a terminal (its console); when ours is not,
    # ask tools not to colour their output.
    if not sys.stdout.isatty():
        env.update({"TERM": "dumb", "NO_COLOR": "1", "PY_COLORS": "0"})
    env.update(extra)
    return env


def parse_env(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def banner():
    """One line saying why and where the command runs."""
    try:
        reason = "" if has_sch_netem() else "this kernel has no sch_netem; "
    except (PermissionError, WirelabError):
        reason = ""
    return f"wirelab: {reason}running inside User-Mode Linux (linux.uml {uml.uml_version()})"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tools/uml_run.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                        help="kill the guest after S seconds, boot included (default: %(default)g)")
    parser.add_argument("--writable", action="append", default=[], metavar="DIR",
                        help="host folder the guest may write to (repeatable)")
    parser.add_argument("--cwd", default=os.getcwd(), metavar="DIR",
                        help="working directory of the command (default: the current one)")
    parser.add_argument("--env", action="append", type=parse_env, default=[], metavar="NAME=VALUE",
                        help="set a variable in the guest (repeatable); PATH, TERM, LANG, "
                             "LC_ALL, PYTEST_ADDOPTS, PYTHONPATH and WIRELAB_* are passed on")
    parser.add_argument("--mem", default="2G", help="guest memory (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="report the boot time and the guest's init log (modules loaded)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command and its arguments, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="wirelab: %(message)s", stream=sys.stderr)

    def on_sigterm(signum, frame):
        raise Interrupted("terminated")
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(banner(), file=sys.stderr, flush=True)
        return uml.run_in_uml(command, cwd=args.cwd, writable=args.writable,
                              env=guest_env(dict(args.env)), timeout=args.timeout,
                              mem=args.mem)
    except (KeyboardInterrupt, Interrupted) as exc:
        print("wirelab: interrupted; the guest was killed", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except (WirelabError, ValueError) as exc:
        print(f"wirelab: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
