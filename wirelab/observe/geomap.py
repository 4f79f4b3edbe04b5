"""A backbone on a map, drawn from plain data (no map tiles: nothing is fetched).

    backbone_map(cities, fibres, paths, "map.png", "Abilene: New York -> Los Angeles")

``cities``: dicts with ``router``, ``name``, ``lon``, ``lat`` (topologies/zoo.py's
``cities()``); ``fibres``: dicts with ``a`` and ``b`` (routers); ``paths``: one
per traced pair, ``{"label", "points": [(lon, lat, text), ...]}`` in hop order.
The projection is equirectangular with the x axis shrunk by cos(mean latitude),
so a small region keeps its shape; longitude and latitude stay the axes' units.
"""

import math

PATH_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw_backbone(ax, cities, fibres):
    """Every fibre as a grey line, every city as a grey dot with its name."""
    where = {c["router"]: (c["lon"], c["lat"]) for c in cities}
    for f in fibres:
        (x1, y1), (x2, y2) = where[f["a"]], where[f["b"]]
        ax.plot([x1, x2], [y1, y2], color="0.75", lw=1.2, zorder=1)
    ax.scatter([c["lon"] for c in cities], [c["lat"] for c in cities], s=18, color="0.55", zorder=2)
    for c in cities:
        ax.annotate(c["name"], (c["lon"], c["lat"]), xytext=(4, -9), textcoords="offset points",
                    fontsize=7, color="0.35", zorder=2)
    lats = [c["lat"] for c in cities]
    ax.set_aspect(1 / max(math.cos(math.radians(sum(lats) / len(lats))), 0.1))
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")


def draw_path(ax, points, colour, label, offset=(6, 6)):
    """Arrows hop to hop along ``points`` [(lon, lat, text)], each hop's text beside it.
    Hops in one city (a router and the host on its LAN) share a dot and a label."""
    for (x1, y1, _), (x2, y2, _) in zip(points, points[1:]):
        if (x1, y1) != (x2, y2):
            ax.annotate("", xy=(x2, y2), xytext=(x1, y1), zorder=3,
                        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 2, "shrinkA": 4, "shrinkB": 4})
    texts = {}
    for x, y, text in points:
        texts.setdefault((x, y), []).append(text)
    ax.scatter([x for x, _, _ in points], [y for _, y, _ in points], s=36, color=colour, zorder=4, label=label)
    for (x, y), lines in texts.items():
        ax.annotate("\n".join(lines), (x, y), xytext=offset, textcoords="offset points", fontsize=7,
                    color=colour, zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "alpha": 0.85})


def backbone_map(cities, fibres, paths, out_png, title):
    """One PNG: the backbone in grey, each of ``paths`` highlighted in its colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 6.5))
    try:
        draw_backbone(ax, cities, fibres)
        for i, path in enumerate(paths):
            draw_path(ax, path["points"], PATH_COLOURS[i % len(PATH_COLOURS)], path["label"],
                      offset=(6, 6 + 14 * (i % 2)) if i % 2 == 0 else (6, -30))
        if paths:
            ax.legend(loc="lower left", fontsize=8)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out_png, dpi=110)
    finally:
        plt.close(fig)
