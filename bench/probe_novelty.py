"""Probe (issue 16): do the comments of a cluster flagged *new* have near neighbours on earlier days?

For every cluster the topic layer (pooled constants) flags new on days 2+ of the bench's three
splits, prints its members' cosine to their nearest text of the earlier days: the median, the 25th
percentile and the share at or above 0.80 / 0.85 / 0.90. Clusters are tagged TRUE-new (emerging
split, a withheld label is the majority), surge (surge split, a surging label is the majority) or
false-new (everything else). A rule "new only if few members have a close earlier neighbour" could
stop surge false alarms only where surge and TRUE-new clusters separate on these numbers.

Run: ``python -m bench.probe_novelty`` (about 20 s on 2 CPUs, the bench's cached vectors). Prints
only; the finding is written up in docs/topics.md.
"""

from __future__ import annotations

import datetime

import numpy as np

from bench.bench_topics import (
    DATASETS,
    DAY0,
    SEED,
    cluster_days,
    emerging_split,
    load_subsample,
    random_split,
    surge_split,
)
from embed_dagster.core.topics.matching import TopicParams, TopicsState, process_day


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def new_clusters(
    days: list[dict], x: np.ndarray, day: np.ndarray
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(day, member indices, nearest-earlier-text cosine per member) of each cluster flagged new."""
    state, out, xu = TopicsState(), [], _unit(x)
    for d, info in enumerate(days):
        state, result = process_day(
            state, info["summaries"], DAY0 + datetime.timedelta(days=d), TopicParams()
        )
        if d == 0:
            continue
        earlier = xu[day < d]
        for ct in result.clusters:
            if ct.status == "new":
                members = info["idx"][info["labels"] == ct.cluster_id]
                out.append((d, members, (xu[members] @ earlier.T).max(axis=1)))
    return out


def main() -> None:
    for name in DATASETS:
        texts, y, x = load_subsample(name)
        rows = []
        emg, withheld = emerging_split(y, SEED)
        for d, m, nn in new_clusters(cluster_days(texts, x, emg), x, emg):
            rows.append(
                ("emerging", "TRUE-new" if np.isin(y[m], withheld).mean() > 0.5 else "false-new", d, m, nn)
            )
        srg, surging = surge_split(y, SEED)
        for d, m, nn in new_clusters(cluster_days(texts, x, srg), x, srg):
            rows.append(("surge", "surge" if np.isin(y[m], surging).mean() > 0.5 else "false-new", d, m, nn))
        rnd = random_split(len(y), SEED)
        for d, m, nn in new_clusters(cluster_days(texts, x, rnd), x, rnd):
            rows.append(("random", "false-new", d, m, nn))
        print(f"== {name}")
        for split, kind, d, m, nn in rows:
            shares = " ".join(f"≥{t:.2f} {np.mean(nn >= t):.2f}" for t in (0.80, 0.85, 0.90))
            median, p25 = np.median(nn), np.percentile(nn, 25)
            print(
                f"  {split:8s} {kind:9s} day {d + 1} n={len(m):4d} nearest earlier: "
                f"median {median:.3f} p25 {p25:.3f} {shares}",
                flush=True,
            )


if __name__ == "__main__":
    main()
