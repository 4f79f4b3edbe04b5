"""Abilene built for real: all pairs reach each other, the kernel's tables are the
plan's, traceroute follows the shortest-delay path; with fibre delays (netem, in
User-Mode Linux where the kernel lacks it) the RTT is at least twice the fibre.

Needs root (conftest skips otherwise).
"""

import concurrent.futures
import ipaddress
import random

import pytest

from test_topologies_live import assert_root_links_back_to, diagnostics, kernel_table, planned_table, ping_all
from hoststate import root_links
from topologies import zoo_plan
from topologies.zoo import ZooTopo
from wirelab.experiment import timers
from wirelab.net import runledger
from wirelab.net.testbed import Testbed
from wirelab.observe.traceroute_parse import parse as parse_traceroute

# (from, to): coast to coast both ways, and a path through the middle.
TRACE_PAIRS = [("h_newyork", "h_losangel"), ("h_losangel", "h_newyork"),
               ("h_seattle", "h_atlanta"), ("h_chicago", "h_houston")]


def traceroute_hops(tb, src, dst_ip):
    done = tb.run(src, ["traceroute", "-n", "-q", "1", "-w", "2", "-m", "20", dst_ip], timeout=60)
    return [hop["addr"] for hop in parse_traceroute(done.stdout)], done.stdout


@pytest.fixture(scope="module")
def abilene():
    topo = ZooTopo("Abilene", delay=0)
    before = root_links()
    with Testbed(topo) as tb:
        yield topo, tb
        run_id = tb.run_id
    assert runledger.labelled_pids(run_id) == {}, "processes of the run are still alive"
    assert_root_links_back_to(before)


def test_abilene_without_delays_needs_no_netem(abilene):
    topo, tb = abilene
    assert topo.declared_netem() == {} and list(tb.impairments) == []


def test_all_pairs_reach_each_other(abilene):
    topo, tb = abilene
    hosts = topo.host_names()
    pairs = [(a, topo.ip(b)) for a in hosts for b in hosts if a != b]
    pairs += [(hosts[0], ip) for ip, (node, _) in topo.owners().items() if topo.role(node) == "router"]
    failed = ping_all(tb, pairs)
    assert not failed, (f"{len(failed)} of {len(pairs)} pings failed: {failed}\n"
                        + diagnostics(tb, sorted({p[0] for p, _, _ in failed}) + topo.router_names()))


def test_kernel_tables_are_the_plan(abilene):
    topo, tb = abilene
    for node in topo.router_names() + topo.host_names():
        assert kernel_table(tb, node) == planned_table(topo, node), node


def test_kernel_forwarding_agrees_with_longest_prefix_match(abilene):
    """The routing experiment's check on every router: for every address of the
    plan and 300 random ones in and around the base, the kernel's lookup
    (RTM_GETROUTE) is the reference longest-prefix match over the tables read back."""
    from pyroute2.netlink.exceptions import NetlinkError
    from experiments.routing import agrees, reference_choice
    topo, tb = abilene
    rng = random.Random(9)
    base = ipaddress.ip_network(zoo_plan.BASE)
    targets = list(topo.owners()) + [
        str(ipaddress.ip_address(int(base.network_address) + rng.randrange(1 << 15)))
        for _ in range(250)] + [f"10.{rng.randrange(256)}.{rng.randrange(256)}.1" for _ in range(50)]
    for router in topo.router_names():
        local, main = tb.routes(router, table=255), tb.routes(router)
        with tb.iproute(router) as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for ip in targets:
                try:
                    got = tb.route_get(router, ip, ipr=ipr)
                    kernel = {"gateway": got["gateway"], "dev": names.get(got["oif"]), "type": got["type"]}
                except NetlinkError as exc:
                    kernel = {"error": exc.code}
                want = reference_choice(local, main, ip)
                assert agrees(kernel, want), (router, ip, kernel, want)


@pytest.mark.parametrize("src, dst", TRACE_PAIRS)
def test_traceroute_follows_the_shortest_delay_path(abilene, src, dst):
    topo, tb = abilene
    hops, out = traceroute_hops(tb, src, topo.ip(dst))
    assert hops == topo.expected_traceroute(src, dst), out
    routers = [topo.owners()[ip][0] for ip in hops[:-1]]
    assert routers == topo.shortest_delay_path(src, dst), out


@pytest.mark.netem
def test_rtt_is_at_least_twice_the_fibre_delay(host_state):
    """netem on both ends of every fibre: a ping's RTT crosses each fibre twice."""
    topo = ZooTopo("Abilene")
    with Testbed(topo) as tb:
        assert len(list(tb.impairments)) == 2 * len(topo.fibres())
        pairs = [("h_newyork", "h_losangel"), ("h_seattle", "h_washingt"), ("h_chicago", "h_indianap")]

        def rtt_min(pair):
            src, dst = pair
            out = tb.run(src, ["ping", "-n", "-c", "3", "-i", "0.2", topo.ip(dst)], timeout=20).stdout
            return float(out.strip().splitlines()[-1].split("=")[1].split("/")[0]), out
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(rtt_min, pairs))
        for (src, dst), (rtt, out) in zip(pairs, results):
            fibre = topo.path_delay_ms(src, dst)
            assert fibre > 1.0
            # the floor is physics; the ceiling one host tick per netem qdisc
            # crossed (both ends of every fibre, both ways) and the forwarding
            fibres = len(topo.shortest_delay_path(src, dst)) - 1
            lo, hi = timers.netem_rtt_window_ms(fibre, 2 * fibres)
            assert 2 * fibre <= rtt <= hi, (src, dst, fibre, (lo, hi), out)


def test_mn_custom_abilene_without_delays_pingall():
    from test_topologies_live import mn_run_label, run_mn
    links_before = root_links()
    with mn_run_label() as label:
        done = run_mn("zoo.py", "zoo,Abilene,delay=0", label, timeout=180)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Caught exception" not in output, output[-2000:]
        assert "Results: 0% dropped (462/462 received)" in output, output[-2000:]
        assert runledger.labelled_pids(label) == {}, "mn left processes behind"
    assert_root_links_back_to(links_before)
