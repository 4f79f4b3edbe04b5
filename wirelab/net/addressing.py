"""Address plans and routing tables as pure data: allocation, summaries, LPM.

Topologies (``topologies/``) compute every address from one plan with these
helpers, and describe each node's intended routing table as a list of dicts
shaped like :meth:`wirelab.net.testbed.Testbed.routes` returns them::

    {"dst": "10.0.0.0/24", "gateway": None,        "dev": "r1-eth0"}   # connected
    {"dst": "10.0.8.0/21", "gateway": "10.0.1.2",  "dev": "r1-eth1"}   # static

so the same functions work on the plan and on what the kernel reports.
:func:`lpm` is a reference longest-prefix match (the routing experiment checks
the kernel's choice against it) and :func:`trace` follows next hops through a
set of tables, to prove a plan reaches everything without loops before any
namespace exists. Nothing here needs root or touches the system.

IPv6 comes from the same plan (:func:`ipv6_prefix`, :func:`ipv6_subnet`,
:func:`ipv6_interface`): a topology's IPv6 block is a /32 inside the ULA range
fd00::/8, and the 32 bits after it hold an IPv4 network address. An IPv4 prefix
``p/L`` becomes ``block + p`` as a /(32 + L), so nesting and overlap are kept
exactly (10.0.0.0/8, 10.20.0.0/16 and 10.20.30.0/24 become a /40, a /48 and a
/56 nested the same way), ``default`` stays the default (::/0), and every IPv4
link or LAN subnet gets the /64 that holds its network address (a /64 for
every segment, as RFC 4291 expects), with host number k as interface id ::k::

    block fd77:1::/32, 10.0.1.0/24        ->  fd77:1:a00:100::/64 (the link), .../56 (routes)
    10.0.1.2/24  (host 2 of 10.0.1.0/24)  ->  fd77:1:a00:100::2/64
    10.0.0.0/23  (a summary)              ->  fd77:1:a00::/55

A /32 rather than the /48 of RFC 4193: a /48 leaves 16 bits, too few to carry
the plans' IPv4 networks without a table (the 40-bit random global id becomes a
fixed 24-bit one, fine inside an emulation that never meets another ULA).
"""

import ipaddress

from wirelab.errors import ConfigError


class NoRoute(ConfigError, LookupError):
    """A node has no route for a destination (the kernel: "Network unreachable")."""


class RoutingLoop(ConfigError, LookupError):
    """Following next hops came back to a node already visited."""


# -- allocation -----------------------------------------------------------------
def network(value, what="network"):
    """``value`` as an IPv4 network, or :class:`ConfigError` naming ``what``."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {value!r} is not an IPv4 network ({exc})") from None
    if net.version != 4:
        raise ConfigError(f"{what}: {value!r} is not IPv4")
    return net


def capacity(base, prefixlen):
    """How many /``prefixlen`` subnets ``base`` holds (0 if it is smaller)."""
    base = ipaddress.ip_network(base)
    if prefixlen < base.prefixlen:
        return 0
    return 1 << (prefixlen - base.prefixlen)


def nth_subnet(base, prefixlen, index):
    """The ``index``-th /``prefixlen`` subnet of ``base`` (O(1), unlike ``subnets()``)."""
    base = ipaddress.ip_network(base)
    count = capacity(base, prefixlen)
    if not 0 <= index < count:
        raise ConfigError(
            f"{base} holds {count} /{prefixlen} subnets: index {index} is outside 0..{count - 1}")
    size = 1 << (32 - prefixlen)
    return ipaddress.ip_network((int(base.network_address) + index * size, prefixlen))


def interface(net, host_index):
    """``'a.b.c.d/len'``: host number ``host_index`` (1 = first usable) in ``net``."""
    net = ipaddress.ip_network(net)
    if not 1 <= host_index <= net.num_addresses - 2:
        raise ConfigError(
            f"{net} has hosts 1..{net.num_addresses - 2}: host {host_index} does not fit")
    return f"{net.network_address + host_index}/{net.prefixlen}"


def point_to_point(net):
    """The two ends of a point-to-point link subnet: (first host, second host)."""
    return interface(net, 1), interface(net, 2)


# -- IPv6 from the IPv4 plan ---------------------------------------------------------
IPV6_BLOCK_LEN = 32   # 32 bits of block + 32 bits of IPv4 network = a /64 per subnet
ULA = ipaddress.IPv6Network("fd00::/8")


def ipv6_block(value, what="IPv6 block"):
    """``value`` as a /32 inside fd00::/8, or :class:`ConfigError`."""
    try:
        block = ipaddress.IPv6Network(value, strict=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {value!r} is not an IPv6 network ({exc})") from None
    if block.prefixlen != IPV6_BLOCK_LEN or not block.subnet_of(ULA):
        raise ConfigError(f"{what}: {value} must be a /{IPV6_BLOCK_LEN} inside {ULA} "
                          f"(the IPv4 plan fills the next 32 bits)")
    return block


def ipv6_prefix(block, prefix4):
    """The IPv6 counterpart of IPv4 prefix ``prefix4`` (or ``'default'`` -> ``::/0``):
    ``block`` + the IPv4 bits, /(32 + L). Containment and overlap are preserved."""
    if prefix4 in ("default", "0.0.0.0/0"):
        return ipaddress.IPv6Network("::/0")
    block, net = ipv6_block(block), ipaddress.IPv4Network(prefix4)
    value = int(block.network_address) | (int(net.network_address) << 64)
    return ipaddress.IPv6Network((value, IPV6_BLOCK_LEN + net.prefixlen))


def ipv6_subnet(block, subnet4):
    """The /64 of an IPv4 link or LAN subnet: ``block`` + its network address."""
    net = ipaddress.IPv4Network(subnet4)
    return ipaddress.IPv6Network((int(ipv6_prefix(block, f"{net.network_address}/32").network_address), 64))


def ipv6_interface(block, cidr4):
    """``'a.b.c.d/len'`` -> ``'v6/64'``: host number k of the IPv4 subnet is ::k in its /64."""
    iface = ipaddress.IPv4Interface(cidr4)
    k = int(iface.ip) - int(iface.network.network_address)
    return f"{ipv6_subnet(block, iface.network).network_address + k}/64"


# -- summarisation ----------------------------------------------------------------
def summarize(first, last):
    """The fewest prefixes covering subnets ``first`` through ``last`` inclusive."""
    first, last = ipaddress.ip_network(first), ipaddress.ip_network(last)
    return list(ipaddress.summarize_address_range(
        first.network_address, last.broadcast_address))


def collapse(networks):
    """Merge adjacent and nested networks into the fewest prefixes."""
    return list(ipaddress.collapse_addresses(ipaddress.ip_network(n) for n in networks))


def overlaps(networks):
    """Pairs ``(a, b)`` of networks in the list that overlap (should be empty)."""
    nets = sorted((ipaddress.ip_network(n) for n in networks),
                  key=lambda n: (int(n.network_address), n.prefixlen))
    found = []
    # Sorted by start address, a network can only overlap later ones that start
    # before it ends; scan forward until one starts beyond it.
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if int(b.network_address) > int(a.broadcast_address):
                break
            found.append((a, b))
    return found


# -- longest-prefix match and forwarding ----------------------------------------------
def _dst_network(route, version=4):
    dst = route.get("dst")
    if dst in (None, "default"):
        dst = "0.0.0.0/0" if version == 4 else "::/0"
    return ipaddress.ip_network(dst, strict=False)


def lpm(table, dst):
    """The route in ``table`` the kernel's longest-prefix match picks for ``dst``.

    ``table``: route dicts with ``dst`` (CIDR, ``'default'``) and optionally
    ``priority`` (metric; lower wins among equal prefixes, as in the kernel).
    Among equal prefix and metric the first listed wins. ``None`` if nothing
    matches. Route types (blackhole, unreachable) are not interpreted: such a
    route is still the match, as it is in the kernel. IPv4 or IPv6, as ``dst``
    is; routes of the other family never match.
    """
    addr = ipaddress.ip_address(dst)
    best, best_key = None, None
    for route in table:
        net = _dst_network(route, addr.version)
        if net.version == addr.version and addr in net:
            key = (-net.prefixlen, route.get("priority") or 0)
            if best_key is None or key < best_key:
                best, best_key = route, key
    return best


def trace(tables, owners, src, dst, segments=None, max_hops=255):
    """Follow intended next hops from node ``src`` to address ``dst``.

    ``tables``: {node: [route dict]} with ``gateway`` (None: on-link) and ``dev``;
    ``owners``: {ip: (node, ifname)} for every address in the plan;
    ``segments`` (optional): {(node, ifname): segment id}; when given, a next
    hop must sit on the segment of the route's ``dev``, as ARP requires.
    Returns the hops as ``[(node, in_ifname)]`` from ``src`` (in_ifname None)
    to the node owning ``dst``. Raises :class:`NoRoute` or :class:`RoutingLoop`.
    """
    dst = str(ipaddress.ip_address(dst))
    hops = [(src, None)]
    seen = {src}
    node = src
    while True:
        if owners.get(dst, (None,))[0] == node:
            return hops
        route = lpm(tables.get(node, ()), dst)
        path = " > ".join(h[0] for h in hops)
        if route is None:
            raise NoRoute(f"{node} has no route to {dst} (path: {path})")
        next_ip = route.get("gateway") or dst
        if next_ip not in owners:
            raise NoRoute(f"{node} sends {dst} to {next_ip}, which no node owns (path: {path})")
        nxt, in_if = owners[next_ip]
        if segments is not None:
            here = segments.get((node, route.get("dev")))
            there = segments.get((nxt, in_if))
            if here is None or here != there:
                raise NoRoute(f"{node} sends {dst} out of {route.get('dev')} to {next_ip}, "
                              f"which is not on that segment (path: {path})")
        if nxt in seen:
            raise RoutingLoop(f"{dst}: loop {path} > {nxt}")
        if len(hops) > max_hops:
            raise RoutingLoop(f"{dst}: more than {max_hops} hops from {src}")
        hops.append((nxt, in_if))
        seen.add(nxt)
        node = nxt
