#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """Heartbeats: GFS-style chunkservers over UDP, judged by two failure detectors.

::

    manager 10.1.0.2 (main server; capture server.pcap on manager-eth0)
       |
    srvlan (bridge) --- w1 .11 --- w2 .12 --- ... --- w5 .15   (chunkservers)
                        netem on each w<k>-eth0: its own link, its own setting

Every chunkserver sends a JSON heartbeat every T (100 ms) on a fixed
timeline; the main server logs each arrival, counts loss, duplication and
reordering from the sequence numbers, and runs a fixed "dead after k missed
intervals" detector (k = 3, half an interval of grace) beside a phi accrual
one (threshold 8, min std-dev 100 ms) on the same arrivals.

* sweep: five chunkservers at once, netem loss 0, 10, 20, 30, 50 % on their
  own links: the loss the application measures matches netem's (Wilson), no
  duplicates or reordering, fixed-k's false "dead" decisions come exactly
  after runs of k lost heartbeats, and their count matches independent-loss
  theory, mean time T(1-p^k)/((1-p)p^k) (exact Poisson interval).
* impaired: netem duplicate (w1), reorder behind a 125 ms delay (w2), delay
  with jitter (w3): duplicates and reorderings as netem's model predicts;
  under jitter phi accrual never suspects (a bound from its parameters),
  fixed-k may.
* partition: w1's bridge port down for 1.5 s, then up: fixed-k suspects
  kT + T/2 after the last heartbeat (within (k+1)T of the cut), phi where it
  crosses 8; both say alive at the first heartbeat after the heal; exactly
  the heartbeats sent in the window are lost; w2 is never suspected.
* tcp_vs_udp: one link with loss, duplication and reordering; the same
  heartbeats over one TCP connection beside the UDP ones: TCP delivers every
  one once and in order (late), UDP loses, duplicates and reorders them as
  netem's model predicts, and the server copes.

Every "dead" decision is labelled true (link down, chunkserver stopped) or
false (lost, delayed, sender late) and checked against its detector's
deadline; the server's log is matched against the capture at its interface,
datagram by datagram, and TCP heartbeat by heartbeat, the stream rebuilt as JSON
Lines (wirelab.observe.messages, framing="lines"). Plots: a timeline per case,
false positives against loss beside the theory, TCP against UDP.
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topologies.cluster import ClusterTopo  # noqa: E402
from wirelab.apps.gfs.workload import StaticNeighbours, heartbeat_run  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, LinkNetem, run_cases  # noqa: E402
from wirelab.experiment.core import Experiment, main  # noqa: E402
from wirelab.experiment.heartbeat_claims import case_claims  # noqa: E402
from wirelab.experiment.heartbeat_evidence import WAKEUP_SLACK_S  # noqa: E402
from wirelab.experiment.heartbeat_model import phi_floor_silence  # noqa: E402
from wirelab.impair.spec import NetemSpec  # noqa: E402

CASES = ("sweep", "impaired", "partition", "tcp_vs_udp")
BASE_PORT = 7000
# A netem delay D within this of a multiple of T would make "overtaken or not"
# a race between the sender's wake-up and netem's hrtimer (each up to one host
# tick late in UML, timers.EVENT_WAKEUP_SLACK_MS), not the model's coin; and
# silences of j*T +- D (an undelayed heartbeat, then delayed ones) must stay
# this far from fixed-k's deadline kT + T/2, or a coin toss decides "dead".
REORDER_MARGIN_MS = 20.0
# At least this many heartbeats per case: fewer make rate intervals useless.
MIN_HEARTBEATS = 20


@dataclasses.dataclass(frozen=True)
class HeartbeatsParams:
    cases: tuple[str, ...] = dataclasses.field(default=CASES, metadata={
        "help": f"cases to run, of {', '.join(CASES)}"})
    interval_ms: float = dataclasses.field(default=100.0, metadata={"help": "heartbeat interval T, ms (50..5000)"})
    k: int = dataclasses.field(default=3, metadata={"help": "fixed_k: dead after k missed intervals (1..20)"})
    sweep_loss: tuple[float, ...] = dataclasses.field(default=(0.0, 10.0, 20.0, 30.0, 50.0), metadata={
        "help": "sweep: netem loss %% of each chunkserver's link (one chunkserver each, 1..8 of them)"})
    sweep_s: float = dataclasses.field(default=20.0, metadata={"help": "sweep: seconds of heartbeats"})
    duplicate: float = dataclasses.field(default=10.0, metadata={"help": "impaired: duplicate %% on w1"})
    reorder: float = dataclasses.field(default=25.0, metadata={"help": "impaired: reorder %% on w2"})
    reorder_delay_ms: float = dataclasses.field(default=125.0, metadata={
        "help": "impaired: the delay the other packets get on w2, ms (more than T)"})
    jitter_delay_ms: float = dataclasses.field(default=200.0, metadata={"help": "impaired: delay on w3, ms"})
    jitter_ms: float = dataclasses.field(default=150.0, metadata={"help": "impaired: uniform jitter on w3, ms"})
    impaired_s: float = dataclasses.field(default=10.0, metadata={"help": "impaired: seconds of heartbeats"})
    partition_after_s: float = dataclasses.field(default=1.5, metadata={
        "help": "partition: seconds of heartbeats before the cut"})
    partition_s: float = dataclasses.field(default=1.5, metadata={"help": "partition: seconds the link is down"})
    partition_tail_s: float = dataclasses.field(default=1.0, metadata={
        "help": "partition: seconds of heartbeats after the heal"})
    tcp_loss: float = dataclasses.field(default=20.0, metadata={"help": "tcp_vs_udp: loss %%"})
    tcp_duplicate: float = dataclasses.field(default=5.0, metadata={"help": "tcp_vs_udp: duplicate %%"})
    tcp_reorder: float = dataclasses.field(default=25.0, metadata={"help": "tcp_vs_udp: reorder %%"})
    tcp_delay_ms: float = dataclasses.field(default=125.0, metadata={"help": "tcp_vs_udp: delay ms (more than T)"})
    tcp_s: float = dataclasses.field(default=8.0, metadata={"help": "tcp_vs_udp: seconds of heartbeats"})
    phi_threshold: float = dataclasses.field(default=8.0, metadata={"help": "phi: suspect at phi >= this"})
    min_std_ms: float = dataclasses.field(default=100.0, metadata={"help": "phi: least standard deviation, ms"})
    acceptable_pause_ms: float = dataclasses.field(default=0.0, metadata={
        "help": "phi: acceptable heartbeat pause, ms"})

    def __post_init__(self):
        bad = [c for c in self.cases if c not in CASES]
        if bad or not self.cases:
            raise ConfigError(f"cases: unknown {', '.join(bad)}; choose from {', '.join(CASES)}" if bad
                              else "cases: give at least one")
        if len(set(self.cases)) != len(self.cases):
            raise ConfigError("cases: listed twice")
        T = self.interval_ms
        if not 50 <= T <= 5000:
            raise ConfigError(f"interval_ms must be 50..5000 (a host tick must be small against T/2), got {T:g}")
        if not 1 <= self.k <= 20:
            raise ConfigError(f"k must be 1..20, got {self.k}")
        if not 1 <= len(self.sweep_loss) <= 8 or any(not 0 <= x < 90 for x in self.sweep_loss):
            raise ConfigError("sweep_loss: 1..8 settings, each 0 <= loss < 90 %")
        for name in ("duplicate", "reorder", "tcp_loss", "tcp_duplicate", "tcp_reorder"):
            if not 0 < getattr(self, name) < 90:
                raise ConfigError(f"{name} must be a percentage in (0, 90), got {getattr(self, name):g}")
        for name in ("reorder_delay_ms", "tcp_delay_ms"):
            d, r = getattr(self, name), getattr(self, name) % T
            if d <= T or min(r, T - r, abs(r - T / 2)) < REORDER_MARGIN_MS:
                raise ConfigError(f"{name}={d:g}: must exceed T={T:g} ms and stay {REORDER_MARGIN_MS:g} ms off its "
                                  "multiples and half-multiples (else overtaking, or fixed-k's verdict, is a timing "
                                  "race, not netem's coin)")
        if not 0 < self.jitter_ms <= self.jitter_delay_ms:
            raise ConfigError("jitter_ms must be positive and at most jitter_delay_ms (uniform: no negative delay)")
        for name in ("sweep_s", "impaired_s", "tcp_s", "partition_after_s", "partition_s", "partition_tail_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"{name} must be in (0, 3600] s")
        for name in ("sweep_s", "impaired_s", "tcp_s"):
            if self.heartbeats(getattr(self, name)) < MIN_HEARTBEATS:
                raise ConfigError(f"{name}: at least {MIN_HEARTBEATS} heartbeats (T = {T:g} ms)")
        if not self.phi_threshold > 0 or not self.min_std_ms > 0 or self.acceptable_pause_ms < 0:
            raise ConfigError("phi: threshold and min_std_ms positive, acceptable_pause_ms not negative")
        floor = 1000 * phi_floor_silence(self.phi_threshold, self.min_std_ms / 1000, self.acceptable_pause_ms / 1000)
        longest = T + 2 * self.jitter_ms + 2000 * WAKEUP_SLACK_S + T / 10
        if "impaired" in self.cases and longest >= floor:
            raise ConfigError(f"jitter_ms={self.jitter_ms:g}: the longest silence it allows ({longest:.0f} ms) "
                              f"reaches phi's least threshold silence ({floor:.0f} ms): no claim can be derived")
        detect = max((self.k + 1) * T, 2 * floor)
        if "partition" in self.cases and 1000 * self.partition_s < detect:
            raise ConfigError(f"partition_s: the cut must outlast detection (at least {detect / 1000:g} s)")
        if self.heartbeats(self.partition_after_s) < 10:
            raise ConfigError("partition_after_s: at least 10 heartbeats before the cut (phi's history)")

    def heartbeats(self, seconds):
        return int(round(seconds * 1000 / self.interval_ms))

    def workers(self):
        return max([len(self.sweep_loss) if "sweep" in self.cases else 1, 3 if "impaired" in self.cases else 1,
                    2 if "partition" in self.cases else 1])


class Heartbeats(Experiment):
    """GFS-style heartbeats over UDP: loss, duplication, reordering and two failure detectors."""

    name = "heartbeats"
    Params = HeartbeatsParams
    needs_netem = True
    description = __doc__

    @classmethod
    def needs_netem_for(cls, params):
        """The partition alone cuts a bridge port: no netem, any kernel."""
        return any(c != "partition" for c in params.cases)

    def setup(self):
        from wirelab.net.testbed import Testbed
        topo = self.topo = ClusterTopo(workers=self.params.workers(), clients=1)
        self.tb = self.stack.enter_context(Testbed(topo, log=self.log))
        self.neighbours = StaticNeighbours(self.tb, "srvlan", topo.manager, topo.workers).apply()
        self.record(topology={"manager": self.tb.ip(topo.manager),
                              "workers": {w: self.tb.ip(w) for w in topo.workers},
                              "capture": f"{topo.manager}:{topo.interface_facing(topo.manager, 'srvlan')}",
                              "netem": "on each worker's own interface (its egress: the heartbeats)"},
                    neighbours=self.neighbours.readback())

    def cases(self):
        p, topo = self.params, self.topo
        point = (CapturePoint(topo.manager, topo.interface_facing(topo.manager, "srvlan"), "server.pcap"),)
        out = []

        def link(node, **spec):
            return LinkNetem(node, topo.interface_facing(node, "srvlan"), NetemSpec(**spec))

        def case(name, seconds, chunkservers, netem=(), fault=None, drain=0.5):
            port = BASE_PORT + CASES.index(name)
            out.append(Case(name, {"port": port, "seconds": seconds, "count": p.heartbeats(seconds),
                                   "chunkservers": chunkservers, "fault": fault, "drain_s": drain},
                            # Whole packets (payloads are read), no filter: the manager's link
                            # carries little else, and an unfiltered capture's stop waits until
                            # the file holds every packet the interface counted.
                            netem=tuple(netem), captures=point, snaplen=0))
        for name in p.cases:
            if name == "sweep":
                nodes = topo.workers[:len(p.sweep_loss)]
                case(name, p.sweep_s, [{"node": w, "name": w} for w in nodes],
                     [link(w, loss=x) for w, x in zip(nodes, p.sweep_loss) if x > 0])
            elif name == "impaired":
                case(name, p.impaired_s, [{"node": w, "name": w} for w in ("w1", "w2", "w3")],
                     [link("w1", duplicate=p.duplicate),
                      link("w2", reorder=p.reorder, delay=p.reorder_delay_ms),
                      link("w3", delay=p.jitter_delay_ms, jitter=p.jitter_ms)],
                     drain=(p.jitter_delay_ms + p.jitter_ms + p.reorder_delay_ms) / 1000 + 0.5)
            elif name == "partition":
                seconds = p.partition_after_s + p.partition_s + p.partition_tail_s
                case(name, seconds, [{"node": "w1", "name": "w1"}, {"node": "w2", "name": "w2"}],
                     fault={"name": "w1", "node": "w1", "lan": "srvlan",
                            "intf": topo.interface_facing("srvlan", "w1"),
                            "after": p.heartbeats(p.partition_after_s), "seconds": p.partition_s})
            else:
                case(name, p.tcp_s, [{"node": "w1", "name": "w1"},
                                     {"node": "w1", "name": "w1-tcp", "transport": "tcp"}],
                     [link("w1", loss=p.tcp_loss, duplicate=p.tcp_duplicate, reorder=p.tcp_reorder,
                           delay=p.tcp_delay_ms)],
                     drain=p.tcp_delay_ms / 1000 + 0.5)
        return out

    def run(self):
        run_cases(self, self.tb, self.cases(), self.workload)
        self.record(neighbours_after=self.neighbours.readback())

    def workload(self, case, folder):
        p, a = self.params, case.args
        T = p.interval_ms / 1000
        detector = {"k": p.k, "phi_threshold": p.phi_threshold, "min_std": p.min_std_ms / 1000,
                    "acceptable_pause": p.acceptable_pause_ms / 1000}
        record = heartbeat_run(self.tb, folder, manager=self.topo.manager, chunkservers=a["chunkservers"],
                               port=a["port"], interval=T, count=a["count"], detector=detector,
                               fault=a["fault"], drain_s=a["drain_s"])
        got = {n: (c["summary"] or {}).get("sent") for n, c in record["chunkservers"].items()}
        self.log(f"  {case.name}: sent {got}; server saw "
                 f"{ {n: c.get('arrivals') for n, c in ((record.get('server') or {}).get('chunkservers') or {}).items()} }"
                 + (f"; FAILED: {record['failure']}" if record["failure"] else ""))
        return record

    # -- verify and plot: from the results folder only -----------------------------------
    @classmethod
    def verify(cls, ev):
        claims = []
        for case in ev.cases():
            claims += case_claims(ev, case, ev.params)
        return claims

    @classmethod
    def plot(cls, ev):
        from wirelab.observe import heartbeat_plots
        heartbeat_plots.plot_all(ev)


if __name__ == "__main__":
    sys.exit(main(Heartbeats))
