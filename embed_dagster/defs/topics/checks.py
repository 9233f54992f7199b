"""Alerts on the topics asset: a WARN check that fails when a topic surges or a large new topic appears.

A failed WARN check shows in the UI's checks tab and on the asset, and an alert policy or a sensor on
asset-check results can page someone; it never blocks downstream work (these are news, not errors).
The rule itself lives in ``core.topics.matching`` (``surge_score``) and is described in docs/topics.md.
"""

import dagster as dg

from embed_dagster.core.warehouse.storage import query_arrow
from embed_dagster.defs.resources import WarehouseResource
from embed_dagster.lib.partitions import daily_partitions, partition_date


def _alerts(db: str, day) -> list[dict]:
    """The day's surging and large new topics, one row per topic (SQL kept here for the Warehouse move)."""
    return query_arrow(
        db,
        """SELECT topic_id, any_value(label) AS label, any_value(topic_size) AS comments,
                  any_value(share) AS share, any_value(surge_z) AS surge_z,
                  bool_or(surging) AS surging, bool_or(large_new) AS large_new
           FROM topics WHERE partition_date = ? AND topic_id IS NOT NULL AND (surging OR large_new)
           GROUP BY topic_id ORDER BY comments DESC, topic_id""",
        [day],
    ).to_pylist()


@dg.asset_check(
    asset="topics",
    partitions_def=daily_partitions,
    description="Warns when a topic surges (today's share far above its trailing mean) or a large new "
    "topic appears; the metadata lists them with their labels.",
)
def topic_alerts(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    day = partition_date(context)
    rows = _alerts(warehouse.path, day)
    surging = [r for r in rows if r["surging"]]
    large_new = [r for r in rows if r["large_new"]]
    parts = []
    if surging:
        parts.append(
            f"{len(surging)} surging: " + "; ".join(f"{r['label']} ({r['topic_id']})" for r in surging)
        )
    if large_new:
        parts.append(
            f"{len(large_new)} large new: " + "; ".join(f"{r['label']} ({r['topic_id']})" for r in large_new)
        )
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(parts) or None,
        metadata={
            "surging_topics": len(surging),
            "large_new_topics": len(large_new),
            "alerts": dg.MetadataValue.json(
                [
                    {
                        "topic_id": r["topic_id"],
                        "label": r["label"],
                        "comments": r["comments"],
                        "share": round(r["share"] or 0.0, 4),
                        "surge_z": None if r["surge_z"] is None else round(r["surge_z"], 2),
                        "kind": "surging" if r["surging"] else "large new",
                    }
                    for r in rows
                ]
            ),
        },
    )
