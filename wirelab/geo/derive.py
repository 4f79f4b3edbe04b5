"""Which network is where: a topology's address plan turned into located prefixes.

Pure functions over a :class:`topologies.PlannedTopo` and a ``site_of(node)``
function (a node's :class:`~wirelab.geo.places.Site`, or None). Nothing is
typed in by hand: every prefix comes from the plan, in three layers, each
more specific than the one before (a lookup is a longest-prefix match, so the
most specific answers):

1. **Routed prefixes**, located at their *origin*: a static route for P is
   followed from node to node while the next node also has a route for exactly
   P; the node it ends at, if it has no other route overlapping P (it reaches P
   directly, or by its default route), is where P lives, as BGP locates a
   prefix at its origin AS. A summary that its next router splits again has
   no origin and is left out. In ``internet``,
   bb1's 10.0.0.0/8 goes via bb4 to corpgw: the corporation's aggregate is in
   Atlanta; 10.20.0.0/16 ends at unigw (Champaign), 10.20.30.0/24 at cloudgw
   (Ashburn): three nested prefixes, three cities.
2. **Links and LANs** (the plan's segments) whose addressed ends are all in one
   place: a LAN is where its members are.
3. **Single addresses** (/32, /128): each interface address whose node is not
   where the layers above would put it (a link between two cities, an access
   link inside the ISP's block) gets a host record of its own.

Extra located prefixes that a topology declares itself (a backbone city's own
block) come in as ``extra`` and take precedence over layers 1 and 2.
"""

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Located:
    """One network of the database: where it is, whose it is, and why."""

    network: object         # ipaddress.IPv4Network / IPv6Network
    site: object            # wirelab.geo.places.Site
    node: str               # the node it was located at
    reason: str             # how the plan located it, for people ("route at bb1 -> corpgw")


def families(topo):
    """The address families of the plan: (4,), or (4, 6) for a dual-stack plan
    (whose methods take ``family=6``)."""
    try:
        return (4, 6) if topo.owners(family=6) else (4,)
    except TypeError:      # a plan from before IPv6
        return (4,)


def _plan(method, family, *args):
    return method(*args) if family == 4 else method(*args, family=family)


def _node_of_address(topo, family):
    return {ipaddress.ip_address(a): node for a, (node, _) in _plan(topo.owners, family).items()}


def _route_map(topo, node, family):
    """{network: next-hop address} of ``node``'s static routes (default excluded)."""
    routes = {}
    for dst, via in _plan(topo.static_routes, family, node):
        if dst in ("default", "0.0.0.0/0", "::/0"):
            continue
        routes[ipaddress.ip_network(dst)] = ipaddress.ip_address(via)
    return routes


def route_origins(topo, family=4):
    """{network: (origin node, first router, path)} for every routed prefix.

    A chain that loops or leaves the plan (a next hop nobody owns) locates
    nothing: such a prefix is skipped rather than guessed.
    """
    owner = _node_of_address(topo, family)
    tables = {n: _route_map(topo, n, family) for n in topo.router_names() + topo.host_names()}
    origins = {}
    for start in sorted(tables):
        for net, via in tables[start].items():
            path, node, ok = [start], owner.get(via), True
            while node is not None and net in tables.get(node, {}):
                if node in path:
                    ok = False
                    break
                path.append(node)
                node = owner.get(tables[node][net])
            # The end of the chain must deliver P itself: a route there for a
            # part of P (a summary that the next router splits) or for a
            # supernet of it sends P on elsewhere, so P has no single origin.
            if not ok or node is None or any(net.overlaps(other) for other in tables.get(node, {})
                                             if other.version == net.version):
                continue
            path.append(node)
            # Keep the shortest explanation when several routers route it.
            if net not in origins or len(path) < len(origins[net][2]):
                origins[net] = (node, start, path)
    return origins


def _segment_place(topo, segment, site_of):
    """The site of a link or LAN whose addressed ends are all at one site, else None."""
    ends = [(n, a) for n, _, a in topo.segment_ends(segment) if a]
    sites = {site_of(n) for n, _ in ends}
    if len(sites) != 1 or None in sites:
        return None, None
    return sites.pop(), ends[0][0]


def _best(networks, address, lengths):
    """The longest network in ``networks`` (a dict) holding ``address``, or None:
    one dict probe per prefix length in use (``lengths``, longest first)."""
    for length in lengths:
        if length <= address.max_prefixlen:
            net = ipaddress.ip_network((address, length), strict=False)
            if net in networks:
                return net
    return None


def locate(topo, site_of, extra=()):
    """[Located] for ``topo``'s plan, sorted shortest prefix first (the order
    the writer needs: a supernet inserted after a subnet would overwrite it).

    ``site_of(node)`` -> Site or None. ``extra``: Located records a topology
    declares itself; they win over derived ones for the same network.
    """
    found = {}
    for family in families(topo):
        for net, (origin, start, path) in route_origins(topo, family).items():
            site = site_of(origin)
            if site is not None:
                found[net] = Located(net, site, origin, f"routed: {start}'s route for {net} "
                                     f"leads to {' > '.join(path[1:])}")
        for segment, net in _plan(topo.subnets, family).items():
            site, node = _segment_place(topo, segment, site_of)
            if site is not None:
                kind = "LAN" if segment in topo.lan_names() else "link"
                found[net] = Located(net, site, node, f"{kind} {segment}: every end at {site.name}")
    for record in extra:
        found[record.network] = record
    lengths = sorted({n.prefixlen for n in found} | {32, 128}, reverse=True)
    for family in families(topo):
        for address, (node, ifname) in sorted(_plan(topo.owners, family).items()):
            site = site_of(node)
            if site is None:
                continue
            address = ipaddress.ip_address(address)
            covering = _best(found, address, lengths)
            if covering is None or found[covering].site != site:
                host = ipaddress.ip_network(address)
                found[host] = Located(host, site, node, f"address of {node} {ifname}")
    return sorted(found.values(),
                  key=lambda r: (r.network.version, r.network.prefixlen, r.network.network_address))
