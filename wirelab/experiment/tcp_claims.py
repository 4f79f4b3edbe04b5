"""Claims about TCP transfers across an impaired link, from saved evidence.

:func:`transfer_claims`: what every transfer must satisfy -- the exact bytes
arrived (sha256), captures complete, handshake and teardown at both ends, the
receiver's cumulative ACK never went back, every drop the ledger saw was
retransmitted and delivered, the sender re-sent at least what was dropped.
:func:`netem_rate_claims`: the rates the impairment ledger measured against
netem's configured ones. Used by ``tcp_recovery`` and by any workload that
moves bytes over TCP under impairment.
"""

import os

from wirelab.apps.tcpflow import payload_sha256
from wirelab.experiment import stats
from wirelab.experiment.claims import Claim, captures_complete, rate_claim
from wirelab.observe.tcp_evidence import ledger_figures, transfer_evidence


def transfer_claims(ev, case, label, captures, sender_ip, receiver_ip):
    """Claims every transfer must satisfy: ``(figures, [(kind, claim)], TransferEvidence)``.

    ``case``: the case record (its workload a :func:`wirelab.apps.transfer.tcp_transfer`
    record); ``captures``: the file names before, after the link and at the receiver."""
    info, folder = case["workload"] or {}, case["name"]
    snd_ip, rcv_ip = sender_ip, receiver_ip
    tagged = []

    def claim(kind, *args, **kwargs):
        tagged.append((kind, Claim(*args, **kwargs)))
    a = case["args"]
    want_sha = payload_sha256(a["seed"], a["bytes"])
    got = info.get("receiver") or {}
    failure = info.get("failure") or (case["error"] or {}).get("message")
    claim("payload", f"{label}: receiver got exactly the bytes sent, in order (sha256)",
          got.get("bytes") == a["bytes"] and got.get("sha256") == want_sha,
          measured={"bytes": got.get("bytes"), "sha256": (got.get("sha256") or "")[:16]}
          if not failure else failure,
          expected={"bytes": a["bytes"], "sha256": want_sha[:16]},
          evidence=f"{folder}/case.json workload.receiver; sha256 recomputed from the seed")
    tagged.append(("captures", captures_complete(
        f"{label}: captures complete (tcpdump dropped nothing; the ledger is reliable)",
        case["captures"], len(captures))))
    # The receiver's own interface, not r2's: the veth between them can
    # reorder packets across CPUs, and the receiver's TCP sees what rcv.pcap sees.
    te = transfer_evidence(*(ev.path(folder, f) for f in captures), snd_ip, rcv_ip)
    fa, fb, summary = te.sender_side, te.receiver_side, te.ledger
    ev.save(os.path.join(folder, "ledger.json"), summary)
    figures = {"seconds": case["seconds"], "bytes": a["bytes"], "transfer_ok": tagged[0][1].ok,
               "failure": failure, "sender_side": fa, "receiver_side": fb,
               "ledger": ledger_figures(summary), "ledger_error": te.ledger_error,
               "netem": case["netem"], "fault": case["faults"], "captures": case["captures"],
               "segments": te.segments}
    if got.get("first_byte_time") and got.get("end_time"):
        figures["app_goodput_bps"] = round(got["bytes"] * 8 / max(
            1e-9, got["end_time"] - got["first_byte_time"]), 1)
    for side, flow in (("sender side (r1)", fa), ("receiver (rcv1)", fb)):
        hs, td = (flow or {}).get("handshake", {}), (flow or {}).get("teardown", {})
        claim("handshake", f"{label}: handshake and FIN teardown seen at the {side}",
              bool(hs.get("complete") and td.get("fin_client") and td.get("fin_server")),
              measured={"handshake": bool(hs.get("complete")),
                        "fins": bool(flow) and [td.get("fin_client"), td.get("fin_server")]},
              expected="SYN, SYN-ACK, ACK; FIN both ways")
    back = te.ack_regressions["receiver"]
    claim("acks", f"{label}: the receiver's cumulative ACK never went backwards",
          back == 0, measured=back, expected=0,
          evidence="ACKs as the receiver sent them (rcv.pcap, egress taps in send order)")
    # After the veth and the link ACKs can be reordered: reported, not claimed.
    figures["ack_regressions"] = te.ack_regressions
    # Without the data direction there is no evidence for either recovery
    # claim: both are stated, and fail, naming the cause.
    fwd = summary["data"]
    missing = None if fwd else ("no data direction in the ledger: "
                                f"{te.ledger_error or f'no packets from {snd_ip} in up.pcap/down.pcap'}")
    rec = fwd["recovery"] if fwd else {}
    claim("recovery", f"{label}: every dropped data segment was retransmitted and delivered (ledger)",
          bool(fwd) and not rec["unrecovered"] and fwd["unexpected"] == 0,
          measured=missing or {"dropped": rec["dropped_with_sequence_space"], "recovered": rec["recovered"],
                               "unexpected": fwd["unexpected"]},
          expected="all recovered, 0 unexpected", evidence=f"{folder}/ledger.json recovery.details")
    c2s = (fa or {}).get("client_to_server") or {}
    # Wireshark calls a retransmission sent within one handshake RTT of
    # the highest segment "out-of-order" (its heuristic cannot tell), so
    # both labels count as re-sent here.
    resent, need = c2s.get("retransmissions", 0) + c2s.get("out_of_order", 0), rec.get("retransmitted")
    claim("resent", f"{label}: the sender re-sent at least the segments the network dropped",
          bool(fwd) and bool(fa) and resent >= need,
          measured=missing or (resent if fa else "no flow from the sender in up.pcap"),
          expected=f">= {need}" if need is not None else ">= the ledger's retransmitted drops",
          evidence="pcap analyser on up.pcap: retransmissions + out-of-order "
                   "(Wireshark's label for a quick retransmission) vs ledger drops")
    return figures, tagged, te

def netem_rate_claims(name, spec, m, owd_ms):
    """Measured netem rates against configured ones (Wilson, 99.99%).
    Every rate the spec implies is claimed; one without a sample fails."""
    led = m["ledger"]["data_direction"]
    n = led["departed"] if led else 0
    model = stats.netem_expected_rates(spec.get("loss", 0) / 100, spec.get("duplicate", 0) / 100)
    checks = [("loss (packets that vanished)", "dropped", model["dropped"], led and led["dropped"], n)]
    if model["duplicated"] is not None:
        checks.append(("duplication (packets that arrived twice)", "duplicated",
                       model["duplicated"], led and led["duplicated"], n))
    if spec.get("reorder") and not spec.get("duplicate"):
        # netem sends a reordered packet with no delay at all: count the
        # delivered packets whose one-way delay is under half the delay.
        fast = sum(1 for x in owd_ms if x < spec["delay"] / 2)
        checks.append((f"reorder (sent without the {spec['delay']:g} ms delay)", "reordered",
                       spec["reorder"] / 100, fast, len(owd_ms)))
    claims, m["rates"] = [], {}
    for label, key, p, k, n_ in checks:
        title = f"{name}: measured {label} matches netem's setting" if spec else \
            f"{name}: measured {label} is zero without netem"
        c, figures = rate_claim(title, k or 0, n_, p, "impairment ledger, data direction",
                                missing="no data direction in the ledger" if not led
                                else "no delivered packets with a one-way delay")
        claims.append(c)
        if figures:
            m["rates"][key] = figures
    return claims
