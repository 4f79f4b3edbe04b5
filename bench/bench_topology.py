#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Benchmark: start-up and teardown of wirelab topologies vs bare Mininet.

Topologies: `line` (h1 - r1 - ... - rN - h2) for each --sizes N, and real
backbones from topologies/zoo.py (--zoo; default the largest Topology Zoo network
in topohub, TataNld: 143 cities, 181 fibres, and a 500-node Gabriel graph from
topohub's synthetic sets), each city with a router and a host, delay=0 (netem
would add the qdiscs' own set-up, and this kernel may lack sch_netem).

For each topology, prints:
- wirelab: Testbed entry (the Topo's plan and routes computed, nodes, links,
  addresses and routes via netlink, offloads off, forwarding on), then the time
  to confirm reachability (line: one ping h1 -> h2 across all N routers; zoo: the
  first host pings every other host, 16 at a time), and exit (every process of
  the run gone);
- bare Mininet: the same nodes (namespaced Mininet Hosts) and links in the same
  order, built and started with Mininet(controller=None), no addresses beyond
  Mininet's own, no routes; and net.stop().
The target is wirelab within 1.2x of bare Mininet. A script that prints
figures, not a test. Run as root: sudo make bench (or bench/bench_topology.py).
"""

import argparse
import concurrent.futures
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
from topologies import zoo_plan  # noqa: E402
from topologies.zoo import ZooTopo  # noqa: E402
from wirelab.errors import WirelabError  # noqa: E402
from wirelab.net.runledger import LABEL, RunLedger, labelled_pids  # noqa: E402
from wirelab.net.testbed import Testbed, new_run_id  # noqa: E402

DEFAULT_ZOO = ["TataNld", "gabriel/500/0"]
PING_WORKERS = 16


class BareCopy(Topo):
    """The nodes and links of a wirelab topology, in the same order, with nothing configured."""

    def build(self, names, links):
        for name in names:
            self.addHost(name)
        for a, b in links:
            self.addLink(a, b)


def shape(topo):
    """(node names, links) of a built Topo, in its order (so ports match)."""
    return list(topo.hosts()), [(a, b) for a, b in topo.links(sort=True)]


def bare(names, links):
    """Bare Mininet, labelled like a wirelab run (see main) so that a crash or
    Ctrl-C here leaves nothing that `make clean-net` cannot find."""
    Mininet.inited = True
    t0 = time.perf_counter()
    net = Mininet(topo=BareCopy(names=names, links=links), controller=None, host=MnHost,
                  link=Link, build=False)
    try:
        net.build()
        net.start()
        t1 = time.perf_counter()
    finally:
        t_stop = time.perf_counter()
        net.stop()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t_stop


def reach_all(tb, topo):
    """The first host pings every other host; every ping must answer."""
    hosts = topo.host_names()

    def one(dst):
        return dst, tb.run(hosts[0], ["ping", "-n", "-c1", "-W2", topo.ip(dst)], timeout=10,
                           check=False).returncode
    with concurrent.futures.ThreadPoolExecutor(max_workers=PING_WORKERS) as pool:
        failed = [dst for dst, rc in pool.map(one, hosts[1:]) if rc != 0]
    if failed:
        raise WirelabError(f"{hosts[0]} cannot reach {len(failed)} of {len(hosts) - 1} hosts "
                           f"(e.g. {', '.join(failed[:5])})")


def ours(make_topo, probe):
    t0 = time.perf_counter()
    topo = make_topo()
    tb = Testbed(topo)
    tb.__enter__()
    try:
        t1 = time.perf_counter()
        probe(tb, topo)
        t2 = time.perf_counter()
    finally:
        t3 = time.perf_counter()
        tb.__exit__(None, None, None)
        t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t4 - t3


def line_case(n):
    def probe(tb, topo):
        tb.run("h1", ["ping", "-c1", "-W5", tb.ip("h2")], timeout=10)
    return f"line {n}", lambda: LineTopo(n=n), probe


def zoo_case(spec):
    """``TataNld`` or ``gabriel/500/0`` (dataset/network)."""
    first, _, rest = spec.partition("/")
    dataset, network = (first, rest) if first in zoo_plan.DATASETS and rest else ("topozoo", spec)
    return (f"zoo {spec}", lambda: ZooTopo(network, delay=0, dataset=dataset), reach_all)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 50, 100, 200],
                        help="line sizes (routers)")
    parser.add_argument("--zoo", nargs="*", default=DEFAULT_ZOO,
                        help="zoo networks: NAME (Topology Zoo) or DATASET/NAME "
                             f"(default: {' '.join(DEFAULT_ZOO)})")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median shown)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if any(not 1 <= n <= 254 for n in args.sizes):
        parser.error(f"--sizes: each N must be 1..254, got {args.sizes}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    try:
        cases = [line_case(n) for n in args.sizes] + [zoo_case(z) for z in args.zoo]
        for _, make_topo, _ in cases[len(args.sizes):]:
            make_topo()         # a bad network name fails here, before anything starts
    except WirelabError as exc:
        print(f"bench_topology: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if os.geteuid() != 0:
        print("bench_topology: error: needs root", file=sys.stderr)
        return 4
    # Bare Mininet's shells carry a run label and ledger of their own, as a
    # Testbed's do, so a crashed benchmark is cleaned by the next run.
    label = new_run_id()
    record = RunLedger(label)
    os.environ[LABEL] = label
    try:
        return measure(args, cases)
    except KeyboardInterrupt:
        print("bench_topology: interrupted", file=sys.stderr)
        return 130
    except WirelabError as exc:
        print(f"bench_topology: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        os.environ.pop(LABEL, None)
        if not labelled_pids(label):
            record.remove()


def measure(args, cases):
    rows = []
    print(f"{'topology':<20} {'nodes':>5} {'links':>5} {'bare start':>10} {'ours start':>10} "
          f"{'ratio':>6} {'reach':>8} {'bare stop':>9} {'ours stop':>9} {'ratio':>6}")
    for name, make_topo, probe in cases:
        names, links = shape(make_topo())
        b_start, b_stop, o_start, o_reach, o_stop = [], [], [], [], []
        for _ in range(args.repeat):
            s, t = bare(names, links)
            b_start.append(s)
            b_stop.append(t)
            s, p, t = ours(make_topo, probe)
            o_start.append(s)
            o_reach.append(p)
            o_stop.append(t)
        row = {"topology": name, "nodes": len(names), "links": len(links),
               "bare_start": statistics.median(b_start), "ours_start": statistics.median(o_start),
               "reach": statistics.median(o_reach), "bare_stop": statistics.median(b_stop),
               "ours_stop": statistics.median(o_stop)}
        row["start_ratio"] = row["ours_start"] / row["bare_start"]
        row["stop_ratio"] = row["ours_stop"] / row["bare_stop"]
        rows.append(row)
        print(f"{name:<20} {row['nodes']:>5} {row['links']:>5} {row['bare_start']:>9.2f}s "
              f"{row['ours_start']:>9.2f}s {row['start_ratio']:>6.2f} {row['reach']:>7.2f}s "
              f"{row['bare_stop']:>8.2f}s {row['ours_stop']:>8.2f}s {row['stop_ratio']:>6.2f}",
              flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
