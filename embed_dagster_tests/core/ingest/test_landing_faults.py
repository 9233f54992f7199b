"""Regression tests for issue 15's landing defects (D2 glob names, D3 sub-folders, D4 symlinks,
D9 BOM/UTF-16, JSON key case), each through the real reader on real files.

Marked ``faults``: they are part of ``make test-faults`` and add to its figures.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embed_dagster.core.ingest import read_landing_partition, scan_landing
from embed_dagster_tests.core.test_ingest import DAY, day_dir, read, row, write_jsonl

pytestmark = pytest.mark.faults

SECRET = "sk-test-not-a-real-key-0123456789"


def test_d2_glob_characters_in_names_never_read_neighbours(tmp_path, fault_figures):
    d = day_dir(tmp_path)
    header = "comment_id,created_at,text\n"
    (d / "a.csv").write_text(header + "".join(f"a{i},2025-01-01,text a{i}\n" for i in range(4)))
    (d / "b.csv").write_text(header + "".join(f"b{i},2025-01-01,text b{i}\n" for i in range(4)))
    (d / "*.csv").write_text(header + "".join(f"s{i},2025-01-01,text s{i}\n" for i in range(2)))
    pq.write_table(
        pa.table({"comment_id": ["q1", "q2"], "created_at": ["2025-01-01"] * 2, "text": ["x", "y"]}),
        d / "?.parquet",
    )
    pq.write_table(
        pa.table({"comment_id": ["p1"], "created_at": ["2025-01-01"], "text": ["z"]}), d / "p.parquet"
    )
    (d / "[ab].jsonl").write_text(json.dumps(row("j1")) + "\n")
    fault_figures.add("faults_injected", 3)
    res = read(tmp_path)  # also asserts that the independent file counts equal rows_read
    assert res.stats["rows_read"] == res.stats["landing_rows"] == 4 + 4 + 2 + 2 + 1 + 1
    assert res.rejected.num_rows == 0, res.rejected.to_pylist()
    by_file = {}
    for r in res.valid.to_pylist():
        by_file.setdefault(r["source_file"].rsplit("/", 1)[1], set()).add(r["comment_id"])
    assert by_file["*.csv"] == {"s0", "s1"} and by_file["?.parquet"] == {"q1", "q2"}
    assert by_file["[ab].jsonl"] == {"j1"}
    fault_figures.add("rows_duplicated", res.stats["rows_read"] - 14)


def test_d3_sub_folders_are_read_and_the_sensor_sees_them(tmp_path, fault_figures):
    d = day_dir(tmp_path)
    spark = d / "batch.parquet"
    spark.mkdir()
    (spark / "_SUCCESS").write_text("")
    (spark / ".part-0.parquet.crc").write_bytes(b"crc")
    pq.write_table(
        pa.table({"comment_id": ["s1", "s2"], "created_at": ["2025-01-01"] * 2, "text": ["one", "two"]}),
        spark / "part-00000.snappy.parquet",
    )
    deeper = d / "x" / "y"
    deeper.mkdir(parents=True)
    write_jsonl(deeper / "c.jsonl", row("deep"))
    fault_figures.add("faults_injected", 2)
    res = read(tmp_path)
    assert {r["comment_id"] for r in res.valid.to_pylist()} == {"s1", "s2", "deep"}
    assert sorted(res.stats["ignored"]) == ["batch.parquet/.part-0.parquet.crc", "batch.parquet/_SUCCESS"]
    src = {r["source_file"] for r in res.valid.to_pylist()}
    assert "comments/date=2025-01-01/batch.parquet/part-00000.snappy.parquet" in src
    days, malformed = scan_landing(tmp_path)
    assert days == [DAY.isoformat()] and malformed == []
    fault_figures.add("rows_lost", 3 - res.valid.num_rows)


def test_d4_links_outside_the_root_are_refused_and_never_read(tmp_path, fault_figures, monkeypatch):
    monkeypatch.setenv("SGLANG_API_KEY", SECRET)
    d = day_dir(tmp_path / "landing")
    outside = tmp_path / "secrets.jsonl"
    outside.write_text(json.dumps(row("leak", f"key {SECRET}")) + "\n")
    os.symlink("/proc/self/environ", d / "env.jsonl")
    os.symlink(outside, d / "outside.jsonl")
    os.symlink(tmp_path, d / "up")  # a folder link leaving the root
    inside = tmp_path / "landing" / "shared.jsonl"
    write_jsonl(inside, row("shared"))
    os.symlink(inside, d / "inside.jsonl")  # inside the landing root: followed
    os.mkfifo(d / "pipe.jsonl")  # reading it would block forever
    fault_figures.add("faults_injected", 4)
    res = read(tmp_path / "landing")
    rej = {r["source_file"].rsplit("/", 1)[1]: r for r in res.rejected.to_pylist()}
    assert set(rej) == {"env.jsonl", "outside.jsonl", "up", "pipe.jsonl"}
    for name, r in rej.items():
        assert r["raw"] == "" and name in r["reason"], r
    assert "outside the landing root" in rej["env.jsonl"]["reason"]
    assert "not a regular file" in rej["pipe.jsonl"]["reason"]
    assert {r["comment_id"] for r in res.valid.to_pylist()} == {"shared"}
    dump = json.dumps([res.valid.to_pylist(), res.rejected.to_pylist(), res.stats], default=str)
    found = dump.count(SECRET) + dump.count("PATH=")
    fault_figures.add("secrets_found", found)
    assert found == 0


def test_d9_bom_keeps_the_first_jsonl_row_and_utf16_is_named(tmp_path, fault_figures):
    d = day_dir(tmp_path)
    lines = [json.dumps(row(f"c{i}"), ensure_ascii=False) for i in range(3)]
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    (d / "u16.jsonl").write_bytes("\n".join(lines).encode("utf-16"))
    (d / "u16le.csv").write_bytes("comment_id,created_at,text\nx,2025-01-01,hi\n".encode("utf-16-le"))
    fault_figures.add("faults_injected", 3)
    res = read(tmp_path)
    assert {r["comment_id"] for r in res.valid.to_pylist()} == {"c0", "c1", "c2"}
    rej = {r["source_file"].rsplit("/", 1)[1]: r for r in res.rejected.to_pylist()}
    assert set(rej) == {"u16.jsonl", "u16le.csv"}  # one row per file, not phantom rows
    assert all("UTF-16" in r["reason"] and "convert it to UTF-8" in r["reason"] for r in rej.values())
    assert "comment_id" in rej["u16.jsonl"]["raw"]  # raw is readable text, decoded as UTF-16


def test_json_keys_match_case_insensitively_like_csv(tmp_path):
    d = day_dir(tmp_path)
    write_jsonl(
        d / "a.jsonl",
        {"Comment_ID": "c1", "Created_At": "2025-01-01", "Text": "hi", "x": 1},
        {"comment_id": "c2", "created_at": "2025-01-01", "text": "a", "TEXT": "b"},
        {"comment_id": "c3", "created_at": "2025-01-01", "body": "no text"},
    )
    (d / "b.csv").write_text("Comment_ID,Created_At,Text\nc4,2025-01-01,hi\n")
    res = read(tmp_path)
    valid = {r["comment_id"]: r for r in res.valid.to_pylist()}
    assert set(valid) == {"c1", "c4"} and json.loads(valid["c1"]["extra"]) == {"x": 1}
    reasons = {r["comment_id"]: r["reason"] for r in res.rejected.to_pylist()}
    assert reasons["c2"] == "the object repeats a required field in different case (text, TEXT)"
    assert reasons["c3"] == "text is missing (null or absent) (fields present: comment_id, created_at, body)"


def test_sensor_scan_reports_malformed_day_folders(tmp_path):
    base = tmp_path / "comments"
    for name in ("date=2025-02-30", "date=2025-1-5", "Date=2025-01-05", "date=2025-01-06"):
        (base / name).mkdir(parents=True)
        write_jsonl(base / name / "a.jsonl", row())
    (base / "stray.jsonl").write_text("{}")
    (base / ".hidden").mkdir()
    days, malformed = scan_landing(tmp_path)
    assert days == ["2025-01-06"]
    assert malformed == ["Date=2025-01-05", "date=2025-02-30", "date=2025-1-5", "stray.jsonl"]
    assert read_landing_partition(tmp_path, "2025-01-06").stats["valid"] == 1
