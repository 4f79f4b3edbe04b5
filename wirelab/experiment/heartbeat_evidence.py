"""A ``heartbeats`` case read back from its folder: who sent what, what arrived,
what each detector decided, and why.

:func:`load_case` joins the chunkservers' own logs (every heartbeat sent,
with its time), the main server's log (every arrival, every state change, in
causal order) and ``case.json`` (netem per link, the fault window). Every
"dead" decision is then labelled against the injected faults
(:func:`label_death`), in this order:

* ``true: link down`` -- the silence it reacted to overlaps the fault window;
* ``true: chunkserver stopped`` -- the chunkserver had sent its last
  heartbeat more than an interval before (the end of the run);
* ``false: sender late`` -- the chunkserver was running but late: a heartbeat
  due in the silence left more than half an interval behind its schedule;
* ``false: lost`` -- every heartbeat sent in the silence vanished (netem);
* ``false: delayed`` -- some of them arrived, after the decision (netem's
  delay, jitter or reordering);
* ``unexplained: ...`` -- the decision contradicts the log (the detector's
  last heartbeat is not the last one logged before it, or a fixed-k decision
  with fewer than k heartbeats missing). None may occur.
"""

import dataclasses
import os

from wirelab.apps.detectors import FIXED, PHI, FixedTimeoutDetector, PhiAccrualDetector
from wirelab.apps.gfs import protocol
from wirelab.apps.gfs.sequence import analyse
from wirelab.experiment import timers
from wirelab.experiment.heartbeat_model import phi_silence

# The server's log stamps two clocks sampled microseconds apart (the decision
# and the arrival it measures from): differences are good to well within this.
STAMP_EPS_S = 0.001
# A decision comes at most one check tick after its deadline, plus the
# select() wake-up: one timer event, at worst one host tick (timers.py).
WAKEUP_SLACK_S = timers.EVENT_WAKEUP_SLACK_MS / 1000


@dataclasses.dataclass
class Chunkserver:
    name: str
    node: str
    transport: str
    start: float            # wall time of heartbeat 0's schedule
    sends: dict             # seq -> wall time it left
    recvs: list             # (log index, t, seq) at the server, in log order
    states: list            # state events at the server, with "index"
    analysis: dict          # sequence.analyse over the arrivals
    summary: dict           # the chunkserver's own JSON report

    @property
    def final_send(self):
        return max(self.sends.values()) if self.sends else None


@dataclasses.dataclass
class CaseEvidence:
    name: str
    record: dict            # the workload's record
    netem: dict             # node -> NetemSpec keywords (case.json, as asked)
    windows: list           # [(down, up)] wall times: the widest reading of the fault
    chunkservers: dict      # name -> Chunkserver
    interval: float
    k: int
    grace: float
    tick: float
    phi: dict               # the server's phi parameters (seconds)
    deaths: list = dataclasses.field(default_factory=list)
    dropped: list = dataclasses.field(default_factory=list)


def load_case(ev, case):
    """A :class:`CaseEvidence` for ``case`` (its case.json record)."""
    folder, record = case["name"], case["workload"] or {}
    server_summary = record.get("server") or {}
    interval = record.get("interval")
    events = protocol.read_log(ev.path(folder, record.get("server_log", "server.jsonl")))
    fault = record.get("fault")
    windows = [(fault["down"][0], fault["up"][1])] if fault else []
    out = CaseEvidence(folder, record, {n["node"]: n["spec"] for n in case["netem"]}, windows, {},
                       interval=interval, k=server_summary.get("k"), grace=server_summary.get("grace"),
                       tick=server_summary.get("check_every") or interval / 10, phi=server_summary.get("phi") or {})
    for name, info in (record.get("chunkservers") or {}).items():
        own = protocol.read_log(ev.path(folder, info["log"])) if ev.exists(folder, info["log"]) else []
        sends = {e["message"]["seq"]: e["t"] for e in own if e["event"] == "send"}
        summary = info.get("summary") or {}
        out.chunkservers[name] = Chunkserver(name, info["node"], info["transport"], summary.get("start"),
                                             sends, [], [], None, summary)
    for i, e in enumerate(events):
        if e["event"] == "recv" and e["message"]["chunkserver"] in out.chunkservers:
            out.chunkservers[e["message"]["chunkserver"]].recvs.append((i, e["t"], e["message"]["seq"]))
        elif e["event"] == "state" and e["chunkserver"] in out.chunkservers:
            out.chunkservers[e["chunkserver"]].states.append({**e, "index": i})
        elif e["event"] == "dropped":
            out.dropped.append(e)
    for cs in out.chunkservers.values():
        cs.analysis = analyse([s for _, _, s in cs.recvs], set(cs.sends))
        for e in cs.states:
            if e["state"] == "dead":
                out.deaths.append(label_death(out, cs, e))
    return out


def label_death(case, cs, dead):
    """The decision ``dead`` of ``cs`` with its label, its silence and its deadline check."""
    T, t = case.interval, dead["t"]
    known = [(ti, s) for i, ti, s in cs.recvs if i < dead["index"]]
    out = {"chunkserver": cs.name, "detector": dead["detector"], "t": t, "label": None, "missing": None}
    if not known:
        out["label"] = "unexplained: no heartbeat logged before the decision"
        return out
    m = max(s for _, s in known)
    t_last = min(ti for ti, s in known if s == m)
    lo = deadline(case, dead)
    prev = None if dead.get("prev_eval") is None else dead["prev_eval"] - t_last
    # Right when the deadline fell between the previous judgement and this one.
    out.update(last_seq=m, silence=t - t_last, deadline=lo, prev_silence=prev, late_by=t - t_last - lo,
               on_time=t - t_last >= lo - STAMP_EPS_S and (prev is None or prev < lo + STAMP_EPS_S))
    if dead.get("last_seq") != m:
        out["label"] = f"unexplained: the detector's last heartbeat is {dead.get('last_seq')}, the log's {m}"
        return out
    for down, up in case.windows:
        if down < t and up > t_last:
            out.update(label="true: link down", fault_start_delay=t - down)
            return out
    if cs.final_send is not None and cs.final_send <= t - T:
        out["label"] = "true: chunkserver stopped"
        return out
    due = sorted((s, ts) for s, ts in cs.sends.items() if s > m and ts < t)
    late = [s for s, ts in due if cs.start is not None and ts - (cs.start + s * T) > T / 2]
    arrived = [s for s, _ in due if s in cs.analysis["copies"]]
    out["missing"] = [s for s, _ in due]
    if not due or late:
        out["label"] = "false: sender late"
    elif arrived:
        out["label"] = "false: delayed"
    elif dead["detector"] == FIXED and len(due) < case.k:
        out["label"] = f"unexplained: only {len(due)} heartbeats missing, k = {case.k}"
    else:
        out["label"] = "false: lost"
    return out


def deadline(case, dead):
    """The silence (s) after which the detector of ``dead`` must suspect: kT + grace,
    or where phi (with the mean and deviation it logged) reaches the threshold."""
    if dead["detector"] == FIXED:
        return case.k * case.interval + case.grace
    if dead["detector"] == PHI:
        return phi_silence(case.phi["threshold"], dead["phi_mean"], dead["phi_std"])
    return float("inf")


def replay(case, cs):
    """Both detectors replayed over ``cs``'s fresh arrivals as logged (pure
    objects, the server's parameters): per detector, the silences that must
    end in "dead" (``certain``), those within a stamp's precision of the
    deadline (``either``), and whether the silence after the last one must,
    may or must not (``trailing``: True / None / False) before the server
    ended. Compared with the live decisions (``live_interior``, ``live_trailing``)."""
    fresh, hi = [], -1
    for _, t, s in cs.recvs:
        if s > hi:
            fresh.append(t)
            hi = s
    end = (case.record.get("server") or {}).get("ended_at")
    out = {}
    for name in (FIXED, PHI):
        det = FixedTimeoutDetector(case.k, case.interval, case.grace) if name == FIXED else PhiAccrualDetector(
            threshold=case.phi["threshold"], max_sample_size=case.phi["max_sample_size"],
            min_std=case.phi["min_std"], acceptable_pause=case.phi["acceptable_pause"],
            first_estimate=case.phi["first_estimate"])
        certain = either = 0
        for j, t in enumerate(fresh):
            if j:
                if not det.is_available(t - STAMP_EPS_S):
                    certain += 1
                elif not det.is_available(t + STAMP_EPS_S):
                    either += 1
            det.heartbeat(t)
        trailing = None
        if fresh and end is not None:
            due = det.deadline()
            # the server judged everyone once more as it ended
            trailing = True if due < end - STAMP_EPS_S else (False if due > end + STAMP_EPS_S else None)
        states = [e for e in cs.states if e["detector"] == name]
        live_trailing = bool(states) and states[-1]["state"] == "dead"
        live_interior = sum(1 for e in states if e["state"] == "dead") - live_trailing
        ok = certain <= live_interior <= certain + either and trailing in (None, live_trailing)
        out[name] = {"ok": ok, "certain": certain, "either": either, "trailing": trailing,
                     "live_interior": live_interior, "live_trailing": live_trailing}
    return out


def exposure(cs, k):
    """Heartbeats a fixed-k detector spent alive, and its false "dead" episodes,
    replayed from the sequence numbers alone (a heartbeat counts if it arrived
    at all; loss-only links keep the order). From the first arrival to the
    last heartbeat sent: (trials, episodes)."""
    copies, sent = cs.analysis["copies"], sorted(cs.sends)
    if not copies or not sent:
        return 0, 0
    alive, miss, trials, episodes = True, 0, 0, 0
    for seq in range(min(copies) + 1, sent[-1] + 1):
        trials += alive
        if seq in copies:
            alive, miss = True, 0
        else:
            miss += 1
            if alive and miss >= k:
                alive, episodes = False, episodes + 1
    return trials, episodes


def labels(deaths, chunkserver=None, detector=None):
    """Counts of each label among ``deaths`` (optionally one chunkserver / detector)."""
    out = {}
    for d in deaths:
        if (chunkserver is None or d["chunkserver"] == chunkserver) and (detector is None or d["detector"] == detector):
            out[d["label"]] = out.get(d["label"], 0) + 1
    return out


def case_files(ev, case):
    """The files a case's verify read (for the evidence column)."""
    record = case["workload"] or {}
    names = [record.get("server_log", "server.jsonl")] + [c["log"] for c in (record.get("chunkservers") or {}).values()]
    return ", ".join(os.path.join(case["name"], n) for n in names)
