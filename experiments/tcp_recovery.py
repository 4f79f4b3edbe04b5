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
(seeded bytes) crosses the bottleneck while netem impairs the data direction.
Then, from the saved files only:

* the receiving application got exactly the bytes sent (length and sha256);
* the pcap analyser (wirelab.pcap, Wireshark's rules) on the sender side counts
  retransmissions by kind (fast / timeout / spurious), duplicate ACKs; on the
  receiver side out-of-order and duplicate segments; the receiver's cumulative
  ACK never goes backwards; handshake and teardown complete;
* the impairment ledger (wirelab.impairment_ledger) matches every packet seen
  at "up" with its copies at "down": which ones the network dropped,
  duplicated, reordered -- and proves each dropped data segment was
  retransmitted and delivered;
* the measured impairment rates lie in a 99.99% Wilson interval around the
  configured ones (the exact false-alarm probability is in each claim).

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
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topologies.dumbbell import DumbbellTopo  # noqa: E402
from wirelab import impairment_ledger as ledger_mod  # noqa: E402
from wirelab.capture import Captures  # noqa: E402
from wirelab.errors import CommandError, ConfigError  # noqa: E402
from wirelab.experiment import Claim, Experiment, main, write_json  # noqa: E402
from wirelab.proc import wait_until  # noqa: E402
from wirelab.tcpflow import READY_PREFIX, payload_sha256  # noqa: E402

TCPFLOW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "wirelab", "tcpflow.py")
SCENARIOS = ("loss", "reorder", "duplicate", "delay", "combo")
FAULTS = ("nth", "synack", "fin")
BASE_PORT = 5001
# Linux's initial retransmission timeout (RFC 6298 TCP_TIMEOUT_INIT): a lost
# SYN or SYN-ACK is sent again after 1 s. The upper bound allows for a slow guest.
INITIAL_RTO_S = (0.9, 3.0)
# Linux's minimum RTO (TCP_RTO_MIN) is 200 ms; a tail loss probe can come sooner.
# Below this bound a FIN retransmission came from a timer, not a fresh decision.
FIN_RECOVERY_MAX_S = 3.0
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


class _Lines:
    """Collects a pipe's lines in a thread, so a readiness line can be awaited."""

    def __init__(self, pipe):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in pipe:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self):
        return "\n".join(self.lines)


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
        from wirelab.testbed import Testbed
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
        from wirelab.netns import get_offloads, open_ioctl_socket
        out = {}
        for node, intf in ((self.r1, self.impaired), (self.r2, self.topo.bottleneck()["r2"]),
                           (self.r1, self.up), (self.r2, self.down)):
            with open_ioctl_socket(node) as sock:
                out[f"{node.name}:{intf}"] = get_offloads(sock, intf)
        return out

    # -- run --------------------------------------------------------------------
    def run(self):
        from wirelab import netem
        p = self.params
        specs = scenario_specs(p)
        self.metrics["runs"] = {}
        for name in p.scenarios:
            spec = netem.NetemSpec(**specs[name])
            self.log(f"scenario {name}: netem on r1:{self.impaired}: {spec}; "
                     f"{p.bytes} bytes")
            netem.apply_netem(self.tb, self.r1, self.impaired, spec)
            try:
                info = self.transfer(os.path.join("scenarios", name), p.bytes)
                info["netem"] = {"spec": spec.to_dict(), "text": str(spec),
                                 "stats": netem.netem_stats(self.tb, self.r1, self.impaired)}
            finally:
                netem.clear_netem(self.tb, self.r1, self.impaired)
            self._save_run(os.path.join("scenarios", name), info)
        for name in p.faults:
            self.log(f"fault {name}: {p.bytes} bytes")
            try:
                info = self.run_fault(name)
            except (CommandError, self._faults_unavailable()) as exc:
                # nftables is unusable in some kernels (the UML guest's nf_tables
                # refuses to create tables): a skip with its reason, not a pass.
                reason = f"cannot install the nftables fault: {exc}"
                self.log(f"  fault {name}: SKIPPED ({reason})")
                info = {"skipped": reason, "seconds": 0.0}
            self._save_run(os.path.join("faults", name), info)
        for loss in p.sweep_loss:
            spec = netem.NetemSpec(loss=loss, delay=p.base_delay)
            folder = os.path.join("sweep", f"loss-{loss:g}")
            self.log(f"sweep loss {loss:g}%: netem {spec}; {p.sweep_bytes} bytes")
            netem.apply_netem(self.tb, self.r1, self.impaired, spec)
            try:
                info = self.transfer(folder, p.sweep_bytes)
                info["netem"] = {"spec": spec.to_dict(), "text": str(spec),
                                 "stats": netem.netem_stats(self.tb, self.r1, self.impaired)}
            finally:
                netem.clear_netem(self.tb, self.r1, self.impaired)
            self._save_run(folder, info)
        self.metrics["offloads_after"] = self._offloads()

    @staticmethod
    def _faults_unavailable():
        from wirelab import faults
        return getattr(faults, "FaultsUnavailableError", CommandError)

    def run_fault(self, name):
        from wirelab import faults
        port = self.port  # the port transfer() is about to use
        snd_ip, rcv_ip = self.tb.ip("snd1"), self.tb.ip("rcv1")
        if name == "nth":
            fault = faults.DropNthDataSegment(n=self.params.nth, direction="to_server",
                                              dport=port, src=snd_ip, dst=rcv_ip)
        elif name == "synack":
            fault = faults.DropSynAck(dport=port, src=rcv_ip, dst=snd_ip)
        else:
            fault = faults.DropFirstFin(direction="to_server", dport=port, src=snd_ip, dst=rcv_ip)
        fault.install(self.tb, self.r1)
        info = self.transfer(os.path.join("faults", name), self.params.bytes)
        info["fault"] = {"name": name, "description": fault.describe(), "node": "r1",
                         "counts": fault.counts()}
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
            srv_out, srv_err = _Lines(server.popen.stdout), _Lines(server.popen.stderr)
            wait_until(lambda: any(l.startswith(READY_PREFIX) for l in srv_out.lines)
                       or not server.running(), 30, what=f"tcpflow server on rcv1:{port}")
            sender = tb.run(self.snd, [sys.executable, TCPFLOW, "send", "--to", rcv_ip,
                                       "--port", port, "--bytes", nbytes, "--seed", p.seed,
                                       "--timeout", p.timeout],
                            timeout=p.timeout + 30, check=False)
            wait_until(lambda: not server.running(), p.timeout + 30,
                       what=f"tcpflow server on rcv1:{port} to finish")
            srv_out.thread.join(5)
            srv_err.thread.join(5)
        seconds = round(time.monotonic() - started, 3)
        receiver = _last_json(srv_out.lines)
        sent = _last_json(sender.stdout.splitlines())
        info = {"folder": folder, "port": port, "bytes": nbytes, "seed": p.seed,
                "seconds": seconds, "sender": sent, "receiver": receiver,
                "sender_exit": sender.returncode, "sender_stderr": sender.stderr[-2000:],
                "receiver_exit": server.popen.returncode, "receiver_stderr": srv_err.text()[-2000:],
                "captures": caps.results,
                "ss_on_failure": None}
        if sender.returncode != 0 or server.popen.returncode != 0:
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
        for name in p.scenarios:
            folder = os.path.join("scenarios", name)
            m, c = self.check_transfer(folder, name)
            c += self.check_rates(name, specs[name], m)
            c += self.check_scenario(name, specs[name], m)
            self.metrics["scenarios"][name] = m
            claims += c
        for name in p.faults:
            folder = os.path.join("faults", name)
            skipped = self.load_run(folder).get("skipped")
            if skipped:
                self.metrics["faults"][name] = {"skipped": skipped}
                self.metrics.setdefault("skipped", []).append(f"fault {name}: {skipped}")
                continue
            m, c = self.check_transfer(folder, f"fault {name}")
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
        """Claims every transfer must satisfy; returns (figures, claims)."""
        from wirelab.pcap import analyze
        info = self.load_run(folder)
        up, down = self.path(folder, "up.pcap"), self.path(folder, "down.pcap")
        at_rcv = self.path(folder, "rcv.pcap")
        snd_ip, rcv_ip = self.metrics["topology"]["sender"], self.metrics["topology"]["receiver"]
        claims = []
        want_sha = payload_sha256(info["seed"], info["bytes"])
        got = info.get("receiver") or {}
        claims.append(Claim(
            f"{label}: receiver got exactly the bytes sent, in order (sha256)",
            got.get("bytes") == info["bytes"] and got.get("sha256") == want_sha,
            measured={"bytes": got.get("bytes"), "sha256": (got.get("sha256") or "")[:16]},
            expected={"bytes": info["bytes"], "sha256": want_sha[:16]},
            evidence=f"{folder}/run.json receiver; sha256 recomputed from the seed"))
        incomplete = [c["name"] + ": " + "; ".join(c["problems"] or [f"{c['dropped_by_kernel']} dropped by kernel"])
                      for c in info["captures"] if c["problems"] or c["dropped_by_kernel"]
                      or c["dropped_by_interface"]]
        claims.append(Claim(
            f"{label}: captures complete (tcpdump dropped nothing; the ledger is reliable)",
            not incomplete and len(info["captures"]) == 3,
            measured=incomplete or {c["name"]: c["packets"] for c in info["captures"]},
            expected="0 dropped by kernel, files parse", evidence="tcpdump exit counters"))
        # The receiver's own interface, not r2's: the veth between them can
        # reorder packets across CPUs, and the receiver's TCP sees what rcv.pcap sees.
        ra, rb = analyze(up), analyze(at_rcv)
        fa, fb = _flow(ra, snd_ip), _flow(rb, snd_ip)
        led = ledger_mod.build_ledger(up, down, "up", "down")
        fwd, rev = _dir_or_none(led, snd_ip), _dir_or_none(led, rcv_ip)
        summary = {"data": fwd.summary() if fwd else None, "acks": rev.summary() if rev else None}
        # One-way delays of the data direction, for the reorder rate (not saved:
        # ledger.json and the pcaps hold them).
        self._owd_ms = [x / 1e6 for x in fwd.owd_ns()] if fwd else []
        write_json(self.path(folder, "ledger.json"), summary)
        figures = {"seconds": info["seconds"], "bytes": info["bytes"],
                   "sender_side": fa, "receiver_side": fb,
                   "ledger": _ledger_fig(summary), "netem": info.get("netem"),
                   "fault": info.get("fault"), "captures": info["captures"]}
        if got.get("first_byte_time") and got.get("end_time"):
            figures["app_goodput_bps"] = round(got["bytes"] * 8 / max(
                1e-9, got["end_time"] - got["first_byte_time"]), 1)
        for side, flow in (("sender side (r1)", fa), ("receiver (rcv1)", fb)):
            ok = bool(flow) and flow["handshake"]["complete"] and flow["teardown"]["fin_client"] \
                and flow["teardown"]["fin_server"]
            claims.append(Claim(
                f"{label}: handshake and FIN teardown seen at the {side}", ok,
                measured={"handshake": bool(flow) and flow["handshake"]["complete"],
                          "fins": bool(flow) and [flow["teardown"]["fin_client"], flow["teardown"]["fin_server"]]},
                expected="SYN, SYN-ACK, ACK; FIN both ways"))
        back = _ack_regressions(at_rcv, rcv_ip)
        claims.append(Claim(f"{label}: the receiver's cumulative ACK never went backwards",
                            back == 0, measured=back, expected=0,
                            evidence="ACKs as the receiver sent them (rcv.pcap, egress taps in send order)"))
        figures["ack_regressions_at_receiver"] = back
        # After the veth and the link ACKs can be reordered: reported, not claimed.
        figures["ack_regressions_at_r2"] = _ack_regressions(down, rcv_ip)
        figures["ack_regressions_at_r1"] = _ack_regressions(up, rcv_ip)
        if fwd:
            rec = summary["data"]["recovery"]
            claims.append(Claim(
                f"{label}: every dropped data segment was retransmitted and delivered (ledger)",
                not rec["unrecovered"] and summary["data"]["unexpected"] == 0,
                measured={"dropped": rec["dropped_with_sequence_space"], "recovered": rec["recovered"],
                          "unexpected": summary["data"]["unexpected"]},
                expected="all recovered, 0 unexpected",
                evidence=f"{folder}/ledger.json recovery.details"))
            c2s = fa["client_to_server"] if fa else {}
            # Wireshark calls a retransmission sent within one handshake RTT of
            # the highest segment "out-of-order" (its heuristic cannot tell), so
            # both labels count as re-sent here.
            resent = c2s.get("retransmissions", 0) + c2s.get("out_of_order", 0)
            need = rec["retransmitted"]
            claims.append(Claim(
                f"{label}: the sender re-sent at least the segments the network dropped",
                resent >= need, measured=resent, expected=f">= {need}",
                evidence="pcap analyser on up.pcap: retransmissions + out-of-order "
                         "(Wireshark's label for a quick retransmission) vs ledger drops"))
        return figures, claims

    def check_rates(self, name, spec, m):
        """Measured netem rates against configured ones (Wilson, 99.99%)."""
        claims = []
        led = m["ledger"]["data_direction"]
        if not led:
            return claims
        n = led["departed"]
        model = ledger_mod.netem_expected_rates(spec.get("loss", 0) / 100, spec.get("duplicate", 0) / 100)
        checks = [("loss (packets that vanished)", "dropped", model["dropped"], led["dropped"], n)]
        if model["duplicated"] is not None:
            checks.append(("duplication (packets that arrived twice)", "duplicated",
                           model["duplicated"], led["duplicated"], n))
        if spec.get("reorder") and not spec.get("duplicate"):
            # netem sends a reordered packet with no delay at all: count the
            # delivered packets whose one-way delay is under half the delay.
            fast = sum(1 for x in self._owd_ms if x < spec["delay"] / 2)
            checks.append((f"reorder (sent without the {spec['delay']:g} ms delay)", "reordered",
                           spec["reorder"] / 100, fast, len(self._owd_ms)))
        m["rates"] = {}
        for label, key, p, k, n_ in checks:
            if n_ == 0:
                continue
            lo, hi = ledger_mod.wilson_interval(k, n_)
            fa = ledger_mod.false_alarm_probability(p, n_) if 0 < p < 1 else 0.0
            m["rates"][key] = {"configured": p, "measured": k / n_, "k": k, "n": n_,
                               "wilson_99.99": [lo, hi], "false_alarm_probability": fa}
            claims.append(Claim(
                f"{name}: measured {label} matches netem's setting",
                (lo <= p <= hi) if p > 0 else k == 0,
                measured=f"{k}/{n_} = {100 * k / n_:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                expected=f"{100 * p:.2f}%",
                tolerance=f"99.99% Wilson; false alarm {fa:.1e}",
                evidence="impairment ledger, data direction"))
        return claims

    def check_scenario(self, name, spec, m):
        claims = []
        led = m["ledger"]["data_direction"] or {}
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
            "netem_qdisc_drops": ((m.get("netem") or {}).get("stats") or {}).get("drops"),
            "ledger_dropped_all": led.get("dropped"),
        }
        if spec.get("loss") and led.get("data_dropped", 0) >= 3:
            claims.append(Claim(
                f"{name}: losses were repaired by fast retransmission after duplicate ACKs",
                (s_c2s.get("fast_retransmissions") or 0) >= 1 and (s_s2c.get("duplicate_acks") or 0) >= 1,
                measured={"fast": s_c2s.get("fast_retransmissions"),
                          "timeout": s_c2s.get("timeout_retransmissions"),
                          "dup_acks": s_s2c.get("duplicate_acks")},
                expected="fast >= 1, dup ACKs >= 1",
                evidence="pcap analyser on up.pcap (Wireshark's rules)"))
        if led.get("data_extra_copies"):
            claims.append(Claim(
                f"{name}: duplicated segments reached the receiver and were not delivered twice",
                (r_c2s.get("duplicate_segments") or 0) >= led["data_extra_copies"],
                measured={"duplicate_segments_at_receiver": r_c2s.get("duplicate_segments"),
                          "network_copies": led["data_extra_copies"]},
                expected=">= the network's extra copies; app bytes exact (sha256 claim)",
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
            tol = max(3.0, 0.25 * d)
            ok = owd is not None and d - 0.5 <= owd <= d + tol
            claims.append(Claim(
                f"{name}: one-way delay across the link is the configured delay",
                ok, measured=f"median {owd} ms", expected=f"{d:g} ms",
                tolerance=f"-0.5 / +{tol:g} ms", evidence="ledger: arrival minus departure time"))
        if spec.get("delay") and not spec.get("reorder"):
            # (netem sends a reordered packet without the delay: no RTT floor then)
            d = spec["delay"]
            rtt = s_s2c.get("rtt_min_ms")
            claims.append(Claim(
                f"{name}: RTT seen by the sender includes the delay",
                rtt is not None and rtt >= d - 0.5,
                measured=f"min {rtt} ms", expected=f">= {d:g} ms",
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
        m["recovery"] = {"dropped": drops, "recovery": rec,
                         "retransmission_kind": self._retransmission_kind(folder, name, rec)}
        if name == "synack":
            lo, hi = INITIAL_RTO_S
            ok = rec.get("recovered") and after is not None and lo * 1000 <= after <= hi * 1000
            exp = f"initial RTO {lo:g}-{hi:g} s"
        elif name == "fin":
            ok = rec.get("recovered") and after is not None and after <= FIN_RECOVERY_MAX_S * 1000
            exp = f"retransmitted within {FIN_RECOVERY_MAX_S:g} s (RTO / tail loss probe)"
        else:
            ok = rec.get("recovered") and after is not None and after <= FIN_RECOVERY_MAX_S * 1000
            exp = f"retransmitted within {FIN_RECOVERY_MAX_S:g} s"
        claims.append(Claim(
            f"fault {name}: retransmitted by a timer or duplicate ACKs, then delivered",
            bool(ok), measured={"retransmitted_after_ms": after,
                                "delivered_after_ms": rec.get("delivered_after_ms"),
                                "kind": m["recovery"]["retransmission_kind"]},
            expected=exp, evidence=f"{folder}/ledger.json; pcap analyser flags"))
        return claims

    def _retransmission_kind(self, folder, name, rec):
        """Wireshark's flag on the retransmission the ledger found."""
        from wirelab.pcap import flag_names, iter_segments
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
        p = self.params
        points = []
        claims = []
        for loss in p.sweep_loss:
            folder = os.path.join("sweep", f"loss-{loss:g}")
            m, c = self.check_transfer(folder, f"sweep {loss:g}%")
            claims += [x for x in c if "sha256" in x.name or "captures complete" in x.name]
            snd = m["sender_side"] or {}
            rtt = (snd.get("server_to_client") or {}).get("rtt_mean_ms")
            mss = 1448  # 1500 MTU - 20 IP - 20 TCP - 12 timestamps
            measured_loss = (m["ledger"]["data_direction"] or {}).get("dropped", 0) / max(
                1, (m["ledger"]["data_direction"] or {}).get("departed", 1))
            goodput = (snd.get("client_to_server") or {}).get("goodput_bps")
            model = mathis_goodput_bps(mss, rtt / 1000, loss / 100) if rtt else None
            points.append({"loss_percent": loss, "measured_loss": measured_loss, "rtt_ms": rtt,
                           "goodput_bps": goodput, "mathis_bps": model, "mss": mss,
                           "ratio_to_model": goodput / model if model and goodput else None})
            self.metrics["sweep"][f"loss-{loss:g}"] = m
        self.metrics["sweep_points"] = points
        write_json(self.path("sweep", "points.json"), points)
        if len(points) >= 2:
            ordered = sorted(points, key=lambda x: x["loss_percent"])
            claims.append(Claim(
                "sweep: goodput falls as loss rises (lowest vs highest loss setting)",
                (ordered[0]["goodput_bps"] or 0) > (ordered[-1]["goodput_bps"] or 0),
                measured={f"{x['loss_percent']:g}%": round((x["goodput_bps"] or 0) / 1e6, 2) for x in ordered},
                expected="Mbit/s decreasing from first to last",
                evidence="sweep/points.json"))
        return claims

    # -- plot ---------------------------------------------------------------------------
    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from wirelab.pcap import iter_segments
        from wirelab.pcap import flags as F
        folders = [os.path.join("scenarios", s) for s in self.params.scenarios] + \
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
            xs = [x["loss_percent"] for x in points]
            ax.plot(xs, [(x["goodput_bps"] or 0) / 1e6 for x in points], "o", label="measured")
            good = [x for x in points if x["mathis_bps"]]
            if good:
                rtt = sorted(x["rtt_ms"] for x in good)[len(good) // 2]
                grid = [min(xs) * (max(xs) / min(xs)) ** (i / 50) for i in range(51)] if min(xs) > 0 else xs
                ax.plot(grid, [mathis_goodput_bps(good[0]["mss"], rtt / 1000, g / 100) / 1e6 for g in grid],
                        "-", label=f"Mathis: MSS/RTT x sqrt(3/2)/sqrt(p), RTT {rtt:.1f} ms")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("netem loss (%)")
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
    from wirelab.impairment_ledger import ACK, read_packets
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
