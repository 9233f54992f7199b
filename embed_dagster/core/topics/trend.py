"""Topic-trend chart for the ``topics`` asset: daily sizes of the top topics over the last N days.

One line per topic (the ``top`` largest over the window), labelled at its right end with its label;
a star marks the day a topic was born (inside the window) and a red triangle each day it surged, so
a reader sees at a glance what is growing, what is new and what is alarming. Drawn with matplotlib
and the bundled CJK font (``_plot``), as a small PNG for the asset's metadata.
"""

from __future__ import annotations

import datetime

import numpy as np

from embed_dagster.core.topics._plot import with_cjk_font


@with_cjk_font
def render_topic_trend(
    days: list[datetime.date],
    sizes: dict[str, list[float]],
    labels: dict[str, str],
    new_on: dict[str, datetime.date] | None = None,
    surging_on: dict[str, list[datetime.date]] | None = None,
    top: int = 8,
    title: str = "topics",
    width_px: int = 720,
) -> bytes:
    """PNG: ``sizes[topic]`` has one value per entry of ``days`` (0 where the topic was absent)."""
    from embed_dagster.core.topics._plot import figure, to_small_png

    for tid, series in sizes.items():
        if len(series) != len(days):
            raise ValueError(f"topic {tid}: {len(series)} sizes for {len(days)} days")
    chosen = sorted(sizes, key=lambda t: (-float(np.sum(sizes[t])), t))[:top]
    fig = figure(width_px, int(width_px * 0.5))
    ax = fig.add_subplot()
    x = np.arange(len(days))
    palette = _palette()
    new_on, surging_on = new_on or {}, surging_on or {}
    ends = []
    for rank, tid in enumerate(chosen):
        y = np.asarray(sizes[tid], dtype=float)
        colour = palette[rank % len(palette)]
        ax.plot(x, y, "-o", color=colour, linewidth=1.6, markersize=3)
        born = new_on.get(tid)
        if born in days:
            i = days.index(born)
            ax.plot([i], [y[i]], marker="*", markersize=13, color=colour, markeredgecolor="black", zorder=4)
        for d in surging_on.get(tid, []):
            if d in days:
                i = days.index(d)
                ax.plot(
                    [i], [y[i]], marker="^", markersize=10, color="#d62728", markeredgecolor="black", zorder=5
                )
        ends.append((float(y[-1]) if len(y) else 0.0, labels.get(tid) or tid, colour))
    _end_labels(ax, len(days) - 1, ends)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{d:%m-%d}" for d in days], fontsize=7)
    ax.set_xlim(-0.3, len(days) - 1 + 2.5 if len(days) else 1)
    ax.set_ylabel("comments per day", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{title}: top {len(chosen)} topics · ★ new · ▲ surging", fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return to_small_png(fig)


def _end_labels(ax, x_end: int, ends: list[tuple[float, str, tuple]]) -> None:
    """Topic names at the right end of their lines, pushed apart so they never overprint."""
    from matplotlib import patheffects

    if not ends:
        return
    top = max(max(v for v, _, _ in ends), 1.0)
    ax.set_ylim(0, top * 1.1)
    gap = top * 1.1 * 0.06
    placed: list[float] = []
    for value, name, colour in sorted(ends, key=lambda e: e[0]):
        y = max(value, placed[-1] + gap) if placed else value
        placed.append(y)
        ax.annotate(
            name,
            (x_end, value),
            xytext=(x_end + 0.25, y),
            textcoords="data",
            fontsize=7.5,
            color=colour,
            va="center",
            path_effects=[patheffects.withStroke(linewidth=2, foreground="white")],
        )


def _palette() -> list:
    import matplotlib

    return list(matplotlib.colormaps["tab10"].colors)
