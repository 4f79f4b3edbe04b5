"""What the three MapReduce commands share: logging, the error guard, options."""

import argparse
import logging
import signal
import sys

from wirelab.errors import WirelabError

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class MapReduceError(WirelabError):
    """A MapReduce program cannot start or go on (bad option, address in use, ...)."""

    exit_code = 2


class Stop(BaseException):
    """SIGTERM: unwind so that ``finally`` cleans up (temporary directories, sockets)."""


def setup_logging(level, name):
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise MapReduceError(f"--loglevel {level!r}: use debug, info, warning or error")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, stream=sys.stderr)
    return logging.getLogger(name)


def port_number(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0..65535)")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be positive")
    return value


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_receiver_options(parser, deadline_s, max_bytes):
    parser.add_argument("--loglevel", default="info", help="debug, info, warning or error (stderr)")
    parser.add_argument("--event-log", default=None, metavar="FILE",
                        help="append one JSON line per message sent/received and per decision")
    parser.add_argument("--receive-deadline", type=positive_float, default=deadline_s, metavar="S",
                        help=f"a connection must deliver its message within S seconds (default {deadline_s:g})")
    parser.add_argument("--max-message-bytes", type=positive_int, default=max_bytes, metavar="N",
                        help=f"longer messages are dropped unread (default {max_bytes})")


def run_main(prog, body):
    """Run ``body()``: errors become one line on stderr and an exit code; SIGTERM unwinds."""
    def on_term(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    try:
        return body()
    except Stop:
        return 143
    except KeyboardInterrupt:
        return 130
    except WirelabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
