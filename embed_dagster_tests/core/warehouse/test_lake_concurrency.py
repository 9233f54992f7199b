"""Many processes on one lake: writers of different days and of the same day, readers polling the
CLI meanwhile, and the production profile's PostgreSQL catalog. Real processes, real lake on disk."""

import json
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse
from embed_dagster_tests.support import postgres

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ROWS = 20_000
START = date(2025, 3, 1)


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "embed-dagster"
    return [str(script)] if script.exists() else [sys.executable, "-m", "embed_dagster.cli"]


def _writer(config: LakeConfig, days: list[date], rows: int = ROWS) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embed_dagster_tests.support.lake_writer",
            "--catalog",
            config.catalog,
            "--data-path",
            config.data_path,
            "--rows",
            str(rows),
            *[d.isoformat() for d in days],
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _assert_ledger(wh: Warehouse, days: list[date], rows: int = ROWS) -> None:
    for day in days:
        n = wh.conservation_counts(day)
        lost = n["rows_read"] - n["clustered"] - n["quarantined"]
        doubled = n["clustered"] - n["clustered_distinct"] + n["in_both"]
        assert (n["rows_read"], lost, doubled) == (rows, 0, 0), (day, n)


@pytest.mark.slow
def test_four_writers_same_and_different_days_while_a_reader_polls_the_cli(tmp_path):
    config = LakeConfig.embedded(tmp_path / "lake", commit_timeout_s=300)
    Warehouse(config).ensure_schema()
    shared = START + timedelta(days=10)
    own = [START + timedelta(days=i) for i in range(4)]
    reads = {"ok": 0, "failed": [], "stop": False}

    def reader():
        query = "SELECT partition_date, count(*) AS n FROM raw_comments GROUP BY 1 ORDER BY 1"
        while not reads["stop"]:
            done = subprocess.run(
                [*_cli(), "--lake", str(tmp_path / "lake"), "sql", query],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO,
            )
            if done.returncode == 0 and done.stdout.startswith("partition_date,n"):
                reads["ok"] += 1
            else:
                reads["failed"].append(done.stderr[-500:])
            time.sleep(0.1)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        # Every writer writes its own day and the shared day (in different orders), twice over.
        procs = [
            _writer(config, [own[i], shared, own[i]] if i % 2 else [shared, own[i], shared]) for i in range(4)
        ]
        results = _finish(procs)
    finally:
        reads["stop"] = True
        thread.join(timeout=180)
    wh = Warehouse(config, read_only=True)
    _assert_ledger(wh, [*own, shared])
    counts = wh.partition_counts("raw_comments")
    assert counts == {d: ROWS for d in [*own, shared]}  # 0 lost, 0 doubled, nothing else
    assert reads["failed"] == [] and reads["ok"] >= 1, reads["failed"][:3]
    print(f"\nwriters' commit retries: {[r['retries'] for r in results]}; reads ok: {reads['ok']}")
    wh.close()


@pytest.fixture(scope="module")
def pg_catalog():
    reason = postgres.missing()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server(user="lake", database="lake") as server:
        yield "postgres:" + " ".join(f"{k}={server[k]}" for k in ("dbname", "host", "port", "user"))


@pytest.mark.slow
def test_postgres_catalog_two_workers_write_different_days(pg_catalog, tmp_path):
    config = LakeConfig(catalog=pg_catalog, data_path=f"{tmp_path / 'shared-files'}/", commit_timeout_s=300)
    Warehouse(config).ensure_schema()
    days = [START + timedelta(days=i) for i in range(4)]
    _finish([_writer(config, days[0::2], rows=5_000), _writer(config, days[1::2], rows=5_000)])
    wh = Warehouse(config, read_only=True)
    _assert_ledger(wh, days, rows=5_000)
    assert wh.partition_counts("raw_comments") == {d: 5_000 for d in days}
    # The Parquet files are in the shared data path, the metadata in PostgreSQL.
    assert list((tmp_path / "shared-files").rglob("*.parquet"))
    wh.close()


@pytest.mark.slow
def test_a_catalog_password_with_a_space_a_quote_and_a_backslash_reaches_postgres(tmp_path):
    """It was appended unquoted to the libpq connection string: cut at the space, the rest quoted in
    libpq's error (stop-24 adversarial pass). The server trusts every password, so the ATTACH
    succeeds exactly when the connection string parses. A server of its own: a catalog remembers
    its data path, and the module's one belongs to the test above."""
    reason = postgres.missing()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server(user="lake", database="lake") as server:
        catalog = "postgres:" + " ".join(f"{k}={server[k]}" for k in ("dbname", "host", "port", "user"))
        password = "pa ss'wo\\rd"
        config = LakeConfig(catalog=catalog, data_path=f"{tmp_path / 'files'}/", catalog_password=password)
        wh = Warehouse(config)
        wh.ensure_schema()
        assert wh.partition_counts("raw_comments") == {}
        wh.close()
        # duckdb_databases() lists the attach string, password included: the analyst CLI prints
        # it masked (stop-25 adversarial pass)
        import io

        from embed_dagster.cli import run_sql

        out = io.StringIO()
        run_sql(
            config, "SELECT database_name, path FROM duckdb_databases() WHERE database_name = 'lake'", out
        )
        printed = out.getvalue()
        assert "dbname=lake" in printed and "pa ss" not in printed and "password=***" in printed, printed
