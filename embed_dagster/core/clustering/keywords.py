"""Cluster keywords by class-based TF-IDF (c-TF-IDF, as in BERTopic), Chinese and other scripts.

Tokenization: Chinese runs go through jieba (dictionary + HMM word segmentation), everything else is
split into lowercase words of any script: letters, digits and combining marks, starting with a
letter (``envío``, ``Lieferung``, ``доставка``, ``배송``, ``डिलीवरी``), since the embedding model is
multilingual and a label of fragments ("env / lleg") or none at all helps no one. Scripts written
without spaces other than Chinese (Japanese kana, Thai) come out as runs up to punctuation; runs
longer than ``MAX_WORD_CHARS`` are not words and are dropped.

jieba is chosen over character n-grams because the keywords become the cluster's human-readable
label: jieba yields words a reader recognises ("快递 / 物流 / 速度"), while character
bigrams produce fragments that straddle word boundaries ("递很", "流速") and need a
second pass to merge. jieba is pure Python, maintained, and loads its dictionary once per process
(~1 s). Single CJK characters are dropped: in reviews they are mostly particles and pronouns (的, 了, 我) and
the meaningful single-character words rarely beat the two-character words that carry the topic.
Segmentation runs at roughly 100k characters/s, so ``cluster_keywords`` tokenizes at most
``max_texts`` texts, sampled per cluster in proportion to its size (deterministically).

Counting is sklearn's ``CountVectorizer`` (jieba tokenizer below, ``binary=True``); scoring is the
``ClassTfidfTransformer`` below (BERTopic's c-TF-IDF as a sklearn transformer): per class c and term t,
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
import unicodedata

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import normalize

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
MAX_WORD_CHARS = 24


def _combining_marks() -> str:
    """Character-class ranges of the Basic Multilingual Plane's combining marks (Unicode category
    M*): Python's ``\\w`` omits them, and without them words of Indic scripts split at every vowel
    sign."""
    ranges, start = [], None
    for cp in range(0x10000):
        mark = unicodedata.category(chr(cp)).startswith("M")
        if mark and start is None:
            start = cp
        elif not mark and start is not None:
            ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    return "".join(ranges)


_WORD = re.compile(rf"[^\W\d_](?:[^\W_]|[{_combining_marks()}'’\-])*")
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
# Function words of the other languages the model reads most, so their labels name content, not
# articles: with English stopwords only, a Spanish cluster was labelled "el / la / llegó" and a
# German one "das / die / lieferung" (stop-25 review). c-TF-IDF cannot push them down when a
# language has one or two clusters on a day. Short lists of the most frequent words, no stemming;
# words that are also English content words (con, war, sin, son) are left out.
STOPWORDS_OTHER = frozenset(
    """
    el la los las un una unos unas de del al y o u e que en por para se su sus es fue
    ser está están estaba muy más pero como lo le les me mi mis te tu tus ya no sí yo nos este esta
    estos estas ese esa eso hay ha han he todo todos también porque cuando donde
    der die das den dem des ein eine einen einem einer eines und oder aber nicht ist sind
    waren hat haben habe mit von zu zum zur im in am an auf aus bei für ich du er sie es wir ihr
    mein meine sehr auch noch nur schon wie was wenn dass als so doch
    le la les un une des du de et ou mais ne pas est sont était été avec pour par sur dans au aux
    ce cet cette ces il elle ils elles je tu nous vous on qui que quoi très plus moins ai as avons
    avez ont mon ma mes ton ta tes sa ses leur leurs y en
    o os um uma uns umas do da dos das no na nos nas em por para com sem que não é são foi ser
    está estão muito mais mas como eu ele ela eles elas isso este esta esse essa
    il lo gli della delle dei degli nel nella per che non è sono era molto più ma come io
    mi ti si ci vi questo questa quello quella anche
    и в во не на я он она оно они мы вы ты что это как с со а но же по к ко у из за от до для
    о об был была были быть есть так очень все всё еще ещё уже бы ли мне меня мой моя
    """.split()
)
STOPWORDS = STOPWORDS_EN | STOPWORDS_ZH | STOPWORDS_OTHER
# French and Italian elided articles and pronouns glued to the next word ("l'envoi", "c'est",
# "dell'ordine"): split off so the word itself is counted.
_ELISION = re.compile(r"^(?:l|d|c|j|m|n|s|t|qu|dell|all|nell|sull|dall|un)['’](?=\w)")

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
    """Words of a text in any script (Chinese through jieba), lowercased, without stopwords and
    punctuation."""
    out: list[str] = []
    for i, part in enumerate(_SPLIT.split(text)):
        if not part:
            continue
        if i % 2:  # a CJK run (odd indices of a capturing split)
            words = _segmenter().lcut(part)
            out.extend(w for w in words if len(w) > 1 and w not in STOPWORDS)
        else:
            for w in _WORD.findall(part.lower()):
                w = _ELISION.sub("", w).rstrip("'’-")
                if 1 < len(w) <= MAX_WORD_CHARS and w not in STOPWORDS:
                    out.append(w)
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


class ClassTfidfTransformer(TransformerMixin, BaseEstimator):
    """c-TF-IDF on a class × term count matrix, as BERTopic's ``ClassTfidfTransformer``.

    ``fit`` learns ``idf_ = log(1 + A / f(t))`` (A: average class mass, f(t): the term's mass over all
    classes); ``transform`` L1-normalizes each class row and multiplies by ``idf_``. A small sklearn
    transformer rather than a call into BERTopic: BERTopic would pull in UMAP, HDBSCAN and
    sentence-transformers for twelve lines of arithmetic.
    """

    def fit(self, X, y=None):
        X = sparse.csr_matrix(X, dtype=np.float64)
        term_mass = np.asarray(X.sum(axis=0)).ravel()
        class_mass = np.asarray(X.sum(axis=1)).ravel()
        avg = class_mass.mean() if len(class_mass) else 0.0
        self.idf_ = np.log(1.0 + avg / np.maximum(term_mass, 1e-12))
        return self

    def transform(self, X):
        X = normalize(sparse.csr_matrix(X, dtype=np.float64), norm="l1", axis=1)
        return (X @ sparse.diags(self.idf_)).tocsr()


def class_term_counts(
    texts: list[str], labels: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, sparse.csr_matrix, np.ndarray]:
    """(classes, class × term matrix, vocabulary): each text counts a term once, times its weight.

    sklearn's ``CountVectorizer`` with the jieba-based ``tokenize`` and ``binary=True`` (a review
    repeating a word ten times is one voice); rows are then summed per class with the texts' weights.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    classes, inverse = np.unique(labels, return_inverse=True)
    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, binary=True)
    try:
        docs = vectorizer.fit_transform(texts)
    except ValueError:  # empty vocabulary: no text has a word left after stopwords
        return classes, sparse.csr_matrix((len(classes), 0)), np.asarray([], dtype=object)
    onehot = sparse.csr_matrix(
        (np.where(weights > 0, weights, 1.0), (inverse, np.arange(len(labels)))),
        shape=(len(classes), len(labels)),
    )
    return classes, (onehot @ docs).tocsr(), vectorizer.get_feature_names_out()


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
    keep = _sample_per_cluster(labels, max_texts, seed)
    classes, counts, vocab = class_term_counts([texts[i] for i in keep], labels[keep], w[keep])
    if not len(vocab):
        return {c: [] for c in clusters}
    # sparse: a day's vocabulary is tens of thousands of terms times hundreds of clusters
    score = ClassTfidfTransformer().fit(counts).transform(counts)
    result = {}
    for row, c in enumerate(classes.tolist()):
        if c < 0:
            continue
        start, end = score.indptr[row], score.indptr[row + 1]
        terms, values = score.indices[start:end], score.data[start:end]
        # stable order: score descending, then the term itself, so equal scores never flip between runs
        order = sorted(range(len(terms)), key=lambda j: (-values[j], vocab[terms[j]]))[:top_k]
        result[c] = [str(vocab[terms[j]]) for j in order]
    return result


def keyword_label(keywords: list[str], n: int = 3) -> str:
    """A short human label from the top keywords, e.g. "快递 / 物流 / 速度"."""
    return " / ".join(keywords[:n])
