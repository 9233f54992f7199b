"""A small 2-D picture of a day's clusters, for Dagster metadata (embedded as a base64 PNG).

The projection is linear discriminant analysis on the cluster labels: of all 2-D linear views it is
the one that best separates the clusters, it needs no numba (UMAP would add a minute of JIT to the
step) and it is deterministic. With fewer than three clusters LDA has no second axis, so the map
falls back to PCA. Already 2-D input is drawn as given. The PNG is palette-quantized: metadata lives
in Dagster's event log, so the image should stay in the tens of kilobytes.
"""

from __future__ import annotations

import io

import numpy as np

_NOISE_COLOUR = (0.78, 0.78, 0.78, 0.5)


def project_2d(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """LDA computed by hand in a 50-d PCA space (sklearn's LDA on 512-d takes tens of seconds)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.shape[1] <= 2:
        return np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    if len(x) < 2:
        return np.zeros((len(x), 2))
    from scipy.linalg import eigh
    from sklearn.decomposition import PCA

    x = PCA(n_components=min(50, len(x), x.shape[1]), random_state=seed).fit_transform(x)
    clustered = labels >= 0
    ids, inverse, counts = np.unique(labels[clustered], return_inverse=True, return_counts=True)
    if len(ids) < 3:
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1]))))
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
    return x @ vecs[:, ::-1][:, :2]


def render_cluster_map(
    vectors_or_2d: np.ndarray,
    labels: np.ndarray,
    title: str = "clusters",
    max_points: int = 20000,
    size_px: int = 640,
    annotate_top: int = 12,
    seed: int = 0,
) -> bytes:
    """PNG bytes: points coloured by cluster, noise grey, the largest clusters' ids written on them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from PIL import Image

    x = np.asarray(vectors_or_2d)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ValueError(f"expected one row per label: vectors {x.shape}, labels {labels.shape}")
    if len(labels) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_points, replace=False))
        x, labels = x[keep], labels[keep]
    xy = project_2d(x, labels, seed) if len(x) else np.zeros((0, 2))

    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px * 0.75 / dpi), dpi=dpi)
    ax = fig.add_subplot()
    noise = labels < 0
    point = max(1.5, min(8.0, 6000.0 / max(len(labels), 1)))
    ax.scatter(xy[noise, 0], xy[noise, 1], s=point, c=[_NOISE_COLOUR], linewidths=0, label="noise")
    if (~noise).any():
        palette = matplotlib.colormaps["tab20"].colors
        colours = np.asarray(palette)[labels[~noise] % len(palette)]
        ax.scatter(xy[~noise, 0], xy[~noise, 1], s=point, c=colours, linewidths=0)
        ids, counts = np.unique(labels[~noise], return_counts=True)
        for c in ids[np.lexsort((ids, -counts))][:annotate_top]:
            cx, cy = np.median(xy[labels == c], axis=0)
            ax.annotate(str(c), (cx, cy), fontsize=8, ha="center", va="center", weight="bold")
    n_clusters = len(np.unique(labels[~noise]))
    share = noise.mean() if len(labels) else 0.0
    ax.set_title(f"{title}\n{len(labels)} points shown, {n_clusters} clusters, {share:.0%} noise", fontsize=9)
    if len(xy) >= 20:  # frame the bulk of the points; a few far outliers would squash the rest
        lo, hi = np.percentile(xy, [0.5, 99.5], axis=0)
        pad = (hi - lo) * 0.05 + 1e-9
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=dpi)
    image = Image.open(raw).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=0)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
