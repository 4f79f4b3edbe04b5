"""internet: a home network, an ISP, a backbone ring with a chord, and three sites.

    sudo mn --custom topologies/internet.py --topo internet --controller none
    sudo mn --custom topologies/internet.py --topo internet,home_hosts=3,servers=4 --controller none
    sudo mn --custom topologies/internet.py --topo internet,home=nat,dhcp=1 --controller none
"""

import ipaddress
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
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.net import addressing  # noqa: E402

HOME_NET = addressing.network("192.168.1.0/24")     # private: routed (home=routed) or NATed (home=nat)
ACCESS_NET = addressing.network("100.64.0.0/30")    # isp -- hgw
ISP_CUSTOMERS = addressing.network("100.64.0.0/10")  # what the backbone routes to isp
CLOUD_NET = addressing.network("10.20.30.0/24")     # more specific inside UNI_AGG
UNI_AGG = addressing.network("10.20.0.0/16")        # the university's aggregate
UNI_NET = addressing.network("10.20.1.0/24")        # its one LAN here
CORP_AGG = addressing.network("10.0.0.0/8")         # the corporation's aggregate
CORP_NET = addressing.network("10.1.0.0/24")        # its one LAN here
# Backbone router bbN owns 172.16.N.0/24; its point-to-point links are /30s in it.
INFRA = addressing.network("172.16.0.0/16")
FIRST_NUMBERED = 9      # home<k> is 192.168.1.(9+k), srv<k> is 10.20.30.(9+k)
MAX_NUMBERED = HOME_NET.num_addresses - 2 - FIRST_NUMBERED   # up to .254: 245
HOME_MODES = ("routed", "nat")
# dhcp=1: the home router leases .100-.199 (a consumer router's usual pool), the
# ISP leases hgw the one customer address of the access /30 (isp holds .1).
HOME_POOL = ("192.168.1.100", "192.168.1.199")
ACCESS_POOL = (str(ACCESS_NET.network_address + 2),) * 2
MAX_DHCP_HOSTS = int(ipaddress.ip_address(HOME_POOL[1])) - int(ipaddress.ip_address(HOME_POOL[0])) + 1


def infra_link(owner, index):
    """The ``index``-th /30 in backbone router ``owner``'s block 172.16.<owner>.0/24."""
    return addressing.nth_subnet(addressing.nth_subnet(INFRA, 24, owner), 30, index)


# (a, b, subnet): a gets host .1 of the /30, b host .2. The order fixes the
# interface names (docstring); do not reorder.
INTERNET_LINKS = [
    ("isp", "hgw", ACCESS_NET),           # isp-eth0 .1      hgw-eth0 .2
    ("bb1", "isp", infra_link(1, 0)),     # bb1-eth0 172.16.1.1   isp-eth1 .2
    ("bb1", "bb2", infra_link(1, 1)),     # bb1-eth1 172.16.1.5   bb2-eth0 .6
    ("bb1", "bb3", infra_link(1, 2)),     # bb1-eth2 172.16.1.9   bb3-eth0 .10  (chord)
    ("bb4", "bb1", infra_link(4, 0)),     # bb4-eth0 172.16.4.1   bb1-eth3 .2
    ("bb2", "bb3", infra_link(2, 0)),     # bb2-eth1 172.16.2.1   bb3-eth1 .2
    ("bb3", "bb4", infra_link(3, 0)),     # bb3-eth2 172.16.3.1   bb4-eth1 .2
    ("bb2", "unigw", infra_link(2, 1)),   # bb2-eth2 172.16.2.5   unigw-eth0 .6
    ("bb3", "cloudgw", infra_link(3, 1)),  # bb3-eth3 172.16.3.5  cloudgw-eth0 .6
    ("bb4", "corpgw", infra_link(4, 1)),  # bb4-eth2 172.16.4.5   corpgw-eth0 .6
    ("unigw", "campus", UNI_NET),         # unigw-eth1 10.20.1.1  campus-eth0 .2
    ("corpgw", "office", CORP_NET),       # corpgw-eth1 10.1.0.1  office-eth0 .2
]


def _addr(a, b):
    """The address of ``b``'s end of the link between ``a`` and ``b``."""
    for x, y, net in INTERNET_LINKS:
        if {x, y} == {a, b}:
            return str(net.network_address + (1 if b == x else 2))
    raise KeyError((a, b))


# Static routes, next hop given as the neighbour's name; connected routes are
# the kernel's. Kept in step with the class docstring by a unit test.
INTERNET_ROUTES = {
    "hgw": [("default", "isp")],
    "isp": [(str(HOME_NET), "hgw"), ("default", "bb1")],
    "bb1": [(str(HOME_NET), "isp"), (str(ISP_CUSTOMERS), "isp"),
            ("172.16.2.0/24", "bb2"), ("172.16.3.0/24", "bb3"), ("172.16.4.0/24", "bb4"),
            (str(CORP_AGG), "bb4"), (str(UNI_AGG), "bb2"), (str(CLOUD_NET), "bb3")],
    "bb2": [(str(HOME_NET), "bb1"), (str(ISP_CUSTOMERS), "bb1"),
            ("172.16.1.0/24", "bb1"), ("172.16.3.0/24", "bb3"), ("172.16.4.0/24", "bb1"),
            (str(CORP_AGG), "bb3"), (str(UNI_AGG), "unigw"), (str(CLOUD_NET), "bb3")],
    "bb3": [(str(HOME_NET), "bb1"), (str(ISP_CUSTOMERS), "bb1"),
            ("172.16.1.0/24", "bb1"), ("172.16.2.0/24", "bb2"), ("172.16.4.0/24", "bb4"),
            (str(CORP_AGG), "bb4"), (str(UNI_AGG), "bb2"), (str(CLOUD_NET), "cloudgw")],
    "bb4": [(str(HOME_NET), "bb1"), (str(ISP_CUSTOMERS), "bb1"),
            ("172.16.1.0/24", "bb1"), ("172.16.2.0/24", "bb3"), ("172.16.3.0/24", "bb3"),
            (str(CORP_AGG), "corpgw"), (str(UNI_AGG), "bb3")],
    "unigw": [("default", "bb2")],
    "cloudgw": [("default", "bb3")],
    "corpgw": [("default", "bb4")],
}


class InternetTopo(PlannedTopo):
    r"""A home LAN reaches a university, a cloud and a corporation over a backbone.

    ::

                                          .----- bb2 ---- unigw ---- campus    10.20.0.0/16
                                         /        |
      home1 --.                         /         |
      home2 ---+ homelan - hgw - isp - bb1 ------ bb3 ---- cloudgw -- cloudlan -- srv1..
       ...  --'  192.168.1.0/24         \         |                  10.20.30.0/24
                                         \        |
                                          '----- bb4 ---- corpgw ---- office    10.0.0.0/8

    The backbone is a ring bb1-bb2-bb3-bb4-bb1 with a chord bb1-bb3, so every
    pair of backbone routers has at least two paths; the static tables below
    use one, and the other is there for failure and rerouting experiments.

    Parameters: ``home_hosts`` (default 2) and ``servers`` (default 2), each
    1..245; ``home`` and ``dhcp`` choose how the home is attached (below).

    Address plan (every link's first-named router is host .1):

    * home LAN ``homelan`` 192.168.1.0/24: hgw-eth1 .1, home<k> .(9+k).
      Private addresses, but with the default ``home=routed`` **there is no
      NAT**: all routing is static and the home network is simply routed like
      any other prefix (``home=nat``: see below).
    * access link isp -- hgw 100.64.0.0/30: isp-eth0 .1, hgw-eth0 .2; the
      backbone routes the ISP's whole customer block 100.64.0.0/10 to isp.
    * backbone: router bbN owns 172.16.N.0/24 and numbers its links in it as
      /30s (a router's block is routed towards it, so other routers need one
      route per block, not one per link):
      bb1-isp 172.16.1.0/30, bb1-bb2 .4/30, bb1-bb3 .8/30 (chord),
      bb2-bb3 172.16.2.0/30, bb2-unigw .4/30, bb3-bb4 172.16.3.0/30,
      bb3-cloudgw .4/30, bb4-bb1 172.16.4.0/30, bb4-corpgw .4/30.
    * university: aggregate 10.20.0.0/16; LAN unigw-eth1 10.20.1.1 -- campus 10.20.1.2.
    * cloud: 10.20.30.0/24, *inside* the university's /16 but attached
      elsewhere (a more-specific, as a hosted block would be): ``cloudlan``,
      cloudgw-eth1 .1, srv<k> .(9+k).
    * corporation: aggregate 10.0.0.0/8 (overlapping both of the above);
      LAN corpgw-eth1 10.1.0.1 -- office 10.1.0.2.

    Interfaces (link order): hgw eth0 isp, eth1 homelan; isp eth0 hgw, eth1 bb1;
    bb1 eth0 isp, eth1 bb2, eth2 bb3, eth3 bb4; bb2 eth0 bb1, eth1 bb3, eth2 unigw;
    bb3 eth0 bb1, eth1 bb2, eth2 bb4, eth3 cloudgw; bb4 eth0 bb1, eth1 bb3, eth2
    corpgw; unigw eth0 bb2, eth1 campus; cloudgw eth0 bb3, eth1 cloudlan;
    corpgw eth0 bb4, eth1 office; hosts eth0.

    Routing tables: static routes, next hop and the neighbour it is (connected
    routes, one per interface, are the kernel's and not listed). The stub
    networks (home, sites) use a default route; the backbone is default-free,
    like the real one, so an address nobody routes is unreachable there.

    **Longest-prefix match is visible at bb1 and bb3**: 10.20.30.10 matches
    10.0.0.0/8, 10.20.0.0/16 and 10.20.30.0/24, and each goes to a different
    neighbour. From home1, traceroute to srv1 crosses bb1 > bb3 (the chord),
    to campus bb1 > bb2, to office bb1 > bb4.

    hgw
        default          via 100.64.0.1   isp       everything beyond home
    isp
        192.168.1.0/24   via 100.64.0.2   hgw       the customer's home LAN
        default          via 172.16.1.1   bb1       upstream
    bb1
        192.168.1.0/24   via 172.16.1.2   isp       home LAN
        100.64.0.0/10    via 172.16.1.2   isp       ISP customer block
        172.16.2.0/24    via 172.16.1.6   bb2       bb2's links
        172.16.3.0/24    via 172.16.1.10  bb3       bb3's links (chord)
        172.16.4.0/24    via 172.16.4.1   bb4       bb4's links (its link to bb1 is connected)
        10.0.0.0/8       via 172.16.4.1   bb4       corp aggregate
        10.20.0.0/16     via 172.16.1.6   bb2       uni aggregate, longer than /8
        10.20.30.0/24    via 172.16.1.10  bb3       cloud, longer than /16
    bb2
        192.168.1.0/24   via 172.16.1.5   bb1       home LAN
        100.64.0.0/10    via 172.16.1.5   bb1       ISP customer block
        172.16.1.0/24    via 172.16.1.5   bb1       bb1's links
        172.16.3.0/24    via 172.16.2.2   bb3       bb3's links
        172.16.4.0/24    via 172.16.1.5   bb1       bb4's links, round the ring via bb1
        10.0.0.0/8       via 172.16.2.2   bb3       corp, round the ring the other way
        10.20.0.0/16     via 172.16.2.6   unigw     its own customer
        10.20.30.0/24    via 172.16.2.2   bb3       cloud: the /24 beats unigw's /16
    bb3
        192.168.1.0/24   via 172.16.1.9   bb1       home LAN (chord)
        100.64.0.0/10    via 172.16.1.9   bb1       ISP customer block (chord)
        172.16.1.0/24    via 172.16.1.9   bb1       bb1's links (chord)
        172.16.2.0/24    via 172.16.2.1   bb2       bb2's links
        172.16.4.0/24    via 172.16.3.2   bb4       bb4's links
        10.0.0.0/8       via 172.16.3.2   bb4       corp aggregate
        10.20.0.0/16     via 172.16.2.1   bb2       uni aggregate
        10.20.30.0/24    via 172.16.3.6   cloudgw   its own customer
    bb4
        192.168.1.0/24   via 172.16.4.2   bb1       home LAN
        100.64.0.0/10    via 172.16.4.2   bb1       ISP customer block
        172.16.1.0/24    via 172.16.4.2   bb1       bb1's links
        172.16.2.0/24    via 172.16.3.1   bb3       bb2's links, round the ring via bb3
        172.16.3.0/24    via 172.16.3.1   bb3       bb3's links
        10.0.0.0/8       via 172.16.4.6   corpgw    its own customer
        10.20.0.0/16     via 172.16.3.1   bb3       uni, and cloud inside it: bb3 knows the /24
    unigw
        default          via 172.16.2.5   bb2
    cloudgw
        default          via 172.16.3.5   bb3
    corpgw
        default          via 172.16.4.5   bb4

    Hosts: home<k> default via 192.168.1.1, srv<k> via 10.20.30.1, campus via
    10.20.1.1, office via 10.1.0.1. All hosts reach all hosts and every
    router interface.

    IPv6 (block fd77:4::/32): every prefix above has an IPv6 twin, the block
    followed by the IPv4 bits, /L -> /(32+L); each link and LAN gets the /64
    holding its IPv4 network address, host k at ::k (hex). So the overlaps stay
    overlaps and LPM decides the same way:

    ======================  ========================  ======================
    IPv4                    IPv6                      what
    ======================  ========================  ======================
    192.168.1.0/24          fd77:4:c0a8:100::/56      home (LAN /64: ...:100::/64,
                                                      hgw ::1, home<k> ::(9+k))
    100.64.0.0/10           fd77:4:6440::/42          ISP customers
    100.64.0.0/30           fd77:4:6440::/64          access (isp ::1, hgw ::2)
    172.16.N.0/24           fd77:4:ac10:N00::/56      bbN's links, each /30 a /64:
                                                      172.16.1.4/30 -> fd77:4:ac10:104::/64
    10.0.0.0/8              fd77:4:a00::/40           corp aggregate
    10.1.0.0/24             fd77:4:a01::/64           office LAN (corpgw ::1, office ::2)
    10.20.0.0/16            fd77:4:a14::/48           uni aggregate
    10.20.1.0/24            fd77:4:a14:100::/64       campus LAN (unigw ::1, campus ::2)
    10.20.30.0/24           fd77:4:a14:1e00::/56      cloud (LAN /64 ...:1e00::/64,
                                                      cloudgw ::1, srv<k> ::(9+k))
    default                 ::/0
    ======================  ========================  ======================

    Every router's IPv6 table is the one above with each prefix and next hop
    replaced by its twin, e.g. bb1: fd77:4:a00::/40 via fd77:4:ac10:400::1
    (bb4), fd77:4:a14::/48 via fd77:4:ac10:104::2 (bb2), fd77:4:a14:1e00::/56
    via fd77:4:ac10:108::2 (bb3). traceroute -6 from home1 to srv1 crosses
    bb1 > bb3 as IPv4 does.

    The home, two ways (``home=routed``, the default, is everything above):

    * ``home=nat``: what an ISP really gives a home. Nobody outside the home
      routes 192.168.1.0/24 (the lines for it are absent from isp, bb1, bb2,
      bb3 and bb4: a packet to a home address dies at the first router that
      has no route for it); hgw masquerades the home LAN behind its WAN
      address 100.64.0.2 (an nftables table of the run, installed by
      ``wirelab.services.nat``, not by the topology). IPv6 has no NAT: the
      home /56 is not routed either, so the home LAN reaches only hgw by IPv6.
    * ``dhcp=1`` (needs ``home=nat``): hgw-eth0 and the home hosts start
      without addresses and without routes. The ISP's DHCP server (on
      isp-eth0) leases hgw the access link's one customer address,
      100.64.0.2/30, with router 100.64.0.1; hgw's (on hgw-eth1) leases the
      home hosts 192.168.1.100-.199/24 with router 192.168.1.1, and both hand
      out the run's DNS resolver (``wirelab.services.dhcp``; up to 100 home
      hosts). :meth:`dhcp_plan` and :meth:`nat` give these as data.

    Caveat, on purpose: the sites announce aggregates larger than what they
    use and have no null route for the rest, so a packet to an unused address
    inside one (say 10.20.99.1) bounces between the site router's default and
    the backbone until its TTL runs out: "Time to live exceeded".
    """

    topo_name = "internet"
    ipv6_block = "fd77:4::/32"

    def build(self, home_hosts=2, servers=2, home="routed", dhcp=0):
        limit = f"host numbers {FIRST_NUMBERED + 1}..254 of a /24"
        home_hosts = count_param(home_hosts, "internet: home_hosts", 1, MAX_NUMBERED, limit)
        servers = count_param(servers, "internet: servers", 1, MAX_NUMBERED, limit)
        if home not in HOME_MODES:
            raise ConfigError(f"internet: home must be one of {', '.join(HOME_MODES)}, not {home!r}")
        dhcp = count_param(dhcp, "internet: dhcp", 0, 1, "0: addresses from the plan, 1: by DHCP")
        if dhcp and home != "nat":
            raise ConfigError("internet: dhcp=1 needs home=nat (a routed home LAN needs a route at "
                              "the ISP via hgw's WAN address, which only DHCP gives)")
        if dhcp and home_hosts > MAX_DHCP_HOSTS:
            raise ConfigError(f"internet: home_hosts={home_hosts} with dhcp=1 is more than the home "
                              f"pool {HOME_POOL[0]}-{HOME_POOL[1]} holds ({MAX_DHCP_HOSTS})")
        self.home, self.dhcp = home, bool(dhcp)
        self.home_hosts = [f"home{k}" for k in range(1, home_hosts + 1)]
        self.servers = [f"srv{k}" for k in range(1, servers + 1)]
        home_gw = str(HOME_NET.network_address + 1)
        cloud_gw = str(CLOUD_NET.network_address + 1)

        for router, routes in INTERNET_ROUTES.items():
            if home == "nat":   # nobody outside the home routes its private addresses
                routes = [(dst, via) for dst, via in routes if dst != str(HOME_NET)]
            if dhcp and router == "hgw":
                routes = []     # its default route comes with its lease
            self.router(router, routes=[(dst, _addr(router, via)) for dst, via in routes])
        for name in self.home_hosts:
            self.host(name, routes=[] if dhcp else [("default", home_gw)])
        for name in self.servers:
            self.host(name, routes=[("default", cloud_gw)])
        self.host("campus", routes=[("default", str(UNI_NET.network_address + 1))])
        self.host("office", routes=[("default", str(CORP_NET.network_address + 1))])
        self.lan("homelan", HOME_NET)
        self.lan("cloudlan", CLOUD_NET)

        for a, b, net in INTERNET_LINKS:
            if dhcp and (a, b) == ("isp", "hgw"):
                self._unaddressed_end("isp", "hgw", net)
                continue
            self.p2p(a, b, net)
        self.join("hgw", "homelan", 1)          # hgw-eth1
        self.join("cloudgw", "cloudlan", 1)     # cloudgw-eth1
        for k, name in enumerate(self.home_hosts, start=1):
            if dhcp:
                self._link(name, "homelan", None, None, "homelan")
            else:
                self.join(name, "homelan", FIRST_NUMBERED + k)
        for k, name in enumerate(self.servers, start=1):
            self.join(name, "cloudlan", FIRST_NUMBERED + k)

    def _unaddressed_end(self, a, b, net):
        """The link ``a`` -- ``b`` on ``net`` with only ``a``'s end addressed
        (host 1); ``b``'s end waits for DHCP."""
        self._seg_net[f"{a}--{b}"] = ipaddress.ip_network(net)
        return self._link(a, b, addressing.point_to_point(net)[0], None, f"{a}--{b}")

    # -- the home side, as data -------------------------------------------------------
    def nat(self):
        """With ``home=nat``: {"router", "outside" (WAN interface), "inside" (LAN
        interface), "inside_net"}: hgw masquerades the home LAN behind its WAN
        address (installed by :mod:`wirelab.services.nat`). None when routed."""
        if self.home != "nat":
            return None
        return {"router": "hgw", "outside": self.interface_facing("hgw", "isp"),
                "inside": self.interface_facing("hgw", "homelan"), "inside_net": str(HOME_NET)}

    def dhcp_plan(self):
        """With ``dhcp=1``: who leases what. {"servers": [{"node", "intf", "pool"
        (first, last), "netmask", "router", "clients"}], "clients": {node: intf}}.
        None with dhcp=0. (The DNS server handed out is the run's resolver.)"""
        if not self.dhcp:
            return None
        isp_if, lan_if = self.interface_facing("isp", "hgw"), self.interface_facing("hgw", "homelan")
        wan = self.interface_facing("hgw", "isp")
        servers = [
            {"node": "isp", "intf": isp_if, "pool": list(ACCESS_POOL),
             "netmask": str(ACCESS_NET.netmask), "router": self.ip("isp", isp_if), "clients": ["hgw"]},
            {"node": "hgw", "intf": lan_if, "pool": list(HOME_POOL),
             "netmask": str(HOME_NET.netmask), "router": self.ip("hgw", lan_if),
             "clients": list(self.home_hosts)},
        ]
        clients = {"hgw": wan, **{h: f"{h}-eth0" for h in self.home_hosts}}
        return {"servers": servers, "clients": clients}

    def routed_prefixes(self):
        """What the backbone routes (its static routes and links): the emulated
        Internet's public space. The home LAN is in it only with home=routed."""
        nets = set()
        for router in self.router_names():
            if router.startswith("bb"):
                for route in self.intended_routes(router):
                    nets.add(ipaddress.ip_network(route["dst"]))
        return [str(n) for n in addressing.collapse(nets)]


topos = {"internet": InternetTopo}
