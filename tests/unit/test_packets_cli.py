"""``wirelab packet``: help for each subcommand, one-line errors with exit 2 for
bad arguments (before any packet is sent, without root)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wirelab(*args):
    return subprocess.run([sys.executable, "-m", "wirelab", "packet", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_overview_names_every_subcommand():
    done = wirelab("--help")
    assert done.returncode == 0 and done.stderr == ""
    for name in ("craft", "sniff", "trace", "handshake"):
        assert f"\n  {name} " in done.stdout
    assert wirelab().returncode == 2


@pytest.mark.parametrize("sub, words", [("craft", "--ttl"), ("sniff", "--filter"), ("trace", "--max-hops")])
def test_help_of_each_subcommand(sub, words):
    done = wirelab(sub, "--help")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"usage: wirelab packet {sub} ") and words in done.stdout


def test_the_module_entry_point_works_too():
    done = subprocess.run([sys.executable, "-m", "wirelab.packets.cli", "trace", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and "usage: wirelab packet trace" in done.stdout


@pytest.mark.parametrize("args, words", [
    (["bogus"], "unknown subcommand 'bogus'"),
    (["craft"], "the following arguments are required: DST"),
    (["craft", "10.0.0.1", "--ttl", "300"], "300 is outside 0..255"),
    (["craft", "example.com"], "not an IPv4 address"),
    (["craft", "10.0.0.1", "--payload", "x", "--size", "3"], "not allowed with argument"),
    (["craft", "10.0.0.1", "--proto", "tcp", "--flags", "Q"], "unknown letters Q"),
    (["sniff", "-c", "x"], "'x' is not an integer"),
    (["sniff", "-r", "/nonexistent.pcap"], "no such file"),
    (["sniff", "-r", "/dev/null", "--timeout", "3"], "applies to a live capture"),
    (["trace", "10.0.0.1", "-q", "0"], "outside 1..10"),
    (["trace", "10.0.0.1", "-f", "9", "-m", "3"], "beyond --max-hops"),
    (["trace", "10.0.0.1", "--proto", "gre"], "invalid choice: 'gre'"),
])
def test_bad_arguments_are_one_line_exit_2(args, words):
    done = wirelab(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("wirelab packet") and ": error: " in lines[0] and words in lines[0], lines[0]
    assert done.stdout == "" and "Traceback" not in done.stderr
