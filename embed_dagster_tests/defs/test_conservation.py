"""The conservation ledger against a real lake, tampered the ways a count-only ledger missed.

Stop-24 adversarial pass: a clustered comment swapped for an id that was never read, and a lost
comment offset by a quarantine row of another comment, both passed (counts only).
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.defs.checks import conservation_problems

DAY = date(2025, 1, 1)
READ = ["a", "b", "c", "d"]


def _day(
    wh: Warehouse, clustered: list[str], quarantined: list[str], by: str = "fresh_embeddings"
) -> list[str]:
    wh.replace_partition(
        DAY,
        {
            "raw_comments": pa.table({"comment_id": READ}),
            "clusters": pa.table(
                {"comment_id": clustered, "cluster_id": pa.array([0] * len(clustered), pa.int32())}
            ),
            "quarantine": pa.table(
                {
                    "source_asset": [by] * len(quarantined),
                    "comment_id": quarantined,
                    "reason": ["rejected"] * len(quarantined),
                }
            ),
        },
    )
    problems, _, _ = conservation_problems(wh.conservation_counts(DAY), landing_rows=len(READ))
    return problems


@pytest.fixture
def wh(tmp_path):
    with Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30) as warehouse:
        yield warehouse


def test_a_complete_day_passes(wh):
    assert _day(wh, clustered=["a", "b", "c"], quarantined=["d"]) == []


def test_a_clustered_comment_swapped_for_one_never_read_fails(wh):
    assert _day(wh, clustered=["a", "b", "PHANTOM"], quarantined=["d"]) == [
        "1 clustered comment(s) not in raw_comments",
        "1 comment(s) of raw_comments neither clustered nor quarantined",
    ]


def test_a_lost_comment_offset_by_another_quarantine_row_fails(wh):
    # "c" is lost; "d" set aside twice (by two assets) makes the counts add up
    problems = _day(wh, clustered=["a", "b"], quarantined=["d", "d"], by="clusters")
    assert "1 comment(s) of raw_comments neither clustered nor quarantined" in problems
