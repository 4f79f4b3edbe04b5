"""The ``heartbeats`` experiment's plots, drawn from its results folder only.

* ``<case>/timeline.png``: a row per chunkserver -- each heartbeat's arrival
  (fresh, overtaken, duplicate), the ones lost (at their send time), the
  periods each detector held it dead (fixed-k above, phi below), the fault
  window shaded;
* ``sweep/false_dead_vs_loss.png``: fixed-k's measured mean time to a false
  "dead" (exact Poisson interval) against loss, beside T(1-p^k)/((1-p)p^k);
  phi's false "dead" counts beside them;
* ``tcp_vs_udp/tcp_vs_udp.png``: the same heartbeats over TCP and UDP: arrival
  order over time, and one-way delay distributions.
"""

from wirelab.apps.detectors import FIXED, PHI
from wirelab.experiment.heartbeat_evidence import load_case
from wirelab.experiment.heartbeat_model import mttf_fixed_k


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_all(ev):
    for case in ev.cases():
        if case.get("error") or not case.get("workload"):
            continue
        cd = load_case(ev, case)
        timeline(cd, ev.path(cd.name, "timeline.png"))
        if cd.name == "sweep" and ev.exists("sweep", "points.json"):
            false_dead_vs_loss(ev.json("sweep", "points.json"), cd, ev.path("sweep", "false_dead_vs_loss.png"))
        if cd.name == "tcp_vs_udp":
            tcp_vs_udp(cd, ev.path(cd.name, "tcp_vs_udp.png"))


def _dead_periods(cs, detector, end):
    periods, start = [], None
    for e in cs.states:
        if e["detector"] != detector:
            continue
        if e["state"] == "dead" and start is None:
            start = e["t"]
        elif e["state"] == "alive" and start is not None:
            periods.append((start, e["t"]))
            start = None
    if start is not None:
        periods.append((start, end))
    return periods


def timeline(cd, out_png):
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    names = list(cd.chunkservers)
    t0 = min((min(cs.sends.values()) for cs in cd.chunkservers.values() if cs.sends), default=0.0)
    end = max([t for cs in cd.chunkservers.values() for _, t, _ in cs.recvs] + [t0]) + cd.interval * 5
    cut = (cd.record.get("fault") or {}).get("chunkserver")
    fig, ax = plt.subplots(figsize=(11, 1.4 + 0.8 * len(names)))
    colors = {"fresh": "black", "late": "tab:orange", "duplicate": "tab:red"}
    for row, name in enumerate(reversed(names)):
        cs = cd.chunkservers[name]
        if name == cut:
            for down, up in cd.windows:
                ax.fill_between([down - t0, up - t0], row - 0.45, row + 0.45, color="gold", alpha=0.4, lw=0)
        seen, hi = set(), -1
        kinds = {"fresh": [], "late": [], "duplicate": []}
        for _, t, s in cs.recvs:
            kind = "duplicate" if s in seen else ("fresh" if s > hi else "late")
            seen.add(s)
            hi = max(hi, s)
            kinds[kind].append(t - t0)
        for kind, times in kinds.items():
            y = 0.12 if kind == "duplicate" else 0.0
            ax.vlines(times, row + y - 0.1, row + y + 0.1, color=colors[kind], lw=0.7)
        lost = [cs.sends[s] - t0 for s in cs.analysis["lost_seqs"] if s in cs.sends]
        ax.vlines(lost, row - 0.05, row + 0.05, color="grey", lw=0.7)
        for det, y, color, mark in ((FIXED, 0.3, "tab:red", "v"), (PHI, -0.3, "tab:blue", "^")):
            periods = _dead_periods(cs, det, end)
            for a, b in periods:
                ax.fill_between([a - t0, b - t0], row + y - 0.07, row + y + 0.07, color=color, alpha=0.7, lw=0)
            # a marker per decision: a suspicion ended by the next heartbeat may last a millisecond
            ax.plot([a - t0 for a, _ in periods], [row + y] * len(periods), mark, color=color, ms=5)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{n} {_spec_text(cd.netem.get(cd.chunkservers[n].node))}" for n in reversed(names)],
                       fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, end - t0)
    ax.set_xlabel("seconds since the first heartbeat was sent")
    ax.set_title(f"heartbeats {cd.name}: arrivals at the main server and each detector's verdict "
                 f"(T = {1000 * cd.interval:g} ms, k = {cd.k})", fontsize=10)
    handles = [Line2D([], [], color=c, lw=1, label=f"{k} arrival") for k, c in colors.items()] + [
        Line2D([], [], color="grey", lw=1, label="lost (at its send time)"),
        Line2D([], [], color="tab:red", marker="v", lw=6, alpha=0.7, label="fixed-k says dead (above)"),
        Line2D([], [], color="tab:blue", marker="^", lw=6, alpha=0.7, label="phi says dead (below)")]
    if cd.windows:
        handles.append(Patch(color="gold", alpha=0.4, label="link down"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _spec_text(spec):
    if not spec:
        return "(no netem)"
    parts = [f"{k} {spec[k]:g}%" for k in ("loss", "duplicate", "reorder") if spec.get(k)]
    if spec.get("delay"):
        parts.append(f"delay {spec['delay']:g}" + (f"±{spec['jitter']:g}" if spec.get("jitter") else "") + " ms")
    return "(" + ", ".join(parts) + ")"


def false_dead_vs_loss(points, cd, out_png):
    plt = _pyplot()
    T, k = cd.interval, cd.k
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    ps = [x / 100 for x in range(3, 70)]
    ax.plot([100 * p for p in ps], [mttf_fixed_k(p, k, T) for p in ps], color="tab:gray",
            label=f"theory T(1-p^k)/((1-p)p^k), k={k}")
    for pt in points:
        if pt["loss"] == 0:
            continue
        lo, hi = pt["poisson_99.99"]
        alive = pt["alive_s"]
        mid = alive / pt["fixed_false_lost"] if pt["fixed_false_lost"] else None
        top = alive / lo if lo > 0 else None
        bottom = alive / hi
        ax.vlines(100 * pt["loss"], bottom, top if top else 1e6, color="tab:red", lw=2, alpha=0.5)
        if mid:
            ax.plot(100 * pt["loss"], mid, "o", color="tab:red")
        else:
            ax.plot(100 * pt["loss"], alive, "^", color="tab:red", mfc="none")
    ax.plot([], [], "o-", color="tab:red", alpha=0.6, label="measured MTTF, 99.99% Poisson interval")
    ax.set_yscale("log")
    ax.set_ylim(0.1, 1e4)
    ax.set_xlabel("netem loss on the chunkserver's link (%)")
    ax.set_ylabel("mean time to a false 'dead' (s)")
    ax.set_title("fixed-k: measured vs independent-loss theory", fontsize=10)
    ax.legend(fontsize=8)
    xs = [100 * pt["loss"] for pt in points]
    width = 2.0
    bx.bar([x - width / 2 for x in xs], [pt["fixed_false"] for pt in points], width, color="tab:red", label="fixed-k")
    bx.bar([x + width / 2 for x in xs], [pt["phi_false"] for pt in points], width, color="tab:blue",
           label="phi accrual")
    bx.plot(xs, [pt["expected"] for pt in points], "_", ms=14, color="black", label="fixed-k: theory's expected count")
    bx.set_xlabel("netem loss (%)")
    bx.set_ylabel("false 'dead' decisions in the run")
    bx.set_title("false positives side by side, same arrivals", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def tcp_vs_udp(cd, out_png):
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    t0 = min(min(cs.sends.values()) for cs in cd.chunkservers.values() if cs.sends)
    for cs, color in zip(cd.chunkservers.values(), ("tab:orange", "tab:blue")):
        label = f"{cs.transport.upper()} ({cs.name})"
        seen = set()
        xs, ys, dx, dy = [], [], [], []
        for _, t, s in cs.recvs:
            (dx if s in seen else xs).append(t - t0)
            (dy if s in seen else ys).append(s)
            seen.add(s)
        ax.plot(xs, ys, ".", ms=3, color=color, label=f"{label}: arrival")
        if dx:
            ax.plot(dx, dy, "x", ms=5, color=color, label=f"{label}: duplicate")
        lost = cs.analysis["lost_seqs"]
        if lost:
            ax.plot([cs.sends[s] - t0 for s in lost if s in cs.sends], [s for s in lost if s in cs.sends], "o",
                    mfc="none", ms=4, color="grey", label=f"{label}: lost (at send time)")
        firsts = {}
        for _, t, s in cs.recvs:
            firsts.setdefault(s, t)
        d = sorted(1000 * (t - cs.sends[s]) for s, t in firsts.items() if s in cs.sends)
        if d:
            bx.step(d, [(i + 1) / len(d) for i in range(len(d))], where="post", color=color,
                    label=f"{label}: {len(d)} of {len(cs.sends)} arrived")
    ax.set_xlabel("seconds since the first heartbeat")
    ax.set_ylabel("sequence number")
    ax.set_title("arrivals at the main server", fontsize=10)
    ax.legend(fontsize=7)
    bx.set_xscale("log")
    bx.set_xlabel("one-way delay of each heartbeat's first copy (ms)")
    bx.set_ylabel("fraction of the heartbeats that arrived")
    bx.set_title("TCP: every one, later; UDP: lost ones missing", fontsize=10)
    bx.legend(fontsize=8)
    fig.suptitle(f"the same heartbeats over TCP and UDP across one impaired link "
                 f"({_spec_text(next(iter(cd.netem.values()), None))})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)

