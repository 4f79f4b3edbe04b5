"""What captures on both sides of a link say about one TCP transfer.

:func:`transfer_evidence` reads each capture once and returns the figures a
claim needs: the analyser's view of the flow at the sender side and at the
receiver (Wireshark's rules), the impairment ledger between the two sides of
the link (what the network dropped, duplicated, reordered, and how each drop
was recovered), the segment size from the SYN's options, and whether the
receiver's cumulative ACK ever went backwards.
"""

import dataclasses
import os

from wirelab.observe import impairment
from wirelab.observe.pcap import analyze
from wirelab.observe.pcap.tcpflags import ACK, SYN

# RFC 7323: the timestamp option (10 bytes) padded to 12 in every segment once
# both SYNs carried it; a full segment's payload is then MSS - 12.
TCP_TIMESTAMP_OPTION_BYTES = 12


def flow_of(report, client_ip):
    """The analyser's summary of the flow opened by ``client_ip`` (a dict), or None."""
    for f in report.flows:
        if f.client.split(":")[0] == client_ip:
            return dataclasses.asdict(f)
    return None


def segment_sizes(packets, sender_ip):
    """The sender's segment size, from its packets (``impairment.Packet``).

    ``mss_option``: the MSS its SYN announced; ``timestamps``: both SYNs carried
    the timestamp option, which then takes TCP_TIMESTAMP_OPTION_BYTES of every
    segment; ``payload``: the largest payload it sent (a full segment); and
    ``payload_from_mss``: what the option predicts for it.
    """
    syn = next((p for p in packets if p.src == sender_ip and p.flags & SYN
                and not p.flags & ACK), None)
    synack = next((p for p in packets if p.dst == sender_ip and p.flags & SYN
                   and p.flags & ACK), None)
    timestamps = bool(syn and synack and syn.tsval is not None and synack.tsval is not None)
    payloads = [p.payload_len for p in packets if p.src == sender_ip and p.payload_len > 0]
    mss = syn.mss if syn else None
    return {"mss_option": mss, "timestamps": timestamps,
            "payload": max(payloads) if payloads else None,
            "payload_from_mss": (mss - (TCP_TIMESTAMP_OPTION_BYTES if timestamps else 0))
            if mss else None}


def ack_regressions(packets, receiver_ip):
    """ACKs from the receiver whose cumulative ACK is below an earlier one (file order)."""
    acks = [p for p in packets if p.src == receiver_ip and p.flags & ACK]
    if not acks:
        return 0
    base = acks[0].ack
    best, back = 0, 0
    for p in acks:
        rel = (p.ack - base) & 0xFFFFFFFF
        if rel < best:
            back += 1
        best = max(best, rel)
    return back


def ledger_figures(summary):
    """The counts of a ledger summary per direction, the lists left out."""
    out = {}
    for key, name in (("data", "data_direction"), ("acks", "ack_direction")):
        s = summary[key]
        if not s:
            out[name] = None
            continue
        a, d = s["all"], s["data"]
        out[name] = {"departed": a["departed"], "dropped": a["dropped"], "duplicated": a["duplicated"],
                     "extra_copies": a["extra_copies"], "reordered": a["reordered"],
                     "unexpected": s["unexpected"], "data_departed": d["departed"],
                     "data_dropped": d["dropped"], "data_extra_copies": d["extra_copies"],
                     "data_reordered": d["reordered"], "owd_ms": s["owd_ms"],
                     "recovered": s["recovery"]["recovered"],
                     "unrecovered": len(s["recovery"]["unrecovered"])}
    return out


@dataclasses.dataclass
class TransferEvidence:
    sender_side: dict | None      # analyser, flow at the "before" capture
    receiver_side: dict | None    # analyser, flow at the receiver's own interface
    ledger: dict                  # {"data": summary or None, "acks": summary or None}
    ledger_error: str | None
    owd_ms: list                  # one-way delays of the data direction (delivered packets)
    segments: dict | None
    ack_regressions: dict         # per capture: {"receiver", "after", "before"}


def transfer_evidence(before, after, at_receiver, sender_ip, receiver_ip):
    """Evidence of one transfer ``sender_ip -> receiver_ip`` from three captures:
    ``before`` and ``after`` the impaired link, and ``at_receiver`` (its own
    interface: what its TCP saw, in order)."""
    have = [p for p in (before, after) if os.path.exists(p)]
    pk_before = impairment.read_packets(before) if before in have else []
    pk_after = impairment.read_packets(after) if after in have else []
    pk_rcv = impairment.read_packets(at_receiver) if os.path.exists(at_receiver) else []
    try:
        led = impairment.build_ledger(pk_before, pk_after, "before", "after")
        fwd, rev, error = _direction(led, sender_ip), _direction(led, receiver_ip), None
    except impairment.LedgerError as exc:
        fwd, rev, error = None, None, str(exc)
    ra = analyze(before) if before in have else None
    rb = analyze(at_receiver) if pk_rcv else None
    return TransferEvidence(
        sender_side=flow_of(ra, sender_ip) if ra else None,
        receiver_side=flow_of(rb, sender_ip) if rb else None,
        ledger={"data": fwd.summary() if fwd else None, "acks": rev.summary() if rev else None},
        ledger_error=error,
        owd_ms=[x / 1e6 for x in fwd.owd_ns()] if fwd else [],
        segments=segment_sizes(pk_before, sender_ip) if pk_before else None,
        ack_regressions={"receiver": ack_regressions(pk_rcv, receiver_ip),
                         "after": ack_regressions(pk_after, receiver_ip),
                         "before": ack_regressions(pk_before, receiver_ip)})


def _direction(led, src):
    try:
        return led.for_direction(src)
    except KeyError:
        return None
