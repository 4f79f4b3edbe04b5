"""The topologies, and the base class that keeps each one's plan as data.

    line      h1 -- r1 -- ... -- rN -- h2               (line.py,     LineTopo)
    cluster   clients -- edge -- gw -- LAN(manager, w1..wN)   (cluster.py,  ClusterTopo)
    dumbbell  senders -- r1 == bottleneck == r2 -- receivers  (dumbbell.py, DumbbellTopo)
    internet  home LAN -- hgw -- isp -- backbone ring -- uni, cloud, corp
                                                        (internet.py, InternetTopo)

Each is a side-effect-free Mininet ``Topo``: constructing one computes the
address plan and the routing tables and checks the parameters (a bad one raises
:class:`~wirelab.errors.ConfigError` with one line), and nothing else. Run one
with :class:`wirelab.net.testbed.Testbed`, or from the shell::

    sudo mn --custom topologies/line.py --topo line,3 --controller none

Besides the Mininet graph, a :class:`PlannedTopo` answers questions about its
plan without root: :meth:`~PlannedTopo.host_ips`,
:meth:`~PlannedTopo.intended_routes` (shaped like ``Testbed.routes``),
:meth:`~PlannedTopo.expected_path` (the routers a packet crosses, found by
following the intended tables with a pure-Python longest-prefix match) and more.

Every topology is dual-stack. Its IPv6 plan is computed from the IPv4 plan by
:mod:`wirelab.net.addressing` (``ipv6_prefix``, ``ipv6_subnet``,
``ipv6_interface``): the topology's ULA block :attr:`PlannedTopo.ipv6_block`
(a /32: line fd77:1::/32, cluster fd77:2::/32, dumbbell fd77:3::/32, internet
fd77:4::/32) followed by the 32 bits of an IPv4 network. Each link or LAN
subnet gets a /64 with host number k at ::k, each static route the IPv6 prefix
of its IPv4 one (a /L becomes a /(32+L), so summaries and overlaps carry over;
``default`` is ::/0), with the next hop's IPv6 address. The plan methods take
``family=6`` (``ip``, ``host_ips``, ``owners``, ``interfaces``, ``subnets``,
``static_routes``, ``intended_routes``, ``expected_path``,
``expected_traceroute``); the default, 4, is the IPv4 plan as before.
"""

import glob
import inspect
import ipaddress
import os
import sys

# Under `mn --custom`, this runs in /usr/bin/python3, whose site-packages lack
# pyroute2: borrow the repo venv's (made with --system-site-packages, so it
# holds only what the system python lacks).
try:
    import pyroute2  # noqa: F401
except ImportError:
    sys.path.extend(glob.glob(os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ".venv", "lib", "python%d.%d" % sys.version_info[:2], "site-packages")))

from mininet.topo import Topo  # noqa: E402
from mininet.util import natural  # noqa: E402

from wirelab.net import addressing  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.net.nodes import Host, LanBridge, LinuxRouter  # noqa: E402

# A Linux node starts its own packets with TTL 64 (net.ipv4.ip_default_ttl), so
# an echo reply dies after 63 routers; longer paths need the maximum, 255.
LINUX_DEFAULT_TTL = 64
MAX_TTL = 255

# Linux limits interface names to 15 characters (IFNAMSIZ - 1); Mininet names
# them <node>-eth<N>, so a node name must leave room for "-eth" and a number.
MAX_IFNAME = 15


def count_param(value, name, low, high, limit):
    """An integer parameter from Python or from ``mn --topo name,3`` (or ``n=3``).

    mn turns numeric strings into ints and leaves anything else a string, so
    ``line,abc`` arrives here as ``'abc'``. ``limit`` says why ``high`` is the
    maximum, for the error message.
    """
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range {low}..{high} ({limit})")
    return value


def all_topos():
    """{mn topo name: class} for every topology file (imported on demand)."""
    from . import cluster, dumbbell, internet, line, zoo
    found = {}
    for module in (line, cluster, dumbbell, internet, zoo):
        found.update(module.topos)
    return found


# IPv6's TTL is the hop limit, per interface (net.ipv6.conf.<if>.hop_limit, 64):
# set as the namespace's default before its interfaces exist, so each gets it.
LONG_PATH_SYSCTLS = {
    "net/ipv4/ip_default_ttl": str(MAX_TTL),
    "net/ipv6/conf/default/hop_limit": str(MAX_TTL),
    "net/ipv6/conf/all/hop_limit": str(MAX_TTL),
}


class LongPathRouter(LinuxRouter):
    """A router whose own packets (ICMP errors, echo replies) start with TTL 255."""

    SYSCTLS = {**LinuxRouter.SYSCTLS, **LONG_PATH_SYSCTLS}


class LongPathHost(Host):
    """A host whose packets start with TTL (IPv6: hop limit) 255, for paths of
    more than 63 routers.

    The sysctls are set in the host's namespace, recorded and restored (NetlinkNode).
    """

    SYSCTLS = {**Host.SYSCTLS, **LONG_PATH_SYSCTLS}


class PlannedTopo(Topo):
    """A ``Topo`` that records its address plan and intended routes as it builds.

    Subclasses build with :meth:`router`, :meth:`host`, :meth:`lan`,
    :meth:`p2p` and :meth:`join` instead of the raw ``addHost``/``addLink``, so
    every address, interface name and route is known here and can be checked
    (``tests/unit/test_topologies.py``) before any namespace exists.
    """

    topo_name = "planned"
    #: The topology's IPv6 block: a /32 in fd00::/8 (subclasses choose their own).
    ipv6_block = "fd77::/32"

    def __init__(self, *args, **params):
        self._role = {}         # node -> "host" | "router" | "lan"
        self._static = {}       # node -> [(dst, via)] as given to the node
        self._static6 = {}      # node -> [(dst6, via6)], derived from _static after build
        self._intfs = {}        # node -> {ifname: "ip/len" or None (bridge port)}
        self._intfs6 = {}       # node -> {ifname: "ip6/64" or None}
        self._segment = {}      # (node, ifname) -> segment name
        self._seg_net = {}      # segment name -> ip_network
        self._peer = {}         # (node, ifname) -> (peer node, peer ifname)
        self._check_params(args, params)
        self._block6 = addressing.ipv6_block(self.ipv6_block, f"{self.topo_name}: ipv6_block")
        super().__init__(*args, **params)
        self._derive_ipv6_routes()

    def _derive_ipv6_routes(self):
        """Each node's IPv6 static routes, from its IPv4 ones (the lists the
        nodes were given are filled in place, as set_routes does)."""
        owners6 = {}
        for node, intfs in self._intfs.items():
            for ifname, addr in intfs.items():
                if addr:
                    owners6[addr.split("/")[0]] = self._intfs6[node][ifname].split("/")[0]
        for node, routes in self._static.items():
            routes6 = []
            for dst, via in routes:
                if str(ipaddress.ip_address(via)) not in owners6:
                    raise ConfigError(f"{self.topo_name}: {node}'s route {dst} via {via}: "
                                      f"no interface of the plan has {via}")
                dst6 = "default" if dst == "default" else str(addressing.ipv6_prefix(self._block6, dst))
                routes6.append((dst6, owners6[str(ipaddress.ip_address(via))]))
            self._static6[node][:] = routes6

    def _check_params(self, args, params):
        """Unknown or surplus parameters -> ConfigError, not a TypeError from build()."""
        build_params = {k: v for k, v in params.items() if k not in ("hopts", "sopts", "lopts")}
        try:
            inspect.signature(self.build).bind(*args, **build_params)
        except TypeError as exc:
            names = ", ".join(inspect.signature(self.build).parameters)
            raise ConfigError(f"{self.topo_name}: {exc} (parameters: {names})") from None

    # -- building (used by subclasses' build()) --------------------------------
    def _name_ok(self, name, max_ports):
        if name in self._role:
            raise ConfigError(f"{self.topo_name}: node name {name!r} used twice")
        if len(f"{name}-eth{max_ports}") > MAX_IFNAME:
            raise ConfigError(f"{self.topo_name}: node name {name!r} is too long for "
                              f"interface names of at most {MAX_IFNAME} characters")

    def router(self, name, routes=(), max_ports=99, long_paths=False):
        """A LinuxRouter; ``long_paths``: its own packets start with TTL 255."""
        self._name_ok(name, max_ports)
        self._role[name] = "router"
        self._static[name] = list(routes)
        self._static6[name] = []
        self._intfs[name] = {}
        self._intfs6[name] = {}
        cls = LongPathRouter if long_paths else LinuxRouter
        return self.addHost(name, cls=cls, routes=self._static[name],
                            routes6=self._static6[name])

    def host(self, name, routes=(), max_ports=9, long_paths=False):
        """An end host; ``long_paths``: its packets start with TTL 255."""
        self._name_ok(name, max_ports)
        self._role[name] = "host"
        self._static[name] = list(routes)
        self._static6[name] = []
        self._intfs[name] = {}
        self._intfs6[name] = {}
        cls = LongPathHost if long_paths else Host
        return self.addHost(name, cls=cls, routes=self._static[name],
                            routes6=self._static6[name])

    def set_routes(self, name, routes):
        """Replace ``name``'s static routes (when they depend on later addresses)."""
        self._static[name][:] = list(routes)

    def lan(self, name, subnet, max_ports=999):
        """A LAN (LanBridge) for ``subnet``; attach nodes with :meth:`join`."""
        self._name_ok(name, max_ports)
        self._role[name] = "lan"
        self._intfs[name] = {}
        self._intfs6[name] = {}
        self._seg_net[name] = ipaddress.ip_network(subnet)
        # Explicitly: mn passes inNamespace=False to every switch, which would
        # put the bridge (and its br0) in the root namespace.
        return self.addSwitch(name, cls=LanBridge, inNamespace=True)

    def _link(self, a, b, addr_a, addr_b, segment, netem_a=None, netem_b=None):
        addr6_a, addr6_b = (addressing.ipv6_interface(self._block6, a) if a else None
                            for a in (addr_a, addr_b))
        params1 = {"addrs": [addr_a], "addrs6": [addr6_a]} if addr_a else {}
        params2 = {"addrs": [addr_b], "addrs6": [addr6_b]} if addr_b else {}
        # netem declared on a link end acts on what that end SENDS (egress);
        # the Testbed applies it once the network is up (Testbed.apply_netem).
        if netem_a is not None:
            params1["netem"] = netem_a
        if netem_b is not None:
            params2["netem"] = netem_b
        key = self.addLink(a, b, params1=params1, params2=params2)
        info = self.linkInfo(a, b, key)
        # Mininet names an interface <node>-eth<port>, the port numbered in
        # the order links are added to the Topo (bridges count from 1).
        if_a, if_b = f"{a}-eth{info['port1']}", f"{b}-eth{info['port2']}"
        self._intfs[a][if_a] = addr_a
        self._intfs[b][if_b] = addr_b
        self._intfs6[a][if_a] = addr6_a
        self._intfs6[b][if_b] = addr6_b
        self._segment[(a, if_a)] = self._segment[(b, if_b)] = segment
        self._peer[(a, if_a)], self._peer[(b, if_b)] = (b, if_b), (a, if_a)
        return if_a, if_b

    def p2p(self, a, b, subnet, netem_a=None, netem_b=None):
        """A direct link ``a`` -- ``b`` on ``subnet``: ``a`` gets host 1, ``b`` host 2.

        ``netem_a`` / ``netem_b``: a :class:`wirelab.impair.spec.NetemSpec` for the
        packets ``a`` sends to ``b`` / ``b`` sends to ``a`` (validated here,
        before anything exists; applied by the Testbed when the network is up).
        """
        subnet = ipaddress.ip_network(subnet)
        addr_a, addr_b = addressing.point_to_point(subnet)
        segment = f"{a}--{b}"
        self._seg_net[segment] = subnet
        self._declared_netem = getattr(self, "_declared_netem", {})
        for node, spec in ((a, netem_a), (b, netem_b)):
            if spec is not None:
                self._declared_netem[(node, segment)] = str(spec)
        return self._link(a, b, addr_a, addr_b, segment, netem_a, netem_b)

    def declared_netem(self):
        """{(node, segment): 'netem ...'}: impairments declared in the topology."""
        return dict(getattr(self, "_declared_netem", {}))

    def join(self, node, lan, host_index):
        """Attach ``node`` to ``lan`` as host number ``host_index`` of its subnet."""
        addr = addressing.interface(self._seg_net[lan], host_index)
        return self._link(node, lan, addr, None, lan)[0]

    # -- the plan as data ---------------------------------------------------------
    def _need(self, name, role=None):
        if self._role.get(name) is None or (role and self._role[name] != role):
            kind = role or "node"
            known = ", ".join(self._names(role) if role else sorted(self._role, key=natural))
            raise ConfigError(f"{self.topo_name}: no {kind} named {name!r} (known: {known})")

    def _names(self, role):
        return sorted((n for n, r in self._role.items() if r == role), key=natural)

    def role(self, name):
        """``'host'``, ``'router'`` or ``'lan'``."""
        self._need(name)
        return self._role[name]

    def router_names(self):
        return self._names("router")

    def host_names(self):
        """End hosts only (Mininet's ``Topo.hosts()`` also lists the routers)."""
        return self._names("host")

    def lan_names(self):
        return self._names("lan")

    @staticmethod
    def _family(family):
        if family not in (4, 6):
            raise ConfigError(f"family must be 4 or 6, not {family!r}")
        return family

    def interfaces(self, node, family=4):
        """{ifname: 'ip/len'} of ``node``'s addressed interfaces, in port order
        (``family=6``: their IPv6 addresses, /64)."""
        self._need(node)
        intfs = self._intfs6 if self._family(family) == 6 else self._intfs
        return {i: a for i, a in intfs[node].items() if a}

    def ip(self, node, ifname=None, family=4):
        """The address (no prefix length) of ``ifname``, or of the first interface."""
        intfs = self.interfaces(node, family)
        if not intfs:
            raise ConfigError(f"{self.topo_name}: {node} has no address")
        if ifname is None:
            ifname = next(iter(intfs))
        if ifname not in intfs:
            raise ConfigError(f"{self.topo_name}: {node} has no interface {ifname!r}")
        return intfs[ifname].split("/")[0]

    def host_ips(self, family=4):
        """{host: address} for every end host (its only / first interface)."""
        return {h: self.ip(h, family=family) for h in self.host_names()}

    def owners(self, family=4):
        """{address: (node, ifname)} for every address in the plan."""
        intfs_of = self._intfs6 if self._family(family) == 6 else self._intfs
        return {a.split("/")[0]: (n, i)
                for n, intfs in intfs_of.items() for i, a in intfs.items() if a}

    def subnets(self, family=4):
        """{segment: network}: one per direct link (``'a--b'``) and per LAN
        (``family=6``: each one's /64)."""
        if self._family(family) == 6:
            return {s: addressing.ipv6_subnet(self._block6, n) for s, n in self._seg_net.items()}
        return dict(self._seg_net)

    def segments(self):
        """{(node, ifname): segment} for every interface, bridge ports included."""
        return dict(self._segment)

    def neighbours(self, node):
        """The nodes (LANs included) at the other end of ``node``'s links, in port order."""
        self._need(node)
        return [self._peer[(node, i)][0] for i in self._intfs[node]]

    def segment_ends(self, segment):
        """[(node, ifname, 'ip/len' or None)] on one link or LAN."""
        return [(n, i, self._intfs[n][i])
                for (n, i), s in self._segment.items() if s == segment]

    def interface_facing(self, node, peer):
        """``node``'s interface on its direct link to ``peer`` (or to LAN ``peer``)."""
        self._need(node)
        self._need(peer)
        for ifname in self._intfs[node]:
            if self._peer[(node, ifname)][0] == peer:
                return ifname
        raise ConfigError(f"{self.topo_name}: {node} has no link to {peer}")

    def static_routes(self, node, family=4):
        """The ``(dst, via)`` routes the node is configured with."""
        self._need(node)
        static = self._static6 if self._family(family) == 6 else self._static
        return list(static.get(node, ()))

    def intended_routes(self, node, family=4):
        """The main table the kernel should hold: connected routes then static ones.

        Dicts with ``dst``, ``gateway`` (None when connected) and ``dev``, as
        :meth:`wirelab.net.testbed.Testbed.routes` returns them. ``family=6``:
        the IPv6 main table, which also holds what the kernel adds by itself
        on every IPv6 interface: fe80::/64 (its link-local address) per
        interface. (Some kernels also list ::1/128 on lo in main, 6.18 keeps
        it in local only: routes on lo are not part of the plan.)
        """
        self._need(node)
        if self._role[node] == "lan":
            return []
        table = []
        nets = {}
        for ifname, addr in self.interfaces(node, family).items():
            iface = ipaddress.ip_interface(addr)
            nets[ifname] = iface.network
            table.append({"dst": str(iface.network), "gateway": None, "dev": ifname})
        if family == 6:
            table += [{"dst": "fe80::/64", "gateway": None, "dev": i} for i in nets]
        default = "0.0.0.0/0" if family == 4 else "::/0"
        for dst, via in self.static_routes(node, family):
            dst = default if dst == "default" else str(ipaddress.ip_network(dst))
            gw = ipaddress.ip_address(via)
            dev = next((i for i, net in nets.items() if gw in net), None)
            table.append({"dst": dst, "gateway": str(gw), "dev": dev})
        return table

    def tables(self, family=4):
        return {n: self.intended_routes(n, family) for n in self._role if self._role[n] != "lan"}

    def _address_of(self, target, family=4):
        if target in self._role:
            return self.ip(target, family=family)
        try:
            return str(ipaddress.ip_address(target))
        except ValueError:
            self._need(target)  # raises: neither a node nor an address
            raise

    def trace(self, src, dst, family=4):
        """[(node, inbound ifname)] from ``src`` to ``dst`` (a node or an address),
        following the intended tables with :func:`wirelab.net.addressing.lpm`.
        An address's own family wins over ``family`` (which names a node's)."""
        self._need(src)
        dst = self._address_of(dst, family)
        family = ipaddress.ip_address(dst).version
        return addressing.trace(self.tables(family), self.owners(family), src, dst,
                                segments=self._segment)

    def expected_path(self, src, dst, family=4):
        """The routers that forward a packet from ``src`` to ``dst``, in order
        (neither end counts, even when it is a router)."""
        return [n for n, _ in self.trace(src, dst, family)[1:-1] if self._role[n] == "router"]

    def expected_traceroute(self, src, dst, family=4):
        """The addresses traceroute from ``src`` should print: each router's
        inbound interface (routers answer from it: icmp_errors_use_inbound_ifaddr;
        IPv6 picks the source of an ICMPv6 error on the interface the packet came
        in by, icmp6_send), then ``dst``'s address."""
        dst = self._address_of(dst, family)
        family = ipaddress.ip_address(dst).version
        hops = self.trace(src, dst)[1:-1]
        out = [self.ip(n, i, family) for n, i in hops if self._role[n] == "router"]
        return out + [dst]
