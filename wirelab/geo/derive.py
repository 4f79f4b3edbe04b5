"""Which network is where: a topology's address plan turned into located prefixes.

Pure functions over a :class:`topologies.PlannedTopo` and a ``site_of(node)``
function (a node's :class:`~wirelab.geo.places.Site`, or None). Nothing is
typed in by hand: every prefix comes from the plan, in three layers, each
more specific than the one before (a lookup is a longest-prefix match, so the
most specific answers):

1. **Routed prefixes**, located at their *origin*: a static route for P is
   followed from node to node while the next node also has a route for exactly
   P; the node it ends at (which reaches P only by a default route or directly)
   is where P lives, as BGP locates a prefix at its origin AS. In ``internet``,
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


def _node_of_address(topo):
    return {ipaddress.ip_address(a): node for a, (node, _) in topo.owners().items()}


def _route_map(topo, node):
    """{network: next-hop address} of ``node``'s static routes (default excluded)."""
    routes = {}
    for dst, via in topo.static_routes(node):
        if dst in ("default", "0.0.0.0/0", "::/0"):
            continue
        routes[ipaddress.ip_network(dst)] = ipaddress.ip_address(via)
    return routes


def route_origins(topo):
    """{network: (origin node, first router, path)} for every routed prefix.

    A chain that loops or leaves the plan (a next hop nobody owns) locates
    nothing: such a prefix is skipped rather than guessed.
    """
    owner = _node_of_address(topo)
    tables = {n: _route_map(topo, n) for n in topo.router_names() + topo.host_names()}
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
            if not ok or node is None:
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


def _best(networks, address):
    """The longest network in ``networks`` (a dict) holding ``address``, or None."""
    best = None
    for net in networks:
        if net.version == address.version and address in net:
            if best is None or net.prefixlen > best.prefixlen:
                best = net
    return best


def locate(topo, site_of, extra=()):
    """[Located] for ``topo``'s plan, sorted shortest prefix first (the order
    the writer needs: a supernet inserted after a subnet would overwrite it).

    ``site_of(node)`` -> Site or None. ``extra``: Located records a topology
    declares itself; they win over derived ones for the same network.
    """
    found = {}
    for net, (origin, start, path) in route_origins(topo).items():
        site = site_of(origin)
        if site is not None:
            found[net] = Located(net, site, origin,
                                 f"routed: {start}'s route for {net} leads to {' > '.join(path[1:])}")
    for segment, net in topo.subnets().items():
        site, node = _segment_place(topo, segment, site_of)
        if site is not None:
            kind = "LAN" if segment in topo.lan_names() else "link"
            found[net] = Located(net, site, node, f"{kind} {segment}: every end at {site.name}")
    for record in extra:
        found[record.network] = record
    for address, (node, ifname) in sorted(topo.owners().items()):
        site = site_of(node)
        if site is None:
            continue
        address = ipaddress.ip_address(address)
        covering = _best(found, address)
        if covering is None or found[covering].site != site:
            host = ipaddress.ip_network(address)
            found[host] = Located(host, site, node, f"address of {node} {ifname}")
    return sorted(found.values(),
                  key=lambda r: (r.network.version, r.network.prefixlen, r.network.network_address))
