"""clusters → topics: the day's clusters matched to the topics of earlier days.

The logic is ``core.topics.matching.process_day`` (state in, state out). This module only reads the
state before the day from the ``topics`` table, writes the day's rows, and draws the metadata. The
SQL sits in the small ``_read_*`` / ``_write_*`` helpers below so it can move behind Warehouse
methods without touching the rest.
"""

import datetime
import time

import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.core.clustering.recipe import ClusterSummary
from embed_dagster.core.topics.cluster_map import map_clusters, map_coordinates, render_cluster_map
from embed_dagster.core.topics.matching import (
    process_day,
    rows_for_day,
    state_from_rows,
)
from embed_dagster.core.topics.trend import render_topic_trend
from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.vector_store import matrix_to_arrow
from embed_dagster.defs.resources import EmbeddingResource, WarehouseResource
from embed_dagster.defs.topics.params import topic_params
from embed_dagster.defs.versions import CODE_VERSIONS
from embed_dagster.lib.asset_options import COMMON
from embed_dagster.lib.metadata import definition_metadata, markdown_table, png_markdown, table_metadata
from embed_dagster.lib.partitions import partition_dates
from embed_dagster.lib.ranges import materialize_days

TREND_DAYS = 14  # the trend chart's window
TREND_TOPICS = 8
MAP_TOP = 12  # clusters named on the topic map


@dg.asset(
    **COMMON,
    deps=[
        "clusters",
        dg.AssetDep(
            "topics", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        ),
    ],
    kinds={"duckdb"},
    code_version=CODE_VERSIONS["topics"],
    metadata=definition_metadata("topics"),
    description="Stable topics across days: each of the day's clusters joins the earlier topic its "
    "centroid is closest to when similar enough (several clusters may join one topic); the rest form "
    "new topics only with enough support (else they are held as emerging); converging topics merge; "
    "surging topics are marked. One row per (day, cluster). Continues the previous day's topics: a "
    "range run (a backfill) walks its days in date order, each day in its own transaction. See "
    "docs/topics.md.",
)
def topics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, embedding: EmbeddingResource
) -> dg.MaterializeResult:
    wh = warehouse.open(context.log)
    wait_for_previous_day_in_a_job_backfill(context, partition_dates(context)[0])
    params = topic_params()

    def one_day(day: datetime.date) -> dict:
        # Each day reads the state the previous day's commit left, so a range gives the same topics
        # as its days run one by one (test_topic_alerts: one range run equals day-by-day runs).
        summaries, clustering = _read_summaries(wh, day)
        state = state_from_rows(*wh.topic_state_rows(day, params.surge_window))
        after, result = process_day(state, summaries, day, params)
        rows = rows_for_day(result, after, summaries)
        snapshot = wh.replace_partition(
            day,
            {"topics": ({}, _topics_table(rows, clustering))},
            message=f"topics {day} run {context.run_id}",
        )
        return _day_metadata(wh, embedding, day, state, result, snapshot)

    result = materialize_days(context, one_day)
    return _warn_if_later_days_continue(context, wh, partition_dates(context)[-1], result)


def _warn_if_later_days_continue(
    context: dg.AssetExecutionContext, wh: Warehouse, last: datetime.date, result: dg.MaterializeResult
) -> dg.MaterializeResult:
    """Say so when days after this run's last day have topics: they continue the old topics of the
    days just rewritten, so their ids may name topics those days no longer have, until they run
    again in date order. The landing sensor requests that run itself once it sees the day's new
    topics (defs/automation.py, ``_rechain_request``); without the sensor, the metadata names the
    range to re-run."""
    later = wh.topic_days_after(last)
    if not later:
        return result
    rerun = f"{later[0]}...{later[-1]}"
    context.log.warning(
        f"topics of {len(later)} later day(s) ({rerun}) continue the topics this run rewrote; re-materialize "
        f"topics for {rerun} (one range run) so they follow the new ones"
    )
    return dg.MaterializeResult(metadata={**(result.metadata or {}), "later_days_to_rebuild": rerun})


BACKFILL_RECORD_WAIT_S = 300.0


def wait_for_previous_day_in_a_job_backfill(context: dg.AssetExecutionContext, day: datetime.date) -> None:
    """Make a job-page backfill safe: with ``EMBED_DAGSTER_DAYS_PER_RUN=N`` its runs of N days start
    in parallel, in any order.

    A backfill from the asset graph (or the landing sensor, or ``--partition-range``) runs topics in
    date order. A job backfill (``dagster job backfill``, or the job page) ignores that; when the day
    before a run's first day is part of the same backfill and its topics are not written yet, this
    step asks to be retried in 20 s (up to 30 minutes), so the days still follow each other.
    """
    backfill_id = context.run.tags.get("dagster/backfill")
    if not backfill_id:
        return
    backfill = context.instance.get_backfill(backfill_id)
    if backfill is None:
        # `dagster job backfill` queues its first runs seconds before it records the backfill
        # (6 s in the stop-25 adversarial pass), and one of them could run past the wait below
        record = context.instance.get_run_record_by_id(context.run_id)
        created = record.create_timestamp.timestamp() if record is not None else 0.0
        if time.time() - created < BACKFILL_RECORD_WAIT_S:
            context.log.info(f"topics for {day} waits for job backfill {backfill_id} to be recorded")
            raise dg.RetryRequested(max_retries=90, seconds_to_wait=5)
        return
    if backfill.is_asset_backfill:
        return
    previous = (day - datetime.timedelta(days=1)).isoformat()
    if previous not in (backfill.partition_names or []):
        return
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[previous]), limit=1
    ).records
    run_ids = {r.run_id for r in records}
    runs = context.instance.get_runs(filters=dg.RunsFilter(run_ids=list(run_ids))) if run_ids else []
    if any(run.tags.get("dagster/backfill") == backfill_id for run in runs):
        return
    context.log.info(
        f"topics for {day} waits for {previous} (same job backfill {backfill_id}): topics continue the "
        "previous day's topics. A backfill from the asset graph runs the days in order without waiting."
    )
    raise dg.RetryRequested(max_retries=90, seconds_to_wait=20)


def _day_metadata(wh, embedding, day, state, result, snapshot) -> dict:
    new = [t for t in result.topics if t.is_new]
    surging = [t for t in result.topics if t.surging]
    metadata = {
        **table_metadata(wh, "topics", day, snapshot),
        "topics_today": len(result.topics),
        "new_topics": len(new),
        "continued_topics": len(result.topics) - len(new),
        "surging_topics": len(surging),
        "large_new_topics": sum(t.large_new for t in result.topics),
        "emerging_comments": int(round(result.emerging_size)),
        "merged_today": dg.MetadataValue.json([{"absorbed": a, "into": b} for a, b in result.merged]),
        "known_topics_before": len(state.topics),
        "topics": markdown_table(
            ["topic", "status", "comments", "share", "surge z", "label"],
            [
                (
                    t.topic_id,
                    "NEW" if t.is_new else ("SURGING" if t.surging else ""),
                    int(round(t.size)),
                    f"{t.share:.1%}",
                    "" if t.surge_z is None else f"{t.surge_z:.1f}",
                    t.label,
                )
                for t in result.topics[:15]
            ],
        ),
    }
    points = wh.cluster_map_points(day)
    if points is None:  # clustered by a version that stored no map positions: project its vectors here
        key = embedding.model_key()
        vectors, labels_of_texts = wh.clustered_text_vectors(day, key.id, key.dimensions)
        xy = map_coordinates(vectors, labels_of_texts)
    else:
        xy, labels_of_texts = points
    if len(labels_of_texts):
        topic_of = {ct.cluster_id: ct for ct in result.clusters}
        label_of = {t.topic_id: t.label for t in result.topics}
        named = map_clusters(labels_of_texts, MAP_TOP)
        png = render_cluster_map(
            xy,
            labels_of_texts,
            title=f"topics {day}",
            annotate_top=MAP_TOP,
            names={
                c: (label_of.get(topic_of[c].topic_id) or topic_of[c].topic_id)
                if topic_of[c].topic_id
                else "(emerging)"
                for c in named
                if c in topic_of
            },
            highlight={c for c in named if c in topic_of and topic_of[c].status == "new"},
        )
        metadata["topic_map"] = png_markdown(png, f"topic map {day}")
    days, sizes, labels, new_on, surging_on = _read_trend(wh, day, TREND_DAYS)
    if sizes:
        png = render_topic_trend(
            days, sizes, labels, new_on, surging_on, top=TREND_TOPICS, title=f"topics up to {day}"
        )
        metadata["topic_trend"] = png_markdown(png, f"topic trend up to {day}")
    return metadata


# ------------------------------------------------ reads and writes (the SQL is the Warehouse's)


def _read_summaries(wh: Warehouse, day: datetime.date) -> tuple[list[ClusterSummary], str | None]:
    """The day's clusters, and which clustering they are (its digest, carried into the topics rows)."""
    table = wh.cluster_summaries(day)
    clustering = table.column("clustering")[0].as_py() if table.num_rows else None
    return [
        ClusterSummary(
            cluster_id=row["cluster_id"],
            size=row["size"],
            n_texts=row["n_texts"],
            keywords=row["keywords"] or [],
            label=row["label"],
            representatives=row["representatives"] or [],
            centroid=np.asarray(row["centroid"], dtype=np.float32),
        )
        for row in table.to_pylist()
    ], clustering


_COLUMNS = [
    ("topic_id", pa.string()),
    ("cluster_id", pa.int32()),
    ("status", pa.string()),
    ("is_new", pa.bool_()),
    ("similarity", pa.float64()),
    ("first_seen", pa.date32()),
    ("size", pa.float64()),
    ("topic_size", pa.float64()),
    ("share", pa.float64()),
    ("label", pa.string()),
    ("keywords", pa.list_(pa.string())),
    ("surge_z", pa.float64()),
    ("surging", pa.bool_()),
    ("large_new", pa.bool_()),
    ("absorbed", pa.list_(pa.string())),
    ("topic_mass", pa.float64()),
    ("keyword_terms", pa.list_(pa.string())),
    ("keyword_scores", pa.list_(pa.float64())),
]


def _topics_table(rows: list[dict], clustering: str | None) -> pa.Table:
    table = pa.Table.from_pylist([{k: r[k] for k, _ in _COLUMNS} for r in rows], schema=pa.schema(_COLUMNS))
    dim = len(rows[0]["centroid"]) if rows else 1
    cluster_c = np.vstack([r["centroid"] for r in rows]) if rows else np.zeros((0, dim), np.float32)
    table = table.append_column("centroid", matrix_to_arrow(cluster_c))
    # emerging clusters have no topic: their topic_centroid is NULL
    topic_c = [
        None if r["topic_centroid"] is None else np.asarray(r["topic_centroid"], np.float32).tolist()
        for r in rows
    ]
    table = table.append_column("topic_centroid", pa.array(topic_c, pa.list_(pa.float32())))
    return table.append_column("clustering", pa.array([clustering] * len(rows), pa.string()))


def _read_trend(wh: Warehouse, day: datetime.date, n_days: int):
    """Daily sizes of every topic over the last ``n_days`` days up to ``day``, with new/surge marks."""
    start = day - datetime.timedelta(days=n_days - 1)
    rows = wh.topic_trend_rows(start, day)
    if rows:  # no empty lead-in on a young warehouse: start at the first day with topics
        start = rows[0]["partition_date"]
        n_days = (day - start).days + 1
    days = [start + datetime.timedelta(days=i) for i in range(n_days)]
    index = {d: i for i, d in enumerate(days)}
    sizes: dict[str, list[float]] = {}
    labels: dict[str, str] = {}
    new_on: dict[str, datetime.date] = {}
    surging_on: dict[str, list[datetime.date]] = {}
    for r in rows:
        series = sizes.setdefault(r["topic_id"], [0.0] * n_days)
        series[index[r["partition_date"]]] = float(r["size"])
        labels[r["topic_id"]] = r["label"]  # rows come in date order: the latest label wins
        if r["is_new"]:
            new_on[r["topic_id"]] = r["partition_date"]
        if r["surging"]:
            surging_on.setdefault(r["topic_id"], []).append(r["partition_date"])
    return days, sizes, labels, new_on, surging_on
