"""Bad input, through Dagster: every landing row ends up clustered or quarantined with a reason.

One day folder holds a file per input kind with many cases each; every case is one landing row
with a known fate (clustered, or quarantined at a known place with a known reason). The day is
materialized once with the real asset graph, DuckDB file and local embedding server, then each
case is checked on its own and the day is checked for conservation (landing rows = clustered +
quarantined). Then: the same comment_id on another day, an empty day folder, a missing one.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embed_dagster.core.ingest import _BLANK_TEXT_RE
from embed_dagster.core.textnorm import normalize_text
from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster_tests.support.faults_helpers import (
    account,
    assert_checks_pass,
    asset_metadata,
    check_results,
    make_resources,
    materialize,
    query,
    scalar,
)

pytestmark = pytest.mark.faults

DAY, NEXT_DAY, EMPTY_DAY, MISSING_DAY = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 4)
TS = "2025-03-01T09:30:00Z"
MB_TEXT = ("A very long review. 一条很长的评论。" * 40_000)[:1_000_000]
LONG_OK = ("The battery lasts long but the case cracks. " * 120)[:5000]  # under 20000: kept, cut at 2000
GOOD = [
    "The package arrived three days late.",
    "Delivery was late again, a week this time.",
    "My order still hasn't arrived.",
    "快递太慢了，等了五天。",
    "物流一直不更新。",
    "Refund was rejected without a reason.",
    "退款一直没到账。",
    "Still waiting for my refund.",
    "The app crashes when I open settings.",
    "更新以后app一打开就闪退。",
    "Battery drains in two hours.",
    "电池续航太差了。",
    "Customer service never answered.",
    "客服态度很差。",
    "Great price, saved twenty dollars.",
    "价格太贵了。",
]


@dataclass(frozen=True)
class Case:
    """One landing row. expect None: clustered; otherwise a quarantine reason must contain it."""

    kind: str
    file: str
    row: int | None
    comment_id: str | None
    expect: str | None
    text: str | None = None  # for kept rows: must come back byte-identical in raw_comments


class DayBuilder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.cases: list[Case] = []
        folder.mkdir(parents=True, exist_ok=True)

    def jsonl(self, name: str, lines: list[tuple[str, bytes | dict, str | None, str | None]]) -> None:
        """lines: (kind, raw bytes or an object, comment_id, expected reason or None)."""
        out = []
        for i, (kind, line, cid, expect) in enumerate(lines, start=1):
            raw = line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()
            out.append(raw)
            text = line.get("text") if isinstance(line, dict) and expect is None else None
            self.cases.append(Case(kind, name, i, cid, expect, text))
        (self.folder / name).write_bytes(b"\n".join(out) + b"\n")

    def raw_file(self, name: str, data: bytes, cases: list[Case]) -> None:
        (self.folder / name).write_bytes(data)
        self.cases.extend(cases)


def obj(cid: str | None, text: object = "ok", created_at: object = TS, **skip: bool) -> dict:
    row = {"comment_id": cid, "created_at": created_at, "text": text}
    return {k: v for k, v in row.items() if not skip.get(f"no_{k}")}


def build_bad_day(landing: Path) -> list[Case]:
    b = DayBuilder(landing / "comments" / f"date={DAY.isoformat()}")
    good = [(f"good_{i}", obj(f"g{i:02d}", t), f"g{i:02d}", None) for i, t in enumerate(GOOD)]
    b.jsonl(
        "a_cases.jsonl",
        [
            *good,
            ("empty text", obj("b-empty", ""), "b-empty", "text is empty"),
            ("whitespace-only text", obj("b-ws", " \t\n\u3000 "), "b-ws", "only whitespace or invisible"),
            ("NULL text", obj("b-null", None), "b-null", "text is missing (null or absent)"),
            ("absent text", obj("b-notext", no_text=True), "b-notext", "text is missing (null or absent)"),
            ("number as text", obj("b-num", 42), "b-num", "text is an integer, not a string"),
            ("boolean as text", obj("b-bool", True), "b-bool", "text is a boolean, not a string"),
            ("array as text", obj("b-arr", ["a", "b"]), "b-arr", "text is an array, not a string"),
            (
                "missing comment_id",
                obj(None, "who wrote this?", no_comment_id=True),
                None,
                "comment_id is missing or empty",
            ),
            ("blank comment_id", obj("   ", "blank id"), None, "comment_id is missing or empty"),
            (
                "object comment_id",
                obj({"id": 1}, "object id"),
                None,
                "comment_id is an object, expected a string",
            ),
            ("integer comment_id", obj(90210, "integer ids are accepted"), "90210", None),
            ("duplicate comment_id, first copy", obj("dup-1", "first copy wins"), "dup-1", None),
            (
                "duplicate comment_id, second copy",
                obj("dup-1", "second copy loses"),
                "dup-1",
                "duplicate comment_id 'dup-1' within the day (first at a_cases.jsonl:",
            ),
            ("duplicate comment_id, broken first copy", obj("dup-3", ""), "dup-3", "text is empty"),
            (
                "duplicate comment_id, good copy after a broken one",
                obj("dup-3", "the valid copy is kept"),
                "dup-3",
                None,
            ),
            ("text of 1 MB", obj("b-mb", MB_TEXT), "b-mb", "text longer than 20000 characters (1000000)"),
            ("text of 5000 characters", obj("b-5k", LONG_OK), "b-5k", None),
            (
                "invalid UTF-8 bytes",
                b'{"comment_id": "b-utf8", "created_at": "' + TS.encode() + b'", "text": "caf\xe9 \xff\xfe"}',
                None,
                "line is not valid UTF-8",
            ),
            (
                "lone high surrogate",
                b'{"comment_id": "b-sur1", "created_at": "'
                + TS.encode()
                + b'", "text": "lone \\ud800 here"}',
                None,
                "escape that is not a valid surrogate pair",
            ),
            (
                "lone low surrogate",
                b'{"comment_id": "b-sur2", "created_at": "' + TS.encode() + b'", "text": "\\udc00"}',
                None,
                "escape that is not a valid surrogate pair",
            ),
            (
                "escaped control characters",
                obj("b-ctl", "bell\u0007 tab\t esc\u001b[31m red\u0000nul"),
                "b-ctl",
                None,
            ),
            (
                "raw control character in a line",
                b'{"comment_id": "b-rawctl", "created_at": "' + TS.encode() + b'", "text": "raw \x01 byte"}',
                None,
                "raw control character",
            ),
            ("zero-width characters inside", obj("b-zw", "zero\u200bwidth\u200d join\ufeffer"), "b-zw", None),
            (
                "only zero-width characters",
                obj("b-zwonly", "\u200b\u200c\u200d\ufeff\u2060\u00ad"),
                "b-zwonly",
                "only whitespace or invisible characters",
            ),
            ("right-to-left Arabic", obj("b-rtl", "المنتج رائع والتوصيل سريع"), "b-rtl", None),
            (
                "right-to-left Hebrew with bidi marks",
                obj("b-rtl2", "\u202bהמשלוח הגיע מאוחר\u202c"),
                "b-rtl2",
                None,
            ),
            ("emoji only", obj("b-emoji", "😀🎉👍🔥"), "b-emoji", None),
            (
                "Chinese, English and code",
                obj(
                    "b-mix",
                    "App 一打开就 crash，报错 `NullPointerException at "
                    "MainActivity.java:42` 😡 SELECT * FROM t;",
                ),
                "b-mix",
                None,
            ),
            ("same text, other width and spaces (1)", obj("b-w1", "Great  product"), "b-w1", None),
            ("same text, other width and spaces (2)", obj("b-w2", "Ｇｒｅａｔ\u3000product"), "b-w2", None),
            (
                "created_at does not parse",
                obj("b-ts1", "unparseable date", "yesterday"),
                "b-ts1",
                "created_at 'yesterday' is not an ISO-8601 timestamp",
            ),
            (
                "created_at impossible date",
                obj("b-ts2", "impossible date", "2025-02-30"),
                "b-ts2",
                "is not an ISO-8601 timestamp",
            ),
            (
                "created_at as epoch number",
                obj("b-ts3", "epoch date", 1735689600),
                "b-ts3",
                "created_at is an integer, expected an ISO-8601 string",
            ),
            (
                "created_at missing",
                obj("b-ts4", "no date", no_created_at=True),
                "b-ts4",
                "created_at is missing or empty",
            ),
            (
                "truncated JSON line",
                b'{"comment_id": "b-trunc", "created_at": "2025-03-01", "text": "cut off',
                None,
                "line is not valid JSON",
            ),
            (
                "JSON line that is not an object",
                b'["b-arrline", "2025-03-01", "an array"]',
                None,
                "line is not a JSON object (found an array)",
            ),
        ],
    )
    csv_head = b"comment_id,created_at,text\n"
    ts = TS.encode()
    b.raw_file(
        "b_broken_quote.csv",
        csv_head
        + b"csv-1,"
        + ts
        + b",fine text one\n"
        + b"csv-2,"
        + ts
        + b',"a stray "quote" in a quoted value"\n'
        + b"csv-3,"
        + ts
        + b",fine text three\n"
        + b"csv-4,"
        + ts
        + b',"this quote is never closed\n'
        + b"csv-5,"
        + ts
        + b",this line is swallowed by the open quote\n",
        [
            Case("good: CSV row", "b_broken_quote.csv", 2, "csv-1", None, "fine text one"),
            Case("CSV stray quote", "b_broken_quote.csv", 3, None, "CSV record is malformed"),
            Case(
                "good: CSV row after a stray quote", "b_broken_quote.csv", 4, "csv-3", None, "fine text three"
            ),
            Case(
                "CSV unclosed quote (swallows the next line)",
                "b_broken_quote.csv",
                5,
                None,
                "unclosed or stray quote",
            ),
        ],
    )
    b.raw_file(
        "c_columns.csv",
        csv_head
        + b"col-1,"
        + ts
        + b",four fields here,surprise\n"
        + b"col-2,"
        + ts
        + b"\n"
        + b"col-3,"
        + ts
        + b",a good row between bad ones\n"
        + b"dup-1,"
        + ts
        + b",same id as in the JSON file\n",
        [
            Case("CSV extra column", "c_columns.csv", 2, None, "more fields than the header"),
            Case("CSV missing column", "c_columns.csv", 3, None, "fewer fields than the header"),
            Case("good: CSV row", "c_columns.csv", 4, "col-3", None, "a good row between bad ones"),
            Case(
                "duplicate comment_id across files",
                "c_columns.csv",
                5,
                "dup-1",
                "duplicate comment_id 'dup-1' within the day (first at a_cases.jsonl:",
            ),
        ],
    )
    b.raw_file(
        "d_no_header.csv",
        b"nh-1," + ts + b",no header line 1\nnh-2," + ts + b",no header line 2\n",
        [
            Case(
                "CSV missing header (line 1 is data)", "d_no_header.csv", 1, None, "lacks required column(s)"
            ),
            Case("CSV missing header (line 2)", "d_no_header.csv", 2, None, "lacks required column(s)"),
        ],
    )
    b.raw_file(
        "e_bad_utf8.csv",
        csv_head + b"u-1," + ts + b",fine\nu-2," + ts + b",bad \xc3\x28 bytes\n",
        [
            Case("good: CSV row", "e_bad_utf8.csv", 2, "u-1", None, "fine"),
            Case("CSV invalid UTF-8", "e_bad_utf8.csv", 3, None, "record is not valid UTF-8"),
        ],
    )
    b.raw_file(
        "f_wrong_types.parquet",
        _parquet(
            {
                "comment_id": pa.array(["p-1", "p-2"]),
                "created_at": pa.array([TS, TS]),
                "text": pa.array([1, 2], pa.int64()),
            }
        ),
        [
            Case(
                "Parquet text column of integers",
                "f_wrong_types.parquet",
                r,
                None,
                "text column has type BIGINT, expected a string",
            )
            for r in (1, 2)
        ],
    )
    b.raw_file(
        "g_wrong_ts.parquet",
        _parquet(
            {
                "comment_id": pa.array(["pt-1"]),
                "created_at": pa.array([1.5e9]),
                "text": pa.array(["float time"]),
            }
        ),
        [
            Case(
                "Parquet created_at of floats",
                "g_wrong_ts.parquet",
                1,
                "pt-1",
                "created_at column has type DOUBLE",
            )
        ],
    )
    b.raw_file(
        "h_good.parquet",
        _parquet(
            {
                "comment_id": pa.array(["pg-1", "pg-2"]),
                "created_at": pa.array([1740821400000000, 1740821400000000], pa.timestamp("us", tz="UTC")),
                "text": pa.array(["Parquet row, fine", "混合 text 和 `code()`"]),
                # an extra column DuckDB cannot read (not UTF-8): left out of extra, and said so
                "lang": pa.array([b"en", b"bad \xff"], pa.binary()).view(pa.string()),
            }
        ),
        [
            Case("good: Parquet row", "h_good.parquet", 1, "pg-1", None, "Parquet row, fine"),
            Case("Parquet row, mixed scripts", "h_good.parquet", 2, "pg-2", None, "混合 text 和 `code()`"),
        ],
    )
    b.raw_file(
        "i_array.json",
        json.dumps([obj("ja-1", "JSON array element"), 5]).encode(),
        [
            Case("good: JSON array element", "i_array.json", 1, "ja-1", None, "JSON array element"),
            Case(
                "JSON array element that is a number",
                "i_array.json",
                2,
                None,
                "element is not a JSON object (found an integer)",
            ),
        ],
    )
    b.raw_file(
        "j_notes.txt",
        b"not a comment file\n",
        [
            Case("file of an unsupported type", "j_notes.txt", None, None, "unsupported file type '.txt'"),
        ],
    )
    (b.folder / "_SUCCESS").write_bytes(b"")  # marker files are not rows
    return b.cases


def _parquet(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad_day(tmp_path_factory, local_server, fault_figures):
    root = tmp_path_factory.mktemp("bad_input")
    landing = root / "landing"
    cases = build_bad_day(landing)
    next_day = landing / "comments" / f"date={NEXT_DAY.isoformat()}"
    next_day.mkdir(parents=True)
    (next_day / "n.jsonl").write_text(
        "\n".join(
            json.dumps(obj(cid, text, "2025-03-02T10:00:00Z"))
            for cid, text in [
                ("g00", "Same id as yesterday, another comment"),
                ("n-1", "Delivery was fast today."),
                ("n-2", "今天物流很快。"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    (landing / "comments" / f"date={EMPTY_DAY.isoformat()}").mkdir()
    db = root / "lake"
    resources = make_resources(
        db, landing, local_server.base_url, model=MODEL_NAME, dimensions=512, batch_size=16, max_concurrency=2
    )
    results = {d: materialize(resources, d) for d in (DAY, NEXT_DAY, EMPTY_DAY, MISSING_DAY)}
    kinds = {c.kind for c in cases if not c.kind.startswith(("good_", "good: "))}
    fault_figures.add("bad_input_cases", len(kinds) + 3)  # + same id next day, empty folder, missing folder
    return {"db": str(db), "cases": cases, "results": results, "landing": landing}


def _rows(db: str, sql: str, params: list) -> list[dict]:
    return query(db, sql, params).to_pylist()


def test_every_day_materializes_and_its_checks_pass(bad_day):
    for day, result in bad_day["results"].items():
        assert result.success, (day, result.all_events[-1].message)
        assert_checks_pass(result)


def test_nothing_lost_nothing_doubled(bad_day, fault_figures):
    db, cases = bad_day["db"], bad_day["cases"]
    n = account(fault_figures, db, DAY, rows_in_landing=len(cases))
    assert n["rows_read"] == len(cases)  # ingest counted exactly the rows the test wrote
    kept = [c for c in cases if c.expect is None]
    assert n["clustered"] == len(kept) and n["quarantined"] == len(cases) - len(kept)
    meta = check_results(bad_day["results"][DAY])
    assert meta["conservation"] and meta["coverage"]


@pytest.mark.parametrize("fate", ["quarantined", "clustered"])
def test_each_case_ends_where_expected(bad_day, fate):
    db, cases = bad_day["db"], bad_day["cases"]
    quarantine = _rows(db, "SELECT * FROM quarantine WHERE partition_date = ?", [DAY])
    clustered = {
        r["comment_id"] for r in _rows(db, "SELECT comment_id FROM clusters WHERE partition_date = ?", [DAY])
    }
    raw = {
        r["comment_id"]: r for r in _rows(db, "SELECT * FROM raw_comments WHERE partition_date = ?", [DAY])
    }
    problems = []
    for c in cases:
        here = [q for q in quarantine if q["source_file"].endswith("/" + c.file) and q["source_row"] == c.row]
        if fate == "quarantined" and c.expect is not None:
            if len(here) != 1 or c.expect not in here[0]["reason"]:
                problems.append((c.kind, c.expect, [q["reason"] for q in here]))
            elif len(here[0]["raw"]) > 2100:
                problems.append((c.kind, "raw not cut to 2000 characters", len(here[0]["raw"])))
        if fate == "clustered" and c.expect is None:
            row = raw.get(c.comment_id)
            if (
                here
                or c.comment_id not in clustered
                or row is None
                or not row["source_file"].endswith(c.file)
            ):
                problems.append((c.kind, "not clustered", [q["reason"] for q in here]))
            elif c.text is not None and row["text"] != c.text:
                problems.append((c.kind, "text changed on the way in", row["text"][:80]))
    assert not problems, problems


def test_reasons_are_readable_sentences_not_tracebacks(bad_day):
    reasons = [
        r["reason"]
        for r in _rows(bad_day["db"], "SELECT reason FROM quarantine WHERE partition_date = ?", [DAY])
    ]
    assert reasons
    for reason in reasons:
        assert 10 <= len(reason) <= 600, reason
        assert "Traceback" not in reason and "Error:" not in reason.split("(DuckDB")[0], reason


def test_unclosed_csv_quote_keeps_the_swallowed_line_visible(bad_day):
    (row,) = _rows(
        bad_day["db"],
        "SELECT raw, reason FROM quarantine WHERE partition_date = ? AND "
        "source_file LIKE '%b_broken_quote.csv' AND source_row = 5",
        [DAY],
    )
    assert "this line is swallowed by the open quote" in row["raw"]
    assert "spans 2 lines" in row["reason"]


def test_width_and_space_variants_share_one_text_and_one_vector(bad_day):
    db = bad_day["db"]
    rows = _rows(
        db,
        "SELECT m.comment_id, d.text, d.comment_count FROM comment_texts m JOIN deduplicated_texts d "
        "USING (partition_date, text_hash) WHERE partition_date = ? AND m.comment_id IN ('b-w1', 'b-w2')",
        [DAY],
    )
    assert len(rows) == 2 and {r["text"] for r in rows} == {"Great product"}
    assert rows[0]["comment_count"] == 2


def test_text_over_the_client_limit_is_embedded_cut_and_flagged(bad_day):
    (row,) = _rows(
        bad_day["db"],
        "SELECT f.truncated FROM fresh_embeddings f JOIN comment_texts m USING "
        "(partition_date, text_hash) WHERE partition_date = ? AND m.comment_id = 'b-5k'",
        [DAY],
    )
    assert row["truncated"] is True


def test_raw_comments_metadata_counts_the_quarantine(bad_day):
    meta = asset_metadata(bad_day["results"][DAY], "raw_comments")
    quarantined = sum(1 for c in bad_day["cases"] if c.expect is not None)
    assert meta["quarantined"] == quarantined
    assert meta["rows_read"] == len(bad_day["cases"])
    # a column left out of extra used to be noted only in ingest's stats, which nothing showed
    assert any("h_good.parquet: column 'lang' holds invalid UTF-8" in w for w in meta["warnings"])


def test_same_comment_id_on_two_days_is_kept_on_both(bad_day, fault_figures):
    db = bad_day["db"]
    account(fault_figures, db, NEXT_DAY, rows_in_landing=3)
    days = _rows(db, "SELECT partition_date, text FROM raw_comments WHERE comment_id = 'g00' ORDER BY 1", [])
    assert [r["partition_date"] for r in days] == [DAY, NEXT_DAY]
    assert days[0]["text"] != days[1]["text"]
    assert scalar(db, "SELECT count(*) AS n FROM clusters WHERE comment_id = 'g00'")["n"] == 2


@pytest.mark.parametrize("day", [EMPTY_DAY, MISSING_DAY], ids=["empty-folder", "missing-folder"])
def test_empty_and_missing_day_folders_give_empty_partitions(bad_day, fault_figures, day):
    result = bad_day["results"][day]
    assert result.success
    assert_checks_pass(result)
    n = account(fault_figures, bad_day["db"], day, rows_in_landing=0)
    assert n["rows_read"] == n["clustered"] == n["quarantined"] == 0
    assert asset_metadata(result, "raw_comments")["files"] == 0
    assert asset_metadata(result, "fresh_embeddings")["texts_sent"] == 0


def test_every_character_that_normalizes_to_nothing_is_refused_at_ingest():
    """Ingest and textnorm agree on "empty": no code point gets past ingest only to vanish in
    normalization (deduplicated_texts would then quarantine it; correct, but later than needed)."""
    import duckdb

    vanishing = [
        chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and not normalize_text(chr(cp))
    ]
    assert len(vanishing) > 50
    con = duckdb.connect()
    chars = pa.table({"c": vanishing})  # noqa: F841 - read by DuckDB's replacement scan
    kept = con.execute(f"SELECT c FROM chars WHERE NOT regexp_full_match(c, '{_BLANK_TEXT_RE}')").fetchall()
    assert kept == []
