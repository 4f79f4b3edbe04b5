"""Write the MaxMind DB (.mmdb) of a topology's emulated address space.

    database_for("internet")        -> Database(path=~/.cache/wirelab/geo/internet-<hash>.mmdb, ...)
    database_for("zoo,Abilene")     -> the same for a Topology Zoo backbone (topologies/zoo.py)

The networks come from the topology's address plan (:mod:`wirelab.geo.derive`),
the places from :mod:`wirelab.geo.places` (``internet``) or from the backbone's
own cities (``zoo``: Topology Zoo coordinates). Records are shaped like GeoIP2
City's, so any GeoIP2 reader understands them::

    {"city": {"names": {"en": "Ashburn"}},
     "country": {"iso_code": "US", "names": {"en": "United States"}},
     "location": {"latitude": 39.04, "longitude": -77.49, "accuracy_radius": 20},
     "subdivisions": [{"iso_code": "VA", "names": {"en": "Virginia"}}],
     "traits": {"organization": "wirelab Cloud", "isp": "wirelab Cloud",
                "autonomous_system_number": 64499,
                "autonomous_system_organization": "wirelab Cloud"},
     "wirelab": {"network": "10.20.30.0/24", "topology": "internet", "site": "cloud",
                 "node": "cloudgw", "reason": "LAN cloudlan: every end at cloud"}}

(``country``, ``subdivisions`` and ``traits`` keys appear when known.) The file
is an IPv6 database with IPv4 at ::/96, as GeoLite2's, so a later IPv6 plan
fits; its ``database_type`` is ``wirelab-City``, which tells
:mod:`wirelab.geo.lookup` that it describes the emulated network.

It is written to a cache, ``$WIRELAB_GEO_CACHE`` or ``~/.cache/wirelab/geo/``
(``$XDG_CACHE_HOME`` respected), named by the sha256 of its inputs (the
records and this format's version): a changed plan or place gives a new name
and a new build, an unchanged one reuses the file. Never committed.
"""

import dataclasses
import hashlib
import importlib.metadata
import ipaddress
import json
import os
import re
import sys
import tempfile
import time

from wirelab.errors import ConfigError
from wirelab.geo import derive, places

DATABASE_TYPE = "wirelab-City"
# Bump when the record shape or the derivation changes: part of the cache key.
FORMAT_VERSION = 1
DEFAULT_TOPOLOGY = "internet"


@dataclasses.dataclass(frozen=True)
class Database:
    """A built (or reused) database: its file and what went into it."""

    path: str
    topology: str
    records: tuple          # ((network, GeoIP2-shaped dict), ...), shortest prefix first
    built: bool             # False: an identical one was in the cache
    seconds: float          # time to derive (and write, when built)


# -- topologies -------------------------------------------------------------------
def _repo_topologies():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if repo not in sys.path:   # topologies/ is a package beside wirelab/
        sys.path.insert(0, repo)
    import topologies
    return topologies


def load_topology(spec):
    """A PlannedTopo from ``mn --topo`` syntax (``internet``, ``zoo,Abilene``)."""
    from mininet.util import splitArgs
    topologies = _repo_topologies()
    name, args, kwargs = splitArgs(spec)
    known = topologies.all_topos()
    if name not in known:
        raise ConfigError(f"unknown topology {name!r}; choose from {', '.join(sorted(known))}")
    try:
        return known[name](*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{name}: bad parameters {spec!r}: {exc}") from None


def _field(item, *names):
    """The first of ``names`` an item (a mapping or an object) has, else None."""
    for name in names:
        value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
        if value is not None:
            return value
    return None


def _city_sites(topo):
    """Sites and declared prefixes of a topology that knows its cities
    (topologies/zoo.py's ``cities()``: dicts with ``name``, ``lat``, ``lon``,
    ``router``, ``host``, ``prefix`` and, if given, ``prefix6``; Topology Zoo
    coordinates)."""
    network = getattr(topo, "network", None) or topo.topo_name
    sites, extra = [], []
    for item in topo.cities():
        router, host = _field(item, "router"), _field(item, "host")
        lat, lon = _field(item, "lat", "latitude"), _field(item, "lon", "longitude")
        if lat is None or lon is None:
            raise ConfigError(f"{topo.topo_name},{network}: city {_field(item, 'name')!r} has "
                              "no latitude/longitude (a planar dataset has no geography)")
        place = places.Place(str(_field(item, "city", "name")), float(lat), float(lon),
                             country_iso=_field(item, "country_iso") or "",
                             country=_field(item, "country") or "")
        site = places.Site(f"{network}-{router}", tuple(n for n in (router, host) if n), place,
                           places.Org(f"{network} (Topology Zoo)"))
        sites.append(site)
        for prefix in (_field(item, "prefix"), _field(item, "prefix6")):
            if prefix:
                net = ipaddress.ip_network(str(prefix))
                extra.append(derive.Located(net, site, router,
                                            f"{router}'s block, declared by the topology"))
    return tuple(sites), extra


def sites_for(topo):
    """(sites, extra Located records) for ``topo``, or ConfigError when it has no geography."""
    if callable(getattr(topo, "cities", None)):
        return _city_sites(topo)
    if topo.topo_name == "internet":
        return places.INTERNET_SITES, []
    raise ConfigError(f"{topo.topo_name} has no geography: geolocate knows 'internet' and "
                      "'zoo,NETWORK' (Topology Zoo backbones)")


def _site_function(topo, sites):
    """site_of(node): the node's own site, else that of its only neighbour with one
    (a host at a backbone city, a LAN behind one router)."""
    memo = {}

    def own(node):
        if node not in memo:
            memo[node] = places.site_of(node, sites)
        return memo[node]

    def site_of(node):
        site = own(node)
        if site is None:
            found = {own(n) for n in topo.neighbours(node)} - {None}
            site = found.pop() if len(found) == 1 else None
        return site
    return site_of


# -- records ----------------------------------------------------------------------
def geoip2_record(located, topology):
    """The GeoIP2-City-shaped dict for one Located network (plain JSON types)."""
    place, org = located.site.place, located.site.org
    record = {"city": {"names": {"en": place.city}}}
    if place.country_iso:
        record["country"] = {"iso_code": place.country_iso, "names": {"en": place.country}}
    record["location"] = {"latitude": float(place.latitude), "longitude": float(place.longitude),
                          "accuracy_radius": int(place.accuracy_km)}
    if place.subdivision:
        record["subdivisions"] = [{"iso_code": place.subdivision_iso,
                                   "names": {"en": place.subdivision}}]
    traits = {"organization": org.organization}
    if org.isp:
        traits["isp"] = org.isp
    if org.asn:
        traits["autonomous_system_number"] = org.asn
        traits["autonomous_system_organization"] = org.as_organization
    record["traits"] = traits
    # The network as the plan has it: the tree's own prefix for an address can be
    # narrower (a supernet is stored as the pieces its subnets leave).
    record["wirelab"] = {"network": str(located.network), "topology": topology,
                         "site": located.site.name, "node": located.node,
                         "reason": located.reason}
    return record


def records_for(spec):
    """((network, GeoIP2-shaped record), ...) of topology ``spec``, from its plan."""
    topo = load_topology(spec)
    sites, extra = sites_for(topo)
    located = derive.locate(topo, _site_function(topo, sites), extra)
    return tuple((r.network, geoip2_record(r, spec)) for r in located)


def inputs_hash(spec, records):
    """sha256 of everything the file is made from: the records and the format."""
    canonical = json.dumps({"format": FORMAT_VERSION, "type": DATABASE_TYPE, "topology": spec,
                            "writer": importlib.metadata.version("mmdb-writer"),
                            "records": [[str(net), rec] for net, rec in records]},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _mmdb_types(value, key=None):
    """Plain values -> mmdb-writer's types where GeoIP2 fixes the width."""
    from mmdb_writer import MmdbU16, MmdbU32
    if isinstance(value, dict):
        return {k: _mmdb_types(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mmdb_types(v) for v in value]
    if key == "accuracy_radius":
        return MmdbU16(value)
    if key == "autonomous_system_number":
        return MmdbU32(value)
    return value


def write_mmdb(path, records, description, database_type=DATABASE_TYPE):
    """Write ``records`` ((network, dict), ...) to ``path`` as an IPv6 MaxMind DB
    (IPv4 at ::/96). Supernets go in first: mmdb-writer lets a later subnet
    split an earlier supernet, while a later supernet would overwrite it."""
    import netaddr
    from mmdb_writer import MMDBWriter
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type,
                        languages=["en"], description={"en": description})
    ordered = sorted(records, key=lambda r: (r[0].prefixlen + (96 if r[0].version == 4 else 0)))
    for net, record in ordered:
        writer.insert_network(netaddr.IPSet([str(net)]), _mmdb_types(record))
    writer.to_db_file(path)


# -- the cache --------------------------------------------------------------------
def cache_dir():
    """$WIRELAB_GEO_CACHE, else $XDG_CACHE_HOME/wirelab/geo, else ~/.cache/wirelab/geo."""
    explicit = os.environ.get("WIRELAB_GEO_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "wirelab", "geo")


def _slug(spec):
    return re.sub(r"[^A-Za-z0-9]+", "_", spec).strip("_") or "topology"


def database_for(spec=DEFAULT_TOPOLOGY, directory=None):
    """The database of topology ``spec``: reused from the cache when its inputs
    are unchanged, else built (atomically: a reader never sees half a file)."""
    started = time.perf_counter()
    records = records_for(spec)
    if not records:
        raise ConfigError(f"{spec}: the plan locates no network (no node has a place)")
    digest = inputs_hash(spec, records)
    directory = directory or cache_dir()
    slug = _slug(spec)
    path = os.path.join(directory, f"{slug}-{digest[:16]}.mmdb")
    if os.path.isfile(path):
        return Database(path, spec, records, False, time.perf_counter() - started)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{slug}-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write_mmdb(tmp, records, f"wirelab: the emulated address space of topology {spec}, "
                                 f"derived from its address plan (inputs sha256 {digest})")
        os.chmod(tmp, 0o644)   # mkstemp's 0600 would hide it from other users' readers
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _remove_stale(directory, slug, path)
    return Database(path, spec, records, True, time.perf_counter() - started)


def _remove_stale(directory, slug, keep):
    """Older builds of the same topology (other hashes): only our own file names."""
    pattern = re.compile(re.escape(slug) + r"-[0-9a-f]{16}\.mmdb")
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if pattern.fullmatch(name) and path != keep:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def default_database():
    """The path of the default database (``internet``), built if needed."""
    return database_for(DEFAULT_TOPOLOGY).path
