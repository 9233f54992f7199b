"""The clustering recipe's stages as small objects, the way BERTopic composes its pipeline.

Each stage has ``fit`` (returns itself) and exposes what it learned as attributes ending in ``_``:

* a **reducer** (``NoReduction``, ``PCAReducer``, ``UMAPReducer``, ``ChainedReducer``) has
  ``transform``; "no reduction" is an object too, so the recipe never branches on it;
* a **clusterer** (``HDBSCANClusterer``) has ``labels_`` (-1 = noise);
* a **refiner** (``CentroidRefiner``) has ``labels_`` and ``similarities_`` for every row.

:func:`build_stages` is the one place that maps a :class:`~.recipe.ClusterConfig` to objects; to add
a stage, write a class with the same two or three members and map a config value to it there.
Numba-based libraries (umap, fast_hdbscan) are imported only when their stage is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_REFINE_TOLERANCE = 0.001  # stop refining once fewer than 0.1 % of the rows change cluster
_CHUNK = 2048  # rows per block in the brute-force similarity passes; bounds memory to chunk × k


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalize in float32; all-zero rows stay zero (they can only be noise)."""
    x = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Reducer(Protocol):
    info_: dict

    def fit(self, x: np.ndarray) -> Reducer: ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...


class Clusterer(Protocol):
    labels_: np.ndarray

    def fit(self, x: np.ndarray) -> Clusterer: ...


@dataclass
class NoReduction:
    """Cluster in the embedding space itself."""

    info_: dict = field(default_factory=dict)

    def fit(self, x: np.ndarray) -> NoReduction:
        self.info_ = {"reduced_dim": int(x.shape[1])}
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x


@dataclass
class PCAReducer:
    """PCA to ``n_components``: at ≤ 60 dimensions hdbscan can use its Boruvka KD-tree."""

    n_components: int = 20
    seed: int = 0
    info_: dict = field(default_factory=dict)
    mean_: np.ndarray | None = None
    components_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> PCAReducer:
        from sklearn.decomposition import PCA

        k = min(self.n_components, x.shape[0] - 1, x.shape[1])
        if k < 1:  # a single row: nothing to project onto, keep the space as it is
            self.mean_, self.components_ = None, None
            self.info_ = {"reduced_dim": int(x.shape[1])}
            return self
        pca = PCA(n_components=k, svd_solver="auto", random_state=self.seed).fit(x)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.info_ = {
            "pca_explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4),
            "reduced_dim": k,
        }
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.components_ is None:
            return np.asarray(x, dtype=np.float32)
        return ((np.asarray(x, dtype=np.float32) - self.mean_) @ self.components_.T).astype(np.float32)


@dataclass
class UMAPReducer:
    """UMAP (BERTopic's reducer). Pays numba JIT once per process; fitted rows only: UMAP's own
    ``transform`` is numba code and slower than the nearest-exemplar search it would serve."""

    n_components: int = 5
    n_neighbors: int = 15
    min_dist: float = 0.0
    seed: int = 0
    info_: dict = field(default_factory=dict)
    embedding_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> UMAPReducer:
        neighbors = min(self.n_neighbors, x.shape[0] - 1)
        if neighbors >= 2 and x.shape[0] > self.n_components + 1:
            import umap

            reducer = umap.UMAP(
                n_neighbors=neighbors,
                n_components=self.n_components,
                min_dist=self.min_dist,
                metric="cosine",
                random_state=self.seed,
            )
            self.embedding_ = reducer.fit_transform(x).astype(np.float32)
        else:
            self.embedding_ = np.asarray(x, dtype=np.float32)
        self.info_ = {"reduced_dim": int(self.embedding_.shape[1])}
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.embedding_ is None or len(x) != len(self.embedding_):
            raise ValueError("UMAPReducer transforms only the rows it was fitted on")
        return self.embedding_


@dataclass
class ChainedReducer:
    """Reducers applied in order (PCA then UMAP)."""

    steps: list
    info_: dict = field(default_factory=dict)

    def fit(self, x: np.ndarray) -> ChainedReducer:
        self.info_ = {}
        for step in self.steps:
            x = step.fit(x).transform(x)
            self.info_.update(step.info_)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step.transform(x)
        return x


@dataclass
class HDBSCANClusterer:
    """Density clustering (hdbscan, or the numba ``fast_hdbscan``); decides how many groups exist."""

    min_cluster_size: int = 10
    min_samples: int | None = 5
    selection_method: str = "leaf"
    algorithm: str = "hdbscan"
    labels_: np.ndarray | None = None
    info_: dict = field(default_factory=dict)

    def fit(self, x: np.ndarray) -> HDBSCANClusterer:
        if len(np.unique(x, axis=0)) < 2:  # identical rows: one blob, no density contrast to find
            self.labels_ = np.zeros(len(x), dtype=np.int64)
            return self
        # A small day (tens of distinct texts) has no 5-deep neighbourhoods: scale min_samples down
        # so density can still be found, one core neighbour per ~40 texts.
        ms = min(self.min_samples or self.min_cluster_size, max(1, len(x) // 40), len(x) - 1)
        if self.algorithm == "fast_hdbscan":
            import fast_hdbscan

            model = fast_hdbscan.HDBSCAN(
                min_cluster_size=self.min_cluster_size,
                min_samples=ms,
                cluster_selection_method=self.selection_method,
            )
        else:
            import hdbscan

            # "best" picks Boruvka KD-tree at <= 60 dims and single-core Prim's above; say which ran
            self.info_["hdbscan_core"] = "boruvka_kdtree" if x.shape[1] <= 60 else "prims"
            model = hdbscan.HDBSCAN(
                min_cluster_size=self.min_cluster_size,
                min_samples=ms,
                cluster_selection_method=self.selection_method,
                core_dist_n_jobs=1,
            )
        self.labels_ = np.asarray(model.fit_predict(x.astype(np.float64)), dtype=np.int64)
        return self


@dataclass
class CentroidRefiner:
    """Outlier rescue and spherical k-means refinement in the full cosine space.

    Points the density step clustered always move to their nearest centroid; noise points join it
    only when ``outlier_threshold`` is set and their cosine passes it. Centroids are recomputed from
    the members after each pass; clusters that lose every member disappear. ``iterations=0`` means
    rescue only: clustered points keep their label.
    """

    outlier_threshold: float | None = 0.0
    iterations: int = 30
    labels_: np.ndarray | None = None
    similarities_: np.ndarray | None = None
    passes_: int = 0

    def fit(self, x: np.ndarray, labels: np.ndarray) -> CentroidRefiner:
        k = int(labels.max()) + 1 if len(labels) else 0
        if k == 0:
            self.labels_, self.similarities_ = labels, np.zeros(len(labels), dtype=np.float32)
            return self
        clustered = labels >= 0
        centroids = _centroids(x, labels, k)
        current, passes = labels, 0
        for _ in range(max(self.iterations, 1)):
            best, sims = _nearest(x, centroids)
            if self.iterations == 0:
                best = np.where(clustered, labels, best)
                sims = np.einsum("ij,ij->i", x, centroids[best])
            accept = clustered.copy()
            if self.outlier_threshold is not None:
                accept |= sims >= self.outlier_threshold
            new = np.where(accept, best, -1)
            changed = float(np.mean(new != current))
            current = new
            passes += 1
            if not self.iterations or changed < _REFINE_TOLERANCE:
                break
            centroids = _centroids(x, current, k)
        self.passes_ = passes
        self.labels_ = current
        self.similarities_ = np.einsum("ij,ij->i", x, centroids[np.maximum(current, 0)])
        return self


def nearest_exemplar_labels(queries: np.ndarray, exemplars: np.ndarray, exemplar_labels: np.ndarray):
    """Each query row takes its nearest exemplar's label (euclidean, chunked). Noise propagates too,
    so the noise share before rescue means the same with and without sampling."""
    half_norms = 0.5 * np.einsum("ij,ij->i", exemplars, exemplars)
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), _CHUNK):
        # argmin |a-b|^2 == argmax (a.b - |b|^2/2)
        scores = queries[start : start + _CHUNK] @ exemplars.T
        scores -= half_norms
        out[start : start + _CHUNK] = exemplar_labels[scores.argmax(axis=1)]
    return out


def _centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    from scipy import sparse

    rows = np.flatnonzero(labels >= 0)
    onehot = sparse.csr_matrix((np.ones(len(rows), np.float32), (labels[rows], rows)), shape=(k, len(x)))
    return normalize_rows(onehot @ x)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = np.empty(len(x), dtype=np.int64)
    sims = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), _CHUNK):
        s = x[start : start + _CHUNK] @ centroids.T
        best[start : start + _CHUNK] = s.argmax(axis=1)
        sims[start : start + _CHUNK] = s[np.arange(len(s)), best[start : start + _CHUNK]]
    return best, sims


@dataclass
class Stages:
    reducer: Reducer
    clusterer: Clusterer
    refiner: CentroidRefiner


def build_stages(cfg, min_cluster_size: int) -> Stages:
    """The one mapping from configuration (a ``ClusterConfig``) to stage objects."""
    reducers = {
        "none": lambda: NoReduction(),
        "pca": lambda: PCAReducer(cfg.pca_components, cfg.seed),
        "umap": lambda: UMAPReducer(cfg.umap_components, cfg.umap_neighbors, cfg.umap_min_dist, cfg.seed),
        "pca+umap": lambda: ChainedReducer(
            [
                PCAReducer(cfg.pca_components, cfg.seed),
                UMAPReducer(cfg.umap_components, cfg.umap_neighbors, cfg.umap_min_dist, cfg.seed),
            ]
        ),
    }
    return Stages(
        reducer=reducers[cfg.reduction](),
        clusterer=HDBSCANClusterer(min_cluster_size, cfg.min_samples, cfg.selection_method, cfg.algorithm),
        refiner=CentroidRefiner(cfg.outlier_threshold, cfg.refine_iterations),
    )
