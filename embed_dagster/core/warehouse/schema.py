"""Warehouse tables, declared once.

The same declarations produce the DuckLake DDL and the column schema that Dagster shows in the UI,
so the two cannot drift apart. Every partitioned table carries ``partition_date DATE``: a DATE
(not VARCHAR) so that partition deletes match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()


def _t(name: str, *cols: tuple[str, str, str], primary_key: tuple[str, ...] = ()) -> Table:
    return Table(name, tuple(Column(*c) for c in cols), primary_key)


_PD = ("partition_date", "DATE", "Day of the landing folder the row came from")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _t(
            "raw_comments",
            _PD,
            ("comment_id", "VARCHAR", "Comment id from the source, unique within the day"),
            ("created_at", "TIMESTAMPTZ", "When the comment was written (UTC when the source had no zone)"),
            ("text", "VARCHAR", "Comment text exactly as received"),
            ("source_file", "VARCHAR", "Landing file, relative to the landing root"),
            ("source_row", "BIGINT", "Row or line number within the file (1-based)"),
            ("extra", "JSON", "Every non-required field of the source row"),
        ),
        _t(
            "quarantine",
            _PD,
            ("source_asset", "VARCHAR", "Asset that set the row aside"),
            ("source_file", "VARCHAR", "Landing file, when known"),
            ("source_row", "BIGINT", "Row or line number within the file, when known"),
            ("comment_id", "VARCHAR", "Comment id, when one could be read"),
            ("raw", "VARCHAR", "The offending row or text (cut to 2000 characters)"),
            ("reason", "VARCHAR", "Why the row was set aside, in words"),
        ),
        _t(
            "deduplicated_texts",
            _PD,
            ("text_hash", "VARCHAR", "BLAKE2b-128 of the normalized text, hex"),
            ("text", "VARCHAR", "Normalized text (NFKC, invisible characters removed, whitespace collapsed)"),
            ("comment_count", "BIGINT", "Comments of the day with this text"),
            ("normalization_version", "INTEGER", "Version of the normalization rules"),
        ),
        _t(
            "comment_texts",
            _PD,
            ("comment_id", "VARCHAR", "Comment id (raw_comments)"),
            ("text_hash", "VARCHAR", "Hash of its normalized text (deduplicated_texts)"),
        ),
        _t(
            "cached_embeddings",
            _PD,
            (
                "text_hash",
                "VARCHAR",
                "Distinct text of the day whose vector another day first stored (embedding_store."
                "first_partition_date is not this day), or that only Redis had",
            ),
            ("model_key", "VARCHAR", "Model key the vector belongs to"),
        ),
        _t(
            "fresh_embeddings",
            _PD,
            (
                "text_hash",
                "VARCHAR",
                "Distinct text of the day whose vector this day first stored (embedded by a run of this "
                "partition; a re-run lists the same texts without sending them again)",
            ),
            ("model_key", "VARCHAR", "Model key the vector belongs to"),
            ("truncated", "BOOLEAN", "Text was cut to the embedder's length limit before embedding"),
        ),
        _t(
            "embedding_store",
            ("model_key", "VARCHAR", "Model + dimensions + instruction + normalization version"),
            ("text_hash", "VARCHAR", "BLAKE2b-128 of the normalized text"),
            ("dim", "INTEGER", "Vector length"),
            ("vector", "FLOAT[]", "L2-normalized embedding"),
            ("created_at", "TIMESTAMPTZ", "When the vector was saved"),
            (
                "first_partition_date",
                "DATE",
                "Partition whose run first saved the vector (NULL: saved before this column existed, "
                "read as earlier than any day)",
            ),
            (
                "truncated",
                "BOOLEAN",
                "Text was cut before embedding; NULL when this lake did not embed it (copied from "
                "Redis, or saved before this column existed)",
            ),
            primary_key=("model_key", "text_hash"),
        ),
        _t(
            "model_keys",
            ("model_key", "VARCHAR", "Key id used in the store and in Redis"),
            ("model", "VARCHAR", "Served model name"),
            ("dimensions", "INTEGER", "Requested output dimension"),
            ("instruction", "VARCHAR", "Task instruction prepended to every text, if any"),
            ("normalization_version", "INTEGER", "Text normalization version"),
            ("max_chars", "INTEGER", "Where texts are cut before embedding; NULL: the default 2000"),
            primary_key=("model_key",),
        ),
        _t(
            "clusters",
            _PD,
            ("comment_id", "VARCHAR", "Comment id (raw_comments)"),
            ("text_hash", "VARCHAR", "Hash of its normalized text"),
            ("cluster_id", "INTEGER", "Cluster within the day, -1 for noise"),
            ("probability", "DOUBLE", "HDBSCAN membership strength (0 for noise)"),
            ("map_x", "FLOAT", "Position of its text on the day's cluster map (the topic map reuses it)"),
            ("map_y", "FLOAT", "Position of its text on the day's cluster map"),
        ),
        _t(
            "cluster_summaries",
            _PD,
            ("cluster_id", "INTEGER", "Cluster within the day"),
            ("size", "BIGINT", "Comments in the cluster"),
            ("n_texts", "BIGINT", "Distinct texts in the cluster"),
            ("label", "VARCHAR", "Label built from the top keywords"),
            ("keywords", "VARCHAR[]", "Top c-TF-IDF keywords"),
            ("representatives", "VARCHAR[]", "Comments nearest the cluster centre"),
            ("centroid", "FLOAT[]", "Unit-norm centroid of the cluster's vectors"),
            ("clustering", "VARCHAR", "Digest of the day's assignment of texts to clusters"),
        ),
        _t(
            "topics",
            _PD,
            ("topic_id", "VARCHAR", "Stable topic id, T<birth day>-<rank>; NULL: an emerging cluster"),
            ("cluster_id", "INTEGER", "The day's cluster (one row per cluster; several may share a topic)"),
            ("is_new", "BOOLEAN", "The topic was born this day"),
            ("similarity", "DOUBLE", "Cosine similarity of the cluster to the topic's previous centroid"),
            ("first_seen", "DATE", "Day the topic was born"),
            ("size", "BIGINT", "Comments of the day in this cluster"),
            ("label", "VARCHAR", "The topic's label (changes only when its keywords really moved)"),
            ("keywords", "VARCHAR[]", "The topic's accumulated top keywords"),
            ("centroid", "FLOAT[]", "The cluster's centroid"),
            ("status", "VARCHAR", "continued, joined (small, to its nearest topic), new or emerging"),
            ("topic_size", "BIGINT", "Comments of the day in the topic (all its clusters)"),
            ("share", "DOUBLE", "The topic's share of the day's clustered comments"),
            ("surge_z", "DOUBLE", "Today's share against the topic's trailing mean, in standard deviations"),
            ("surging", "BOOLEAN", "The topic surges today (rule in docs/topics.md)"),
            ("large_new", "BOOLEAN", "A new topic that is large on its first day"),
            ("absorbed", "VARCHAR[]", "Topic ids merged into this one this day"),
            ("topic_mass", "DOUBLE", "Matching state: decayed comment mass behind topic_centroid"),
            ("topic_centroid", "FLOAT[]", "Matching state: the topic's centroid after the day"),
            ("keyword_terms", "VARCHAR[]", "Matching state: accumulated keyword terms, best first"),
            ("keyword_scores", "DOUBLE[]", "Matching state: their accumulated scores"),
            ("clustering", "VARCHAR", "The day's clustering these rows were built from (cluster_summaries)"),
        ),
    )
}


def survivor_cte(rows: str = "topics") -> str:
    """``WITH RECURSIVE`` CTEs ending in ``survivor(gone, keep)``: each topic id merged away, and
    the topic it lives on in, following merges across days (``absorbed`` lists the ids a topic took
    in on a day). ``rows`` is the relation the merges are read from (the table, or a filtered one).
    Without it, the registry listed absorbed topics as topics of their own and left their comments
    out of the survivor's total (stop-25 review)."""
    return f"""WITH RECURSIVE merge_edge(gone, keep) AS (
            SELECT DISTINCT unnest(absorbed), topic_id FROM {rows}
            WHERE topic_id IS NOT NULL AND len(absorbed) > 0),
        merge_path(gone, keep, hops) AS (
            SELECT gone, keep, 1 FROM merge_edge
            UNION ALL
            SELECT p.gone, e.keep, p.hops + 1 FROM merge_path p JOIN merge_edge e ON e.gone = p.keep
            WHERE p.hops < 32),
        survivor(gone, keep) AS (SELECT gone, arg_max(keep, hops) FROM merge_path GROUP BY gone)"""


# Read-side conveniences for analysts; created with the schema, and replaced when their definition
# here changes (ensure_schema compares DuckDB's normalized SQL of both).
VIEWS: dict[str, str] = {
    # one row per topic (rows of the topics table are per day and cluster: a day counts once, and
    # emerging clusters, which have no topic yet, are not a topic)
    # (merged topics count under the topic they were merged into)
    "topic_registry": survivor_cte()
    + """
        SELECT coalesce(v.keep, t.topic_id) AS topic_id, min(t.first_seen) AS first_seen,
               max(t.partition_date) AS last_seen, count(DISTINCT t.partition_date) AS days_seen,
               sum(t.size) AS total_size, arg_max(t.label, t.partition_date) AS label,
               arg_max(t.keywords, t.partition_date) AS keywords
        FROM topics t LEFT JOIN survivor v ON v.gone = t.topic_id
        WHERE t.topic_id IS NOT NULL GROUP BY 1""",
    # A comment's topic only when the topics rows were built from the clustering the comment is in:
    # between a re-run's clusters commit and its topics commit (or when a failed check stopped
    # topics) the day's cluster ids mean other clusters, and the topic is NULL, not a wrong one.
    # (topic_id is the topic the comment's cluster lives on in now, after any later merge; label is
    # the label its topic had that day)
    "comment_topics": survivor_cte()
    + """
        SELECT c.partition_date, c.comment_id, c.cluster_id, coalesce(v.keep, t.topic_id) AS topic_id, t.label
        FROM clusters c
        LEFT JOIN cluster_summaries s ON s.partition_date = c.partition_date AND s.cluster_id = c.cluster_id
        LEFT JOIN topics t
          ON t.partition_date = c.partition_date AND t.cluster_id = c.cluster_id
         AND t.clustering IS NOT DISTINCT FROM s.clustering
        LEFT JOIN survivor v ON v.gone = t.topic_id""",
}


def ddl(name: str) -> str:
    """CREATE TABLE for the lake. DuckLake has no primary keys: ``primary_key`` stays the logical key
    (the vector store's anti-join inserts and de-duplicating reads enforce it), not a constraint."""
    table = TABLES[name]
    cols = ", ".join(f"{c.name} {c.type}" for c in table.columns)
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"
