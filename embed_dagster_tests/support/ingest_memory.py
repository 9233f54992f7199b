"""Peak memory of ingest against file size, measured in a child process (its own RSS high-water mark).

Run as ``python -m embed_dagster_tests.support.ingest_memory ROOT DAY``: reads the day with
``read_landing_partition`` and prints a JSON line with rows and its own peak RSS (``VmHWM``). The
parent test writes the file, so the measurement covers exactly one read in a fresh interpreter
(imports included).
"""

from __future__ import annotations

import json
import random
import resource
import sys
from pathlib import Path


def write_jsonl(path: Path, target_bytes: int, seed: int = 0) -> int:
    """A realistic JSON Lines day: mixed scripts, extra fields, a few bad lines. Returns rows written."""
    rng = random.Random(seed)
    words = ["refund", "delivery", "late", "great", "app", "crash", "退款", "物流", "太慢", "很好", "🙂"]
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        while fh.tell() < target_bytes:
            if n % 1000 == 999:
                fh.write('{"comment_id": "broken", "text": \n')
            else:
                text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
                fh.write(
                    json.dumps(
                        {
                            "comment_id": f"c{n}",
                            "created_at": "2025-01-01T10:00:00Z",
                            "text": text,
                            "user_id": n,
                            "platform": "ios",
                        },
                        ensure_ascii=False,
                    )
                )
                fh.write("\n")
            n += 1
    return n


def peak_rss_kib() -> int:
    """This process's own RSS high-water mark (``VmHWM``).

    Not ``ru_maxrss``: Linux carries it across exec from the parent's memory (the pytest worker
    that started us), so after a worker had run a heavy in-process test the child reported the
    worker's 842 MB, not its own 530 MB (two fresh-clone CI runs of stop 24). Checked: a parent
    holding 900 MB starts a child whose ru_maxrss says 911 MB and VmHWM 11 MB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


def main() -> None:
    from embed_dagster.core.ingest import read_landing_partition

    res = read_landing_partition(sys.argv[1], sys.argv[2])
    peak_kib = peak_rss_kib()
    print(
        json.dumps(
            {
                "rows_read": res.stats["rows_read"],
                "landing_rows": res.stats["landing_rows"],
                "valid": res.stats["valid"],
                "peak_rss_bytes": peak_kib * 1024,
                "warnings": res.stats["warnings"],  # e.g. a retry with a larger DuckDB budget
            }
        )
    )


if __name__ == "__main__":
    main()
