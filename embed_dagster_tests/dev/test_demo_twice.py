"""`make demo` run twice, in this process: every table, the embedding tables included, holds the same
rows the second time (issue 14), and the demo's days are the most recent complete ones, so they sit
in the UI's backfill window."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from embed_dagster.core.warehouse.schema import TABLES
from embed_dagster.dev import demo
from embed_dagster_tests.support.lake import query_arrow

REPO = Path(__file__).resolve().parents[2]


def test_default_days_end_yesterday_in_the_configured_timezone():
    # 02:00 UTC on 10 March is still 9 March in Los Angeles: yesterday there is 8 March
    now = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert demo.default_days(3, "America/Los_Angeles", now) == [
        date(2026, 3, 6),
        date(2026, 3, 7),
        date(2026, 3, 8),
    ]
    assert demo.default_days(1, "UTC", now) == [date(2026, 3, 9)]


def _counts(lake: Path) -> dict[str, int]:
    return {t: query_arrow(lake, f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in TABLES}


def _embedding_rows(lake: Path) -> list[tuple]:
    rows = query_arrow(
        lake,
        """SELECT 'cached' AS t, partition_date, text_hash FROM cached_embeddings
           UNION ALL SELECT 'fresh', partition_date, text_hash FROM fresh_embeddings ORDER BY ALL""",
    )
    return [tuple(r.values()) for r in rows.to_pylist()]


@pytest.mark.slow
def test_demo_twice_leaves_every_table_with_the_same_counts(tmp_path, monkeypatch, capsys):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    for name in ("SGLANG_BASE_URL", "SGLANG_MODEL", "REDIS_URL", "EMBED_DAGSTER_LAKE_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    lake = tmp_path / "lake"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EMBED_DAGSTER_LAKE", str(lake))
    monkeypatch.setenv("EMBED_DAGSTER_LANDING", str(tmp_path / "landing"))

    argv = ["--days", "2", "--per-day", "60"]
    assert demo.main(argv) == 0, capsys.readouterr().err
    first_out = capsys.readouterr().out
    first, first_rows = _counts(lake), _embedding_rows(lake)
    assert demo.main(argv) == 0, capsys.readouterr().err
    second_out = capsys.readouterr().out

    assert _counts(lake) == first
    assert _embedding_rows(lake) == first_rows
    assert first["fresh_embeddings"] > 0 and first["cached_embeddings"] > 0  # day 2 repeats day 1's texts
    assert first["embedding_store"] == first["fresh_embeddings"]  # every vector stored by one day
    # the report, read from the tables, says the same both times; the days end yesterday (UTC)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert f"== {yesterday} ==" in first_out
    report = first_out.split("\n\n", 1)[1]
    assert second_out.split("\n\n", 1)[1] == report
