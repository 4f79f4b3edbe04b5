"""Plots drawn from saved evidence only (pcaps and JSON files), as PNGs."""

from wirelab.observe.pcap import analysis, iter_segments
from wirelab.observe.pcap.tcpflags import ACK


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def time_sequence(pcap, drops, out_png, title):
    """Stevens' time-sequence graph of the flow in ``pcap`` (the first TCP
    flow's data direction): first transmissions, re-sent segments, the
    cumulative ACK, and the packets the ledger saw dropped (``drops``: its
    entries with ``t_ns`` and ``rel_seq``). Returns False when the capture
    holds no segments."""
    segs = list(iter_segments(pcap))
    if not segs:
        return False
    plt = _pyplot()
    t0 = segs[0]["ts_ns"]
    data = [s for s in segs if s["dir"] == 0 and s["len"] > 0]
    acks = [s for s in segs if s["dir"] == 1 and s["flags"] & ACK]
    # A quick retransmission is "out-of-order" to Wireshark: mark both.
    resent = analysis.ANY_RETRANSMISSION | analysis.OUT_OF_ORDER
    first = [s for s in data if not s["analysis"] & resent]
    retx = [s for s in data if s["analysis"] & resent]
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot([(s["ts_ns"] - t0) / 1e6 for s in first], [s["rel_seq"] / 1e3 for s in first],
            ".", ms=2, color="tab:blue", label="data (first transmission)")
    ax.plot([(s["ts_ns"] - t0) / 1e6 for s in retx], [s["rel_seq"] / 1e3 for s in retx],
            "x", ms=5, color="tab:red", label=f"re-sent ({len(retx)}; Wireshark: retransmission or out-of-order)")
    ax.step([(s["ts_ns"] - t0) / 1e6 for s in acks], [s["rel_ack"] / 1e3 for s in acks],
            where="post", lw=0.8, color="tab:green", label="cumulative ACK")
    ax.plot([(e["t_ns"] - t0) / 1e6 for e in drops], [(e["rel_seq"] - 1) / 1e3 for e in drops], "o",
            mfc="none", ms=7, color="black", label=f"dropped by the network ({len(drops)}, ledger)")
    ax.set_xlabel("time since first packet at the capture point (ms)")
    ax.set_ylabel("relative sequence number (kB)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return True


def goodput_vs_loss(points, model, out_png, title):
    """Measured goodput against loss (configured and measured) beside a model
    ``model(mss_bytes, rtt_s, p) -> bit/s`` at the median RTT."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    ok = [x for x in points if x["goodput_bps"]]
    ax.plot([x["loss_percent"] for x in ok], [x["goodput_bps"] / 1e6 for x in ok], "o",
            mfc="none", color="tab:blue", label="measured goodput at the configured loss")
    at_measured = [x for x in ok if x["measured_loss"]]
    ax.plot([100 * x["measured_loss"] for x in at_measured],
            [x["goodput_bps"] / 1e6 for x in at_measured], "o", color="tab:blue",
            label="measured goodput at the measured loss (ledger)")
    for x in at_measured:
        ax.plot([x["loss_percent"], 100 * x["measured_loss"]], [x["goodput_bps"] / 1e6] * 2,
                ":", lw=0.8, color="tab:blue")
    good = [x for x in points if x["mathis_bps"]]
    xs = [x["loss_percent"] for x in points] + [100 * x["measured_loss"] for x in at_measured]
    if good and min(xs) > 0:
        rtt = sorted(x["rtt_ms"] for x in good)[len(good) // 2]
        mss = good[0]["mss"]
        grid = [min(xs) * (max(xs) / min(xs)) ** (i / 50) for i in range(51)]
        ax.plot(grid, [model(mss, rtt / 1000, g / 100) / 1e6 for g in grid], "-", color="tab:orange",
                label=f"Mathis: MSS/RTT x sqrt(3/2)/sqrt(p), MSS {mss} B, RTT {rtt:.1f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("loss (%): netem setting, or measured by the ledger")
    ax.set_ylabel("goodput (Mbit/s)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
