"""The labelled cluster map and the topic-trend chart: small PNGs, Chinese glyphs from the bundled font."""

from __future__ import annotations

import datetime
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from embed_dagster.core.topics._plot import ensure_font
from embed_dagster.core.topics.cluster_map import map_clusters, map_coordinates, render_cluster_map
from embed_dagster.core.topics.trend import render_topic_trend


def blobs(sizes, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for k, n in enumerate(sizes):
        centre = rng.normal(size=dim) * 3
        x.append(centre + rng.normal(size=(n, dim)))
        y += [k] * n
    return np.vstack(x).astype(np.float32), np.asarray(y)


def test_bundled_cjk_font_is_found_without_system_fonts():
    from matplotlib import font_manager

    family = ensure_font()
    path = font_manager.findfont(font_manager.FontProperties(family=family[0]), fallback_to_default=False)
    assert "noto_cjk_sans_otc" in str(path)


def _render_warnings(render) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = render()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_map_names_clusters_in_chinese_with_no_missing_glyphs_and_stays_small():
    x, y = blobs([300, 200, 120, 80, 40])
    names = {0: "快递 / 物流 / 速度", 1: "屏幕 / 清晰", 2: "refund / late", 3: "客服 / 态度"}
    png = None

    def render():
        nonlocal png
        png = render_cluster_map(x, y, "地图 map", names=names, highlight={2}, annotate_top=4)
        return png

    assert _render_warnings(render) == []
    assert len(png) < 100_000
    assert png == render_cluster_map(x, y, "地图 map", names=names, highlight={2}, annotate_top=4)
    # a Chinese label draws ink: the map differs from one with the label left out
    assert png != render_cluster_map(x, y, "地图 map", names={**names, 0: ""}, highlight={2}, annotate_top=4)


@pytest.mark.parametrize("max_points", [10_000, 500])
def test_stored_positions_draw_the_map_the_vectors_draw(max_points):
    """The clusters step stores ``map_coordinates`` and the topic map draws them: the same picture
    as projecting the vectors, also when the projection is fitted on a sample and applied to all."""
    x, y = blobs([600, 300, 150, 60], seed=3)
    xy = map_coordinates(x, y, max_points=max_points)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    # the projection separates the clusters: each cluster's points sit nearer their own centre
    centres = np.stack([xy[y == k].mean(axis=0) for k in range(4)])
    nearest = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.9
    kwargs = dict(title="map", max_points=max_points, names={0: "zero"}, highlight={1})
    assert render_cluster_map(xy, y, **kwargs) == render_cluster_map(x, y, **kwargs)
    assert np.array_equal(map_coordinates(x, y, max_points=max_points), xy)  # deterministic


def test_map_and_table_share_the_same_clusters():
    labels = np.repeat(np.arange(15), np.arange(15, 0, -1) * 3)
    assert map_clusters(labels, 12) == list(range(12))
    assert map_clusters(np.asarray([-1, -1, 3, 3, 1]), 12) == [3, 1]


def test_trend_chart_marks_new_and_surging_topics():
    days = [datetime.date(2026, 1, 1) + datetime.timedelta(days=i) for i in range(10)]
    sizes = {f"T{i}": [20.0 + i] * 10 for i in range(10)}
    sizes["T3"][-1] = 200.0
    sizes["T5"][:6] = [0.0] * 6
    labels = {f"T{i}": f"话题 {i} / topic" for i in range(10)}

    def render():
        return render_topic_trend(days, sizes, labels, {"T5": days[6]}, {"T3": [days[-1]]}, top=8)

    assert _render_warnings(render) == []
    png = render()
    width, height = Image.open(io.BytesIO(png)).size
    assert (width, height) == (720, 360) and len(png) < 100_000
    assert png != render_topic_trend(days, sizes, labels, {}, {}, top=8)  # the marks are drawn
    with pytest.raises(ValueError, match="sizes for 10 days"):
        render_topic_trend(days, {"T0": [1.0]}, labels)
