"""The MapReduce experiment's claims, from the results folder only.

Per case (``<case>: ...``): the job finished in time; its output equals the
reference word count; every TCP message was delivered exactly once and intact
(the captures at the receivers against the programs' event logs, where there
are any); every message follows the P4 table; heartbeats kept their interval;
no task was with two live workers at once; no task was lost. The fault cases
add: the worker was declared dead within the heartbeat rule's window, its task
ran again elsewhere, and (partitioned) its late messages changed nothing.
Every case: the programs exited by themselves after shutdown; SYN
retransmissions followed the 1 s doubling backoff. Then, over all cases: each
ran to its end, and every capture is complete.
"""

import os

from wirelab.apps.mapreduce.protocol import check_message
from wirelab.experiment import mapreduce_wire as wire
from wirelab.experiment.claims import Claim, Tally, capture_problems, required_or_not_exercised, window_claim
from wirelab.experiment.mapreduce_data import compare_output
from wirelab.experiment.mapreduce_rules import dead_window_s, heartbeat_gap_limit_s, syn_retransmission_window_ms
from wirelab.observe.messages import match_logged, read_event_log, rebuild

FAULTS = ("worker_killed", "partitioned")


class CaseEvidence:
    """One case's files, read once: the rebuilt messages, SYNs, event logs."""

    def __init__(self, ev, case):
        self.ev, self.case, self.name = ev, case, case["name"]
        self.s = case["args"]["settings"]
        self.rec = case["workload"] or {}
        cl = ev.run["cluster"]
        self.manager_ip, self.client_ip = cl["manager"], cl["client"]
        self.workers = dict(cl["workers"])
        self.T, self.k = self.s["heartbeat_interval"], self.s["missed_heartbeats"]
        self.ports = (self.s["manager_port"], self.s["worker_port"])
        self.t0 = self.rec.get("t0") or 0.0
        self.pcaps = {n: ev.path(self.name, f"{n}.pcap") for n in ["manager", *self.workers]}
        have = {n: p for n, p in self.pcaps.items() if os.path.exists(p)}
        self.missing = sorted(set(self.pcaps) - set(have))
        self.on_wire = {n: rebuild(p, ports=self.ports, allow_truncated=True) for n, p in have.items()}
        self.manager_view = self.on_wire.get("manager", [])
        self.story = wire.Story(self.manager_view, self.workers, self.manager_ip)
        ips = {"manager": self.manager_ip, **self.workers}
        # A message as delivered: from the capture at its receiver.
        self.delivered = [m for n, msgs in self.on_wire.items() for m in msgs if m.dst[0] == ips[n]]
        self.setups = {}
        for n, p in have.items():   # each connection from its initiator's capture
            for key, c in wire.connection_setups(p, self.ports).items():
                if key[0] == ips[n] or key not in self.setups:
                    self.setups[key] = c
        self.logs = {n: read_event_log(ev.path(self.name, rel)) for n, rel in self.rec.get("event_logs", {}).items()
                     if ev.exists(self.name, rel)}
        self.manager_events = _events(ev.path(self.name, self.rec["event_logs"]["manager"])) \
            if "manager" in self.logs else None
        self.fault = self.rec.get("fault")
        self.victim = self.fault["victim"] if self.fault else None

    def title(self, text):
        return f"{self.name}: {text}"

    def rel(self, t):
        return None if t is None else round(t - self.t0, 3)


def _events(path):
    from wirelab.apps.mapreduce.events import read_events
    return read_events(path)


def verify(ev):
    claims, tally = [], Tally()
    ev.metrics["cases"] = {}
    for case in ev.cases():
        c = CaseEvidence(ev, case)
        m = ev.metrics["cases"][c.name] = {}
        tally.check("ran", not case["error"], c.name, case["error"])
        tally.check("captures", not capture_problems(case["captures"]) and not c.missing
                    and len(case["captures"]) == 1 + len(c.workers), c.name,
                    capture_problems(case["captures"]) or f"missing {c.missing}")
        claims += case_claims(c, m)
    claims += [tally.claim("ran", "every case ran to its end (no error in case.json)", "case.json", "cases"),
               tally.claim("captures", "captures complete in every case (tcpdump dropped nothing, manager and "
                           "every worker)", "case.json captures; the pcaps", "cases")]
    return claims


def case_claims(c, m):
    out = [job_claim(c, m), output_claim(c, m)]
    delivery = delivery_claim(c, m)
    if delivery:
        out.append(delivery)
    out += [table_claim(c, m), heartbeat_claim(c, m), double_claim(c, m), lost_claim(c, m)]
    if c.name in FAULTS:
        out += [dead_claim(c, m), rerun_claim(c, m)]
    if c.name == "partitioned":
        out.append(late_claim(c, m))
    if c.name == "impaired":
        out.append(netem_claim(c, m))
    out += [exit_claim(c, m), syn_claim(c, m)]
    return out


# -- the job --------------------------------------------------------------------------
def job_claim(c, m):
    job = c.rec.get("job") or {}
    m["job"] = job
    m["messages"] = {k: v for k, v in sorted(_count_types(c.manager_view).items())}
    if job.get("done"):
        measured = {"seconds": job.get("seconds")}
    else:
        why = job.get("why") or "; ".join(c.rec.get("errors") or []) or (c.case["error"] or {}).get("message")
        measured = {"why": why,
                    "diagnosis": wire.stall_reason(c.story, c.rec.get("programs") or {}, c.t0, c.s["nmappers"],
                                                   c.s["nreducers"], job.get("t_end")),
                    "last messages": wire.last_messages(c.manager_view, c.t0, before=job.get("t_end"))}
    return Claim(c.title("the job finished within its deadline"), bool(job.get("done")), measured=measured,
                 expected=f"complete output <= {c.s['deadline_s']:g} s after submit",
                 tolerance="deadline derived from the job's size and the case (mapreduce_rules.job_deadline_s)",
                 evidence="case.json workload.job; manager.pcap (diagnosis)")


def output_claim(c, m):
    r = compare_output(c.ev.path("input"), c.ev.path(c.name, "output"))
    m["output"] = r
    measured = {"lines": r.get("lines"), "sha256": (r.get("sha256") or "")[:16]} if r["ok"] else \
        {k: r[k] for k in ("why", "lines", "first_difference") if k in r}
    return Claim(c.title("output == the reference word count (all part files, sorted by word; byte-identical)"),
                 r["ok"], measured=measured,
                 expected={"lines": r["reference_lines"], "sha256": r["reference_sha256"][:16]}, tolerance=0,
                 evidence="output/part-*; reference computed from input/ in Python")


def _count_types(messages):
    out = {}
    for msg in messages:
        kind = msg.message.get("message_type") if isinstance(msg.message, dict) else "(unreadable)"
        out[kind] = out.get(kind, 0) + 1
    return out


# -- messages ---------------------------------------------------------------------------
def delivery_claim(c, m):
    """Rebuilt TCP messages (at their receivers) == the event logs, for every
    message with at least one end that writes a log: against both logs where
    the receiver writes one, against the sender's where only it does."""
    if not c.logs:
        return None
    ips = {"manager": c.manager_ip, "submit": c.client_ip, "shutdown": c.client_ip, **c.workers}
    logging = {ips.get(name) for name in c.logs}
    tcp = [x for x in c.delivered if x.transport == "tcp"]
    events = [e for log in c.logs.values() for e in log if e.get("transport") == "tcp"]
    both = match_logged([x for x in tcp if x.dst[0] in logging],
                        [e for e in events if e["dst"][0] in logging])
    sender = match_logged([x for x in tcp if x.dst[0] not in logging and x.src[0] in logging],
                          [e for e in events if e["dst"][0] not in logging and e.get("event") == "send"])
    r = {k: both[k] + sender[k] for k in ("matched", "missing_on_wire", "extra_on_wire", "duplicates",
                                         "not_received", "unreadable_on_wire")}
    r["ok"] = both["ok"] and sender["ok"]
    r["counts"] = {k: both["counts"][k] + sender["counts"][k] for k in both["counts"]}
    m["delivery"] = r["counts"]
    bad = {k: [_short(x) for x in r[k][:3]] for k in ("missing_on_wire", "extra_on_wire", "duplicates",
                                                       "not_received", "unreadable_on_wire") if r[k]}
    return Claim(c.title("every TCP message delivered exactly once and intact: captures at the receivers == "
                         "the programs' send and recv logs"), r["ok"] and r["counts"]["matched"] > 0,
                 measured={"matched": r["counts"]["matched"], **bad},
                 expected="all matched; none missing, extra, duplicated or unreadable", tolerance=0,
                 evidence="manager.pcap and w*.pcap (receiver side) rebuilt; events/*.jsonl")


def _short(x):
    msg = x.get("message") or {}
    return f"{x.get('src')}->{x.get('dst')} {msg.get('message_type') if isinstance(msg, dict) else x.get('error')}"


def table_claim(c, m):
    roles = {c.manager_ip: "manager", **{ip: "worker" for ip in c.workers.values()}, c.client_ip: "submitter"}
    errors, warnings, n = [], set(), 0
    for x in c.manager_view:
        n += 1
        if x.message is None:
            errors.append(f"+{x.t - c.t0:.2f}s {x.src[0]}->{x.dst[0]}: {x.error}")
            continue
        errs, warns = check_message(x.message, transport=x.transport, receiver=roles.get(x.dst[0]))
        errors += [f"+{x.t - c.t0:.2f}s {x.src[0]}->{x.dst[0]}: {e}" for e in errs]
        warnings.update(warns)
    m["table"] = {"messages": n, "errors": len(errors), "warnings": sorted(warnings)}
    return Claim(c.title("every message on the wire follows the P4 message table"), n > 0 and not errors,
                 measured={"messages": n, "errors": errors[:4], "warnings (unknown fields)": sorted(warnings)[:4]}
                 if errors or warnings else {"messages": n},
                 expected="required fields with their types, right transport and receiver; unknown fields: a warning",
                 tolerance=0, evidence="manager.pcap rebuilt; wirelab.apps.mapreduce.protocol.check_message")


def heartbeat_claim(c, m):
    impaired = c.name == "impaired"
    limit = heartbeat_gap_limit_s(c.T, c.k, impaired)
    end_all = c.rec.get("shutdown", {}).get("t") or (c.rec.get("job") or {}).get("t_end") or c.t0
    bad, per = [], {}
    for name in c.workers:
        start = c.story.acks.get(name)
        if start is None:
            bad.append(f"{name}: never acknowledged (register_ack)")
            continue
        end = c.story.shutdowns.get(name, end_all)
        if name == c.victim:
            end = c.fault.get("t") or c.fault.get("t_down") or end
        g = per[name] = wire.heartbeat_gaps(c.story, name, start, end)
        if not g["heartbeats"]:
            bad.append(f"{name}: no heartbeat in {end - start:.2f} s after its acknowledgement")
        elif g["max_gap_s"] > limit:
            bad.append(f"{name}: {g['max_gap_s']:.3f} s without one, {g['after_s']:.2f} s after its ack")
    m["heartbeats"] = per
    return Claim(c.title(f"every worker was acknowledged and its heartbeats reached the manager at most "
                         f"{limit:.2f} s apart while it lived"), not bad,
                 measured=bad or {n: g["max_gap_s"] for n, g in per.items()},
                 expected=f"max gap <= {limit:.2f} s", tolerance=(
                     f"k*T = {c.k}x{c.T:g} s: netem loses some; {c.k} in a row would make a death" if impaired
                     else f"T = {c.T:g} s, late by less than one more interval (no heartbeat missed)"),
                 evidence="manager.pcap: register_ack, then UDP heartbeats to the manager's port")


def double_claim(c, m):
    refused = wire.refused_connections(c.setups, c.workers)
    found = wire.double_assignments(c.story, c.T, c.k, refused)
    from_log = _log_double(c.manager_events) if c.manager_events is not None else None
    m["double_assignment"] = {"wire": found, "log": from_log}
    ok = not found and not from_log
    return Claim(c.title("no task was ever with two live workers at once"), ok and bool(c.story.assignments),
                 measured={"wire": found[:3] or ("none" if c.story.assignments else
                                                 "no task was ever assigned: nothing to check"),
                           **({"log": from_log[:3] or "none"}
                                                             if from_log is not None else {}),
                           "assignments": len(c.story.assignments)},
                 expected="a task goes to another worker only after its holder finished it or was dead by the rule",
                 tolerance=f"alive = a heartbeat within k*T = {c.k * c.T:g} s and no refused connection since",
                 evidence="manager.pcap (task messages, finished, heartbeats, RSTs)"
                          + ("; events/manager.jsonl (task_assigned, worker_dead, task_finished)"
                             if from_log is not None else ""))


def _log_double(events):
    holder, out = {}, []
    for e in events:
        key = (e.get("job_id"), e.get("kind"), e.get("task_id"))
        if e.get("event") == "task_assigned":
            if holder.get(key) not in (None, e.get("worker")):
                out.append(f"{e.get('kind')} {e.get('task_id')}: to {e.get('worker')} while {holder[key]} held it")
            holder[key] = e.get("worker")
        elif e.get("event") == "task_finished" and holder.get(key) == e.get("worker"):
            holder[key] = None
        elif e.get("event") == "worker_dead":
            for k, w in holder.items():
                if w == e.get("worker"):
                    holder[k] = None
    return out


def lost_claim(c, m):
    lost = wire.lost_tasks(c.story, c.s["nmappers"], c.s["nreducers"])
    counted = None
    if c.manager_events is not None:
        counted = {}
        for e in c.manager_events:
            if e.get("event") == "task_finished":
                key = f"{e.get('kind')} {e.get('task_id')}"
                counted[key] = counted.get(key, 0) + 1
    twice = [k for k, v in (counted or {}).items() if v != 1]
    m["tasks"] = {"lost": lost, "finished_counted": counted}
    return Claim(c.title(f"every task ({c.s['nmappers']} map, {c.s['nreducers']} reduce) reported finished, "
                         "none lost" + (", each counted once by the manager" if counted is not None else "")),
                 not lost and not twice, measured={"lost": lost or "none", **({"counted twice": twice}
                                                                              if twice else {})},
                 expected="a finished on the wire for every task, from a worker it was sent to", tolerance=0,
                 evidence="manager.pcap" + ("; events/manager.jsonl task_finished" if counted is not None else ""))


# -- faults --------------------------------------------------------------------------------
def _fault_t(c):
    return c.fault.get("t") or c.fault.get("t_down") if c.fault else None


def dead_claim(c, m):
    lo, hi = dead_window_s(c.T, c.k)
    title = c.title(f"the lost worker was declared dead {lo:.2f}-{hi:.2f} s after its last heartbeat on the wire")
    if not c.fault:
        return Claim(title, False, measured="no fault injected: " + "; ".join(c.rec.get("errors") or ["?"]),
                     evidence="case.json workload.fault")
    victim, t_fault = c.victim, _fault_t(c)
    hbs = c.story.heartbeats.get(victim, [])
    if c.manager_events is not None:
        ip = c.workers[victim]
        deaths = [e for e in c.manager_events if e.get("event") == "worker_dead"
                  and (e.get("worker") or [None])[0] == ip and e.get("t", 0) >= t_fault - c.k * c.T]
        d = deaths[0] if deaths else None
        last = wire.last_before(hbs, d["t"]) if d else None
        value = round(d["t"] - last, 4) if d and last is not None else None
        m["death"] = {"victim": victim, "declared_t": c.rel(d["t"]) if d else None, "reason": d and d.get("reason"),
                      "last_heartbeat_t": c.rel(last), "after_s": value}
        if d and d.get("reason") == "send failed" and d["t"] >= t_fault:
            return Claim(title, True, measured={**m["death"], "note": "a connection to it failed first"},
                         expected="dead by the heartbeat rule, or at once when a send to it fails",
                         evidence="events/manager.jsonl worker_dead")
        return window_claim(title, value, (lo, hi), f"k*T = {c.k}x{c.T:g} s",
                            f"k*T - capture resolution .. k*T + one check period T + {hi - c.k * c.T - c.T:.2f} s "
                            f"scheduling", "manager.pcap (last heartbeat); events/manager.jsonl worker_dead",
                            unit="s", fmt=".3f")
    # Your manager writes no log: its decision shows when the task moves.
    moved = [a for a in c.story.assignments if a["worker"] != victim and a["t"] > t_fault - c.k * c.T
             and (a["kind"], a["task_id"]) == (c.fault["task"]["kind"], c.fault["task"]["task_id"])]
    last = wire.last_before(hbs, moved[0]["t"]) if moved else None
    value = round(moved[0]["t"] - last, 4) if moved and last is not None else None
    m["death"] = {"victim": victim, "task_moved_t": c.rel(moved[0]["t"]) if moved else None,
                  "last_heartbeat_t": c.rel(last), "after_s": value}
    return window_claim(c.title(f"the lost worker's task moved no sooner than {lo:.2f} s after its last heartbeat"),
                        value, (lo, c.s["deadline_s"]), f">= k*T = {c.k}x{c.T:g} s",
                        "no event log: the death shows only when the task moves, which may wait for a free worker",
                        "manager.pcap (last heartbeat, the task message to another worker)", unit="s")


def rerun_claim(c, m):
    title = c.title("the lost worker's task ran again on another worker (or, back from a partition, "
                    "its late result counted once)")
    if not c.fault:
        return Claim(title, False, measured="no fault injected", evidence="case.json workload.fault")
    task, victim, t_fault = c.fault["task"], c.victim, _fault_t(c)
    key = (task["kind"], task["task_id"])
    again = [a for a in c.story.assignments if (a["kind"], a["task_id"]) == key and a["worker"] != victim
             and a["t"] > t_fault]
    done = [f for f in c.story.finished if (f["kind"], f["task_id"]) == key and f["worker"] != victim
            and any(f["worker"] == a["worker"] and f["t"] > a["t"] for a in again)]
    late_ok = False
    if c.name == "partitioned" and not again and c.manager_events is not None:
        late_ok = any(e.get("event") == "task_finished" and e.get("late") and (e.get("kind"), e.get("task_id")) == key
                      for e in c.manager_events)
    m["rerun"] = {"task": f"{key[0]} {key[1]}", "reassigned_to": [a["worker"] for a in again],
                  "finished_by": [f["worker"] for f in done], "late_result_counted": late_ok}
    return Claim(title, bool(again and done) or late_ok, measured=m["rerun"],
                 expected=f"{key[0]} task {key[1]}: sent to another worker after the fault, finished there",
                 evidence="manager.pcap" + ("; events/manager.jsonl" if c.manager_events is not None else ""))


def late_claim(c, m):
    f = c.fault or {}
    up = f.get("t_up")
    beats = [h for h in c.story.heartbeats.get(c.victim, [])] if c.victim else []
    back = up is not None and (any(h > up for h in beats) or bool(f.get("late_finished_t")))
    mgr = (c.rec.get("programs") or {}).get("manager") or {}
    survived = mgr.get("returncode") == 0 and mgr.get("stopped_by") is None
    ignored = [e.get("reason") for e in (c.manager_events or []) if e.get("event") == "late_finished_ignored"]
    figures = {"down_s": round(up - f["t_down"], 3) if up else None,
               "heartbeats_after_heal": sum(1 for h in beats if up and h > up),
               "late_finished_t": [c.rel(t) for t in f.get("late_finished_t", [])],
               "manager": f"exit {mgr.get('returncode')}" + (f" (stopped by {mgr['stopped_by']})"
                                                             if mgr.get("stopped_by") else ""),
               **({"late_finished_ignored": ignored} if c.manager_events is not None else {})}
    m["late"] = figures
    bundled_worker = bool(c.ev.run.get("bundled", {}).get("worker"))
    return required_or_not_exercised(
        c.title("back from the partition, the worker's late heartbeats and finished changed nothing: the manager "
                "kept going and exited 0 on shutdown"),
        happened=back, ok_if_happened=survived, p_miss=0.0 if bundled_worker else None, figures=figures,
        expected="late messages ignored or counted once; no crash; no task twice (claims above)",
        missing=None if up else "the partition was not made", missed="the worker never came back",
        why="the bundled worker retries its finished and beats on" if bundled_worker else "",
        evidence="manager.pcap after the heal; case.json programs; events/manager.jsonl")


def netem_claim(c, m):
    handles = c.case.get("netem") or []
    err = c.case.get("error") or {}
    ok = bool(handles) and err.get("stage") != "netem" and all(h.get("readback") for h in handles)
    m["netem"] = [{"where": f"{h.get('node')}:{h.get('intf')}", "spec": h.get("text"), "counters": h.get("counters")}
                  for h in handles]
    return Claim(c.title(f"netem on every bridge port ({len(handles)}): the kernel held the asked impairment"), ok,
                 measured=[x["where"] for x in m["netem"]] if ok else err or "no netem handle",
                 expected=handles[0].get("text") if handles else "netem on each port",
                 evidence="case.json netem (tc read back, counters)")


def exit_claim(c, m):
    progs = c.rec.get("programs") or {}
    bad, untold = [], {}
    shutdown_t = (c.rec.get("shutdown") or {}).get("t") or c.t0
    declared = {tuple(e["worker"])[0] for e in c.manager_events or [] if e.get("event") == "worker_dead"}
    for name in c.workers:
        # A worker the manager counts dead is never told to shut down (P4): the
        # experiment stops it. Dead by its log, or by the rule on the wire.
        dead = c.workers[name] in declared or wire.dead_by_rule(c.story, name, c.T, c.k, shutdown_t)
        if name != c.victim and dead and name not in c.story.shutdowns and name in progs:
            untold[name] = "dead to the manager, not told to shut down"
    m["untold"] = untold
    for name, p in progs.items():
        if name == c.victim or name in untold:
            continue
        if p.get("stopped_by") or p.get("returncode") != 0:
            bad.append(f"{name}: exit {p.get('returncode')}" + (f", stopped by {p['stopped_by']}"
                                                                if p.get("stopped_by") else "")
                       + (f": {p['stderr_tail'].strip().splitlines()[-1][:120]}" if p.get("stderr_tail", "").strip()
                          and p.get("returncode") else ""))
    left = c.rec.get("leftover_processes") or {}
    if left:
        bad.append(f"left running after the kill: {left}")
    if not progs:
        bad.append("no program record")
    return Claim(c.title("every program exited 0 by itself after shutdown (the lost worker aside); none left"),
                 not bad, measured=bad or {"exited": sorted(n for n in progs if n != c.victim and n not in untold),
                                           **({"stopped": untold} if untold else {})},
                 expected="exit 0, not stopped by the experiment", tolerance=0,
                 evidence="case.json workload.programs (exit codes, who stopped what); logs/")


def syn_claim(c, m):
    linear = c.ev.run.get("tcp_syn_linear_timeouts") or {}
    by_ip = {ip: n for n, ip in {"manager": c.manager_ip, **c.workers}.items()}
    retrans = wire.syn_retransmissions(c.setups)
    outside = []
    for ip, n, gap in retrans:
        lo, hi = syn_retransmission_window_ms(n, linear.get(by_ip.get(ip), 0))
        if not lo <= gap <= hi:
            outside.append(f"retransmission {n} after {gap:.1f} ms (window {lo:.0f}-{hi:.0f})")
    splits = wire.latency_split(c.delivered, c.setups)
    m["latency"] = {"messages": len(splits), "syn_retransmissions": len(retrans),
                    "max_setup_s": max((x["setup_s"] for x in splits if x["setup_s"] is not None), default=None),
                    "max_data_s": max((x["data_s"] for x in splits), default=None),
                    "retransmitted_segments": sum(x["retransmitted_segments"] or 0 for x in splits)}
    return required_or_not_exercised(
        c.title("SYN retransmissions came 1 s apart, then doubling (TCP_TIMEOUT_INIT; the first "
                f"{max(linear.values(), default=0)} linear: tcp_syn_linear_timeouts)"),
        happened=bool(retrans), ok_if_happened=not outside, p_miss=None,
        figures={"retransmitted SYNs": len(retrans), **({"outside": outside[:3]} if outside else {})},
        expected="n-th after 2^max(0, n-1-linear) s", why="a jiffy early .. 1/8 (timer wheel) + 10 ms late",
        evidence="the initiator's capture (manager.pcap, w*.pcap): SYN times; run.json tcp_syn_linear_timeouts",
        missed="no SYN was retransmitted")
