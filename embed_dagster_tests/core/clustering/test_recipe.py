"""cluster_vectors, summarize_clusters and render_cluster_map on planted clusters on the unit sphere.

The data are Gaussian blobs around random unit centres in 48-d, normalized back onto the sphere, so
the clustering sees what it sees in production (unit vectors, cosine geometry) at test speed.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embed_dagster.core.clustering.recipe import (
    ClusterConfig,
    cluster_vectors,
    normalize_rows,
    summarize_clusters,
)
from embed_dagster.core.topics.cluster_map import render_cluster_map


def sphere_blobs(sizes, dim=48, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = normalize_rows(rng.normal(size=(len(sizes), dim)))
    parts, truth = [], []
    for i, n in enumerate(sizes):
        parts.append(centres[i] + rng.normal(scale=spread / np.sqrt(dim), size=(n, dim)))
        truth.append(np.full(n, i))
    return normalize_rows(np.vstack(parts)).astype(np.float32), np.concatenate(truth)


def test_finds_planted_clusters():
    x, truth = sphere_blobs([120, 90, 70, 60, 50])
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=15))
    assert res.labels.dtype == np.int64 and res.labels.shape == (len(x),)
    assert res.n_clusters == 5
    assert adjusted_rand_score(truth, res.labels) > 0.95
    assert res.noise_share_after == 0.0
    assert set(res.timings) >= {"reduce", "cluster", "assign", "refine", "total"}
    assert res.params["min_cluster_size_used"] == 15 and res.params["n"] == len(x)


def test_labels_are_ranked_by_size_and_probabilities_bounded():
    x, _ = sphere_blobs([40, 150, 80])
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=15))
    counts = np.bincount(res.labels[res.labels >= 0])
    assert list(counts) == sorted(counts, reverse=True)
    assert ((res.probabilities >= 0) & (res.probabilities <= 1)).all()
    assert (res.probabilities[res.labels >= 0] > 0.5).all()


def test_deterministic():
    x, _ = sphere_blobs([100, 80, 60], seed=3)
    cfg = ClusterConfig(min_cluster_size=10, sample_size=150)
    assert np.array_equal(cluster_vectors(x, cfg).labels, cluster_vectors(x, cfg).labels)


def test_empty_day_has_no_clusters():
    res = cluster_vectors(np.zeros((0, 16), np.float32), ClusterConfig(min_cluster_size=5))
    assert res.labels.shape == (0,) and res.n_clusters == 0 and res.noise_share_after == 0.0


def test_one_text_is_one_cluster():
    x, _ = sphere_blobs([1])
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=5))
    assert res.labels.tolist() == [0] and res.n_clusters == 1 and res.probabilities.tolist() == [1.0]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_few_different_texts_are_all_noise(n):
    """Fewer distinct texts than min_cluster_size, pointing different ways: no density cluster exists."""
    x = normalize_rows(np.eye(16, dtype=np.float32)[:n])
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=5))
    assert res.labels.shape == (n,) and (res.labels == -1).all()
    assert res.n_clusters == 0 and res.noise_share_after == 1.0
    assert res.probabilities.shape == (n,) and (res.probabilities == 0).all()


@pytest.mark.parametrize("n", [2, 3, 40, 500])
def test_near_identical_texts_form_one_cluster(n):
    base = normalize_rows(np.arange(1, 17, dtype=np.float32).reshape(1, -1))
    jitter = np.random.default_rng(n).normal(scale=0.01, size=(n, 16)).astype(np.float32)
    res = cluster_vectors(normalize_rows(base + jitter), ClusterConfig(min_cluster_size=5))
    assert res.n_clusters == 1 and (res.labels == 0).all()


def test_two_tight_groups_are_not_mistaken_for_one():
    x = normalize_rows(
        np.vstack(
            [
                np.tile(np.eye(16, dtype=np.float32)[0], (30, 1)),
                np.tile(np.eye(16, dtype=np.float32)[1], (30, 1)),
            ]
        )
    )
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=5))
    assert res.n_clusters == 2


def test_identical_vectors_form_one_cluster():
    x = np.tile(normalize_rows(np.arange(1, 17, dtype=np.float32).reshape(1, -1)), (40, 1))
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=5))
    assert res.n_clusters == 1 and (res.labels == 0).all()


def test_rows_are_normalized_inside():
    x, truth = sphere_blobs([80, 80, 80], seed=5)
    scaled = x * np.random.default_rng(1).uniform(0.1, 50, size=(len(x), 1)).astype(np.float32)
    cfg = ClusterConfig(min_cluster_size=10)
    assert np.array_equal(cluster_vectors(scaled, cfg).labels, cluster_vectors(x, cfg).labels)


def test_sampling_path_labels_every_row():
    x, truth = sphere_blobs([900, 700, 500, 400], seed=7)
    res = cluster_vectors(x, ClusterConfig(sample_size=400, min_cluster_size=15))
    assert res.params["n_fit"] == 400
    assert (res.labels >= 0).all()
    assert adjusted_rand_score(truth, res.labels) > 0.95


def test_outlier_rescue_reduces_noise_and_respects_threshold():
    x, _ = sphere_blobs([100, 100, 100], spread=0.8, seed=11)
    scatter = normalize_rows(np.random.default_rng(2).normal(size=(60, x.shape[1]))).astype(np.float32)
    x = np.vstack([x, scatter])
    base = dict(min_cluster_size=20, refine_iterations=0, selection_method="eom")
    off = cluster_vectors(x, ClusterConfig(**base, outlier_threshold=None))
    on = cluster_vectors(x, ClusterConfig(**base, outlier_threshold=0.0))
    strict = cluster_vectors(x, ClusterConfig(**base, outlier_threshold=0.95))
    assert off.noise_share_before > 0.1
    assert off.noise_share_after == off.noise_share_before
    assert on.noise_share_before == off.noise_share_before
    assert on.noise_share_after < off.noise_share_after
    assert strict.noise_share_after == pytest.approx(strict.noise_share_before)
    # without refinement the density step's members keep their cluster
    kept = off.labels >= 0
    assert np.array_equal(on.labels[kept] >= 0, kept[kept])


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        cluster_vectors(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        cluster_vectors(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="reduction must be one of"):
        ClusterConfig(reduction="tsne")
    with pytest.raises(ValueError, match="outlier_threshold"):
        ClusterConfig(outlier_threshold=2.0)
    with pytest.raises(ValueError, match="min_cluster_size"):
        ClusterConfig(min_cluster_size=1)


def test_summaries_sizes_keywords_and_representatives():
    x, truth = sphere_blobs([30, 20], seed=13)
    texts = [f"delivery courier late parcel {i}" for i in range(30)]
    texts += [f"refund card fee {i}" for i in range(20)]
    weights = np.concatenate([np.ones(30), np.full(20, 5)])
    sums = summarize_clusters(texts, x, truth, weights=weights, n_representatives=3, top_k_keywords=4)
    assert [s.cluster_id for s in sums] == [1, 0]  # 20 texts × 5 comments outweigh 30 × 1
    assert [s.size for s in sums] == [100.0, 30.0] and [s.n_texts for s in sums] == [20, 30]
    assert set(sums[0].keywords) >= {"refund", "card", "fee"}
    assert sums[0].label == " / ".join(sums[0].keywords[:3])
    for s in sums:
        assert s.centroid.dtype == np.float32 and np.linalg.norm(s.centroid) == pytest.approx(1, abs=1e-5)
        members = np.flatnonzero(truth == s.cluster_id)
        expected = members[np.argsort(-(x[members] @ s.centroid), kind="stable")[:3]]
        assert s.representatives == [texts[i] for i in expected]


def test_summaries_skip_noise_and_handle_empty():
    x, _ = sphere_blobs([5])
    assert summarize_clusters([f"t{i}" for i in range(5)], x, np.full(5, -1)) == []
    assert summarize_clusters([], np.zeros((0, 8), np.float32), np.zeros(0, np.int64)) == []


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    (crc,) = struct.unpack(">I", png[16 + length : 20 + length])
    assert kind == b"IHDR" and zlib.crc32(png[12 : 16 + length]) == crc
    return struct.unpack(">II", png[16:24])


def test_cluster_map_is_a_small_deterministic_png():
    x, truth = sphere_blobs([400, 300, 200, 100], seed=17)
    labels = truth.copy()
    labels[::7] = -1
    png = render_cluster_map(x, labels, "test map", size_px=480)
    assert _png_size(png) == (480, 360)
    assert len(png) < 100_000
    assert png == render_cluster_map(x, labels, "test map", size_px=480)


@pytest.mark.parametrize("labels", [np.full(30, -1), np.zeros(30, np.int64), np.repeat([0, 1], 15)])
def test_cluster_map_degenerate_inputs(labels):
    x, _ = sphere_blobs([30])
    assert _png_size(render_cluster_map(x, labels, "few"))[0] == 640
    assert _png_size(render_cluster_map(x[:, :2], labels, "2-d input"))[0] == 640


def test_all_zero_rows_end_up_as_noise():
    x, _ = sphere_blobs([60, 60], seed=19)
    x[:3] = 0.0
    res = cluster_vectors(x, ClusterConfig(min_cluster_size=10))
    assert (res.labels[:3] == -1).all() and (res.labels[3:] >= 0).all()


def _with_stray_text(seed=0):
    """Three planted clusters and one stray text, far from all of them (cosine ~0 in 48-d)."""
    x, truth = sphere_blobs([60, 50, 40], seed=seed)
    stray = normalize_rows(np.random.default_rng(seed + 100).normal(size=(1, x.shape[1])))
    return np.vstack([x, stray]).astype(np.float32), len(x)


def test_a_heavily_repeated_stray_text_is_a_cluster_of_its_own():
    """Stop 25: 2,000 copies of one spam text are one row; noise rescue put it in the nearest cluster
    at cosine 0.38, where its comments outweighed the cluster's own (label, size, surge score)."""
    x, stray = _with_stray_text()
    cfg = ClusterConfig(min_cluster_size=10)
    ones = np.ones(len(x), dtype=np.int64)
    assert cluster_vectors(x, cfg).labels[stray] >= 0  # rescued into a cluster, as before
    heavy = ones.copy()
    heavy[stray] = 2000
    res = cluster_vectors(x, cfg, weights=heavy)
    own = res.labels[stray]
    assert own >= 0 and np.flatnonzero(res.labels == own).tolist() == [stray]
    assert res.n_clusters == 4 and res.params["heavy_text_clusters"] == 1
    assert res.probabilities[stray] == pytest.approx(1.0)
    # the other rows are clustered exactly as without the heavy text
    assert adjusted_rand_score(cluster_vectors(x, cfg).labels[:stray], res.labels[:stray]) == 1.0
    # a count under min_cluster_size stays a rescued row
    light = ones.copy()
    light[stray] = 9
    assert np.array_equal(cluster_vectors(x, cfg, weights=light).labels, cluster_vectors(x, cfg).labels)


def test_a_heavy_text_that_does_not_outweigh_its_loose_cluster_stays_in_it():
    """A common short text ("good product") sits loosely in a broad cluster; as long as the rest of
    the cluster carries more comments it stays there."""
    x, truth = sphere_blobs([60, 50, 40], spread=1.2, seed=4)
    cfg = ClusterConfig(min_cluster_size=10)
    plain = cluster_vectors(x, cfg)
    loose = int(np.argmin(np.where(plain.labels >= 0, plain.probabilities, 2.0)))
    assert plain.probabilities[loose] < cfg.heavy_text_cosine
    cluster_comments = int((plain.labels == plain.labels[loose]).sum())
    weights = np.ones(len(x), dtype=np.int64)
    weights[loose] = cluster_comments - 2  # under the rest of its cluster's comments
    assert np.array_equal(cluster_vectors(x, cfg, weights=weights).labels, plain.labels)
    weights[loose] = cluster_comments  # now it outweighs them
    assert cluster_vectors(x, cfg, weights=weights).params["heavy_text_clusters"] == 1


def test_a_day_of_few_distinct_texts_keeps_its_heavy_text_as_a_cluster():
    """Fewer distinct texts than min_cluster_size is all noise, unless one of them stands for enough
    comments to be dense on its own (2,000 copies and three other texts: the day had no cluster)."""
    x, _ = sphere_blobs([1, 1, 1, 1], seed=5)
    cfg = ClusterConfig(min_cluster_size=5)
    assert (cluster_vectors(x, cfg).labels == -1).all()
    res = cluster_vectors(x, cfg, weights=np.array([1, 2000, 1, 1]))
    assert res.labels.tolist() == [-1, 0, -1, -1] and res.n_clusters == 1
    assert res.probabilities.tolist() == [0.0, pytest.approx(1.0), 0.0, 0.0]
    with pytest.raises(ValueError, match="one count per row"):
        cluster_vectors(x, cfg, weights=[1, 2])
