#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
__doc__ = """TCP hides loss, reordering and duplication: the proof, from captured packets.

::

    snd1 --- r1 ==[netem on r1-eth0: data direction]==> r2 --- rcv1
        r1-eth1 (capture "up")                     r2-eth1 (capture "down")

For each scenario (loss, reorder, duplicate, delay, combo) a known payload
(seeded bytes) crosses the bottleneck while netem impairs the data direction;
first the same transfer runs with no impairment ("baseline": the control, and
the link's own one-way delay under the delay tolerances).
Then, from the saved files only:

* the receiving application got exactly the bytes sent (length and sha256);
* the pcap analyser (wirelab.observe.pcap, Wireshark's rules) on the sender side counts
  retransmissions by kind (fast / timeout / spurious), duplicate ACKs; on the
  receiver side out-of-order and duplicate segments; the receiver's cumulative
  ACK never goes backwards; handshake and teardown complete;
* the impairment ledger (wirelab.observe.impairment) matches every packet seen
  at "up" with its copies at "down": which ones the network dropped,
  duplicated, reordered -- and proves each dropped data segment was
  retransmitted and delivered;
* the measured impairment rates lie in a 99.99% Wilson interval around the
  configured ones (the exact false-alarm probability is in each claim).

A claim whose evidence is missing (no ledger direction, no drops where the
parameters made them near-certain, a stuck transfer) fails and says why; it
never silently disappears. Tolerances are named constants with their reasons
(kernel timer constants, capture resolution, the measured baseline).

Why these capture points: packet taps see ingress packets before anything
else and egress packets after the egress qdisc. netem sits on r1-eth0 (egress
toward r2). r1-eth1 sees the data as it enters r1 (before netem) and the ACKs as
they leave toward the sender; r2-eth1 sees the data as it leaves toward the
receiver (after the link) and the ACKs as they enter r2. Between the two points
there is exactly the bottleneck, both ways.

``--sweep-loss 0.5 1 2 5`` measures goodput against loss and draws the Mathis
et al. (1997) model beside it; ``--faults nth synack fin`` drops one exact
packet (nftables on r1) and shows the timer, the retransmission and the delivery.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topologies.dumbbell import DumbbellTopo  # noqa: E402
from wirelab.observe import impairment as ledger_mod  # noqa: E402
from wirelab.observe.capture import Captures  # noqa: E402
from wirelab.errors import CommandError, ConfigError  # noqa: E402
from wirelab.experiment.core import Claim, Experiment, main, write_json  # noqa: E402
from wirelab.proc import LineReader, wait_until  # noqa: E402
from wirelab.apps.tcpflow import READY_PREFIX, payload_sha256  # noqa: E402

TCPFLOW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "wirelab", "apps", "tcpflow.py")
SCENARIOS = ("loss", "reorder", "duplicate", "delay", "combo")
FAULTS = ("nth", "synack", "fin")
BASE_PORT = 5001

# -- tolerances: each from a kernel constant or a measured figure -----------------------
# tcpdump writes classic pcap: microsecond timestamps. A difference of two
# timestamps (a one-way delay, an RTT, a retransmission interval) is therefore
# uncertain by up to two of these.
CAPTURE_TS_RESOLUTION_MS = 0.001
TS_DIFF_MS = 2 * CAPTURE_TS_RESOLUTION_MS
# netem holds each packet until now + delay (TCA_NETEM_LATENCY64: nanoseconds)
# and releases it from an hrtimer, which never fires early. So a one-way delay
# is never below the configured delay; above it by the link's own transit time
# (measured: the "baseline" transfer, no impairment, same load) plus the
# wake-up latency of that hrtimer. In a UML guest a timer is a host signal to
# the guest process, delivered once the host schedules it: at most about one
# host scheduler tick (CONFIG_HZ >= 100, so 10 ms) on a busy host; measured here
# on an idle host, median one-way delays sat 0.03-0.06 ms above d + baseline,
# so a median is allowed 1 ms.
MEDIAN_WAKEUP_SLACK_MS = 1.0     # for a median: the typical wake-up
EVENT_WAKEUP_SLACK_MS = 10.0     # for one timer event: the worst, one host tick
# TCP's timers are jiffies timers (mod_timer). One armed at a random moment
# inside a jiffy can expire up to one jiffy early; every kernel config has
# CONFIG_HZ >= 100, so a jiffy is at most 10 ms.
JIFFY_MAX_MS = 10.0
# The timer wheel (kernel/time/timer.c, LVL_CLK_SHIFT = 3) rounds an expiry up
# to its level's granularity, at most 1/8 of the timeout: a 1 s timer may run
# up to 125 ms late (at CONFIG_HZ=100: 8 jiffies on level 1), never early.
TIMER_WHEEL_LATE_FRACTION = 1 / 8
# include/net/tcp.h TCP_TIMEOUT_INIT (1*HZ, RFC 6298 sec. 2.1): the first
# retransmission of an unanswered SYN-ACK (reqsk timer) or SYN comes after 1 s;
# the next would come 2 s later (exponential backoff), at 3 s.
TCP_TIMEOUT_INIT_MS = 1000.0
# include/net/tcp.h TCP_RTO_MIN (HZ/5): the RTO is srtt + rttvar with rttvar
# (4 x mean deviation) at least TCP_RTO_MIN (tcp_set_rto / __tcp_set_rto).
TCP_RTO_MIN_MS = 200.0
# net/ipv4/tcp_output.c tcp_schedule_loss_probe: the tail loss probe fires
# 2*srtt after the last transmission or ACK, + TCP_RTO_MIN when one packet is
# in flight (+ TCP_TIMEOUT_MIN, 2 jiffies, otherwise), capped at the RTO.
TLP_SRTT_FACTOR = 2
# Every "required" claim below (an effect the parameters make near-certain)
# may fail by chance at most this often: the Wilson intervals' budget too.
FALSE_ALARM_BUDGET = 1e-4
# Fast-retransmission claim: needs some drops mid-stream. A single drop may be
# the last segment or two (no three duplicate ACKs behind it, RFC 5681
# dupthresh), and Wireshark labels a retransmission sent within an RTT of the
# highest segment "out-of-order", not "fast"; with three drops at least one is
# both mid-stream and labelled, in every run we have seen.
FAST_RETRANSMIT_MIN_DROPS = 3
# RFC 7323: the timestamp option (10 bytes) padded to 12 in every segment once
# both SYNs carried it; a full segment's payload is then MSS - 12.
TCP_TIMESTAMP_OPTION_BYTES = 12
# Mathis et al. 1997: BW = MSS/RTT * C/sqrt(p), C = sqrt(3/2) for periodic loss
# with delayed ACKs off (the paper's constant for the simplest model).
MATHIS_C = math.sqrt(1.5)


@dataclasses.dataclass(frozen=True)
class TcpRecoveryParams:
    scenarios: tuple[str, ...] = dataclasses.field(default=SCENARIOS, metadata={
        "help": f"netem scenarios to run, of {', '.join(SCENARIOS)} (none: give 'none')"})
    faults: tuple[str, ...] = dataclasses.field(default=FAULTS, metadata={
        "help": f"targeted faults to run, of {', '.join(FAULTS)} (none: give 'none')"})
    bytes: int = dataclasses.field(default=2_000_000, metadata={
        "help": "payload per transfer (100000..10000000)"})
    seed: int = dataclasses.field(default=1, metadata={"help": "seed of the payload bytes"})
    loss: float = dataclasses.field(default=2.0, metadata={"help": "loss %% in 'loss'"})
    reorder: float = dataclasses.field(default=25.0, metadata={
        "help": "%% of packets netem sends without the delay in 'reorder'"})
    reorder_delay: float = dataclasses.field(default=10.0, metadata={
        "help": "ms of delay the other packets get in 'reorder'"})
    duplicate: float = dataclasses.field(default=5.0, metadata={"help": "duplicate %% in 'duplicate'"})
    delay: float = dataclasses.field(default=20.0, metadata={"help": "one-way delay ms in 'delay'"})
    base_delay: float = dataclasses.field(default=5.0, metadata={
        "help": "one-way delay ms added in 'loss', 'duplicate' and the sweep"})
    nth: int = dataclasses.field(default=20, metadata={
        "help": "which data segment the 'nth' fault drops"})
    sweep_loss: tuple[float, ...] = dataclasses.field(default=(), metadata={
        "help": "loss %% settings for the goodput sweep (e.g. 0.5 1 2 5); empty: no sweep"})
    sweep_bytes: int = dataclasses.field(default=1_000_000, metadata={
        "help": "payload per sweep transfer"})
    timeout: float = dataclasses.field(default=180.0, metadata={
        "help": "seconds one transfer may take"})

    def __post_init__(self):
        for name, allowed in (("scenarios", SCENARIOS), ("faults", FAULTS)):
            values = tuple(v for v in getattr(self, name) if v != "none")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ConfigError(f"{name}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name}: listed twice")
            object.__setattr__(self, name, values)
        for name in ("bytes", "sweep_bytes"):
            if not 100_000 <= getattr(self, name) <= 10_000_000:
                raise ConfigError(f"{name} must be 100000..10000000, got {getattr(self, name)}")
        for name in ("loss", "reorder", "duplicate"):
            if not 0 < getattr(self, name) < 50:
                raise ConfigError(f"{name} must be a percentage in (0, 50), got {getattr(self, name)}")
        for p in self.sweep_loss:
            if not 0 < p < 50:
                raise ConfigError(f"sweep-loss: each setting in (0, 50) %, got {p}")
        for name in ("reorder_delay", "delay"):
            if not 1 <= getattr(self, name) <= 1000:
                raise ConfigError(f"{name} must be 1..1000 ms, got {getattr(self, name)}")
        if not 0 <= self.base_delay <= 1000:
            raise ConfigError(f"base_delay must be 0..1000 ms, got {self.base_delay}")
        if self.nth < 1:
            raise ConfigError(f"nth must be >= 1, got {self.nth}")
        if self.timeout <= 0:
            raise ConfigError("timeout must be positive")
        if not (self.scenarios or self.faults or self.sweep_loss):
            raise ConfigError("nothing to run: no scenarios, no faults, no sweep")


def scenario_specs(p):
    """Scenario name -> netem keywords (percent, ms) for the data direction."""
    return {
        "loss": {"loss": p.loss, "delay": p.base_delay},
        "reorder": {"delay": p.reorder_delay, "reorder": p.reorder},
        "duplicate": {"duplicate": p.duplicate, "delay": p.base_delay},
        "delay": {"delay": p.delay},
        "combo": {"delay": p.reorder_delay, "loss": p.loss / 2, "duplicate": p.duplicate / 2,
                  "reorder": p.reorder / 2},
    }


def mathis_goodput_bps(mss_bytes, rtt_s, p):
    """Mathis et al. 1997: MSS/RTT * C/sqrt(p), in bit/s."""
    if p <= 0 or rtt_s <= 0:
        raise ValueError("mathis_goodput_bps: loss and RTT must be positive")
    return mss_bytes * 8 / rtt_s * MATHIS_C / math.sqrt(p)


def owd_window_ms(delay_ms, baseline_owd):
    """[lo, hi] for the median one-way delay across netem's ``delay_ms``.

    ``baseline_owd``: one-way delay quantiles (ms) of the same link with no
    impairment, at the same load (the "baseline" transfer). netem never sends
    early, so the floor is the delay itself (less the timestamps' resolution);
    above it come the link's own transit (the baseline's 90th percentile) and
    the watchdog hrtimer's typical wake-up latency.
    """
    if not baseline_owd:
        return None
    return (delay_ms - TS_DIFF_MS,
            delay_ms + baseline_owd["p90"] + MEDIAN_WAKEUP_SLACK_MS + TS_DIFF_MS)


def rto_max_ms(rtt):
    """Largest RTO Linux can compute from these RTT samples (ms): srtt + rttvar,
    rttvar = max(4 x mean deviation, TCP_RTO_MIN); srtt <= max RTT and a mean
    deviation <= max - min RTT."""
    return rtt["max"] + max(TCP_RTO_MIN_MS, 4 * (rtt["max"] - rtt["min"]))


def retransmission_window_ms(kind, rtt):
    """[lo, hi] ms between a dropped packet and its retransmission, both seen
    at one capture point, from the kernel's constants and the RTT samples
    (``rtt``: min/max ms, from the same capture).

    * ``synack``: the request socket's timer (TCP_TIMEOUT_INIT), or the
      client's SYN retransmission after the same 1 s, which the server answers
      at once (one more RTT): never earlier than a jiffy before 1 s; at most
      the timer wheel's lateness, an RTT and a host wake-up after it. The
      second retransmission would come at 3 s.
    * ``fin``: nothing follows a FIN, so no duplicate ACK can reveal its loss:
      a timer must, the tail loss probe (>= 2 srtt >= 2 min RTT) or the RTO.
      The timer is re-armed by the last ACK (<= max RTT after the FIN) and the
      PTO is capped at the RTO: at most max RTT + the largest RTO, late by the
      wheel and a wake-up.
    * ``nth``: a segment mid-stream: duplicate ACKs (or RACK) can reveal the
      loss one RTT after it, at the earliest; the RTO is the latest, as above.
    """
    late = rtt["max"] + rto_max_ms(rtt) * (1 + TIMER_WHEEL_LATE_FRACTION) + EVENT_WAKEUP_SLACK_MS
    if kind == "synack":
        return (TCP_TIMEOUT_INIT_MS - JIFFY_MAX_MS - TS_DIFF_MS,
                TCP_TIMEOUT_INIT_MS * (1 + TIMER_WHEEL_LATE_FRACTION) + rtt["max"]
                + EVENT_WAKEUP_SLACK_MS + TS_DIFF_MS)
    if kind == "fin":
        return TLP_SRTT_FACTOR * rtt["min"] - TS_DIFF_MS, late + TS_DIFF_MS
    if kind == "nth":
        return rtt["min"] - TS_DIFF_MS, late + TS_DIFF_MS
    raise ValueError(f"retransmission_window_ms: unknown kind {kind!r}")


def segment_sizes(packets, sender_ip):
    """The sender's segment size, from its packets (``impairment_ledger.Packet``).

    ``mss_option``: the MSS its SYN announced; ``timestamps``: both SYNs carried
    the timestamp option, which then takes TCP_TIMESTAMP_OPTION_BYTES of every
    segment; ``payload``: the largest payload it sent (what a full segment
    carries, the MSS of Mathis' model); ``payload_from_mss``: what the option
    predicts for it.
    """
    syn = next((p for p in packets if p.src == sender_ip and p.flags & ledger_mod.SYN
                and not p.flags & ledger_mod.ACK), None)
    synack = next((p for p in packets if p.dst == sender_ip and p.flags & ledger_mod.SYN
                   and p.flags & ledger_mod.ACK), None)
    timestamps = bool(syn and synack and syn.tsval is not None and synack.tsval is not None)
    payloads = [p.payload_len for p in packets if p.src == sender_ip and p.payload_len > 0]
    mss = syn.mss if syn else None
    return {"mss_option": mss, "timestamps": timestamps,
            "payload": max(payloads) if payloads else None,
            "payload_from_mss": (mss - (TCP_TIMESTAMP_OPTION_BYTES if timestamps else 0))
            if mss else None}


@dataclasses.dataclass(frozen=True)
class Tagged:
    """A claim with what it is about, so callers select claims by kind, not name."""

    kind: str   # payload, captures, handshake, acks, recovery, resent
    claim: Claim


class TcpRecovery(Experiment):
    """TCP hides loss, reordering and duplication: proof from pcaps on both sides."""

    name = "tcp_recovery"
    Params = TcpRecoveryParams
    needs_netem = True
    description = __doc__

    @classmethod
    def needs_netem_for(cls, params):
        """Targeted faults alone need no netem: they run on any kernel."""
        return bool(params.scenarios or params.sweep_loss)

    def setup(self):
        from wirelab.net.testbed import Testbed
        self.topo = DumbbellTopo()
        self.tb = self.stack.enter_context(Testbed(self.topo, log=self.log))
        self.snd, self.rcv = self.tb.node("snd1"), self.tb.node("rcv1")
        self.r1, self.r2 = self.tb.node("r1"), self.tb.node("r2")
        ends = self.topo.bottleneck()
        self.impaired = ends["r1"]                      # netem: r1 -> r2 (data)
        self.up = self.topo.interface_facing("r1", "snd1")
        self.down = self.topo.interface_facing("r2", "rcv1")
        self.rcv_intf = self.topo.interface_facing("rcv1", "r2")
        self.port = BASE_PORT
        # Resolve ARP before any impairment, so netem never drops an ARP request.
        self.tb.run(self.snd, ["ping", "-c1", "-W2", self.tb.ip("rcv1")], timeout=10)
        self.metrics["topology"] = {
            "sender": self.tb.ip("snd1"), "receiver": self.tb.ip("rcv1"),
            "impaired_interface": f"r1:{self.impaired} (egress toward r2: data direction)",
            "capture_up": f"r1:{self.up}", "capture_down": f"r2:{self.down}",
            "capture_receiver": f"rcv1:{self.rcv_intf}"}
        self.metrics["offloads"] = self._offloads()

    def _offloads(self):
        from wirelab.net.netns import get_offloads, open_ioctl_socket
        out = {}
        for node, intf in ((self.r1, self.impaired), (self.r2, self.topo.bottleneck()["r2"]),
                           (self.r1, self.up), (self.r2, self.down)):
            with open_ioctl_socket(node) as sock:
                out[f"{node.name}:{intf}"] = get_offloads(sock, intf)
        return out

    # -- run --------------------------------------------------------------------
    def run(self):
        from wirelab.impair.spec import NetemSpec
        p = self.params
        specs = scenario_specs(p)
        self.metrics["runs"] = {}
        if p.scenarios:
            # The same transfer with no impairment: the link's own one-way
            # delay at this load, the floor under every delay tolerance.
            self.log(f"baseline: no impairment; {p.bytes} bytes")
            self._save_run("baseline", self.transfer("baseline", p.bytes))
        for name in p.scenarios:
            spec = NetemSpec(**specs[name])
            self.log(f"scenario {name}: netem on r1:{self.impaired}: {spec}; "
                     f"{p.bytes} bytes")
            with self.tb.apply_netem(self.r1, self.impaired, spec) as impairment:
                info = self.transfer(os.path.join("scenarios", name), p.bytes)
                info["netem"] = impairment.to_dict()   # spec, text, readback, counters
            self._save_run(os.path.join("scenarios", name), info)
        for name in p.faults:
            self.log(f"fault {name}: {p.bytes} bytes")
            self._save_run(os.path.join("faults", name), self.run_fault(name))
        for loss in p.sweep_loss:
            spec = NetemSpec(loss=loss, delay=p.base_delay)
            folder = os.path.join("sweep", f"loss-{loss:g}")
            self.log(f"sweep loss {loss:g}%: netem {spec}; {p.sweep_bytes} bytes")
            with self.tb.apply_netem(self.r1, self.impaired, spec) as impairment:
                info = self.transfer(folder, p.sweep_bytes)
                info["netem"] = impairment.to_dict()
            self._save_run(folder, info)
        self.metrics["offloads_after"] = self._offloads()

    def run_fault(self, name):
        from wirelab.impair import faults
        port = self.port  # the port transfer() is about to use
        snd_ip, rcv_ip = self.tb.ip("snd1"), self.tb.ip("rcv1")
        if name == "nth":
            fault = faults.DropNthDataSegment(n=self.params.nth, direction="to_server",
                                              dport=port, src=snd_ip, dst=rcv_ip)
        elif name == "synack":
            fault = faults.DropSynAck(dport=port, src=rcv_ip, dst=snd_ip)
        else:
            fault = faults.DropFirstFin(direction="to_server", dport=port, src=snd_ip, dst=rcv_ip)
        try:
            handle = self.tb.install_fault(self.r1, fault)
        except faults.FaultsUnavailableError as exc:
            # Neither nftables nor iptables-legacy can hold the rule here: no
            # transfer, and verify() states it as a failed claim with this reason.
            self.log(f"  fault {name}: NOT INSTALLED ({exc})")
            return {"folder": os.path.join("faults", name), "seconds": 0.0,
                    "fault": {"name": name, "description": fault.describe(), "node": "r1",
                              "installed": False,
                              "unavailable": {"error": type(exc).__name__, "reason": str(exc)}}}
        info = self.transfer(os.path.join("faults", name), self.params.bytes)
        info["fault"] = {"name": name, "description": fault.describe(), "node": "r1",
                         "installed": True, "backend": handle.backend, "counts": handle.counters()}
        return info

    def _save_run(self, folder, info):
        os.makedirs(self.path(folder), exist_ok=True)
        write_json(self.path(folder, "run.json"), info)
        self.metrics["runs"][folder] = {"folder": folder, "seconds": info["seconds"]}

    def transfer(self, folder, nbytes):
        """One transfer snd1 -> rcv1 with captures on both sides; files in ``folder``."""
        tb, p = self.tb, self.params
        out = self.path(folder)
        os.makedirs(out, exist_ok=True)
        port = self.port
        self.port += 1
        rcv_ip = tb.ip("rcv1")
        started = time.monotonic()
        points = [(self.r1, self.up, "up.pcap"), (self.r2, self.down, "down.pcap"),
                  (self.rcv, self.rcv_intf, "rcv.pcap")]
        with Captures(tb, points, out) as caps:
            server = tb.start(self.rcv, [sys.executable, TCPFLOW, "serve", "--bind", rcv_ip,
                                         "--port", port, "--timeout", p.timeout],
                              name=f"tcpflow serve :{port}",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            srv_out, srv_err = LineReader(server.popen.stdout), LineReader(server.popen.stderr)
            wait_until(lambda: any(l.startswith(READY_PREFIX) for l in list(srv_out.lines))
                       or not server.running(), 30, what=f"tcpflow server on rcv1:{port}")
            # A stuck transfer is a result, not an error of the run: it is
            # recorded, and its claims (sha256 first) fail in verify().
            failure = None
            try:
                sender = tb.run(self.snd, [sys.executable, TCPFLOW, "send", "--to", rcv_ip,
                                           "--port", port, "--bytes", nbytes, "--seed", p.seed,
                                           "--timeout", p.timeout],
                                timeout=p.timeout + 30, check=False)
                sender_exit, sender_out, sender_err = sender.returncode, sender.stdout, sender.stderr
            except CommandError as exc:   # the sender outlived its deadline (killed)
                failure = f"sender: {exc}"
                sender_exit, sender_out, sender_err = None, "", exc.stderr
            try:
                wait_until(lambda: not server.running(), p.timeout + 30,
                           what=f"tcpflow server on rcv1:{port} to finish")
            except TimeoutError as exc:
                failure = f"{failure + '; ' if failure else ''}receiver: {exc}"
                server.stop()
            srv_out.join(5)
            srv_err.join(5)
        seconds = round(time.monotonic() - started, 3)
        receiver = _last_json(srv_out.lines)
        sent = _last_json(sender_out.splitlines())
        info = {"folder": folder, "port": port, "bytes": nbytes, "seed": p.seed,
                "seconds": seconds, "sender": sent, "receiver": receiver, "failure": failure,
                "sender_exit": sender_exit, "sender_stderr": sender_err[-2000:],
                "receiver_exit": server.popen.returncode, "receiver_stderr": srv_err.text()[-2000:],
                "captures": caps.results,
                "ss_on_failure": None}
        if sender_exit != 0 or server.popen.returncode != 0:
            info["ss_on_failure"] = {n.name: tb.run(n, ["ss", "-nita"], timeout=5, check=False).stdout
                                     for n in (self.snd, self.rcv)}
        self.log(f"  {folder}: {nbytes} bytes in {seconds:.2f}s; receiver "
                 f"{'got ' + str(receiver.get('bytes')) + ' bytes' if receiver else 'FAILED'}")
        return info

    # -- verify -------------------------------------------------------------------
    def verify(self):
        p = self.params
        claims = []
        off = self.metrics.get("offloads", {})
        on = [f"{k}:{f}" for k, v in off.items() for f, s in v.items() if s]
        claims.append(Claim("offloads (TSO/GSO/GRO) off on the bottleneck and capture interfaces",
                            not on and bool(off), measured=on or "all off", expected="all off",
                            evidence="ethtool ioctls in each router's namespace"))
        self.metrics["scenarios"], self.metrics["faults"], self.metrics["sweep"] = {}, {}, {}
        specs = scenario_specs(p)
        self._baseline_owd = None
        if p.scenarios:
            m, tagged = self.check_transfer("baseline", "baseline")
            claims += [t.claim for t in tagged]
            claims += self.check_rates("baseline", {}, m)
            self._baseline_owd = (m["ledger"]["data_direction"] or {}).get("owd_ms")
            self.metrics["baseline"] = m
        for name in p.scenarios:
            folder = os.path.join("scenarios", name)
            m, tagged = self.check_transfer(folder, name)
            c = [t.claim for t in tagged]
            c += self.check_rates(name, specs[name], m)
            c += self.check_scenario(name, specs[name], m)
            self.metrics["scenarios"][name] = m
            claims += c
        for name in p.faults:
            folder = os.path.join("faults", name)
            fault = self.load_run(folder).get("fault") or {}
            installed = bool(fault.get("installed"))
            why = fault.get("unavailable") or {}
            claims.append(Claim(
                f"fault {name}: the rule was installed on r1", installed,
                measured=f"backend {fault.get('backend')}" if installed
                else f"{why.get('error')}: {why.get('reason')}",
                expected="nftables, or iptables-legacy where nf_tables lacks the inet family",
                evidence=f"{folder}/run.json fault"))
            if not installed:
                # Nothing was sent: no other claim of this fault could rest on evidence.
                self.metrics["faults"][name] = {"fault": fault}
                continue
            m, tagged = self.check_transfer(folder, f"fault {name}")
            c = [t.claim for t in tagged]
            c += self.check_fault(name, m)
            self.metrics["faults"][name] = m
            claims += c
        if p.sweep_loss:
            claims += self.check_sweep()
        return claims

    def load_run(self, folder):
        with open(self.path(folder, "run.json")) as f:
            return json.load(f)

    def check_transfer(self, folder, label):
        """Claims every transfer must satisfy; returns (figures, [Tagged])."""
        from wirelab.observe.pcap import analyze
        info = self.load_run(folder)
        up, down = self.path(folder, "up.pcap"), self.path(folder, "down.pcap")
        at_rcv = self.path(folder, "rcv.pcap")
        snd_ip, rcv_ip = self.metrics["topology"]["sender"], self.metrics["topology"]["receiver"]
        tagged = []

        def claim(kind, *args, **kwargs):
            tagged.append(Tagged(kind, Claim(*args, **kwargs)))

        want_sha = payload_sha256(info["seed"], info["bytes"])
        got = info.get("receiver") or {}
        claim("payload",
              f"{label}: receiver got exactly the bytes sent, in order (sha256)",
              got.get("bytes") == info["bytes"] and got.get("sha256") == want_sha,
              measured={"bytes": got.get("bytes"), "sha256": (got.get("sha256") or "")[:16]}
              if not info.get("failure") else info["failure"],
              expected={"bytes": info["bytes"], "sha256": want_sha[:16]},
              evidence=f"{folder}/run.json receiver; sha256 recomputed from the seed")
        incomplete = [c["name"] + ": " + "; ".join(c["problems"] or [f"{c['dropped_by_kernel']} dropped by kernel"])
                      for c in info["captures"] if c["problems"] or c["dropped_by_kernel"]
                      or c["dropped_by_interface"]]
        claim("captures",
              f"{label}: captures complete (tcpdump dropped nothing; the ledger is reliable)",
              not incomplete and len(info["captures"]) == 3,
              measured=incomplete or {c["name"]: c["packets"] for c in info["captures"]},
              expected="0 dropped by kernel, files parse", evidence="tcpdump exit counters")
        # The receiver's own interface, not r2's: the veth between them can
        # reorder packets across CPUs, and the receiver's TCP sees what rcv.pcap sees.
        ra, rb = analyze(up), analyze(at_rcv)
        fa, fb = _flow(ra, snd_ip), _flow(rb, snd_ip)
        try:
            led = ledger_mod.build_ledger(up, down, "up", "down")
            fwd, rev, led_error = _dir_or_none(led, snd_ip), _dir_or_none(led, rcv_ip), None
        except ledger_mod.LedgerError as exc:
            fwd, rev, led_error = None, None, str(exc)
        summary = {"data": fwd.summary() if fwd else None, "acks": rev.summary() if rev else None}
        # One-way delays of the data direction, for the reorder rate (not saved:
        # ledger.json and the pcaps hold them).
        self._owd_ms = [x / 1e6 for x in fwd.owd_ns()] if fwd else []
        write_json(self.path(folder, "ledger.json"), summary)
        figures = {"seconds": info["seconds"], "bytes": info["bytes"],
                   "transfer_ok": tagged[0].claim.ok, "failure": info.get("failure"),
                   "sender_side": fa, "receiver_side": fb,
                   "ledger": _ledger_fig(summary), "ledger_error": led_error,
                   "netem": info.get("netem"),
                   "fault": info.get("fault"), "captures": info["captures"],
                   "segments": segment_sizes(ledger_mod.read_packets(up), snd_ip)
                   if os.path.exists(up) else None}
        if got.get("first_byte_time") and got.get("end_time"):
            figures["app_goodput_bps"] = round(got["bytes"] * 8 / max(
                1e-9, got["end_time"] - got["first_byte_time"]), 1)
        for side, flow in (("sender side (r1)", fa), ("receiver (rcv1)", fb)):
            ok = bool(flow) and flow["handshake"]["complete"] and flow["teardown"]["fin_client"] \
                and flow["teardown"]["fin_server"]
            claim("handshake",
                  f"{label}: handshake and FIN teardown seen at the {side}", ok,
                  measured={"handshake": bool(flow) and flow["handshake"]["complete"],
                            "fins": bool(flow) and [flow["teardown"]["fin_client"], flow["teardown"]["fin_server"]]},
                  expected="SYN, SYN-ACK, ACK; FIN both ways")
        back = _ack_regressions(at_rcv, rcv_ip)
        claim("acks", f"{label}: the receiver's cumulative ACK never went backwards",
              back == 0, measured=back, expected=0,
              evidence="ACKs as the receiver sent them (rcv.pcap, egress taps in send order)")
        figures["ack_regressions_at_receiver"] = back
        # After the veth and the link ACKs can be reordered: reported, not claimed.
        figures["ack_regressions_at_r2"] = _ack_regressions(down, rcv_ip)
        figures["ack_regressions_at_r1"] = _ack_regressions(up, rcv_ip)
        # Without the data direction there is no evidence for either recovery
        # claim: both are stated, and fail, naming the cause.
        missing = None if fwd else (f"no data direction in the ledger: {led_error or f'no packets from {snd_ip} in up.pcap/down.pcap'}")
        rec = summary["data"]["recovery"] if fwd else {}
        claim("recovery",
              f"{label}: every dropped data segment was retransmitted and delivered (ledger)",
              bool(fwd) and not rec["unrecovered"] and summary["data"]["unexpected"] == 0,
              measured=missing or {"dropped": rec["dropped_with_sequence_space"], "recovered": rec["recovered"],
                                   "unexpected": summary["data"]["unexpected"]},
              expected="all recovered, 0 unexpected",
              evidence=f"{folder}/ledger.json recovery.details")
        c2s = (fa or {}).get("client_to_server") or {}
        # Wireshark calls a retransmission sent within one handshake RTT of
        # the highest segment "out-of-order" (its heuristic cannot tell), so
        # both labels count as re-sent here.
        resent = c2s.get("retransmissions", 0) + c2s.get("out_of_order", 0)
        need = rec.get("retransmitted")
        claim("resent",
              f"{label}: the sender re-sent at least the segments the network dropped",
              bool(fwd) and bool(fa) and resent >= need,
              measured=missing or (resent if fa else "no flow from the sender in up.pcap"),
              expected=f">= {need}" if need is not None else ">= the ledger's retransmitted drops",
              evidence="pcap analyser on up.pcap: retransmissions + out-of-order "
                       "(Wireshark's label for a quick retransmission) vs ledger drops")
        return figures, tagged

    def check_rates(self, name, spec, m):
        """Measured netem rates against configured ones (Wilson, 99.99%).

        Every rate the spec implies is claimed; one without a sample fails."""
        claims = []
        led = m["ledger"]["data_direction"]
        n = led["departed"] if led else 0
        model = ledger_mod.netem_expected_rates(spec.get("loss", 0) / 100, spec.get("duplicate", 0) / 100)
        checks = [("loss (packets that vanished)", "dropped", model["dropped"],
                   led["dropped"] if led else 0, n)]
        if model["duplicated"] is not None:
            checks.append(("duplication (packets that arrived twice)", "duplicated",
                           model["duplicated"], led["duplicated"] if led else 0, n))
        if spec.get("reorder") and not spec.get("duplicate"):
            # netem sends a reordered packet with no delay at all: count the
            # delivered packets whose one-way delay is under half the delay.
            fast = sum(1 for x in self._owd_ms if x < spec["delay"] / 2)
            checks.append((f"reorder (sent without the {spec['delay']:g} ms delay)", "reordered",
                           spec["reorder"] / 100, fast, len(self._owd_ms)))
        m["rates"] = {}
        for label, key, p, k, n_ in checks:
            title = f"{name}: measured {label} matches netem's setting" if spec else \
                f"{name}: measured {label} is zero without netem"
            if n_ == 0:
                claims.append(Claim(
                    title, False,
                    measured=("no data direction in the ledger" if not led
                              else "no delivered packets with a one-way delay"),
                    expected=f"{100 * p:.2f}%", evidence="impairment ledger, data direction"))
                continue
            lo, hi = ledger_mod.wilson_interval(k, n_)
            fa = ledger_mod.false_alarm_probability(p, n_) if 0 < p < 1 else 0.0
            m["rates"][key] = {"configured": p, "measured": k / n_, "k": k, "n": n_,
                               "wilson_99.99": [lo, hi], "false_alarm_probability": fa}
            claims.append(Claim(
                title, (lo <= p <= hi) if p > 0 else k == 0,
                measured=f"{k}/{n_} = {100 * k / n_:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                expected=f"{100 * p:.2f}%",
                tolerance=f"99.99% Wilson; false alarm {fa:.1e}" if p > 0 else "none: 0 exactly",
                evidence="impairment ledger, data direction"))
        return claims

    def _expected_segments(self, m):
        """Data segments a transfer needs (first transmissions): bytes / full payload."""
        payload = (m.get("segments") or {}).get("payload")
        return math.ceil(m["bytes"] / payload) if payload else None

    def check_scenario(self, name, spec, m):
        claims = []
        led = m["ledger"]["data_direction"] or {}
        no_led = None if m["ledger"]["data_direction"] else "no data direction in the ledger"
        snd, rcv = m["sender_side"] or {}, m["receiver_side"] or {}
        s_c2s, r_c2s = snd.get("client_to_server", {}), rcv.get("client_to_server", {})
        s_s2c = snd.get("server_to_client", {})
        m["summary"] = {
            "retransmissions": s_c2s.get("retransmissions"),
            "fast_retransmissions": s_c2s.get("fast_retransmissions"),
            "timeout_retransmissions": s_c2s.get("timeout_retransmissions"),
            "spurious_retransmissions": s_c2s.get("spurious_retransmissions"),
            "retransmissions_labelled_out_of_order_at_sender": s_c2s.get("out_of_order"),
            "duplicate_acks_to_sender": s_s2c.get("duplicate_acks"),
            "out_of_order_at_receiver": r_c2s.get("out_of_order"),
            "duplicate_segments_at_receiver": r_c2s.get("duplicate_segments"),
            "ledger_dropped_data": led.get("data_dropped"),
            "ledger_duplicated_data": led.get("data_extra_copies"),
            "ledger_reordered_data": led.get("data_reordered"),
            # netem's own drop counter (all packets, ARP included) beside the ledger's (TCP).
            "netem_qdisc_drops": ((m.get("netem") or {}).get("counters") or {}).get("drops"),
            "ledger_dropped_all": led.get("dropped"),
        }
        segments = self._expected_segments(m)
        if spec.get("loss"):
            # Required when the parameters make >= FAST_RETRANSMIT_MIN_DROPS
            # drops near-certain; otherwise tested only if the drops happened.
            p_drop = ledger_mod.netem_expected_rates(spec["loss"] / 100, spec.get("duplicate", 0) / 100)["dropped"]
            p_short = ledger_mod.binomial_below(FAST_RETRANSMIT_MIN_DROPS, segments, p_drop) if segments else None
            required = p_short is not None and p_short < FALSE_ALARM_BUDGET
            drops = led.get("data_dropped", 0)
            fast, dup = s_c2s.get("fast_retransmissions") or 0, s_s2c.get("duplicate_acks") or 0
            figs = {"fast": s_c2s.get("fast_retransmissions"), "timeout": s_c2s.get("timeout_retransmissions"),
                    "dup_acks": s_s2c.get("duplicate_acks"), "data_drops": drops}
            if no_led or segments is None:
                ok, measured = False, no_led or "no data segments from the sender in up.pcap"
            elif drops >= FAST_RETRANSMIT_MIN_DROPS:
                ok, measured = fast >= 1 and dup >= 1, figs
            elif required:
                ok, measured = False, {**figs, "cause": f"fewer than {FAST_RETRANSMIT_MIN_DROPS} drops, "
                                                        f"chance {p_short:.1e} by the parameters"}
            else:
                ok, measured = True, {**figs, "not exercised": f"P[< {FAST_RETRANSMIT_MIN_DROPS} drops] "
                                                               f"= {p_short:.2f} by the parameters"}
            claims.append(Claim(
                f"{name}: losses were repaired by fast retransmission after duplicate ACKs", ok,
                measured=measured, expected="fast >= 1, dup ACKs >= 1",
                tolerance=f">= {FAST_RETRANSMIT_MIN_DROPS} drops needed; "
                          f"{'required' if required else 'not required'} by the parameters "
                          f"({segments} segments x {100 * p_drop:.2f}%)",
                evidence="pcap analyser on up.pcap (Wireshark's rules); ledger drops"))
        if spec.get("duplicate"):
            copies = led.get("data_extra_copies", 0)
            p_none = ledger_mod.binomial_below(1, segments, spec["duplicate"] / 100) if segments else None
            required = p_none is not None and p_none < FALSE_ALARM_BUDGET
            at_rcv = r_c2s.get("duplicate_segments")
            figs = {"duplicate_segments_at_receiver": at_rcv, "network_copies": copies}
            if no_led or segments is None:
                ok, measured = False, no_led or "no data segments from the sender in up.pcap"
            elif copies:
                ok, measured = (at_rcv or 0) >= copies, figs
            elif required:
                ok, measured = False, {**figs, "cause": f"the network made no copies: chance {p_none:.1e}"}
            else:
                ok, measured = True, {**figs, "not exercised": f"P[no copy] = {p_none:.2f} by the parameters"}
            claims.append(Claim(
                f"{name}: duplicated segments reached the receiver and were not delivered twice", ok,
                measured=measured,
                expected=">= the network's extra copies; app bytes exact (sha256 claim)",
                tolerance=f"{'required' if required else 'not required'} by the parameters",
                evidence="pcap analyser on rcv.pcap; ledger"))
        if spec.get("reorder"):
            ooo = (r_c2s.get("out_of_order") or 0)
            claims.append(Claim(
                f"{name}: segments arrived out of order at the receiver",
                led.get("data_reordered", 0) >= 1 and ooo >= 1,
                measured={"out_of_order (analyser)": ooo, "reordered (ledger)": led.get("data_reordered")},
                expected=">= 1 each", evidence="rcv.pcap (analyser); ledger"))
        if spec.get("delay"):
            owd = (led.get("owd_ms") or {}).get("median")
            d = spec["delay"]
            window = owd_window_ms(d, self._baseline_owd)
            ok = owd is not None and window is not None and window[0] <= owd <= window[1]
            m["owd_window_ms"] = window
            claims.append(Claim(
                f"{name}: one-way delay across the link is the configured delay",
                ok, measured=f"median {owd} ms" if window else f"median {owd} ms; no baseline measured",
                expected=f"{d:g} ms",
                tolerance=f"[{window[0]:.3f}, {window[1]:.3f}] ms: netem never early; + baseline p90 "
                          f"{self._baseline_owd['p90']:g} ms + {MEDIAN_WAKEUP_SLACK_MS:g} ms timer wake-up"
                          if window else None,
                evidence="ledger: arrival minus departure time; baseline/ledger.json"))
        if spec.get("delay") and not spec.get("reorder"):
            # (netem sends a reordered packet without the delay: no RTT floor then)
            d = spec["delay"]
            rtt = s_s2c.get("rtt_min_ms")
            claims.append(Claim(
                f"{name}: RTT seen by the sender includes the delay",
                rtt is not None and rtt >= d - TS_DIFF_MS,
                measured=f"min {rtt} ms", expected=f">= {d:g} ms",
                tolerance=f"-{TS_DIFF_MS:g} ms (pcap timestamps)",
                evidence="pcap analyser RTT samples on up.pcap"))
        return claims

    def check_fault(self, name, m):
        claims = []
        fault = m.get("fault") or {}
        counts = fault.get("counts", {})
        claims.append(Claim(f"fault {name}: the fault rule dropped exactly one packet",
                            counts.get("dropped") == 1, measured=counts, expected={"dropped": 1},
                            evidence="the rule's packet counters in r1 (nftables, or iptables-legacy in UML)"))
        folder = os.path.join("faults", name)
        with open(self.path(folder, "ledger.json")) as f:
            led = json.load(f)
        side = "acks" if name == "synack" else "data"
        d = led[side] or {}
        drops = d.get("dropped", [])
        details = d.get("recovery", {}).get("details", [])
        want_flags = {"nth": None, "synack": "S.", "fin": "F"}[name]
        ok_drop = len(drops) == 1 and (want_flags is None and drops[0]["len"] > 0
                                       or want_flags is not None and want_flags in drops[0]["flags"])
        claims.append(Claim(
            f"fault {name}: the ledger sees exactly that packet vanish between r1 and r2",
            ok_drop, measured=[(e["rel_seq"], e["len"], e["flags"]) for e in drops],
            expected={"nth": f"one data segment (#{self.params.nth})", "synack": "one SYN-ACK",
                      "fin": "one FIN"}[name], evidence=f"{folder}/ledger.json"))
        rec = details[0] if details else {}
        after = rec.get("retransmitted_after_ms")
        s2c = ((m.get("sender_side") or {}).get("server_to_client")) or {}
        rtt = {"min": s2c.get("rtt_min_ms"), "max": s2c.get("rtt_max_ms")}
        window = retransmission_window_ms(name, rtt) if None not in rtt.values() else None
        m["recovery"] = {"dropped": drops, "recovery": rec, "rtt_ms": rtt,
                         "expected_window_ms": window,
                         "retransmission_kind": self._retransmission_kind(folder, name, rec)}
        how = {"synack": "TCP_TIMEOUT_INIT 1 s (request timer or the client's SYN)",
               "fin": "tail loss probe (>= 2 srtt) or RTO (<= srtt + max(4 rttvar, TCP_RTO_MIN))",
               "nth": "duplicate ACKs/RACK (>= 1 RTT) or RTO"}[name]
        ok = bool(rec.get("recovered")) and after is not None and window is not None \
            and window[0] <= after <= window[1]
        claims.append(Claim(
            f"fault {name}: retransmitted by a timer or duplicate ACKs, then delivered",
            ok, measured={"retransmitted_after_ms": after,
                          "delivered_after_ms": rec.get("delivered_after_ms"),
                          "kind": m["recovery"]["retransmission_kind"]},
            expected=how,
            tolerance=f"[{window[0]:.1f}, {window[1]:.1f}] ms from RTT {rtt['min']:g}-{rtt['max']:g} ms"
            if window else "no RTT samples in up.pcap: no window",
            evidence=f"{folder}/ledger.json; pcap analyser flags and RTTs"))
        return claims

    def _retransmission_kind(self, folder, name, rec):
        """Wireshark's flag on the retransmission the ledger found."""
        from wirelab.observe.pcap import flag_names, iter_segments
        idx = rec.get("retransmission_index")
        if idx is None:
            return None
        # The retransmission is in the before capture: up for data, down for SYN-ACKs.
        path = self.path(folder, "down.pcap" if name == "synack" else "up.pcap")
        for seg in iter_segments(path):
            if seg["frame"] == idx + 1:
                return flag_names(seg["analysis"]) or ["(no flag: new SYN-ACK)"]
        return None

    def check_sweep(self):
        """Per setting: the transfer's payload and capture claims, and a point
        (goodput, RTT, segment size, configured and measured loss, Mathis at
        the *measured* loss: the rate the flow really saw). Then one claim:
        goodput at the highest loss setting is below that at the lowest --
        only what that compares, and only from transfers that delivered."""
        p = self.params
        points = []
        claims = []
        for loss in p.sweep_loss:
            folder = os.path.join("sweep", f"loss-{loss:g}")
            m, tagged = self.check_transfer(folder, f"sweep {loss:g}%")
            claims += [t.claim for t in tagged if t.kind in ("payload", "captures")]
            snd = m["sender_side"] or {}
            rtt = (snd.get("server_to_client") or {}).get("rtt_mean_ms")
            seg = m["segments"] or {}
            mss = seg.get("payload")   # bytes per full segment, from the capture
            data = m["ledger"]["data_direction"] or {}
            measured_loss = data["data_dropped"] / data["data_departed"] if data.get("data_departed") else None
            goodput = (snd.get("client_to_server") or {}).get("goodput_bps") if m["transfer_ok"] else None

            def model(p_):
                return mathis_goodput_bps(mss, rtt / 1000, p_) if rtt and mss and p_ else None
            at_measured = model(measured_loss)
            points.append({"loss_percent": loss, "measured_loss": measured_loss, "rtt_ms": rtt,
                           "transfer_ok": m["transfer_ok"], "goodput_bps": goodput,
                           "mss": mss, "segments": seg,
                           "mathis_bps": at_measured, "mathis_bps_at_configured_loss": model(loss / 100),
                           "ratio_to_model": goodput / at_measured if at_measured and goodput else None})
            self.metrics["sweep"][f"loss-{loss:g}"] = m
        self.metrics["sweep_points"] = points
        self.metrics["sweep_model"] = "Mathis at the measured loss (ledger: data segments dropped / sent)"
        write_json(self.path("sweep", "points.json"), points)
        if len(points) >= 2:
            ordered = sorted(points, key=lambda x: x["loss_percent"])
            lo, hi = ordered[0], ordered[-1]
            failed = [f"{x['loss_percent']:g}%" for x in (lo, hi) if not x["goodput_bps"]]
            claims.append(Claim(
                f"sweep: goodput at the highest loss ({hi['loss_percent']:g}%) is below that at "
                f"the lowest ({lo['loss_percent']:g}%)",
                not failed and lo["goodput_bps"] > hi["goodput_bps"],
                measured={f"{x['loss_percent']:g}%": round(x["goodput_bps"] / 1e6, 2)
                          if x["goodput_bps"] else "transfer failed" for x in ordered},
                expected=f"Mbit/s at {hi['loss_percent']:g}% < at {lo['loss_percent']:g}%"
                         + (f"; cannot compare: {', '.join(failed)} did not deliver" if failed else ""),
                evidence="sweep/points.json (goodput only from transfers whose sha256 matched)"))
        return claims

    # -- plot ---------------------------------------------------------------------------
    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from wirelab.observe.pcap import iter_segments
        from wirelab.observe.pcap import flags as F
        folders = (["baseline"] if self.params.scenarios else []) + \
                  [os.path.join("scenarios", s) for s in self.params.scenarios] + \
                  [os.path.join("faults", s) for s in self.params.faults] + \
                  [os.path.join("sweep", f"loss-{x:g}") for x in self.params.sweep_loss]
        for folder in folders:
            up = self.path(folder, "up.pcap")
            if not os.path.exists(up):
                continue
            segs = list(iter_segments(up))
            if not segs:
                continue
            t0 = segs[0]["ts_ns"]
            data = [s for s in segs if s["dir"] == 0 and s["len"] > 0]
            acks = [s for s in segs if s["dir"] == 1 and s["flags"] & 0x10]
            # A quick retransmission is "out-of-order" to Wireshark: mark both.
            resent = F.ANY_RETRANSMISSION | F.OUT_OF_ORDER
            first = [s for s in data if not s["analysis"] & resent]
            retx = [s for s in data if s["analysis"] & resent]
            fig, ax = plt.subplots(figsize=(9, 5))
            ax.plot([(s["ts_ns"] - t0) / 1e6 for s in first], [s["rel_seq"] / 1e3 for s in first],
                    ".", ms=2, color="tab:blue", label="data (first transmission)")
            ax.plot([(s["ts_ns"] - t0) / 1e6 for s in retx], [s["rel_seq"] / 1e3 for s in retx],
                    "x", ms=5, color="tab:red", label=f"re-sent ({len(retx)}; Wireshark: retransmission or out-of-order)")
            ax.step([(s["ts_ns"] - t0) / 1e6 for s in acks], [s["rel_ack"] / 1e3 for s in acks],
                    where="post", lw=0.8, color="tab:green", label="cumulative ACK")
            try:
                with open(self.path(folder, "ledger.json")) as f:
                    led = json.load(f)
                drops = (led.get("data") or {}).get("dropped", [])
                ax.plot([(e["t_ns"] - t0) / 1e6 for e in drops],
                        [(e["rel_seq"] - 1) / 1e3 for e in drops], "o", mfc="none", ms=7,
                        color="black", label=f"dropped by the network ({len(drops)}, ledger)")
            except (OSError, ValueError):
                pass
            ax.set_xlabel("time since first packet at r1 (ms)")
            ax.set_ylabel("relative sequence number (kB)")
            ax.set_title(f"tcp_recovery {folder}: time-sequence at the sender side (r1)")
            ax.legend(loc="upper left", fontsize=8)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(self.path(folder, "time_sequence.png"), dpi=110)
            plt.close(fig)
        pts_path = self.path("sweep", "points.json")
        if os.path.exists(pts_path):
            with open(pts_path) as f:
                points = json.load(f)
            fig, ax = plt.subplots(figsize=(7, 5))
            ok = [x for x in points if x["goodput_bps"]]
            ax.plot([x["loss_percent"] for x in ok], [x["goodput_bps"] / 1e6 for x in ok], "o",
                    mfc="none", color="tab:blue", label="measured goodput at the configured loss")
            at_measured = [x for x in ok if x["measured_loss"]]
            ax.plot([100 * x["measured_loss"] for x in at_measured],
                    [x["goodput_bps"] / 1e6 for x in at_measured], "o", color="tab:blue",
                    label="measured goodput at the measured loss (ledger)")
            for x in at_measured:
                ax.plot([x["loss_percent"], 100 * x["measured_loss"]], [x["goodput_bps"] / 1e6] * 2,
                        ":", lw=0.8, color="tab:blue")
            good = [x for x in points if x["mathis_bps"]]
            xs = [x["loss_percent"] for x in points] + [100 * x["measured_loss"] for x in at_measured]
            if good:
                rtt = sorted(x["rtt_ms"] for x in good)[len(good) // 2]
                mss = good[0]["mss"]
                grid = [min(xs) * (max(xs) / min(xs)) ** (i / 50) for i in range(51)]
                ax.plot(grid, [mathis_goodput_bps(mss, rtt / 1000, g / 100) / 1e6 for g in grid],
                        "-", color="tab:orange",
                        label=f"Mathis: MSS/RTT x sqrt(3/2)/sqrt(p), MSS {mss} B, RTT {rtt:.1f} ms")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("loss (%): netem setting, or measured by the ledger")
            ax.set_ylabel("goodput (Mbit/s)")
            ax.set_title("tcp_recovery: goodput against loss")
            ax.legend()
            ax.grid(alpha=0.3, which="both")
            fig.tight_layout()
            fig.savefig(self.path("sweep", "goodput_vs_loss.png"), dpi=110)
            plt.close(fig)


# -- helpers over saved files ---------------------------------------------------------
def _last_json(lines):
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _flow(report, client_ip):
    for f in report.flows:
        if f.client.split(":")[0] == client_ip:
            return dataclasses.asdict(f)
    return None


def _dir_or_none(led, src):
    try:
        return led.for_direction(src)
    except KeyError:
        return None


def _ledger_fig(summary):
    out = {}
    for key, name in (("data", "data_direction"), ("acks", "ack_direction")):
        s = summary[key]
        if not s:
            out[name] = None
            continue
        a, d = s["all"], s["data"]
        fig = {"departed": a["departed"], "dropped": a["dropped"], "duplicated": a["duplicated"],
               "extra_copies": a["extra_copies"], "reordered": a["reordered"],
               "unexpected": s["unexpected"], "data_departed": d["departed"],
               "data_dropped": d["dropped"], "data_extra_copies": d["extra_copies"],
               "data_reordered": d["reordered"], "owd_ms": s["owd_ms"],
               "recovered": s["recovery"]["recovered"],
               "unrecovered": len(s["recovery"]["unrecovered"])}
        out[name] = fig
    return out


def _ack_regressions(path, receiver_ip):
    """ACKs from the receiver whose cumulative ACK is below an earlier one (file order)."""
    from wirelab.observe.impairment import ACK, read_packets
    pkts = [p for p in read_packets(path) if p.src == receiver_ip and p.flags & ACK]
    if not pkts:
        return 0
    base = pkts[0].ack
    best, back = 0, 0
    for p in pkts:
        rel = (p.ack - base) & 0xFFFFFFFF
        if rel < best:
            back += 1
        best = max(best, rel)
    return back


if __name__ == "__main__":
    sys.exit(main(TcpRecovery))
