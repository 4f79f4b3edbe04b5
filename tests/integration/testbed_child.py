"""Run by the integration tests in a child process: build a network, report, then wait.

Default: build TinyTopo, print one JSON line {run_id, pids, inodes} once the
network is up, then block on stdin so the parent can kill it with the signal
under test.

``--interrupt-after S --run-id ID [--topo internet]``: send SIGINT to itself S
seconds after entering the Testbed (mostly while the network is being built),
with the run id given; each node's namespace inode is printed as a JSON line
{"inode": N} as soon as its shell is recorded in the ledger, and {"built": true}
if the build finished first. Exit 130 when interrupted, 0 otherwise.
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny_topo import TinyTopo  # noqa: E402
from wirelab.errors import Interrupted  # noqa: E402
from wirelab.net import testbed  # noqa: E402
from wirelab.net.runledger import RunLedger  # noqa: E402
from wirelab.net.testbed import Testbed  # noqa: E402


def report(**fields):
    print(json.dumps(fields), flush=True)


def wait_for_signal():
    with Testbed(TinyTopo()) as tb:
        tb.start("h2", ["sleep", "300"], name="background-sleep")
        nodes = tb.net.hosts + tb.net.switches
        report(run_id=tb.run_id, pids=[n.pid for n in nodes],
               inodes=[os.stat(f"/proc/{n.pid}/ns/net").st_ino for n in nodes])
        sys.stdin.read()


def interrupt_while_building(delay, run_id, topo_name):
    if topo_name == "internet":
        from topologies.internet import InternetTopo
        topo = InternetTopo()
    else:
        topo = TinyTopo()
    testbed.new_run_id = lambda: run_id
    add_pid = RunLedger.add_pid

    def add_pid_and_report(ledger, pid):
        add_pid(ledger, pid)
        try:
            report(inode=os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            pass
    RunLedger.add_pid = add_pid_and_report
    # The fault under test: an interrupt at an arbitrary point of the build.
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with Testbed(topo):
        report(built=True)
    # Built and torn down before the timer fired: wait for it, so that the
    # interrupt never lands in the interpreter's shutdown.
    timer.join(10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interrupt-after", type=float)
    parser.add_argument("--run-id")
    parser.add_argument("--topo", default="tiny", choices=["tiny", "internet"])
    args = parser.parse_args()
    try:
        if args.interrupt_after is None:
            wait_for_signal()
        else:
            interrupt_while_building(args.interrupt_after, args.run_id, args.topo)
    except KeyboardInterrupt:
        sys.exit(130)
    except Interrupted:
        sys.exit(143)


if __name__ == "__main__":
    main()
