"""Lake maintenance: merge small files, expire old snapshots, delete files nothing refers to.

Why it is needed: every partition write adds Parquet files and leaves the replaced ones behind for
time travel. Without maintenance a lake that is rewritten daily grows without bound and reads slow
down over many small files. Retention is a setting: snapshots younger than it stay readable
``AT (VERSION => n)``, which is what the "as of before the re-run" recipe needs (docs/warehouse.md).
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from embed_dagster.defs.resources import WarehouseResource
from embed_dagster.settings import load_settings

# Through Settings, which validates them: a negative retention (a typo for 5) became the field's
# default unchecked, and expired every snapshot; inf or nan were taken too (stop-24 adversarial pass).
_SETTINGS = load_settings()


class MaintenanceConfig(dg.Config):
    expire_snapshots_older_than_days: float = Field(
        default=_SETTINGS.lake_retention_days,
        ge=0,
        allow_inf_nan=False,
        description="Snapshots older than this are expired (no time travel to them afterwards)",
    )
    delete_files_older_than_days: float = Field(
        default=_SETTINGS.lake_delete_after_days,
        ge=0,
        allow_inf_nan=False,
        description="Files no longer referenced are deleted once scheduled for this long, so long-running "
        "reads that still scan them are not cut off",
    )


@dg.asset(
    group_name="maintenance",
    # Not partitioned, so it runs once in any run. The policy only lets Dagster's CLI accept
    # `--select '*' --partition-range A...B` (it refuses a range if any selected asset lacks it).
    backfill_policy=dg.BackfillPolicy.single_run(),
    owners=["team:comment-insights"],
    kinds={"duckdb"},
    description="Compacts the DuckLake lake: merges adjacent small Parquet files, expires snapshots "
    "older than the retention, and deletes files no snapshot refers to. Metadata shows the lake's "
    "file count and size before and after.",
)
def lake_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    wh = warehouse.open(context.log)
    stats = wh.maintain(
        expire_older_than=timedelta(days=config.expire_snapshots_older_than_days),
        delete_files_older_than=timedelta(days=config.delete_files_older_than_days),
    )
    context.log.info(
        f"lake maintenance: {stats['files_before']} → {stats['files_after']} files, "
        f"{stats['snapshots_expired']} snapshots expired, {stats['files_deleted']} files deleted, "
        f"{stats['orphaned_files_deleted']} orphaned files (left by killed writes) deleted"
    )
    return dg.MaterializeResult(
        metadata={
            "lake/files": stats["files_after"],
            "lake/bytes": dg.MetadataValue.int(stats["bytes_after"]),
            "lake/mib": round(stats["bytes_after"] / 2**20, 2),
            "lake/snapshot_id": wh.current_snapshot(),
            **{f"maintenance/{k}": v for k, v in stats.items()},
            "retention_days": config.expire_snapshots_older_than_days,
        }
    )


lake_maintenance_job = dg.define_asset_job(
    "lake_maintenance_job",
    selection=dg.AssetSelection.assets(lake_maintenance),
    description="Compact the lake and apply the snapshot retention.",
)

lake_maintenance_schedule = dg.ScheduleDefinition(
    name="weekly_lake_maintenance",
    job=lake_maintenance_job,
    cron_schedule=_SETTINGS.maintenance_cron,
    description="Every Sunday 03:30 (EMBED_DAGSTER_MAINTENANCE_CRON), compact the lake. Stopped by "
    "default, as Dagster schedules are: `dagster schedule start weekly_lake_maintenance`.",
)
