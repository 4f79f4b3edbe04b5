"""Several TCP connections on one link: which packet belongs to which flow,
how they interleave in time, and plots of it. Pure functions of a capture's
packets (:func:`wirelab.observe.ipfrag.read_ip_packets`) and saved JSON.

A flow is told apart by its 4-tuple ``(src, sport, dst, dport)``: several
programs on one host differ in their (ephemeral) source ports, several hosts in
their addresses. Interleaving is counted as *alternations*: adjacent data
packets, in wire order, of different flows. Flows sent one after another would
give exactly ``flows - 1``; sharing the link gives many more.
"""

from wirelab.observe.ipfrag import PROTO_TCP


def flow_key(src, sport, dst, dport):
    return f"{src}:{sport}->{dst}:{dport}"


def data_packets_by_flow(packets, flows):
    """``({key: [IpPacket]}, unmatched)``: TCP data packets of ``packets``
    assigned to the declared flows (keys of :func:`flow_key`), and the count of
    data packets that belong to none."""
    out, unmatched = {k: [] for k in flows}, 0
    for p in packets:
        if p.proto != PROTO_TCP or not p.tcp_payload:
            continue
        key = flow_key(p.src, p.sport, p.dst, p.dport)
        if key in out:
            out[key].append(p)
        else:
            unmatched += 1
    return out, unmatched


def alternations(packets_by_flow):
    """Adjacent data packets (in capture order) that belong to different flows."""
    order = sorted((p.index, k) for k, ps in packets_by_flow.items() for p in ps)
    return sum(1 for (_, a), (_, b) in zip(order, order[1:]) if a != b)


def active_intervals(packets_by_flow):
    """``{key: (first ns, last ns)}`` of each flow's data on the wire."""
    return {k: (ps[0].ts_ns, ps[-1].ts_ns) for k, ps in packets_by_flow.items() if ps}


def overlapping(intervals, a, b):
    (a0, a1), (b0, b1) = intervals[a], intervals[b]
    return a0 <= b1 and b0 <= a1


def covered_bytes(packets):
    """Distinct payload bytes of one flow's data packets (a retransmission counts once)."""
    seen = {}
    for p in packets:
        seen[p.seq] = max(seen.get(p.seq, 0), p.tcp_payload)
    return sum(seen.values())


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_flows(packets_by_flow, labels, out_png, title, zoom_packets=120):
    """Top: every data packet, time against the flow's relative sequence number,
    one colour per flow. Bottom: the first ``zoom_packets`` packets after the
    moment most flows were active, one row per flow: the interleaving."""
    plt = _pyplot()
    keys = [k for k in packets_by_flow if packets_by_flow[k]]
    if not keys:
        return False
    t0 = min(packets_by_flow[k][0].ts_ns for k in keys)
    colours = plt.get_cmap("tab10")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), gridspec_kw={"height_ratios": [3, 2]})
    for i, k in enumerate(keys):
        ps = packets_by_flow[k]
        isn = min(p.seq for p in ps)
        top.plot([(p.ts_ns - t0) / 1e6 for p in ps], [((p.seq - isn) & 0xFFFFFFFF) / 1e6 for p in ps],
                 ".", ms=1.5, color=colours(i % 10), label=labels.get(k, k))
    top.set_xlabel("time at the shared link (ms)")
    top.set_ylabel("relative sequence (MB)")
    top.set_title(title)
    top.legend(fontsize=7, markerscale=6, loc="upper left")
    top.grid(alpha=0.3)
    starts = sorted(packets_by_flow[k][0].ts_ns for k in keys)
    busiest = starts[len(starts) // 2]
    order = sorted((p.index, p.ts_ns, i) for i, k in enumerate(keys) for p in packets_by_flow[k]
                   if p.ts_ns >= busiest)[:zoom_packets]
    for n, (_, _, i) in enumerate(order):
        bottom.plot([n], [i], "s", ms=4, color=colours(i % 10))
    bottom.set_yticks(range(len(keys)))
    bottom.set_yticklabels([labels.get(k, k) for k in keys], fontsize=7)
    bottom.set_xlabel(f"data packets in wire order (the {len(order)} after half the flows had started)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return True


def plot_segment_sizes(series, mtu_payload, out_png, title):
    """Payload size of each data segment the sender sent, over time (``series``:
    ``{label: [(t_ms, payload)]}``), beside the largest that fits the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, points in series.items():
        ax.plot([t for t, _ in points], [n for _, n in points], "o", ms=3, mfc="none", label=label)
    ax.axhline(mtu_payload, ls="--", color="gray", lw=1, label=f"largest payload the path carries ({mtu_payload})")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("time since the first data segment (ms, log beyond 10)")
    ax.set_ylabel("TCP payload (bytes)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return True
