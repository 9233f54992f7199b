"""Landing files from the stop-24 adversarial pass: each test reproduces one defect found there
through the real reader on real files, and fails on the code before its fix."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from embed_dagster.core.ingest import fingerprint_day, scan_landing
from embed_dagster.core.ingest.common import RAW_MAX_CHARS
from embed_dagster_tests.core.test_ingest import DAY, TS, day_dir, read, row, write_jsonl

ROWS = 20_000  # enough for several row groups / CSV chunks, so DuckDB scans them in parallel


def _kept_copy(res, comment_id):
    (kept,) = [r for r in res.valid.to_pylist() if r["comment_id"] == comment_id]
    return kept


def test_parquet_rows_keep_their_file_position_and_the_first_duplicate_wins(tmp_path):
    ids = ["DUP" if i % 1000 == 0 else f"id{i}" for i in range(ROWS)]
    table = pa.table(
        {"comment_id": ids, "created_at": [TS] * ROWS, "text": [f"row {i + 1}" for i in range(ROWS)]}
    )
    pq.write_table(table, day_dir(tmp_path) / "a.parquet", row_group_size=2000)
    for _ in range(2):  # the order used to change between runs of the same file
        res = read(tmp_path, DAY)
        assert all(r["text"] == f"row {r['source_row']}" for r in res.valid.to_pylist())
        assert _kept_copy(res, "DUP")["source_row"] == 1


def test_csv_rows_keep_their_line_numbers_and_the_first_duplicate_wins(tmp_path):
    pad = "x" * 100  # ~12 MB: DuckDB reads a CSV this size in parallel chunks
    lines = ["comment_id,created_at,text"] + [
        f"{'DUP' if i % 1000 == 0 else f'id{i}'},{TS},row {i + 2} {pad}" for i in range(100_000)
    ]
    (day_dir(tmp_path) / "a.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = read(tmp_path, DAY)
    assert all(r["text"].startswith(f"row {r['source_row']} ") for r in res.valid.to_pylist())
    assert _kept_copy(res, "DUP")["source_row"] == 2


def test_a_name_that_is_not_utf8_is_refused_and_the_rest_of_the_day_is_read(tmp_path):
    folder = day_dir(tmp_path)
    write_jsonl(folder / "good.jsonl", row("1"))
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.jsonl")  # e.g. a Latin-1 name from an SMB upload
    with open(bad, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(row("2")) + "\n")
    res = read(tmp_path, DAY)
    assert [r["comment_id"] for r in res.valid.to_pylist()] == ["1"]
    (refused,) = res.rejected.to_pylist()
    assert refused["source_file"].endswith("caf\\xe9.jsonl") and "not valid UTF-8" in refused["reason"]
    assert fingerprint_day(tmp_path, DAY).files == 1  # what the sensor computes no longer raises
    assert scan_landing(tmp_path)[0] == [DAY.isoformat()]


def test_csv_with_lone_cr_line_ends_is_counted_as_read(tmp_path):
    folder = day_dir(tmp_path)
    (folder / "a.csv").write_bytes(f"comment_id,created_at,text\r1,{TS},hello\r2,{TS},world\r".encode())
    (folder / "b.csv").write_bytes(b"id,body\rx,y\rz,w\r")  # no usable header: every line is quarantined
    res = read(tmp_path, DAY)  # read() asserts the independent count equals what was read
    assert [r["text"] for r in res.valid.to_pylist()] == ["hello", "world"]
    assert res.rejected.num_rows == 3


def test_an_empty_parquet_part_file_counts_zero_rows(tmp_path):
    schema = pa.schema([("comment_id", pa.string()), ("created_at", pa.string()), ("text", pa.string())])
    pq.write_table(schema.empty_table(), day_dir(tmp_path) / "part-00001.parquet")
    pq.write_table(
        pa.table({"comment_id": ["1"], "created_at": [TS], "text": ["hi"]}),
        day_dir(tmp_path) / "part-00000.parquet",
    )
    res = read(tmp_path, DAY)
    assert res.stats["rows_read"] == 1 and res.stats["landing_rows"] == 1


def test_quarantine_scrubs_a_secret_across_the_raw_cut_and_in_every_column(tmp_path):
    secret = "S3cr3tApiKey-0123456789abcdef"
    folder = day_dir(tmp_path)
    pad = "x" * (RAW_MAX_CHARS - 40)  # the secret starts just before the 2,000-character cut
    lines = [
        json.dumps({"comment_id": "1", "created_at": "bad", "text": pad + secret}),
        json.dumps({"comment_id": secret, "created_at": "bad", "text": "t"}),
        json.dumps({"comment_id": "3", "created_at": "bad", "text": "Authorization: Bearer abcdefgh12345"}),
    ]
    (folder / f"{secret}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / f"_{secret}.marker").write_text("")
    res = read(tmp_path, DAY, secrets=[secret])
    stored = json.dumps([res.rejected.to_pylist(), res.stats])
    assert res.rejected.num_rows == 3
    assert secret[:10] not in stored and "abcdefgh12345" not in stored
    assert res.rejected.to_pylist()[0]["raw"].endswith("characters in total]")


def test_a_line_of_several_megabytes_is_quarantined_not_a_failed_day(tmp_path):
    huge = json.dumps(row("2", text="y" * 4_000_000))  # needed ~180 MB of DuckDB's 192 MB budget and more
    (day_dir(tmp_path) / "a.jsonl").write_text(json.dumps(row("1")) + "\n" + huge + "\n", encoding="utf-8")
    res = read(tmp_path, DAY)
    assert [r["comment_id"] for r in res.valid.to_pylist()] == ["1"]
    assert "longer than" in res.rejected.to_pylist()[0]["reason"]
    assert any("done again with 1536 MB" in w for w in res.stats["warnings"])  # and it says so


def test_a_file_swapped_for_a_link_after_the_listing_is_not_followed(tmp_path, monkeypatch):
    """The check and the open used to be apart: a link put in place between them was followed."""
    import embed_dagster.core.ingest as ingest

    outside = tmp_path / "outside.jsonl"
    write_jsonl(outside, row("S", text="OUTSIDE-ROOT CONTENT"))
    root = tmp_path / "landing"
    target = day_dir(root) / "a.jsonl"
    write_jsonl(target, row("1"))
    real_list_day = ingest.list_day

    def list_then_swap(*args):
        listing = real_list_day(*args)
        target.unlink()
        target.symlink_to(outside)  # after the check, before the read
        return listing

    monkeypatch.setattr(ingest, "list_day", list_then_swap)
    res = read(root, DAY)
    assert res.valid.num_rows == 0
    assert "OUTSIDE-ROOT" not in json.dumps(res.rejected.to_pylist())
    assert "now a symbolic link" in res.rejected.to_pylist()[0]["reason"]


def test_parquet_with_a_required_column_in_two_cases_is_refused_like_json_and_csv(tmp_path):
    table = pa.table({"comment_id": ["1"], "created_at": [TS], "text": ["lower"], "Text": ["UPPER"]})
    pq.write_table(table, day_dir(tmp_path) / "a.parquet")
    res = read(tmp_path, DAY)
    assert res.valid.num_rows == 0
    assert "repeats a required column in different case (text, Text)" in res.rejected.to_pylist()[0]["reason"]
