"""Read one day of landing files into validated rows plus a quarantine of rejected rows.

Why this exists: the landing zone is written by other systems and is never clean. The pipeline must
keep going on bad input, keep every bad row visible with a readable reason, and never silently lose
a row. So the contract is *conservation*: ``stats["rows_read"] == stats["valid"] + stats["rejected"]``
for every call, and each input row ends up in exactly one of ``valid`` / ``rejected``.

Everything is parsed by DuckDB (in-memory connection, nothing written anywhere); Python only loops
over files. No Dagster here: the asset layer calls :func:`read_landing_partition` and writes the
two Arrow tables to the warehouse itself.

Layout: ``<landing_root>/comments/date=YYYY-MM-DD/*.{jsonl,ndjson,json,csv,parquet}``.

Policies (README-ready):

* **What a row is.** JSONL/NDJSON: one non-blank line (``source_row`` = physical line number,
  1-based; LF or CRLF; a lone CR is not a line break; empty or whitespace-only lines are not rows).
  ``.json``: if the whole file is one JSON array, each element is a row (``source_row`` = element
  index, 1-based); one JSON object is one row; anything else is read as JSON Lines.
  CSV: one record after the header (``source_row`` = DuckDB's record number: the header is 1, each
  line is one more, blank lines included, but a quoted value spanning several lines counts once -
  so it is the line number unless an earlier value spans lines). Parquet: one row (``source_row`` =
  row number in the file, 1-based).
* **Required fields** ``comment_id``, ``created_at``, ``text``; every other field is kept, as a JSON
  object, in ``extra`` (``'{}'`` if none). CSV/Parquet column names match the required names
  case-insensitively.
* **comment_id**: strings are trimmed; missing/empty -> rejected. An integer (JSON integer, Parquet
  integer column) is *accepted* in its decimal string form (``12`` and ``"12"`` are the same id).
  Fractions, booleans, arrays, objects -> rejected. Longer than 256 characters or containing control
  characters -> rejected.
* **text**: must be a string. Null/absent, empty, only whitespace/invisible characters (``\\s``,
  Unicode separators, control and format characters such as zero-width spaces), a non-string
  (number, boolean, ...) or longer than ``max_text_chars`` characters (Unicode code points) ->
  rejected. Other control / zero-width characters, RTL text, emoji and mixed scripts are kept as they
  are (normalization happens later, in ``textnorm``).
* **created_at**: an ISO-8601 date or date-time string (``2025-01-31``, ``2025-01-31T12:00:00``,
  optional fraction, optional ``Z`` / ``+08:00``) or a native Parquet timestamp/date. No offset means
  UTC. Anything else (``yesterday``, epoch numbers, ``infinity``, time-zone names) -> rejected. The
  date need not match the folder: the folder decides the partition and the value is kept as is.
* **Duplicates**: a comment_id seen again within the day (across files too) keeps the first row in
  (file name, source_row) order; later ones are rejected naming the first. Only otherwise-valid rows
  take part, so a broken first copy does not shadow a good later one. The same comment_id on two
  different days is kept on both: partitions are independent and a day's files are its truth.
* **Broken input never crashes the read.** Invalid UTF-8 quarantines just the lines/records that
  contain it ("not valid UTF-8"; raw shows bad bytes as ``?``). Lone surrogate escapes
  (``"\\ud800"``), raw control characters and truncated lines are "not valid JSON". A JSON value
  that is not an object is rejected.
* **CSV**: RFC 4180 dialect (comma, ``"`` quotes, ``""`` escapes), header required. Records with
  too many or too few fields, invalid UTF-8 or a bad quote are rejected one by one and the rest of the
  file loads. An *unclosed* quote makes the record run on to the next quote character (that is what
  CSV means): the lines it swallows are part of that one rejected record - counted once, visible in
  its ``raw`` text and its reason says how many lines it spans - so rows_read counts CSV records.
  Lone CR and mixed CRLF/LF line ends are treated as line breaks. A header that lacks a required
  column (or is missing, so line 1 is data) rejects every non-blank line of the file, line 1
  included. If DuckDB cannot parse the file at all, every non-blank line is rejected with its error.
* **Parquet**: wrong column types reject every row with a reason naming the column and type
  (``text column has type BIGINT``); a missing required column rejects every row; an unreadable
  file gives one rejected row per row if the row count is readable, else one row for the file
  (``source_row`` null). Invalid UTF-8 in a required string column rejects every row; in an extra
  column, that column is left out of ``extra`` and a warning is added to ``stats["warnings"]``.
* **Files**: names starting with ``.`` or ``_`` (temporary / marker files such as ``_SUCCESS``) and
  sub-folders are ignored and listed in ``stats["ignored"]``. Any other file with an unknown
  extension (compressed files included) becomes one rejected row with ``source_row`` null. A missing
  or empty day folder gives empty tables.
* ``raw`` is the input line/record/row as text, cut to 2000 characters.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

REQUIRED_FIELDS = ("comment_id", "created_at", "text")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
RAW_MAX_CHARS = 2000
MAX_COMMENT_ID_CHARS = 256

VALID_SCHEMA = pa.schema(
    [
        pa.field("comment_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("extra", pa.string(), nullable=False),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_row", pa.int64()),
        pa.field("comment_id", pa.string()),
        pa.field("raw", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

# ISO-8601 shapes we accept; DuckDB's cast alone would also take 'infinity', 'epoch' and zone names.
_ISO_RE = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?"
_BLANK_TEXT_RE = r"[\s\p{Z}\p{Cc}\p{Cf}]*"
_JSON_TYPE_WORDS = {
    "BIGINT": "an integer",
    "UBIGINT": "an integer",
    "DOUBLE": "a number",
    "BOOLEAN": "a boolean",
    "ARRAY": "an array",
    "OBJECT": "an object",
    "VARCHAR": "a string",
}
_INT_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_TS_TYPES = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE"}


@dataclass(frozen=True)
class IngestResult:
    """The day's rows split in two, plus JSON-serializable ``stats`` for asset metadata.

    stats keys: partition_date, files, rows_read, valid, rejected, duplicates,
    per_format ({fmt: {files, rows_read, valid, rejected}}, fmt in jsonl/json/csv/parquet/other),
    rejected_by_code ({code: n}; codes such as invalid_json, empty_text, duplicate_comment_id),
    ignored (file names skipped), warnings (list of str).
    """

    valid: pa.Table
    rejected: pa.Table
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _File:
    idx: int
    path: Path
    source_file: str  # relative to landing_root, with forward slashes
    name: str
    fmt: str | None


def partition_dir(landing_root: Path | str, partition_date: dt.date | str) -> Path:
    return Path(landing_root) / "comments" / f"date={_as_date(partition_date).isoformat()}"


def read_landing_partition(
    landing_root: Path | str, partition_date: dt.date | str, max_text_chars: int = 20000
) -> IngestResult:
    """Parse every file of one day; see the module docstring for the policies."""
    day = _as_date(partition_date)
    if isinstance(max_text_chars, bool) or not isinstance(max_text_chars, int) or max_text_chars < 1:
        raise ValueError(f"max_text_chars must be a positive integer, got {max_text_chars!r}")
    root = Path(landing_root)
    files, ignored = _list_files(root, partition_dir(root, day))
    warnings: list[str] = []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _create_tables(con)
        with tempfile.TemporaryDirectory(prefix="embed_dagster_ingest_") as tmp:
            for f in files:
                con.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?)", [f.idx, f.source_file, f.name, f.fmt or "other"]
                )
                if f.fmt in ("jsonl", "json"):
                    _read_json(con, f)
                elif f.fmt == "csv":
                    _read_csv(con, f, Path(tmp))
                elif f.fmt == "parquet":
                    _read_parquet(con, f, warnings)
                else:
                    _reject_unsupported(con, f)
        _check(con, max_text_chars)
        valid = con.sql(_VALID_SQL).to_arrow_table().cast(VALID_SCHEMA)
        rejected = con.sql(_REJECTED_SQL).to_arrow_table().cast(REJECTED_SCHEMA)
        stats = _stats(con, day, files, ignored, warnings)
    finally:
        con.close()
    return IngestResult(valid=valid, rejected=rejected, stats=stats)


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"partition_date must be a date or 'YYYY-MM-DD', got {value!r}")


def _list_files(root: Path, day_dir: Path) -> tuple[list[_File], list[str]]:
    if not day_dir.is_dir():
        return [], []
    files, ignored = [], []
    for path in sorted(day_dir.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "_")) or not path.is_file():
            ignored.append(path.name)
            continue
        rel = path.relative_to(root).as_posix()
        files.append(_File(len(files), path, rel, path.name, FORMATS.get(path.suffix.lower())))
    return files, ignored


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TEMP TABLE files (file_idx INTEGER, source_file VARCHAR, file_name VARCHAR, fmt VARCHAR)"
    )
    # One row per input row. pcode/preason: the row could not be read at all (parse level).
    # *_problem: the field has the wrong type. Value-level checks happen later, in _check.
    con.execute(
        """CREATE TEMP TABLE cand (
            file_idx INTEGER, source_row BIGINT, raw VARCHAR, pcode VARCHAR, preason VARCHAR,
            comment_id VARCHAR, cid_problem VARCHAR, text VARCHAR, text_problem VARCHAR,
            created_at_str VARCHAR, created_at_ts TIMESTAMPTZ, ts_problem VARCHAR, extra VARCHAR)"""
    )


# ----------------------------------------------------------------------------------------- lines
def _load_lines(con: duckdb.DuckDBPyConnection, data: bytes, table: str) -> None:
    """Split bytes into physical lines and flag the non-UTF-8 ones.

    Splitting the bytes before decoding matters: decoding a whole file with replacement can swallow
    the newline after a bad byte, and DuckDB's CSV-based line reader fails the whole file on mixed
    CRLF/LF endings. Valid files (the common case) are decoded in one call.
    """
    raw_lines = data.split(b"\n")
    try:
        lines = data.decode("utf-8").split("\n")
        bad = [False] * len(lines)
    except UnicodeDecodeError:
        lines, bad = [], []
        for raw in raw_lines:
            try:
                lines.append(raw.decode("utf-8"))
                bad.append(False)
            except UnicodeDecodeError:
                lines.append(raw.decode("utf-8", errors="replace"))
                bad.append(True)
    numbers = pa.array(np.arange(1, len(lines) + 1, dtype=np.int64))
    con.register("_raw_lines", pa.table({"n": numbers, "txt": pa.array(lines, pa.string()),
                                         "bad_utf8": pa.array(bad, pa.bool_())}))
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT n, regexp_replace(txt, '\\r$', '') AS line, bad_utf8,
                   NOT bad_utf8 AND regexp_full_match(txt, '\\s*') AS blank
            FROM _raw_lines"""
        )
    finally:
        con.unregister("_raw_lines")


def _reject_all_lines(con: duckdb.DuckDBPyConnection, f: _File, data: bytes, code: str, reason: str) -> None:
    _load_lines(con, data, "all_lines")
    con.execute(
        """INSERT INTO cand BY NAME SELECT ? AS file_idx, n AS source_row, line AS raw,
               CASE WHEN bad_utf8 THEN 'invalid_utf8' ELSE ? END AS pcode,
               CASE WHEN bad_utf8 THEN 'line is not valid UTF-8; ' ELSE '' END || ? AS preason
           FROM all_lines WHERE NOT blank""",
        [f.idx, code, reason],
    )


# ------------------------------------------------------------------------------------------ JSON
def _read_json(con: duckdb.DuckDBPyConnection, f: _File) -> None:
    data = f.path.read_bytes()
    if f.fmt == "json" and _load_json_document(con, data):
        _insert_json_rows(con, f, "element")
        return
    _load_lines(con, data, "json_lines")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE json_src AS SELECT n, line, bad_utf8 FROM json_lines WHERE NOT blank"
    )
    _insert_json_rows(con, f, "line")


def _load_json_document(con: duckdb.DuckDBPyConnection, data: bytes) -> bool:
    """A ``.json`` file that is one valid JSON document: its elements (or the object) become rows."""
    try:
        doc = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    kind = con.sql("SELECT CASE WHEN json_valid(?) THEN json_type(?) END", params=[doc, doc]).fetchall()[0][0]
    if kind == "ARRAY":
        con.execute(
            """CREATE OR REPLACE TEMP TABLE json_src AS
               SELECT generate_subscripts(l, 1) AS n, unnest(l) AS line, false AS bad_utf8
               FROM (SELECT json_extract(?, '$[*]')::VARCHAR[] AS l)""",
            [doc],
        )
        return True
    if kind is not None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE json_src AS SELECT 1::BIGINT AS n, ? AS line, false AS bad_utf8",
            [doc.strip()],
        )
        return True
    return False


def _json_type_word(expr: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _JSON_TYPE_WORDS.items())
    return f"(CASE {expr} {cases} ELSE lower({expr}) END)"


def _insert_json_rows(con: duckdb.DuckDBPyConnection, f: _File, noun: str) -> None:
    # Reads json_src(n, line, bad_utf8). The CASE guards keep json_* functions away from invalid JSON
    # (they raise on it).
    invalid_hint = """CASE
        WHEN regexp_matches(line, '[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\r\\t]')
            THEN 'it contains a raw control character (tab, CR, ...); JSON strings must escape them'
        WHEN regexp_matches(line, '\\\\u[dD][89a-fA-F][0-9a-fA-F]{2}')
            THEN 'it contains a \\uD800-\\uDFFF escape that is not a valid surrogate pair'
        WHEN NOT starts_with(ltrim(line), '{') THEN 'it does not start with {'
        ELSE 'malformed or truncated JSON' END"""
    con.execute(
        f"""INSERT INTO cand BY NAME
        WITH p AS (
            SELECT n, line, CASE WHEN bad_utf8 THEN 'invalid_utf8'
                                 WHEN NOT json_valid(line) THEN 'invalid_json'
                                 WHEN json_type(line) <> 'OBJECT' THEN 'not_object' END AS pcode
            FROM json_src),
        t AS (
            SELECT *,
                CASE WHEN pcode IS NULL THEN json_type(line, '$.comment_id') END AS cid_t,
                CASE WHEN pcode IS NULL THEN json_type(line, '$.text') END AS text_t,
                CASE WHEN pcode IS NULL THEN json_type(line, '$.created_at') END AS ts_t
            FROM p)
        SELECT ? AS file_idx, n AS source_row, line AS raw, pcode,
            CASE pcode
                WHEN 'invalid_utf8' THEN '{noun} is not valid UTF-8'
                WHEN 'invalid_json' THEN '{noun} is not valid JSON: ' || {invalid_hint}
                WHEN 'not_object' THEN '{noun} is not a JSON object (found '
                                       || {_json_type_word("json_type(line)")} || ')'
            END AS preason,
            CASE WHEN cid_t IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN json_extract_string(line, '$.comment_id')
            END AS comment_id,
            CASE WHEN cid_t NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL')
                 THEN 'comment_id is ' || {_json_type_word("cid_t")} || ', expected a string'
            END AS cid_problem,
            CASE WHEN text_t = 'VARCHAR' THEN json_extract_string(line, '$.text') END AS text,
            CASE WHEN text_t NOT IN ('VARCHAR', 'NULL')
                 THEN 'text is ' || {_json_type_word("text_t")} || ', not a string' END AS text_problem,
            CASE WHEN ts_t = 'VARCHAR' THEN json_extract_string(line, '$.created_at') END AS created_at_str,
            CASE WHEN ts_t NOT IN ('VARCHAR', 'NULL')
                 THEN 'created_at is ' || {_json_type_word("ts_t")} || ', expected an ISO-8601 string'
            END AS ts_problem,
            CASE WHEN pcode IS NULL
                 THEN json_merge_patch(line, '{{"comment_id":null,"created_at":null,"text":null}}')
            END AS extra
        FROM t""",
        [f.idx],
    )


# ------------------------------------------------------------------------------------------- CSV
# RFC 4180, fixed: DuckDB's sniffer guesses "no quoting" for a whole file after one stray quote.
# hive_partitioning off: the day folder's name ("date=...") must not turn into a column.
_CSV_DIALECT = "hive_partitioning=false, delim=',', quote='\"', escape='\"', auto_detect=false"
_CSV_ERRORS = {  # DuckDB error_type -> (priority, code, readable text)
    "INVALID ENCODING": (0, "invalid_utf8", "record is not valid UTF-8"),
    "UNQUOTED VALUE": (
        1,
        "csv_error",
        'unclosed or stray quote ("); an unclosed quote swallows the '
        "following lines into this record, so they are rejected with it",
    ),
    "LINE SIZE OVER MAXIMUM": (2, "csv_error", "record longer than DuckDB's 2,000,000-byte line limit"),
    "TOO MANY COLUMNS": (3, "csv_error", "record has more fields than the header"),
    "MISSING COLUMNS": (4, "csv_error", "record has fewer fields than the header"),
}


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _read_csv(con: duckdb.DuckDBPyConnection, f: _File, tmp: Path) -> None:
    data = f.path.read_bytes()
    path = f.path
    if b"\r" in data:  # DuckDB's strict CSV parser fails whole files on mixed or lone-CR line ends
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        path = tmp / f"{f.idx}.csv"
        path.write_bytes(data)
    header_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    if not data.strip():
        return
    names = next(csv.reader([header_line]), [])
    names = [n.strip() or f"column{i + 1}" for i, n in enumerate(names)]
    lower = [n.lower() for n in names]
    missing = [r for r in REQUIRED_FIELDS if r not in lower]
    dupes = sorted({n for n in lower if lower.count(n) > 1})
    if missing or dupes:
        problem = (
            f"lacks required column(s) {', '.join(missing)}"
            if missing
            else f"repeats column name(s) {', '.join(dupes)}"
        )
        reason = (
            f"CSV header (line 1: {header_line[:120]!r}) {problem}; a usable header naming "
            f"{', '.join(REQUIRED_FIELDS)} is required, so every line of this file is rejected"
        )
        _reject_all_lines(con, f, data, "csv_bad_header", reason)
        return
    # DuckDB gets positional names c0, c1, ...: header text never becomes an SQL identifier.
    cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(names))) + "}"
    opts = (
        f"{_CSV_DIALECT}, columns={cols}, "
        f"store_rejects=true, rejects_table='rej_{f.idx}', rejects_scan='rejscan_{f.idx}'"
    )
    try:
        con.execute(
            f"CREATE TEMP TABLE csv_{f.idx} AS SELECT * FROM read_csv(?, header=true, {opts})", [str(path)]
        )
    except duckdb.Error as exc:
        msg = str(exc).strip().splitlines()[0][:300]
        _reject_all_lines(
            con,
            f,
            data,
            "csv_error",
            f"CSV file could not be parsed (DuckDB: {msg}); every line of this file is rejected",
        )
        return
    prio = " ".join(f"WHEN '{k}' THEN {v[0]}" for k, v in _CSV_ERRORS.items())
    code = " ".join(f"WHEN '{k}' THEN '{v[1]}'" for k, v in _CSV_ERRORS.items())
    text = " ".join(f"WHEN '{k}' THEN {_sql_str(v[2])}" for k, v in _CSV_ERRORS.items())
    con.execute(
        f"""CREATE TEMP TABLE rj_{f.idx} AS
        SELECT line, arg_min(error_type, p) AS error_type, arg_min(error_message, p) AS msg,
               arg_min(ltrim(csv_line, chr(10)), p) AS raw
        FROM (SELECT *, CASE error_type {prio} ELSE 9 END AS p FROM rej_{f.idx}) GROUP BY line"""
    )
    blanks = _csv_blank_records(con, f, path, data)
    n_valid = con.sql(f"SELECT count(*) FROM csv_{f.idx}").fetchall()[0][0]
    n_rej = con.sql(f"SELECT count(*) FROM rj_{f.idx}").fetchall()[0][0]
    last = 1 + n_valid + n_rej + len(blanks)
    con.register("_csv_blanks", pa.table({"rec": pa.array(sorted(blanks), pa.int64())}))
    try:
        con.execute(
            f"""CREATE TEMP TABLE recno_{f.idx} AS
            SELECT rec, row_number() OVER (ORDER BY rec) - 1 AS k FROM range(2, {last + 1}) t(rec)
            WHERE rec NOT IN (SELECT line FROM rj_{f.idx}) AND rec NOT IN (SELECT rec FROM _csv_blanks)"""
        )
    finally:
        con.unregister("_csv_blanks")
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, line AS source_row, raw,
            CASE error_type {code} ELSE 'csv_error' END AS pcode,
            'CSV record is malformed: ' || CASE error_type {text} ELSE error_type || ': ' || msg END
                || CASE WHEN error_type = 'UNQUOTED VALUE' AND contains(rtrim(raw, chr(10)), chr(10))
                        THEN ' (this record spans '
                             || CASE WHEN length(raw) >= 10000 THEN 'at least ' ELSE '' END
                             || (length(rtrim(raw, chr(10)))
                                 - length(replace(rtrim(raw, chr(10)), chr(10), '')) + 1)
                             || ' lines)'
                        ELSE '' END
                || CASE WHEN error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS')
                        THEN ' (' || msg || ')' ELSE '' END AS preason
        FROM rj_{f.idx}""",
        [f.idx],
    )
    pos = {n: f"c{i}" for i, n in enumerate(lower)}
    extras = [(n, f"c{i}") for i, n in enumerate(names) if n.lower() not in REQUIRED_FIELDS]
    extra_sql = (
        ("json_object(" + ", ".join(f"{_sql_str(n)}, {c}" for n, c in extras) + ")") if extras else "'{}'"
    )
    quoted = [
        f"""CASE WHEN c{i} IS NULL THEN ''
                  WHEN regexp_matches(c{i}, '[",\\n\\r]') THEN '"' || replace(c{i}, '"', '""') || '"'
                  ELSE c{i} END"""
        for i in range(len(names))
    ]
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, r.rec AS source_row, concat_ws(',', {", ".join(quoted)}) AS raw,
            coalesce({pos["comment_id"]}, '') AS comment_id, coalesce({pos["text"]}, '') AS text,
            coalesce({pos["created_at"]}, '') AS created_at_str, {extra_sql} AS extra
        FROM (SELECT *, rowid AS k FROM csv_{f.idx}) c JOIN recno_{f.idx} r USING (k)""",
        [f.idx],
    )


def _csv_blank_records(con: duckdb.DuckDBPyConnection, f: _File, path: Path, data: bytes) -> set[int]:
    """Record numbers of empty lines, which DuckDB counts in its record numbers but skips silently.

    Needed so valid rows get the same numbering as rejected ones. A one-column read of the same file
    with the same dialect returns blank records as NULL rows and rejects every multi-field record
    with its number, so the record numbers that are not rejected and hold NULL are the blanks.
    """
    if not re.search(rb"\n\n.", data, flags=re.DOTALL):
        return set()
    opts = (
        f"{_CSV_DIALECT}, columns={{'c': 'VARCHAR'}}, "
        f"store_rejects=true, rejects_table='rej1_{f.idx}', rejects_scan='rejscan1_{f.idx}'"
    )
    try:
        con.execute(
            f"CREATE TEMP TABLE one_{f.idx} AS SELECT c FROM read_csv(?, header=false, {opts})", [str(path)]
        )
    except duckdb.Error:
        return set()
    rows = con.sql(
        f"""WITH rj AS (SELECT DISTINCT line FROM rej1_{f.idx}),
                 total AS (SELECT (SELECT count(*) FROM one_{f.idx}) + (SELECT count(*) FROM rj) AS n),
                 nums AS (SELECT rec, row_number() OVER (ORDER BY rec) - 1 AS k
                          FROM range(1, (SELECT n FROM total) + 1) t(rec)
                          WHERE rec NOT IN (SELECT line FROM rj))
            SELECT rec FROM (SELECT c, rowid AS k FROM one_{f.idx}) o JOIN nums USING (k) WHERE c IS NULL"""
    ).fetchall()
    rejected = {r[0] for r in con.sql(f"SELECT line FROM rj_{f.idx}").fetchall()}
    return {r[0] for r in rows} - rejected


# --------------------------------------------------------------------------------------- Parquet
def _read_parquet(con: duckdb.DuckDBPyConnection, f: _File, warnings: list[str]) -> None:
    try:
        schema = con.sql(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning=false)", params=[str(f.path)]
        ).fetchall()
    except duckdb.Error as exc:
        _reject_file(con, f, "unreadable_file", f"cannot read Parquet file: {_first_line(exc)}")
        return
    types = {name: typ for name, typ, *_ in schema}
    alias = {name: f"c{i}" for i, name in enumerate(types)}  # file column names never become SQL
    bad_cols = _load_parquet(con, f, alias)
    if bad_cols is None:
        return
    by_lower = {n.lower(): n for n in types}
    for col in sorted(set(bad_cols) - {by_lower.get(r) for r in REQUIRED_FIELDS}):
        warnings.append(f"{f.source_file}: column {col!r} holds invalid UTF-8; left out of extra")
    readable = [n for n in types if n not in bad_cols]

    def column(name: str, ok_types: set[str], expected: str) -> tuple[str, str]:
        col = by_lower.get(name)
        if col is None:
            return "NULL", _sql_str(f"Parquet file has no {name!r} column")
        if col in bad_cols:
            return "NULL", _sql_str(f"Parquet column {col!r} holds invalid UTF-8")
        if types[col] not in ok_types:
            return "NULL", _sql_str(f"{name} column has type {types[col]}, expected {expected}")
        return alias[col], "NULL"

    cid, cid_problem = column("comment_id", {"VARCHAR"} | _INT_TYPES, "a string")
    text, text_problem = column("text", {"VARCHAR"}, "a string")
    ts, ts_problem = column("created_at", {"VARCHAR"} | _TS_TYPES, "an ISO-8601 string or a timestamp")
    native_ts = ts_problem == "NULL" and types[by_lower["created_at"]] != "VARCHAR"
    extras = [n for n in readable if n.lower() not in REQUIRED_FIELDS]
    con.execute(
        f"""INSERT INTO cand BY NAME
        SELECT ? AS file_idx, rowid + 1 AS source_row, {_json_struct(readable, alias)} AS raw,
            CAST({cid} AS VARCHAR) AS comment_id, {cid_problem} AS cid_problem,
            {text} AS text, {text_problem} AS text_problem,
            {"NULL" if native_ts else f"CAST({ts} AS VARCHAR)"} AS created_at_str,
            {f"CAST({ts} AS TIMESTAMPTZ)" if native_ts else "NULL"} AS created_at_ts,
            {ts_problem} AS ts_problem, {_json_struct(extras, alias)} AS extra
        FROM pq_{f.idx}""",
        [f.idx],
    )


def _json_struct(names: list[str], alias: dict[str, str]) -> str:
    if not names:
        return "'{}'"
    return "to_json(struct_pack(" + ", ".join(f"{_ident(n)} := {alias[n]}" for n in names) + "))"


def _load_parquet(con: duckdb.DuckDBPyConnection, f: _File, alias: dict[str, str]) -> set[str] | None:
    """Materialize the file as ``pq_<idx>`` with columns c0, c1, ...; return columns left out.

    Row numbers come from that table's rowid (insertion order is file order); the reader's
    ``file_row_number`` option would clash with a column of that name. DuckDB refuses a whole scan
    when one string value is not UTF-8, so on failure each column is tried alone and the bad ones
    are left out. Returns None (after rejecting the rows) when the file cannot be read even so.
    """
    src = "read_parquet(?, hive_partitioning=false)"

    def load(names: list[str]) -> None:
        cols = ", ".join(f"{_ident(n)} AS {alias[n]}" for n in names) or "NULL AS _none"
        con.execute(f"CREATE OR REPLACE TEMP TABLE pq_{f.idx} AS SELECT {cols} FROM {src}", [str(f.path)])

    try:
        load(list(alias))
        return set()
    except duckdb.Error as exc:
        error = _first_line(exc)
    bad = set()
    for name in alias:
        try:
            load([name])
        except duckdb.Error:
            bad.add(name)
    try:
        load([n for n in alias if n not in bad])
        return bad
    except duckdb.Error:
        pass
    try:
        n_rows = con.sql(
            "SELECT sum(num_rows) FROM parquet_file_metadata(?)", params=[str(f.path)]
        ).fetchall()[0][0]
    except duckdb.Error:
        n_rows = None
    if not n_rows:
        _reject_file(con, f, "unreadable_file", f"cannot read Parquet file: {error}")
        return None
    con.execute(
        """INSERT INTO cand BY NAME SELECT ? AS file_idx, r AS source_row, '' AS raw,
               'unreadable_file' AS pcode, ? AS preason FROM range(1, ? + 1) t(r)""",
        [
            f.idx,
            f"cannot read the rows of this Parquet file ({error}); all {n_rows} rows are rejected",
            n_rows,
        ],
    )
    return None


# ---------------------------------------------------------------------------------- other files
def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _reject_file(con: duckdb.DuckDBPyConnection, f: _File, code: str, reason: str) -> None:
    with f.path.open("rb") as fh:
        head = fh.read(RAW_MAX_CHARS)
    con.execute(
        "INSERT INTO cand BY NAME "
        "SELECT ? AS file_idx, NULL AS source_row, ? AS raw, ? AS pcode, ? AS preason",
        [f.idx, head.decode("utf-8", errors="replace"), code, reason],
    )


def _reject_unsupported(con: duckdb.DuckDBPyConnection, f: _File) -> None:
    kinds = ", ".join(sorted(FORMATS))
    _reject_file(
        con,
        f,
        "unsupported_file",
        f"unsupported file type {f.path.suffix or '(no extension)'!r}; expected one of {kinds}",
    )


# ------------------------------------------------------------------------------------ validation
def _check(con: duckdb.DuckDBPyConnection, max_text_chars: int) -> None:
    """Value checks shared by all formats, then the within-day duplicate check on what survived."""
    con.execute(
        f"""CREATE TEMP TABLE checked AS
        WITH c AS (
            SELECT cand.*, files.file_name, files.source_file, trim(comment_id) AS cid,
                coalesce(created_at_ts, CASE WHEN regexp_full_match(trim(created_at_str), '{_ISO_RE}')
                                             THEN try_cast(trim(created_at_str) AS TIMESTAMPTZ) END) AS ts
            FROM cand JOIN files USING (file_idx)),
        v AS (
            SELECT *, CASE
                WHEN pcode IS NOT NULL THEN {{'code': pcode, 'reason': preason}}
                WHEN cid_problem IS NOT NULL THEN {{'code': 'bad_comment_id', 'reason': cid_problem}}
                WHEN cid IS NULL OR cid = '' THEN {{'code': 'missing_comment_id',
                    'reason': 'comment_id is missing or empty'}}
                WHEN length(cid) > {MAX_COMMENT_ID_CHARS} THEN {{'code': 'bad_comment_id',
                    'reason': 'comment_id longer than {MAX_COMMENT_ID_CHARS} characters ('
                              || length(cid) || ')'}}
                WHEN regexp_matches(cid, '\\p{{Cc}}') THEN {{'code': 'bad_comment_id',
                    'reason': 'comment_id contains control characters'}}
                WHEN text_problem IS NOT NULL THEN {{'code': 'bad_text', 'reason': text_problem}}
                WHEN text IS NULL THEN {{'code': 'missing_text',
                    'reason': 'text is missing (null or absent)'}}
                WHEN text = '' THEN {{'code': 'empty_text', 'reason': 'text is empty'}}
                WHEN regexp_full_match(text, '{_BLANK_TEXT_RE}') THEN {{'code': 'empty_text',
                    'reason': 'text is empty: only whitespace or invisible characters'}}
                WHEN length(text) > {max_text_chars} THEN {{'code': 'text_too_long',
                    'reason': 'text longer than {max_text_chars} characters (' || length(text) || ')'}}
                WHEN ts_problem IS NOT NULL THEN {{'code': 'bad_created_at', 'reason': ts_problem}}
                WHEN created_at_ts IS NULL AND trim(coalesce(created_at_str, '')) = ''
                    THEN {{'code': 'missing_created_at', 'reason': 'created_at is missing or empty'}}
                WHEN ts IS NULL OR NOT isfinite(ts) THEN {{'code': 'bad_created_at',
                    'reason': 'created_at ''' || left(coalesce(created_at_str, ts::VARCHAR), 80)
                              || ''' is not an ISO-8601 timestamp (e.g. 2025-01-31T12:00:00Z)'}}
            END AS verdict
            FROM c),
        d AS (
            SELECT *,
                CASE WHEN verdict IS NULL THEN row_number() OVER w END AS copy_no,
                CASE WHEN verdict IS NULL
                     THEN first_value(file_name || ':' || source_row) OVER w END AS first_at
            FROM v
            WINDOW w AS (PARTITION BY verdict IS NULL, cid ORDER BY file_idx, source_row))
        SELECT *, CASE WHEN verdict IS NOT NULL THEN verdict.code
                       WHEN copy_no > 1 THEN 'duplicate_comment_id' END AS code,
                  CASE WHEN verdict IS NOT NULL THEN verdict.reason
                       WHEN copy_no > 1 THEN 'duplicate comment_id ''' || left(cid, 80)
                            || ''' within the day (first at ' || first_at || ')' END AS reason
        FROM d"""
    )


_VALID_SQL = """
    SELECT cid AS comment_id, ts AS created_at, text, source_file, source_row, coalesce(extra, '{}') AS extra
    FROM checked WHERE code IS NULL ORDER BY file_idx, source_row"""

_REJECTED_SQL = f"""
    SELECT source_file, source_row, nullif(cid, '') AS comment_id,
        CASE WHEN length(raw) > {RAW_MAX_CHARS}
             THEN left(raw, {RAW_MAX_CHARS}) || ' ... [' || length(raw) || ' characters in total]'
             ELSE coalesce(raw, '') END AS raw,
        reason
    FROM checked WHERE code IS NOT NULL ORDER BY file_idx, source_row NULLS FIRST"""


def _stats(
    con: duckdb.DuckDBPyConnection, day: dt.date, files: list[_File], ignored: list[str], warnings: list[str]
) -> dict:
    per_format: dict[str, dict[str, int]] = {}
    for f in files:
        fmt = per_format.setdefault(f.fmt or "other", {"files": 0, "rows_read": 0, "valid": 0, "rejected": 0})
        fmt["files"] += 1
    rows = con.sql(
        """SELECT fmt, count(*), count(*) FILTER (WHERE code IS NULL) FROM checked JOIN files USING (file_idx)
           GROUP BY fmt"""
    ).fetchall()
    for fmt, n, ok in rows:
        per_format[fmt].update(rows_read=n, valid=ok, rejected=n - ok)
    codes = dict(
        con.sql(
            "SELECT code, count(*) FROM checked WHERE code IS NOT NULL GROUP BY code ORDER BY code"
        ).fetchall()
    )
    total = sum(v["rows_read"] for v in per_format.values())
    valid = sum(v["valid"] for v in per_format.values())
    return {
        "partition_date": day.isoformat(),
        "files": len(files),
        "rows_read": total,
        "valid": valid,
        "rejected": total - valid,
        "duplicates": codes.get("duplicate_comment_id", 0),
        "per_format": per_format,
        "rejected_by_code": codes,
        "ignored": ignored,
        "warnings": warnings,
    }
