"""Apps' event logs against the messages rebuilt from a capture.

The house apps write one JSON object per line; the events that matter here::

    {"t": 1733060000.123, "event": "send"|"recv", "transport": "tcp"|"udp",
     "src": ["10.1.0.2", 41234], "dst": ["10.1.0.11", 6000], "message": {...}}

(other event kinds are skipped).  A message is identified by (transport,
source, destination, canonical JSON of the message: sorted keys, compact),
and counted as a multiset: the same heartbeat sent twice is two messages.
For each identity, with ``w`` copies on the wire, ``s`` send and ``r`` recv
events logged, and ``L = s`` if the sender's log has it, else ``r``:

* matched: ``min(w, L)`` (paired in time order);
* missing_on_wire: ``max(s, r) - w`` when positive (logged, not captured);
* extra_on_wire: ``w`` when nothing logged it at all;
* duplicates: ``w - L`` when positive and ``L > 0`` (netem duplicating a
  datagram: sent once, two identical datagrams captured);
* not_received: ``w - r`` when positive, for receivers whose log was
  given (some recv event names their address): on the wire, but the
  receiver did not log it;
* unreadable_on_wire: rebuilt messages without a message (an error).
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from dataclasses import dataclass, field

SEND, RECV = "send", "recv"


def canonical(value) -> str:
    """The JSON text two equal messages share: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _endpoint(ep) -> tuple:
    """(address, port) with the address in its canonical text form; an
    IPv4-mapped IPv6 address (a dual-stack socket's view) as plain IPv4."""
    host, port = ep
    try:
        a = ipaddress.ip_address(host)
        if a.version == 6 and a.ipv4_mapped is not None:
            a = a.ipv4_mapped
        host = str(a)
    except ValueError:
        pass
    return host, int(port)


@dataclass
class EventLog:
    """The send/recv events of one app event log; iterate over it for them."""

    path: str
    events: list = field(default_factory=list)
    skipped: int = 0      # lines that are not a JSON object
    malformed: int = 0    # send/recv events lacking transport, src, dst or message
    other: int = 0        # events of other kinds

    def __iter__(self):
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


def read_event_log(path) -> EventLog:
    """Read a house event log (JSON lines); non-JSON lines are counted, not fatal."""
    log = EventLog(str(path))
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                log.skipped += 1
                continue
            if not isinstance(ev, dict):
                log.skipped += 1
                continue
            if ev.get("event") not in (SEND, RECV):
                log.other += 1
                continue
            try:
                _key(ev)
            except (KeyError, TypeError, ValueError):
                log.malformed += 1
                continue
            log.events.append(ev)
    return log


def _key(item) -> tuple:
    """(transport, src, dst, canonical message) of an event dict or a rebuilt message."""
    if isinstance(item, dict):
        return (item["transport"], _endpoint(item["src"]), _endpoint(item["dst"]), canonical(item["message"]))
    return (item.transport, _endpoint(item.src), _endpoint(item.dst), canonical(item.message))


def _events(logged):
    for item in logged:
        if isinstance(item, EventLog):
            yield from item.events
        else:
            yield item


def _described(key) -> dict:
    transport, src, dst, text = key
    return {"transport": transport, "src": list(src), "dst": list(dst), "message": json.loads(text)}


def match_logged(rebuilt, logged, *, ports=None) -> dict:
    """Compare rebuilt messages with logged send/recv events (see the module docstring).

    ``rebuilt``: :class:`~wirelab.observe.messages.RebuiltMessage` items;
    ``logged``: event dicts or :class:`EventLog` objects; ``ports``: only the
    events of flows with either port in this set (as the capture was read
    with ``rebuild(..., ports=)``).  Returns a dict:
    ``ok``, ``counts`` and the lists ``matched``, ``missing_on_wire``,
    ``extra_on_wire``, ``duplicates``, ``not_received``, ``unreadable_on_wire``
    (each entry names the message and gives its counts and times)."""
    wire, sent, recv = defaultdict(list), defaultdict(list), defaultdict(list)
    unreadable = []
    for m in rebuilt:
        if m.message is None:
            unreadable.append(m.to_dict())
        else:
            wire[_key(m)].append(m)
    receivers = set()   # addresses whose recv events were given
    ports = None if ports is None else {int(p) for p in ports}
    for ev in _events(logged):
        if ports is not None and int(ev["src"][1]) not in ports and int(ev["dst"][1]) not in ports:
            continue
        if ev.get("event") == SEND:
            sent[_key(ev)].append(ev)
        elif ev.get("event") == RECV:
            k = _key(ev)
            recv[k].append(ev)
            receivers.add(k[2][0])
    out = {"matched": [], "missing_on_wire": [], "extra_on_wire": [], "duplicates": [],
           "not_received": [], "unreadable_on_wire": unreadable}
    for key in sorted(set(wire) | set(sent) | set(recv)):
        w = sorted(wire.get(key, []), key=lambda m: m.t)
        s = sorted(sent.get(key, []), key=lambda e: e.get("t") or 0)
        r = sorted(recv.get(key, []), key=lambda e: e.get("t") or 0)
        ref = s if s else r
        base = _described(key)
        counts = {"on_wire": len(w), "sent": len(s), "received": len(r)}
        for i in range(min(len(w), len(ref))):
            out["matched"].append({**base, "t_wire": w[i].t, "t_sent": s[i].get("t") if i < len(s) else None,
                                   "t_received": r[i].get("t") if i < len(r) else None,
                                   "wire_error": w[i].error})
        t_wire = [m.t for m in w]
        if max(len(s), len(r)) > len(w):
            out["missing_on_wire"].append({**base, **counts, "count": max(len(s), len(r)) - len(w),
                                           "t_logged": [e.get("t") for e in ref]})
        if w and not ref:
            out["extra_on_wire"].append({**base, **counts, "count": len(w), "t_wire": t_wire})
        elif len(w) > len(ref):
            out["duplicates"].append({**base, **counts, "count": len(w) - len(ref), "t_wire": t_wire})
        if key[2][0] in receivers and len(w) > len(r) and ref:
            out["not_received"].append({**base, **counts, "count": len(w) - len(r), "t_wire": t_wire})
    out["counts"] = {"on_wire": sum(len(v) for v in wire.values()) + len(unreadable),
                     "sent": sum(len(v) for v in sent.values()),
                     "received": sum(len(v) for v in recv.values()),
                     **{k: (len(v) if k in ("matched", "unreadable_on_wire") else sum(e["count"] for e in v))
                        for k, v in out.items()}}
    out["ok"] = not any(out[k] for k in ("missing_on_wire", "extra_on_wire", "duplicates",
                                         "not_received", "unreadable_on_wire"))
    return out
