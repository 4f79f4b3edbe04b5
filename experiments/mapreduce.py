#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """MapReduce on a cluster: a job survives loss, a killed worker and a partition -- proved from the wire.

::

    client1 -- edge -- gw --[srvlan bridge]--+-- manager 10.1.0.2   (manager.pcap)
                                             +-- w1 10.1.0.11       (w1.pcap)
                                             +-- ...  wN 10.1.0.(10+N)

A word count job (seeded text files, EECS 485 Project 4's protocol: one JSON
message per TCP connection, UDP heartbeats) runs once per case:

* clean: nothing goes wrong;
* impaired: every bridge port toward the manager and the workers carries
  netem (loss, reordering with delay, duplication): every packet to or from
  the manager crosses exactly one impaired link, after the sender's capture;
* worker_killed: a worker seen holding a task is SIGKILLed;
* partitioned: the bridge stops forwarding that worker's port (STP state
  disabled) until past the dead window, then forwards again: the worker
  comes back with its late heartbeats and ``finished``.

From the folder alone, verify shows: the output equals the reference word
count byte for byte; every TCP message was delivered exactly once and intact
(the messages rebuilt from the receivers' captures equal the programs' event
logs); every message follows the P4 table; heartbeats kept their interval;
the lost worker was declared dead within the heartbeat rule's window after its
last heartbeat seen on the wire, and its task ran again elsewhere; no task
was ever with two live workers at once; the late messages of a worker back
from a partition changed nothing; SYN retransmissions came after 1 s, then
doubling. A timeline per case splits each message's latency into connection
set-up and data.

Bring your own implementation: ``--manager-cmd``, ``--worker-cmd`` (and
``--submit-cmd``) are command templates run unchanged in the emulated hosts,
e.g. ``--manager-cmd '/home/me/p4/env/bin/mapreduce-manager --host {host}
--port {port} --shared_dir {shared_dir}'``. Without event logs the same
claims are checked from the captures and the outputs.
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.apps.byo import PLACEHOLDERS, template_or_bundled  # noqa: E402
from wirelab.apps.mapreduce.scheduler import HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, LinkNetem, run_cases  # noqa: E402
from wirelab.experiment.core import REPO, Experiment, main  # noqa: E402
from wirelab.experiment import mapreduce_claims  # noqa: E402
from wirelab.experiment.mapreduce_rules import job_settings  # noqa: E402

CASES = ("clean", "impaired", "worker_killed", "partitioned")
BUNDLED_DIR = os.path.join(REPO, "wirelab", "apps", "mapreduce")
MAPPER = os.path.join(BUNDLED_DIR, "wordcount_map.py")
REDUCER = os.path.join(BUNDLED_DIR, "wordcount_reduce.py")
# The bundled programs take the interval: short, so a death is seen in seconds.
FAST_HEARTBEAT_S = 0.5
# P4's fixed values (the bundled scheduler's defaults): what your own programs
# use unless their templates take ours.
P4_HEARTBEAT_S, P4_MISSED = HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS


def ports_help(role):
    return " ".join("{" + p + "}" for p in sorted(PLACEHOLDERS[role] - {"python", "repo"}))


@dataclasses.dataclass(frozen=True)
class MapReduceParams:
    cases: tuple[str, ...] = dataclasses.field(default=CASES, metadata={
        "help": f"cases to run, of {', '.join(CASES)} (without impaired no netem is needed: runs natively)"})
    workers: int = dataclasses.field(default=4, metadata={"help": "workers on the LAN (2..16)"})
    # Small by default: inside UML every Python process (a mapper per input
    # file, a reducer per partition) takes about a second to start.
    files: int = dataclasses.field(default=4, metadata={"help": "input text files (1..64)"})
    input_bytes: int = dataclasses.field(default=200_000, metadata={
        "help": "input size in all, bytes (10000..20000000)"})
    nmappers: int = dataclasses.field(default=4, metadata={"help": "map tasks (1..64)"})
    nreducers: int = dataclasses.field(default=2, metadata={"help": "reduce tasks (1..64)"})
    seed: int = dataclasses.field(default=1, metadata={"help": "seed of the input text"})
    heartbeat_interval: float = dataclasses.field(default=0.0, metadata={
        "help": f"T, seconds between heartbeats; 0: {FAST_HEARTBEAT_S:g} when every template takes "
                f"{{heartbeat_interval}} (the bundled ones do), else P4's {P4_HEARTBEAT_S:g}"})
    missed_heartbeats: int = dataclasses.field(default=P4_MISSED, metadata={
        "help": "k: a worker silent for k intervals is dead (2..20)"})
    loss: float = dataclasses.field(default=5.0, metadata={"help": "impaired: loss %% per link crossing"})
    reorder: float = dataclasses.field(default=10.0, metadata={
        "help": "impaired: %% of packets sent without the delay (reordered)"})
    delay: float = dataclasses.field(default=10.0, metadata={"help": "impaired: delay ms of the others"})
    duplicate: float = dataclasses.field(default=5.0, metadata={"help": "impaired: duplicate %%"})
    job_timeout: float = dataclasses.field(default=0.0, metadata={
        "help": "seconds the job may take; 0: derived from the job's size and the case"})
    base_port: int = dataclasses.field(default=6000, metadata={
        "help": "the manager's port in the first case (+100 per case; workers +1)"})
    manager_cmd: str = dataclasses.field(default="", metadata={
        "help": f"your manager, a command template ({ports_help('manager')}); empty: the bundled one"})
    worker_cmd: str = dataclasses.field(default="", metadata={
        "help": f"your worker ({ports_help('worker')}); empty: the bundled one"})
    submit_cmd: str = dataclasses.field(default="", metadata={
        "help": f"your submitter ({ports_help('submit')}); empty: the bundled one"})

    def __post_init__(self):
        bad = [c for c in self.cases if c not in CASES]
        if bad or not self.cases or len(set(self.cases)) != len(self.cases):
            raise ConfigError(f"cases: different names of {', '.join(CASES)}, got {list(self.cases)}")
        for name, lo, hi in (("workers", 2, 16), ("files", 1, 64), ("input_bytes", 10_000, 20_000_000),
                             ("nmappers", 1, 64), ("nreducers", 1, 64), ("missed_heartbeats", 2, 20),
                             ("base_port", 1024, 64000)):
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name} must be {lo}..{hi}, got {getattr(self, name)}")
        for name in ("loss", "reorder", "duplicate"):
            if not 0 < getattr(self, name) < 50:
                raise ConfigError(f"{name} must be a percentage in (0, 50), got {getattr(self, name)}")
        if not 1 <= self.delay <= 1000:
            raise ConfigError(f"delay must be 1..1000 ms, got {self.delay}")
        if not (self.heartbeat_interval == 0 or 0.1 <= self.heartbeat_interval <= 10):
            raise ConfigError(f"heartbeat_interval must be 0 (auto) or 0.1..10 s, got {self.heartbeat_interval}")
        if self.job_timeout < 0 or 0 < self.job_timeout < 5:
            raise ConfigError(f"job_timeout must be 0 (derived) or at least 5 s, got {self.job_timeout}")
        templates = self.templates()
        lacking = [r for r in ("manager", "worker") if not templates[r].takes("heartbeat_interval")]
        if lacking and self.heartbeat_interval not in (0, P4_HEARTBEAT_S):
            raise ConfigError(f"--{lacking[0]}-cmd has no {{heartbeat_interval}}: your program keeps its own "
                              f"(P4: {P4_HEARTBEAT_S:g} s); leave --heartbeat-interval at 0")
        if not templates["manager"].takes("missed_heartbeats") and self.missed_heartbeats != P4_MISSED:
            raise ConfigError(f"--manager-cmd has no {{missed_heartbeats}}: your manager keeps its own "
                              f"(P4: {P4_MISSED}); leave --missed-heartbeats at {P4_MISSED}")

    def templates(self):
        """{role: Template}: yours where given, else the bundled program's."""
        return {"manager": template_or_bundled("manager", self.manager_cmd),
                "worker": template_or_bundled("worker", self.worker_cmd),
                "submit": template_or_bundled("submit", self.submit_cmd),
                "shutdown": template_or_bundled("shutdown", "")}

    def interval(self):
        """T, the heartbeat interval in force (see --heartbeat-interval)."""
        if self.heartbeat_interval:
            return self.heartbeat_interval
        t = self.templates()
        every = all(t[r].takes("heartbeat_interval") for r in ("manager", "worker"))
        return FAST_HEARTBEAT_S if every else P4_HEARTBEAT_S

    def byo(self):
        return bool(self.manager_cmd or self.worker_cmd or self.submit_cmd)


class MapReduce(Experiment):
    """MapReduce survives loss, a killed worker and a partition: output, messages and deaths proved from pcaps."""

    name = "mapreduce"
    Params = MapReduceParams
    needs_netem = True
    description = __doc__

    @classmethod
    def needs_netem_for(cls, params):
        """Only the impaired case needs netem: without it the run stays native."""
        return "impaired" in params.cases

    def setup(self):
        from topologies.cluster import ClusterTopo
        from wirelab.experiment.mapreduce_data import make_inputs
        from wirelab.experiment.mapreduce_job import Cluster
        from wirelab.net.sysctl import read_sysctl
        from wirelab.net.testbed import Testbed
        p = self.params
        topo = self.topo = ClusterTopo(workers=p.workers)
        self.tb = self.stack.enter_context(Testbed(topo, log=self.log))
        tb = self.tb
        self.cluster = Cluster(
            manager=("manager", tb.ip("manager")), workers=tuple((w, tb.ip(w)) for w in topo.workers),
            client=("client1", tb.ip("client1")), lan="srvlan",
            bridge_ports={n: topo.interface_facing("srvlan", n) for n in [topo.manager, *topo.workers, "gw"]})
        # Resolve ARP before any impairment, so that netem never drops an ARP request.
        for node in [*topo.workers, "client1"]:
            tb.run(node, ["ping", "-c1", "-W2", tb.ip("manager")], timeout=10)
        inputs = make_inputs(self.path("input"), p.files, p.input_bytes, p.seed)
        # Linux >= 6.7 repeats the first SYN retransmissions at 1 s (absent before: 0).
        linear = {}
        for node in [topo.manager, *topo.workers]:
            try:
                linear[node] = int(read_sysctl(tb.node(node), "net/ipv4/tcp_syn_linear_timeouts"))
            except FileNotFoundError:
                linear[node] = 0
        self.record(cluster={"manager": self.cluster.manager[1], "client": self.cluster.client[1],
                             "workers": dict(self.cluster.workers), "lan": "srvlan",
                             "bridge_ports": self.cluster.bridge_ports,
                             "interfaces": {n: topo.interface_facing(n, "srvlan")
                                            for n in [topo.manager, *topo.workers]}},
                    inputs=inputs, tcp_syn_linear_timeouts=linear, heartbeat_interval=p.interval(),
                    missed_heartbeats=p.missed_heartbeats,
                    templates={r: t.text for r, t in p.templates().items()},
                    bundled={r: t.is_bundled for r, t in p.templates().items()})

    def cases(self):
        p, topo = self.params, self.topo
        caps = (CapturePoint("manager", topo.interface_facing("manager", "srvlan"), "manager.pcap"),
                *(CapturePoint(w, topo.interface_facing(w, "srvlan"), f"{w}.pcap") for w in topo.workers))
        spec = {"loss": p.loss, "delay": p.delay, "reorder": p.reorder, "duplicate": p.duplicate}
        out = []
        for i, kind in enumerate(p.cases):
            netem = ()
            if kind == "impaired":
                # Every bridge port: what reaches the manager, each worker and the
                # router crosses one netem qdisc, after the sender's own capture.
                netem = tuple(LinkNetem("srvlan", port, spec) for port in self.cluster.bridge_ports.values())
            settings = job_settings(p, kind, p.base_port + 100 * i)
            out.append(Case(kind, {"settings": dataclasses.asdict(settings)}, netem=netem, captures=caps,
                            snaplen=0))
        return out

    def run(self):
        run_cases(self, self.tb, self.cases(), self.workload)

    def workload(self, case, folder):
        from wirelab.experiment.mapreduce_job import JobRun
        from wirelab.experiment.mapreduce_rules import JobSettings
        run = JobRun(self.tb, self.cluster, self.params.templates(), JobSettings(**case.args["settings"]),
                     self.path("input"), folder, MAPPER, REDUCER, log=self.log)
        rec = run.run()
        job = rec["job"]
        self.log(f"  {case.name}: job {'done in ' + str(job.get('seconds')) + ' s' if job['done'] else 'NOT done'}")
        return rec

    @classmethod
    def verify(cls, ev):
        return mapreduce_claims.verify(ev)

    @classmethod
    def plot(cls, ev):
        from wirelab.experiment.mapreduce_plot import plot_timelines
        plot_timelines(ev)


if __name__ == "__main__":
    sys.exit(main(MapReduce))
