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
    from . import cluster, dumbbell, internet, line
    found = {}
    for module in (line, cluster, dumbbell, internet):
        found.update(module.topos)
    return found


class LongPathRouter(LinuxRouter):
    """A router whose own packets (ICMP errors, echo replies) start with TTL 255."""

    SYSCTLS = {**LinuxRouter.SYSCTLS, "net/ipv4/ip_default_ttl": str(MAX_TTL)}


class LongPathHost(Host):
    """A host whose packets start with TTL 255, for paths of more than 63 routers.

    The sysctl is set in the host's namespace, recorded and restored (NetlinkNode).
    """

    SYSCTLS = {"net/ipv4/ip_default_ttl": str(MAX_TTL)}


class PlannedTopo(Topo):
    """A ``Topo`` that records its address plan and intended routes as it builds.

    Subclasses build with :meth:`router`, :meth:`host`, :meth:`lan`,
    :meth:`p2p` and :meth:`join` instead of the raw ``addHost``/``addLink``, so
    every address, interface name and route is known here and can be checked
    (``tests/unit/test_topologies.py``) before any namespace exists.
    """

    topo_name = "planned"

    def __init__(self, *args, **params):
        self._role = {}         # node -> "host" | "router" | "lan"
        self._static = {}       # node -> [(dst, via)] as given to the node
        self._intfs = {}        # node -> {ifname: "ip/len" or None (bridge port)}
        self._segment = {}      # (node, ifname) -> segment name
        self._seg_net = {}      # segment name -> ip_network
        self._peer = {}         # (node, ifname) -> (peer node, peer ifname)
        self._check_params(args, params)
        super().__init__(*args, **params)

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
        self._intfs[name] = {}
        cls = LongPathRouter if long_paths else LinuxRouter
        return self.addHost(name, cls=cls, routes=self._static[name])

    def host(self, name, routes=(), max_ports=9, long_paths=False):
        """An end host; ``long_paths``: its packets start with TTL 255."""
        self._name_ok(name, max_ports)
        self._role[name] = "host"
        self._static[name] = list(routes)
        self._intfs[name] = {}
        cls = LongPathHost if long_paths else Host
        return self.addHost(name, cls=cls, routes=self._static[name])

    def set_routes(self, name, routes):
        """Replace ``name``'s static routes (when they depend on later addresses)."""
        self._static[name][:] = list(routes)

    def lan(self, name, subnet, max_ports=999):
        """A LAN (LanBridge) for ``subnet``; attach nodes with :meth:`join`."""
        self._name_ok(name, max_ports)
        self._role[name] = "lan"
        self._intfs[name] = {}
        self._seg_net[name] = ipaddress.ip_network(subnet)
        # Explicitly: mn passes inNamespace=False to every switch, which would
        # put the bridge (and its br0) in the root namespace.
        return self.addSwitch(name, cls=LanBridge, inNamespace=True)

    def _link(self, a, b, addr_a, addr_b, segment, netem_a=None, netem_b=None):
        params1 = {"addrs": [addr_a]} if addr_a else {}
        params2 = {"addrs": [addr_b]} if addr_b else {}
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

    def interfaces(self, node):
        """{ifname: 'ip/len'} of ``node``'s addressed interfaces, in port order."""
        self._need(node)
        return {i: a for i, a in self._intfs[node].items() if a}

    def ip(self, node, ifname=None):
        """The address (no prefix length) of ``ifname``, or of the first interface."""
        intfs = self.interfaces(node)
        if not intfs:
            raise ConfigError(f"{self.topo_name}: {node} has no address")
        if ifname is None:
            ifname = next(iter(intfs))
        if ifname not in intfs:
            raise ConfigError(f"{self.topo_name}: {node} has no interface {ifname!r}")
        return intfs[ifname].split("/")[0]

    def host_ips(self):
        """{host: address} for every end host (its only / first interface)."""
        return {h: self.ip(h) for h in self.host_names()}

    def owners(self):
        """{address: (node, ifname)} for every address in the plan."""
        return {a.split("/")[0]: (n, i)
                for n, intfs in self._intfs.items() for i, a in intfs.items() if a}

    def subnets(self):
        """{segment: network}: one per direct link (``'a--b'``) and per LAN."""
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

    def static_routes(self, node):
        """The ``(dst, via)`` routes the node is configured with."""
        self._need(node)
        return list(self._static.get(node, ()))

    def intended_routes(self, node):
        """The main table the kernel should hold: connected routes then static ones.

        Dicts with ``dst``, ``gateway`` (None when connected) and ``dev``, as
        :meth:`wirelab.net.testbed.Testbed.routes` returns them.
        """
        self._need(node)
        if self._role[node] == "lan":
            return []
        table = []
        nets = {}
        for ifname, addr in self.interfaces(node).items():
            iface = ipaddress.ip_interface(addr)
            nets[ifname] = iface.network
            table.append({"dst": str(iface.network), "gateway": None, "dev": ifname})
        for dst, via in self._static[node]:
            dst = "0.0.0.0/0" if dst == "default" else str(ipaddress.ip_network(dst))
            gw = ipaddress.ip_address(via)
            dev = next((i for i, net in nets.items() if gw in net), None)
            table.append({"dst": dst, "gateway": str(gw), "dev": dev})
        return table

    def tables(self):
        return {n: self.intended_routes(n) for n in self._role if self._role[n] != "lan"}

    def _address_of(self, target):
        if target in self._role:
            return self.ip(target)
        try:
            return str(ipaddress.ip_address(target))
        except ValueError:
            self._need(target)  # raises: neither a node nor an address
            raise

    def trace(self, src, dst):
        """[(node, inbound ifname)] from ``src`` to ``dst`` (a node or an address),
        following the intended tables with :func:`wirelab.net.addressing.lpm`."""
        self._need(src)
        return addressing.trace(self.tables(), self.owners(), src, self._address_of(dst),
                                segments=self._segment)

    def expected_path(self, src, dst):
        """The routers that forward a packet from ``src`` to ``dst``, in order
        (neither end counts, even when it is a router)."""
        return [n for n, _ in self.trace(src, dst)[1:-1] if self._role[n] == "router"]

    def expected_traceroute(self, src, dst):
        """The addresses traceroute from ``src`` should print: each router's
        inbound interface (routers answer from it: icmp_errors_use_inbound_ifaddr),
        then ``dst``'s address."""
        hops = self.trace(src, dst)[1:-1]
        out = [self.ip(n, i) for n, i in hops if self._role[n] == "router"]
        return out + [self._address_of(dst)]
