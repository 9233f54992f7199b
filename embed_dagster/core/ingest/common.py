"""Shared pieces of the landing readers: schemas, the candidate table, line loading, file rejects.

Every format reader inserts into one TEMP table ``cand`` (one row per input row); ``validate`` then
applies the value checks shared by all formats, so a rule is written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
class _File:
    """One landing entry to read (or to refuse, when ``refused`` holds the reason).

    ``path`` is what the readers open: a link with a plain generated name in a private temp folder,
    pointing at the resolved file. DuckDB expands ``*``, ``?`` and ``[...]`` in any path it is
    given, so a landing file named ``*.csv`` must never reach it by its own name.
    """

    idx: int
    path: Path
    source_file: str  # relative to landing_root, with forward slashes
    name: str  # relative to the day folder (``batch.parquet/part-0.parquet`` for nested files)
    fmt: str | None
    refused: str | None = None


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    # TEMP tables: the scratch database never needs its tables on disk, and a persistent table pays
    # for writing and compressing blocks on every INSERT (3x slower on a 300k-line file). TEMP tables
    # keep the memory_limit and spill to the same private temp folder.
    con.execute(
        "CREATE TEMP TABLE files (file_idx INTEGER, source_file VARCHAR, file_name VARCHAR, fmt VARCHAR)"
    )
    # One row per input row. pcode/preason: the row could not be read at all (parse level).
    # *_problem: the field has the wrong type. Value-level checks happen later, in _check.
    con.execute(
        """CREATE TEMP TABLE cand (
            file_idx INTEGER, source_row BIGINT, raw VARCHAR, pcode VARCHAR, preason VARCHAR,
            comment_id VARCHAR, cid_problem VARCHAR, text VARCHAR, text_problem VARCHAR,
            created_at_str VARCHAR, created_at_ts TIMESTAMPTZ, ts_problem VARCHAR, extra VARCHAR,
            fields VARCHAR)"""
    )


@contextmanager
def file_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Tables created inside number their rows (``rowid``) in the order the file holds them.

    Why: ingest runs with ``preserve_insertion_order = false`` (less memory for its big inserts),
    under which a parallel scan of a Parquet file with several row groups, or of a large CSV, stores
    rows in whatever order the threads finish. The readers take ``source_row`` from ``rowid``, and the
    duplicate rule keeps the first copy by (file, row), so the kept copy changed from run to run.
    """
    con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute("SET preserve_insertion_order = false")


# ----------------------------------------------------------------------------------------- lines
def _load_lines(con: duckdb.DuckDBPyConnection, data: bytes, table: str, first: int = 1) -> None:
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
    numbers = pa.array(np.arange(first, first + len(lines), dtype=np.int64))
    con.register(
        "_raw_lines",
        pa.table({"n": numbers, "txt": pa.array(lines, pa.string()), "bad_utf8": pa.array(bad, pa.bool_())}),
    )
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT n, regexp_replace(txt, '\\r$', '') AS line, bad_utf8,
                   NOT bad_utf8 AND regexp_full_match(txt, '\\s*') AS blank
            FROM _raw_lines"""
        )
    finally:
        con.unregister("_raw_lines")


BOM = b"\xef\xbb\xbf"
READ_BLOCK = 4 << 20  # bytes of JSON Lines parsed per batch: bounds memory for any file size


def text_encoding_problem(head: bytes) -> str | None:
    """A reason when a text file is UTF-16/UTF-32 rather than UTF-8 (seen from its first bytes).

    Read as UTF-8, such a file turns into phantom rows whose reasons never mention the encoding;
    one clear file-level row is more useful. Detected by the byte-order mark, or, without one, by
    NUL bytes in every other position of ASCII-range text (what UTF-16 looks like).
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "file is UTF-16 (byte-order mark found); convert it to UTF-8"
    sample = head[:4096]
    if (
        len(sample) >= 8
        and sample.count(0) * 3 >= len(sample)
        and (sample[1::2].count(0) * 4 >= len(sample) or sample[0::2].count(0) * 4 >= len(sample))
    ):
        return "file is UTF-16 (no byte-order mark; every other byte is NUL); convert it to UTF-8"
    return None


def read_head(path: Path, n: int = 4096) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _reject_all_lines(con: duckdb.DuckDBPyConnection, f: _File, data: bytes, code: str, reason: str) -> None:
    _load_lines(con, data, "all_lines")
    con.execute(
        """INSERT INTO cand BY NAME SELECT ? AS file_idx, n AS source_row, line AS raw,
               CASE WHEN bad_utf8 THEN 'invalid_utf8' ELSE ? END AS pcode,
               CASE WHEN bad_utf8 THEN 'line is not valid UTF-8; ' ELSE '' END || ? AS preason
           FROM all_lines WHERE NOT blank""",
        [f.idx, code, reason],
    )


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------- other files
def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _reject_file(
    con: duckdb.DuckDBPyConnection, f: _File, code: str, reason: str, raw: str | None = None
) -> None:
    head = b""
    if f.refused is None and raw is None:  # a refused entry is never read (it may be /proc/self/environ)
        with f.path.open("rb") as fh:
            head = fh.read(RAW_MAX_CHARS)
    con.execute(
        "INSERT INTO cand BY NAME "
        "SELECT ? AS file_idx, NULL AS source_row, ? AS raw, ? AS pcode, ? AS preason",
        [f.idx, raw if raw is not None else head.decode("utf-8", errors="replace"), code, reason],
    )


def _reject_unsupported(con: duckdb.DuckDBPyConnection, f: _File) -> None:
    kinds = ", ".join(sorted(FORMATS))
    _reject_file(
        con,
        f,
        "unsupported_file",
        f"unsupported file type {Path(f.name).suffix or '(no extension)'!r}; expected one of {kinds}",
    )
