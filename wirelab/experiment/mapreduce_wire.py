"""A MapReduce job as the wire tells it: pure functions over captured messages.

Input: the messages :func:`wirelab.observe.messages.rebuild` finds in the
capture on the manager's interface (every message has the manager at one
end), and the SYNs of each capture. Output: who got which task when, who
reported what, each worker's heartbeats; and the checks made of them:

* a task given to a second worker while the first still held it and was
  alive by the heartbeat rule (a heartbeat within the last k*T, and no refused
  connection since) -- a task run twice;
* a task never reported finished -- a lost task;
* why a job stalled: the manager gone, a task never assigned, or a
  ``finished`` delivered whole that the manager never acted on;
* each message's latency, split into connection set-up (SYN retransmissions)
  and data (retransmitted segments).

Workers are named by their address (each has its own host); a task is
``(kind, task_id)``, the kind from the task message (``finished`` carries
only the id: it belongs to the worker's latest task of that id).
"""

import collections
import ipaddress

import numpy as np

from wirelab.observe.l4payload import PROTO_TCP, locate_payloads
from wirelab.observe.pcap.reader import PcapReader
from wirelab.observe.pcap.tcpflags import ACK, RST, SYN

TASK_KINDS = {"new_map_task": "map", "new_reduce_task": "reduce"}


def _get(m, key):
    return m[key] if isinstance(m, dict) else getattr(m, key)


class Story:
    """The protocol events of one capture, by worker name."""

    def __init__(self, messages, workers, manager_ip):
        self.workers = dict(workers)                  # name -> ip
        by_ip = {ip: n for n, ip in self.workers.items()}
        self.assignments, self.finished, self.registers, self.acks = [], [], {}, {}
        self.heartbeats = collections.defaultdict(list)
        self.shutdowns, self.job_t, self.manager_sent = {}, None, []
        self.received = []     # messages to the manager (time order)
        latest_kind = {}
        for m in sorted(messages, key=lambda m: _get(m, "t")):
            msg = _get(m, "message")
            if not isinstance(msg, dict) or _get(m, "error"):
                continue
            t, kind = _get(m, "t"), msg.get("message_type")
            src, dst = _get(m, "src")[0], _get(m, "dst")[0]
            if src == manager_ip and _get(m, "transport") == "tcp":
                self.manager_sent.append((t, kind, by_ip.get(dst, dst)))
            if dst == manager_ip:
                self.received.append((t, kind, by_ip.get(src, src), msg))
            if kind in TASK_KINDS and src == manager_ip and dst in by_ip:
                w = by_ip[dst]
                latest_kind[(w, msg.get("task_id"))] = TASK_KINDS[kind]
                self.assignments.append({"t": t, "t_end": _get(m, "t_end"), "kind": TASK_KINDS[kind],
                                         "task_id": msg.get("task_id"), "worker": w})
            elif kind == "finished" and src in by_ip:
                w = by_ip[src]
                self.finished.append({"t": t, "task_id": msg.get("task_id"), "worker": w,
                                      "kind": latest_kind.get((w, msg.get("task_id")))})
            elif kind == "heartbeat" and src in by_ip:
                self.heartbeats[by_ip[src]].append(t)
            elif kind == "register" and src in by_ip:
                self.registers.setdefault(by_ip[src], t)
            elif kind == "register_ack" and dst in by_ip:
                self.acks.setdefault(by_ip[dst], t)
            elif kind == "shutdown" and src == manager_ip and dst in by_ip:
                self.shutdowns.setdefault(by_ip[dst], t)
            elif kind == "new_manager_job" and self.job_t is None:
                self.job_t = t

    def tasks(self):
        return sorted({(a["kind"], a["task_id"]) for a in self.assignments}, key=str)


def alive(heartbeats, t, T, k, refused=()):
    """The heartbeat rule: alive at ``t`` when a heartbeat came in (t - k*T, t]
    and no connection to it was refused since that heartbeat."""
    last = max((h for h in heartbeats if h <= t), default=None)
    if last is None or t - last >= k * T:
        return False
    return not any(last < r <= t for r in refused)


def double_assignments(story, T, k, refused=None):
    """Tasks sent to a worker while another still held them, alive by the
    rule. ``refused``: {worker: [times a connection to it was refused]}."""
    refused = refused or {}
    out = []
    for i, b in enumerate(story.assignments):
        for a in story.assignments[:i]:
            if (a["kind"], a["task_id"]) != (b["kind"], b["task_id"]) or a["worker"] == b["worker"]:
                continue
            done = any(f["worker"] == a["worker"] and f["task_id"] == a["task_id"] and a["t"] < f["t"] <= b["t"]
                       for f in story.finished)
            if not done and alive(story.heartbeats.get(a["worker"], []), b["t"], T, k,
                                  refused.get(a["worker"], ())):
                out.append({"task": f"{b['kind']} {b['task_id']}", "first": a["worker"], "t_first": a["t"],
                            "second": b["worker"], "t_second": b["t"],
                            "first_last_heartbeat": max((h for h in story.heartbeats.get(a["worker"], [])
                                                         if h <= b["t"]), default=None)})
    return out


def lost_tasks(story, nmappers, nreducers):
    """The tasks of the job with no ``finished`` from a worker that had them."""
    expected = [("map", i) for i in range(nmappers)] + [("reduce", i) for i in range(nreducers)]
    done = {(f["kind"], f["task_id"]) for f in story.finished if f["kind"]}
    return [f"{kind} {tid}" for kind, tid in expected if (kind, tid) not in done]


def heartbeat_gaps(story, name, start, end):
    """Gaps (s) between ``start`` (the worker's acknowledgement), its heartbeats
    seen in [start, end], and ``end``; the largest and where it was."""
    beats = sorted(h for h in story.heartbeats.get(name, []) if start <= h <= end)
    marks = [start, *beats, end]
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    worst = max(range(len(gaps)), key=gaps.__getitem__) if gaps else None
    return {"heartbeats": len(beats), "max_gap_s": round(gaps[worst], 4) if gaps else None,
            "after_s": round(marks[worst] - start, 3) if gaps else None}


def dead_by_rule(story, name, T, k, until):
    """When worker ``name`` became dead by the heartbeat rule as the manager
    sees it (its register, then its heartbeats, k*T apart or more before
    ``until``), or None. A worker whose acknowledgement the network held back
    k*T is dead before its first heartbeat: it starts beating only then."""
    start = story.registers.get(name)
    if start is None:
        return None
    marks = [start, *sorted(h for h in story.heartbeats.get(name, []) if start <= h <= until), until]
    for a, b in zip(marks, marks[1:]):
        if b - a >= k * T:
            return a + k * T
    return None


def last_before(times, t):
    return max((x for x in times if x <= t), default=None)


def stall_reason(story, programs, t0, nmappers, nreducers, t_gave_up=None):
    """One line on why a job did not finish, from the wire and the programs'
    exits (``t_gave_up``: when the run stopped waiting for the job)."""
    mgr = programs.get("manager") or {}
    ended = mgr.get("ended_s")
    if mgr.get("returncode") is not None and mgr.get("stopped_by") is None and (
            t_gave_up is None or ended is None or t0 + ended <= t_gave_up):
        last = (mgr.get("stderr_tail") or "").strip().splitlines()[-1:] or ["no stderr"]
        return f"the manager exited {mgr['returncode']} at +{ended} s: {last[0]}"
    if story.job_t is None:
        return "the manager never received the job (no new_manager_job on the wire)"
    if not story.assignments:
        return f"the manager got the job at +{story.job_t - t0:.2f} s and never assigned a task"
    # A finished that arrives after the last task message, while tasks remain,
    # should have led somewhere (the next stage at least): the manager lost it.
    last_task = max(a["t"] for a in story.assignments)
    unacted = [r for r in story.received if r[1] == "finished" and r[0] > last_task]
    lost = lost_tasks(story, nmappers, nreducers)
    if unacted and lost:
        t, _, who, msg = unacted[-1]
        return (f"finished of task {msg.get('task_id')} from {who} arrived whole at +{t - t0:.2f} s; "
                f"the manager sent no task after +{last_task - t0:.2f} s (lost or ignored it); "
                f"unfinished: {', '.join(lost[:6])}")
    held = [a for a in story.assignments
            if not any(f["worker"] == a["worker"] and f["task_id"] == a["task_id"] and f["t"] > a["t"]
                       for f in story.finished)]
    if held:
        a = held[-1]
        return (f"{a['kind']} task {a['task_id']} sent to {a['worker']} at +{a['t'] - t0:.2f} s: "
                f"no finished for it on the wire; unfinished: {', '.join(lost[:6]) or 'none'}")
    return f"every task reported finished on the wire, yet no complete output; unfinished: {', '.join(lost) or 'none'}"


def last_messages(messages, t0, n=6, before=None):
    """The last ``n`` TCP messages seen (before ``before``), one short line each."""
    out = []
    tcp = [m for m in messages if _get(m, "transport") == "tcp" and (before is None or _get(m, "t") <= before)]
    for m in sorted(tcp, key=lambda m: _get(m, "t"))[-n:]:
        msg = _get(m, "message")
        kind = msg.get("message_type") if isinstance(msg, dict) else _get(m, "error")
        extra = f" task {msg.get('task_id')}" if isinstance(msg, dict) and "task_id" in msg else ""
        out.append(f"+{_get(m, 't') - t0:.2f}s {_get(m, 'src')[0]}->{_get(m, 'dst')[0]} {kind}{extra}")
    return out


# -- connection set-up, from the SYNs of a capture --------------------------------------
def address(hi, lo):
    """Text form of an address held as two 64-bit halves (l4payload's columns;
    IPv4 as ::ffff:a.b.c.d)."""
    if hi == 0 and lo >> 32 == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(hi << 64 | lo))


def connection_setups(path, ports):
    """{(src_ip, sport, dst_ip, dport): {"syn": [t...], "synack": [t...], "rst": [t...]}}
    for every connection whose SYN the capture saw (its initiator's view when
    the capture is on the initiator's interface). A copy of a segment (same
    signature: netem duplication) is counted once."""
    conns = collections.defaultdict(lambda: {"syn": [], "synack": [], "rst": [], "_sigs": set()})
    for batch in PcapReader(path):
        lb = locate_payloads(batch, ports)
        if not len(lb):
            continue
        tcp = (lb.proto == PROTO_TCP) & ((lb.flags & (SYN | RST)) != 0)
        for i in np.nonzero(tcp)[0].tolist():
            src = (address(int(lb.src_hi[i]), int(lb.src_lo[i])), int(lb.sport[i]))
            dst = (address(int(lb.dst_hi[i]), int(lb.dst_lo[i])), int(lb.dport[i]))
            flags, t, sig = int(lb.flags[i]), int(lb.ts_ns[i]) / 1e9, int(lb.sig[i])
            if flags & SYN and not flags & ACK:
                key, what = (*src, *dst), "syn"
            elif flags & SYN:
                key, what = (*dst, *src), "synack"
            else:
                key, what = (*dst, *src), "rst"
                if key not in conns:
                    continue
            c = conns[key]
            if (what, sig) in c["_sigs"]:
                continue
            c["_sigs"].add((what, sig))
            c[what].append(t)
    return {k: {x: sorted(v[x]) for x in ("syn", "synack", "rst")} for k, v in conns.items()}


def refused_connections(setups, workers):
    """{worker: [times]} of the SYNs toward a worker answered by RST, no SYN-ACK."""
    by_ip = {ip: n for n, ip in workers.items()}
    out = collections.defaultdict(list)
    for (sip, _sp, dip, _dp), c in setups.items():
        if dip in by_ip and c["rst"] and not c["synack"]:
            out[by_ip[dip]].append(c["rst"][0])
    return dict(out)


def syn_retransmissions(setups):
    """[(initiator ip, n, interval ms)] for every retransmitted SYN (the n-th)."""
    out = []
    for key, c in setups.items():
        syns = c["syn"]
        for n, (a, b) in enumerate(zip(syns, syns[1:]), start=1):
            out.append((key[0], n, (b - a) * 1000))
    return out


def latency_split(messages, setups):
    """Per TCP message: set-up (first SYN to first data byte, s), SYN
    retransmissions, data time (first to last byte), retransmitted segments."""
    out = []
    for m in messages:
        if _get(m, "transport") != "tcp":
            continue
        src, dst = _get(m, "src"), _get(m, "dst")
        c = setups.get((src[0], src[1], dst[0], dst[1]))
        msg = _get(m, "message")
        syn0 = c["syn"][0] if c and c["syn"] else None
        out.append({"t_syn": syn0, "t": _get(m, "t"), "t_end": _get(m, "t_end"),
                    "syns": len(c["syn"]) if c else None,
                    "setup_s": round(_get(m, "t") - syn0, 6) if syn0 is not None else None,
                    "data_s": round(_get(m, "t_end") - _get(m, "t"), 6),
                    "retransmitted_segments": _get(m, "retransmitted_segments"),
                    "type": msg.get("message_type") if isinstance(msg, dict) else None,
                    "task_id": msg.get("task_id") if isinstance(msg, dict) else None,
                    "src": list(src), "dst": list(dst)})
    return out
