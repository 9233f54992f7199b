"""Alerts on the topics asset: a WARN check that fails when a topic surges or a large new topic appears.

A failed WARN check shows in the UI's checks tab and on the asset, and an alert policy or a sensor on
asset-check results can page someone; it never blocks downstream work (these are news, not errors).
The rule itself lives in ``core.topics.matching`` (``surge_score``) and is described in docs/topics.md.
"""

from collections.abc import Iterator

import dagster as dg

from embed_dagster.defs.resources import WarehouseResource
from embed_dagster.lib.partitions import daily_partitions
from embed_dagster.lib.ranges import check_days


@dg.asset_check(
    asset="topics",
    partitions_def=daily_partitions,
    description="Warns when a topic surges (today's share far above its trailing mean) or a large new "
    "topic appears; the metadata lists them with their labels.",
)
def topic_alerts(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator:
    wh = warehouse.open(context.log)
    yield from check_days(context, lambda day: _alerts(wh, day))


def _alerts(wh, day) -> dg.AssetCheckResult:
    rows = wh.topic_alerts(day)
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
                        "day": day.isoformat(),
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
