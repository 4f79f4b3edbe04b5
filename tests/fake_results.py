"""A small results tree as the suite leaves it, for report tests (no root, no network).

    root/results/routing/T/      params.json, metrics.json, lpm.png, egress.pcap,
                                 cases/a/{case.json, up.pcap}
    root/results/traceroute/T/   metrics.json (a failed claim, an error), rtt.png
    root/results/report/T/       summary.json naming both

The plots are real PNGs drawn by matplotlib, mostly one flat colour
(:data:`PLOT_RGB`) so a screenshot shows whether the browser drew them.
"""

import json
import os
import shutil

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pcap")
STAMP = "20250101T000000Z"
PLOT_RGB = (255, 0, 255)       # magenta: no other element of the page has it
NASTY = '<script>alert("x")</script> & <b>bold</b>'


def claims_routing():
    return [
        {"name": "kernel choice == LPM", "ok": True, "measured": "1000/1000", "expected": "1000/1000",
         "tolerance": 0, "evidence": "lookups.json"},
        {"name": f"escaped {NASTY}", "ok": True, "measured": {"k": NASTY}, "expected": NASTY,
         "tolerance": None, "evidence": "case a"},
        {"name": "long value", "ok": True, "measured": {f"figure_{i}": i * 1.5 for i in range(40)},
         "expected": "folded", "tolerance": "none", "evidence": "metrics.json"},
    ]


def claims_traceroute():
    return [
        {"name": "hop lists match", "ok": True, "measured": "4/4", "expected": "4/4", "tolerance": 0,
         "evidence": "pairs.json"},
        {"name": "TTL at receiver", "ok": False, "measured": 61, "expected": 60, "tolerance": 0,
         "evidence": "receiver.pcap"},
    ]


def draw_png(path, rgb=PLOT_RGB):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    try:
        fig.patch.set_facecolor([c / 255 for c in rgb])
        ax.set_facecolor([c / 255 for c in rgb])
        ax.plot([0, 1, 2], [0, 1, 0], color="black")
        ax.set_title("fake plot")
        fig.savefig(path, facecolor=fig.get_facecolor())
    finally:
        plt.close(fig)


def make_tree(root, stamp=STAMP):
    """Write the tree under ``root``; return the report folder."""
    results = os.path.join(root, "results")
    routing = os.path.join(results, "routing", stamp)
    trace = os.path.join(results, "traceroute", stamp)
    report = os.path.join(results, "report", stamp)
    for d in (os.path.join(routing, "cases", "a"), trace, report):
        os.makedirs(d)
    _json(os.path.join(routing, "params.json"), {"experiment": "routing", "params": {}})
    _json(os.path.join(routing, "metrics.json"), {"experiment": "routing", "status": "pass",
                                                  "claims": claims_routing()})
    _json(os.path.join(routing, "cases", "a", "case.json"), {"name": "a"})
    shutil.copy(os.path.join(DATA, "base_clean.pcap"), os.path.join(routing, "egress.pcap"))
    shutil.copy(os.path.join(DATA, "base_clean.pcap"), os.path.join(routing, "cases", "a", "up.pcap"))
    draw_png(os.path.join(routing, "lpm.png"))
    _json(os.path.join(trace, "metrics.json"), {"experiment": "traceroute", "status": "fail",
                                                "error": "campus: tcpdump <stopped> & lost 1",
                                                "claims": claims_traceroute()})
    draw_png(os.path.join(trace, "rtt.png"))

    def row(name, folder, claims, status, code, error=None):
        return {"experiment": name, "status": status, "exit_code": code,
                "claims_passed": sum(c["ok"] for c in claims), "claims_total": len(claims),
                "seconds": 1.5, "results": os.path.relpath(folder, root), "error": error,
                "failed_claims": [c["name"] for c in claims if not c["ok"]], "plots": [],
                "claims": claims}
    _json(os.path.join(report, "summary.json"), {"stamp": stamp, "experiments": [
        row("routing", routing, claims_routing(), "pass", 0),
        row("traceroute", trace, claims_traceroute(), "fail", 7, "campus: tcpdump <stopped> & lost 1"),
    ]})
    return report


def _json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
