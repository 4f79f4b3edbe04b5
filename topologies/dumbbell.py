"""dumbbell: senders -- r1 == bottleneck == r2 -- receivers, for impairment work.

    sudo mn --custom topologies/dumbbell.py --topo dumbbell --controller none
    sudo mn --custom topologies/dumbbell.py --topo dumbbell,2,3 --controller none
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

# Sender k's link is the k-th /24 of 10.1.0.0/16 (receiver k's of 10.2.0.0/16),
# k from 1, so the third octet names the host: 10.1.0.0/24 stays unused.
SENDER_NETS = addressing.network("10.1.0.0/16")
RECEIVER_NETS = addressing.network("10.2.0.0/16")
BOTTLENECK_NET = addressing.network("10.0.0.0/24")
MAX_PER_SIDE = addressing.capacity(SENDER_NETS, 24) - 1


class DumbbellTopo(PlannedTopo):
    """n senders and m receivers on either side of one bottleneck link r1--r2.

    ::

        snd1 --.                                              .-- rcv1
         ...    >-- r1 ==========(bottleneck)========== r2 --<     ...
        sndN --'  r1-eth0  10.0.0.1/24    10.0.0.2/24  r2-eth0  '-- rcvM

    The bottleneck is the link r1--r2: **r1-eth0 faces r2 and r2-eth0 faces
    r1** (it is the first link added). Impair the sender-to-receiver direction
    on r1-eth0 and the reverse on r2-eth0; :meth:`bottleneck` returns both.

    Parameters: ``senders`` (default 1), ``receivers`` (default: as many as
    senders), each 1..255; ``netem`` (optional): an impairment of the
    bottleneck's sender-to-receiver direction (netem on r1-eth0, i.e. what r1
    sends to r2), a :class:`wirelab.impair.spec.NetemSpec` or its text, e.g.
    ``"delay=20ms loss=1%"``; ``reverse_netem``: the same for r2-eth0 (ACKs).
    Both are validated when the topology is built and applied by the Testbed.

    Address plan (each router end is host .1, each host end .2):

    ======================  ===============  =====================  ============
    link                    subnet           router side            host side
    ======================  ===============  =====================  ============
    r1 -- r2 (bottleneck)   10.0.0.0/24      r1-eth0 10.0.0.1       r2-eth0 .2
    r1 -- snd<k>            10.1.<k>.0/24    r1-eth<k> 10.1.k.1     snd<k>-eth0 .2
    r2 -- rcv<k>            10.2.<k>.0/24    r2-eth<k> 10.2.k.1     rcv<k>-eth0 .2
    ======================  ===============  =====================  ============

    IPv6 (block fd77:3::/32; each subnet's /64 holds its IPv4 network address):
    bottleneck fd77:3:a00::/64 (r1-eth0 ::1, r2-eth0 ::2), snd<k>'s link
    fd77:3:a01:<k in hex>00::/64, rcv<k>'s fd77:3:a02:<k in hex>00::/64 (router ::1,
    host ::2). r1: fd77:3:a02::/48 via fd77:3:a00::2 (the /16 -> a /48); r2:
    fd77:3:a01::/48 via fd77:3:a00::1; hosts ::/0 via ::1.

    Routes: snd<k> default via 10.1.k.1 (r1); rcv<k> default via 10.2.k.1 (r2);
    r1: 10.2.0.0/16 via 10.0.0.2 (all receivers, one summary);
    r2: 10.1.0.0/16 via 10.0.0.1 (all senders). So every sender's traffic to
    any receiver crosses the bottleneck: expected_path(snd<k>, rcv<j>) is
    ['r1', 'r2'].
    """

    topo_name = "dumbbell"
    ipv6_block = "fd77:3::/32"

    def build(self, senders=1, receivers=None, netem=None, reverse_netem=None):
        from wirelab.impair.spec import NetemSpec
        netem, reverse_netem = (None if spec is None else
                                spec if isinstance(spec, NetemSpec) else NetemSpec.parse(spec)
                                for spec in (netem, reverse_netem))
        limit = f"one /24 of {SENDER_NETS} per host, numbered from 1"
        senders = count_param(senders, "dumbbell: senders", 1, MAX_PER_SIDE, limit)
        receivers = senders if receivers is None else count_param(
            receivers, "dumbbell: receivers", 1, MAX_PER_SIDE, limit)
        self.senders = [f"snd{k}" for k in range(1, senders + 1)]
        self.receivers = [f"rcv{k}" for k in range(1, receivers + 1)]
        snd_nets = [addressing.nth_subnet(SENDER_NETS, 24, k) for k in range(1, senders + 1)]
        rcv_nets = [addressing.nth_subnet(RECEIVER_NETS, 24, k) for k in range(1, receivers + 1)]
        r1_ip, r2_ip = (a.split("/")[0] for a in addressing.point_to_point(BOTTLENECK_NET))

        self.router("r1", routes=[(str(RECEIVER_NETS), r2_ip)], max_ports=senders)
        self.router("r2", routes=[(str(SENDER_NETS), r1_ip)], max_ports=receivers)
        for name, net in zip(self.senders, snd_nets):
            self.host(name, routes=[("default", str(net.network_address + 1))])
        for name, net in zip(self.receivers, rcv_nets):
            self.host(name, routes=[("default", str(net.network_address + 1))])

        # The bottleneck first, so it is eth0 on both routers.
        self.p2p("r1", "r2", BOTTLENECK_NET, netem_a=netem, netem_b=reverse_netem)
        for name, net in zip(self.senders, snd_nets):
            self.p2p("r1", name, net)
        for name, net in zip(self.receivers, rcv_nets):
            self.p2p("r2", name, net)

    def bottleneck(self):
        """The bottleneck's two ends: {'r1': 'r1-eth0', 'r2': 'r2-eth0'}."""
        return {"r1": self.interface_facing("r1", "r2"), "r2": self.interface_facing("r2", "r1")}


topos = {"dumbbell": DumbbellTopo}
