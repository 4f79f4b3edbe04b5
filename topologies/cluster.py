"""cluster: a manager and N workers on a LAN behind a router, clients elsewhere.

For MapReduce-style manager/worker JSON over TCP and GFS-style heartbeats over
UDP: the servers share one broadcast domain, the clients reach them through two
routers.

    sudo mn --custom topologies/cluster.py --topo cluster,4 --controller none
    sudo mn --custom topologies/cluster.py --topo cluster,workers=8,clients=2 --controller none
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


from topologies import PlannedTopo, count_param  # noqa: E402
from wirelab.net import addressing  # noqa: E402

TRANSIT_NET = addressing.network("10.0.0.0/30")    # gw -- edge
SERVER_NET = addressing.network("10.1.0.0/24")     # srvlan: gw, manager, workers
CLIENT_NET = addressing.network("10.2.0.0/24")     # clilan: edge, clients
GATEWAY_HOST = 1        # .1 on each LAN is its router
MANAGER_HOST = 2        # 10.1.0.2
FIRST_NUMBERED = 10     # worker k is 10.1.0.(10+k), client k is 10.2.0.(10+k)
MAX_NUMBERED = SERVER_NET.num_addresses - 2 - FIRST_NUMBERED   # up to .254: 244


class ClusterTopo(PlannedTopo):
    """A manager and ``workers`` workers on a LAN behind ``gw``; clients behind ``edge``.

    ::

        client1 --.                                                       .-- manager 10.1.0.2
          ...      +-- clilan ---- edge ---------------- gw ---- srvlan --+--- w1      10.1.0.11
        clientM --'         eth1 .1    eth0 .2     .1 eth0    eth1 .1     '-- wN      10.1.0.(10+N)
        10.2.0.(10+k)  10.2.0.0/24         10.0.0.0/30            10.1.0.0/24

    Parameters: ``workers`` (default 3) and ``clients`` (default 1), each
    1..244.

    Address plan:

    * transit gw -- edge, 10.0.0.0/30: gw-eth0 10.0.0.1, edge-eth0 10.0.0.2
    * server LAN ``srvlan`` 10.1.0.0/24: gw-eth1 .1, manager .2, w<k> .(10+k)
    * client LAN ``clilan`` 10.2.0.0/24: edge-eth1 .1, client<k> .(10+k)

    Every host has one interface, eth0. Bridge ports follow link order:
    srvlan-eth1 is gw, -eth2 the manager, -eth3.. the workers; clilan-eth1 is
    edge, then the clients.

    IPv6 (block fd77:2::/32; each subnet's /64 holds its IPv4 network address,
    host k is ::k in hex):

    * transit fd77:2:a00::/64: gw-eth0 ::1, edge-eth0 ::2
    * srvlan fd77:2:a01::/64: gw-eth1 ::1, manager ::2, w<k> ::(10+k) (w1 = ::b)
    * clilan fd77:2:a02::/64: edge-eth1 ::1, client<k> ::(10+k)

    IPv6 routes: gw fd77:2:a02::/56 via fd77:2:a00::2; edge fd77:2:a01::/56 via
    fd77:2:a00::1; hosts ::/0 via ::1 of their LAN.

    Routes: gw: 10.2.0.0/24 via 10.0.0.2 (edge); edge: 10.1.0.0/24 via
    10.0.0.1 (gw); manager and workers default via 10.1.0.1; clients default
    via 10.2.0.1. Neither router has a default route. The servers talk to each
    other on the LAN, no router in between (expected_path(manager, w1) == []);
    a client reaches them through ['edge', 'gw'].
    """

    topo_name = "cluster"
    ipv6_block = "fd77:2::/32"

    def build(self, workers=3, clients=1):
        limit = "host numbers 11..254 of a /24"
        workers = count_param(workers, "cluster: workers", 1, MAX_NUMBERED, limit)
        clients = count_param(clients, "cluster: clients", 1, MAX_NUMBERED, limit)
        self.manager = "manager"
        self.workers = [f"w{k}" for k in range(1, workers + 1)]
        self.clients = [f"client{k}" for k in range(1, clients + 1)]
        gw_ip, edge_ip = (a.split("/")[0] for a in addressing.point_to_point(TRANSIT_NET))
        server_gw = str(SERVER_NET.network_address + GATEWAY_HOST)
        client_gw = str(CLIENT_NET.network_address + GATEWAY_HOST)

        self.router("gw", routes=[(str(CLIENT_NET), edge_ip)], max_ports=1)
        self.router("edge", routes=[(str(SERVER_NET), gw_ip)], max_ports=1)
        for name in [self.manager] + self.workers:
            self.host(name, routes=[("default", server_gw)])
        for name in self.clients:
            self.host(name, routes=[("default", client_gw)])
        self.lan("srvlan", SERVER_NET)
        self.lan("clilan", CLIENT_NET)

        self.p2p("gw", "edge", TRANSIT_NET)               # gw-eth0, edge-eth0
        self.join("gw", "srvlan", GATEWAY_HOST)           # gw-eth1
        self.join("edge", "clilan", GATEWAY_HOST)         # edge-eth1
        self.join(self.manager, "srvlan", MANAGER_HOST)
        for k, name in enumerate(self.workers, start=1):
            self.join(name, "srvlan", FIRST_NUMBERED + k)
        for k, name in enumerate(self.clients, start=1):
            self.join(name, "clilan", FIRST_NUMBERED + k)


topos = {"cluster": ClusterTopo}
