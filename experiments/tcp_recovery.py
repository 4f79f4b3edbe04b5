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
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topologies.dumbbell import DumbbellTopo  # noqa: E402
from wirelab.apps.transfer import tcp_transfer  # noqa: E402
from wirelab.errors import ConfigError  # noqa: E402
from wirelab.experiment import stats, timers  # noqa: E402
from wirelab.experiment.cases import Case, CapturePoint, LinkNetem, NodeFault, run_cases  # noqa: E402
from wirelab.experiment.claims import Claim, required_or_not_exercised, window_claim  # noqa: E402
from wirelab.experiment.core import Experiment, main  # noqa: E402
from wirelab.impair import faults  # noqa: E402
from wirelab.impair.spec import NetemSpec  # noqa: E402
from wirelab.experiment.tcp_claims import netem_rate_claims, transfer_claims  # noqa: E402

SCENARIOS = ("loss", "reorder", "duplicate", "delay", "combo")
FAULTS = ("nth", "synack", "fin")
BASE_PORT = 5001
CAPTURES = ("up.pcap", "down.pcap", "rcv.pcap")
# Fast-retransmission claim: needs some drops mid-stream. A single drop may be
# the last segment or two (no three duplicate ACKs behind it, RFC 5681
# dupthresh), and Wireshark labels a retransmission sent within an RTT of the
# highest segment "out-of-order", not "fast"; with three drops at least one is
# both mid-stream and labelled, in every run we have seen.
FAST_RETRANSMIT_MIN_DROPS = 3
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
        from wirelab.net.netns import get_offloads, open_ioctl_socket
        from wirelab.net.testbed import Testbed
        topo = self.topo = DumbbellTopo()
        self.tb = self.stack.enter_context(Testbed(topo, log=self.log))
        self.impaired = topo.bottleneck()["r1"]               # netem: r1 -> r2 (data)
        self.points = (CapturePoint("r1", topo.interface_facing("r1", "snd1"), "up.pcap"),
                       CapturePoint("r2", topo.interface_facing("r2", "rcv1"), "down.pcap"),
                       CapturePoint("rcv1", topo.interface_facing("rcv1", "r2"), "rcv.pcap"))
        # Resolve ARP before any impairment, so netem never drops an ARP request.
        self.tb.run("snd1", ["ping", "-c1", "-W2", self.tb.ip("rcv1")], timeout=10)
        intfs = [("r1", self.impaired), ("r2", topo.bottleneck()["r2"])] + \
                [(p.node, p.intf) for p in self.points[:2]]

        def offloads():
            out = {}
            for node, intf in intfs:
                with open_ioctl_socket(self.tb.node(node)) as sock:
                    out[f"{node}:{intf}"] = get_offloads(sock, intf)
            return out
        self.offloads = offloads
        self.record(topology={"sender": self.tb.ip("snd1"), "receiver": self.tb.ip("rcv1"),
                              "impaired_interface": f"r1:{self.impaired} (egress toward r2: data direction)",
                              "captures": {p.file: f"{p.node}:{p.intf}" for p in self.points}},
                    offloads=offloads())

    def cases(self):
        """baseline, one case per scenario, per fault, per sweep setting."""
        p, snd, rcv = self.params, self.tb.ip("snd1"), self.tb.ip("rcv1")
        specs = scenario_specs(p)
        out = []

        def case(name, nbytes, netem=None, fault=None):
            port = BASE_PORT + len(out)
            out.append(Case(name, {"bytes": nbytes, "port": port, "seed": p.seed},
                            netem=(LinkNetem("r1", self.impaired, NetemSpec(**netem)),) if netem else (),
                            faults=(NodeFault("r1", fault(port)),) if fault else (),
                            captures=self.points))
        if p.scenarios:
            # The same transfer with no impairment: the link's own one-way
            # delay at this load, the floor under every delay tolerance.
            case("baseline", p.bytes)
        for name in p.scenarios:
            case(f"scenarios/{name}", p.bytes, netem=specs[name])
        drops = {"nth": lambda port: faults.DropNthDataSegment(
                     n=p.nth, direction="to_server", dport=port, src=snd, dst=rcv),
                 "synack": lambda port: faults.DropSynAck(dport=port, src=rcv, dst=snd),
                 "fin": lambda port: faults.DropFirstFin(direction="to_server", dport=port, src=snd, dst=rcv)}
        for name in p.faults:
            case(f"faults/{name}", p.bytes, fault=drops[name])
        for loss in p.sweep_loss:
            case(f"sweep/loss-{loss:g}", p.sweep_bytes, netem={"loss": loss, "delay": p.base_delay})
        return out

    def run(self):
        run_cases(self, self.tb, self.cases(), self.transfer)
        self.record(offloads_after=self.offloads())

    def transfer(self, case, folder):
        a = case.args
        info = tcp_transfer(self.tb, "snd1", "rcv1", port=a["port"], nbytes=a["bytes"], seed=a["seed"],
                            timeout=self.params.timeout)
        got = info["receiver"]
        self.log(f"  {case.name}: receiver {'got ' + str(got.get('bytes')) + ' bytes' if got else 'FAILED'}")
        return info

    # -- verify: from the results folder only -------------------------------------------
    @classmethod
    def verify(cls, ev):
        p, claims = ev.params, []
        off = {**ev.run.get("offloads", {})}
        on = [f"{k}:{f}" for k, v in off.items() for f, s in v.items() if s]
        claims.append(Claim("offloads (TSO/GSO/GRO) off on the bottleneck and capture interfaces",
                            not on and bool(off), measured=on or "all off", expected="all off",
                            evidence="ethtool ioctls in each router's namespace (run.json)"))
        specs, baseline_owd = scenario_specs(p), None
        ev.metrics.update(scenarios={}, faults={}, sweep={})
        for case in ev.cases():
            kind, _, name = case["name"].rpartition("/")
            if kind == "faults":
                claims += cls.check_fault(ev, case, name)
                continue
            m, tagged, te = transfer_claims(ev, case, name if kind != "sweep" else f"sweep {name[5:]}%",
                                            CAPTURES, **_ends(ev))
            if kind == "sweep":
                claims += [c for k, c in tagged if k in ("payload", "captures")]
                ev.metrics["sweep"][name] = m
                continue
            spec = specs.get(name, {})
            claims += [c for _, c in tagged] + netem_rate_claims(name, spec, m, te.owd_ms)
            if kind == "scenarios":
                claims += cls.check_scenario(name, spec, m, baseline_owd)
                ev.metrics["scenarios"][name] = m
            else:
                baseline_owd = (m["ledger"]["data_direction"] or {}).get("owd_ms")
                ev.metrics["baseline"] = m
        if p.sweep_loss:
            claims += cls.check_sweep(ev)
        return claims

    @staticmethod
    def check_scenario(name, spec, m, baseline_owd):
        claims = []
        led = m["ledger"]["data_direction"] or {}
        snd, rcv = m["sender_side"] or {}, m["receiver_side"] or {}
        s_c2s, r_c2s = snd.get("client_to_server", {}), rcv.get("client_to_server", {})
        s_s2c = snd.get("server_to_client", {})
        netem = (m["netem"] or [{}])[0]
        m["summary"] = {
            **{k: s_c2s.get(k) for k in ("retransmissions", "fast_retransmissions",
                                         "timeout_retransmissions", "spurious_retransmissions")},
            "retransmissions_labelled_out_of_order_at_sender": s_c2s.get("out_of_order"),
            "duplicate_acks_to_sender": s_s2c.get("duplicate_acks"),
            "out_of_order_at_receiver": r_c2s.get("out_of_order"),
            "duplicate_segments_at_receiver": r_c2s.get("duplicate_segments"),
            "ledger_dropped_data": led.get("data_dropped"),
            "ledger_duplicated_data": led.get("data_extra_copies"),
            "ledger_reordered_data": led.get("data_reordered"),
            # netem's own drop counter (all packets, ARP included) beside the ledger's (TCP).
            "netem_qdisc_drops": (netem.get("counters") or {}).get("drops"),
            "ledger_dropped_all": led.get("dropped")}
        payload = (m.get("segments") or {}).get("payload")   # first transmissions needed
        segments = math.ceil(m["bytes"] / payload) if payload else None
        missing = ("no data direction in the ledger" if not m["ledger"]["data_direction"] else
                   "no data segments from the sender in up.pcap" if segments is None else None)
        if spec.get("loss"):
            # Required when the parameters make >= FAST_RETRANSMIT_MIN_DROPS drops near-certain.
            p_drop = stats.netem_expected_rates(spec["loss"] / 100, spec.get("duplicate", 0) / 100)["dropped"]
            drops = led.get("data_dropped", 0)
            claims.append(required_or_not_exercised(
                f"{name}: losses were repaired by fast retransmission after duplicate ACKs",
                happened=drops >= FAST_RETRANSMIT_MIN_DROPS,
                ok_if_happened=(s_c2s.get("fast_retransmissions") or 0) >= 1
                and (s_s2c.get("duplicate_acks") or 0) >= 1,
                p_miss=stats.binomial_below(FAST_RETRANSMIT_MIN_DROPS, segments, p_drop) if segments else None,
                figures={"fast": s_c2s.get("fast_retransmissions"), "timeout": s_c2s.get("timeout_retransmissions"),
                         "dup_acks": s_s2c.get("duplicate_acks"), "data_drops": drops},
                expected="fast >= 1, dup ACKs >= 1", missing=missing,
                missed=f"fewer than {FAST_RETRANSMIT_MIN_DROPS} drops",
                why=f">= {FAST_RETRANSMIT_MIN_DROPS} drops needed; {segments} segments x {100 * p_drop:.2f}%",
                evidence="pcap analyser on up.pcap (Wireshark's rules); ledger drops"))
        if spec.get("duplicate"):
            copies, at_rcv = led.get("data_extra_copies", 0), r_c2s.get("duplicate_segments")
            claims.append(required_or_not_exercised(
                f"{name}: duplicated segments reached the receiver and were not delivered twice",
                happened=copies > 0, ok_if_happened=(at_rcv or 0) >= copies,
                p_miss=stats.binomial_below(1, segments, spec["duplicate"] / 100) if segments else None,
                figures={"duplicate_segments_at_receiver": at_rcv, "network_copies": copies},
                expected=">= the network's extra copies; app bytes exact (sha256 claim)", missing=missing,
                missed="the network made no copies",
                evidence="pcap analyser on rcv.pcap; ledger"))
        if spec.get("reorder"):
            ooo = r_c2s.get("out_of_order") or 0
            claims.append(Claim(
                f"{name}: segments arrived out of order at the receiver",
                led.get("data_reordered", 0) >= 1 and ooo >= 1,
                measured={"out_of_order (analyser)": ooo, "reordered (ledger)": led.get("data_reordered")},
                expected=">= 1 each", evidence="rcv.pcap (analyser); ledger"))
        if spec.get("delay"):
            d, owd = spec["delay"], (led.get("owd_ms") or {}).get("median")
            window = timers.owd_window_ms(d, baseline_owd)
            m["owd_window_ms"] = window
            claims.append(window_claim(
                f"{name}: one-way delay across the link is the configured delay", owd, window,
                f"{d:g} ms", f"netem never early; + baseline p90 {baseline_owd['p90']:g} ms + "
                f"{timers.MEDIAN_WAKEUP_SLACK_MS:g} ms timer wake-up" if window else "no baseline measured",
                "ledger: arrival minus departure time; baseline/ledger.json"))
        if spec.get("delay") and not spec.get("reorder"):
            # (netem sends a reordered packet without the delay: no RTT floor then)
            d, rtt = spec["delay"], s_s2c.get("rtt_min_ms")
            claims.append(Claim(
                f"{name}: RTT seen by the sender includes the delay",
                rtt is not None and rtt >= d - timers.TS_DIFF_MS,
                measured=f"min {rtt} ms", expected=f">= {d:g} ms",
                tolerance=f"-{timers.TS_DIFF_MS:g} ms (pcap timestamps)",
                evidence="pcap analyser RTT samples on up.pcap"))
        return claims

    @classmethod
    def check_fault(cls, ev, case, name):
        folder, err = case["name"], case["error"] or {}
        installed = bool(case["faults"]) and err.get("stage") != "fault"
        claims = [Claim(f"fault {name}: the rule was installed on r1", installed,
                        measured=f"backend {case['faults'][0]['backend']}" if installed
                        else f"{err.get('type')}: {err.get('message')}",
                        expected="nftables, or iptables-legacy where nf_tables lacks the inet family",
                        evidence=f"{folder}/case.json faults")]
        if not installed:
            # Nothing was sent: no other claim of this fault could rest on evidence.
            ev.metrics["faults"][name] = {"fault": case["faults"], "error": err}
            return claims
        m, tagged, te = transfer_claims(ev, case, f"fault {name}", CAPTURES, **_ends(ev))
        claims += [c for _, c in tagged]
        counts = case["faults"][0]["counters"]
        claims.append(Claim(f"fault {name}: the fault rule dropped exactly one packet",
                            counts.get("dropped") == 1, measured=counts, expected={"dropped": 1},
                            evidence="the rule's packet counters in r1 (nftables, or iptables-legacy in UML)"))
        side = te.ledger["acks" if name == "synack" else "data"] or {}
        drops, details = side.get("dropped", []), side.get("recovery", {}).get("details", [])
        want = {"nth": None, "synack": "S.", "fin": "F"}[name]
        ok_drop = len(drops) == 1 and (want is None and drops[0]["len"] > 0
                                       or want is not None and want in drops[0]["flags"])
        claims.append(Claim(
            f"fault {name}: the ledger sees exactly that packet vanish between r1 and r2",
            ok_drop, measured=[[e["rel_seq"], e["len"], e["flags"]] for e in drops],
            expected={"nth": f"one data segment (#{ev.params.nth})", "synack": "one SYN-ACK",
                      "fin": "one FIN"}[name], evidence=f"{folder}/ledger.json"))
        rec = details[0] if details else {}
        after = rec.get("retransmitted_after_ms")
        s2c = ((m.get("sender_side") or {}).get("server_to_client")) or {}
        rtt = {"min": s2c.get("rtt_min_ms"), "max": s2c.get("rtt_max_ms")}
        window = timers.retransmission_window_ms(name, rtt) if None not in rtt.values() else None
        m["recovery"] = {"dropped": drops, "recovery": rec, "rtt_ms": rtt, "expected_window_ms": window,
                         "retransmission_kind": _retransmission_kind(ev, folder, name, rec)}
        how = {"synack": "TCP_TIMEOUT_INIT 1 s (request timer or the client's SYN)",
               "fin": "tail loss probe (>= 2 srtt) or RTO (<= srtt + max(4 rttvar, TCP_RTO_MIN))",
               "nth": "duplicate ACKs/RACK (>= 1 RTT) or RTO"}[name]
        claims.append(Claim(
            f"fault {name}: retransmitted by a timer or duplicate ACKs, then delivered",
            bool(rec.get("recovered")) and after is not None and window is not None
            and window[0] <= after <= window[1],
            measured={"retransmitted_after_ms": after, "delivered_after_ms": rec.get("delivered_after_ms"),
                      "kind": m["recovery"]["retransmission_kind"]},
            expected=how,
            tolerance=f"[{window[0]:.1f}, {window[1]:.1f}] ms from RTT {rtt['min']:g}-{rtt['max']:g} ms"
            if window else "no RTT samples in up.pcap: no window",
            evidence=f"{folder}/ledger.json; pcap analyser flags and RTTs"))
        ev.metrics["faults"][name] = m
        return claims

    @staticmethod
    def check_sweep(ev):
        """Per setting a point (goodput, RTT, segment size, configured and
        measured loss, Mathis at the *measured* loss: the rate the flow really
        saw); then one claim: goodput at the highest loss setting is below that
        at the lowest -- only from transfers that delivered."""
        points = []
        for loss in ev.params.sweep_loss:
            m = ev.metrics["sweep"][f"loss-{loss:g}"]
            snd = m["sender_side"] or {}
            rtt = (snd.get("server_to_client") or {}).get("rtt_mean_ms")
            mss = (m["segments"] or {}).get("payload")   # bytes per full segment, from the capture
            data = m["ledger"]["data_direction"] or {}
            measured = data["data_dropped"] / data["data_departed"] if data.get("data_departed") else None
            goodput = (snd.get("client_to_server") or {}).get("goodput_bps") if m["transfer_ok"] else None

            def model(p_):
                return mathis_goodput_bps(mss, rtt / 1000, p_) if rtt and mss and p_ else None
            at_measured = model(measured)
            points.append({"loss_percent": loss, "measured_loss": measured, "rtt_ms": rtt,
                           "transfer_ok": m["transfer_ok"], "goodput_bps": goodput, "mss": mss,
                           "segments": m["segments"], "mathis_bps": at_measured,
                           "mathis_bps_at_configured_loss": model(loss / 100),
                           "ratio_to_model": goodput / at_measured if at_measured and goodput else None})
        ev.metrics["sweep_points"] = points
        ev.metrics["sweep_model"] = "Mathis at the measured loss (ledger: data segments dropped / sent)"
        ev.save(os.path.join("sweep", "points.json"), points)
        if len(points) < 2:
            return []
        ordered = sorted(points, key=lambda x: x["loss_percent"])
        lo, hi = ordered[0], ordered[-1]
        failed = [f"{x['loss_percent']:g}%" for x in (lo, hi) if not x["goodput_bps"]]
        return [Claim(
            f"sweep: goodput at the highest loss ({hi['loss_percent']:g}%) is below that at "
            f"the lowest ({lo['loss_percent']:g}%)",
            not failed and lo["goodput_bps"] > hi["goodput_bps"],
            measured={f"{x['loss_percent']:g}%": round(x["goodput_bps"] / 1e6, 2)
                      if x["goodput_bps"] else "transfer failed" for x in ordered},
            expected=f"Mbit/s at {hi['loss_percent']:g}% < at {lo['loss_percent']:g}%"
                     + (f"; cannot compare: {', '.join(failed)} did not deliver" if failed else ""),
            evidence="sweep/points.json (goodput only from transfers whose sha256 matched)")]

    @classmethod
    def plot(cls, ev):
        from wirelab.observe import plots
        for name in ev.case_names():
            if ev.exists(name, "up.pcap") and ev.exists(name, "ledger.json"):
                drops = (ev.json(name, "ledger.json").get("data") or {}).get("dropped", [])
                plots.time_sequence(ev.path(name, "up.pcap"), drops, ev.path(name, "time_sequence.png"),
                                    f"tcp_recovery {name}: time-sequence at the sender side (r1)")
        if ev.exists("sweep", "points.json"):
            plots.goodput_vs_loss(ev.json("sweep", "points.json"), mathis_goodput_bps,
                                  ev.path("sweep", "goodput_vs_loss.png"), "tcp_recovery: goodput against loss")


def _ends(ev):
    top = ev.run["topology"]
    return {"sender_ip": top["sender"], "receiver_ip": top["receiver"]}


def _retransmission_kind(ev, folder, name, rec):
    """Wireshark's flag on the retransmission the ledger found."""
    from wirelab.observe.pcap import analysis_names, iter_segments
    idx = rec.get("retransmission_index")
    if idx is None:
        return None
    # The retransmission is in the before capture: up for data, down for SYN-ACKs.
    for seg in iter_segments(ev.path(folder, "down.pcap" if name == "synack" else "up.pcap")):
        if seg["frame"] == idx + 1:
            return analysis_names(seg["analysis"]) or ["(no flag: new SYN-ACK)"]
    return None


if __name__ == "__main__":
    sys.exit(main(TcpRecovery))
