#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Benchmark: start-up and teardown of `line` (h1 - r1 - ... - rN - h2) vs bare Mininet.

For each N, prints:
- wirelab: Testbed(LineTopo(n=N)) entry (nodes, links, addresses and routes via
  netlink, offloads off, forwarding on), plus the time for end-to-end
  reachability confirmed (one ping h1 -> h2 across all N routers), and exit
  (every process of the run gone);
- bare Mininet: the same nodes (namespaced Mininet Hosts) and links, built and
  started with Mininet(controller=None), no routes; and net.stop().
The target is wirelab within 1.2x of bare Mininet. A script that prints
figures, not a test. Run as root: sudo make bench (or bench/bench_topology.py).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mininet.link import Link  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.node import Host as MnHost  # noqa: E402
from mininet.topo import Topo  # noqa: E402

from topologies.line import LineTopo  # noqa: E402
from wirelab.net.runledger import LABEL, RunLedger, labelled_pids  # noqa: E402
from wirelab.net.testbed import Testbed, new_run_id  # noqa: E402


class BareLine(Topo):
    """The same nodes and links as LineTopo(n), with nothing configured."""

    def build(self, n):
        names = ["h1"] + [f"r{i}" for i in range(1, n + 1)] + ["h2"]
        for name in names:
            self.addHost(name)
        for a, b in zip(names, names[1:]):
            self.addLink(a, b)


def bare(n):
    """Bare Mininet, labelled like a wirelab run (see main) so that a crash or
    Ctrl-C here leaves nothing that `make clean-net` cannot find."""
    Mininet.inited = True
    t0 = time.perf_counter()
    net = Mininet(topo=BareLine(n=n), controller=None, host=MnHost, link=Link, build=False)
    try:
        net.build()
        net.start()
        t1 = time.perf_counter()
    finally:
        t_stop = time.perf_counter()
        net.stop()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t_stop


def ours(n):
    t0 = time.perf_counter()
    tb = Testbed(LineTopo(n=n))
    tb.__enter__()
    try:
        t1 = time.perf_counter()
        h2 = tb.ip("h2")
        tb.run("h1", ["ping", "-c1", "-W5", h2], timeout=10)
        t2 = time.perf_counter()
    finally:
        t3 = time.perf_counter()
        tb.__exit__(None, None, None)
        t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t4 - t3


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median shown)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if any(not 1 <= n <= 254 for n in args.sizes):
        parser.error(f"--sizes: each N must be 1..254, got {args.sizes}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if os.geteuid() != 0:
        print("bench_topology: error: needs root", file=sys.stderr)
        return 4
    # Bare Mininet's shells carry a run label and ledger of their own, as a
    # Testbed's do, so a crashed benchmark is cleaned by the next run.
    label = new_run_id()
    record = RunLedger(label)
    os.environ[LABEL] = label
    try:
        return measure(args)
    except KeyboardInterrupt:
        print("bench_topology: interrupted", file=sys.stderr)
        return 130
    finally:
        os.environ.pop(LABEL, None)
        if not labelled_pids(label):
            record.remove()


def measure(args):
    rows = []
    print(f"{'N':>4} {'bare start':>10} {'ours start':>10} {'ratio':>6} {'ping h1-h2':>10} "
          f"{'bare stop':>9} {'ours stop':>9} {'ratio':>6}")
    for n in args.sizes:
        b_start, b_stop, o_start, o_ping, o_stop = [], [], [], [], []
        for _ in range(args.repeat):
            s, t = bare(n)
            b_start.append(s)
            b_stop.append(t)
            s, p, t = ours(n)
            o_start.append(s)
            o_ping.append(p)
            o_stop.append(t)
        row = {"n": n, "bare_start": statistics.median(b_start), "ours_start": statistics.median(o_start),
               "ping": statistics.median(o_ping), "bare_stop": statistics.median(b_stop),
               "ours_stop": statistics.median(o_stop)}
        row["start_ratio"] = row["ours_start"] / row["bare_start"]
        row["stop_ratio"] = row["ours_stop"] / row["bare_stop"]
        rows.append(row)
        print(f"{n:>4} {row['bare_start']:>9.2f}s {row['ours_start']:>9.2f}s {row['start_ratio']:>6.2f} "
              f"{row['ping']:>9.3f}s {row['bare_stop']:>8.2f}s {row['ours_stop']:>8.2f}s "
              f"{row['stop_ratio']:>6.2f}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
