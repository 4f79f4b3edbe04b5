"""Each topology built for real: reachability, kernel routes = plan, nothing left.

Needs root (conftest skips otherwise). Pings run in parallel threads, each a
``ping -c1 -W1`` under a timeout, so a topology takes about a second.
"""

import concurrent.futures
import contextlib
import os
import subprocess

import pytest

from hoststate import root_links
from topologies.cluster import ClusterTopo
from topologies.dumbbell import DumbbellTopo
from topologies.internet import InternetTopo
from topologies.line import LineTopo
from wirelab.net import runledger
from wirelab.proc import wait_until
from wirelab.net.testbed import Testbed, new_run_id

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOPOLOGIES = {
    "line3": lambda: LineTopo(3),
    "dumbbell2x2": lambda: DumbbellTopo(2, 2),
    "cluster3x2": lambda: ClusterTopo(workers=3, clients=2),
    "internet": lambda: InternetTopo(),
}


def ping_all(tb, pairs, ttl=None):
    """Ping (src node, dst address) pairs in parallel; return the failures with output."""
    def one(pair):
        src, dst = pair
        argv = ["ping", "-n", "-c1", "-W1"] + (["-t", str(ttl)] if ttl else []) + [dst]
        done = tb.run(src, argv, timeout=5, check=False)
        return pair, done.returncode, (done.stdout + done.stderr).strip().splitlines()[-2:]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, pairs))
    return [(pair, rc, tail) for pair, rc, tail in results if rc != 0]


def diagnostics(tb, nodes):
    """What a person needs when a ping fails: each node's routes."""
    lines = []
    for node in nodes:
        done = tb.run(node, ["ip", "-4", "route"], timeout=5, check=False)
        lines.append(f"--- {node}: ip -4 route\n{done.stdout}")
    return "\n".join(lines)


def kernel_table(tb, node):
    return sorted((r["dst"], r["gateway"], r["dev"]) for r in tb.routes(node))


def planned_table(topo, node):
    return sorted((r["dst"], r["gateway"], r["dev"]) for r in topo.intended_routes(node))


def assert_root_links_back_to(before):
    # Other test runs on this machine may create and delete links meanwhile:
    # wait (briefly) for ours to be gone rather than compare one instant.
    try:
        wait_until(lambda: root_links() == before, 5, what="root links to be as before")
    except TimeoutError:
        assert root_links() == before, "the root namespace's links changed"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_topology_all_pairs_reachable_and_routes_as_planned(name):
    topo = TOPOLOGIES[name]()
    links_before = root_links()
    with Testbed(topo) as tb:
        run_id = tb.run_id
        hosts = topo.host_names()
        # every host to every other host ...
        pairs = [(a, topo.ip(b)) for a in hosts for b in hosts if a != b]
        # ... and the first host to every router interface in the plan
        pairs += [(hosts[0], ip) for ip, (node, _) in topo.owners().items()
                  if topo.role(node) == "router"]
        failed = ping_all(tb, pairs)
        assert not failed, (f"{len(failed)} of {len(pairs)} pings failed: {failed}\n"
                            + diagnostics(tb, sorted({p[0] for p, _, _ in failed})
                                          + topo.router_names()))
        for node in topo.router_names() + hosts:
            assert kernel_table(tb, node) == planned_table(topo, node), node
        for router in tb.routers:
            assert router.sysctl("net/ipv4/ip_forward") == "1"
    assert runledger.labelled_pids(run_id) == {}, "processes of the run are still alive"
    assert_root_links_back_to(links_before)


def ping6_all(tb, pairs):
    """ping -6 (src node, dst address) pairs in parallel; the failures with output."""
    def one(pair):
        src, dst = pair
        done = tb.run(src, ["ping", "-6", "-n", "-c1", "-W1", dst], timeout=5, check=False)
        return pair, done.returncode, (done.stdout + done.stderr).strip().splitlines()[-2:]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, pairs))
    return [(pair, rc, tail) for pair, rc, tail in results if rc != 0]


def kernel_table6(tb, node):
    # Routes on lo are the kernel's own (::1 is in main on some kernels, in local
    # on others) and not part of the plan.
    return sorted((r["dst"], r["gateway"], r["dev"]) for r in tb.routes(node, family=6)
                  if r["dev"] != "lo")


def planned_table6(topo, node):
    return sorted((r["dst"], r["gateway"], r["dev"]) for r in topo.intended_routes(node, family=6))


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_topology_ipv6_all_pairs_reachable_and_routes_as_planned(name):
    """Dual-stack: every host pings every other over IPv6 (and the first host every
    router's IPv6 addresses) at once -- no DAD wait --, every IPv6 table equals
    the plan's, routers forward IPv6, and no address is tentative."""
    topo = TOPOLOGIES[name]()
    with Testbed(topo) as tb:
        hosts = topo.host_names()
        pairs = [(a, topo.ip(b, family=6)) for a in hosts for b in hosts if a != b]
        pairs += [(hosts[0], ip) for ip, (node, _) in topo.owners(family=6).items()
                  if topo.role(node) == "router"]
        failed = ping6_all(tb, pairs)
        assert not failed, (f"{len(failed)} of {len(pairs)} pings failed: {failed}\n"
                            + "\n".join(tb.run(n, ["ip", "-6", "route"], timeout=5).stdout
                                        for n in topo.router_names()))
        for node in topo.router_names() + hosts:
            assert kernel_table6(tb, node) == planned_table6(topo, node), node
            assert tb.ip(node, family=6) == topo.ip(node, family=6)
            with tb.iproute(node) as ipr:
                tentative = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=10)
                             if (a.get_attr("IFA_FLAGS") or a["flags"]) & 0x40]   # IFA_F_TENTATIVE
            assert tentative == [], f"{node}: tentative {tentative}"
        for router in tb.routers:
            assert router.sysctl("net/ipv6/conf/all/forwarding") == "1"
        for host in tb.hosts:
            assert host.sysctl("net/ipv6/conf/all/forwarding") == "0"
            assert host.sysctl(f"net/ipv6/conf/{host.intfNames()[-1]}/accept_ra") == "0"


@pytest.mark.parametrize("name, pairs", [
    ("line3", [("h1", "h2"), ("h2", "h1")]),
    ("internet", [("home1", "srv1"), ("home1", "campus"), ("office", "home2"), ("srv2", "campus")]),
])
def test_traceroute6_prints_the_planned_hops(name, pairs):
    from wirelab.observe.traceroute_parse import parse
    topo = TOPOLOGIES[name]()
    with Testbed(topo) as tb:
        for src, dst in pairs:
            want = topo.expected_traceroute(src, dst, family=6)
            done = tb.run(src, ["traceroute", "-6", "-n", "-q", "1", "-w", "1", "-m", str(len(want) + 2),
                                topo.ip(dst, family=6)], timeout=30)
            assert [h["addr"] for h in parse(done.stdout)] == want, done.stdout


def test_zoo_abilene_without_delays_is_dual_stack():
    """topologies/zoo.py builds on PlannedTopo, so it gets the IPv6 twin of its
    plan: all pairs ping -6, IPv6 tables == plan, traceroute -6 == plan."""
    pytest.importorskip("topohub", reason="topohub (Topology Zoo data) is not installed")
    from topologies.zoo import ZooTopo
    from wirelab.observe.traceroute_parse import parse
    topo = ZooTopo("Abilene", delay=0)
    with Testbed(topo) as tb:
        hosts = topo.host_names()
        pairs = [(a, topo.ip(b, family=6)) for a in hosts for b in hosts if a != b]
        failed = ping6_all(tb, pairs)
        assert not failed, f"{len(failed)} of {len(pairs)} pings failed: {failed[:5]}"
        for node in topo.router_names() + hosts:
            assert kernel_table6(tb, node) == planned_table6(topo, node), node
        src, dst = hosts[0], hosts[-1]
        want = topo.expected_traceroute(src, dst, family=6)
        done = tb.run(src, ["traceroute", "-6", "-n", "-q", "1", "-w", "1", "-m", str(len(want) + 2),
                            topo.ip(dst, family=6)], timeout=30)
        assert [h["addr"] for h in parse(done.stdout)] == want, done.stdout


def test_line200_builds_and_h1_reaches_h2():
    topo = LineTopo(200)
    links_before = root_links()
    with Testbed(topo) as tb:
        run_id = tb.run_id
        # 200 routers: more than Linux's default TTL of 64 allows; the topology
        # raised it to 255 on every node, ping's own TTL included.
        failed = ping_all(tb, [("h1", topo.ip("h2"))])
        assert not failed, failed
        # IPv6 too: every node's hop limit is 255 (the namespace default before its links)
        failed = ping6_all(tb, [("h1", topo.ip("h2", family=6))])
        assert not failed, failed
        assert kernel_table(tb, "r100") == planned_table(topo, "r100")
    assert runledger.labelled_pids(run_id) == {}
    assert_root_links_back_to(links_before)


# /usr/bin/mn, run as is, except for one thing: on any exception mn calls
# mininet.clean.cleanup(), i.e. "mn -c", which kills every Mininet node shell,
# ping and mnexec on the machine and deletes every *-ethN link, other people's
# runs included. The wrapper replaces it with an error exit.
MN_WITHOUT_MACHINE_WIDE_CLEANUP = """
import runpy, sys
import mininet.clean
def refuse():
    sys.stderr.write("mn's machine-wide cleanup (mn -c) suppressed by the test\\n")
    raise SystemExit(1)
mininet.clean.cleanup = mininet.clean.Cleanup.cleanup = refuse
sys.argv = ["mn"] + sys.argv[1:]
runpy.run_path("/usr/bin/mn", run_name="__main__")
"""


@contextlib.contextmanager
def mn_run_label():
    """A run id with a ledger owned by this process: everything mn starts
    inherits the label, so we can prove none of it is left; and with a live
    ledger no other run's stale-run cleanup takes mn's shells for orphans."""
    label = new_run_id()
    record = runledger.RunLedger(label)
    try:
        yield label
    finally:
        record.remove()


def run_mn(topo_file, topo_arg, label, timeout=60):
    argv = ["/usr/bin/python3", "-c", MN_WITHOUT_MACHINE_WIDE_CLEANUP,
            "--custom", os.path.join("topologies", topo_file), "--topo", topo_arg,
            "--controller", "none", "--test", "pingall"]
    env = dict(os.environ, **{runledger.LABEL: label})
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("topo_file, topo_arg", [
    ("line.py", "line,3"),
    ("cluster.py", "cluster,3,2"),
    ("dumbbell.py", "dumbbell,2"),
    ("internet.py", "internet"),
])
def test_mn_custom_pingall(topo_file, topo_arg):
    links_before = root_links()
    with mn_run_label() as label:
        done = run_mn(topo_file, topo_arg, label)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Caught exception" not in output, output[-2000:]
        assert "Results: 0% dropped" in output, output[-2000:]
        assert runledger.labelled_pids(label) == {}, "mn left processes behind"
    assert_root_links_back_to(links_before)


def test_mn_custom_bad_parameter_is_one_clear_line_and_creates_nothing():
    links_before = root_links()
    with mn_run_label() as label:
        done = run_mn("line.py", "line,abc", label)
        assert done.returncode != 0
        assert "ConfigError: line: n (routers) must be an integer from 1 to 254, not 'abc'" \
            in done.stderr, done.stderr[-2000:]
        assert "*** Creating network" not in done.stdout + done.stderr
        assert runledger.labelled_pids(label) == {}
    assert_root_links_back_to(links_before)
