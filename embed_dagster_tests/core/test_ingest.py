"""Landing reader: every policy case on tiny hand-written files; conservation is checked on each read."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embed_dagster.core.ingest import REJECTED_SCHEMA, VALID_SCHEMA, read_landing_partition

DAY = dt.date(2025, 1, 1)
TS = "2025-01-01T10:00:00Z"


def day_dir(root, day=DAY):
    d = root / "comments" / f"date={day.isoformat()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read(root, day=DAY, **kwargs):
    """read_landing_partition plus the invariants that must hold for every input."""
    res = read_landing_partition(root, day, **kwargs)
    s = res.stats
    assert s["rows_read"] == s["valid"] + s["rejected"]
    assert (s["valid"], s["rejected"]) == (res.valid.num_rows, res.rejected.num_rows)
    assert res.valid.schema.equals(VALID_SCHEMA) and res.rejected.schema.equals(REJECTED_SCHEMA)
    assert sum(f["rows_read"] for f in s["per_format"].values()) == s["rows_read"]
    # the independent file reader (counts.py) agrees with the parsers, file by file
    assert s["landing_rows_mismatch"] == {} and s["landing_rows"] == s["rows_read"]
    res.valid.to_pylist(), res.rejected.to_pylist()  # every string decodes
    return res


def row(comment_id="c1", text="hello", created_at=TS, **extra):
    obj = {"comment_id": comment_id, "created_at": created_at, "text": text, **extra}
    return {k: v for k, v in obj.items() if v is not ...}


def write_jsonl(path, *objs):
    path.write_text(
        "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8"
    )


def reasons(res):
    return {
        (r["source_file"].rsplit("/", 1)[-1], r["source_row"]): r["reason"] for r in res.rejected.to_pylist()
    }


def valid_by_id(res):
    return {r["comment_id"]: r for r in res.valid.to_pylist()}


# ------------------------------------------------------------------------------ folders and files
def test_missing_and_empty_day_folder_give_empty_tables(tmp_path):
    res = read(tmp_path)
    assert res.valid.num_rows == res.rejected.num_rows == res.stats["rows_read"] == 0
    day_dir(tmp_path)
    assert read(tmp_path).stats["files"] == 0


def test_unknown_extension_is_one_rejected_row_and_hidden_files_are_ignored(tmp_path):
    d = day_dir(tmp_path)
    (d / "notes.txt").write_text("hello")
    (d / "_SUCCESS").write_text("")
    (d / ".part-0.jsonl").write_text("garbage")
    res = read(tmp_path)
    [rej] = res.rejected.to_pylist()
    assert rej["source_row"] is None and rej["raw"] == "hello"
    assert rej["reason"].startswith("unsupported file type '.txt'")
    assert sorted(res.stats["ignored"]) == [".part-0.jsonl", "_SUCCESS"]


def test_partition_date_argument_checks(tmp_path):
    write_jsonl(day_dir(tmp_path) / "a.jsonl", row())
    assert read_landing_partition(tmp_path, "2025-01-01").stats["valid"] == 1
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        read_landing_partition(tmp_path, "01/01/2025")
    with pytest.raises(ValueError, match="max_text_chars"):
        read_landing_partition(tmp_path, DAY, max_text_chars=0)


# ------------------------------------------------------------------------------------------ JSON
def test_jsonl_good_rows_with_extra_fields_and_line_numbers(tmp_path):
    d = day_dir(tmp_path)
    (d / "a.jsonl").write_text(
        json.dumps(row("c1", user_id=7, platform="ios", meta={"x": None}))
        + "\n\n   \n"
        + json.dumps(row("c2", "你好 world"))
        + "\n",
        encoding="utf-8",
    )
    res = read(tmp_path)
    got = valid_by_id(res)
    assert got["c1"]["source_row"] == 1 and got["c2"]["source_row"] == 4  # blank lines are not rows
    assert got["c1"]["source_file"] == "comments/date=2025-01-01/a.jsonl"
    assert json.loads(got["c1"]["extra"]) == {"user_id": 7, "platform": "ios", "meta": {"x": None}}
    assert got["c2"]["extra"] == "{}" and got["c2"]["text"] == "你好 world"
    assert got["c1"]["created_at"] == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert res.stats["rows_read"] == 2


def test_jsonl_one_bad_line_among_good_keeps_its_raw_text(tmp_path):
    bad = '{"comment_id": "c2", "text": "cut off'
    write_jsonl(day_dir(tmp_path) / "a.jsonl", row("c1"), bad, row("c3"), "[1, 2]", '"just a string"')
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c1", "c3"}
    r = reasons(res)
    assert r[("a.jsonl", 2)].startswith("line is not valid JSON")
    assert r[("a.jsonl", 4)] == "line is not a JSON object (found an array)"
    assert r[("a.jsonl", 5)] == "line is not a JSON object (found a string)"
    assert res.rejected.to_pylist()[0]["raw"] == bad


def test_crlf_mixed_and_lone_cr_line_endings_in_jsonl(tmp_path):
    a, b, c = (json.dumps(row(f"c{i}")).encode() for i in range(3))
    (day_dir(tmp_path) / "a.jsonl").write_bytes(a + b"\r\n" + b + b"\n" + c + b"\r\n" + b'{"text": "x\ry"}\n')
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c0", "c1", "c2"}
    assert "raw control character" in reasons(res)[("a.jsonl", 4)]


def test_json_array_object_and_ndjson_files(tmp_path):
    d = day_dir(tmp_path)
    (d / "arr.json").write_text(json.dumps([row("a1"), row("a2", text=""), 5], indent=2))
    (d / "obj.json").write_text(json.dumps(row("o1"), indent=2))
    write_jsonl(d / "nd.json", row("n1"), row("n2"))
    (d / "broken.json").write_text('[\n  {"comment_id": "b1",\n')
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"a1", "o1", "n1", "n2"}
    assert valid_by_id(res)["n2"]["source_row"] == 2
    r = reasons(res)
    assert r[("arr.json", 2)] == "text is empty"
    assert r[("arr.json", 3)] == "element is not a JSON object (found an integer)"
    assert all(r[("broken.json", n)].startswith("line is not valid JSON") for n in (1, 2))


# ----------------------------------------------------------------------------------- field rules
def test_text_policies(tmp_path):
    write_jsonl(
        day_dir(tmp_path) / "a.jsonl",
        row("empty", ""),
        row("spaces", " \t\n\u3000\u00a0"),
        row("zw", "\u200b\ufeff"),
        row("fillers", "\u3164\u115f\u1160\uffa0\u034f \u2800\ufe0f"),
        row("null", None),
        row("absent", ...),
        row("number", 42),
        row("bool", True),
        row("long", "x" * 51),
        row("edge", "y" * 50),
    )
    res = read(tmp_path, max_text_chars=50)
    r = {rej["comment_id"]: rej["reason"] for rej in res.rejected.to_pylist()}
    assert r == {
        "empty": "text is empty",
        "spaces": "text is empty: only whitespace or invisible characters",
        "zw": "text is empty: only whitespace or invisible characters",
        "fillers": "text is empty: only whitespace or invisible characters",
        "null": "text is missing (null or absent) (fields present: comment_id, created_at, text)",
        "absent": "text is missing (null or absent) (fields present: comment_id, created_at)",
        "number": "text is an integer, not a string",
        "bool": "text is a boolean, not a string",
        "long": "text longer than 50 characters (51)",
    }
    assert set(valid_by_id(res)) == {"edge"}


def test_comment_id_policies(tmp_path):
    write_jsonl(
        day_dir(tmp_path) / "a.jsonl",
        row(...),
        row(""),
        row("   "),
        row(None),
        row(12, "int id"),
        row(1.5),
        row(["x"]),
        row("  padded  ", "trimmed"),
        row("x" * 257),
        row("a\nb"),
    )
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"12", "padded"}
    r = reasons(res)
    assert [r[("a.jsonl", n)] for n in (1, 2, 3, 4)] == [
        "comment_id is missing or empty (fields present: created_at, text)"
    ] + ["comment_id is missing or empty (fields present: comment_id, created_at, text)"] * 3
    assert r[("a.jsonl", 6)] == "comment_id is a number, expected a string"
    assert r[("a.jsonl", 7)] == "comment_id is an array, expected a string"
    assert r[("a.jsonl", 9)] == "comment_id longer than 256 characters (257)"
    assert r[("a.jsonl", 10)] == "comment_id contains control characters"


def test_created_at_policies(tmp_path):
    cases = {
        "z": "2025-01-01T10:00:00Z",
        "offset": "2025-01-01T18:00:00+08:00",
        "naive": "2025-01-01 10:00:00",
        "frac": "2025-01-01T10:00:00.5Z",
        "date": "2025-01-01",
        "other_day": "2024-12-30T23:59:59Z",
        "yesterday": "yesterday",
        "inf": "infinity",
        "epoch": "epoch",
        "zone": "2025-01-01 10:00 Europe/Berlin",
        "bad_month": "2025-13-01",
        "number": 1735725600,
        "missing": ...,
        "empty": "",
        "offset_25h": "2025-01-01T10:00:00+25:00",
        "offset_14h": "2025-01-01T10:00:00+14:00",
        "year_0": "0000-01-01T00:00:00Z",
        "year_9999": "9999-12-31T00:00:00Z",
        "before_1970": "1969-12-31T23:59:59Z",
        # valid ISO-8601 that DuckDB's cast refuses as written (quarantined before stop 24)
        "no_seconds_z": "2025-01-01T10:00Z",
        "no_seconds_offset": "2025-01-01T18:00+08:00",
        "lower_z": "2025-01-01T10:00:00z",
        "space_offset": "2025-01-01 18:00:00 +08:00",
    }
    write_jsonl(day_dir(tmp_path) / "a.jsonl", *(row(k, created_at=v) for k, v in cases.items()))
    res = read(tmp_path)
    got = valid_by_id(res)
    ten = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert got["z"]["created_at"] == got["offset"]["created_at"] == got["naive"]["created_at"] == ten
    for k in ("no_seconds_z", "no_seconds_offset", "lower_z", "space_offset"):
        assert got[k]["created_at"] == ten, k
    assert got["frac"]["created_at"] == ten.replace(microsecond=500000)
    assert got["date"]["created_at"] == ten.replace(hour=0)
    assert got["other_day"]["created_at"].date() == dt.date(2024, 12, 30)  # the folder decides the partition
    r = {rej["comment_id"]: rej["reason"] for rej in res.rejected.to_pylist()}
    assert (
        r.pop("yesterday")
        == "created_at 'yesterday' is not an ISO-8601 timestamp (e.g. 2025-01-31T12:00:00Z)"
    )
    assert r.pop("number") == "created_at is an integer, expected an ISO-8601 string"
    assert r.pop("missing") == "created_at is missing or empty (fields present: comment_id, text)"
    assert r.pop("empty") == "created_at is missing or empty (fields present: comment_id, created_at, text)"
    assert "offset_14h" in got  # real offsets run from -12:00 to +14:00
    for k in ("year_0", "year_9999", "before_1970"):
        assert r.pop(k).endswith("is outside the accepted range 1970-01-01 .. 2099-12-31"), k
    assert set(r) == {"inf", "epoch", "zone", "bad_month", "offset_25h"}
    assert all("is not an ISO-8601 timestamp" in reason for reason in r.values())


def test_duplicates_within_day_keep_first_across_files(tmp_path):
    d = day_dir(tmp_path)
    write_jsonl(d / "a.jsonl", row("c1", "first"), row("c2", ""), row("c1", "again"))
    write_jsonl(d / "b.jsonl", row("c1", "third"), row("c2", "good later copy"))
    res = read(tmp_path)
    got = valid_by_id(res)
    assert got["c1"]["text"] == "first" and got["c2"]["text"] == "good later copy"
    r = reasons(res)
    assert r[("a.jsonl", 3)] == "duplicate comment_id 'c1' within the day (first at a.jsonl:1)"
    assert r[("b.jsonl", 1)] == "duplicate comment_id 'c1' within the day (first at a.jsonl:1)"
    assert r[("a.jsonl", 2)] == "text is empty"
    assert res.stats["duplicates"] == 2


def test_same_comment_id_on_two_days_is_kept_on_both(tmp_path):
    write_jsonl(day_dir(tmp_path, DAY) / "a.jsonl", row("c1", "monday"))
    nxt = DAY + dt.timedelta(days=1)
    write_jsonl(day_dir(tmp_path, nxt) / "a.jsonl", row("c1", "tuesday"))
    assert read(tmp_path, DAY).valid.column("text").to_pylist() == ["monday"]
    assert read(tmp_path, nxt).valid.column("text").to_pylist() == ["tuesday"]


# -------------------------------------------------------------------------------- nasty contents
NASTY = {
    "control": "bell\x07 and nul\x00 inside",
    "zero_width": "zero\u200bwidth\u200djoin",
    "rtl": "مرحبا بالعالم \u202eolleh",
    "emoji_only": "😀👍🏽👨‍👩‍👧",
    "mixed": "App 一打开就 crash，`NullPointerException at Login.java:42` 😭",
}


def test_nasty_but_valid_texts_survive_unchanged_in_every_format(tmp_path):
    d = day_dir(tmp_path)
    write_jsonl(d / "a.jsonl", *(row(f"j-{k}", v) for k, v in NASTY.items()))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["comment_id", "created_at", "text"])
    w.writerows([f"c-{k}", TS, v] for k, v in NASTY.items())
    (d / "b.csv").write_text(buf.getvalue(), encoding="utf-8")
    pq.write_table(
        pa.table(
            {
                "comment_id": [f"p-{k}" for k in NASTY],
                "created_at": [TS] * len(NASTY),
                "text": list(NASTY.values()),
            }
        ),
        d / "c.parquet",
    )
    res = read(tmp_path)
    assert res.rejected.num_rows == 0
    got = {r["comment_id"]: r["text"] for r in res.valid.to_pylist()}
    for prefix in "jcp":
        assert {k: got[f"{prefix}-{k}"] for k in NASTY} == NASTY


def test_invalid_utf8_and_bad_escapes_quarantine_only_their_line(tmp_path):
    d = day_dir(tmp_path)
    good = json.dumps(row("ok1")).encode()
    (d / "a.jsonl").write_bytes(
        good
        + b"\n"
        + b'{"comment_id": "u1", "created_at": "2025-01-01", "text": "caf\xe9 \xff"}\n'
        + b'{"comment_id": "s1", "created_at": "2025-01-01", "text": "lone \\ud800 surrogate"}\n'
        + b'{"comment_id": "s2", "created_at": "2025-01-01", "text": "pair \\ud83d\\ude00"}\n'
        + b'{"comment_id": "t1", "created_at": "2025-01-01", "text": "raw\ttab"}\n'
        + b'{"comment_id": "w1", "created_at": "2025-01-01", "text": "wtf-8 \xed\xa0\x80"}\n'
    )
    (d / "b.csv").write_bytes(
        b"comment_id,created_at,text\nok2,2025-01-01,fine\nu2,2025-01-01,caf\xe9\nok3,2025-01-01,x\n"
    )
    res = read(tmp_path)
    got = valid_by_id(res)
    assert set(got) == {"ok1", "s2", "ok2", "ok3"} and got["s2"]["text"] == "pair 😀"
    r = reasons(res)
    assert r[("a.jsonl", 2)] == r[("a.jsonl", 6)] == "line is not valid UTF-8"
    assert "surrogate" in r[("a.jsonl", 3)] and r[("a.jsonl", 3)].startswith("line is not valid JSON")
    assert "raw control character" in r[("a.jsonl", 5)]
    assert r[("b.csv", 3)] == "CSV record is malformed: record is not valid UTF-8"
    assert res.stats["rejected_by_code"]["invalid_utf8"] == 3


# ------------------------------------------------------------------------------------------- CSV
def test_csv_extra_columns_and_field_count_errors(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_text(
        "Comment_ID,created_at,text,platform,rating\n"
        'c1,2025-01-01,"quoted, with comma and ""quotes""",ios,5\n'
        "c2,2025-01-01,too,many,fields,here\n"
        "c3,2025-01-01,too few\n"
        'c4,2025-01-01,"multi\n\nline value",web,\n'
        "c5,2025-01-01,last,android,1\n"
    )
    res = read(tmp_path)
    got = valid_by_id(res)
    assert got["c1"]["text"] == 'quoted, with comma and "quotes"'
    assert json.loads(got["c1"]["extra"]) == {"platform": "ios", "rating": "5"}
    assert got["c4"]["text"] == "multi\n\nline value" and json.loads(got["c4"]["extra"])["rating"] is None
    assert [got[c]["source_row"] for c in ("c1", "c4", "c5")] == [2, 5, 6]  # a multi-line record counts once
    r = reasons(res)
    assert r[("a.csv", 3)].startswith("CSV record is malformed: record has more fields than the header")
    assert r[("a.csv", 4)].startswith("CSV record is malformed: record has fewer fields than the header")


def test_csv_unclosed_quote_swallows_lines_into_one_counted_rejected_record(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_text(
        "comment_id,created_at,text\n"
        "c1,2025-01-01,before\n"
        'c2,2025-01-01,"never closed\n'
        "c3,2025-01-01,swallowed\n"
        "c4,2025-01-01,swallowed too\n"
    )
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c1"}
    [rej] = res.rejected.to_pylist()
    assert rej["source_row"] == 3 and "c4,2025-01-01,swallowed too" in rej["raw"]
    assert "unclosed or stray quote" in rej["reason"] and "spans 3 lines" in rej["reason"]
    assert res.stats["rows_read"] == 2


def test_csv_stray_quote_rejects_its_record_and_later_rows_still_load(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_text(
        "comment_id,created_at,text\n"
        'c1,2025-01-01,"closed" then junk\n'
        'c2,2025-01-01,my 5" screen\n'
        "c3,2025-01-01,after\n"
    )
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c2", "c3"}  # a quote inside an unquoted value is just a character
    assert "unclosed or stray quote" in reasons(res)[("a.csv", 2)]


def test_csv_blank_lines_keep_record_numbers_aligned(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_text(
        "comment_id,created_at,text\n\nc1,2025-01-01,one\n\n\nc2,2025-01-01,a,b\nc3,2025-01-01,three\n\n"
    )
    res = read(tmp_path)
    assert valid_by_id(res)["c1"]["source_row"] == 3 and valid_by_id(res)["c3"]["source_row"] == 7
    assert list(reasons(res)) == [("a.csv", 6)]


def test_csv_crlf_and_mixed_line_endings(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_bytes(
        b'comment_id,created_at,text\r\nc1,2025-01-01,one\nc2,2025-01-01,two\r\nc3,2025-01-01,"x\ry"\r\n'
    )
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c1", "c2", "c3"} and res.rejected.num_rows == 0


@pytest.mark.parametrize(
    "header, problem",
    [
        ("c0,2025-01-01,no header here", "lacks required column(s) comment_id, created_at, text"),
        ("comment_id,created_at,body", "lacks required column(s) text"),
        ("comment_id,created_at,text,TEXT", "repeats column name(s) text"),
    ],
)
def test_csv_unusable_header_rejects_every_line(tmp_path, header, problem):
    (day_dir(tmp_path) / "a.csv").write_text(f"{header}\nc1,2025-01-01,hello,\n\nc2,2025-01-01,world,\n")
    res = read(tmp_path)
    assert res.valid.num_rows == 0
    assert [r["source_row"] for r in res.rejected.to_pylist()] == [1, 2, 4]
    assert all(problem in r["reason"] for r in res.rejected.to_pylist())


def test_csv_empty_and_header_only_files_have_no_rows(tmp_path):
    d = day_dir(tmp_path)
    (d / "a.csv").write_text("")
    (d / "b.csv").write_text("comment_id,created_at,text\n")
    assert read(tmp_path).stats["rows_read"] == 0


def test_csv_record_over_duckdb_line_limit_is_rejected(tmp_path):
    (day_dir(tmp_path) / "a.csv").write_text(
        f"comment_id,created_at,text\nc1,{TS},{'x' * 2_100_000}\nc2,{TS},ok\n"
    )
    res = read(tmp_path)
    assert set(valid_by_id(res)) == {"c2"}
    [rej] = res.rejected.to_pylist()
    assert "line limit" in rej["reason"] and len(rej["raw"]) < 2100


# --------------------------------------------------------------------------------------- Parquet
def test_parquet_native_types_extra_and_type_errors(tmp_path):
    d = day_dir(tmp_path)
    pq.write_table(
        pa.table(
            {
                "comment_id": pa.array([1, 2, 3], pa.int64()),
                "created_at": pa.array([dt.datetime(2025, 1, 1, 10)] * 3, pa.timestamp("ms")),  # naive -> UTC
                "text": ["one", "", "three"],
                "rating": [4.5, None, 1.0],
                "rowid": [7, 7, 7],  # a column named like DuckDB's row id must not change row numbers
            }
        ),
        d / "a.parquet",
    )
    pq.write_table(
        pa.table({"comment_id": ["x1", "x2"], "created_at": [TS, "garbage"], "text": pa.array([1, 2])}),
        d / "b.parquet",
    )
    pq.write_table(pa.table({"comment_id": [1.5], "created_at": [TS], "text": ["t"]}), d / "c.parquet")
    pq.write_table(pa.table({"comment_id": ["m1"], "text": ["no created_at"]}), d / "d.parquet")
    res = read(tmp_path)
    got = valid_by_id(res)
    assert set(got) == {"1", "3"}
    assert got["1"]["created_at"] == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert json.loads(got["1"]["extra"]) == {"rating": 4.5, "rowid": 7} and got["3"]["source_row"] == 3
    r = reasons(res)
    assert r[("a.parquet", 2)] == "text is empty"
    assert r[("b.parquet", 1)] == r[("b.parquet", 2)] == "text column has type BIGINT, expected a string"
    assert r[("c.parquet", 1)] == "comment_id column has type DOUBLE, expected a string"
    assert r[("d.parquet", 1)] == (
        "Parquet file has no 'created_at' column (columns present: comment_id, text)"
    )
    assert json.loads(res.rejected.to_pylist()[0]["raw"])["text"] == ""


def _parquet_with_bad_utf8(path, column):
    good = pa.array(["fine", "also fine"])
    offsets = pa.py_buffer(pa.array([0, 2, 6], pa.int32()).to_numpy().tobytes())
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xff\xfeyo")])
    cols = {"comment_id": ["b1", "b2"], "created_at": [TS, TS], "text": good, "note": good}
    cols[column] = bad
    pq.write_table(pa.table(cols), path)


def test_parquet_invalid_utf8_in_text_rejects_rows_in_extra_drops_column(tmp_path):
    d = day_dir(tmp_path)
    _parquet_with_bad_utf8(d / "a.parquet", "text")
    res = read(tmp_path)
    assert res.valid.num_rows == 0
    assert set(reasons(res).values()) == {"Parquet column 'text' holds invalid UTF-8"}
    (d / "a.parquet").unlink()
    _parquet_with_bad_utf8(d / "b.parquet", "note")
    res = read(tmp_path)
    assert res.valid.num_rows == 2 and res.valid.column("extra").to_pylist() == ["{}", "{}"]
    assert res.stats["warnings"] == [
        "comments/date=2025-01-01/b.parquet: column 'note' holds invalid UTF-8; left out of extra"
    ]


def test_unreadable_parquet_is_one_rejected_row(tmp_path):
    (day_dir(tmp_path) / "a.parquet").write_bytes(b"PAR1 this is not really parquet")
    res = read(tmp_path)
    [rej] = res.rejected.to_pylist()
    assert rej["source_row"] is None and rej["reason"].startswith("cannot read Parquet file")


# ------------------------------------------------------------------------------------------- fuzz
def test_random_corruption_never_crashes_and_conserves_rows(tmp_path):
    rng = random.Random(20250101)
    texts = ["hello", "你好，世界", "emoji 😀", 'a,b "q"', "line1\nline2", "tab\there", "zero\u200bwidth"]
    rows = [row(f"c{i}", t, user=i) for i, t in enumerate(texts)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    pbuf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), pbuf)
    base = {
        "a.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(),
        "b.csv": buf.getvalue().encode(),
        "c.json": json.dumps(rows).encode(),
        "d.parquet": pbuf.getvalue(),
    }
    tokens = [b'"', b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe4", b",", b"{", b"\\ud800", b"\\", b"\n\n"]
    d = day_dir(tmp_path)
    for _ in range(12):
        for name, data in base.items():
            data = bytearray(data)
            for _ in range(rng.randint(1, 5)):
                pos = rng.randint(0, len(data))
                if rng.random() < 0.7:
                    data[pos:pos] = rng.choice(tokens)
                else:
                    del data[pos : pos + rng.randint(1, 8)]
            (d / name).write_bytes(bytes(data))
        res = read(tmp_path)
        assert res.stats["files"] == 4
