"""Message sequence charts: one vertical lane per host, one arrow per message.

    draw(["home1", "hgw", "isp"], [Arrow(t, "home1", "hgw", "DISCOVER"), ...],
         "dora.png", "DHCP: DISCOVER, OFFER, REQUEST, ACK")

Time runs down; arrows are drawn in time order, one row each, with the time
since the first message (ms) at the left. An arrow whose ``dst`` is None ends
in a cross halfway: a message nobody answered or that went nowhere. A
``note`` on a lane (``src == dst``) is written beside it. Only what the caller
read from the captures is drawn; this module reads no file.
"""

import dataclasses

MAX_ARROWS = 80


@dataclasses.dataclass(frozen=True)
class Arrow:
    t: float            # seconds (capture clock)
    src: str            # lane
    dst: str            # lane, or None: unanswered / nowhere
    label: str
    color: str = "C0"
    dashed: bool = False


def draw(lanes, arrows, path, title, lane_labels=None, max_arrows=MAX_ARROWS):
    """Write the chart to ``path`` (PNG); returns the number of arrows drawn."""
    from wirelab.observe.plots import _pyplot
    plt = _pyplot()
    arrows = sorted(arrows, key=lambda a: a.t)
    cut = len(arrows) > max_arrows
    arrows = arrows[:max_arrows]
    x = {lane: i for i, lane in enumerate(lanes)}
    rows = max(len(arrows), 3)
    fig, ax = plt.subplots(figsize=(2.0 + 2.3 * len(lanes), 1.4 + 0.36 * rows))
    top = -0.8
    for lane, i in x.items():
        ax.plot([i, i], [top + 0.3, rows + 0.3], color="0.6", lw=1.2, zorder=1)
        ax.text(i, top, (lane_labels or {}).get(lane, lane), ha="center", va="bottom", fontsize=9,
                fontweight="bold", bbox={"boxstyle": "round", "fc": "0.93", "ec": "0.6"})
    t0 = arrows[0].t if arrows else 0.0
    for row, a in enumerate(arrows, start=0):
        y = row + 0.5
        ax.text(-0.65, y, f"{(a.t - t0) * 1e3:9.1f} ms", ha="right", va="center", fontsize=7,
                family="monospace", color="0.35")
        xs = x[a.src]
        style = "--" if a.dashed else "-"
        if a.dst == a.src:
            ax.plot([xs], [y], marker="o", color=a.color, ms=4, zorder=3)
            ax.text(xs + 0.08, y, a.label, ha="left", va="center", fontsize=7, color=a.color)
            continue
        if a.dst is None:
            xe = xs + (0.45 if xs < len(lanes) - 1 else -0.45)
            ax.annotate("", xy=(xe, y), xytext=(xs, y),
                        arrowprops={"arrowstyle": "-", "color": a.color, "ls": style, "lw": 1.2})
            ax.plot([xe], [y], marker="x", color=a.color, ms=7, mew=2, zorder=3)
            ax.text((xs + xe) / 2, y - 0.12, a.label, ha="center", va="bottom", fontsize=7, color=a.color)
            continue
        xe = x[a.dst]
        ax.annotate("", xy=(xe, y), xytext=(xs, y),
                    arrowprops={"arrowstyle": "-|>", "color": a.color, "ls": style, "lw": 1.2,
                                "shrinkA": 0, "shrinkB": 0})
        ax.text((xs + xe) / 2, y - 0.12, a.label, ha="center", va="bottom", fontsize=7, color=a.color)
    if cut:
        ax.text(len(lanes) / 2 - 0.5, rows + 0.2, f"(first {max_arrows} messages shown)", ha="center",
                fontsize=7, color="0.4")
    ax.set_xlim(-1.6, len(lanes) - 0.4)
    ax.set_ylim(rows + 0.5, top - 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return len(arrows)
