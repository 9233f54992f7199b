"""A small 2-D picture of a day's clusters, for Dagster metadata (embedded as a base64 PNG).

The projection is linear discriminant analysis on the cluster labels: of all 2-D linear views it is
the one that best separates the clusters, it needs no numba (UMAP would add a minute of JIT to the
step) and it is deterministic. With fewer than three clusters LDA has no second axis, so the map
falls back to PCA. Already 2-D input is drawn as given. The PNG is palette-quantized: metadata lives
in Dagster's event log, so the image should stay in the tens of kilobytes.

Labels: the largest clusters are named by their keywords on the map (Chinese included: the font
comes from the ``noto-cjk-sans-otc`` wheel, see ``_plot``), clusters that started a new topic are
highlighted. datamapplot was considered and not taken: it pulls numba, datashader, dask and
scikit-image into the clustering step (numba alone costs a minute of JIT per new process) for label
placement that a few lines of matplotlib do well enough at this size.
"""

from __future__ import annotations

import numpy as np

from embed_dagster.core.topics._plot import with_cjk_font

_NOISE_COLOUR = (0.78, 0.78, 0.78, 0.5)


def map_coordinates(
    vectors: np.ndarray, labels: np.ndarray, max_points: int = 20000, seed: int = 0
) -> np.ndarray:
    """Every row's position on the day's map, ``(n, 2)`` float32.

    Why all rows, and why a separate step: the projection is fitted on a seeded sample of at most
    ``max_points`` rows (the same sample ``render_cluster_map`` draws) and, being linear, applied to
    every row. So the clusters step computes the positions once and stores them with the
    assignments, and the topic map draws the same positions without reading the day's vectors back
    from the lake and projecting them again.
    """
    x = np.asarray(vectors)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ValueError(f"expected one row per label: vectors {x.shape}, labels {labels.shape}")
    if not len(x):
        return np.zeros((0, 2), np.float32)
    keep = _sample(len(labels), max_points, seed)
    fit = x if keep is None else x[keep]
    fit_labels = labels if keep is None else labels[keep]
    project = _fit_projection(np.asarray(fit, dtype=np.float64), fit_labels, seed)
    # in slices: the projection works in float64, and a day of 250,000 texts × 512 dims would
    # otherwise need a 1 GB temporary copy
    out = np.empty((len(x), 2), np.float32)
    for start in range(0, len(x), _SLICE):
        out[start : start + _SLICE] = project(x[start : start + _SLICE])
    return out


_SLICE = 16384


def _sample(n: int, max_points: int, seed: int) -> np.ndarray | None:
    """The rows a map of ``n`` points fits and draws: all, or a seeded sorted sample."""
    if n <= max_points:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _fit_projection(x: np.ndarray, labels: np.ndarray, seed: int):
    """The 2-D linear view of ``x`` (rows) that best separates ``labels``, as a function of rows.

    LDA computed by hand in a 50-d PCA space (sklearn's LDA on 512-d takes tens of seconds)."""
    if x.shape[1] <= 2:
        missing = 2 - x.shape[1]
        return lambda rows: np.pad(np.asarray(rows, np.float64), ((0, 0), (0, missing)))
    if len(x) < 2:
        return lambda rows: np.zeros((len(rows), 2))
    from scipy.linalg import eigh
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(50, len(x), x.shape[1]), random_state=seed).fit(x)
    x = pca.transform(x)
    clustered = labels >= 0
    ids, inverse, counts = np.unique(labels[clustered], return_inverse=True, return_counts=True)
    if len(ids) < 3:
        first = min(2, x.shape[1])
        return lambda rows: np.pad(
            pca.transform(np.asarray(rows, np.float64))[:, :first], ((0, 0), (0, 2 - first))
        )
    xc = x[clustered]
    means = np.zeros((len(ids), x.shape[1]))
    np.add.at(means, inverse, xc)
    means /= counts[:, None]
    within = xc - means[inverse]
    sw = within.T @ within / len(xc)
    centred = means - xc.mean(axis=0)
    sb = (centred * counts[:, None]).T @ centred / len(xc)
    # shrink towards the mean variance: invertible, and no axis chases a few tight tiny clusters
    sw = 0.8 * sw + 0.2 * np.eye(len(sw)) * (np.trace(sw) / len(sw) + 1e-12)
    _, vecs = eigh(sb, sw)
    axes = vecs[:, ::-1][:, :2]
    return lambda rows: pca.transform(np.asarray(rows, np.float64)) @ axes


@with_cjk_font
def render_cluster_map(
    vectors_or_2d: np.ndarray,
    labels: np.ndarray,
    title: str = "clusters",
    max_points: int = 20000,
    size_px: int = 640,
    annotate_top: int = 12,
    seed: int = 0,
    names: dict[int, str] | None = None,
    highlight: set[int] | frozenset[int] = frozenset(),
) -> bytes:
    """PNG bytes: a labelled map of the day's clusters.

    The ``annotate_top`` largest clusters get their own colour and their name (``names``, e.g. the top
    keywords; the cluster id otherwise) written on them; clusters in ``highlight`` (e.g. those that
    started a new topic) are named in red with a "NEW" tag. Smaller clusters are drawn in a muted
    grey-blue and noise in light grey, so the colours in the picture are exactly the clusters the
    caller lists next to it (``map_clusters`` gives that list).
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from embed_dagster.core.topics._plot import figure, to_small_png

    x = np.asarray(vectors_or_2d)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ValueError(f"expected one row per label: vectors {x.shape}, labels {labels.shape}")
    shown = map_clusters(labels, annotate_top)
    keep = _sample(len(labels), max_points, seed)
    if keep is not None:  # the rows map_coordinates fits on: projecting only these gives their positions
        x, labels = x[keep], labels[keep]
    xy = map_coordinates(x, labels, max_points, seed) if len(x) else np.zeros((0, 2))

    dpi = 100
    fig = figure(size_px, int(size_px * 0.75), dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    noise = labels < 0
    top = np.isin(labels, shown)
    other = ~noise & ~top
    point = max(1.5, min(8.0, 6000.0 / max(len(labels), 1)))
    ax.scatter(xy[noise, 0], xy[noise, 1], s=point, c=[_NOISE_COLOUR], linewidths=0)
    ax.scatter(xy[other, 0], xy[other, 1], s=point, c=[_OTHER_COLOUR], linewidths=0)
    palette = np.asarray(matplotlib_palette())
    for rank, c in enumerate(shown):
        member = labels == c
        ax.scatter(xy[member, 0], xy[member, 1], s=point, c=[palette[rank % len(palette)]], linewidths=0)
    texts = []
    for c in shown:
        member = labels == c
        if not member.any():
            continue
        cx, cy = np.median(xy[member], axis=0)
        name = (names or {}).get(int(c)) or f"cluster {c}"
        is_new = int(c) in highlight
        text = ax.annotate(
            ("NEW " if is_new else "") + _wrap(name),
            (cx, cy),
            fontsize=7.5,
            ha="center",
            va="center",
            color="#c0162c" if is_new else "#1a1a1a",
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
            zorder=5,
        )
        texts.append(text)
    n_clusters = len(np.unique(labels[~noise]))
    share = noise.mean() if len(labels) else 0.0
    ax.set_title(
        f"{title}\n{len(labels)} points, {n_clusters} clusters ({len(shown)} named), {share:.0%} noise",
        fontsize=9,
    )
    if len(xy) >= 20:  # frame the bulk of the points; a few far outliers would squash the rest
        lo, hi = np.percentile(xy, [0.5, 99.5], axis=0)
        pad = (hi - lo) * 0.05 + 1e-9
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    _declutter(fig, ax, texts)
    return to_small_png(fig, dpi)


_OTHER_COLOUR = (0.62, 0.68, 0.78, 0.45)


def matplotlib_palette() -> list:
    import matplotlib

    return list(matplotlib.colormaps["tab20"].colors)


def map_clusters(labels: np.ndarray, top: int) -> list[int]:
    """The clusters the map names: the ``top`` largest by member count (ties by id).

    The clusters asset's table lists these same clusters, so the two always agree (issue 16: three of
    thirteen named clusters were missing from the table).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    return [int(c) for c in ids[np.lexsort((ids, -counts))][:top]]


def _wrap(name: str, width: int = 18) -> str:
    """At most two short lines: labels are "a / b / c"; break at a separator when long."""
    if len(name) <= width or " / " not in name:
        return name
    parts = name.split(" / ")
    return " / ".join(parts[:2]) + "\n" + " / ".join(parts[2:])


def _declutter(fig, ax, texts, steps: int = 30) -> None:
    """Nudge overlapping labels apart vertically (larger clusters keep their place: placed first)."""
    if not texts:
        return
    renderer = fig.canvas.get_renderer()
    placed = []
    inv = ax.transData.inverted()
    for text in texts:
        for step in range(steps):
            box = text.get_window_extent(renderer).expanded(1.05, 1.15)
            clash = next((b for b in placed if box.overlaps(b)), None)
            if clash is None:
                break
            # move away from the clashing box, alternating up and down with growing distance
            direction = 1 if (step % 2 == 0) else -1
            dy_px = direction * (clash.height * (1 + step // 2) * 0.6)
            x0, y0 = ax.transData.transform(text.xy)
            text.xy = tuple(inv.transform((x0, y0 + dy_px)))
        placed.append(text.get_window_extent(renderer))
