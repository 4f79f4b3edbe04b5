"""Timeline of rebuilt application messages, as a PNG (matplotlib Agg).

Time on x; one row per conversation (TCP: sender -> receiver and the
service port, the lower of the two ports, since a client's ephemeral port
would give each connection its own row; UDP: both ends with their ports), or one row per sender host when there are more
than ``MAX_ROWS`` conversations.  Marker shape = the message's type (its
``type``/``kind``/``op``/... field), filled for TCP, hollow for UDP; a TCP
message's transfer (first byte to last byte) is a thin line; messages with
an error are red crosses.
"""

from __future__ import annotations

from wirelab.observe.plots import _pyplot

MAX_ROWS = 40
TYPE_KEYS = ("type", "kind", "op", "msg", "event", "cmd", "method")
MARKERS = "osD^v<>pPh*"


def message_type(message) -> str:
    """A short name for what a message is: its type field, else its JSON kind."""
    if isinstance(message, dict):
        for k in TYPE_KEYS:
            v = message.get(k)
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                return str(v)[:24]
        return "object"
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(message), "number")


def _row(m, per_host: bool) -> str:
    if per_host:
        return m.src[0]
    if m.transport == "udp":   # UDP ports stay the same from datagram to datagram
        return f"{m.src[0]}:{m.src[1]} \u2192 {m.dst[0]}:{m.dst[1]} (udp)"
    service = min(m.src[1], m.dst[1])
    return f"{m.src[0]} \u2192 {m.dst[0]} (tcp/{service})"


def timeline(messages, out_png, title: str) -> bool:
    """Draw ``messages`` (RebuiltMessage items); False when there are none."""
    messages = list(messages)
    if not messages:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D
    per_host = len({_row(m, False) for m in messages}) > MAX_ROWS
    rows = sorted({_row(m, per_host) for m in messages})
    y = {r: i for i, r in enumerate(rows)}
    t0 = min(m.t for m in messages)
    counts: dict = {}
    for m in messages:
        if m.error is None or m.message is not None:
            k = message_type(m.message)
            counts[k] = counts.get(k, 0) + 1
    types = sorted(counts, key=lambda k: -counts[k])
    shown = types[:len(MARKERS) - 1]
    marker = {k: MARKERS[i] for i, k in enumerate(shown)}
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.32 * len(rows)))
    groups: dict = {}
    bad_x, bad_y = [], []
    for m in messages:
        row = y[_row(m, per_host)]
        if m.message is None and m.error is not None:
            bad_x.append(m.t - t0)
            bad_y.append(row)
            continue
        k = message_type(m.message)
        xs, ys = groups.setdefault((marker.get(k, MARKERS[-1]), m.transport), ([], []))
        xs.append(m.t - t0)
        ys.append(row)
        if m.transport == "tcp" and m.t_end > m.t:
            ax.plot([m.t - t0, m.t_end - t0], [row, row], "-", lw=0.6, color="tab:blue", alpha=0.5)
    for (mk, transport), (xs, ys) in groups.items():
        tcp = transport == "tcp"
        ax.plot(xs, ys, mk, ls="none", ms=5, color="tab:blue" if tcp else "tab:orange",
                mfc="tab:blue" if tcp else "none")
    if bad_x:
        ax.plot(bad_x, bad_y, "x", ls="none", ms=7, color="tab:red")
    handles = [Line2D([], [], marker=marker[k], ls="none", color="black", mfc="none",
                      label=f"{k} ({counts[k]})") for k in shown]
    if len(types) > len(shown):
        handles.append(Line2D([], [], marker=MARKERS[-1], ls="none", color="black", mfc="none",
                              label=f"other types ({sum(counts[k] for k in types[len(shown):])})"))
    handles += [Line2D([], [], marker="o", ls="none", color="tab:blue", label="TCP (filled; line: first to last byte)"),
                Line2D([], [], marker="o", ls="none", color="tab:orange", mfc="none", label="UDP (hollow)")]
    if bad_x:
        handles.append(Line2D([], [], marker="x", ls="none", color="tab:red", label=f"error ({len(bad_x)})"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("time since the first message (s)")
    ax.set_ylabel("sender host" if per_host else "conversation")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return True
