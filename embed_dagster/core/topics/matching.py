"""Stable topic ids across days: match each day's clusters to the running topic registry.

BERTopic users' complaint is that topic ids change from run to run. Here a cluster continues a known
topic when its centroid's cosine similarity to that topic's centroid reaches ``threshold``; the
matching is one-to-one (Hungarian assignment, so two clusters of one day never share a topic and a
topic never splits into two ids on one day). An unmatched cluster opens a new topic whose id is built
from the day and the cluster's size rank that day — deterministic and unique without a global
counter, so re-running a day, or running days on different machines, yields the same ids.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from embed_dagster.core.clustering.recipe import ClusterSummary, normalize_rows


@dataclass(frozen=True)
class TopicState:
    topic_id: str
    centroid: np.ndarray  # unit vector; the topic's centroid as last seen (or a running average)


def new_topic_id(day: datetime.date, rank: int) -> str:
    """``T20260101-00``: the day a topic first appeared and its size rank among that day's clusters."""
    return f"T{day:%Y%m%d}-{rank:02d}"


def assign_topics(
    registry: list[TopicState],
    clusters: list[ClusterSummary],
    threshold: float,
    day: datetime.date,
) -> dict[int, str]:
    """Map every cluster id of ``day`` to a topic id, continuing known topics where possible.

    The assignment maximises, over pairs at or above ``threshold``, first the number of continued
    topics and then their total similarity. Inputs are put in a canonical order first (registry by
    topic id, clusters by size rank), so the result does not depend on how the caller ordered them.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
    ranked = sorted(clusters, key=lambda c: (-c.size, c.cluster_id))
    if len({c.cluster_id for c in ranked}) != len(ranked):
        raise ValueError("cluster ids must be unique within a day")
    known = sorted(registry, key=lambda t: t.topic_id)
    if len({t.topic_id for t in known}) != len(known):
        raise ValueError("topic ids must be unique in the registry")
    result: dict[int, str] = {}
    if ranked and known:
        a = normalize_rows(np.vstack([np.asarray(c.centroid, np.float32).reshape(1, -1) for c in ranked]))
        b = normalize_rows(np.vstack([np.asarray(t.centroid, np.float32).reshape(1, -1) for t in known]))
        if a.shape[1] != b.shape[1]:
            raise ValueError(
                f"cluster centroids have {a.shape[1]} dimensions but the registry has {b.shape[1]}: "
                "topics from a different embedding model cannot be continued"
            )
        sims = (a @ b.T).astype(np.float64)
        eligible = sims >= threshold
        # 2 + sim > 1 for every eligible pair and 0 otherwise: one more match always outweighs any
        # gain in similarity, and ineligible pairs add nothing (they are dropped below).
        gain = np.where(eligible, 2.0 + sims, 0.0)
        rows, cols = linear_sum_assignment(gain, maximize=True)
        for r, c in zip(rows, cols, strict=True):
            if eligible[r, c]:
                result[ranked[r].cluster_id] = known[c].topic_id
    taken = {t.topic_id for t in known}
    for rank, cluster in enumerate(ranked):
        if cluster.cluster_id in result:
            continue
        topic_id = new_topic_id(day, rank)
        suffix = 0
        while topic_id in taken:  # the day was already run into this registry: stay unique
            suffix += 1
            topic_id = f"{new_topic_id(day, rank)}-{suffix}"
        taken.add(topic_id)
        result[cluster.cluster_id] = topic_id
    return result


def update_registry(
    registry: list[TopicState],
    clusters: list[ClusterSummary],
    assignment: dict[int, str],
    momentum: float = 0.0,
) -> list[TopicState]:
    """The registry after a day: matched topics move towards today's centroid, new ones are added.

    ``momentum`` 0 replaces a topic's centroid by today's (it follows drift fastest); 0.9 keeps 90 %
    of the old one (slower drift, steadier matching). Topics not seen today are kept unchanged.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    by_id = {t.topic_id: t for t in registry}
    for cluster in clusters:
        topic_id = assignment[cluster.cluster_id]
        today = np.asarray(cluster.centroid, np.float32)
        old = by_id.get(topic_id)
        centroid = today if old is None else momentum * old.centroid + (1.0 - momentum) * today
        by_id[topic_id] = TopicState(topic_id, normalize_rows(centroid.reshape(1, -1))[0])
    return [by_id[k] for k in sorted(by_id)]
