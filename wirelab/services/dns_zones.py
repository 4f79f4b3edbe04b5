"""The lab's DNS as data: servers, zones, delegations, and the files the daemons read.

Pure functions, no root: :func:`default_zones` lays a small DNS tree over the
``internet`` topology, :func:`zone_text` / :func:`nsd_conf` / :func:`unbound_conf`
/ :func:`root_hints` write what nsd and unbound read, and :func:`lookup` /
:func:`resolution_chain` answer, from the data alone, what a query must get and
which servers an iterative resolution asks in turn (verify compares the
captures with these).

A tree is built from the leaves: each hosted domain names the server that is
authoritative for it and its host names; the TLD zones and the root zone are
derived, with one delegation (NS + glue) per child. Every server name is
inside a zone of the tree (``a.root-servers.net.`` and ``a.gtld-servers.net.``
are in ``net.``; a hosted domain's server is ``ns.<domain>``), so every NS name
has an address record where it lives and glue in the parent where it is below
the delegation, as in the real tree.
"""

import dataclasses
import ipaddress

from wirelab.errors import ConfigError

#: TTL of the hosts' A records: long enough to stay cached through a run,
#: short enough that a person sees it count down in seconds.
HOST_TTL = 300
#: TTL of NS records and glue: longer than the hosts', as in the real tree.
DELEGATION_TTL = 3600
#: SOA minimum = negative-caching TTL (RFC 2308): how long an NXDOMAIN is cached.
NEGATIVE_TTL = 60
SERIAL = 1      # zones are written once per run, never transferred


def absolute(name):
    """``name`` lower-cased and ending in a dot; the root is '.'."""
    name = str(name).strip().lower()
    if not name or name == ".":
        return "."
    if ".." in name or name.startswith("."):
        raise ConfigError(f"dns: bad name {name!r}")
    return name if name.endswith(".") else name + "."


def parent_of(name):
    """'www.amazon.com.' -> 'amazon.com.'; 'com.' -> '.'."""
    name = absolute(name)
    if name == ".":
        raise ConfigError("dns: the root has no parent")
    rest = name.split(".", 1)[1]
    return rest or "."


def tld_of(name):
    """'www.amazon.com.' -> 'com.'."""
    return absolute(name).rstrip(".").rsplit(".", 1)[-1] + "."


def is_within(name, origin):
    """Whether ``name`` is ``origin`` or below it."""
    name, origin = absolute(name), absolute(origin)
    return origin == "." or name == origin or name.endswith("." + origin)


@dataclasses.dataclass(frozen=True)
class NameServer:
    """One nsd instance: ``role`` root / tld / auth, on ``node`` at ``ip``."""

    key: str
    role: str
    node: str
    ip: str
    name: str       # its host name, the NS data of the zones it serves (root, TLDs)


@dataclasses.dataclass(frozen=True)
class Record:
    name: str
    rtype: str
    data: str
    ttl: int

    def line(self):
        return f"{self.name}\t{self.ttl}\tIN\t{self.rtype}\t{self.data}"


@dataclasses.dataclass(frozen=True)
class Zone:
    origin: str
    server: str         # NameServer.key
    ns_name: str        # the zone's NS (and SOA mname)
    records: tuple      # Record..., SOA first

    def rrset(self, name, rtype):
        name = absolute(name)
        return [r for r in self.records if r.name == name and r.rtype == rtype]

    def delegations(self):
        """{child origin: [NS names]} this zone hands down."""
        out = {}
        for r in self.records:
            if r.rtype == "NS" and r.name != self.origin:
                out.setdefault(r.name, []).append(r.data)
        return out


@dataclasses.dataclass(frozen=True)
class Zones:
    """The whole tree plus where the recursive resolver runs."""

    servers: tuple          # NameServer...
    zones: tuple            # Zone..., root first, then TLDs, then hosted domains
    resolver_node: str
    resolver_ip: str        # where it listens (what clients put in resolv.conf)
    resolver_out_ip: str    # the source of its queries upstream
    clients: tuple          # networks allowed to query it (CIDR strings)
    web: dict = dataclasses.field(default_factory=dict)   # host name -> node serving HTTP

    def server(self, key):
        for s in self.servers:
            if s.key == key:
                return s
        raise ConfigError(f"dns: no server {key!r}")

    def zone(self, origin):
        origin = absolute(origin)
        for z in self.zones:
            if z.origin == origin:
                return z
        raise ConfigError(f"dns: no zone {origin!r}")

    def zones_of(self, key):
        return [z for z in self.zones if z.server == key]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(servers=tuple(NameServer(**s) for s in d["servers"]),
                   zones=tuple(Zone(z["origin"], z["server"], z["ns_name"],
                                    tuple(Record(**r) for r in z["records"])) for z in d["zones"]),
                   resolver_node=d["resolver_node"], resolver_ip=d["resolver_ip"],
                   resolver_out_ip=d["resolver_out_ip"], clients=tuple(d["clients"]),
                   web=dict(d.get("web") or {}))


def _soa(origin, ns_name):
    rname = "hostmaster." + (origin if origin != "." else "root-servers.net.")
    # serial refresh retry expire minimum: nothing transfers; minimum is the negative TTL.
    return Record(origin, "SOA", f"{ns_name} {rname} {SERIAL} 3600 600 86400 {NEGATIVE_TTL}",
                  DELEGATION_TTL)


def build_zones(servers, root_key, tld_key, domains, resolver, clients, web=None):
    """The tree from its leaves.

    ``servers``: NameServer...; ``root_key``/``tld_key``: the servers of the
    root and of every TLD; ``domains``: [(origin, server key, {label: ip})]
    ('@' is the origin itself); ``resolver``: (node, listen ip, outgoing ip);
    ``clients``: CIDRs allowed to ask it. Returns :class:`Zones`.
    """
    by_key = {s.key: s for s in servers}
    if len(by_key) != len(servers):
        raise ConfigError("dns: two servers share a key")
    for key in (root_key, tld_key, *(d[1] for d in domains)):
        if key not in by_key:
            raise ConfigError(f"dns: no server {key!r}")
    root, tld = by_key[root_key], by_key[tld_key]
    hosted = {}
    for origin, key, hosts in domains:
        origin = absolute(origin)
        if origin.count(".") < 2:
            raise ConfigError(f"dns: {origin} is not below a TLD")
        if origin in hosted:
            raise ConfigError(f"dns: domain {origin} given twice")
        if by_key[key].role != "auth":
            raise ConfigError(f"dns: {origin}: server {key} is a {by_key[key].role} server")
        for ip in hosts.values():
            ipaddress.IPv4Address(ip)
        hosted[origin] = (key, hosts)
    tlds = sorted({tld_of(o) for o in hosted} | {tld_of(root.name), tld_of(tld.name)})

    # Hosted domains: SOA, NS ns.<origin>, its address, the hosts.
    leaf = {}
    for origin, (key, hosts) in hosted.items():
        ns_name = "ns." + origin
        recs = [_soa(origin, ns_name), Record(origin, "NS", ns_name, DELEGATION_TTL),
                Record(ns_name, "A", by_key[key].ip, DELEGATION_TTL)]
        for label, ip in sorted(hosts.items()):
            name = origin if label == "@" else absolute(f"{label}.{origin}")
            recs.append(Record(name, "A", ip, HOST_TTL))
        leaf[origin] = Zone(origin, key, ns_name, tuple(recs))

    def glue_for(ns_name):
        """The address of a server name: a server's own, or a hosted domain's ns."""
        for s in servers:
            if s.name == ns_name:
                return s.ip
        for z in leaf.values():
            if z.ns_name == ns_name:
                return z.rrset(ns_name, "A")[0].data
        raise ConfigError(f"dns: no address for server name {ns_name}")

    def delegation(child, ns_name, origin):
        recs = [Record(child, "NS", ns_name, DELEGATION_TTL)]
        if is_within(ns_name, child):   # below the cut: the parent must carry glue
            recs.append(Record(ns_name, "A", glue_for(ns_name), DELEGATION_TTL))
        return recs

    tld_zones = []
    for t in tlds:
        recs = [_soa(t, tld.name), Record(t, "NS", tld.name, DELEGATION_TTL)]
        for s in (root, tld):            # server names live in their TLD (net.)
            if is_within(s.name, t):
                recs.append(Record(s.name, "A", s.ip, DELEGATION_TTL))
        for origin, z in sorted(leaf.items()):
            if parent_of(origin) == t:
                recs += delegation(origin, z.ns_name, t)
        tld_zones.append(Zone(t, tld_key, tld.name, tuple(recs)))
    root_recs = [_soa(".", root.name), Record(".", "NS", root.name, DELEGATION_TTL),
                 Record(root.name, "A", root.ip, DELEGATION_TTL)]
    for t in tlds:
        recs = delegation(t, tld.name, ".")
        root_recs += [r for r in recs if r not in root_recs]
    zones = (Zone(".", root_key, root.name, tuple(root_recs)), *tld_zones,
             *(leaf[o] for o in sorted(leaf)))
    node, listen, out = resolver
    return Zones(tuple(servers), zones, node, listen, out, tuple(clients), dict(web or {}))


def default_zones(topo, resolver_node="isp"):
    """The lab's tree over the ``internet`` topology (a PlannedTopo, or a
    Testbed's ``topo``): see the diagram in :mod:`wirelab.services.dns`.

    root ``.`` on campus, com/edu/net/org on office, amazon.com on srv1,
    example.org and uni.edu on srv2 (srv1 when there is one server); the
    resolver on ``resolver_node`` (isp: listening on its home-facing address,
    asking upstream from its backbone-facing one)."""
    names = set(topo.host_names()) if hasattr(topo, "host_names") else set(topo.hosts())
    need = {"campus", "office", "srv1", resolver_node}
    if not need <= names | set(getattr(topo, "router_names", lambda: [])()):
        raise ConfigError(f"dns: default_zones needs the internet topology "
                          f"(nodes {', '.join(sorted(need))})")
    srv2 = "srv2" if "srv2" in names else "srv1"
    ip = topo.ip
    servers = (
        NameServer("root", "root", "campus", ip("campus"), "a.root-servers.net."),
        NameServer("tld", "tld", "office", ip("office"), "a.gtld-servers.net."),
        NameServer("auth1", "auth", "srv1", ip("srv1"), "ns.amazon.com."),
    )
    if srv2 != "srv1":
        servers += (NameServer("auth2", "auth", srv2, ip(srv2), "ns.example.org."),)
    auth2 = servers[-1].key
    domains = [
        ("amazon.com", "auth1", {"@": ip("srv1"), "www": ip("srv1"), "aws": ip(srv2)}),
        ("example.org", auth2, {"@": ip(srv2), "www": ip(srv2)}),
        ("uni.edu", auth2, {"www": ip("campus")}),
    ]
    intfs = list(topo.interfaces(resolver_node))
    listen, out = ip(resolver_node, intfs[0]), ip(resolver_node, intfs[-1])
    # Who may ask: the home LAN and the ISP's customer block (a NATed home
    # arrives from the home router's 100.64.x address).
    clients = ("192.168.0.0/16", "100.64.0.0/10")
    return build_zones(servers, "root", "tld", domains, (resolver_node, listen, out), clients,
                       web={"www.amazon.com.": "srv1", "aws.amazon.com.": srv2})


# -- what a query must get, from the data alone ---------------------------------

def closest_zone(zones, name):
    """The deepest zone of the tree that contains ``name``."""
    name = absolute(name)
    best = None
    for z in zones.zones:
        if is_within(name, z.origin) and (best is None or len(z.origin) > len(best.origin)):
            best = z
    return best


def lookup(zones, name, rtype="A"):
    """(rcode, [data]) the authoritative answer to ``name``/``rtype``: NOERROR with
    the records (possibly none: NODATA) or NXDOMAIN when no such name exists."""
    name = absolute(name)
    z = closest_zone(zones, name)
    found = [r for r in z.records if r.name == name]
    below = [r for r in z.records if is_within(r.name, name) and r.name != name]
    if not found and not below:
        return "NXDOMAIN", []
    return "NOERROR", sorted(r.data for r in found if r.rtype == rtype)


def resolution_chain(zones, name):
    """[(server key, ip, zone origin, kind)]: whom an iterative resolver asks for
    ``name``, from the root down, and what each answers: 'referral' (to the
    next zone), 'answer' or 'nxdomain' (the last)."""
    name = absolute(name)
    chain = []
    z = zones.zone(".")
    while True:
        s = zones.server(z.server)
        child = next((c for c in z.delegations() if is_within(name, c)), None)
        if child is None:
            rcode, _ = lookup(zones, name) if closest_zone(zones, name) is z else ("NXDOMAIN", [])
            chain.append((s.key, s.ip, z.origin, "nxdomain" if rcode == "NXDOMAIN" else "answer"))
            return chain
        chain.append((s.key, s.ip, z.origin, "referral"))
        z = zones.zone(child)
