"""A real backbone as a plan: cities, fibre delays, shortest-delay next hops, addresses.

Pure data and pure functions, no Mininet and no root: :func:`backbone` loads a
network from the ``topohub`` package (which ships the Internet Topology Zoo,
SNDlib and Gabriel graphs offline, as NetworkX node-link JSON), validates it and
computes everything :class:`topologies.zoo.ZooTopo` builds from:

* **Delays.** Light in silica fibre travels at c / n, n = 1.468 (the group
  index of standard single-mode fibre near 1550 nm), i.e. about 204.2 km per
  millisecond, 4.9 us per km. A link's one-way delay is its length divided by
  that, rounded to the microsecond. The length is the dataset's ``dist`` (km);
  a link without one gets the great-circle distance between its cities
  (haversine, mean Earth radius 6371.0 km) -- or, for the planar Gabriel
  graphs, whose ``pos`` are x/y kilometres, the straight-line distance.
* **Routes.** For every destination city, Dijkstra over link lengths (integer
  metres, so ties are exact) gives a shortest-delay tree; ties go to fewer
  hops, then to the neighbour listed first. A tree per destination makes the
  hop-by-hop tables loop-free and consistent. Each router's table is then
  summarised with ORTC (Draves et al., "Constructing Optimal IP Routing
  Tables", INFOCOM 1999): the fewest prefixes whose longest-prefix match gives
  every city's block its next hop.
* **Addresses** (``base``, default 10.64.0.0/10): each city owns a /23 of the
  base -- its LAN is the first /24 (router .1, host .2), its second /24 holds
  64 /30s for links. A link is numbered in the block of the end the dataset
  lists first (that end is .1), or of the other end when that block is full.
  Blocks are handed out along a Hilbert curve through the cities' coordinates
  (:func:`hilbert_slots`): cities close in space get adjacent blocks, and as
  the far-away cities in one direction share a next hop, they collapse into
  few prefixes (Gabriel 500: 29 routes per router on average, 176 in dataset
  order, 499 unsummarised; TataNld: 9.6).

Caveat, as in ``internet``: the summaries treat the unused parts of the base
(unassigned blocks, unused /30s, the LAN of a city without a host) as "don't
care", so a packet to an unused address in the base may circle until its TTL
runs out. Every address in the plan is delivered on the shortest-delay path.
"""

import dataclasses
import difflib
import heapq
import ipaddress
import json
import math
import re
import unicodedata

from wirelab.errors import ConfigError, MissingToolError
from wirelab.net import addressing

SPEED_OF_LIGHT_KM_S = 299_792.458
#: Group index of standard single-mode fibre (ITU-T G.652, e.g. SMF-28) at 1550 nm.
FIBRE_REFRACTIVE_INDEX = 1.468
#: ~204.2 km per ms: one kilometre of fibre takes ~4.9 us.
FIBRE_KM_PER_MS = SPEED_OF_LIGHT_KM_S / FIBRE_REFRACTIVE_INDEX / 1000.0
#: Mean Earth radius (IUGG), for great-circle distances.
EARTH_RADIUS_KM = 6371.0088

#: topohub's sets this module reads, and what their ``pos`` means.
DATASETS = {"topozoo": "lonlat", "sndlib": "lonlat", "gabriel": "planar"}

BASE = "10.64.0.0/10"
BLOCK_PREFIX = 23           # one per city: LAN /24 + link /24
LINK_PREFIX = 30            # addressing.point_to_point needs hosts .1 and .2
LINKS_PER_BLOCK = 1 << (LINK_PREFIX - 24)   # 64 /30s in the block's second /24
#: "h_" + slug + "-eth0" is 15 characters, Linux's limit (IFNAMSIZ - 1).
SLUG_MAX = 8


def fibre_delay_ms(km):
    """One-way delay of ``km`` of fibre in ms, rounded to the microsecond."""
    return round(km / FIBRE_KM_PER_MS, 3)


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# -- the data -----------------------------------------------------------------------
def _data_dir(dataset):
    if dataset not in DATASETS:
        raise ConfigError(f"zoo: unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    try:
        import importlib.resources
        import topohub
    except ImportError:
        raise MissingToolError("zoo: the topohub package is not installed "
                               "(run: sudo bash scripts/setup.sh)") from None
    return importlib.resources.files(topohub) / "data" / dataset


def available(dataset="topozoo"):
    """The network names of ``dataset``, sorted (Gabriel's are ``'<size>/<seed>'``)."""
    root = _data_dir(dataset)
    names, todo = [], [(root, "")]
    while todo:
        folder, prefix = todo.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                todo.append((entry, f"{prefix}{entry.name}/"))
            elif entry.name.endswith(".json"):
                names.append(prefix + entry.name[:-5])
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p.lower() for p in n.split("/")])


def load(network, dataset="topozoo"):
    """The node-link dict of ``network``; an unknown name lists close ones."""
    names = available(dataset)
    if network not in names:
        folded = [n for n in names if n.lower() == str(network).lower()]
        if len(folded) != 1:
            close = difflib.get_close_matches(str(network), names, n=5, cutoff=0.5) or names[:5]
            raise ConfigError(f"zoo: no network {network!r} in {dataset} ({len(names)} networks; "
                              f"closest: {', '.join(close)})")
        network = folded[0]
    with (_data_dir(dataset) / f"{network}.json").open() as f:
        return network, json.load(f)


# -- validation ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class City:
    index: int              # position in the dataset (after validation)
    name: str               # as the dataset spells it
    router: str             # slug: the router's node name
    pos: tuple              # (lon, lat) or planar (x, y) km


@dataclasses.dataclass(frozen=True)
class Fibre:
    a: int                  # city indices; the dataset lists a first
    b: int
    km: float
    length_from: str        # "dataset", "haversine" or "euclidean"

    @property
    def delay_ms(self):
        return fibre_delay_ms(self.km)


def _position(node, coords):
    pos = node.get("pos")
    try:
        x, y = (float(v) for v in pos)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    if coords == "lonlat" and not (-180 <= x <= 180 and -90 <= y <= 90):
        return None
    return (x, y)


def _few(names, limit=5):
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def parse_graph(graph, label, coords="lonlat", largest_component=False):
    """Cities and fibres of a node-link dict, validated; ConfigError names the fault."""
    nodes, edges = graph.get("nodes") or [], graph.get("edges", graph.get("links")) or []
    if not nodes:
        raise ConfigError(f"zoo: {label} has no cities")
    ids = {}
    for node in nodes:
        ids[str(node.get("id"))] = node
    unplaced = [n for n in nodes if _position(n, coords) is None]
    if unplaced:
        what = "longitude/latitude" if coords == "lonlat" else "coordinates"
        odd = next((n for n in unplaced if _position(n, "planar")), None)
        why = (f"; {odd.get('name')}'s pos {tuple(odd['pos'])} is no {what}" if odd else "")
        raise ConfigError(f"zoo: {label}: {len(unplaced)} cities without {what} "
                          f"({_few(str(n.get('name', n.get('id'))) for n in unplaced)}): "
                          f"their distances and places are unknown{why}")
    adj = {i: set() for i in ids}
    kept = {}
    for e in edges:
        s, t = str(e.get("source")), str(e.get("target"))
        if s not in ids or t not in ids:
            raise ConfigError(f"zoo: {label}: a link names a city id that does not exist ({s}-{t})")
        if s == t:
            continue        # a loop on one city carries nothing
        km = e.get("dist")
        if km is not None and not (isinstance(km, (int, float)) and math.isfinite(km) and km >= 0):
            raise ConfigError(f"zoo: {label}: link {s}-{t} has a bad length {km!r}")
        key = frozenset((s, t))
        if key not in kept or (km is not None and (kept[key][2] is None or km < kept[key][2])):
            kept[key] = (s, t, km)          # parallel fibres: the shortest carries the traffic
        adj[s].add(t)
        adj[t].add(s)
    parts, seen = [], set()
    for start in ids:                       # dataset order: deterministic parts
        if start in seen:
            continue
        part, todo = [], [start]
        seen.add(start)
        while todo:
            u = todo.pop()
            part.append(u)
            for v in adj[u] - seen:
                seen.add(v)
                todo.append(v)
        parts.append(set(part))
    if len(parts) > 1:
        biggest = max(parts, key=len)       # the first of the largest, on a tie
        if not largest_component:
            cut = [str(ids[i].get("name", i)) for i in ids if i not in biggest]
            raise ConfigError(
                f"zoo: {label} is not connected: {len(parts)} parts, the largest has "
                f"{len(biggest)} of {len(ids)} cities (cut off: {_few(cut)}); "
                f"largest_component=True keeps only the largest")
        ids = {i: n for i, n in ids.items() if i in biggest}
    order = {i: k for k, i in enumerate(ids)}
    names = [str(n.get("name") or f"node{i}") for i, n in ids.items()]
    cities = [City(k, name, router, _position(n, coords))
              for k, ((i, n), name, router) in enumerate(zip(ids.items(), names, slugs(names)))]
    fibres = []
    for s, t, km in kept.values():
        if s not in order or t not in order:
            continue
        a, b = cities[order[s]], cities[order[t]]
        if km is not None:
            how = "dataset"
        elif coords == "lonlat":
            km, how = haversine_km(a.pos[1], a.pos[0], b.pos[1], b.pos[0]), "haversine"
        else:
            km, how = math.dist(a.pos, b.pos), "euclidean"
        fibres.append(Fibre(a.index, b.index, float(km), how))
    if not fibres and len(cities) > 1:
        raise ConfigError(f"zoo: {label} has no links")
    return cities, fibres


# -- names --------------------------------------------------------------------------
def slug_base(name):
    """``'Washington DC'`` -> ``'washingt'``: ASCII letters and digits, at most 8."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())[:SLUG_MAX] or "city"


def slugs(names):
    """Unique slugs in order: a repeat gets a number, e.g. ``amsterda``, ``amsterd2``."""
    taken, out = set(), []
    for name in names:
        slug, k = slug_base(name), 1
        while slug in taken:
            k += 1
            slug = slug_base(name)[:SLUG_MAX - len(str(k))] + str(k)
        taken.add(slug)
        out.append(slug)
    return out


# -- routing --------------------------------------------------------------------------
def shortest_delay_trees(n, fibres):
    """``parent[d][s]``: the neighbour ``s`` forwards to on its way to ``d``
    (None at ``d``), and ``hops[d][s]``. Dijkstra from every ``d`` on integer
    metres; among equal lengths fewer hops, then the lower city index win."""
    adj = [[] for _ in range(n)]
    for f in fibres:
        metres = round(f.km * 1000)
        adj[f.a].append((f.b, metres))
        adj[f.b].append((f.a, metres))
    parents, hops = [], []
    for d in range(n):
        parent, hop, done = [None] * n, [None] * n, [False] * n
        heap = [(0, 0, -1, d)]
        while heap:
            dist, h, via, u = heapq.heappop(heap)
            if done[u]:
                continue
            done[u], hop[u], parent[u] = True, h, (None if via < 0 else via)
            for v, w in adj[u]:
                if not done[v]:
                    heapq.heappush(heap, (dist + w, h + 1, u, v))
        parents.append(parent)
        hops.append(hop)
    return parents, hops


def ortc(leaves):
    """Optimal prefixes for ``leaves`` (a power-of-two list of next-hop bit masks,
    None = don't care): ``[(level, index, bit)]``, a route for the ``index``-th
    aligned run of 2**level leaves to the next hop with that bit."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below, up = levels[-1], []
        for i in range(0, len(below), 2):
            a, b = below[i], below[i + 1]
            up.append(b if a is None else a if b is None else (a & b) or (a | b))
        levels.append(up)
    routes, todo = [], [(len(levels) - 1, 0, None)]
    while todo:
        level, index, inherited = todo.pop()
        mask = levels[level][index]
        if mask is None:
            continue
        if inherited is None or not mask >> inherited & 1:
            inherited = (mask & -mask).bit_length() - 1      # the lowest bit: deterministic
            routes.append((level, index, inherited))
        if level:
            todo += [(level - 1, 2 * index + 1, inherited), (level - 1, 2 * index, inherited)]
    return sorted(routes)


def _hilbert(x, y, order=16):
    """Distance of grid cell (x, y) along the Hilbert curve of a 2**order square."""
    d, s = 0, 1 << (order - 1)
    while s:
        rx, ry = int(bool(x & s)), int(bool(y & s))
        d += s * s * ((3 * rx) ^ ry)
        if not ry:
            if rx:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        s >>= 1
    return d


def hilbert_slots(cities):
    """``slot[k]``: city k's block number, in Hilbert-curve order of the cities'
    positions on their bounding box (ties: dataset order)."""
    xs, ys = [c.pos[0] for c in cities], [c.pos[1] for c in cities]

    def cell(v, lo, hi):
        return int((v - lo) / ((hi - lo) or 1.0) * 65535)
    order = sorted(range(len(cities)), key=lambda k: (_hilbert(
        cell(xs[k], min(xs), max(xs)), cell(ys[k], min(ys), max(ys))), k))
    slot = [0] * len(cities)
    for i, k in enumerate(order):
        slot[k] = i
    return slot


# -- the plan -----------------------------------------------------------------------
@dataclasses.dataclass
class Backbone:
    """A validated network with its address plan and routes (see module docstring)."""

    network: str
    dataset: str
    coords: str
    cities: list            # [City]
    fibres: list            # [Fibre]
    base: ipaddress.IPv4Network
    parents: list           # parents[d][s]: next city from s towards d
    hops: list
    slot: list              # slot[k]: the number of city k's /23 in the base
    link_net: list = dataclasses.field(default_factory=list)   # per fibre: its /30
    link_owner: list = dataclasses.field(default_factory=list)  # per fibre: city at .1

    def block(self, k):
        """City ``k``'s /23: its LAN and its links."""
        return addressing.nth_subnet(self.base, BLOCK_PREFIX, self.slot[k])

    def lan(self, k):
        return addressing.nth_subnet(self.block(k), 24, 0)

    def path(self, s, d):
        """City indices from ``s`` to ``d`` on the shortest-delay path, both included."""
        out = [s]
        while out[-1] != d:
            out.append(self.parents[d][out[-1]])
        return out

    def address(self, k, fibre_index):
        """City ``k``'s address (no length) on fibre ``fibre_index``."""
        net = self.link_net[fibre_index]
        return str(net.network_address + (1 if self.link_owner[fibre_index] == k else 2))

    def neighbours(self, k):
        """{neighbour city: fibre index} of city ``k``."""
        out = {}
        for i, f in enumerate(self.fibres):
            if k in (f.a, f.b):
                out[f.b if f.a == k else f.a] = i
        return out

    def static_routes(self, k):
        """City ``k``'s router's summarised table: [(prefix, next-hop address)]."""
        facing = self.neighbours(k)
        nbrs = sorted(facing)
        if not nbrs:
            return []
        bit = {c: i for i, c in enumerate(nbrs)}
        depth = max(1, (len(self.cities) - 1).bit_length())
        leaves = [None] * (1 << depth)
        for d in range(len(self.cities)):
            if d != k:
                leaves[self.slot[d]] = 1 << bit[self.parents[d][k]]
        size = 1 << (32 - BLOCK_PREFIX)
        routes = []
        for level, index, b in ortc(leaves):
            net = ipaddress.ip_network((int(self.base.network_address) + index * (size << level),
                                        BLOCK_PREFIX - level))
            nbr = nbrs[b]
            routes.append((str(net), self.address(nbr, facing[nbr])))
        return routes


def number_links(bb):
    """Give each fibre its /30 (see module docstring); fills ``link_net``/``link_owner``."""
    used = [0] * len(bb.cities)
    for f in bb.fibres:
        owner = next((c for c in (f.a, f.b) if used[c] < LINKS_PER_BLOCK), None)
        if owner is None:
            raise ConfigError(f"zoo: {bb.network}: {bb.cities[f.a].name} and "
                              f"{bb.cities[f.b].name} each number {LINKS_PER_BLOCK} links already")
        links = addressing.nth_subnet(bb.block(owner), 24, 1)
        bb.link_net.append(addressing.nth_subnet(links, LINK_PREFIX, used[owner]))
        bb.link_owner.append(owner)
        used[owner] += 1


def backbone(network="Abilene", dataset="topozoo", largest_component=False, base=BASE):
    """Load, validate and plan ``network``; or plan a node-link dict given as ``network``."""
    if isinstance(network, dict):
        label, graph = str(network.get("graph", {}).get("name", "graph")), network
        coords = "lonlat" if dataset not in DATASETS else DATASETS[dataset]
    else:
        label, graph = load(network, dataset)
        coords = DATASETS[dataset]
    cities, fibres = parse_graph(graph, label, coords, largest_component)
    base = addressing.network(base, "zoo: base")
    room = addressing.capacity(base, BLOCK_PREFIX)
    if len(cities) > room:
        raise ConfigError(f"zoo: {label} has {len(cities)} cities; base {base} holds "
                          f"{room} /{BLOCK_PREFIX} city blocks")
    parents, hops = shortest_delay_trees(len(cities), fibres)
    bb = Backbone(label, dataset, coords, cities, fibres, base, parents, hops,
                  hilbert_slots(cities))
    number_links(bb)
    return bb
