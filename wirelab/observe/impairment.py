"""The impairment ledger: what the network did to each packet, from two captures.

Given a capture *before* an impaired link and one *after* it, taken on the same
machine (one clock), every packet that left is matched with the copies that
arrived, by a key that identifies one transmission::

    (src, sport, dst, dport, IP ID, seq, ack, flags, payload length, TSval)

Linux gives every IPv4 packet of a connection its own IP ID (a per-socket
counter when DF is set), so a TCP retransmission -- same seq and length -- still
has a new key, while a copy made by the network (netem ``duplicate``) has the
same one. Routers between the two points change only TTL and the IP checksum,
which are not in the key.

Each departure is then classified:

``delivered``   arrived exactly once;
``dropped``     never arrived;
``duplicated``  arrived two or more times (the extra copies are ``extra_copies``);
``reordered``   its first copy arrived after that of a packet that left later
                (RFC 4737's "reordered": departure index below the highest
                departure index already arrived);
``unexpected``  (on the after side) a packet that matches no departure.

And the recovery is proved: for each dropped packet that occupies sequence space
(payload, SYN or FIN), the bytes it carried were delivered by other copies --
normally later retransmissions (``retransmitted``), occasionally an earlier
copy that had already got through (``delivered_earlier``, the dropped one was a
spurious retransmission). ``recovery.unrecovered`` lists any that were not.

Both directions are done at once: with captures at the two ends of the link,
data segments go upstream -> downstream and ACKs the other way. Which capture is
*before* for a direction is decided by the packets themselves (the median
one-way delay of matched packets is positive from before to after).

Where to capture (see :mod:`wirelab.observe.capture`): taps see egress packets *after*
the egress qdisc, ingress packets before anything else. ``experiments/tcp_recovery``
captures on r1's interface facing the sender and r2's interface facing the
receiver, so between the two points lies exactly r1's forwarding, the bottleneck
link with its netem qdiscs (both ends), and r2's forwarding.

Pure: functions over capture files (the house reader), no root; ``build_ledger(a, b)``.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress

import statistics

import numpy as np

from wirelab.errors import WirelabError
from wirelab.observe.pcap.decode import decode_tcp
from wirelab.observe.pcap.reader import PcapFormatError, PcapReader
from wirelab.observe.pcap.tcpflags import ACK, FIN, PSH, RST, SYN, letters

__all__ = ["ACK", "FIN", "PSH", "RST", "SYN", "LedgerError", "Packet", "read_packets", "build_ledger",
           "ImpairmentLedger", "DirectionLedger", "Departure", "match_direction", "prove_recovery"]

M32 = 0xFFFFFFFF


class LedgerError(WirelabError, ValueError):
    """A capture cannot be used for the ledger (not a capture, no TCP over IPv4 or IPv6).

    Exit code 2, like :class:`~wirelab.observe.pcap.reader.PcapFormatError`:
    the input is unusable.
    """

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class Packet:
    """One captured TCP packet (IPv4 or IPv6), as the ledger needs it."""

    index: int          # 0-based position in its capture file (arrival order)
    ts_ns: int
    src: str
    sport: int
    dst: str
    dport: int
    ip_id: int
    seq: int
    ack: int
    flags: int
    payload_len: int
    tsval: int | None
    mss: int | None = None  # the MSS option (SYNs only); not part of the key

    @property
    def direction(self):
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def key(self):
        return (self.src, self.sport, self.dst, self.dport, self.ip_id, self.seq, self.ack,
                self.flags, self.payload_len, self.tsval)

    @property
    def seq_space(self):
        """Sequence numbers this packet occupies: payload plus one for SYN and FIN."""
        return self.payload_len + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


def read_packets(path):
    """The TCP packets of a capture (pcap or pcapng, plain or gzip), IPv4 and
    IPv6, in file order.

    Read with the house reader (:mod:`wirelab.observe.pcap.reader`), so every
    link type it knows works.  The payload length comes from the IP header
    (total length), not the captured bytes, so a header-only capture
    (``-s 128``) is enough.  Raises :class:`LedgerError` for a file that is not
    a capture.

    IPv6 has no identification field: an IPv6 packet's ``ip_id`` is -1, so
    two transmissions of one segment are told apart by the TCP timestamp
    (``tsval``, on by default in Linux) and otherwise only by their order.
    """
    try:
        reader = PcapReader(path)
        batches = [decode_tcp(b) for b in reader]
    except PcapFormatError as exc:
        raise LedgerError(str(exc)) from None
    names: dict[tuple, str] = {}

    def name(version: int, hi: int, lo: int) -> str:
        s = names.get((version, hi, lo))
        if s is None:
            s = names[(version, hi, lo)] = str(ipaddress.IPv4Address(lo & M32) if version == 4
                                               else ipaddress.IPv6Address((hi << 64) | lo))
        return s

    out = []
    for tb in batches:
        v4 = (tb.ipver == 4) & (tb.src_hi == 0) & ((tb.src_lo >> np.uint64(32)) == 0xFFFF)
        rows = np.nonzero(v4 | (tb.ipver == 6))[0]
        cols = [getattr(tb, f)[rows].tolist() for f in
                ("frame", "ts_ns", "ipver", "src_hi", "src_lo", "sport", "dst_hi", "dst_lo", "dport",
                 "ipid", "seq", "ack", "flags", "seglen", "tsval", "mss")]
        for fr, ts, ver, shi, src, sport, dhi, dst, dport, ipid, seq, ack, fl, ln, tsval, mss in zip(*cols):
            out.append(Packet(index=fr - 1, ts_ns=ts, src=name(ver, shi, src), sport=sport,
                              dst=name(ver, dhi, dst), dport=dport,
                              ip_id=ipid, seq=seq, ack=ack, flags=fl, payload_len=ln,
                              tsval=tsval if tsval >= 0 else None,
                              mss=mss if fl & SYN and mss >= 0 else None))
    return out


# --------------------------------------------------------------------------- the ledger
@dataclasses.dataclass
class Departure:
    """A packet seen at the *before* point and what became of it."""

    packet: Packet
    copies: list = dataclasses.field(default_factory=list)  # after-side Packets
    reordered: bool = False

    @property
    def fate(self):
        n = len(self.copies)
        return "dropped" if n == 0 else ("delivered" if n == 1 else "duplicated")

    @property
    def owd_ns(self):
        return self.copies[0].ts_ns - self.packet.ts_ns if self.copies else None


@dataclasses.dataclass
class DirectionLedger:
    direction: tuple
    before: str
    after: str
    departures: list
    unexpected: list
    isn: int
    recovery: list = dataclasses.field(default_factory=list)

    def rel(self, seq):
        return (seq - self.isn) & M32

    def counts(self, data_only=False):
        deps = [d for d in self.departures if not data_only or d.packet.payload_len > 0]
        return {
            "departed": len(deps),
            "arrived_once": sum(1 for d in deps if d.fate == "delivered"),
            "dropped": sum(1 for d in deps if d.fate == "dropped"),
            "duplicated": sum(1 for d in deps if d.fate == "duplicated"),
            "extra_copies": sum(max(0, len(d.copies) - 1) for d in deps),
            "reordered": sum(1 for d in deps if d.reordered),
        }

    def describe(self, dep):
        p = dep.packet
        return {"index": p.index, "t_ns": p.ts_ns, "rel_seq": self.rel(p.seq),
                "len": p.payload_len, "flags": letters(p.flags), "ip_id": p.ip_id,
                "copies": len(dep.copies)}

    def owd_ns(self):
        return [d.owd_ns for d in self.departures if d.copies]

    def summary(self):
        owd = sorted(self.owd_ns())
        recovered = [r for r in self.recovery if r["recovered"]]
        return {
            "direction": "{}:{} -> {}:{}".format(*self.direction),
            "before": self.before, "after": self.after,
            "all": self.counts(), "data": self.counts(data_only=True),
            "unexpected": len(self.unexpected),
            "owd_ms": _quantiles_ms(owd),
            "dropped": [self.describe(d) for d in self.departures if d.fate == "dropped"],
            "duplicated": [self.describe(d) for d in self.departures if d.fate == "duplicated"],
            "reordered": [self.describe(d) for d in self.departures if d.reordered],
            "recovery": {
                "dropped_with_sequence_space": len(self.recovery),
                "recovered": len(recovered),
                "retransmitted": sum(1 for r in recovered if r["how"] == "retransmitted"),
                "delivered_earlier": sum(1 for r in recovered if r["how"] == "delivered_earlier"),
                "unrecovered": [r for r in self.recovery if not r["recovered"]],
                "details": self.recovery,
            },
        }


def _quantiles_ms(sorted_ns):
    if not sorted_ns:
        return None
    def q(f):
        return round(sorted_ns[min(len(sorted_ns) - 1, int(f * len(sorted_ns)))] / 1e6, 3)
    return {"n": len(sorted_ns), "min": round(sorted_ns[0] / 1e6, 3),
            "median": round(statistics.median(sorted_ns) / 1e6, 3), "p90": q(0.9),
            "max": round(sorted_ns[-1] / 1e6, 3)}


def match_direction(before_pkts, after_pkts, before_name="before", after_name="after"):
    """The ledger of one direction from its packets at the two points (in file order)."""
    departures = [Departure(p) for p in before_pkts]
    by_key = collections.defaultdict(list)
    for d in departures:
        by_key[d.packet.key].append(d)
    unexpected = []
    max_dep = -1
    position = {id(d): i for i, d in enumerate(departures)}
    for p in after_pkts:
        candidates = by_key.get(p.key)
        if not candidates:
            unexpected.append(p)
            continue
        # The earliest departure with this key not yet arrived; else the last
        # one gets an extra copy (a duplicate).
        dep = next((d for d in candidates if not d.copies), candidates[-1])
        first = not dep.copies
        dep.copies.append(p)
        if first:
            i = position[id(dep)]
            if i < max_dep:
                dep.reordered = True
            max_dep = max(max_dep, i)
    isn = _isn(before_pkts or after_pkts)
    ledger = DirectionLedger(direction=(before_pkts or after_pkts)[0].direction,
                             before=before_name, after=after_name,
                             departures=departures, unexpected=unexpected, isn=isn)
    ledger.recovery = prove_recovery(ledger)
    return ledger


def _isn(pkts):
    for p in pkts:
        if p.flags & SYN:
            return p.seq
    return min((p.seq for p in pkts), default=0)


def prove_recovery(ledger):
    """For each dropped packet occupying sequence space, find the copies that
    delivered its sequence range; returns one dict per such drop."""
    deps = ledger.departures
    rel = ledger.rel
    spans = [(rel(d.packet.seq), rel(d.packet.seq) + d.packet.seq_space) for d in deps]
    out = []
    for i, d in enumerate(deps):
        if d.copies or d.packet.seq_space == 0:
            continue
        lo, hi = spans[i]
        entry = {"index": d.packet.index, "t_ns": d.packet.ts_ns, "rel_seq": lo,
                 "len": d.packet.payload_len, "flags": letters(d.packet.flags)}
        missing = _cover([(lo, hi)], [spans[j] for j in range(i + 1, len(deps))
                                      if deps[j].copies and spans[j][0] < hi and spans[j][1] > lo])
        later = next((j for j in range(i + 1, len(deps))
                      if spans[j][0] < hi and spans[j][1] > lo), None)
        if not missing:
            deliverers = [j for j in range(i + 1, len(deps))
                          if deps[j].copies and spans[j][0] < hi and spans[j][1] > lo]
            last = max(deliverers, key=lambda j: deps[j].copies[0].ts_ns)
            entry.update(recovered=True, how="retransmitted",
                         retransmission_index=deps[later].packet.index,
                         retransmitted_after_ms=round((deps[later].packet.ts_ns - d.packet.ts_ns) / 1e6, 3),
                         delivered_after_ms=round((deps[last].copies[0].ts_ns - d.packet.ts_ns) / 1e6, 3),
                         transmissions=sum(1 for j in range(i + 1, len(deps))
                                           if spans[j] == (lo, hi)) + 1)
        elif not _cover([(lo, hi)], [spans[j] for j in range(i) if deps[j].copies
                                     and spans[j][0] < hi and spans[j][1] > lo]):
            entry.update(recovered=True, how="delivered_earlier")
        else:
            entry.update(recovered=False, how="never_delivered",
                         missing=[[a, b] for a, b in missing],
                         retransmission_index=deps[later].packet.index if later is not None else None)
        out.append(entry)
    return out


def _cover(need, have):
    """The parts of the ranges ``need`` not covered by the ranges ``have``."""
    missing = list(need)
    for a, b in sorted(have):
        nxt = []
        for lo, hi in missing:
            if b <= lo or a >= hi:
                nxt.append((lo, hi))
                continue
            if a > lo:
                nxt.append((lo, a))
            if b < hi:
                nxt.append((b, hi))
        missing = nxt
        if not missing:
            break
    return missing


@dataclasses.dataclass
class ImpairmentLedger:
    """Both directions of every connection seen in two captures."""

    directions: list  # DirectionLedger

    def for_direction(self, src, dst=None):
        """The ledger of the direction sent by ``src`` (an IP), optionally to ``dst``."""
        for d in self.directions:
            if d.direction[0] == src and (dst is None or d.direction[2] == dst):
                return d
        raise KeyError(f"no packets from {src}" + (f" to {dst}" if dst else ""))

    def summary(self):
        return {"directions": [d.summary() for d in self.directions]}


def build_ledger(capture_a, capture_b, name_a=None, name_b=None):
    """The impairment ledger of two captures of the same traffic at two points.

    ``capture_a``/``capture_b``: pcap paths, or lists of :class:`Packet` (tests).
    For each direction the *before* capture is found from the packets (matched
    packets are seen later at the after point); a direction seen in only one
    capture has everything dropped, with that capture as *before*.
    """
    name_a = name_a or (capture_a if isinstance(capture_a, str) else "a")
    name_b = name_b or (capture_b if isinstance(capture_b, str) else "b")
    pkts_a = read_packets(capture_a) if isinstance(capture_a, str) else list(capture_a)
    pkts_b = read_packets(capture_b) if isinstance(capture_b, str) else list(capture_b)
    groups_a, groups_b = _by_direction(pkts_a), _by_direction(pkts_b)
    out = []
    for direction in sorted(set(groups_a) | set(groups_b)):
        a, b = groups_a.get(direction, []), groups_b.get(direction, [])
        if _a_is_before(a, b):
            out.append(match_direction(a, b, name_a, name_b))
        else:
            out.append(match_direction(b, a, name_b, name_a))
    if not out:
        raise LedgerError(f"no TCP packets (IPv4 or IPv6) in {name_a} or {name_b}")
    return ImpairmentLedger(out)


def _by_direction(pkts):
    groups = collections.defaultdict(list)
    for p in pkts:
        groups[p.direction].append(p)
    return groups


def _a_is_before(a, b):
    first_b = {}
    for p in b:
        first_b.setdefault(p.key, p.ts_ns)
    deltas = [first_b[p.key] - p.ts_ns for p in a if p.key in first_b]
    if deltas:
        return statistics.median(deltas) >= 0
    return len(a) >= len(b)
