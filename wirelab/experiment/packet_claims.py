"""Claims about packet sizes, fragments, path MTU discovery and a shared link,
from a results folder only (``experiments/packets.py``).

Each ``check_*`` reads the captures and ``case.json`` records of its cases
through :class:`Ctx` and returns claims; the figures go into ``ev.metrics``.
Every expected value comes from the parameters, the interfaces' MTUs recorded
at setup, the SYN's options, or the kernel's own settings and timer constants
(:mod:`wirelab.experiment.timers`): nothing is tuned to a run.
"""

import dataclasses

from wirelab.apps.tcpflow import payload_sha256
from wirelab.errors import WirelabError
from wirelab.experiment.claims import Claim, Tally
from wirelab.experiment.timers import JIFFY_MAX_MS, TCP_RTO_MIN_MS, TIMER_WHEEL_LATE_FRACTION
from wirelab.observe import flowmix, ipfrag
from wirelab.observe.packet_evidence import (distinct_segments, frag_needed, tcp_data, too_big,
                                             transmissions_of_first, udp_layouts, udp_payloads)

MTU_CASES = ("mtu/udp-df-clear", "mtu/udp-df-set", "mtu/tcp-pmtud", "mtu/tcp-blackhole", "mtu/tcp-probing")
# The sender's deadline starts at connect(); its first data segment leaves within this.
STALL_START_SLACK_MS = 50.0
_LATE = 1 + TIMER_WHEEL_LATE_FRACTION


def stall_retransmissions(stall_s):
    """RTO expiries certain within ``stall_s``: the k-th comes at most at
    (2^k - 1) x TCP_RTO_MIN, each late by the timer wheel's 1/8 and a jiffy."""
    worst, k = TCP_RTO_MIN_MS * _LATE + JIFFY_MAX_MS, 0
    while worst * (2 ** (k + 1) - 1) <= stall_s * 1000 - STALL_START_SLACK_MS:
        k += 1
    return k


def backoff_window_ms(previous):
    """[lo, hi] for an RTO interval after one of ``previous`` ms: the timeout
    doubles; each expiry is a jiffy early at most, 1/8 + a jiffy late at most."""
    return 2 * (previous - JIFFY_MAX_MS) / _LATE - JIFFY_MAX_MS, 2 * (previous + JIFFY_MAX_MS) * _LATE + JIFFY_MAX_MS


def blackhole_detection_ms(retries1):
    """net/ipv4/tcp_timer.c tcp_write_timeout: black-hole detection (tcp_mtu_probing)
    once retransmits_timed_out(tcp_retries1), i.e. ((2 << retries1) - 1) x TCP_RTO_MIN
    after the stuck segment's first transmission (tcp_model_timeout)."""
    return ((2 << retries1) - 1) * TCP_RTO_MIN_MS


@dataclasses.dataclass
class Ctx:
    """The folder and the line topology's facts every check needs."""

    ev: object
    cases: dict
    h1: str
    h2: str
    host_mtu: int
    mtu: int

    def packets(self, name, file):
        """``(IpPackets of a case's capture, None)`` or ``([], why not)``."""
        if name not in self.cases:
            return [], f"{name}: no such case in run.json"
        try:
            return ipfrag.read_ip_packets(self.ev.path(name, file)), None
        except (OSError, WirelabError) as exc:
            return [], f"{name}/{file}: {exc}"

    def workload(self, name):
        return (self.cases.get(name) or {}).get("workload") or {}

    def port(self, name):
        return (self.cases.get(name) or {}).get("args", {}).get("port")


def received_ok(sent, got):
    """Every datagram sent without a send error arrived, size and sha256 equal, nothing else."""
    want = sorted((d["bytes"], d["sha256"]) for d in (sent or {}).get("datagrams", []) if not d["error"])
    have = sorted((d["bytes"], d["sha256"]) for d in (got or {}).get("datagrams", []))
    return bool(want) and want == have, {"sent": [w[0] for w in want], "received": [h[0] for h in have]}


def message_delivered(ctx, name):
    w, a = ctx.workload(name), (ctx.cases.get(name) or {}).get("args", {})
    got = w.get("receiver") or {}
    ok = bool(a) and got.get("bytes") == a["bytes"] and got.get("sha256") == payload_sha256(ctx.ev.params.seed, a["bytes"])
    return ok, ({"bytes": got.get("bytes"), "sha256": (got.get("sha256") or "")[:16]} if ok or got
                else w.get("failure") or "no receiver report")


# -- sizes ------------------------------------------------------------------------------
def check_tcp_sizes(ctx):
    from wirelab.observe.impairment import read_packets
    from wirelab.observe.tcp_evidence import segment_sizes
    rows, ok_mss, ok_count, ok_bytes = ctx.ev.metrics["tcp_sizes"], True, True, True
    for n in ctx.ev.params.tcp_sizes:
        name = f"sizes/tcp-{n}"
        pk, why = ctx.packets(name, "sender.pcap")
        seg = segment_sizes(read_packets(ctx.ev.path(name, "sender.pcap")), ctx.h1) if not why else {}
        per = ipfrag.tcp_payload_per_segment(seg["mss_option"], seg["timestamps"]) if seg.get("mss_option") else None
        first, again = distinct_segments(tcp_data(pk, ctx.h1, ctx.h2, ctx.port(name)))
        row = rows[n] = {"mss_option": seg.get("mss_option"), "timestamps": seg.get("timestamps"),
                         "payload_per_segment": per, "largest": max((q.tcp_payload for q in first), default=None),
                         "data_segments": len(first), "retransmissions": again, "error": why,
                         "expected_segments": ipfrag.expected_data_segments(n, per) if per else None,
                         "delivered": message_delivered(ctx, name)[0]}
        ok_mss &= bool(per) and seg["mss_option"] == ctx.host_mtu - 40 and (row["largest"] or 1e9) <= per
        ok_count &= row["expected_segments"] is not None and row["data_segments"] == row["expected_segments"]
        ok_bytes &= row["delivered"]
    pers = sorted({r["payload_per_segment"] for r in rows.values()}, key=str)
    return [Claim(f"TCP: no data segment exceeds the MSS (SYN option = MTU {ctx.host_mtu} - 40; - 12 for timestamps)",
                  ok_mss, measured={n: r["largest"] for n, r in rows.items()},
                  expected=f"<= {pers} bytes of payload", tolerance=0,
                  evidence="sizes/tcp-*/sender.pcap: SYN options, every data segment"),
            Claim("TCP: an N-byte message takes ceil(N / payload per segment) data segments, none lost",
                  ok_count, measured={n: r["data_segments"] for n, r in rows.items()},
                  expected={n: r["expected_segments"] for n, r in rows.items()}, tolerance=0,
                  evidence="sizes/tcp-*/sender.pcap: distinct sequence numbers (retransmissions in metrics)"),
            Claim("TCP: the receiver got every message exactly (bytes, sha256)", ok_bytes,
                  measured={n: r["delivered"] for n, r in rows.items()}, expected="all true",
                  evidence="case.json workload.receiver; sha256 recomputed from the seed")]


def check_udp_sizes(ctx):
    name, w = "sizes/udp", ctx.workload("sizes/udp")
    pk, why = ctx.packets(name, "sender.pcap")
    layouts = udp_layouts(pk, ctx.h1, ctx.h2)
    want = {n: ipfrag.path_layout(ipfrag.UDP_HEADER + n, [ctx.host_mtu]) for n in ctx.ev.params.udp_sizes}
    ok_layout = not why and all(layouts.get(n, {}).get("layout") == lay for n, lay in want.items())
    problems = {n: d["problems"] for n, d in layouts.items() if d["problems"]}
    ids = [d["ident"] for d in layouts.values()]
    delivered, figures = received_ok(w.get("sender"), w.get("receiver"))
    ctx.ev.metrics["udp_sizes"] = {n: {"fragments": len(layouts.get(n, {}).get("layout", [])),
                                       "expected": len(lay), "ip_id": layouts.get(n, {}).get("ident"),
                                       "layout": layouts.get(n, {}).get("layout")} for n, lay in want.items()}
    return [Claim(f"UDP: a datagram above the MTU ({ctx.host_mtu - 28} B of data) leaves h1 IP-fragmented, "
                  f"{ipfrag.fragment_payload(ctx.host_mtu)} B of payload per fragment",
                  ok_layout, measured=why or {n: len(layouts.get(n, {}).get("layout", [])) for n in want},
                  expected={n: len(lay) for n, lay in want.items()}, tolerance="exact (offset, length, MF) per fragment",
                  evidence="sizes/udp/sender.pcap; ipfrag.path_layout"),
            Claim("UDP: fragments at offsets in 8-byte units, contiguous, MF on all but the last, one IP ID per datagram",
                  bool(layouts) and not problems and len(set(ids)) == len(ids) == len(want),
                  measured=problems or {"datagrams": len(ids), "distinct IP IDs": len(set(ids))},
                  expected={"datagrams": len(want), "distinct IP IDs": len(want)},
                  evidence="sizes/udp/sender.pcap"),
            Claim("UDP: the receiver got every datagram whole (size and sha256 equal)", delivered,
                  measured=figures, expected="the sizes sent", evidence="case.json workload (udpflow both sides)")]


# -- a lower MTU on r2-r3 -----------------------------------------------------------------
def check_mtu_udp(ctx, icmp_source):
    claims, m = [], ctx.ev.metrics["mtu"]
    name, w = "mtu/udp-df-clear", ctx.workload("mtu/udp-df-clear")
    (pk_s, why_s), (pk_a, why_a) = ctx.packets(name, "sender.pcap"), ctx.packets(name, "after.pcap")
    at_h1, after = udp_layouts(pk_s, ctx.h1, ctx.h2), udp_layouts(pk_a, ctx.h1, ctx.h2)
    sizes = (ctx.cases.get(name) or {}).get("args", {}).get("sizes", [])
    want = {n: (ipfrag.path_layout(8 + n, [ctx.host_mtu]), ipfrag.path_layout(8 + n, [ctx.host_mtu, ctx.mtu]))
            for n in sizes}
    got = {n: (at_h1.get(n, {}).get("layout"), after.get(n, {}).get("layout")) for n in sizes}
    fits = all(d["largest"] <= ctx.mtu and not d["problems"] for d in after.values())
    delivered, figures = received_ok(w.get("sender"), w.get("receiver"))
    m["udp_df_clear"] = {n: {"at_h1": got[n][0], "after_r2": got[n][1]} for n in sizes}
    claims += [Claim(f"DF clear: r2 fragments each datagram to fit MTU {ctx.mtu} (fragments of fragments keep offsets)",
                     bool(sizes) and not (why_s or why_a) and got == want and fits,
                     measured=why_s or why_a or {n: [len(a or []), len(b or [])] for n, (a, b) in got.items()},
                     expected={n: [len(a), len(b)] for n, (a, b) in want.items()},
                     tolerance="exact layouts; [fragments at h1, after r2]", evidence=f"{name}/sender.pcap, after.pcap"),
               Claim("DF clear: the receiver got every datagram whole across the lower MTU", delivered,
                     measured=figures, expected="the sizes sent", evidence=f"{name}/case.json workload")]
    name, w = "mtu/udp-df-set", ctx.workload("mtu/udp-df-set")
    (pk_s, why_s), (pk_a, why_a) = ctx.packets(name, "sender.pcap"), ctx.packets(name, "after.pcap")
    icmp = frag_needed(pk_s, ctx.h1, ctx.h1, ctx.h2, ipfrag.PROTO_UDP)
    big = too_big(pk_s, ctx.h1, ctx.h2, ctx.mtu)
    m["udp_df_set"] = {"icmp": [{"from": p.src, "next_hop_mtu": p.next_hop_mtu, "quoted_length": p.quoted.total_length,
                                 "quoted_df": p.quoted.df} for p in icmp], "too_big_sent": len(big),
                       "route_mtu": [w.get("route_mtu_before"), w.get("route_mtu_after")]}
    claims.append(Claim(f"DF set: r2 answers each too-big datagram with ICMP 3/4 'fragmentation needed', next-hop MTU {ctx.mtu}",
                        bool(icmp) and len(icmp) == len(big) and all(
                            p.src == icmp_source and p.next_hop_mtu == ctx.mtu and p.quoted.df for p in icmp),
                        measured=why_s or m["udp_df_set"]["icmp"] or "no ICMP at h1",
                        expected={"from": icmp_source, "next_hop_mtu": ctx.mtu, "count": len(big)},
                        evidence=f"{name}/sender.pcap (ICMP and the DF datagrams it quotes)"))
    claims.append(Claim(f"path MTU discovery: h1's cached route MTU to h2 went from none to {ctx.mtu}",
                        w.get("route_mtu_before") is None and w.get("route_mtu_after") == ctx.mtu,
                        measured={"before": w.get("route_mtu_before"), "after": w.get("route_mtu_after")},
                        expected={"before": None, "after": ctx.mtu},
                        evidence="netlink RTM_GETROUTE on h1, RTA_METRICS RTAX_MTU (ip route get)"))
    then = (w.get("then") or {}).get("sender") or {}
    errors = [d["error"] for d in then.get("datagrams", [])]
    ok, figures = received_ok(then, (w.get("then") or {}).get("receiver"))
    crossed = udp_payloads(pk_a, ctx.h1, ctx.h2)
    claims.append(Claim("then h1's kernel refuses a DF datagram above the path MTU (EMSGSIZE); the one that fits "
                        "arrives whole; nothing bigger crossed r2",
                        errors == ["EMSGSIZE", None] and ok and not why_a and all(
                            p.total_length <= ctx.mtu for p in pk_a if p.src == ctx.h1),
                        measured={"send errors": errors, **figures, "crossed r2": crossed},
                        expected={"send errors": ["EMSGSIZE", None], "received": [900]},
                        evidence=f"{name}/case.json workload.then; after.pcap"))
    return claims


def _shrink(segs):
    """Payload sizes of a flow's transmissions of its first segment, and the times (ms) after the first."""
    stuck = transmissions_of_first(segs)
    t0 = stuck[0].ts_ns if stuck else 0
    return [[round((p.ts_ns - t0) / 1e6, 1), p.tcp_payload] for p in stuck]


def check_mtu_tcp(ctx):
    from wirelab.observe.impairment import read_packets
    from wirelab.observe.tcp_evidence import segment_sizes
    claims, m, fit = [], ctx.ev.metrics["mtu"], ctx.mtu - 40 - 12
    name, w = "mtu/tcp-pmtud", ctx.workload("mtu/tcp-pmtud")
    (pk_s, why), (pk_a, _) = ctx.packets(name, "sender.pcap"), ctx.packets(name, "after.pcap")
    segs = tcp_data(pk_s, ctx.h1, ctx.h2, ctx.port(name))
    icmp, big = frag_needed(pk_s, ctx.h1, ctx.h1, ctx.h2, ipfrag.PROTO_TCP), too_big(pk_s, ctx.h1, ctx.h2, ctx.mtu)
    seg = segment_sizes(read_packets(ctx.ev.path(name, "sender.pcap")), ctx.h1) if not why else {}
    last_icmp = max((p.index for p in icmp), default=None)
    later = [p.tcp_payload for p in segs if last_icmp is not None and p.index > last_icmp]
    delivered = [p.tcp_payload for p in tcp_data(pk_a, ctx.h1, ctx.h2, ctx.port(name))]
    ok, got = message_delivered(ctx, name)
    m["tcp_pmtud"] = {"mss_option": seg.get("mss_option"), "first_payload": segs[0].tcp_payload if segs else None,
                      "too_big_sent": len(big), "icmp": len(icmp), "next_hop_mtu": sorted({p.next_hop_mtu for p in icmp}),
                      "largest_after_icmp": max(later, default=None), "largest_after_r2": max(delivered, default=None),
                      "route_mtu_after": w.get("route_mtu_after")}
    claims += [Claim(f"TCP PMTUD: SYN announces MSS {ctx.host_mtu - 40} (h1 cannot know the middle link); "
                     f"r2 answers every too-big DF segment with ICMP 3/4, next-hop MTU {ctx.mtu}",
                     seg.get("mss_option") == ctx.host_mtu - 40 and bool(icmp) and len(icmp) == len(big)
                     and {p.next_hop_mtu for p in icmp} == {ctx.mtu},
                     measured={k: m["tcp_pmtud"][k] for k in ("mss_option", "too_big_sent", "icmp", "next_hop_mtu")},
                     expected={"mss_option": ctx.host_mtu - 40, "icmp": "= too_big_sent >= 1", "next_hop_mtu": [ctx.mtu]},
                     evidence=f"{name}/sender.pcap"),
               Claim(f"TCP's segments shrink to fit: first {ctx.host_mtu - 52} B, after the ICMP <= {fit} B "
                     f"= {ctx.mtu} - 40 - 12 (timestamps), the largest exactly that; h1 caches MTU {ctx.mtu}",
                     bool(segs) and segs[0].tcp_payload == ctx.host_mtu - 52 and bool(later) and max(later) == fit
                     and max(delivered, default=0) == fit and w.get("route_mtu_after") == ctx.mtu,
                     measured={k: m["tcp_pmtud"][k] for k in ("first_payload", "largest_after_icmp",
                                                              "largest_after_r2", "route_mtu_after")},
                     expected={"first_payload": ctx.host_mtu - 52, "largest": fit, "route_mtu_after": ctx.mtu},
                     evidence=f"{name}/sender.pcap, after.pcap; netlink RTAX_MTU"),
               Claim("TCP PMTUD: the receiver got the exact bytes", ok, measured=got, expected="bytes and sha256 sent",
                     evidence=f"{name}/case.json workload.receiver")]
    for name in ("mtu/tcp-blackhole", "mtu/tcp-probing"):
        w, label = ctx.workload(name), name.split("-")[1]
        (pk_s, why), (pk_a, why_a) = ctx.packets(name, "sender.pcap"), ctx.packets(name, "after.pcap")
        segs = tcp_data(pk_s, ctx.h1, ctx.h2, ctx.port(name))
        icmp, big = frag_needed(pk_s, ctx.h1, ctx.h1, ctx.h2, ipfrag.PROTO_TCP), too_big(pk_s, ctx.h1, ctx.h2, ctx.mtu)
        fault = ((ctx.cases.get(name) or {}).get("faults") or [{}])[0].get("counters") or {}
        # an unreadable after.pcap is no evidence of a stall: None fails the claim
        crossed = None if why_a else flowmix.covered_bytes(tcp_data(pk_a, ctx.h1, ctx.h2, ctx.port(name)))
        stuck = _shrink(segs)
        m[label] = {"fault": fault, "too_big_sent": len(big), "icmp_at_h1": len(icmp), "bytes_after_r2": crossed,
                    "first_segment": stuck, "route_mtu_after": w.get("route_mtu_after"), "kernel": w.get("kernel")}
        claims.append(Claim(f"{label}: r2's rule dropped every ICMP frag-needed (one per too-big DF packet), none "
                            "reached h1, h1 cached no path MTU",
                            not why and bool(big) and fault.get("matched") == fault.get("dropped") == len(big)
                            and not icmp and w.get("route_mtu_after") is None,
                            measured={"rule": fault, "too_big_sent": len(big), "icmp_at_h1": len(icmp),
                                      "route_mtu": w.get("route_mtu_after")},
                            expected={"matched = dropped": len(big), "icmp_at_h1": 0, "route_mtu": None},
                            evidence=f"{name}/case.json faults (rule counters), sender.pcap; netlink RTAX_MTU"))
        if label == "blackhole":
            claims.append(_stall_claim(ctx, name, stuck, crossed, w))
        else:
            claims += _probing_claims(ctx, name, stuck, pk_a, w)
    return claims


def _stall_claim(ctx, name, stuck, crossed, w):
    stall = ctx.ev.params.stall_seconds
    k, full = stall_retransmissions(stall), ctx.host_mtu - 52
    gaps = [b[0] - a[0] for a, b in zip(stuck, stuck[1:])]
    windows = [backoff_window_ms(g) for g in gaps[:-1]]
    doubling = all(lo <= g <= hi for g, (lo, hi) in zip(gaps[1:], windows))
    return Claim(f"black hole: TCP stalls: no byte crossed r2 in {stall:g} s; h1 re-sent its first segment "
                 f">= {k} times at full size ({full} B), each RTO doubling",
                 crossed == 0 and len(stuck) - 1 >= k and all(n == full for _, n in stuck) and bool(gaps)
                 and gaps[0] >= TCP_RTO_MIN_MS - JIFFY_MAX_MS and doubling and not (w.get("receiver") or {}).get("bytes"),
                 measured={"bytes_after_r2": crossed, "retransmissions": len(stuck) - 1,
                           "sizes": sorted({n for _, n in stuck}), "intervals_ms": [round(g, 1) for g in gaps],
                           "sender": (w.get("sender") or {}).get("aborted")},
                 expected={"bytes_after_r2": 0, "retransmissions": f">= {k}", "first interval": f">= {TCP_RTO_MIN_MS:g} ms"},
                 tolerance=f"each interval in 2x the previous /{_LATE:g} .. x{_LATE:g} (timer wheel) +- {JIFFY_MAX_MS:g} ms; "
                           f"k from TCP_RTO_MIN {TCP_RTO_MIN_MS:g} ms within {stall:g} s - {STALL_START_SLACK_MS:g} ms",
                 evidence=f"{name}/sender.pcap, after.pcap")


def _probing_claims(ctx, name, stuck, pk_a, w):
    change = next((c for c in w.get("sysctls", []) if c["key"] == "net/ipv4/tcp_mtu_probing"), {})
    retries1 = int((w.get("kernel") or {}).get("net/ipv4/tcp_retries1", -1))
    detect = blackhole_detection_ms(retries1) if retries1 >= 0 else None
    first_small = next((t for t, n in stuck if stuck and n < stuck[0][1]), None)
    fit = ctx.mtu - 40 - 12
    sizes = [p.tcp_payload for p in tcp_data(pk_a, ctx.h1, ctx.h2, ctx.port(name))]
    ok, got = message_delivered(ctx, name)
    ctx.ev.metrics["mtu"]["probing"].update(first_smaller_after_ms=first_small, detection_ms=detect,
                                            largest_after_r2=max(sizes, default=None))
    return [Claim("probing: tcp_mtu_probing=1 on h1 for the case (read back), restored afterwards",
                  change.get("readback") == "1" and change.get("after_restore") == change.get("before") is not None,
                  measured={k: change.get(k) for k in ("before", "readback", "after_restore")},
                  expected={"readback": "1", "after_restore": "= before"}, evidence=f"{name}/case.json workload.sysctls"),
            Claim("probing: with the black hole still there, TCP shrinks its segments by itself and delivers the exact bytes",
                  ok and bool(sizes) and max(sizes) <= fit, measured={"receiver": got, "largest_after_r2": max(sizes, default=None)},
                  expected={"largest_after_r2": f"<= {fit}"}, evidence=f"{name}/after.pcap; case.json workload.receiver"),
            Claim("probing: the first smaller copy of the stuck segment came only after black-hole detection "
                  f"(tcp_retries1 = {retries1} RTO expiries)",
                  first_small is not None and detect is not None and first_small >= detect - JIFFY_MAX_MS,
                  measured={"first_smaller_after_ms": first_small, "sizes_tried": [n for _, n in stuck]},
                  expected=f">= ((2 << {retries1}) - 1) x TCP_RTO_MIN = {detect} ms",
                  tolerance=f"-{JIFFY_MAX_MS:g} ms (a jiffy)", evidence=f"{name}/sender.pcap; h1's tcp_retries1")]


# -- sharing one link ---------------------------------------------------------------------
def sharing_flows(case, ips, with_records=False):
    """``{flow key: label}`` of the sharing case's connections, from the
    receivers' reports (the peer's address and port); ``with_records``: the
    values are ``(label, record)``."""
    out = {}
    for r in (case.get("workload") or {}).get("flows", []):
        peer, f = (r.get("receiver") or {}).get("peer"), r["flow"]
        if peer:
            key = flowmix.flow_key(peer[0], peer[1], ips[f["receiver"]], f["port"])
            label = f"{f['sender']}:{peer[1]} -> {f['receiver']}:{f['port']}"
            out[key] = (label, r) if with_records else label
    return out


def check_sharing(ctx, bell):
    case = ctx.cases.get("sharing") or {}
    records = (case.get("workload") or {}).get("flows", [])
    tally = Tally()
    for r in records:
        got = r.get("receiver") or {}
        f = r["flow"]
        tally.check("bytes", got.get("bytes") == f["bytes"] and got.get("sha256") == payload_sha256(r["seed"], f["bytes"]),
                    f"{f['sender']}:{f['port']}", r.get("failure") or f"{got.get('bytes')} bytes")
    declared = sharing_flows(case, bell.get("ips", {}), with_records=True)
    flows = {k: label for k, (label, _) in declared.items()}
    pk, why = ctx.packets("sharing", "shared.pcap")
    by_flow, unmatched = flowmix.data_packets_by_flow(pk, flows)
    spans = flowmix.active_intervals(by_flow)
    hosts = {k: k.split(":")[0] for k in flows}
    alt = flowmix.alternations(by_flow)
    pairs = [(a, b) for a in spans for b in spans if a < b and flowmix.overlapping(spans, a, b)]
    lonely = [flows[k] for k in spans if not any(k in pair for pair in pairs)]
    cross = sum(1 for a, b in pairs if hosts[a] != hosts[b])
    crowded = {h for h in hosts.values() if sum(1 for k in spans if hosts[k] == h) > 1}
    siblings = {hosts[a] for a, b in pairs if hosts[a] == hosts[b]}
    covered = {flows[k]: flowmix.covered_bytes(ps) for k, ps in by_flow.items()}
    ports = {h: sorted(int(k.split(":")[1].split("-")[0]) for k in flows if hosts[k] == h) for h in set(hosts.values())}
    ctx.ev.metrics["sharing"] = {"flows": len(flows), "packets": {flows[k]: len(ps) for k, ps in by_flow.items()},
                                 "unmatched": unmatched, "alternations": alt, "bytes_on_link": covered,
                                 "source_ports": ports, "spans_ms": {flows[k]: [round((a - min(s[0] for s in spans.values())) / 1e6, 1),
                                                                               round((b - min(s[0] for s in spans.values())) / 1e6, 1)]
                                                                     for k, (a, b) in spans.items()}}
    n = len(records)
    return [tally.claim("bytes", f"sharing: all {n} connections delivered their exact bytes (sha256)",
                        "sharing/case.json workload.flows", "flows"),
            Claim(f"sharing: {n} connections from {len(ports)} hosts told apart by address and port; every data "
                  "packet on the link belongs to exactly one, carrying exactly its bytes",
                  not why and len(flows) == n > 1 and unmatched == 0 and len(ports) == 2
                  and all(covered[label] == r["flow"]["bytes"] for label, r in declared.values()),
                  measured=why or {"source ports per host": ports, "unmatched packets": unmatched},
                  expected={"flows": n, "unmatched packets": 0}, evidence="sharing/shared.pcap 4-tuples"),
            Claim("sharing: their packets interleave on the wire: more flow changes than one-after-another's, "
                  "every flow on the wire with another, programs of one host together, both hosts together",
                  not why and alt > n - 1 and bool(spans) and not lonely and cross > 0 and siblings == crowded,
                  measured={"alternations": alt, "alone on the wire": lonely, "overlapping pairs across hosts": cross,
                            "hosts whose programs overlap": sorted(siblings)},
                  expected={"alternations": f"> {n - 1}", "alone on the wire": [], "across hosts": ">= 1",
                            "hosts whose programs overlap": sorted(crowded)},
                  evidence="sharing/shared.pcap, data packets in wire order")]
