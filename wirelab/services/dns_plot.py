"""The DNS exchange of a case drawn as a message sequence chart, and as table rows.

From the case folder only (the two captures and ``dns.json``):

* :func:`dns_rows` -- every DNS message of both captures, in time order, with
  who sent it to whom (by role: home host, resolver, root, TLD, authoritative),
  its kind and a one-line summary (see :func:`wirelab.services.dns_decode.summary`);
* :func:`dns_plot` -- ``dns-sequence.png`` in the case folder: one lane per
  role, one arrow per captured message. Left: the cold query (the resolver
  walks the tree) then the same query answered from the cache; right: ``dig
  +trace`` (the home host walks the tree itself). Also writes the rows as
  ``dns-messages.md`` beside it, for a person and for the report.
"""

import textwrap

from wirelab.services.dns_claims import Ctx
from wirelab.services.dns_decode import summary

PNG = "dns-sequence.png"
TABLE = "dns-messages.md"
#: Arrows per panel at most: a chart stays readable (the table has everything).
MAX_ARROWS = 28


def lanes(c):
    """[(label, {ips})] in drawing order, and {ip: lane index}."""
    z = c.zones
    out = [(f"{c.rec['host']}\n" + ", ".join(sorted(c.host_ips)), set(c.host_ips)),
           (f"resolver ({z.resolver_node})\n{z.resolver_ip} / {z.resolver_out_ip}", {z.resolver_ip, z.resolver_out_ip})]
    for s in z.servers:
        served = " ".join(x.origin for x in z.zones_of(s.key))
        role = {"root": "root", "tld": "TLD", "auth": "auth"}.get(s.role, s.role)
        # zones wrapped: a TLD server's list would run into the next lane's label
        out.append((f"{role} {textwrap.fill(served, 18)}\n{s.node} {s.ip}", {s.ip}))
    index = {ip: i for i, (_label, ips) in enumerate(out) for ip in ips}
    return out, index


def _lane_of(index, ip, c):
    if ip in index:
        return index[ip]
    return 0 if ip in c.host_ips else None


def dns_rows(ev, case_name):
    """Every DNS message of the case's captures, for the report (time-ordered;
    a message seen by both captures -- home host <-> resolver crossing the
    upstream interface never happens -- is listed once per capture)."""
    c = Ctx(ev, case_name)
    _lanes, index = lanes(c)
    names = {i: label.split("\n")[0] for i, (label, _ips) in enumerate(_lanes)}
    rows = [(r, "home host") for r in c.host_rows] + [(r, "resolver upstream") for r in c.up_rows]
    rows.sort(key=lambda x: x[0]["t"])
    t0 = rows[0][0]["t"] if rows else 0.0
    out = []
    for r, where in rows:
        src, dst = _lane_of(index, r["src"], c), _lane_of(index, r["dst"], c)
        out.append({"t_ms": round((r["t"] - t0) * 1e3, 3), "capture": where,
                    "from": names.get(src, r["src"]), "to": names.get(dst, r["dst"]),
                    "src": r["src"], "dst": r["dst"], "id": r["id"], "kind": r["kind"],
                    "summary": summary(r)})
    return out


def markdown(rows):
    head = "| t (ms) | capture | from | to | id | kind | message |\n|---:|---|---|---|---:|---|---|\n"
    return head + "".join(f"| {r['t_ms']:.3f} | {r['capture']} | {r['from']} | {r['to']} | {r['id']} | "
                          f"{r['kind']} | {r['summary'].replace('|', '/')} |\n" for r in rows)


def _recursive_events(c):
    """The cold exchange (with the resolver's walk) then the first cached ones."""
    events = []
    cold = c.exchange(c.rec["cold"])
    if cold and cold[1]:
        events.append(cold[0])
        for q, r in c.upstream_between(cold[0]["t"], cold[1]["t"]):
            events += [q] + ([r] if r else [])
        events.append(cold[1])
    cached = [c.exchange(a) for a in c.rec["cached"]["answers"]]
    cached = [e for e in cached if e and e[1]]
    marks = len(events)
    for q, r in cached[:1] + cached[-1:] if len(cached) > 1 else cached:
        events += [q, r]
    return events, marks


def _trace_events(c):
    t0, t1 = c.rec["trace"]["wall"]
    return [r for r in c.host_rows if t0 <= r["t"] <= t1]


def _panel(ax, c, events, title, split=None, split_label=""):
    lane_list, index = lanes(c)
    n = len(lane_list)
    events = events[:MAX_ARROWS]
    for i, (label, _ips) in enumerate(lane_list):
        ax.plot([i, i], [0, len(events) + 1], color="0.6", lw=1, zorder=1)
        ax.text(i, -0.3, label, ha="center", va="bottom", fontsize=6.5)
    t0 = events[0]["t"] if events else 0.0
    colours = {"query": "tab:blue", "referral": "tab:orange", "answer": "tab:green",
               "nxdomain": "tab:red", "nodata": "tab:purple", "error": "tab:red"}
    for k, r in enumerate(events, 1):
        a, b = _lane_of(index, r["src"], c), _lane_of(index, r["dst"], c)
        if a is None or b is None:
            continue
        colour = colours.get(r["kind"], "black")
        ax.annotate("", xy=(b, k), xytext=(a, k),
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1.3), zorder=3)
        text = summary(r)
        ax.text((a + b) / 2, k - 0.12, text if len(text) <= 70 else text[:67] + "...",
                ha="center", va="bottom", fontsize=6.5, color=colour, zorder=4)
        ax.text(-0.45, k, f"{(r['t'] - t0) * 1e3:.2f} ms", ha="right", va="center", fontsize=6.5)
    if split and split < len(events):
        ax.axhline(split + 0.5, color="0.3", ls="--", lw=0.8)
        ax.text(n - 0.5, split + 0.55, split_label, ha="right", va="top", fontsize=7, color="0.3")
    ax.set_xlim(-1.2, n - 0.5)
    ax.set_ylim(len(events) + 1, -1.8)
    ax.axis("off")
    ax.set_title(title, fontsize=9)


def dns_plot(ev, case_name):
    """Draw ``dns-sequence.png`` and write ``dns-messages.md`` in the case folder; returns the PNG path."""
    from wirelab.observe.plots import _pyplot
    c = Ctx(ev, case_name)
    rec_events, split = _recursive_events(c)
    trace_events = _trace_events(c)
    plt = _pyplot()
    rows = max(len(rec_events), len(trace_events), 4)
    fig, axes = plt.subplots(1, 2, figsize=(17, 1.6 + 0.42 * min(rows, MAX_ARROWS)))
    shown = c.name.rstrip(".")
    _panel(axes[0], c, rec_events, f"{shown} through the resolver: cold, then from its cache",
           split=split, split_label="the same query again: answered from the cache")
    _panel(axes[1], c, trace_events, f"dig +trace {shown}: the home host walks the tree itself")
    fig.tight_layout()
    path = ev.path(case_name, PNG)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    with open(ev.path(case_name, TABLE), "w") as f:
        f.write(f"# DNS messages of case {case_name}\n\n" + markdown(dns_rows(ev, case_name)))
    return path
