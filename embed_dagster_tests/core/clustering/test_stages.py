"""Each stage alone, through its tiny interface (fit → self, learned attributes end in _)."""

from __future__ import annotations

import numpy as np
import pytest

from embed_dagster.core.clustering.recipe import ClusterConfig
from embed_dagster.core.clustering.stages import (
    CentroidRefiner,
    ChainedReducer,
    HDBSCANClusterer,
    NoReduction,
    PCAReducer,
    UMAPReducer,
    build_stages,
    nearest_exemplar_labels,
    normalize_rows,
)


def _blobs(n_per=60, k=3, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = normalize_rows(rng.normal(size=(k, dim)))
    x = np.vstack([c + rng.normal(scale=0.05, size=(n_per, dim)) for c in centres])
    return normalize_rows(x), np.repeat(np.arange(k), n_per)


def test_no_reduction_is_an_object_that_changes_nothing():
    x, _ = _blobs()
    r = NoReduction().fit(x)
    assert r.transform(x) is x and r.info_["reduced_dim"] == 32


def test_pca_reducer_projects_new_rows_into_the_fitted_space():
    x, _ = _blobs()
    r = PCAReducer(n_components=5).fit(x[:100])
    out = r.transform(x[100:])
    assert out.shape == (len(x) - 100, 5) and r.info_["reduced_dim"] == 5
    assert 0 < r.info_["pca_explained_variance"] <= 1


def test_pca_reducer_on_one_row_keeps_the_space():
    x, _ = _blobs()
    assert PCAReducer().fit(x[:1]).transform(x[:1]).shape == (1, 32)


def test_umap_reducer_refuses_rows_it_was_not_fitted_on():
    x, _ = _blobs(n_per=2)  # too few rows for UMAP: passes the rows through
    r = UMAPReducer().fit(x)
    with pytest.raises(ValueError):
        r.transform(x[:3])


def test_clusterer_and_refiner_find_the_blobs():
    x, truth = _blobs()
    labels = HDBSCANClusterer(min_cluster_size=10).fit(PCAReducer(5).fit(x).transform(x)).labels_
    refined = CentroidRefiner(outlier_threshold=0.0).fit(x, labels)
    assert len(set(refined.labels_.tolist())) == 3 and (refined.labels_ >= 0).all()
    assert refined.similarities_.shape == (len(x),) and refined.passes_ >= 1
    # one cluster per true blob
    assert all(len(set(refined.labels_[truth == t].tolist())) == 1 for t in range(3))


def test_refiner_without_threshold_keeps_noise():
    x, _ = _blobs()
    labels = np.full(len(x), -1)
    labels[:60] = 0
    refined = CentroidRefiner(outlier_threshold=None, iterations=0).fit(x, labels)
    assert (refined.labels_[60:] == -1).all() and (refined.labels_[:60] == 0).all()


def test_nearest_exemplar_labels():
    ex = np.eye(3, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0], [0, 0.2, 0.8]], dtype=np.float32)
    assert nearest_exemplar_labels(q, ex, np.array([5, 6, 7])).tolist() == [5, 7]


@pytest.mark.parametrize(
    ("reduction", "kind"),
    [("none", NoReduction), ("pca", PCAReducer), ("umap", UMAPReducer), ("pca+umap", ChainedReducer)],
)
def test_build_stages_maps_config_to_objects(reduction, kind):
    stages = build_stages(ClusterConfig(reduction=reduction, min_samples=3, outlier_threshold=None), 12)
    assert isinstance(stages.reducer, kind)
    assert stages.clusterer.min_cluster_size == 12 and stages.clusterer.min_samples == 3
    assert stages.refiner.outlier_threshold is None
