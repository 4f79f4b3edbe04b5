"""line: two hosts joined by a chain of N routers with static, summarised routes.

    h1 ---- r1 ---- r2 ---- ... ---- rN ---- h2
      link 0   link 1          link N-1  link N

    sudo mn --custom topologies/line.py --topo line,3 --controller none
    sudo mn --custom topologies/line.py --topo line,n=200,base=10.64.0.0/16 --controller none
"""

import os
import sys

# mn --custom exec()s this file without __file__ and without the repo on
# sys.path: find the repo from the code object's file name (the topologies
# package then finds the venv's packages for mn's system python).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(
    globals().get("__file__") or sys._getframe().f_code.co_filename)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from topologies import LINUX_DEFAULT_TTL, MAX_TTL, PlannedTopo, count_param  # noqa: E402
from wirelab.net import addressing  # noqa: E402


class LineTopo(PlannedTopo):
    """h1 -- r1 -- ... -- rN -- h2, every router with a small static table.

    ::

        h1 ----------- r1 ----------- r2 ---- ... ---- rN ----------- h2
          .1  link 0  .2  .1 link 1  .2             .1  link N   .2
        h1-eth0   r1-eth0 r1-eth1  r2-eth0       rN-eth1        h2-eth0

    Parameters: ``n`` routers (default 3); ``base`` network (default
    10.0.0.0/16) cut into ``/link_prefix`` subnets (default /24), one per link:
    link k is the k-th subnet, its left end host .1 and its right end host .2.
    With the defaults link k is 10.0.k.0/24, so h1 = 10.0.0.1,
    r1-eth0 = 10.0.0.2, r1-eth1 = 10.0.1.1, ..., h2 = 10.0.N.2, and n can be
    1..254 (N+1 links must fit in the base, and a packet's TTL, at most
    255, must survive N routers: a larger n is a ConfigError). Linux starts
    packets with TTL 64, so for n >= 64 every node is a LongPathHost or
    LongPathRouter, which sets net.ipv4.ip_default_ttl=255 in its namespace
    (recorded and restored): otherwise echo replies would die on the way.

    Each router's eth0 faces h1 (link i-1) and eth1 faces h2 (link i). Its
    table: the two connected links, then the links beyond each neighbour
    summarised into the fewest prefixes (ipaddress.summarize_address_range),
    so a table holds at most about 2 x log2(links) routes even for n=200.
    E.g. n=5, r3: links 0..1 -> 10.0.0.0/23 via 10.0.2.1 (r2); links 4..5 ->
    10.0.4.0/23 via 10.0.3.2 (r4). No router has a default route: an address
    outside the plan is unreachable rather than bounced along the line.
    h1 and h2 route by default via their router.

    Every host and every router interface reaches every other.
    :meth:`expected_path` ('h1', 'h2') is ['r1', ..., 'rN'].

    IPv6, from the same plan (block fd77:1::/32, see ``topologies/__init__``):
    link k's /64 holds its IPv4 network address in hex, host .1/.2 become ::1/::2.
    With the defaults link k is fd77:1:a00:<k in hex>00::/64: h1 = fd77:1:a00::1,
    r1-eth0 = fd77:1:a00::2, r1-eth1 = fd77:1:a00:100::1, ..., h2 = fd77:1:a00:<N>00::2.
    Summaries map prefix for prefix, /L -> /(32+L): r3's 10.0.0.0/23 (n=5) is
    fd77:1:a00::/55 via fd77:1:a00:200::1. h1 and h2 route ::/0 via their router.
    ``expected_traceroute('h1', 'h2', family=6)`` lists each router's inbound
    IPv6 address, then h2's; hop limits as TTLs (hop_limit 255 when n >= 64).
    """

    topo_name = "line"
    ipv6_block = "fd77:1::/32"

    def build(self, n=3, base="10.0.0.0/16", link_prefix=24):
        base = addressing.network(base, "line: base")
        link_prefix = count_param(link_prefix, "line: link_prefix", base.prefixlen, 30,
                                  "a link needs 2 host addresses inside the base")
        links = addressing.capacity(base, link_prefix)
        if links - 1 < MAX_TTL - 1:
            limit = (f"{base} holds {links} /{link_prefix} link subnets "
                     f"and n routers need n+1")
        else:
            limit = f"a packet's TTL, at most {MAX_TTL}, must survive n routers"
        n = count_param(n, "line: n (routers)", 1, min(links - 1, MAX_TTL - 1), limit)
        # Beyond 63 routers the default TTL of 64 no longer gets a reply back.
        long_paths = n >= LINUX_DEFAULT_TTL
        self.n, self.base, self.link_prefix = n, base, link_prefix
        nets = [addressing.nth_subnet(base, link_prefix, k) for k in range(n + 1)]
        self.link_subnets = nets

        def left_end(k):   # the ip of link k's left node (h1 or r_k)
            return str(nets[k].network_address + 1)

        def right_end(k):  # the ip of link k's right node (r_k+1 or h2)
            return str(nets[k].network_address + 2)

        self.host("h1", routes=[("default", right_end(0))], long_paths=long_paths)
        for i in range(1, n + 1):
            routes = []
            if i >= 2:      # links 0 .. i-2 lie beyond the left neighbour
                routes += [(str(p), left_end(i - 1))
                           for p in addressing.summarize(nets[0], nets[i - 2])]
            if i <= n - 1:  # links i+1 .. n lie beyond the right neighbour
                routes += [(str(p), right_end(i))
                           for p in addressing.summarize(nets[i + 1], nets[n])]
            self.router(f"r{i}", routes=routes, max_ports=1, long_paths=long_paths)
        self.host("h2", routes=[("default", left_end(n))], long_paths=long_paths)

        # Link order fixes interface names: r_i-eth0 is link i-1, r_i-eth1 link i.
        chain = ["h1"] + [f"r{i}" for i in range(1, n + 1)] + ["h2"]
        for k in range(n + 1):
            self.p2p(chain[k], chain[k + 1], nets[k])


topos = {"line": LineTopo}
