"""A timeline per MapReduce case, from the folder only: every TCP message as a
bar split into connection set-up (first SYN to first data byte: SYN
retransmissions show as crosses, 1 s then 2 s apart) and data (first to last
byte at the receiver; retransmitted segments in the label), each worker's
heartbeats at the manager below, and the fault's moments as vertical lines.
"""

from wirelab.experiment import mapreduce_wire as wire
from wirelab.observe.plots import _pyplot

COLOURS = {"register": "tab:gray", "register_ack": "tab:gray", "new_manager_job": "black",
           "new_map_task": "tab:blue", "new_reduce_task": "tab:purple", "finished": "tab:green",
           "shutdown": "tab:brown"}


def plot_timelines(ev):
    from wirelab.experiment.mapreduce_claims import CaseEvidence
    for case in ev.cases():
        c = CaseEvidence(ev, case)
        if c.delivered:
            timeline(c, ev.path(c.name, "timeline.png"))


def timeline(c, out_png):
    plt = _pyplot()
    rows = sorted(wire.latency_split(c.delivered, c.setups), key=lambda x: x["t_syn"] or x["t"])
    t0 = c.t0 or (rows[0]["t_syn"] or rows[0]["t"])
    workers = list(c.workers)
    names = {ip: n for n, ip in {"manager": c.manager_ip, "client": c.client_ip, **c.workers}.items()}
    span = max(r["t_end"] for r in rows) - min(r["t_syn"] or r["t"] for r in rows)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 4 + 0.12 * len(rows)),
                                      gridspec_kw={"height_ratios": [max(3, len(rows) // 8), 1]})
    labels = []
    for y, r in enumerate(rows):
        start = (r["t_syn"] if r["t_syn"] is not None else r["t"]) - t0
        top.barh(y, r["t"] - t0 - start, left=start, height=0.8, color="tab:orange", alpha=0.6)
        # a message of a few microseconds still shows: at least 0.4 % of the time axis
        top.barh(y, max(r["t_end"] - r["t"], 0.004 * span), left=r["t"] - t0, height=0.8,
                 color=COLOURS.get(r["type"], "tab:red"))
        task = f" {r['task_id']}" if r["task_id"] is not None else ""
        labels.append(f"{r['type']}{task} {names.get(r['src'][0], r['src'][0])}>{names.get(r['dst'][0], r['dst'][0])}")
        syns = (c.setups.get((*r["src"], *r["dst"])) or {}).get("syn", [])
        if len(syns) > 1:
            top.plot([s - t0 for s in syns[1:]], [y] * (len(syns) - 1), "x", color="red", ms=5)
        if r["retransmitted_segments"]:
            top.annotate(f"{r['retransmitted_segments']} re-sent", (r["t_end"] - t0, y), fontsize=6,
                         xytext=(3, -2), textcoords="offset points")
    top.set_yticks(range(len(rows)), labels, fontsize=6)
    top.set_ylabel("TCP messages (one per connection)")
    top.set_ylim(-1, max(len(rows), 1))
    handles = [plt.Rectangle((0, 0), 1, 1, color=col) for col in COLOURS.values()]
    handles += [plt.Rectangle((0, 0), 1, 1, color="tab:orange", alpha=0.6),
                plt.Line2D([], [], marker="x", color="red", ls="")]
    top.legend(handles, [*COLOURS, "connection set-up", "SYN retransmitted"], fontsize=7, loc="upper left",
               ncol=3)
    for y, name in enumerate(workers):
        beats = [h - t0 for h in c.story.heartbeats.get(name, [])]
        bottom.plot(beats, [y] * len(beats), "|", ms=6, color="tab:green" if name != c.victim else "tab:red")
    bottom.set_yticks(range(len(workers)), workers, fontsize=7)
    bottom.set_ylabel("heartbeats at the manager", fontsize=8)
    bottom.set_xlabel("seconds since the case started")
    f = c.fault or {}
    for key, colour, label in (("t", "red", "killed"), ("t_down", "red", "link down"), ("t_up", "green", "link up")):
        if f.get(key):
            for ax in (top, bottom):
                ax.axvline(f[key] - t0, color=colour, ls="--", lw=1)
            top.text(f[key] - t0, len(rows), f" {f['victim']} {label}", color=colour, fontsize=7, va="bottom")
    for e in c.manager_events or []:
        if e.get("event") == "worker_dead":
            for ax in (top, bottom):
                ax.axvline(e["t"] - t0, color="black", ls=":", lw=1)
            top.text(e["t"] - t0, len(rows) * 0.95, " declared dead", fontsize=7)
    top.set_title(f"mapreduce {c.name}: latency of each message = connection set-up + data")
    top.grid(alpha=0.3, axis="x")
    bottom.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
