"""Cluster a day's distinct-text embeddings: density seeds, then centroid refinement.

Why this recipe (measured in ``bench/bench_cluster.py``, numbers in docs/benchmarks.md):

* HDBSCAN on the raw 512-d vectors (the seed's recipe) is slow (hdbscan falls back to single-core
  Prim's above 60 dimensions) and finds little: in 512-d the density contrast is gone, so most
  points come out as noise.
* UMAP → HDBSCAN (BERTopic's recipe) recovers the structure but pays numba JIT in every new process
  (60–150 s here; a Dagster step is a new process) and UMAP time grows linearly with n.
* The default avoids numba entirely: PCA to 20 dimensions (at <= 60 dimensions hdbscan uses its
  Boruvka KD-tree instead of Prim's), HDBSCAN (leaf selection) on a sample of at most 10k rows,
  unsampled rows take the label of their nearest sampled row, then spherical k-means passes in the
  original cosine space move every clustered row to its nearest centroid and rescue noise rows
  (``outlier_threshold``). HDBSCAN decides how many topics there are and where they sit; the
  full-dimensional refinement fixes the boundaries the low-dimensional density got wrong. On the
  labelled sets this beats both the seed's and BERTopic's recipes on ARI and NMI, and clusters 100k
  rows in about half a minute on 2 cores with no JIT. Time is bounded by ``sample_size`` (HDBSCAN)
  plus linear passes, memory by chunked similarity blocks.
* Noise rescue is on (threshold 0.0: every noise row joins its nearest cluster) because the density
  step leaves 55–70 % of these embeddings as noise; with rescue at 0.5 a few percent stay noise at
  a small cost in ARI/NMI, and ``None`` keeps HDBSCAN's noise (see the benchmark table).

Rows are expected to be distinct texts: duplicates form zero-distance cliques that HDBSCAN reads as
dense clusters. Sizes are weighted by comment counts downstream (``summarize_clusters``). The
counts (``weights``) enter the clustering in one place: a text repeated at least
``min_cluster_size`` times is a density cluster by itself, so it is not rescued into a cluster it is
far from (``heavy_text_cosine``), where its comments would outweigh the cluster's own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from embed_dagster.core.clustering.stages import (
    ChainedReducer,
    PCAReducer,
    build_stages,
    nearest_exemplar_labels,
    normalize_rows,
)

REDUCTIONS = ("none", "pca", "umap", "pca+umap")
ALGORITHMS = ("hdbscan", "fast_hdbscan")
SELECTION_METHODS = ("eom", "leaf")


@dataclass(frozen=True)
class ClusterConfig:
    """How to cluster. The defaults are the benchmark's winner (see module docstring)."""

    reduction: str = "pca"
    pca_components: int = 20
    umap_components: int = 5
    umap_neighbors: int = 15
    umap_min_dist: float = 0.0
    algorithm: str = "hdbscan"
    min_cluster_size: int | None = None  # None: scales with the fitted sample (see auto_min_cluster_size)
    min_samples: int | None = 5
    selection_method: str = "leaf"
    sample_size: int = 10000  # fit on a sample above this many rows and assign the rest
    outlier_threshold: float | None = 0.0  # cosine to the nearest centroid that rescues a noise point
    refine_iterations: int = 30  # spherical k-means passes over all points after the density step
    # Rows whose cosine to their mean direction is at least this are one cluster, whatever their
    # number: a day of identical (or paraphrase-identical) texts has no density contrast to find.
    identical_cosine: float = 0.98
    # A distinct text that stands for at least min_cluster_size comments (its count) is dense on its
    # own; when it stays noise, or joins a cluster below this cosine that it outweighs, it is a cluster
    # of its own (``_heavy_texts_apart``). Without this, 2,000 copies of one spam text were rescued
    # into an unrelated cluster at cosine 0.38 and took over its label and surge score (stop 25).
    heavy_text_cosine: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("reduction", self.reduction, REDUCTIONS)
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_choice("selection_method", self.selection_method, SELECTION_METHODS)
        for name in ("pca_components", "umap_components", "umap_neighbors", "sample_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for name, least in (("min_cluster_size", 2), ("min_samples", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < least):
                raise ValueError(f"{name} must be an integer >= {least} or None (automatic), got {value!r}")
        if not isinstance(self.refine_iterations, int) or self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be an integer >= 0, got {self.refine_iterations!r}")
        t = self.outlier_threshold
        if t is not None and not -1.0 <= t <= 1.0:
            raise ValueError(f"outlier_threshold is a cosine similarity in [-1, 1] or None, got {t!r}")
        if not -1.0 <= self.heavy_text_cosine <= 1.0:
            raise ValueError(f"heavy_text_cosine must be in [-1, 1], got {self.heavy_text_cosine!r}")
        if not 0.0 < self.identical_cosine <= 1.0:
            raise ValueError(f"identical_cosine must be in (0, 1], got {self.identical_cosine!r}")
        if not 0.0 <= self.umap_min_dist <= 1.0:
            raise ValueError(f"umap_min_dist must be in [0, 1], got {self.umap_min_dist!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def auto_min_cluster_size(n_fit: int) -> int:
    """One cluster per ~1000 fitted points, at least 5 and at most 50.

    Fine enough for 150 intents in 22k texts, coarse enough that 10k sampled comments do not shatter;
    the refinement step merges nothing, so erring small is cheaper than erring large.
    """
    return int(min(50, max(5, round(n_fit / 1000))))


@dataclass
class ClusteringResult:
    labels: np.ndarray  # int64, -1 is noise; clusters numbered 0.. by size descending
    probabilities: np.ndarray  # cosine to the assigned centroid clipped to [0, 1]; 0 for noise
    n_clusters: int
    noise_share_before: float  # after the density step, before outlier rescue
    noise_share_after: float
    timings: dict[str, float] = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def _validate(matrix) -> np.ndarray:
    x = np.asarray(matrix)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D matrix (n_texts, dim), got shape {x.shape}")
    if x.size and not np.isfinite(x).all():
        raise ValueError("matrix contains NaN or infinite values")
    return x


def cluster_vectors(matrix, config: ClusterConfig | None = None, weights=None) -> ClusteringResult:
    """Cluster rows of ``matrix`` (distinct texts) and label every row; see the module docstring.

    ``weights`` are the rows' comment counts (default 1 each); see ``heavy_text_cosine``.

    Degenerate days are decided before any fit, the same way with every library version:
    no rows → no clusters; rows that all point the same way (cosine to their mean direction ≥
    ``identical_cosine``, one text included) → one cluster; otherwise fewer distinct rows than
    ``min_cluster_size`` (e.g. 2 or 3 different texts) → all noise (-1), since no density cluster
    can exist. All-zero vectors are always noise.
    """
    cfg = config or ClusterConfig()
    x = _validate(matrix)
    n = x.shape[0]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x = normalize_rows(x)
    n_fit = min(n, cfg.sample_size)
    mcs = cfg.min_cluster_size or auto_min_cluster_size(n_fit)
    params = {**cfg.as_dict(), "n": n, "dim": int(x.shape[1]), "n_fit": n_fit, "min_cluster_size_used": mcs}
    if n == 0 or x.shape[1] == 0:
        return _constant(np.full(n, -1, dtype=np.int64), timings, params, t0)
    if _near_identical(x, cfg.identical_cosine):
        params["degenerate"] = "near-identical rows: one cluster"
        return _constant(np.where(x.any(axis=1), 0, -1).astype(np.int64), timings, params, t0)
    w = _weights(weights, n)
    if n < max(mcs, 2):
        params["degenerate"] = f"{n} distinct rows, fewer than min_cluster_size {mcs}: all noise"
        noise = np.full(n, -1, dtype=np.int64)
        labels, sims, made = _heavy_texts_apart(x, noise, np.zeros(n), w, mcs, cfg)
        params["heavy_text_clusters"] = made
        return _constant(_renumber_by_size(labels) if made else labels, timings, params, t0, sims)

    stages = build_stages(cfg, mcs)
    rng = np.random.default_rng(cfg.seed)
    sample = np.arange(n) if n_fit == n else np.sort(rng.choice(n, n_fit, replace=False))
    t = time.perf_counter()
    reduced = stages.reducer.fit(x[sample]).transform(x[sample])
    timings["reduce"] = time.perf_counter() - t
    params.update(stages.reducer.info_)

    t = time.perf_counter()
    sample_labels = stages.clusterer.fit(reduced).labels_
    params.update(stages.clusterer.info_)
    timings["cluster"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = np.full(n, -1, dtype=np.int64)
    labels[sample] = sample_labels
    if n_fit < n:
        # Unsampled rows take their nearest sampled row's label, searched in the PCA space when
        # there is one (a 20-d dot product instead of a 512-d one, same nearest exemplar give or take).
        project = _search_projection(stages.reducer)
        rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
        labels[rest] = nearest_exemplar_labels(project(x[rest]), project(x[sample]), sample_labels)
    timings["assign"] = time.perf_counter() - t
    noise_before = float(np.mean(labels < 0))

    t = time.perf_counter()
    refiner = stages.refiner.fit(x, labels)
    labels, sims = refiner.labels_, refiner.similarities_
    params["refine_passes"] = refiner.passes_
    labels[~x.any(axis=1)] = -1  # an all-zero vector has no direction to belong anywhere
    labels, sims, params["heavy_text_clusters"] = _heavy_texts_apart(x, labels, sims, w, mcs, cfg)
    timings["refine"] = time.perf_counter() - t
    labels = _renumber_by_size(labels)
    probabilities = np.where(labels >= 0, np.clip(sims, 0.0, 1.0), 0.0)
    timings["total"] = time.perf_counter() - t0
    return ClusteringResult(
        labels=labels,
        probabilities=probabilities.astype(np.float64),
        n_clusters=int(labels.max() + 1) if n else 0,
        noise_share_before=noise_before,
        noise_share_after=float(np.mean(labels < 0)),
        timings=timings,
        params=params,
    )


def _weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.int64)
    w = np.asarray(weights)
    if w.shape != (n,):
        raise ValueError(f"weights must have one count per row ({n}), got shape {w.shape}")
    return w


def _heavy_texts_apart(x, labels, sims, weights, min_count: int, cfg: ClusterConfig):
    """Give a heavy text (count >= ``min_count``) a cluster of its own, with the loosely placed rows
    near-identical to it (``identical_cosine``), when it is noise, or when it joined a cluster below
    ``heavy_text_cosine`` and carries at least as many comments as the rest of that cluster (it
    would make the cluster's label, size and surge score its own). A heavy text that sits loosely in
    a cluster it does not outweigh stays (a common short "good product" in a broad praise cluster).
    Heaviest first, so the result does not depend on row order."""
    labels, sims = labels.copy(), np.asarray(sims, dtype=np.float64).copy()
    clustered = labels >= 0
    loose = ~clustered | (sims < cfg.heavy_text_cosine)
    loose &= x.any(axis=1)
    totals = np.bincount(labels[clustered], weights=weights[clustered]) if clustered.any() else np.zeros(0)
    rest = np.where(clustered, totals[np.where(clustered, labels, 0)] - weights, 0) if len(totals) else 0
    seeds = np.flatnonzero(loose & (weights >= min_count) & (~clustered | (weights >= rest)))
    if len(seeds) == 0:
        return labels, sims, 0
    made = 0
    next_id = int(labels.max()) + 1
    for seed in seeds[np.lexsort((seeds, -weights[seeds]))]:
        if not loose[seed]:
            continue  # taken by a heavier text's group
        cos = x @ x[seed]
        members = np.union1d(np.flatnonzero(loose & (cos >= cfg.identical_cosine)), [seed])
        labels[members] = next_id
        sims[members] = np.clip(cos[members], 0.0, 1.0)
        loose[members] = False
        next_id += 1
        made += 1
    return labels, sims, made


def _near_identical(x: np.ndarray, min_cosine: float) -> bool:
    """All non-zero rows point (nearly) the same way: within ``min_cosine`` of their mean direction.

    Checked before any reduction: PCA of identical rows is float noise, which HDBSCAN then reads as
    structure-free and labels all noise (seen with hdbscan 0.8.44 / scikit-learn 1.9).
    """
    rows = x[x.any(axis=1)]
    if len(rows) == 0:
        return False
    mean = rows.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return False
    return float((rows @ (mean / norm)).min()) >= min_cosine


def _constant(
    labels: np.ndarray, timings: dict, params: dict, t0: float, sims: np.ndarray | None = None
) -> ClusteringResult:
    """Degenerate inputs decided without a fit (see ``cluster_vectors``): no day, one blob, or too few
    distinct rows to form a density cluster (then everything is noise, which is the honest answer)."""
    timings["total"] = time.perf_counter() - t0
    n = len(labels)
    noise = float(np.mean(labels < 0)) if n else 0.0
    return ClusteringResult(
        labels=labels,
        probabilities=(labels >= 0).astype(np.float64)
        if sims is None
        else np.where(labels >= 0, np.clip(sims, 0.0, 1.0), 0.0),
        n_clusters=int(labels.max() + 1) if n else 0,
        noise_share_before=noise,
        noise_share_after=noise,
        timings=timings,
        params=params,
    )


def _search_projection(reducer):
    """Where unsampled rows look for their nearest exemplar: the PCA space if the recipe has one
    (UMAP cannot place new rows cheaply), else the embedding space."""
    first = reducer.steps[0] if isinstance(reducer, ChainedReducer) else reducer
    return first.transform if isinstance(first, PCAReducer) else (lambda rows: rows)


def _renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters 0..k-1 by member count descending (ties by old id), so ids read as a ranking."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = np.full(int(labels.max()) + 2 if len(labels) else 1, -1, dtype=np.int64)
    mapping[order] = np.arange(len(order))
    out = np.full(len(labels), -1, dtype=np.int64)
    out[labels >= 0] = mapping[labels[labels >= 0]]
    return out


@dataclass
class ClusterSummary:
    cluster_id: int
    size: float  # comments in the cluster (distinct texts weighted by their comment counts)
    n_texts: int  # distinct texts in the cluster
    keywords: list[str]
    label: str
    representatives: list[str]  # distinct texts nearest the centroid, nearest first
    centroid: np.ndarray  # float32, unit norm, mean of the members' unit vectors (unweighted)


def summarize_clusters(
    texts: list[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    n_representatives: int = 3,
    top_k_keywords: int = 8,
) -> list[ClusterSummary]:
    """Explain each cluster: keywords, a label, the texts nearest its centre, its size.

    The centroid is unweighted on purpose: it places the topic for matching across days, and a text
    pasted by many accounts should not drag it; the size, which is about volume, is weighted.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    x = normalize_rows(_validate(vectors))
    if not (len(texts) == len(labels) == x.shape[0]):
        raise ValueError(f"texts ({len(texts)}), vectors ({x.shape[0]}) and labels ({len(labels)}) differ")
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(labels):
        raise ValueError(f"weights ({len(w)}) and labels ({len(labels)}) differ in length")
    # Imported here: keywords pulls in scikit-learn (2.3 s of imports), which every run, sensor tick
    # and CLI call would otherwise pay when the code location loads; only this step needs it.
    from embed_dagster.core.clustering.keywords import cluster_keywords, keyword_label

    keywords = cluster_keywords(texts, labels, w, top_k=top_k_keywords)
    out = []
    for c in sorted(int(c) for c in np.unique(labels) if c >= 0):
        members = np.flatnonzero(labels == c)
        centroid = normalize_rows(x[members].sum(axis=0, keepdims=True))[0]
        sims = x[members] @ centroid
        nearest = members[np.lexsort((members, -sims))[:n_representatives]]
        kw = keywords.get(c, [])
        out.append(
            ClusterSummary(
                cluster_id=c,
                size=float(w[members].sum()),
                n_texts=len(members),
                keywords=kw,
                label=keyword_label(kw) or f"cluster {c}",
                representatives=[texts[i] for i in nearest],
                centroid=centroid.astype(np.float32),
            )
        )
    out.sort(key=lambda s: (-s.size, s.cluster_id))
    return out
