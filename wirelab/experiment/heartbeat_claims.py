"""The ``heartbeats`` experiment's claims, from a results folder only.

Each case kind has its claims, their titles fixed in :data:`TITLES` so that a
case whose evidence is missing or broken still states every one of them,
failed, with the reason. Parameters come from ``params.json``, netem from each
``case.json`` (as the kernel was asked), everything else from the logs the
programs wrote (:mod:`wirelab.experiment.heartbeat_evidence`) and the capture
at the main server (:mod:`wirelab.observe.messages`).
"""

import math

from wirelab.apps.detectors import FIXED, PHI
from wirelab.apps.gfs import protocol
from wirelab.experiment import stats
from wirelab.experiment.claims import FALSE_ALARM_BUDGET, Claim, rate_claim
from wirelab.experiment.heartbeat_evidence import (STAMP_EPS_S, WAKEUP_SLACK_S, case_files, exposure, labels,
                                                    load_case, replay)
from wirelab.experiment.heartbeat_model import heartbeat_outcomes, phi_floor_silence, trials_to_false_dead

TITLES = {
    "sweep": {
        "loss": "sweep: heartbeats lost at the application match netem's loss on every link",
        "clean": "sweep: no heartbeat duplicated or reordered where netem only drops",
        "theory": "sweep: fixed-k's false 'dead' count matches the mean time T(1-p^k)/((1-p)p^k)",
    },
    "impaired": {
        "duplicate": "impaired: duplicated heartbeats match netem's duplicate",
        "reorder": "impaired: reordered heartbeats match netem's reorder behind a delay",
        "clean": "impaired: no heartbeat lost, none duplicated or reordered where netem does not do it",
        "jitter": "impaired: phi accrual never suspected the jittered chunkserver (fixed-k did, or not)",
    },
    "partition": {
        "fixed": "partition: fixed-k declared the cut chunkserver dead once, at the first check after kT + T/2 "
                 "of silence, within (k+1)T of the cut",
        "phi": "partition: phi accrual declared it dead once, at the first check after phi reached the threshold",
        "alive": "partition: both detectors declared it alive on the first heartbeat after the heal, the first "
                 "one sent after it",
        "lost": "partition: exactly the heartbeats sent while the link was down never arrived",
        "control": "partition: the other chunkserver was never suspected while it ran",
    },
    "tcp_vs_udp": {
        "tcp": "tcp_vs_udp: every TCP heartbeat arrived whole, once, in order",
        "lost": "tcp_vs_udp: UDP heartbeats lost as netem's loss and duplicate predict",
        "duplicated": "tcp_vs_udp: UDP heartbeats duplicated as netem predicts",
        "reordered": "tcp_vs_udp: UDP heartbeats reordered as netem's reorder behind a delay predicts",
        "copes": "tcp_vs_udp: the server recognised every duplicate and overtaken heartbeat (fed "
                 "neither detector)",
    },
}
COMMON = {
    "labelled": "{case}: every 'dead' decision is labelled against the injected faults",
    "on_time": "{case}: every 'dead' decision came at the first check after its detector's deadline, never before",
    "replay": "{case}: both detectors' decisions equal their rules replayed over the logged arrivals",
    "capture": "{case}: the server's log and the capture at its interface agree, datagram for datagram",
}


def titles(kind, case):
    return {**TITLES[kind], **{k: v.format(case=case) for k, v in COMMON.items()}}


def case_claims(ev, case, params):
    """The claims of one case (its kind is its name); all of them, failed with
    the reason, when its evidence cannot be read."""
    kind = case["name"]
    builder = {"sweep": sweep, "impaired": impaired, "partition": partition, "tcp_vs_udp": tcp_vs_udp}[kind]
    names = titles(kind, kind)
    try:
        err = case.get("error") or {}
        if err or (case["workload"] or {}).get("failure"):
            raise ValueError(err.get("message") or case["workload"]["failure"])
        cd = load_case(ev, case)
        found = builder(cd, params, ev)
        found.update(common(ev, case, cd))
        ev.metrics.setdefault("cases", {})[kind] = figures(cd)
        return [found[k] if k in found else Claim(t, False, measured="not stated") for k, t in names.items()]
    except (KeyError, TypeError, ValueError, OSError) as exc:
        why = f"{kind}: evidence missing or broken: {type(exc).__name__}: {exc}"
        return [Claim(t, False, measured=why, evidence=f"{kind}/case.json") for t in names.values()]


def figures(cd):
    out = {}
    for name, cs in cd.chunkservers.items():
        a = cs.analysis
        out[name] = {"node": cs.node, "transport": cs.transport, "netem": cd.netem.get(cs.node),
                     "sent": a["sent"], "received": a["received"], "lost": a["lost"],
                     "duplicates": a["duplicates"], "reordered": a["reordered"],
                     "loss_runs": a["loss_runs"], "lateness_ms": (cs.summary or {}).get("lateness_ms"),
                     "deaths": {d: labels(cd.deaths, name, d) for d in (FIXED, PHI)},
                     "latency_ms": latency(cs)}
    return out


def latency(cs):
    """One-way delay (receive - send, ms) of each heartbeat's first arrival: percentiles."""
    firsts = {}
    for _, t, seq in cs.recvs:
        firsts.setdefault(seq, t)
    d = sorted(1000 * (t - cs.sends[s]) for s, t in firsts.items() if s in cs.sends)
    if not d:
        return None
    q = lambda f: round(d[min(len(d) - 1, int(f * (len(d) - 1)))], 3)  # noqa: E731
    return {"n": len(d), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(d[-1], 3)}


def common(ev, case, cd):
    """Claims every case makes: labels, deadlines, the capture."""
    name, out = cd.name, {}
    bad = [d for d in cd.deaths if not d["label"] or d["label"].startswith("unexplained")]
    measured = {det: labels(cd.deaths, detector=det) for det in (FIXED, PHI)}
    out["labelled"] = Claim(
        COMMON["labelled"].format(case=name), not bad,
        measured=measured if not bad else {"unexplained": [[d["chunkserver"], d["detector"], d["label"]] for d in bad[:3]],
                                           **measured},
        expected="100% labelled: true (link down, stopped) or false (lost, delayed, sender late)",
        tolerance="none", evidence=case_files(ev, case))
    late = [d for d in cd.deaths if "on_time" in d and not d["on_time"]]
    timed = [d for d in cd.deaths if "on_time" in d]
    worst = max((d["late_by"] for d in timed), default=None)
    out["on_time"] = Claim(
        COMMON["on_time"].format(case=name), not late,
        measured={"decisions": len(timed),
                  "wrong": [[d["chunkserver"], d["detector"], round(d["prev_silence"] or 0, 4), round(d["silence"], 4),
                             round(d["deadline"], 4)] for d in late[:3]],
                  "latest after its deadline (ms)": None if worst is None else round(1000 * worst, 2)}
        if timed else "no decision in this run: nothing to check",
        expected="silence at the previous check < deadline <= silence at the decision; deadline: fixed_k kT + T/2, "
                 "phi where phi(mean, std logged) = threshold",
        tolerance=f"{1000 * STAMP_EPS_S:g} ms (the log's time stamps)",
        evidence=f"{name}/server.jsonl state events (silence, prev_eval, phi_mean, phi_std)")
    replays = {cs.name: replay(cd, cs) for cs in cd.chunkservers.values()}
    bad = {n: {d: r for d, r in v.items() if not r["ok"]} for n, v in replays.items()}
    bad = {n: v for n, v in bad.items() if v}
    out["replay"] = Claim(
        COMMON["replay"].format(case=name), bool(replays) and not bad,
        measured=bad or {n: {d: f"{r['live_interior']} + {int(r['live_trailing'])} at the end" for d, r in v.items()}
                         for n, v in replays.items()},
        expected="dead once per silence past the deadline (+1 if the last one outlasted the server)",
        tolerance=f"a silence within {1000 * STAMP_EPS_S:g} ms of its deadline may go either way",
        evidence=f"{name}/server.jsonl recv (fresh arrivals) and state events; wirelab.apps.detectors replayed")
    out["capture"] = capture_claim(ev, case, cd)
    return out


def rates(cs, spec, interval_ms):
    """(model, measured) for lost / duplicated / reordered of one chunkserver's link."""
    spec = spec or {}
    model = heartbeat_outcomes(spec.get("loss", 0) / 100, spec.get("duplicate", 0) / 100,
                               spec.get("reorder", 0) / 100, spec.get("delay", 0), interval_ms)
    a, sent = cs.analysis, sorted(cs.sends)
    m = model["overtakers"]
    # The last m heartbeats have fewer successors that could overtake them.
    trials = [s for s in sent[:len(sent) - m]] if m else sent
    reordered = sum(1 for s in a["reordered_seqs"] if s in set(trials))
    twice = sum(1 for n in a["copies"].values() if n >= 2)
    return model, {"lost": (a["lost"], len(sent)), "duplicated": (twice, len(sent)),
                   "reordered": (reordered, len(trials))}


def combined(title, parts, evidence, tolerance="99.99% Wilson per link; 0 % exactly"):
    """One claim over several links: holds when every part does."""
    return Claim(title, bool(parts) and all(c.ok for c in parts.values()),
                 measured={k: c.measured for k, c in parts.items()},
                 expected={k: c.expected for k, c in parts.items()}, tolerance=tolerance, evidence=evidence)


def sweep(cd, p, ev):
    out, T, k = {}, cd.interval, cd.k
    loss, clean, theory, fig = {}, {}, {}, []
    for name, cs in cd.chunkservers.items():
        spec = cd.netem.get(cs.node) or {}
        pl = spec.get("loss", 0) / 100
        label = f"{name} {100 * pl:g}%"
        loss[label], _ = rate_claim(label, cs.analysis["lost"], len(cs.sends), pl, "")
        a = cs.analysis
        clean[label] = a["duplicates"] == 0 and a["reordered"] == 0 and not a["unexpected"]
        trials, episodes = exposure(cs, k)
        fp = labels(cd.deaths, name, FIXED).get("false: lost", 0)
        expect = 0.0 if pl == 0 else trials / trials_to_false_dead(pl, k)
        lo, hi = stats.poisson_interval(fp)
        mttf = math.inf if pl == 0 else T * trials_to_false_dead(pl, k)
        theory[label] = {"ok": fp == 0 if pl == 0 else lo <= expect <= hi,
                         "measured": f"{fp} false dead in {trials * T:.1f} s alive"
                                     + (f": MTTF {trials * T / fp:.2f} s" if fp else ""),
                         "expected": f"MTTF {mttf:.2f} s: {expect:.2f} expected" if pl else "none (no loss)",
                         "interval": [round(lo, 2), round(hi, 2)]}
        fig.append({"chunkserver": name, "loss": pl, "trials": trials, "alive_s": trials * T,
                    "fixed_false_lost": fp, "episodes_from_seq": episodes, "expected": expect,
                    "poisson_99.99": [lo, hi], "mttf_theory_s": None if pl == 0 else mttf,
                    "mttf_measured_s": trials * T / fp if fp else None,
                    "phi_false": sum(v for lab, v in labels(cd.deaths, name, PHI).items() if lab.startswith("false")),
                    "fixed_false": sum(v for lab, v in labels(cd.deaths, name, FIXED).items() if lab.startswith("false"))})
    ev.metrics["sweep_points"] = fig
    ev.save("sweep/points.json", fig)
    files = "sweep/*.jsonl; netem from sweep/case.json"
    out["loss"] = combined(TITLES["sweep"]["loss"], loss, files)
    out["clean"] = Claim(TITLES["sweep"]["clean"], bool(clean) and all(clean.values()), measured=clean,
                         expected="0 duplicates, 0 reordered on every link", tolerance="none: 0 exactly",
                         evidence=files)
    out["theory"] = Claim(TITLES["sweep"]["theory"], bool(theory) and all(v["ok"] for v in theory.values()),
                          measured={k_: v["measured"] for k_, v in theory.items()},
                          expected={k_: v["expected"] for k_, v in theory.items()},
                          tolerance={k_: f"99.99% exact Poisson on the count: {v['interval']}"
                                     for k_, v in theory.items()},
                          evidence=f"sweep/points.json; k={k}, T={1000 * T:g} ms, independent loss")
    return out


def _rate(label, kind, cs, spec, interval_ms):
    model, measured = rates(cs, spec, interval_ms)
    k_, n = measured[kind]
    return rate_claim(label, k_, n, model[kind], "")[0]


def impaired(cd, p, ev):
    out, T = {}, cd.interval
    # Each link's role from what netem was asked to do on it (case.json).
    def role(key):
        return next((cs for cs in cd.chunkservers.values() if (cd.netem.get(cs.node) or {}).get(key)), None)
    files = "impaired/*.jsonl; netem from impaired/case.json"
    dup, reo, jit = role("duplicate"), role("reorder"), role("jitter")
    ms = 1000 * T
    if dup:
        c = _rate(f"{dup.name}", "duplicated", dup, cd.netem.get(dup.node), ms)
        out["duplicate"] = Claim(TITLES["impaired"]["duplicate"], c.ok, c.measured, c.expected, c.tolerance, files)
    if reo:
        c = _rate(f"{reo.name}", "reordered", reo, cd.netem.get(reo.node), ms)
        out["reorder"] = Claim(TITLES["impaired"]["reorder"], c.ok, c.measured,
                               f"{c.expected} = (1-r)(1-(1-r)^m), m = ceil(delay/T)-1", c.tolerance, files)
    zero = {}
    for role, cs in (("duplicate", dup), ("reorder", reo), ("jitter", jit)):
        if cs:
            a = cs.analysis
            zero[cs.name] = {"lost": a["lost"], "duplicates": a["duplicates"] if role != "duplicate" else "-",
                             "reordered": a["reordered"] if role not in ("reorder", "jitter") else "-"}
    out["clean"] = Claim(TITLES["impaired"]["clean"], bool(zero) and all(v == 0 or v == "-" for z in zero.values()
                                                                         for v in z.values()),
                         measured=zero, expected="0 where netem does not do it ('-': it does)", tolerance="none",
                         evidence=files)
    if jit:
        spec = cd.netem.get(jit.node) or {}
        longest = T + 2 * spec.get("jitter", 0) / 1000 + 2 * WAKEUP_SLACK_S + cd.tick
        floor = phi_floor_silence(cd.phi["threshold"], cd.phi["min_std"], cd.phi["acceptable_pause"])
        phi_bad = {lab: n for lab, n in labels(cd.deaths, jit.name, PHI).items() if lab != "true: chunkserver stopped"}
        fixed = {lab: n for lab, n in labels(cd.deaths, jit.name, FIXED).items() if lab != "true: chunkserver stopped"}
        out["jitter"] = Claim(
            TITLES["impaired"]["jitter"], longest < floor and not phi_bad,
            measured={"phi": phi_bad or 0, "fixed_k": fixed or 0},
            expected="phi: 0 (its least threshold silence exceeds the longest possible one)",
            tolerance=f"longest silence T + 2*jitter + 2 wake-ups + a tick = {1000 * longest:.0f} ms < "
                      f"phi's least {1000 * floor:.0f} ms (min std {1000 * cd.phi['min_std']:g} ms, "
                      f"pause {1000 * cd.phi['acceptable_pause']:g} ms)",
            evidence=files)
    return out


def partition(cd, p, ev):
    out, T, k = {}, cd.interval, cd.k
    fault = cd.record.get("fault")
    if not fault:
        raise ValueError("no fault window recorded")
    cut = cd.chunkservers[fault["chunkserver"]]
    down, up = fault["down"], fault["up"]
    files = "partition/server.jsonl; fault window in partition/case.json"
    for det, key in ((FIXED, "fixed"), (PHI, "phi")):
        found = [d for d in cd.deaths if d["chunkserver"] == cut.name and d["detector"] == det
                 and d["label"] == "true: link down"]
        first = found[0] if found else None
        bound = (k + 1) * T if det == FIXED else None
        ok = first is not None and first["on_time"] and len(found) == 1 and (
            bound is None or first["t"] - down[0] <= bound)
        out[key] = Claim(
            TITLES["partition"][key], ok,
            measured={"after its last heartbeat (ms)": round(1000 * first["silence"], 2),
                      "previous check (ms)": None if first["prev_silence"] is None
                      else round(1000 * first["prev_silence"], 2),
                      "after the cut (ms)": round(1000 * (first["t"] - down[0]), 2), "decisions": len(found)}
            if first else "never declared dead during the cut",
            expected=(f"deadline {1000 * first['deadline']:.1f} ms after the last heartbeat, between the two checks"
                      if first else "one decision") + (f"; <= {1000 * bound:.0f} ms after the cut" if bound else ""),
            tolerance=f"{1000 * STAMP_EPS_S:g} ms (time stamps)", evidence=files)
    # The first heartbeat to arrive after the heal must be the first one sent
    # after it, and both verdicts turn at exactly that arrival (log order).
    first_back = next(((i, t, s) for i, t, s in cut.recvs if t > up[0]), None)
    first_sent = min((s for s, t in cut.sends.items() if t >= up[0]), default=None)
    alive = {}
    for det in (FIXED, PHI):
        turn = next((e for e in cut.states if e["detector"] == det and e["t"] >= down[0] and e["state"] == "alive"),
                    None)
        alive[det] = None if not (turn and first_back) else {
            "right after that heartbeat in the log": turn["index"] in (first_back[0] + 1, first_back[0] + 2),
            "cause": turn["cause"]}
    ok = first_back is not None and first_back[2] == first_sent and all(
        v and v["right after that heartbeat in the log"] and v["cause"] == "arrival" for v in alive.values())
    out["alive"] = Claim(
        TITLES["partition"]["alive"], ok,
        measured={"first to arrive after the heal": None if not first_back else
                  {"seq": first_back[2], "ms after the heal": round(1000 * (first_back[1] - up[1]), 2)},
                  "alive": alive},
        expected={"first to arrive": f"seq {first_sent}, the first sent after the heal", "alive": "at its arrival"},
        tolerance="none: log order", evidence=files)
    lost = set(cut.analysis["lost_seqs"])
    surely = {s for s, t in cut.sends.items() if down[1] <= t <= up[0]}
    maybe = {s for s, t in cut.sends.items() if down[0] <= t <= up[1]}
    out["lost"] = Claim(
        TITLES["partition"]["lost"], surely <= lost <= maybe and bool(surely),
        measured={"lost": sorted(lost)[:3] + (["..."] if len(lost) > 3 else []) + [f"{len(lost)} in all"]},
        expected=f"{len(surely)}..{len(maybe)} heartbeats: those sent in the window "
                 f"[{down[0]:.3f}, {up[1]:.3f}] (down/up netlink calls bracketed)",
        tolerance="none", evidence=f"{cut.name}.jsonl sends vs server.jsonl arrivals")
    others = {n: {lab: c for lab, c in labels(cd.deaths, n).items() if lab != "true: chunkserver stopped"}
              for n in cd.chunkservers if n != cut.name}
    out["control"] = Claim(TITLES["partition"]["control"], bool(others) and not any(others.values()),
                           measured=others, expected="no decision but at the end of its run", tolerance="none",
                           evidence=files)
    return out


def tcp_vs_udp(cd, p, ev):
    out, T = {}, cd.interval
    tcp = [cs for cs in cd.chunkservers.values() if cs.transport == "tcp"]
    udp = [cs for cs in cd.chunkservers.values() if cs.transport == "udp"]
    if not tcp or not udp:
        raise ValueError("needs a TCP and a UDP chunkserver")
    t, u = tcp[0], udp[0]
    seqs = [s for _, _, s in t.recvs]
    out["tcp"] = Claim(TITLES["tcp_vs_udp"]["tcp"], seqs == sorted(t.sends) and len(seqs) == len(t.sends) > 0,
                       measured={"sent": len(t.sends), "received": len(seqs), "unique": len(set(seqs)),
                                 "in order": seqs == sorted(seqs), "latency_ms": latency(t)},
                       expected=f"{len(t.sends)} received, each once, in order", tolerance="none",
                       evidence=f"tcp_vs_udp/{t.name}.jsonl vs server.jsonl")
    spec = cd.netem.get(u.node) or {}
    for kind in ("lost", "duplicated", "reordered"):
        c = _rate(u.name, kind, u, spec, 1000 * T)
        out[kind] = Claim(TITLES["tcp_vs_udp"][kind], c.ok, c.measured, c.expected, c.tolerance,
                          f"tcp_vs_udp/{u.name}.jsonl vs server.jsonl; model: heartbeat_outcomes({spec.get('loss')}%, "
                          f"dup {spec.get('duplicate')}%, reorder {spec.get('reorder')}%, {spec.get('delay')} ms)")
    server = ((cd.record.get("server") or {}).get("chunkservers") or {}).get(u.name) or {}
    a = u.analysis
    want = {"fresh": a["received"] - a["duplicates"] - a["reordered"], "late": a["reordered"],
            "duplicate": a["duplicates"]}
    got = {k_: server.get(k_) for k_ in want}
    # Both effects must have happened for the claim to say anything, when the
    # parameters make that near-certain; otherwise it says they did not.
    model, measured = rates(u, spec, 1000 * T)
    p_none = 1 - (1 - (1 - model["duplicated"]) ** measured["duplicated"][1]) * \
        (1 - (1 - model["reordered"]) ** measured["reordered"][1])
    happened = a["duplicates"] > 0 and a["reordered"] > 0
    required = p_none < FALSE_ALARM_BUDGET
    out["copes"] = Claim(TITLES["tcp_vs_udp"]["copes"], got == want and (happened or not required),
                         measured={"server": got, "labels": {d: labels(cd.deaths, u.name, d) for d in (FIXED, PHI)}},
                         expected=want, tolerance=f"none: the server's live counts equal the log's; duplicates and "
                         f"overtaken ones {'required' if required else 'not required'} (P[none] = {p_none:.1e})",
                         evidence="server summary (case.json workload.server) vs server.jsonl")
    return out


def capture_claim(ev, case, cd):
    """W's rebuild of the server-side capture against the logs, message by
    message: UDP datagram by datagram against the server's log, and against
    the senders' logs (lost and duplicated counts); TCP as JSON Lines
    (``framing="lines"``), line by line, against the server's log and the
    senders' (TCP loses nothing and copies nothing the app could see)."""
    from wirelab.observe.messages import rebuild, match_logged
    title = COMMON["capture"].format(case=cd.name)
    caps = case.get("captures") or []
    pcap = ev.path(cd.name, "server.pcap")
    problems = [f"{c['name']}: {c.get('problems') or ''} dropped {c.get('dropped_by_kernel')}"
                for c in caps if c.get("problems") or c.get("dropped_by_kernel")]
    if problems or not caps:
        return Claim(title, False, measured=problems or "no capture", expected="a complete capture", evidence=pcap)
    port = cd.record["port"]
    rebuilt = rebuild(pcap, ports={port}, framing="lines")
    udp_wire = [m for m in rebuilt if m.transport == "udp"]
    server = _server_events(ev, cd)
    recv = match_logged(udp_wire, [e for e in server if e["event"] == "recv" and e.get("transport") == "udp"],
                        ports={port})
    sends = [e for cs in cd.chunkservers.values() if cs.transport == "udp"
             for e in _own_events(ev, cd, cs) if e["event"] == "send"]
    sent = match_logged(udp_wire, sends, ports={port})
    lost = sum(cs.analysis["lost"] for cs in cd.chunkservers.values() if cs.transport == "udp")
    twice = sum(cs.analysis["duplicates"] for cs in cd.chunkservers.values() if cs.transport == "udp")
    c_recv, c_sent = recv["counts"], sent["counts"]
    measured = {"udp on the wire": c_recv["on_wire"], "logged received": c_recv["received"],
                "matched": c_recv["matched"], "logged, not captured": c_recv["missing_on_wire"],
                "captured, not logged": c_recv["not_received"] + c_recv["extra_on_wire"],
                "sent, not on the wire (lost)": c_sent["missing_on_wire"],
                "on the wire more than sent (duplicated)": c_sent["duplicates"]}
    ok = recv["ok"] and c_sent["missing_on_wire"] == lost and c_sent["duplicates"] == twice
    expected = {"logged = captured": "every datagram", "lost": lost, "duplicated": twice}
    tcp_senders = [cs for cs in cd.chunkservers.values() if cs.transport == "tcp"]
    if tcp_senders:
        tcp_wire = [m for m in rebuilt if m.transport == "tcp"]
        t_recv = match_logged(tcp_wire, [e for e in server if e["event"] == "recv" and e.get("transport") == "tcp"],
                              ports={port})
        t_sent = match_logged(tcp_wire, [e for cs in tcp_senders for e in _own_events(ev, cd, cs)
                                         if e["event"] == "send"], ports={port})
        for cs in tcp_senders:
            src = list(cs.summary.get("src") or [])
            lines = [m for m in tcp_wire if list(m.src) == src]
            measured[f"tcp {cs.name}"] = {
                "lines on the wire": len(lines), "unreadable": [m.error for m in lines if m.message is None][:2],
                "hidden by TCP": {"retransmitted": sum(m.retransmitted_segments for m in lines),
                                  "duplicate": sum(m.duplicate_segments for m in lines),
                                  "out of order": sum(m.out_of_order_segments for m in lines)}}
            expected[f"tcp {cs.name}"] = f"{len(cs.sends)} lines, each once, none unreadable"
        c = t_recv["counts"]
        measured["tcp lines vs the logs"] = {
            "on the wire": c["on_wire"], "logged received": c["received"], "matched": c["matched"],
            "logged, not captured": c["missing_on_wire"], "captured, not logged": c["not_received"] + c["extra_on_wire"],
            "unreadable on the wire": c["unreadable_on_wire"], "sent, not on the wire": t_sent["counts"]["missing_on_wire"],
            "on the wire more than sent": t_sent["counts"]["duplicates"] + t_sent["counts"]["extra_on_wire"]}
        expected["tcp lines vs the logs"] = "every line sent = captured once = logged received (no gap, no error)"
        ok = ok and t_recv["ok"] and t_sent["ok"] and c["matched"] > 0
    return Claim(title, ok, measured=measured, expected=expected, tolerance="none: exact",
                 evidence=f"{cd.name}/server.pcap (wirelab.observe.messages.rebuild, TCP as JSON Lines) vs the logs")


def _server_events(ev, cd):
    return protocol.read_log(ev.path(cd.name, cd.record.get("server_log", "server.jsonl")))


def _own_events(ev, cd, cs):
    info = cd.record["chunkservers"][cs.name]
    return protocol.read_log(ev.path(cd.name, info["log"]))
