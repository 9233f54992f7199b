"""The per-partition summary `make demo` prints, read back from the warehouse tables themselves
(not from run metadata), so what it shows is what DuckDB holds."""

from __future__ import annotations

from datetime import date

from embed_dagster.core.warehouse.storage import query_arrow


def partition_figures(db: str, day: date) -> dict:
    return query_arrow(
        db,
        """SELECT
             (SELECT count(*) FROM raw_comments WHERE partition_date = $d)
           + (SELECT count(*) FROM quarantine WHERE partition_date = $d AND source_asset = 'raw_comments')
               AS rows_read,
             (SELECT count(*) FROM raw_comments WHERE partition_date = $d) AS comments,
             (SELECT count(*) FROM deduplicated_texts WHERE partition_date = $d) AS distinct_texts,
             (SELECT count(*) FROM cached_embeddings WHERE partition_date = $d) AS cached_embeddings,
             (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d) AS fresh_embeddings,
             (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d AND NOT resumed)
               AS fresh_sent,
             (SELECT count(*) FROM quarantine WHERE partition_date = $d) AS quarantined,
             (SELECT count(*) FROM clusters WHERE partition_date = $d) AS clustered,
             (SELECT count(DISTINCT cluster_id) FROM clusters WHERE partition_date = $d AND cluster_id >= 0)
               AS clusters,
             (SELECT count(*) FROM clusters WHERE partition_date = $d AND cluster_id = -1) AS noise,
             (SELECT count(*) FROM topics WHERE partition_date = $d AND is_new) AS new_topics""",
        {"d": day},
    ).to_pylist()[0]


def top_clusters(db: str, day: date, limit: int = 5) -> list[dict]:
    return query_arrow(
        db,
        """SELECT s.cluster_id, s.size, s.label, s.representatives, t.topic_id
           FROM cluster_summaries s LEFT JOIN topics t
             ON t.partition_date = s.partition_date AND t.cluster_id = s.cluster_id
           WHERE s.partition_date = ? ORDER BY s.size DESC, s.cluster_id LIMIT ?""",
        [day, limit],
    ).to_pylist()


def quarantine_reasons(db: str, day: date) -> list[dict]:
    return query_arrow(
        db,
        """SELECT source_asset, coalesce(source_file, '') || ':' || coalesce(CAST(source_row AS VARCHAR), '?')
                  AS location, reason
           FROM quarantine WHERE partition_date = ? ORDER BY source_asset, source_file, source_row""",
        [day],
    ).to_pylist()


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_partition_report(db: str, day: date) -> str:
    f = partition_figures(db, day)
    noise_share = f["noise"] / f["clustered"] if f["clustered"] else 0.0
    lines = [
        f"== {day} ==",
        f"  comments read       {f['rows_read']:>7}   "
        f"(valid {f['comments']}, quarantined {f['quarantined']})",
        f"  distinct texts      {f['distinct_texts']:>7}",
        f"  embeddings          {f['cached_embeddings']:>7} cached, {f['fresh_embeddings']} fresh "
        f"({f['fresh_sent']} sent to the server)",
        f"  clustered comments  {f['clustered']:>7}   in {f['clusters']} clusters, "
        f"noise share {noise_share:.1%}, {f['new_topics']} new topics",
    ]
    for q in quarantine_reasons(db, day)[:8]:
        lines.append(f"  quarantined  [{q['source_asset']}] {q['location']}: {_cut(q['reason'], 90)}")
    lines.append("  biggest clusters:")
    for c in top_clusters(db, day):
        lines.append(
            f"    #{c['cluster_id']:<3} {c['size']:>5} comments  "
            f"{c['topic_id'] or ''}  {_cut(c['label'], 50)}"
        )
        for rep in (c["representatives"] or [])[:2]:
            lines.append(f"           “{_cut(rep, 80)}”")
    return "\n".join(lines)
