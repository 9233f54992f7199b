"""Cluster keywords by class-based TF-IDF (c-TF-IDF, as in BERTopic) for Chinese and English.

Tokenization: Chinese runs go through jieba (dictionary + HMM word segmentation), everything else is
split into lowercase words. jieba is chosen over character n-grams because the keywords become the
cluster's human-readable label: jieba yields words a reader recognises ("快递 / 物流 / 速度"), while
character bigrams produce fragments that straddle word boundaries ("递很", "流速") and need a second
pass to merge. jieba is pure Python, maintained, and loads its dictionary once per process (~1 s).
Single CJK characters are dropped: in reviews they are mostly particles and pronouns (的, 了, 我) and
the meaningful single-character words rarely beat the two-character words that carry the topic.
Segmentation runs at roughly 100k characters/s, so ``cluster_keywords`` tokenizes at most
``max_texts`` texts, sampled per cluster in proportion to its size (deterministically).

Scoring (BERTopic's ``ClassTfidfTransformer``): per class c and term t,
``tf(t, c) · log(1 + A / f(t))`` with tf L1-normalized per class, f(t) the term's frequency over all
classes and A the average class mass. Two deliberate differences: a term counts once per text
(a review repeating a word ten times is one voice, not ten), and each text's count is multiplied by
its weight (how many comments share that distinct text), so keywords reflect what people wrote,
not what was deduplicated away. Noise (label -1) takes part as a background class — it makes
corpus-wide words less distinctive — but gets no keywords.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import numpy as np
from scipy import sparse

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z][a-z0-9'’\-]*[a-z0-9]|[a-z]")
_SPLIT = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")

STOPWORDS_EN = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing don't down during each few for from further
    get got had has have having he her here hers herself him himself his how i i'm i've if in into is it
    it's its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves can't cannot im ive dont
    didn't doesn't isn't wasn't won't would've let's please thanks thank hi hello yes ok okay one""".split()
)
# Single CJK characters are dropped by the tokenizer anyway, so only words of two or more are listed.
STOPWORDS_ZH = frozenset(
    """我们 你们 他们 她们 这个 那个 这些 那些 这样 那样 这么 那么 但是 而且 并且 因为 所以 如果
    虽然 可以 可能 没有 不是 就是 还是 只是 一个 一下 一些 一点 一样 有点 有些 什么 怎么 为什么
    感觉 觉得 非常 比较 真的 还有 已经 自己 这里 那里 时候 现在 之后 以后 然后 东西 问题 不过
    不会 不能 的话 之前 以前 地方 一直 知道 出来 起来 看到 这次 这是 就是 特别 还是 其实""".split()
)
STOPWORDS = STOPWORDS_EN | STOPWORDS_ZH

_jieba = None


def _segmenter():
    """Import jieba lazily and quietly: clustering without keywords should not pay its ~1 s load."""
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        _jieba = jieba
    return _jieba


def tokenize(text: str) -> list[str]:
    """Words of a Chinese, English or mixed text, lowercased, without stopwords and punctuation."""
    out: list[str] = []
    for i, part in enumerate(_SPLIT.split(text)):
        if not part:
            continue
        if i % 2:  # a CJK run (odd indices of a capturing split)
            words = _segmenter().lcut(part)
            out.extend(w for w in words if len(w) > 1 and w not in STOPWORDS)
        else:
            out.extend(w for w in _WORD.findall(part.lower()) if len(w) > 1 and w not in STOPWORDS)
    return out


def _sample_per_cluster(labels: np.ndarray, max_texts: int, seed: int) -> np.ndarray:
    """Indices to tokenize: everything when small, else a per-cluster share proportional to size."""
    n = len(labels)
    if n <= max_texts:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        quota = min(len(idx), max(30, math.ceil(max_texts * len(idx) / n)))
        keep.append(idx if quota >= len(idx) else np.sort(rng.choice(idx, quota, replace=False)))
    return np.sort(np.concatenate(keep))


def cluster_keywords(
    texts: list[str],
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    top_k: int = 8,
    max_texts: int = 20000,
    seed: int = 0,
) -> dict[int, list[str]]:
    """Top ``top_k`` c-TF-IDF terms per cluster id (noise -1 excluded; empty list if no terms)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(texts) != len(labels):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(labels):
        raise ValueError(f"weights ({len(w)}) and labels ({len(labels)}) differ in length")
    clusters = sorted(int(c) for c in np.unique(labels) if c >= 0)
    if not clusters:
        return {}
    counts: dict[int, Counter] = {c: Counter() for c in np.unique(labels).tolist()}
    for i in _sample_per_cluster(labels, max_texts, seed):
        weight = float(w[i]) if w[i] > 0 else 1.0
        bucket = counts[int(labels[i])]
        for term in set(tokenize(texts[i])):
            bucket[term] += weight
    vocab = sorted(set().union(*counts.values()))
    if not vocab:
        return {c: [] for c in clusters}
    index = {t: j for j, t in enumerate(vocab)}
    classes = sorted(counts)
    rows, cols, vals = [], [], []
    for row, c in enumerate(classes):
        for term, value in counts[c].items():
            rows.append(row)
            cols.append(index[term])
            vals.append(value)
    # sparse: a day's vocabulary is tens of thousands of terms times hundreds of clusters
    tf = sparse.csr_matrix((vals, (rows, cols)), shape=(len(classes), len(vocab)))
    class_mass = np.asarray(tf.sum(axis=1)).ravel()
    term_mass = np.asarray(tf.sum(axis=0)).ravel()
    idf = np.log(1.0 + class_mass.mean() / np.maximum(term_mass, 1e-12))
    score = sparse.diags(1.0 / np.maximum(class_mass, 1e-12)) @ tf @ sparse.diags(idf)
    score = score.tocsr()
    result = {}
    for row, c in enumerate(classes):
        if c < 0:
            continue
        start, end = score.indptr[row], score.indptr[row + 1]
        terms, values = score.indices[start:end], score.data[start:end]
        # stable order: score descending, then the term itself, so equal scores never flip between runs
        order = sorted(range(len(terms)), key=lambda j: (-values[j], vocab[terms[j]]))[:top_k]
        result[c] = [vocab[terms[j]] for j in order]
    return result


def keyword_label(keywords: list[str], n: int = 3) -> str:
    """A short human label from the top keywords, e.g. "快递 / 物流 / 速度"."""
    return " / ".join(keywords[:n])
