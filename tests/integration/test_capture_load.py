"""Captures stay complete when every core is busy: the stop waits for tcpdump
to write every packet the interface carried before it is told to quit.

    h1 10.0.1.2 --- r1 --- 10.0.2.2 h2      captured: r1-eth0, r1-eth1, h2-eth0

Two busy loops (one pinned to each of the first two CPUs) compete with tcpdump
for the whole test; each round pings h1 -> h2 and stops the captures right after
the last reply, which is when a lagging tcpdump still holds packets unread.
Meanwhile h2 pings h1 every few milliseconds, so packets also arrive while the
captures stop: those are not part of any round and must not count as lost.
"""

import subprocess

import dpkt

from tiny_topo import H2

H1 = "10.0.1.2"
from wirelab.observe.capture import Captures

ROUNDS = 40
PINGS = 5
POINTS = [("r1", "r1-eth0"), ("r1", "r1-eth1"), ("h2", "h2-eth0")]


def h1_echoes(path):
    """(echo requests from h1, echo replies to h1) in one of our Ethernet captures."""
    import ipaddress
    h1 = ipaddress.IPv4Address(H1).packed
    requests = replies = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.icmp.ICMP):
                requests += ip.data.type == dpkt.icmp.ICMP_ECHO and ip.src == h1
                replies += ip.data.type == dpkt.icmp.ICMP_ECHOREPLY and ip.dst == h1
    return requests, replies


def test_captures_complete_under_cpu_hog(fresh_tb, cpu_hog, tmp_path):
    tb = fresh_tb
    tb.run("h1", ["ping", "-c1", "-W2", H2], timeout=10)   # ARP resolved before round 0
    background = tb.start("h2", ["ping", "-n", "-q", "-i", "0.005", H1],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    incomplete = []
    for i in range(ROUNDS):
        out = tmp_path / f"round{i}"
        with Captures(tb, POINTS, str(out)) as caps:
            tb.run("h1", ["ping", "-n", "-c", str(PINGS), "-i", "0.002", "-W", "2", H2],
                   timeout=20)
        for result in caps.results:
            echoes = h1_echoes(result["path"])
            if not result.complete or echoes != (PINGS, PINGS):
                incomplete.append((i, result["name"], echoes, result["problems"],
                                   result["received_by_filter"], result["captured"]))
    assert background.running(), "the background stream stopped early"
    background.stop()
    total = ROUNDS * len(POINTS)
    assert not incomplete, f"{len(incomplete)} of {total} captures incomplete: {incomplete[:5]}"
