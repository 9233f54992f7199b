"""Replace one big raw_comments partition, as a process of its own the kill test can SIGKILL.

``python -m embed_dagster_tests.support.faults_writer DB TAG N`` writes N rows whose comment_id starts with
TAG to 2025-05-02 of the lake at DB, printing ``writing`` before and ``done`` after. The lake is
opened before ``writing`` is printed, so the kill lands in the write, not in start-up.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import pyarrow as pa

from embed_dagster.core.warehouse.lake import Warehouse

DAY = date(2025, 5, 2)


def big_partition(tag: str, n: int) -> pa.Table:
    return pa.table(
        {
            "comment_id": pa.array([f"{tag}-{i}" for i in range(n)]),
            "created_at": pa.array([datetime(2025, 5, 2, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
            "text": pa.array(
                [f"{tag} comment number {i}, padded so the write takes a while" for i in range(n)]
            ),
            "source_file": pa.array(["big.jsonl"] * n),
            "source_row": pa.array(range(1, n + 1), pa.int64()),
            "extra": pa.array(["{}"] * n),
        }
    )


def main(argv: list[str]) -> int:
    db, tag, n = argv[1], argv[2], int(argv[3])
    rows = big_partition(tag, n)
    wh = Warehouse.embedded(db)
    wh.ensure_schema()
    wh.partition_hashes(DAY)  # extensions loaded, lake attached
    print("writing", flush=True)
    wh.replace_partition(DAY, {"raw_comments": rows})
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
