"""The production profile (deploy/postgres/dagster.yaml) against a real PostgreSQL server.

The server is support/postgres.py's throwaway one (PostgreSQL 15 as the `postgres` system user, a
free loopback port, sockets and data in a temp directory).
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import dagster as dg
import pytest

from embed_dagster.defs.checks import CHECKS
from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support import postgres
from embed_dagster_tests.support.dagster_procs import REPO
from embed_dagster_tests.support.defs import ASSETS
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import pipeline_resources

DAY = date(2025, 1, 1)


def _missing() -> str | None:
    reason = postgres.missing()
    if reason:
        return reason
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        return "dagster-postgres is not installed (pip install -e '.[postgres]')"
    return None


@pytest.fixture(scope="module")
def postgres_url():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server(user="dagster", database="dagster") as server:
        # `+psycopg2`: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres
        # does not install (see deploy/README.md).
        yield f"postgresql+psycopg2://dagster@{server['host']}:{server['port']}/dagster"


@pytest.fixture(scope="module")
def materialized(postgres_url, tmp_path_factory, local_server):
    root = tmp_path_factory.mktemp("pg-profile")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    generate_landing(root / "landing", DAY, 1, per_day=80, seed=21)
    resources = pipeline_resources(
        root / "lake", root / "landing", base_url=local_server.base_url, model=MODEL_NAME
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_PG_URL", postgres_url)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = dg.materialize(
                [*ASSETS, *CHECKS], partition_key=DAY.isoformat(), resources=resources, instance=instance
            )
            runs = instance.get_runs()
            storage = instance.event_log_storage
            pools = {key: storage.get_concurrency_info(key) for key in storage.get_concurrency_keys()}
            latest = instance.get_latest_materialization_event(dg.AssetKey("topics"))
            storage_types = {
                "run": type(instance.run_storage).__name__,
                "event_log": type(instance.event_log_storage).__name__,
                "schedule": type(instance.schedule_storage).__name__,
            }
        yield {
            "home": home,
            "result": result,
            "runs": runs,
            "pools": pools,
            "latest": latest,
            "storage": storage_types,
            "db": str(root / "lake"),
            "url": postgres_url,
        }
    finally:
        mp.undo()


def test_profile_puts_every_storage_in_postgres(materialized):
    assert materialized["storage"] == {
        "run": "PostgresRunStorage",
        "event_log": "PostgresEventLogStorage",
        "schedule": "PostgresScheduleStorage",
    }
    # Nothing fell back to SQLite files under DAGSTER_HOME.
    assert not list(materialized["home"].rglob("*.db"))


def test_partition_run_is_recorded_in_postgres(materialized):
    assert materialized["result"].success
    runs = materialized["runs"]
    assert len(runs) == 1
    assert runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert runs[0].tags["dagster/partition"] == DAY.isoformat()
    assert materialized["latest"] is not None
    assert materialized["latest"].asset_materialization.partition == DAY.isoformat()
    # Read the run storage with plain SQL, not through Dagster, to be sure of where it lives.
    import psycopg2

    libpq_url = materialized["url"].replace("+psycopg2", "")
    with psycopg2.connect(libpq_url) as con, con.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        rows = cur.fetchall()
        cur.execute(
            "SELECT asset_key, count(*) FROM event_logs WHERE run_id = %s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key",
            (runs[0].run_id,),
        )
        # the event log stores AssetKey.to_string(): a JSON list of the path
        materializations = {json.loads(key)[0]: n for key, n in cur.fetchall()}
    assert rows == [(runs[0].run_id, "SUCCESS")]
    # each asset once, plus the side tables its step wrote (quarantine by three of them)
    side = {"quarantine": 3, "comment_texts": 1, "cluster_summaries": 1}
    assert materializations == {**{a.key.path[0]: 1 for a in ASSETS}, **side}


def test_pools_are_enforced_through_postgres(materialized):
    # The embedding step claimed its pool's slot, which Postgres now holds with the default limit 1
    # (the warehouse steps take no pool: the lake has many writers).
    pools = materialized["pools"]
    assert "embedding_server" in pools and "duckdb_writer" not in pools
    for name in ("embedding_server",):
        assert pools[name].slot_count == 1, name
        assert not pools[name].claimed_slots, name  # given back when the steps finished


def test_warehouse_has_the_partition(materialized):
    n = (
        query_arrow(materialized["db"], "SELECT count(*) AS n FROM clusters WHERE partition_date = ?", [DAY])
        .column("n")[0]
        .as_py()
    )
    assert n > 0
