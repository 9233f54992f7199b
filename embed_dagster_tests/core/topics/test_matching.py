"""assign_topics: stable ids across days, one-to-one, threshold, determinism."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from embed_dagster.core.clustering.recipe import ClusterSummary, normalize_rows
from embed_dagster.core.topics.matching import TopicState, assign_topics, new_topic_id, update_registry

DAY1 = datetime.date(2026, 1, 1)
DAY2 = datetime.date(2026, 1, 2)


def unit(seed: int, dim: int = 16) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).normal(size=(1, dim)))[0]


def near(v: np.ndarray, cos: float, seed: int = 99) -> np.ndarray:
    """A unit vector at exactly cosine ``cos`` from ``v``."""
    r = np.random.default_rng(seed).normal(size=v.shape)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return (cos * v + np.sqrt(1 - cos**2) * r).astype(np.float32)


def summary(cluster_id: int, centroid: np.ndarray, size: float = 10.0) -> ClusterSummary:
    return ClusterSummary(cluster_id, size, int(size), [], f"c{cluster_id}", [], centroid.astype(np.float32))


def registry_after_day1(n: int = 3):
    clusters = [summary(i, unit(i), size=100 - i) for i in range(n)]
    ids = assign_topics([], clusters, 0.8, DAY1)
    return clusters, ids, update_registry([], clusters, ids)


def test_first_day_ids_follow_size_rank():
    clusters = [summary(0, unit(0), 5), summary(1, unit(1), 50), summary(2, unit(2), 20)]
    assert assign_topics([], clusters, 0.8, DAY1) == {1: "T20260101-00", 2: "T20260101-01", 0: "T20260101-02"}
    assert new_topic_id(DAY1, 7) == "T20260101-07"


def test_identical_clusters_next_day_keep_their_ids():
    clusters, ids, registry = registry_after_day1()
    renumbered = [summary(10 + c.cluster_id, c.centroid, c.size) for c in clusters]
    day2 = assign_topics(registry, renumbered, 0.8, DAY2)
    assert {k - 10: v for k, v in day2.items()} == ids


def test_new_cluster_gets_a_new_id_and_old_ones_continue():
    clusters, ids, registry = registry_after_day1()
    today = [summary(0, near(unit(0), 0.9), 30), summary(1, unit(42), 80)]
    today.append(summary(2, near(unit(2), 0.85), 10))
    day2 = assign_topics(registry, today, 0.8, DAY2)
    assert day2[0] == ids[0] and day2[2] == ids[2]
    assert day2[1] == "T20260102-00"  # the largest cluster of day 2 is the new one
    assert len(set(day2.values())) == 3


def test_one_to_one_two_clusters_cannot_take_the_same_topic():
    _, ids, registry = registry_after_day1(1)
    today = [summary(0, near(unit(0), 0.95, seed=1), 10), summary(1, near(unit(0), 0.9, seed=2), 20)]
    day2 = assign_topics(registry, today, 0.8, DAY2)
    assert day2[0] == ids[0]  # the more similar cluster continues the topic
    assert day2[1] == "T20260102-00"


def test_assignment_prefers_more_continued_topics():
    def at(degrees: float) -> np.ndarray:
        v = np.zeros(16, np.float32)
        v[0], v[1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        return v

    registry = [TopicState("A", at(10)), TopicState("B", at(-30))]
    # greedy would give A to cluster 0 (cos 0.98) and leave cluster 1 (cos 0.87 to A, 0.34 to B) new;
    # the assignment gives B to cluster 0 (cos 0.87) instead so both continue
    today = [summary(0, at(0), 10), summary(1, at(40), 10)]
    assert assign_topics(registry, today, 0.8, DAY2) == {0: "B", 1: "A"}


@pytest.mark.parametrize("cos, continued", [(0.79, False), (0.8, True), (0.81, True)])
def test_threshold_is_respected(cos, continued):
    registry = [TopicState("T20251231-00", unit(0))]
    day2 = assign_topics(registry, [summary(0, near(unit(0), cos))], 0.8, DAY2)
    assert (day2[0] == "T20251231-00") is continued


def test_deterministic_regardless_of_input_order():
    _, _, registry = registry_after_day1(5)
    today = [summary(i, near(unit(i), 0.9, seed=i), 10 + i) for i in range(0, 5, 2)]
    today += [summary(i, unit(100 + i), 10) for i in range(5, 9)]  # equal sizes: ties broken by id
    first = assign_topics(registry, today, 0.8, DAY2)
    assert first == assign_topics(list(reversed(registry)), list(reversed(today)), 0.8, DAY2)
    assert first == assign_topics(registry, today, 0.8, DAY2)


def test_rerunning_a_day_into_its_own_registry_keeps_ids_unique():
    clusters, ids, registry = registry_after_day1()
    extra = clusters + [summary(9, unit(77), 1000)]  # takes rank 00, whose id already exists
    again = assign_topics(registry, extra, 0.8, DAY1)
    assert {k: again[k] for k in ids} == ids
    assert again[9] == "T20260101-00-1"
    assert len(set(again.values())) == len(extra)


def test_errors_and_empty_inputs():
    assert assign_topics([], [], 0.8, DAY1) == {}
    assert assign_topics([TopicState("X", unit(0))], [], 0.8, DAY1) == {}
    with pytest.raises(ValueError, match="different embedding model"):
        assign_topics([TopicState("X", unit(0, dim=8))], [summary(0, unit(0))], 0.8, DAY1)
    with pytest.raises(ValueError, match="threshold"):
        assign_topics([], [], 1.5, DAY1)


def test_update_registry_moves_matched_and_adds_new():
    clusters, ids, registry = registry_after_day1(2)
    today = [summary(0, near(unit(0), 0.9), 10), summary(1, unit(55), 10)]
    day2 = assign_topics(registry, today, 0.8, DAY2)
    updated = {t.topic_id: t.centroid for t in update_registry(registry, today, day2, momentum=0.5)}
    assert set(updated) == set(ids.values()) | {day2[1]}
    moved = updated[ids[0]]
    assert np.linalg.norm(moved) == pytest.approx(1, abs=1e-5)
    assert moved @ unit(0) > 0.9 and moved @ today[0].centroid > 0.9
    assert np.allclose(updated[ids[1]], registry[1].centroid)
