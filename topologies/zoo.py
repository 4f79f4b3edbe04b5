"""zoo: a real backbone -- Internet Topology Zoo cities joined by fibre of real length.

    sudo mn --custom topologies/zoo.py --topo zoo,Abilene --controller none        # in UML: netem
    sudo mn --custom topologies/zoo.py --topo zoo,Abilene,delay=0 --controller none
    sudo mn --custom topologies/zoo.py --topo zoo,TataNld,delay=0,hosts=mumbai+chennai --controller none
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

from topologies import LINUX_DEFAULT_TTL, PlannedTopo  # noqa: E402
from topologies import zoo_plan  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402

#: Largest accepted delay scale: 100x already turns a 4000 km path into 2 s.
MAX_DELAY_SCALE = 100.0


class ZooTopo(PlannedTopo):
    """A backbone from topohub (``dataset``, default the Internet Topology Zoo):
    one router per city, a host at each city (or at chosen ones), one fibre per link.

    Abilene (``zoo,Abilene``; 11 cities, 14 fibres; router names, roughly on the map)::

        seattle ---------- denver --------- kansasci ------ indianap ------ chicago
           |             /                      |              |              |
           |           /                        |              |           newyork
        sunnyval -----'                         |              |              |
           |                                    |              |              |
        losangel --------------------------- houston ------- atlanta ------ washingt

    Each city: router ``<name>`` -- host ``h_<name>`` on the city's LAN.
    Shortest delay New York -> Los Angeles: newyork, washingt, atlanta,
    houston, losangel (4536 km of fibre, 22.2 ms one way: :meth:`path_delay_ms`).

    Parameters:

    * ``network``: a name in the dataset (``zoo_plan.available()``; an unknown
      one is a ConfigError naming the count and the closest names), or from
      Python a NetworkX node-link dict (``nodes`` with ``name`` and ``pos`` =
      (lon, lat); ``edges`` with optional ``dist`` in km).
    * ``hosts``: ``"all"`` (default), ``"none"`` / None, or the cities that get
      one: a list of city names or router names (under mn: ``hosts=a+b``).
    * ``delay``: scale on every fibre delay (default 1.0; 0 = no netem at all,
      so it runs on a kernel without sch_netem).
    * ``dataset``: ``topozoo`` (default), ``sndlib`` or ``gabriel`` (planar
      synthetic graphs, e.g. ``zoo,500/0,dataset=gabriel``).
    * ``largest_component``: keep only the largest connected part of a
      disconnected graph (otherwise: a ConfigError).
    * ``base``: the address block (default 10.64.0.0/10).

    Names: a router is named after its city: ASCII letters and digits of the
    name, at most 8 (``New York`` -> ``newyork``, ``Washington DC`` ->
    ``washingt``); a repeat gets a number (``amsterda``, ``amsterd2``). Its host
    is ``h_<router>``: ``h_<8>-eth0`` is 15 characters, Linux's limit.
    :meth:`cities` keeps the full names.

    Interfaces: a router's fibres in dataset order (eth0, eth1, ...), then its
    LAN (the last port), so fibre interfaces do not depend on ``hosts``.

    Delays: each fibre's one-way delay is its length at c / 1.468 (about 204 km
    per ms, 4.9 us per km), declared as netem on both ends (each end delays
    what it sends) and applied by the Testbed; fibres of 0 km and ``delay=0``
    get no netem. A link without a length in the data uses the great-circle
    distance of its cities (haversine); :meth:`fibres` says which.

    Addresses and routes: see :mod:`topologies.zoo_plan` -- a /23 per city
    (LAN /24: router .1, host .2; links /30s in the second /24), static
    shortest-delay routes summarised per router (ORTC), hosts default via .1.
    :meth:`expected_path` and :meth:`expected_traceroute` follow those tables,
    which is the shortest-delay path (:meth:`shortest_delay_path` computes it
    from the graph alone). Paths longer than 62 routers use TTL 255.
    """

    topo_name = "zoo"
    ipv6_block = "fd77:5::/32"   # a block of its own, beside line 1, cluster 2, dumbbell 3, internet 4

    def build(self, network="Abilene", hosts="all", delay=1.0, dataset="topozoo",
              largest_component=False, base=zoo_plan.BASE):
        from wirelab.impair.spec import NetemSpec
        scale = _scale(delay)
        if isinstance(largest_component, str):
            largest_component = largest_component.lower() in ("1", "true", "yes")
        plan = zoo_plan.backbone(network, dataset, bool(largest_component), base)
        self.plan, self.delay_scale = plan, scale
        self.network, self.dataset = plan.network, plan.dataset
        with_host = _hosts(plan, hosts)
        long_paths = max(max(h) for h in plan.hops) + 2 > LINUX_DEFAULT_TTL - 1
        self._host_of = {}
        for city in plan.cities:
            ports = len(plan.neighbours(city.index)) + (city.index in with_host)
            self.router(city.router, routes=plan.static_routes(city.index),
                        max_ports=max(ports - 1, 0), long_paths=long_paths)
            if city.index in with_host:
                name = self._host_of[city.index] = f"h_{city.router}"
                self.host(name, routes=[("default", str(plan.lan(city.index).network_address + 1))],
                          max_ports=0, long_paths=long_paths)
        self._netem = []
        for i, fibre in enumerate(plan.fibres):
            ms = round(fibre.delay_ms * scale, 3)
            spec = NetemSpec(delay=ms) if ms > 0 else None
            self._netem.append(ms if spec else 0.0)
            owner = plan.link_owner[i]
            other = fibre.b if owner == fibre.a else fibre.a
            self.p2p(plan.cities[owner].router, plan.cities[other].router, plan.link_net[i],
                     netem_a=spec, netem_b=spec)
        for k, name in sorted(self._host_of.items()):
            self.p2p(plan.cities[k].router, name, plan.lan(k))

    # -- plan data (plain, JSON-ready) --------------------------------------------
    def cities(self):
        """One dict per city, in dataset order: ``name`` (as the dataset spells it),
        ``lat``, ``lon`` (degrees; None for planar datasets, whose ``pos`` is then
        x/y km), ``router``, ``host`` (None without one), ``prefix`` (the city's
        /23, everything it owns), ``lan`` (its /24), ``router_ip`` (its LAN
        address, .1) and ``host_ip``. For the geolocation database."""
        out = []
        for c in self.plan.cities:
            lan = self.plan.lan(c.index)
            host = self._host_of.get(c.index)
            geo = self.plan.coords == "lonlat"
            out.append({"name": c.name, "lat": c.pos[1] if geo else None,
                        "lon": c.pos[0] if geo else None, "pos": list(c.pos),
                        "router": c.router, "host": host,
                        "prefix": str(self.plan.block(c.index)), "lan": str(lan),
                        "router_ip": str(lan.network_address + 1),
                        "host_ip": str(lan.network_address + 2) if host else None})
        return out

    def fibres(self):
        """One dict per fibre: ``a``, ``b`` (routers; ``a`` is .1), ``cities``,
        ``km``, ``length_from`` ('dataset', 'haversine' or 'euclidean'),
        ``fibre_ms`` (unscaled) and ``delay_ms`` (declared on both ends; 0: none)."""
        out = []
        for i, f in enumerate(self.plan.fibres):
            owner = self.plan.link_owner[i]
            a, b = (f.a, f.b) if owner == f.a else (f.b, f.a)
            out.append({"a": self.plan.cities[a].router, "b": self.plan.cities[b].router,
                        "cities": [self.plan.cities[a].name, self.plan.cities[b].name],
                        "km": f.km, "length_from": f.length_from, "subnet": str(self.plan.link_net[i]),
                        "fibre_ms": f.delay_ms, "delay_ms": self._netem[i]})
        return out

    def city_index(self, what):
        """A city's index from its router, its host or its (unique) name."""
        return _city(self.plan, what[2:] if str(what).startswith("h_") else what)

    def shortest_delay_path(self, src, dst):
        """The routers on the shortest-delay path between two cities (routers,
        hosts or city names), from the graph alone (not from the tables)."""
        cities = self.plan.cities
        return [cities[k].router for k in self.plan.path(self.city_index(src), self.city_index(dst))]

    def path_delay_ms(self, src, dst):
        """One-way delay declared along :meth:`shortest_delay_path` (ms): the sum
        of its fibres' netem delays; the LANs add none."""
        routers = self.shortest_delay_path(src, dst)
        declared = {frozenset((f["a"], f["b"])): f["delay_ms"] for f in self.fibres()}
        return round(sum(declared[frozenset(p)] for p in zip(routers, routers[1:])), 3)


def _scale(delay):
    if isinstance(delay, str):
        try:
            delay = float(delay)
        except ValueError:
            pass
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or \
            not 0 <= delay <= MAX_DELAY_SCALE:
        raise ConfigError(f"zoo: delay must be a scale from 0 to {MAX_DELAY_SCALE:g} "
                          f"(1 = fibre delays, 0 = none), not {delay!r}")
    return float(delay)


def _city(plan, what):
    """The index of a city given by router name or city name (exact, then any case)."""
    by_router = {c.router: c.index for c in plan.cities}
    if what in by_router:
        return by_router[what]
    for fold in (str, str.lower):
        found = [c.index for c in plan.cities if fold(c.name) == fold(str(what))]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            routers = ", ".join(plan.cities[k].router for k in found)
            raise ConfigError(f"zoo: {plan.network} has {len(found)} cities named {what!r}: "
                              f"name one by its router ({routers})")
    import difflib
    known = [c.name for c in plan.cities] + list(by_router)
    close = difflib.get_close_matches(str(what), known, n=5, cutoff=0.5)
    raise ConfigError(f"zoo: {plan.network} has no city or router {what!r}"
                      + (f" (closest: {', '.join(close)})" if close else
                         f" ({len(plan.cities)} cities, e.g. {', '.join(known[:5])})"))


def _hosts(plan, hosts):
    """The set of city indices that get a host."""
    if hosts is None or (isinstance(hosts, str) and hosts.lower() == "none"):
        return set()
    if isinstance(hosts, str) and hosts.lower() == "all":
        return {c.index for c in plan.cities}
    if isinstance(hosts, str):
        hosts = [h for h in hosts.split("+") if h]
    if not isinstance(hosts, (list, tuple, set, frozenset)):
        raise ConfigError(f"zoo: hosts must be 'all', 'none' or a list of cities, not {hosts!r}")
    return {_city(plan, h) for h in hosts}


topos = {"zoo": ZooTopo}
