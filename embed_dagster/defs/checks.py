"""Partitioned asset checks: can this day's output be trusted? In a range run, each day is checked
and recorded on its own (``lib.ranges.check_days``)."""

from collections.abc import Iterator

import dagster as dg
import numpy as np

from embed_dagster.core.warehouse.vector_store import arrow_to_matrix
from embed_dagster.defs.resources import ClusteringResource, EmbeddingResource, WarehouseResource
from embed_dagster.lib.partitions import daily_partitions
from embed_dagster.lib.ranges import check_days

NORM_TOLERANCE = 1e-3


@dg.asset_check(
    asset="clusters",
    partitions_def=daily_partitions,
    blocking=True,
    description="Nothing lost, nothing doubled: every row read from the landing files is either a "
    "clustered comment (noise included) or a quarantine row, exactly once.",
)
def conservation(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator:
    wh = warehouse.open(context.log)
    yield from check_days(context, lambda day: _conservation(context, wh, day))


def _conservation(context: dg.AssetCheckExecutionContext, wh, day) -> dg.AssetCheckResult:
    n = wh.conservation_counts(day)
    # The files' own row count, taken by ingest's separate simple reader and kept in raw_comments'
    # metadata: rows the parser invented (a name read as a glob) or dropped show up here.
    landing_rows = _landing_rows(context, day)
    problems, lost, doubled = conservation_problems(n, landing_rows)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            **n,
            "lost": lost,
            "doubled": doubled,
            "landing_rows": -1 if landing_rows is None else landing_rows,
        },
        description="; ".join(problems) or None,
    )


def conservation_problems(n: dict, landing_rows: int | None) -> tuple[list[str], int, int]:
    """(problems, lost, doubled) of one day's ledger (``Warehouse.conservation_counts``)."""
    lost = n["rows_read"] - n["clustered"] - n["quarantined"]
    doubled = n["clustered"] - n["clustered_distinct"] + n["in_both"]
    problems = [f"{lost} rows lost"] if lost else []
    problems += [f"{doubled} doubled"] if doubled else []
    if n["phantom"]:
        problems.append(f"{n['phantom']} clustered comment(s) not in raw_comments")
    if n["unplaced"]:
        problems.append(f"{n['unplaced']} comment(s) of raw_comments neither clustered nor quarantined")
    if landing_rows is not None and n["rows_read"] != landing_rows:
        problems.append(f"{n['rows_read']} rows read but the landing files hold {landing_rows}")
    return problems, lost, doubled


def _landing_rows(context: dg.AssetCheckExecutionContext, day) -> int | None:
    """``landing_rows`` of this partition's latest raw_comments materialization (None if absent)."""
    wanted = dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_comments"), asset_partitions=[day.isoformat()])
    records = context.instance.fetch_materializations(wanted, limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("landing_rows")
    return None if value is None else int(value.value)


@dg.asset_check(
    asset="fresh_embeddings",
    partitions_def=daily_partitions,
    description="Every distinct text of the day has exactly one vector, from cached_embeddings or "
    "fresh_embeddings, unless the server rejected it (then its comments are quarantined).",
)
def coverage(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, embedding: EmbeddingResource
) -> Iterator:
    key = embedding.model_key().id
    wh = warehouse.open(context.log)

    def one_day(day) -> dg.AssetCheckResult:
        n = wh.coverage_counts(day, key)
        passed = n["missing"] == 0 and n["duplicated"] == 0 and n["not_in_store"] == 0
        return dg.AssetCheckResult(passed=passed, metadata={**n, "model_key": key})

    yield from check_days(context, one_day)


@dg.asset_check(
    asset="fresh_embeddings",
    partitions_def=daily_partitions,
    description="The day's vectors have the expected dimension, finite values and unit norm.",
)
def vector_sanity(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, embedding: EmbeddingResource
) -> Iterator:
    key = embedding.model_key()
    wh = warehouse.open(context.log)
    yield from check_days(context, lambda day: _vector_sanity(wh, day, key))


def _vector_sanity(wh, day, key) -> dg.AssetCheckResult:
    table = wh.day_vectors_with_dims(day, key.id)
    dims = set(table.column("dim").to_pylist())
    wrong_dim = sorted(dims - {key.dimensions})
    if wrong_dim:
        return dg.AssetCheckResult(passed=False, metadata={"wrong_dimensions": str(wrong_dim)})
    matrix = arrow_to_matrix(table.column("vector"), key.dimensions)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(matrix), matrix, 0), axis=1)
    off_norm = int((np.abs(norms - 1) > NORM_TOLERANCE).sum())
    return dg.AssetCheckResult(
        passed=bool(finite.all()) and off_norm == 0,
        metadata={
            "vectors": int(len(matrix)),
            "dimensions": key.dimensions,
            "non_finite": int((~finite).sum()),
            "norm_off_by_more_than_1e-3": off_norm,
            "max_norm_error": float(np.abs(norms - 1).max()) if len(norms) else 0.0,
        },
    )


@dg.asset_check(
    asset="clusters",
    partitions_def=daily_partitions,
    description="Noise share and cluster count within the configured bounds. Warns, never blocks.",
)
def clustering_health(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, clustering: ClusteringResource
) -> Iterator:
    wh = warehouse.open(context.log)
    yield from check_days(context, lambda day: _clustering_health(wh, day, clustering))


def _clustering_health(wh, day, clustering: ClusteringResource) -> dg.AssetCheckResult:
    n = wh.clustering_counts(day)
    share = n["noise"] / n["comments"] if n["comments"] else 0.0
    problems = []
    if share > clustering.max_noise_share:
        problems.append(f"noise share {share:.1%} above {clustering.max_noise_share:.0%}")
    if n["comments"] and not clustering.min_clusters <= n["clusters"] <= clustering.max_clusters:
        problems.append(
            f"{n['clusters']} clusters outside [{clustering.min_clusters}, {clustering.max_clusters}]"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or None,
        metadata={**n, "noise_share": round(share, 4)},
    )


CHECKS = [conservation, coverage, vector_sanity, clustering_health]
