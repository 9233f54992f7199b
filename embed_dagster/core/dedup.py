"""Collapse a day's comments to distinct normalized texts, keeping the comment→text mapping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from embed_dagster.core.textnorm import NORMALIZATION_VERSION, normalize_text, text_hash

EMPTY_REASON = "text is empty after normalization (only invisible or control characters)"


@dataclass
class Deduplicated:
    texts: pa.Table  # text_hash, text, comment_count, normalization_version
    mapping: pa.Table  # comment_id, text_hash
    empty: pa.Table  # comment_id, raw, reason, source_file, source_row: comments that normalize to ""


def deduplicate(
    comment_ids: Sequence[str],
    texts: Sequence[str],
    source_files: Sequence[str | None] | None = None,
    source_rows: Sequence[int | None] | None = None,
) -> Deduplicated:
    """First-seen order is kept so the output is deterministic for a given input order."""
    n = len(comment_ids)
    source_files = source_files if source_files is not None else [None] * n
    source_rows = source_rows if source_rows is not None else [None] * n
    distinct: dict[str, list] = {}
    map_ids: list[str] = []
    map_hashes: list[str] = []
    empty_rows: list[tuple] = []
    # Normalizing and hashing is most of the cost, and a day repeats the same raw texts many times
    # (1,000,000 generated comments hold about 250,000 distinct texts): each raw text is done once.
    seen: dict[str, tuple[str, str]] = {}
    for cid, raw, sfile, srow in zip(comment_ids, texts, source_files, source_rows):
        done = seen.get(raw)
        if done is None:
            norm = normalize_text(raw)
            done = seen[raw] = (norm, text_hash(norm) if norm else "")
        norm, h = done
        if not norm:
            empty_rows.append((cid, raw[:2000], EMPTY_REASON, sfile, srow))
            continue
        entry = distinct.get(h)
        if entry is None:
            distinct[h] = [norm, 1]
        else:
            entry[1] += 1
        map_ids.append(cid)
        map_hashes.append(h)
    texts_table = pa.table(
        {
            "text_hash": pa.array(list(distinct), pa.string()),
            "text": pa.array([v[0] for v in distinct.values()], pa.string()),
            "comment_count": pa.array([v[1] for v in distinct.values()], pa.int64()),
            "normalization_version": pa.array([NORMALIZATION_VERSION] * len(distinct), pa.int32()),
        }
    )
    mapping = pa.table(
        {"comment_id": pa.array(map_ids, pa.string()), "text_hash": pa.array(map_hashes, pa.string())}
    )
    cols = list(zip(*empty_rows)) if empty_rows else [[], [], [], [], []]
    empty = pa.table(
        {
            "comment_id": pa.array(cols[0], pa.string()),
            "raw": pa.array(cols[1], pa.string()),
            "reason": pa.array(cols[2], pa.string()),
            "source_file": pa.array(cols[3], pa.string()),
            "source_row": pa.array(cols[4], pa.int64()),
        }
    )
    return Deduplicated(texts_table, mapping, empty)
