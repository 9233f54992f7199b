"""The per-partition summary `make demo` prints, read back from the warehouse tables themselves
(not from run metadata), so what it shows is what the lake holds."""

from __future__ import annotations

from datetime import date

from embed_dagster.core.warehouse.lake import Warehouse


def partition_figures(wh: Warehouse, day: date) -> dict:
    return wh.partition_figures(day)


def top_clusters(wh: Warehouse, day: date, limit: int = 5) -> list[dict]:
    return wh.top_clusters(day, limit)


def quarantine_reasons(wh: Warehouse, day: date) -> list[dict]:
    return wh.quarantine_reasons(day)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_partition_report(wh: Warehouse, day: date) -> str:
    f = partition_figures(wh, day)
    noise_share = f["noise"] / f["clustered"] if f["clustered"] else 0.0
    lines = [
        f"== {day} ==",
        f"  comments read       {f['rows_read']:>7}   "
        f"(valid {f['comments']}, quarantined {f['quarantined']})",
        f"  distinct texts      {f['distinct_texts']:>7}",
        f"  embeddings          {f['cached_embeddings']:>7} cached, {f['fresh_embeddings']} fresh "
        f"({f['fresh_truncated']} truncated)",
        f"  clustered comments  {f['clustered']:>7}   in {f['clusters']} clusters, "
        f"noise share {noise_share:.1%}, {f['new_topics']} new topics",
    ]
    for q in quarantine_reasons(wh, day)[:8]:
        lines.append(f"  quarantined  [{q['source_asset']}] {q['location']}: {_cut(q['reason'], 90)}")
    lines.append("  biggest clusters:")
    for c in top_clusters(wh, day):
        lines.append(
            f"    #{c['cluster_id']:<3} {c['size']:>5} comments  "
            f"{c['topic_id'] or ''}  {_cut(c['label'], 50)}"
        )
        for rep in (c["representatives"] or [])[:2]:
            lines.append(f"           “{_cut(rep, 80)}”")
    return "\n".join(lines)
