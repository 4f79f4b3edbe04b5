"""Command-line pieces shared by the packet tools: a parser whose errors are
one line (exit 2), bounded numbers, root and output helpers."""

import argparse
import json
import os
import sys

from wirelab.errors import ConfigError, NotRootError


class ToolParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises :class:`ConfigError`: the entry point
    prints one line (``wirelab packet craft: error: ...``) and exits 2, instead
    of argparse's usage block. ``--help`` still prints the full help, exit 0."""

    def error(self, message):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def bounded(kind, low, high, what=None):
    """An argparse ``type`` accepting ``kind`` values in [low, high]."""
    def convert(text):
        try:
            value = kind(text, 0) if kind is int else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low}..{high}"
                                             + (f" ({what})" if what else ""))
        return value
    convert.__name__ = what or kind.__name__   # argparse names the type in its messages
    return convert


def add_json(parser):
    parser.add_argument("--json", action="store_true",
                        help="JSON lines on stdout (one object per line) instead of text")


def require_root(what):
    """Raw sockets need root (CAP_NET_RAW); say so in one line before scapy does."""
    if os.geteuid() != 0:
        raise NotRootError(f"{what} needs root (raw sockets); run it inside an emulated host "
                           f"or with sudo")


def print_json(record, stream=None):
    """One JSON object on one line, flushed (a reader may be waiting for it)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(record, separators=(", ", ": ")) + "\n")
    stream.flush()


def print_line(text, stream=None):
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()
