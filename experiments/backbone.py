#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Traceroute across a continent: a real backbone, fibre delays, every hop located.

Abilene (Internet Topology Zoo, topologies/zoo.py) by default: one router per
city, fibres whose one-way delay is their length at c / 1.468, declared as
netem on both ends (so it runs inside User-Mode Linux where the kernel lacks
sch_netem; --delay 0 runs natively without delays). One declared case per
traced pair (default New York -> Los Angeles and back): `traceroute -n -q 3`
from the source city's host, captured at the source. From the folder only:
- the hop list == the plan's shortest-delay path (the routers' tables agree
  with a Dijkstra over the fibre lengths), ending at the destination host;
- every probe is answered by an ICMP time-exceeded from that hop's router
  (port-unreachable from the destination) in the capture;
- each hop's RTT (capture: probe out -> ICMP in, the least of the probes) is at
  least twice the declared one-way fibre delay to that hop (netem is never
  early), and at most that plus one host timer tick per netem traversal and one
  for the forwarding itself (wirelab/experiment/timers.py);
- every hop geolocates, in the run's own MaxMind DB built from the plan and
  copied into the folder (sha256 in run.json), to the city the plan puts it in;
- map-<src>-<dst>.png draws the path over the backbone, rtt-vs-hop.png the RTTs
  against the 2 x fibre floor.
"""

import dataclasses
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.apps.traceroute import run_traceroute  # noqa: E402
from wirelab.errors import ConfigError, WirelabError  # noqa: E402
from wirelab.experiment import timers  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, run_cases  # noqa: E402
from wirelab.experiment.claims import Tally, capture_problems  # noqa: E402
from wirelab.experiment.core import Experiment, main  # noqa: E402
from wirelab.observe.probe_rtt import TRACEROUTE_BASE_PORT, probe_answers  # noqa: E402
from wirelab.observe.traceroute_parse import parse  # noqa: E402

UDP_BASE_PORT = TRACEROUTE_BASE_PORT     # probe n (from 0) goes to port 33434 + n
# traceroute -w: seconds to wait for a probe's answer; a long path at a large
# --delay scale needs its RTT on top.
WAIT_BASE_S = 2.0


@dataclasses.dataclass(frozen=True)
class BackboneParams:
    network: str = dataclasses.field(default="Abilene", metadata={
        "help": "Topology Zoo network (topohub's topozoo set)"})
    pairs: tuple[str, ...] = dataclasses.field(
        default=("New York:Los Angeles", "Los Angeles:New York"), metadata={
            "help": "traced pairs, each 'cityA:cityB' (city names or routers)"})
    delay: float = dataclasses.field(default=1.0, metadata={
        "help": "scale on every fibre delay (0: no netem, runs on any kernel)"})
    probes: int = dataclasses.field(default=3, metadata={"help": "probes per hop (traceroute -q)"})

    def __post_init__(self):
        from topologies.zoo import MAX_DELAY_SCALE
        if not 1 <= self.probes <= 10:
            raise ConfigError(f"probes must be 1..10, got {self.probes}")
        if not 0 <= self.delay <= MAX_DELAY_SCALE:
            raise ConfigError(f"delay must be a scale from 0 to {MAX_DELAY_SCALE:g}, got {self.delay}")
        if not self.pairs:
            raise ConfigError("pairs: give at least one 'cityA:cityB'")
        for pair in self.pairs:
            a, sep, b = pair.partition(":")
            if not sep or not a.strip() or not b.strip() or ":" in b:
                raise ConfigError(f"pairs: {pair!r} is not 'cityA:cityB'")
        topology(self)     # unknown network or city: one line now, not after booting UML


def split_pair(pair):
    a, _, b = pair.partition(":")
    return a.strip(), b.strip()


def topology(params):
    """The backbone, with a host only at the traced cities."""
    from topologies.zoo import ZooTopo
    probe = ZooTopo(network=params.network, hosts="none", delay=0)
    ends = [probe.city_index(c) for pair in params.pairs for c in split_pair(pair)]
    for pair in params.pairs:
        a, b = split_pair(pair)
        if probe.city_index(a) == probe.city_index(b):
            raise ConfigError(f"pairs: {pair!r} traces a city to itself")
    routers = sorted({probe.plan.cities[k].router for k in ends})
    return ZooTopo(network=params.network, hosts=routers, delay=params.delay)


# -- the plan's expectations (no root) -----------------------------------------------
def planned_hops(topo, src, dst):
    """Per traceroute hop (the path's routers, then ``dst``): its address and
    city, and the fibre behind it from ``src`` along the shortest-delay path:
    fibres, km, fibre_ms (unscaled), delay_ms (declared one way) and the netem
    qdiscs a probe and its answer cross (``netem_traversals``)."""
    path = topo.shortest_delay_path(src, dst)
    by_ends = {frozenset((f["a"], f["b"])): f for f in topo.fibres()}
    city = {c["router"]: c["name"] for c in topo.cities()}
    hops, km, fibre_ms, delay_ms, delayed = [], 0.0, 0.0, 0.0, 0
    for ttl, addr in enumerate(topo.expected_traceroute(src, dst), 1):
        at = path[min(ttl, len(path)) - 1]
        if 2 <= ttl <= len(path):
            f = by_ends[frozenset(path[ttl - 2:ttl])]
            km, fibre_ms, delay_ms = km + f["km"], fibre_ms + f["fibre_ms"], delay_ms + f["delay_ms"]
            delayed += f["delay_ms"] > 0
        hops.append({"ttl": ttl, "addr": addr, "node": at if ttl <= len(path) else dst, "city": city[at],
                     "fibres": min(ttl, len(path)) - 1, "km": round(km, 2), "fibre_ms": round(fibre_ms, 3),
                     "delay_ms": round(delay_ms, 3), "netem_traversals": 2 * delayed})
    return hops


def rtt_window_ms(delay_ms, netem_traversals):
    """[lo, hi] for a hop's least RTT (see :func:`timers.netem_rtt_window_ms`)."""
    return timers.netem_rtt_window_ms(delay_ms, netem_traversals)


def pair_case(topo, a, b, probes):
    src, dst = (f"h_{topo.plan.cities[topo.city_index(c)].router}" for c in (a, b))
    hops = planned_hops(topo, src, dst)
    return Case(
        name=f"{topo.network}/{src[2:]}-{dst[2:]}",
        args={"network": topo.network, "src": src, "dst": dst, "src_ip": topo.ip(src), "dst_ip": topo.ip(dst),
              "src_city": hops[0]["city"], "dst_city": hops[-1]["city"], "probes": probes,
              "expected": [h["addr"] for h in hops], "expected_path": topo.expected_path(src, dst),
              "shortest_delay_path": topo.shortest_delay_path(src, dst), "hops": hops,
              "wait_s": round(WAIT_BASE_S + 2 * hops[-1]["delay_ms"] / 1000, 3)},
        # Unfiltered: the host's link carries little beside the probes and their
        # answers (ARP, IPv6 ND, which the parser skips), and only an unfiltered
        # capture's stop can wait until the file holds every packet the interface
        # carried (a filtered one in UML once stopped with packets unwritten).
        captures=(CapturePoint(src, next(iter(topo.interfaces(src))), f"at-{src}.pcap"),))


def declared_cases(params):
    topo = topology(params)
    return topo, [pair_case(topo, *split_pair(p), params.probes) for p in params.pairs]


# -- evidence (pure functions of the folder's files) -----------------------------------
def annotate(addrs, planned, db):
    """Each traceroute hop's address located in ``db`` (a .mmdb), beside the plan's city."""
    from wirelab.geo import geolocate
    out = []
    for k, addr in enumerate(addrs):
        found = geolocate(addr, db=db) if addr else {}
        want = planned[k] if k < len(planned) else {}
        out.append({"ttl": k + 1, "addr": addr, "city": found.get("city"), "loc": found.get("loc"),
                    "prefix": found.get("prefix"), "node": found.get("node"),
                    "expected_city": want.get("city"), "expected_node": want.get("node")})
    return out


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def geo_database(ev):
    """(path of the run's .mmdb in the folder, None) or (None, why it cannot be used)."""
    geo = ev.run.get("geo") or {}
    if not geo.get("file"):
        return None, "run.json names no geolocation database"
    path = ev.path(geo["file"])
    if not os.path.isfile(path):
        return None, f"{geo['file']} is missing from the folder"
    digest = sha256_of(path)
    return (path, None) if digest == geo.get("sha256") else \
        (None, f"{geo['file']}: sha256 {digest[:16]}... is not run.json's {str(geo.get('sha256'))[:16]}...")


def pair_table(ev, rec, db):
    """One case read back: hops traced, answers, RTTs against their window, places."""
    import dpkt
    a, w = rec["args"], rec["workload"] or {}
    table = {"case": rec["name"], "pair": f"{a['src_city']} -> {a['dst_city']}", "error": None}
    if rec["error"]:
        return {**table, "error": f"case failed at {rec['error']['stage']}: {rec['error']['message']}"}
    try:
        traced = [h["addr"] for h in parse(w.get("traceroute_stdout", ""))]
    except ValueError as exc:
        traced, table["error"] = [], str(exc)
    try:
        answers = probe_answers(ev.path(rec["name"], f"at-{a['src']}.pcap"), a["src_ip"], a["dst_ip"],
                                a["probes"], UDP_BASE_PORT)
    except (OSError, WirelabError, dpkt.dpkt.Error) as exc:
        answers, table["pcap_error"] = {}, str(exc)
    rows = []
    for hop in a["hops"]:
        got = answers.get(hop["ttl"], [])
        rtts = [x["rtt_ms"] for x in got if x["rtt_ms"] is not None]
        lo, hi = rtt_window_ms(hop["delay_ms"], hop["netem_traversals"])
        rows.append({**hop, "answers": got, "rtts_ms": rtts, "min_rtt_ms": min(rtts) if rtts else None,
                     "window_ms": [round(lo, 3), round(hi, 3)]})
    located = annotate(traced, a["hops"], db) if db else []
    return {**table, "traced": traced, "hops": rows, "located": located}


# -- verify -----------------------------------------------------------------------------
CLAIMS = [
    ("path", "traceroute's hop list == the plan's shortest-delay path (tables == Dijkstra over fibre km)",
     "<case>/traceroute.txt; case.json args.expected, expected_path, shortest_delay_path"),
    ("icmp", "every probe answered by an ICMP time-exceeded from that hop's router "
             "(port-unreachable from the destination)", "<case>/at-<src>.pcap"),
    ("floor", "each hop's least RTT >= 2 x the declared one-way fibre delay to it (netem never early)",
     "<case>/at-<src>.pcap: probe out -> ICMP in; case.json args.hops[].delay_ms (fibres())"),
    ("ceiling", "each hop's least RTT <= 2 x fibre delay + one host tick (EVENT_WAKEUP_SLACK_MS) "
                f"per netem traversal + {timers.FORWARDING_STALLS} for forwarding",
     "<case>/at-<src>.pcap; case.json args.hops[].netem_traversals"),
    ("geo", "every hop geolocates to the city of the router the plan says (the run's .mmdb)",
     "geo/*.mmdb (sha256 in run.json); case.json args.hops[].city"),
    ("captures", "captures complete (tcpdump exited cleanly, dropped nothing)", "case.json captures"),
]


def check_pair(t, rec, tally, db, db_error):
    name, a = rec["name"], rec["args"]
    if t["error"] and not t.get("traced"):
        for key, _, _ in CLAIMS:
            tally.check(key, False, name, t["error"])
        return
    w = rec["workload"] or {}
    same_route = a["expected_path"] == a["shortest_delay_path"]
    tally.check("path", t["traced"] == a["expected"] and same_route and w.get("traceroute_exit") == 0, name,
                f"got {t['traced']}, expected {a['expected']}; tables {a['expected_path']}, "
                f"Dijkstra {a['shortest_delay_path']}; exit {w.get('traceroute_exit')}")
    last = len(a["hops"])
    wrong = [(h["ttl"], [x["from"] for x in h["answers"]]) for h in t["hops"]
             if len(h["answers"]) != a["probes"] or any(
                 x["from"] != h["addr"] or x["kind"] != ("unreachable" if h["ttl"] == last else "exceeded")
                 for x in h["answers"])]
    tally.check("icmp", not wrong and not t.get("pcap_error"), name, t.get("pcap_error") or f"hops {wrong}")
    for key, side in (("floor", 0), ("ceiling", 1)):
        bad = [(h["ttl"], h["min_rtt_ms"], h["window_ms"][side]) for h in t["hops"]
               if len(h["rtts_ms"]) != a["probes"]
               or (h["min_rtt_ms"] < h["window_ms"][0] if side == 0 else h["min_rtt_ms"] > h["window_ms"][1])]
        tally.check(key, not bad, name, f"(ttl, least RTT, bound) {bad}")
    off = [(g["ttl"], g["addr"], g["city"], g["expected_city"]) for g in t["located"]
           if g["city"] != g["expected_city"]]
    tally.check("geo", db is not None and len(t["located"]) == last and not off, name,
                db_error or f"(ttl, addr, located, plan) {off}; {len(t['located'])} of {last} hops")
    problems = capture_problems(rec["captures"]) + ([] if len(rec["captures"]) == 1 else ["no capture"])
    tally.check("captures", not problems, name, str(problems))


def tables(ev):
    db, db_error = geo_database(ev)
    return db, db_error, [(rec, pair_table(ev, rec, db)) for rec in ev.cases()]


class BackboneExperiment(Experiment):
    __doc__ = __doc__
    name = "backbone"
    Params = BackboneParams
    needs_netem = True

    @classmethod
    def needs_netem_for(cls, params):
        """--delay 0 declares no netem: it runs on any kernel."""
        return params.delay > 0

    def setup(self):
        from wirelab.geo.build import database_for
        from wirelab.net.testbed import Testbed
        self.topo, self.declared = declared_cases(self.params)
        # Built into the folder itself: verify must not depend on a cache that may vanish.
        spec = f"zoo,{self.topo.network}"
        built = database_for(spec, directory=self.path("geo"))
        self.record(geo={"spec": spec, "file": os.path.relpath(built.path, self.out_dir),
                         "sha256": sha256_of(built.path), "records": len(built.records),
                         "seconds": round(built.seconds, 3)},
                    backbone={"network": self.topo.network, "delay_scale": self.params.delay,
                              "cities": [{k: c[k] for k in ("name", "router", "lon", "lat", "prefix")}
                                         for c in self.topo.cities()],
                              "fibres": [{k: f[k] for k in ("a", "b", "km", "fibre_ms", "delay_ms")}
                                         for f in self.topo.fibres()]})
        self.tb = self.stack.enter_context(Testbed(self.topo, log=self.log))

    def run(self):
        run_cases(self, self.tb, self.declared, self.trace)

    def trace(self, case, folder):
        """The workload: one ping (neighbours resolved along the path), then traceroute."""
        a = case.args
        ping = self.tb.run(a["src"], ["ping", "-n", "-c", "1", "-W", str(a["wait_s"] + 2), a["dst_ip"]],
                           timeout=a["wait_s"] + 10, check=False)
        record = run_traceroute(self.tb, a["src"], a["dst_ip"], max_ttl=len(a["expected"]) + 3,
                                probes=a["probes"], wait=a["wait_s"], folder=folder)
        return {**record, "ping_exit": ping.returncode}

    @classmethod
    def verify(cls, ev):
        tally = Tally()
        db, db_error, pairs = tables(ev)
        for rec, t in pairs:
            check_pair(t, rec, tally, db, db_error)
        ev.save("hops.json", [t for _, t in pairs])
        ev.metrics["summary"] = tally.summary()
        ev.metrics["hops"] = {t["case"]: [
            {"ttl": h["ttl"], "addr": h["addr"], "city": h["city"], "min_rtt_ms": h["min_rtt_ms"],
             "floor_ms": round(2 * h["delay_ms"], 3), "window_ms": h["window_ms"]} for h in t.get("hops", [])]
            for _, t in pairs}
        keys = [k for k in CLAIMS if k[0] != "floor" or ev.params.delay > 0]
        if ev.params.delay == 0:
            ev.metrics["not_exercised"] = ["RTT floor: --delay 0 declares no fibre delay (no netem), "
                                           "so 2 x 0 ms is no test; the ceiling still is"]
        return [tally.claim(key, title, evidence) for key, title, evidence in keys]

    @classmethod
    def plot(cls, ev):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from wirelab.observe.geomap import PATH_COLOURS, backbone_map
        backbone = ev.run["backbone"]
        _, _, pairs = tables(ev)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, (rec, t) in enumerate(pairs):
            rows, colour = t.get("hops", []), PATH_COLOURS[i % len(PATH_COLOURS)]
            ttls = [h["ttl"] for h in rows]
            ax.plot([h["ttl"] for h in rows for _ in h["rtts_ms"]], [r for h in rows for r in h["rtts_ms"]],
                    ".", ms=4, color=colour, alpha=0.5)
            ax.plot(ttls, [h["min_rtt_ms"] for h in rows], "o-", color=colour, label=f"{t['pair']}: least RTT")
            for h in rows:
                if h["min_rtt_ms"] is not None:
                    ax.annotate(h["city"], (h["ttl"], h["min_rtt_ms"]), xytext=(4, -10 if i % 2 else 4),
                                textcoords="offset points", fontsize=6, color=colour)
            ax.step(ttls, [2 * h["delay_ms"] for h in rows], "--", where="mid", color=colour, alpha=0.7,
                    label=f"{t['pair']}: 2 x fibre delay (floor)")
            points = []
            for g in t.get("located", []):
                row = next((h for h in rows if h["ttl"] == g["ttl"]), {})
                if g["loc"]:
                    lat, lon = map(float, g["loc"].split(","))
                    rtt = row.get("min_rtt_ms")
                    points.append((lon, lat, f"{g['ttl']} {g['addr']} {'-' if rtt is None else f'{rtt:.2f}'} ms"))
            backbone_map(backbone["cities"], backbone["fibres"], [{"label": t["pair"], "points": points}],
                         ev.path(f"map-{rec['args']['src'][2:]}-{rec['args']['dst'][2:]}.png"),
                         f"{backbone['network']}: traceroute {t['pair']} (least RTT per hop; "
                         f"delay x{backbone['delay_scale']:g})")
        ax.set_xlabel("hop (TTL)")
        ax.set_ylabel("RTT (ms)")
        ax.set_title(f"{backbone['network']}: RTT per hop against twice the fibre delay")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(ev.path("rtt-vs-hop.png"), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(BackboneExperiment))
